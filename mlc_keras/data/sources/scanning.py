"""Shared parts of the importers of published layouts: walking a tree, mapping codes, writing the result.

Unlike the London importer these importers do NOT re-encode or align
anything: the manifest lists the original files (the training pipeline
centre-crops and resizes them). Each importer validates the published
layout, maps the data set's own expression vocabulary to ours
(``expressions.EXPRESSIONS``) and

* skips and counts an expression that is a KNOWN extra of that data set
  (RaFD "contemptuous", CK+ contempt, CFEE compound emotions, Yale
  "sleepy"/"wink"/"glasses"/lighting ...);
* raises ``UnknownExpressionError`` (a ValueError) naming the file for a code
  that is neither ours nor a known extra of the data set;
* raises ``ManifestError`` naming the folder, the expected naming and an
  example file name when nothing matches the layout.
"""

import collections
import dataclasses
import functools
import os

from mlc_keras.data.manifest import IMPORT_NAME, MANIFEST_NAME, ManifestError, write_manifest
from mlc_keras.data.sources import Source
from mlc_keras.expressions import EXPRESSIONS, UnknownExpressionError
from mlc_keras.images import write_json_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm")
# tf.io.decode_image (pipeline.decode_image_bytes) reads JPEG/PNG/GIF/BMP only.


@dataclasses.dataclass
class ScanResult:
    """What an importer found.

    records: the ``Record`` list for the manifest (split "").
    skipped: Counter reason -> number of images / sequences skipped.
    warnings: free-text notes (e.g. a format the TF pipeline cannot decode).
    """

    name: str
    data_dir: str
    records: list
    skipped: collections.Counter
    warnings: list = dataclasses.field(default_factory=list)

    def summary(self):
        per_expression = collections.Counter(r.expression for r in self.records)
        return {
            "importer": self.name,
            "data_dir": self.data_dir,
            "imported": len(self.records),
            "subjects": len({r.subject for r in self.records}),
            "expressions": {e: per_expression[e] for e in EXPRESSIONS if per_expression[e]},
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_total": sum(self.skipped.values()),
            "warnings": list(self.warnings),
        }


def walk_files(root):
    """All non-hidden files under ``root`` (sorted, recursive)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield folder, name


def matching_files(root, pattern, label, layout_help):
    """(path, match) for every file under ``root`` whose name ``pattern`` matches;
    once all are read, ManifestError (``no_match``) if none did."""
    seen = matched = 0
    for folder, name in walk_files(root):
        seen += 1
        m = pattern.match(name)
        if m:
            matched += 1
            yield os.path.join(folder, name), m
    if not matched:
        raise no_match(label, root, layout_help, seen)


def is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def no_match(label, root, layout_help, seen):
    what = "is empty" if not seen else f"holds no file named as expected ({seen} file(s) seen)"
    return ManifestError(f"{label} folder {root!r} {what}; {layout_help}")


def lookup(code, table, label, path):
    """Maps a data set code through ``table`` (code -> ours or None = known
    extra). Raises UnknownExpressionError naming the file and the codes."""
    key = str(code).strip().lower()
    if key not in table:
        known = ", ".join(sorted(table))
        raise UnknownExpressionError(
            f"{label}: {path!r} has unknown expression code {code!r}; known codes: {known}"
        )
    return table[key]


def norm_choice(values, allowed, what, label, fmt=str):
    """A comma-separated string or a list -> the set of lower-case choices, all in ``allowed``."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = {fmt(v).strip().lower() for v in values}
    bad = sorted(out - set(allowed))
    if bad or not out:
        raise ValueError(f"{label}: {what} {bad or '(none)'} not among {', '.join(allowed)}")
    return out


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in (sorted(value, key=str) if isinstance(value, (set, frozenset)) else value)]
    return os.fspath(value) if hasattr(value, "__fspath__") else str(value)


def write_import(result, out_dir, options, progress=True):
    """Writes ``out_dir/manifest.csv`` and ``out_dir/import.json`` ({"importer",
    "options", "summary"}) for a ``ScanResult``; with ``progress`` prints the
    summary (images, subjects, per-expression counts, skipped counts by
    reason, warnings). Returns the manifest path.

    Raises ManifestError when nothing usable was found.
    """
    summary = result.summary()
    if not result.records:
        raise ManifestError(
            f"{result.name}: {result.data_dir!r} has no image of our classes "
            f"({', '.join(EXPRESSIONS)}); skipped: {summary['skipped'] or 'none'}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    write_manifest(manifest_path, result.records)
    write_json_atomic(os.path.join(out_dir, IMPORT_NAME),
                      {"importer": result.name, "options": _jsonable(options), "summary": summary},
                      indent=1, sort_keys=False)
    if progress:
        exprs = ", ".join(f"{e} {n}" for e, n in summary["expressions"].items())
        skipped = ", ".join(f"{k} {v}" for k, v in summary["skipped"].items()) or "none"
        print(f"{result.name}: imported {summary['imported']} images of {summary['subjects']} "
              f"subjects ({exprs}); skipped {summary['skipped_total']} ({skipped}) -> {manifest_path}",
              flush=True)
        for w in summary["warnings"]:
            print(f"{result.name}: warning: {w}", flush=True)
    return manifest_path


def _import_into_cache(name, scan, config, cache_dir):
    """``--dataset=<name>``: imports ``--data_dir`` with the default options into ``cache_dir/<name>``."""
    return write_import(scan(config.data_dir), os.path.join(cache_dir, name), {})


def importer(name, scan):
    """The ``Source`` of an importer of a published layout (``scan(data_dir, **options)``)."""
    return Source(name, functools.partial(_import_into_cache, name, scan), scan=scan)
