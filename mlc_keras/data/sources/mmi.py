"""MMI Facial Expression Database (Pantic et al. 2005): sessions + a labels CSV -> manifest."""

import collections
import csv
import os

from mlc_keras.data.manifest import ManifestError, Record, dataset_root
from mlc_keras.data.sources.scanning import ScanResult, importer
from mlc_keras.expressions import canonical_expression

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


SOURCE = importer("mmi", scan_mmi)
