"""JAFFE, the Japanese Female Facial Expression database (Lyons et al. 1998): files -> manifest."""

import collections
import re

from mlc_keras.data.manifest import Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, lookup, matching_files

JAFFE_EXPRESSIONS = {
    "an": "angry",
    "di": "disgusted",
    "fe": "fearful",
    "ha": "happy",
    "ne": "neutral",
    "sa": "sad",
    "su": "surprised",
}
_JAFFE_RE = re.compile(r"^([A-Za-z]{2})\.([A-Za-z]{2})(\d+)\.(\d+)\.tiff?$")
JAFFE_HELP = ("expected JAFFE files <subject initials>.<expression code><index>.<image number>.tiff, "
              "e.g. KA.AN1.39.tiff (codes AN DI FE HA NE SA SU)")


def scan_jaffe(data_dir):
    """Japanese Female Facial Expression database (Lyons et al. 1998).

    Layout: ``KA.AN1.39.tiff`` = initials . code + repetition index . image
    number; codes AN DI FE HA NE SA SU (all seven are ours). subject = the
    initials in upper case. The images are TIFF; the training pipeline decodes
    them through PIL.
    """
    label = "JAFFE"
    root = dataset_root(data_dir, label, JAFFE_HELP)
    records = []
    for path, m in matching_files(root, _JAFFE_RE, label, JAFFE_HELP):
        subject, code = m.group(1).upper(), m.group(2)
        records.append(Record(path, subject, lookup(code, JAFFE_EXPRESSIONS, label, path), ""))
    return ScanResult("jaffe", root, records, collections.Counter(), [])


SOURCE = importer("jaffe", scan_jaffe)
