"""Importers that turn published face data set layouts into a manifest CSV.

Unlike ``london.import_london`` these importers do NOT re-encode or align
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

Usage::

    from mlc_keras.data.importers import import_dataset
    manifest = import_dataset("rafd", "/data/RaFD", "/data/rafd_manifest",
                              angles=("090",), gazes=("frontal",))

``import_dataset`` writes ``OUT_DIR/manifest.csv`` (via
``manifest.write_manifest``) and ``OUT_DIR/import.json`` (importer, options,
summary), prints the summary and returns the manifest path.
``scan_dataset`` returns the records and the summary without writing.

Registry: ``IMPORTERS[name]`` is a function ``scan(data_dir, **options) ->
ScanResult``; see each ``scan_*`` docstring for its layout and options.
"""

import collections
import csv
import dataclasses
import json
import os
import re

from mlc_keras.expressions import EXPRESSIONS, UnknownExpressionError, canonical_expression
from mlc_keras.data.manifest import ManifestError, Record, dataset_root, write_manifest

__all__ = [
    "IMPORTERS",
    "CFEE_CATEGORIES",
    "ScanResult",
    "import_dataset",
    "scan_dataset",
    "scan_cfee",
    "scan_rafd",
    "scan_kdef",
    "scan_jaffe",
    "scan_ckplus",
    "scan_mmi",
    "scan_yale",
    "scan_folders",
]

MANIFEST_NAME = "manifest.csv"
SUMMARY_NAME = "import.json"
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


# ----------------------------------------------------------------- helpers




def _walk_files(root):
    """All non-hidden files under ``root`` (sorted, recursive)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield folder, name


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _no_match(label, root, layout_help, seen):
    what = "is empty" if not seen else f"holds no file named as expected ({seen} file(s) seen)"
    return ManifestError(f"{label} folder {root!r} {what}; {layout_help}")


def _lookup(code, table, label, path):
    """Maps a data set code through ``table`` (code -> ours or None = known
    extra). Raises UnknownExpressionError naming the file and the codes."""
    key = str(code).strip().lower()
    if key not in table:
        known = ", ".join(sorted(table))
        raise UnknownExpressionError(
            f"{label}: {path!r} has unknown expression code {code!r}; known codes: {known}"
        )
    return table[key]


# ----------------------------------------------------------------- RaFD

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


def _norm_choice(values, allowed, what, label, fmt=str):
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = {fmt(v).strip().lower() for v in values}
    bad = sorted(out - set(allowed))
    if bad or not out:
        raise ValueError(f"{label}: {what} {bad or '(none)'} not among {', '.join(allowed)}")
    return out


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
    angles = _norm_choice(angles, RAFD_ANGLES, "angles", label,
                          fmt=lambda v: f"{int(v):03d}" if str(v).strip().isdigit() else str(v))
    gazes = _norm_choice(gazes, RAFD_GAZES, "gazes", label)
    records, skipped, seen, matched = [], collections.Counter(), 0, 0
    for folder, name in _walk_files(root):
        seen += 1
        m = _RAFD_RE.match(name)
        if not m:
            continue
        matched += 1
        angle, subject, _eth, _gender, emotion, gaze = m.groups()[:6]
        path = os.path.join(folder, name)
        if gaze.lower() not in RAFD_GAZES:
            raise ManifestError(f"{label}: {path!r} has unknown gaze {gaze!r}; {RAFD_HELP}")
        ours = _lookup(emotion, RAFD_EXPRESSIONS, label, path)
        if angle not in angles:
            skipped[f"angle {angle}"] += 1
        elif gaze.lower() not in gazes:
            skipped[f"gaze {gaze.lower()}"] += 1
        elif ours is None:
            skipped[emotion.lower()] += 1
        else:
            records.append(Record(path, subject, ours, ""))
    if not matched:
        raise _no_match(label, root, RAFD_HELP, seen)
    return ScanResult("rafd", root, records, skipped)


# ----------------------------------------------------------------- KDEF

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
    angles = {a.upper() for a in _norm_choice(angles, [a.lower() for a in KDEF_ANGLES],
                                              "angles", label)}
    sessions = {s.upper() for s in _norm_choice(sessions, ["a", "b"], "sessions", label)}
    records, skipped, seen, matched = [], collections.Counter(), 0, 0
    for folder, name in _walk_files(root):
        seen += 1
        m = _KDEF_RE.match(name)
        if not m:
            continue
        matched += 1
        session, gender, ident, code, angle = (g.upper() for g in m.groups())
        path = os.path.join(folder, name)
        ours = _lookup(code, KDEF_EXPRESSIONS, label, path)
        if angle not in angles:
            skipped[f"angle {angle}"] += 1
        elif session not in sessions:
            skipped[f"session {session}"] += 1
        else:
            records.append(Record(path, gender + ident, ours, ""))
    if not matched:
        raise _no_match(label, root, KDEF_HELP, seen)
    return ScanResult("kdef", root, records, skipped)


# ----------------------------------------------------------------- JAFFE

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
    records, skipped, seen = [], collections.Counter(), 0
    for folder, name in _walk_files(root):
        seen += 1
        m = _JAFFE_RE.match(name)
        if not m:
            continue
        subject, code = m.group(1).upper(), m.group(2)
        path = os.path.join(folder, name)
        records.append(Record(path, subject, _lookup(code, JAFFE_EXPRESSIONS, label, path), ""))
    if not records:
        raise _no_match(label, root, JAFFE_HELP, seen)
    return ScanResult("jaffe", root, records, skipped, [])


# ----------------------------------------------------------------- CK+

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
    seen = 0
    for folder, name in _walk_files(images):
        seen += 1
        m = _CK_FRAME_RE.match(name)
        if m:
            key = (m.group(1).upper(), m.group(2))
            sequences.setdefault(key, []).append((int(m.group(3)), os.path.join(folder, name)))
    if not sequences:
        raise _no_match(label, images, CKPLUS_HELP, seen)
    seq_labels = {}
    for folder, name in _walk_files(labels):
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


# ----------------------------------------------------------------- CFEE

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
    for folder, name in _walk_files(root):
        seen += 1
        subject = os.path.basename(folder)
        stem, ext = os.path.splitext(name)
        if folder == root or not _is_image(name):
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
        raise _no_match(label, root, CFEE_HELP, seen)
    return ScanResult("cfee", root, records, skipped)


# ----------------------------------------------------------------- MMI

MMI_HELP = ("expected MMI session folders Sessions/<session id>/<file>.jpg|.png, e.g. "
            "Sessions/1766/S001-102.jpg, plus sessions_csv= a CSV with header "
            "session,subject,expression[,file] (e.g. 1766,S001,neutral,S001-102.jpg); "
            "or convert to <root>/<expression>/<subject>_<n>.jpg and use the 'folders' importer")
MMI_EXTRAS = ("", "none", "contempt", "contemptuous", "other")


def scan_mmi(data_dir, sessions_csv=None):
    """MMI Facial Expression Database (Pantic et al. 2005), kept simple.

    MMI is distributed (after a licence agreement) as ``Sessions/<id>/``
    folders holding a video or still images plus XML metadata (session,
    subject, AU / emotion annotations) whose schema we do not parse. The
    paper used 30 neutral faces from it. Give the labels yourself:

    * ``sessions_csv``: a CSV with header ``session,subject,expression`` and
      an optional ``file`` column. Without ``file`` every image of the
      session gets the row's labels; with it, only that file (one row per
      image). Expressions: any of ours (aliases allowed); empty / "none" /
      "contempt" / "other" rows are skipped and counted; anything else is an
      error. Session folders without a row are skipped and counted.
    * Or arrange the images as ``<root>/<expression>/<subject>_<n>.jpg`` and
      use the ``folders`` importer.

    ``data_dir`` is the folder holding ``Sessions`` (or ``Sessions`` itself).
    Only .jpg/.jpeg/.png/.bmp/.gif stills are listed (videos are not).
    """
    label = "MMI"
    root = dataset_root(data_dir, label, MMI_HELP)
    sessions_dir = root if os.path.basename(root).lower() == "sessions" else os.path.join(root, "Sessions")
    if not os.path.isdir(sessions_dir):
        raise ManifestError(f"{label} folder {root!r} lacks the sub-folder Sessions; {MMI_HELP}")
    if not sessions_csv:
        raise ManifestError(f"{label}: no sessions_csv given; {MMI_HELP}")
    if not os.path.isfile(sessions_csv):
        raise ManifestError(f"{label}: sessions_csv {os.fspath(sessions_csv)!r} does not exist; {MMI_HELP}")
    rows = {}  # session -> list of (file or None, subject, expression)
    with open(sessions_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("session", "subject", "expression") if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{label}: sessions_csv {os.fspath(sessions_csv)!r} lacks column(s) "
                                f"{', '.join(missing)}; {MMI_HELP}")
        for line, row in enumerate(reader, start=2):
            session = (row.get("session") or "").strip()
            subject = (row.get("subject") or "").strip()
            if not session or not subject:
                raise ManifestError(f"{label}: {os.fspath(sessions_csv)!r} line {line}: empty session or subject")
            rows.setdefault(session, []).append(
                ((row.get("file") or "").strip() or None, subject, (row.get("expression") or "").strip(),
                 f"{os.fspath(sessions_csv)!r} line {line}"))
    stills = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
    records, skipped, found = [], collections.Counter(), 0
    for session in sorted(os.listdir(sessions_dir)):
        folder = os.path.join(sessions_dir, session)
        if session.startswith(".") or not os.path.isdir(folder):
            continue
        images = sorted(n for n in os.listdir(folder) if n.lower().endswith(stills))
        found += len(images)
        if not images:
            continue
        if session not in rows:
            skipped["session not in sessions_csv"] += 1
            continue
        for file, subject, expression, where in rows[session]:
            if expression.lower() in MMI_EXTRAS:
                skipped[f"expression {expression or '(empty)'}"] += 1
                continue
            ours = canonical_expression(expression, source=f"{label} {where}")
            chosen = images if file is None else [file]
            for name in chosen:
                path = os.path.join(folder, name)
                if not os.path.isfile(path):
                    raise ManifestError(f"{label} {where}: {path!r} does not exist")
                records.append(Record(path, subject, ours, ""))
    if not found:
        raise ManifestError(f"{label}: {sessions_dir!r} holds no session folder with .jpg/.png images; {MMI_HELP}")
    return ScanResult("mmi", root, records, skipped)


# ----------------------------------------------------------------- Yale

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
    records, skipped, seen, matched = [], collections.Counter(), 0, 0
    for folder, name in _walk_files(root):
        seen += 1
        m = _YALE_RE.match(name)
        if not m:
            continue
        matched += 1
        path = os.path.join(folder, name)
        ours = _lookup(m.group(2), YALE_EXPRESSIONS, label, path)
        if ours is None:
            skipped[m.group(2).lower()] += 1
        else:
            records.append(Record(path, m.group(1).lower(), ours, ""))
    if not matched:
        raise _no_match(label, root, YALE_HELP, seen)
    return ScanResult("yale", root, records, skipped)


# ----------------------------------------------------------------- folders

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
                        if not n.startswith(".") and _is_image(n) and os.path.isfile(os.path.join(folder, n)))
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


# ----------------------------------------------------------------- registry

IMPORTERS = {
    "cfee": scan_cfee,
    "rafd": scan_rafd,
    "kdef": scan_kdef,
    "jaffe": scan_jaffe,
    "ckplus": scan_ckplus,
    "mmi": scan_mmi,
    "yale": scan_yale,
    "folders": scan_folders,
}


def scan_dataset(name, data_dir, **options):
    """Runs importer ``name`` without writing; returns its ``ScanResult``."""
    key = str(name).strip().lower().replace("+", "plus").replace("-", "")
    if key not in IMPORTERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(IMPORTERS)}")
    return IMPORTERS[key](data_dir, **options)


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in (sorted(value, key=str) if isinstance(value, (set, frozenset)) else value)]
    return os.fspath(value) if hasattr(value, "__fspath__") else str(value)


def import_dataset(name, data_dir, out_dir, progress=True, **options):
    """Scans data set ``name`` and writes ``out_dir/manifest.csv``.

    Also writes ``out_dir/import.json`` ({"importer", "options",
    "summary"}) and, with ``progress``, prints the summary (images,
    subjects, per-expression counts, skipped counts by reason, warnings).

    Returns:
      str, the manifest path.

    Raises:
      ManifestError: the layout does not match, or nothing usable was found.
      UnknownExpressionError: an expression code unknown to that data set.
    """
    result = scan_dataset(name, data_dir, **options)
    summary = result.summary()
    if not result.records:
        raise ManifestError(
            f"{result.name}: {result.data_dir!r} has no image of our classes "
            f"({', '.join(EXPRESSIONS)}); skipped: {summary['skipped'] or 'none'}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    write_manifest(manifest_path, result.records)
    tmp = os.path.join(out_dir, SUMMARY_NAME + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"importer": result.name, "options": _jsonable(options), "summary": summary}, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, SUMMARY_NAME))
    if progress:
        exprs = ", ".join(f"{e} {n}" for e, n in summary["expressions"].items())
        skipped = ", ".join(f"{k} {v}" for k, v in summary["skipped"].items()) or "none"
        print(f"{result.name}: imported {summary['imported']} images of {summary['subjects']} "
              f"subjects ({exprs}); skipped {summary['skipped_total']} ({skipped}) -> {manifest_path}",
              flush=True)
        for w in summary["warnings"]:
            print(f"{result.name}: warning: {w}", flush=True)
    return manifest_path


def read_import_summary(out_dir):
    """The summary dict stored by the last ``import_dataset`` into ``out_dir``, or None."""
    try:
        with open(os.path.join(out_dir, SUMMARY_NAME)) as f:
            return json.load(f).get("summary")
    except (OSError, ValueError):
        return None
