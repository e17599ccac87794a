"""RaFD, the Radboud Faces Database (Langner et al. 2010): files -> manifest."""

import collections
import re

from mlc_keras.data.manifest import ManifestError, Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, lookup, matching_files, norm_choice

RAFD_EXPRESSIONS = {
    "angry": "angry",
    "contemptuous": None,
    "disgusted": "disgusted",
    "fearful": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprised": "surprised",
}
RAFD_ANGLES = ("000", "045", "090", "135", "180")
RAFD_GAZES = ("frontal", "left", "right")
_RAFD_RE = re.compile(
    r"^Rafd(\d{3})_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)\.(jpe?g|png)$",
    re.IGNORECASE)
RAFD_HELP = ("expected Radboud Faces Database files "
             "Rafd<angle>_<subject id>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg, e.g. "
             "Rafd090_01_Caucasian_female_angry_frontal.jpg (any sub-folder depth)")


def scan_rafd(data_dir, angles=("090",), gazes=RAFD_GAZES):
    """Radboud Faces Database (Langner et al. 2010).

    Layout: ``Rafd<angle>_<id>_<ethnicity>_<gender>_<emotion>_<gaze>.jpg``
    anywhere under ``data_dir``; angle 000/045/090/135/180 (090 = frontal
    camera), emotions angry, contemptuous (skipped), disgusted, fearful,
    happy, neutral, sad, surprised; gaze frontal/left/right.

    Options:
      angles: camera angles to keep (default ("090",)); ints are zero-padded.
      gazes: gaze directions to keep (default all three).

    subject = the id as written ("01"); the gaze is not part of the subject,
    images with another angle / gaze are skipped and counted (under
    "angle NNN" / "gaze X", before the emotion is considered, so
    "contemptuous" counts only images of the kept views).
    """
    label = "RaFD"
    root = dataset_root(data_dir, label, RAFD_HELP)
    angles = norm_choice(angles, RAFD_ANGLES, "angles", label,
                         fmt=lambda v: f"{int(v):03d}" if str(v).strip().isdigit() else str(v))
    gazes = norm_choice(gazes, RAFD_GAZES, "gazes", label)
    records, skipped = [], collections.Counter()
    for path, m in matching_files(root, _RAFD_RE, label, RAFD_HELP):
        angle, subject, _eth, _gender, emotion, gaze = m.groups()[:6]
        if gaze.lower() not in RAFD_GAZES:
            raise ManifestError(f"{label}: {path!r} has unknown gaze {gaze!r}; {RAFD_HELP}")
        ours = lookup(emotion, RAFD_EXPRESSIONS, label, path)
        if angle not in angles:
            skipped[f"angle {angle}"] += 1
        elif gaze.lower() not in gazes:
            skipped[f"gaze {gaze.lower()}"] += 1
        elif ours is None:
            skipped[emotion.lower()] += 1
        else:
            records.append(Record(path, subject, ours, ""))
    return ScanResult("rafd", root, records, skipped)


SOURCE = importer("rafd", scan_rafd)
