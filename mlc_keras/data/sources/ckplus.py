"""CK+, the Extended Cohn-Kanade data set (Lucey et al. 2010): labelled sequences -> manifest."""

import collections
import os
import re

from mlc_keras.data.manifest import ManifestError, Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer, matching_files, walk_files
from mlc_keras.expressions import UnknownExpressionError

CKPLUS_LABELS = {
    0: "neutral",
    1: "angry",
    2: None,  # contempt
    3: "disgusted",
    4: "fearful",
    5: "happy",
    6: "sad",
    7: "surprised",
}
CKPLUS_HELP = ("expected the CK+ layout cohn-kanade-images/<subject>/<sequence>/"
               "<subject>_<sequence>_<frame>.png with labels in Emotion/<subject>/<sequence>/"
               "<subject>_<sequence>_<frame>_emotion.txt, e.g. cohn-kanade-images/S005/001/"
               "S005_001_00000011.png and Emotion/S005/001/S005_001_00000011_emotion.txt")
_CK_FRAME_RE = re.compile(r"^(S\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)
_CK_LABEL_RE = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)


def _find_dir(root, name, depth=2):
    """``root/name`` or a folder of that name up to ``depth`` levels below."""
    if os.path.basename(root.rstrip(os.sep)).lower() == name.lower():
        return root
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for folder in frontier:
            try:
                entries = sorted(os.listdir(folder))
            except OSError:
                continue
            for e in entries:
                full = os.path.join(folder, e)
                if os.path.isdir(full):
                    if e.lower() == name.lower():
                        return full
                    nxt.append(full)
        frontier = nxt
    return None


def scan_ckplus(data_dir, images_dir=None, labels_dir=None, neutral_frames=1, peak_frames=1,
                unlabelled_neutral=False):
    """Extended Cohn-Kanade (CK+, Lucey et al. 2010).

    Layout: ``cohn-kanade-images/S005/001/S005_001_00000011.png`` and
    ``Emotion/S005/001/S005_001_00000011_emotion.txt`` holding one float
    0-7 (0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy,
    6 sadness, 7 surprise). The two folders are looked for up to two levels
    below ``data_dir`` (the downloads unpack to
    ``extended-cohn-kanade-images/cohn-kanade-images`` and
    ``Emotion_labels/Emotion``) unless given.

    Per labelled sequence: the first ``neutral_frames`` frames -> neutral,
    the last ``peak_frames`` frames up to the labelled (peak) frame -> the
    label. Contempt sequences contribute neither (skipped, counted);
    unlabelled sequences are skipped and counted unless
    ``unlabelled_neutral`` (then their first frames are used as neutral).
    subject = "S005".
    """
    label = "CK+"
    root = dataset_root(data_dir, label, CKPLUS_HELP)
    neutral_frames, peak_frames = int(neutral_frames), int(peak_frames)
    if neutral_frames < 0 or peak_frames < 1:
        raise ValueError(f"{label}: neutral_frames must be >= 0 and peak_frames >= 1")
    images = os.path.abspath(images_dir) if images_dir else _find_dir(root, "cohn-kanade-images")
    labels = os.path.abspath(labels_dir) if labels_dir else _find_dir(root, "Emotion")
    missing = [n for n, d in (("cohn-kanade-images", images), ("Emotion", labels))
               if not d or not os.path.isdir(d)]
    if missing:
        raise ManifestError(f"{label} folder {root!r} lacks {' and '.join(missing)}; {CKPLUS_HELP}")
    # sequences: (subject, seq) -> sorted frame paths
    sequences = {}
    for path, m in matching_files(images, _CK_FRAME_RE, label, CKPLUS_HELP):
        sequences.setdefault((m.group(1).upper(), m.group(2)), []).append((int(m.group(3)), path))
    seq_labels = {}
    for folder, name in walk_files(labels):
        m = _CK_LABEL_RE.match(name)
        if not m:
            continue
        path = os.path.join(folder, name)
        with open(path) as f:
            text = f.read().strip()
        try:
            value = float(text)
        except ValueError:
            raise ManifestError(f"{label}: label file {path!r} holds {text!r}, not a number 0-7") from None
        if value != int(value) or int(value) not in CKPLUS_LABELS:
            raise UnknownExpressionError(
                f"{label}: label file {path!r} holds unknown emotion label {text!r}; known: "
                + ", ".join(f"{k} {v or 'contempt'}" for k, v in CKPLUS_LABELS.items()))
        seq_labels[(m.group(1).upper(), m.group(2))] = (int(value), int(m.group(3)), path)
    records, skipped = [], collections.Counter()
    orphans = sorted(set(seq_labels) - set(sequences))
    if orphans:
        skipped["label without images"] += len(orphans)
    for key in sorted(sequences):
        subject, _seq = key
        frames = sorted(sequences[key])
        if key not in seq_labels:
            skipped["unlabelled sequence"] += 1
            if unlabelled_neutral:
                records += [Record(p, subject, "neutral", "") for _, p in frames[:neutral_frames]]
            continue
        value, peak, path = seq_labels[key]
        ours = CKPLUS_LABELS[value]
        if ours is None:
            skipped["contempt sequence"] += 1
            continue
        upto = [(n, p) for n, p in frames if n <= peak]
        if not upto or upto[-1][0] != peak:
            raise ManifestError(f"{label}: {path!r} labels frame {peak}, which is not in "
                                f"{os.path.dirname(frames[0][1])!r}; {CKPLUS_HELP}")
        peaks = upto[-peak_frames:]
        neutral = [f for f in upto[:neutral_frames] if f not in peaks]
        records += [Record(p, subject, "neutral", "") for _, p in neutral]
        records += [Record(p, subject, ours, "") for _, p in peaks]
    return ScanResult("ckplus", root, records, skipped)


SOURCE = importer("ckplus", scan_ckplus)
