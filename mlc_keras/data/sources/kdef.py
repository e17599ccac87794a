"""KDEF, Karolinska Directed Emotional Faces (Lundqvist et al. 1998): folders -> manifest."""

import collections
import re

from mlc_keras.data.manifest import Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, lookup, matching_files, norm_choice

KDEF_EXPRESSIONS = {
    "af": "fearful",
    "an": "angry",
    "di": "disgusted",
    "ha": "happy",
    "ne": "neutral",
    "sa": "sad",
    "su": "surprised",
}
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")
_KDEF_RE = re.compile(r"^([AB])([FM])(\d{2})([A-Z]{2})(FL|FR|HL|HR|S)\.jpe?g$", re.IGNORECASE)
KDEF_HELP = ("expected Karolinska (KDEF) folders <session><gender><id>/ holding "
             "<session><gender><id><expression><angle>.JPG, e.g. AF01/AF01ANS.JPG "
             "(session A/B, gender F/M, id 01-35, expression AF AN DI HA NE SA SU, "
             "angle FL HL S HR FR)")


def scan_kdef(data_dir, angles=("S",), sessions=("A", "B")):
    """Karolinska Directed Emotional Faces (Lundqvist et al. 1998).

    Layout: ``KDEF/AF01/AF01ANS.JPG``: session A/B, gender F/M, id 01-35,
    expression AF afraid, AN angry, DI disgusted, HA happy, NE neutral,
    SA sad, SU surprised; angle FL/HL/S/HR/FR. Files are found at any depth;
    the folder name is not checked (a few published copies are flat).

    Options:
      angles: angles to keep (default ("S",), straight).
      sessions: sessions to keep (default both; the session stays only in
        the path -- subject = gender + id, e.g. "F01").
    """
    label = "KDEF"
    root = dataset_root(data_dir, label, KDEF_HELP)
    angles = {a.upper() for a in norm_choice(angles, [a.lower() for a in KDEF_ANGLES],
                                             "angles", label)}
    sessions = {s.upper() for s in norm_choice(sessions, ["a", "b"], "sessions", label)}
    records, skipped = [], collections.Counter()
    for path, m in matching_files(root, _KDEF_RE, label, KDEF_HELP):
        session, gender, ident, code, angle = (g.upper() for g in m.groups())
        ours = lookup(code, KDEF_EXPRESSIONS, label, path)
        if angle not in angles:
            skipped[f"angle {angle}"] += 1
        elif session not in sessions:
            skipped[f"session {session}"] += 1
        else:
            records.append(Record(path, gender + ident, ours, ""))
    return ScanResult("kdef", root, records, skipped)


SOURCE = importer("kdef", scan_kdef)
