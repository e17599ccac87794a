"""The manifest CSV: the one canonical description of a face data set, and where imports keep it.

Columns: ``path`` (relative to the manifest's folder, or absolute),
``subject`` (identity id, any string), ``expression`` (any name that
``expressions.canonical_expression`` knows), and optional ``split``
(``train`` / ``test``; empty = decided by the seeded subject split).
"""

import csv
import dataclasses
import os

from mlc_keras.errors import UserError
from mlc_keras.expressions import canonical_expression
from mlc_keras.images import atomic_path, read_json

COLUMNS = ("path", "subject", "expression", "split")
SPLITS = ("train", "test", "")
MANIFEST_NAME = "manifest.csv"  # what every source writes into its output folder
IMPORT_NAME = "import.json"  # beside it: what an importer did ({..., "summary": {...}})
# Beside it too, when the importer knows them: each crop's 68 face landmarks,
# {"crop_size": S, "points": {"<file name>": [[x, y], ...]}} in crop pixels.
LANDMARKS_NAME = "landmarks.json"


class ManifestError(UserError, ValueError):
    """The manifest or the data it names is unusable."""


@dataclasses.dataclass(frozen=True)
class Record:
    path: str  # absolute path of the image
    subject: str
    expression: str  # canonical name
    split: str = ""


def write_manifest(path, records):
    """Writes ``records`` atomically (temp file + rename); paths are stored
    relative to the manifest's folder when they lie under it."""
    folder = os.path.dirname(os.path.abspath(path))
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in records:
                p = os.path.abspath(r.path)
                rel = os.path.relpath(p, folder)
                writer.writerow([p if rel.startswith("..") else rel, r.subject, r.expression, r.split])
    return path


def read_manifest(path, check_files=True):
    """Reads and validates a manifest; returns a list of ``Record``.

    Raises ManifestError naming the file, the row and what is wrong.
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest {path!r} does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    records = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS[:3] if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(
                f"manifest {path!r}: missing column(s) {', '.join(missing)}; "
                f"expected header {','.join(COLUMNS)} (split optional)"
            )
        for line, row in enumerate(reader, start=2):
            where = f"manifest {path!r} line {line}"
            rel = (row.get("path") or "").strip()
            subject = (row.get("subject") or "").strip()
            if not rel or not subject:
                raise ManifestError(f"{where}: empty path or subject")
            expression = canonical_expression(row.get("expression", ""), source=where)
            split = (row.get("split") or "").strip().lower()
            if split not in SPLITS:
                raise ManifestError(f"{where}: split {split!r} must be train, test or empty")
            full = rel if os.path.isabs(rel) else os.path.join(folder, rel)
            if check_files and not os.path.isfile(full):
                raise ManifestError(f"{where}: image {full!r} does not exist")
            records.append(Record(full, subject, expression, split))
    if not records:
        raise ManifestError(f"manifest {path!r} lists no images")
    return records


def read_landmarks(manifest_path, paths):
    """The landmarks the importer stored beside ``manifest_path``, for ``paths``.

    Returns (crop_size, float32 [N, 68, 2] in the order of ``paths``).
    Raises ManifestError naming the file when it is absent or lacks one of
    the images (an import made before landmarks were kept: import again).
    """
    import numpy as np

    where = os.path.join(os.path.dirname(os.path.abspath(manifest_path)), LANDMARKS_NAME)
    if not os.path.isfile(where):
        raise ManifestError(f"no face landmarks beside manifest {manifest_path!r} (expected "
                            f"{where!r}); only the London importer writes them: import again "
                            "with --dataset=london")
    try:
        stored = read_json(where)
        size = int(stored["crop_size"])
        points = stored["points"]
        table = np.array([points[os.path.basename(p)] for p in paths], np.float32)
    except KeyError as e:
        raise ManifestError(f"landmarks file {where!r} has no entry {e.args[0]!r}; import the "
                            "data set again") from None
    except (OSError, ValueError, TypeError) as e:
        raise ManifestError(f"landmarks file {where!r} is unreadable: {e}") from None
    if table.ndim != 3 or table.shape[1:] != (68, 2):
        raise ManifestError(f"landmarks file {where!r}: expected 68 (x, y) points per image, got "
                            f"shape {table.shape[1:]}")
    return size, table


def dataset_root(data_dir, label, layout_help):
    """The absolute folder of a published data set, or ManifestError saying
    what is wrong (none given, missing, not a folder) and what was expected."""
    if not data_dir:
        raise ManifestError(f"{label}: no folder given; {layout_help}")
    root = os.path.abspath(os.fspath(data_dir))
    if not os.path.exists(root):
        raise ManifestError(f"{label} folder {root!r} does not exist; {layout_help}")
    if not os.path.isdir(root):
        raise ManifestError(f"{label} path {root!r} is not a folder; {layout_help}")
    return root


def read_import_summary(out_dir):
    """The summary dict stored by the last completed import into ``out_dir``
    (``out_dir/import.json``), or None."""
    try:
        return read_json(os.path.join(out_dir, IMPORT_NAME)).get("summary")
    except (OSError, ValueError):
        return None


def cache_dir_for(config):
    """Where importers write crops and manifests: ``--data_cache``, else WORKDIR/data."""
    return config.data_cache or os.path.join(config.workdir, "data")
