"""The Yale Face Database (Belhumeur et al. 1997): files -> manifest."""

import collections
import re

from mlc_keras.data.manifest import Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, lookup, matching_files

YALE_EXPRESSIONS = {
    "normal": "neutral",
    "happy": "happy",
    "sad": "sad",
    "surprised": "surprised",
    "centerlight": None,
    "leftlight": None,
    "rightlight": None,
    "glasses": None,
    "noglasses": None,
    "sleepy": None,
    "wink": None,
    "gif": None,  # subject01.gif: a stray duplicate in the published archive
}
_YALE_RE = re.compile(r"^(subject\d+)\.([A-Za-z]+)(\.(?:gif|png|jpe?g))?$", re.IGNORECASE)
YALE_HELP = ("expected Yale Face Database files subject<NN>.<condition> (GIF data, no image "
             "extension), e.g. subject01.happy; conditions centerlight glasses happy leftlight "
             "noglasses normal rightlight sad sleepy surprised wink")


def scan_yale(data_dir):
    """Yale Face Database (Belhumeur et al. 1997): 15 subjects x 11 images.

    Layout: ``subject01.happy`` (GIF data without an image extension; a
    ``.gif`` suffix after the condition is tolerated). normal -> neutral,
    happy, sad, surprised are kept; lighting, glasses, sleepy and wink
    conditions are skipped and counted. subject = "subject01" (lower case).
    """
    label = "Yale"
    root = dataset_root(data_dir, label, YALE_HELP)
    records, skipped = [], collections.Counter()
    for path, m in matching_files(root, _YALE_RE, label, YALE_HELP):
        ours = lookup(m.group(2), YALE_EXPRESSIONS, label, path)
        if ours is None:
            skipped[m.group(2).lower()] += 1
        else:
            records.append(Record(path, m.group(1).lower(), ours, ""))
    return ScanResult("yale", root, records, skipped)


SOURCE = importer("yale", scan_yale)
