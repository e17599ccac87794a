"""Any <expression>/<subject>_<n>.jpg tree -> manifest."""

import collections
import os
import re

from mlc_keras.data.manifest import ManifestError, Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, is_image
from mlc_keras.expressions import canonical_expression

FOLDERS_HELP = ("expected <root>/<expression>/<subject>_<anything>.<ext>, e.g. "
                "happy/S001_1.jpg (expression folders named neutral, angry, disgusted, fearful, "
                "happy, sad, surprised or an alias)")
FOLDERS_EXTRAS = ("contempt", "contemptuous")


def scan_folders(data_dir, subject_regex=r"^([^_]+)_", extras=FOLDERS_EXTRAS):
    """Generic layout ``<root>/<expression>/<subject>_<anything>.<ext>``.

    Expression folders are mapped with ``canonical_expression`` (aliases
    such as "anger" or "happiness" allowed); folders named in ``extras``
    (default contempt/contemptuous) are skipped and counted; any other
    folder name is an error. Files at other depths are ignored.

    Options:
      subject_regex: applied (``re.search``) to the file name; the subject
        is its group "subject" if present, else group 1. Default: up to the
        first "_". A file it does not match is an error.
      extras: expression folder names to skip.
    """
    label = "folders"
    root = dataset_root(data_dir, label, FOLDERS_HELP)
    pattern = re.compile(subject_regex)
    extras = {e.lower() for e in extras}
    records, skipped, seen = [], collections.Counter(), 0
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if entry.startswith(".") or not os.path.isdir(folder):
            continue
        images = sorted(n for n in os.listdir(folder)
                        if not n.startswith(".") and is_image(n) and os.path.isfile(os.path.join(folder, n)))
        seen += len(images)
        if not images:
            continue
        if entry.lower() in extras:
            skipped[entry.lower()] += len(images)
            continue
        ours = canonical_expression(entry, source=f"{label}: folder {folder!r}")
        for name in images:
            m = pattern.search(name)
            if not m:
                raise ManifestError(f"{label}: {os.path.join(folder, name)!r} does not match "
                                    f"subject_regex {subject_regex!r}; {FOLDERS_HELP}")
            subject = m.groupdict().get("subject") or (m.group(1) if pattern.groups else m.group(0))
            records.append(Record(os.path.join(folder, name), subject, ours, ""))
    if not seen:
        raise ManifestError(f"{label} folder {root!r} holds no <expression>/ sub-folder with images; "
                            f"{FOLDERS_HELP}")
    return ScanResult("folders", root, records, skipped, [])


SOURCE = importer("folders", scan_folders)
