"""CFEE, Compound Facial Expressions of Emotion (Du, Tao & Martinez 2014): subject folders -> manifest."""

import collections
import os

from mlc_keras.data.manifest import Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, is_image, no_match, walk_files
from mlc_keras.expressions import UnknownExpressionError, canonical_expression

# Du, Tao & Martinez (2014), "Compound facial expressions of emotion", PNAS
# 111(15): E1454-E1462, in the paper's order (Fig. 1). Only 1-7 are ours.
CFEE_CATEGORIES = (
    "neutral", "happy", "sad", "fearful", "angry", "surprised", "disgusted",
    "happily surprised", "happily disgusted", "sadly fearful", "sadly angry",
    "sadly surprised", "sadly disgusted", "fearfully angry", "fearfully surprised",
    "fearfully disgusted", "angrily surprised", "angrily disgusted",
    "disgustedly surprised", "appalled", "hatred", "awed",
)
CFEE_HELP = ("expected CFEE subject folders <subject>/<subject>_<NN>.jpg with NN 01-22 the "
             "category number in the paper's order (01 neutral, 02 happy, ... 07 disgusted, "
             "08-22 compound), e.g. 1/1_02.jpg or S001/S001_05.jpg")


def _cfee_table(mapping):
    """key (number as int, or category name) -> ours / None."""
    table = {}
    source = mapping if mapping is not None else dict(enumerate(CFEE_CATEGORIES, start=1))
    for key, name in dict(source).items():
        if name is None or str(name).strip().lower() in ("", "skip", "none"):
            ours = None
        else:
            try:
                ours = canonical_expression(name, source="CFEE mapping")
            except UnknownExpressionError:
                ours = None  # a compound or other extra category: skipped
        if isinstance(key, str):
            key = key.strip()
            key = int(key) if key.isdigit() else key.lower().replace(" ", "_").replace("-", "_")
        table[key] = (str(name), ours)
        if mapping is None:
            table[str(name).replace(" ", "_")] = (str(name), ours)
    return table


def scan_cfee(data_dir, mapping=None):
    """Compound Facial Expressions of Emotion (Du, Tao & Martinez, PNAS 2014).

    ASSUMED layout (the database is released on request and copies differ;
    this is the common form we implement): one folder per subject holding
    ``<subject>_<NN>.jpg`` where NN (01-22) is the category number in the
    paper's order: 1 neutral, 2 happy, 3 sad, 4 fearful, 5 angry,
    6 surprised, 7 disgusted, 8-22 the compound categories (happily
    surprised ... awed, see ``CFEE_CATEGORIES``), which are skipped and
    counted. The file-name suffix may also be a category name with "_" for
    spaces (``1_happily_surprised.jpg``). The subject is the folder name;
    images not named ``<folder>_...`` are skipped and counted, and a tree
    without any such image is a layout error.

    Options:
      mapping: override, {number or suffix: category name}; names that are
        ours (any alias, e.g. "happiness") are kept, others (or None) are
        skipped. Use it if your copy numbers categories differently.
    """
    label = "CFEE"
    root = dataset_root(data_dir, label, CFEE_HELP)
    table = _cfee_table(mapping)
    records, skipped, seen, matched = [], collections.Counter(), 0, 0
    for folder, name in walk_files(root):
        seen += 1
        subject = os.path.basename(folder)
        stem, ext = os.path.splitext(name)
        if folder == root or not is_image(name):
            continue
        path = os.path.join(folder, name)
        if not stem.startswith(subject + "_") or len(stem) == len(subject) + 1:
            skipped["file not named <subject>_<NN>"] += 1
            continue
        matched += 1
        suffix = stem[len(subject) + 1:]
        key = int(suffix) if suffix.isdigit() else suffix.lower().replace(" ", "_").replace("-", "_")
        if key not in table:
            known = ", ".join(str(k) for k in table if isinstance(k, int))
            raise UnknownExpressionError(
                f"{label}: {path!r} has unknown category {suffix!r}; known numbers: {known} "
                "(pass mapping= to override)")
        category, ours = table[key]
        if ours is None:
            skipped[category] += 1
        else:
            records.append(Record(path, subject, ours, ""))
    if not matched:
        raise no_match(label, root, CFEE_HELP, seen)
    return ScanResult("cfee", root, records, skipped)


SOURCE = importer("cfee", scan_cfee)
