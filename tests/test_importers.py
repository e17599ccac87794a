"""Tests of the importers in mlc_keras.data.sources on tiny trees in the published namings.

Every tree holds 4x4 images written with PIL; nothing is re-encoded by the
importers, so the manifests must point at these very files.
"""

import collections
import json
import os

import pytest
from PIL import Image

from mlc_keras.data import sources as importers
from mlc_keras.data.sources import IMPORTERS, import_dataset, read_import_summary, scan_dataset
from mlc_keras.data.manifest import ManifestError, read_manifest
from mlc_keras.expressions import UnknownExpressionError

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tiff": "TIFF", ".tif": "TIFF", ".gif": "GIF"}


def _img(path, fmt=None):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = fmt or FORMATS[os.path.splitext(path)[1].lower()]
    Image.new("RGB", (4, 4), (120, 130, 140)).save(path, format=fmt)
    return path


def _run(name, root, out, **options):
    path = import_dataset(name, root, out, progress=False, **options)
    assert path == os.path.join(str(out), "manifest.csv")
    records = read_manifest(path)
    return records, read_import_summary(str(out))


def _pairs(records):
    return collections.Counter((r.subject, r.expression) for r in records)


def test_registry_complete():
    assert set(IMPORTERS) == {"cfee", "rafd", "kdef", "jaffe", "ckplus", "mmi", "yale", "folders"}
    with pytest.raises(ValueError, match="unknown data set"):
        scan_dataset("nope", ".")


# ----------------------------------------------------------------- RaFD


def _rafd(root):
    for angle in ("090", "045"):
        for sid, eth, gender in (("01", "Caucasian", "female"), ("02", "Moroccan", "male")):
            for emo in ("angry", "contemptuous", "happy", "neutral"):
                for gaze in ("frontal", "left"):
                    _img(root / f"Rafd{angle}_{sid}_{eth}_{gender}_{emo}_{gaze}.jpg")
    return root


def test_rafd_defaults(tmp_path):
    records, summary = _run("rafd", _rafd(tmp_path / "rafd"), tmp_path / "out")
    # angle 090 only, both gazes, contemptuous skipped.
    assert _pairs(records) == {(s, e): 2 for s in ("01", "02") for e in ("angry", "happy", "neutral")}
    assert summary["skipped"] == {"angle 045": 16, "contemptuous": 4}
    assert all(os.path.basename(r.path).startswith("Rafd090_") for r in records)
    assert all(os.path.isfile(r.path) for r in records)


def test_rafd_options(tmp_path):
    root = _rafd(tmp_path / "rafd")
    records, summary = _run("rafd", root, tmp_path / "out", angles=[45, "090"], gazes=("frontal",))
    assert len(records) == 2 * 2 * 3
    assert {r.subject for r in records} == {"01", "02"}
    assert summary["skipped"] == {"gaze left": 16, "contemptuous": 4}  # view filters count first
    with pytest.raises(ValueError, match="gazes"):
        scan_dataset("rafd", root, gazes=("up",))


def test_rafd_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"is empty.*Rafd090_01_Caucasian_female_angry_frontal\.jpg"):
        scan_dataset("rafd", tmp_path / "empty")
    _img(tmp_path / "kdef" / "AF01" / "AF01ANS.JPG", "JPEG")
    with pytest.raises(ManifestError, match=r"no file named as expected.*Rafd<angle>"):
        scan_dataset("rafd", tmp_path / "kdef")
    with pytest.raises(ManifestError, match="does not exist"):
        scan_dataset("rafd", tmp_path / "absent")
    _img(tmp_path / "bad" / "Rafd090_03_Caucasian_male_bored_frontal.jpg")
    with pytest.raises(UnknownExpressionError, match="'bored'.*contemptuous"):
        scan_dataset("rafd", tmp_path / "bad")


# ----------------------------------------------------------------- KDEF


def test_kdef(tmp_path):
    root = tmp_path / "KDEF"
    for session in "AB":
        for gender, ident in (("F", "01"), ("M", "12")):
            folder = root / f"{session}{gender}{ident}"
            for code in ("AF", "AN", "DI", "HA", "NE", "SA", "SU"):
                for angle in ("S", "FL", "HR"):
                    _img(folder / f"{session}{gender}{ident}{code}{angle}.JPG", "JPEG")
    records, summary = _run("kdef", root, tmp_path / "out")
    expected = {(s, e): 2 for s in ("F01", "M12")
                for e in ("fearful", "angry", "disgusted", "happy", "neutral", "sad", "surprised")}
    assert _pairs(records) == expected
    assert summary["skipped"] == {"angle FL": 28, "angle HR": 28}
    assert {os.path.basename(os.path.dirname(r.path))[0] for r in records} == {"A", "B"}
    records, summary = _run("kdef", root, tmp_path / "out2", angles=("S", "HR"), sessions="A")
    assert len(records) == 2 * 7 * 2 and summary["skipped"]["session B"] == 28


def test_kdef_errors(tmp_path):
    _img(tmp_path / "j" / "KA.AN1.39.tiff")
    with pytest.raises(ManifestError, match=r"AF01/AF01ANS\.JPG"):
        scan_dataset("kdef", tmp_path / "j")
    _img(tmp_path / "x" / "AF01" / "AF01XXS.JPG", "JPEG")
    with pytest.raises(UnknownExpressionError, match="'XX'"):
        scan_dataset("kdef", tmp_path / "x")


# ----------------------------------------------------------------- JAFFE


def test_jaffe(tmp_path):
    root = tmp_path / "jaffe"
    n = 1
    for subject in ("KA", "NA"):
        for code in ("AN", "DI", "FE", "HA", "NE", "SA", "SU"):
            for idx in (1, 2):
                _img(root / f"{subject}.{code}{idx}.{n}.tiff")
                n += 1
    (root / "README").write_text("not an image")
    records, summary = _run("jaffe", root, tmp_path / "out")
    assert len(records) == 28 and {r.subject for r in records} == {"KA", "NA"}
    assert _pairs(records)[("KA", "fearful")] == 2
    assert summary["skipped"] == {} and summary["warnings"] == []


def test_jaffe_errors(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match=r"KA\.AN1\.39\.tiff"):
        scan_dataset("jaffe", tmp_path / "e")
    _img(tmp_path / "b" / "KA.XY1.39.tiff")
    with pytest.raises(UnknownExpressionError, match="'XY'"):
        scan_dataset("jaffe", tmp_path / "b")


# ----------------------------------------------------------------- CK+


def _ck_sequence(root, subject, seq, frames, label=None):
    for f in range(1, frames + 1):
        _img(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png")
    if label is not None:
        d = root / "Emotion" / subject / seq
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(f"   {label:.7e}\n")


def test_ckplus(tmp_path):
    root = tmp_path / "ck"
    _ck_sequence(root, "S005", "001", 11, 3.0)   # disgust
    _ck_sequence(root, "S005", "002", 5, None)   # unlabelled
    _ck_sequence(root, "S010", "004", 8, 5.0)    # happy
    _ck_sequence(root, "S010", "006", 6, 2.0)    # contempt
    records, summary = _run("ckplus", root, tmp_path / "out")
    assert _pairs(records) == {("S005", "neutral"): 1, ("S005", "disgusted"): 1,
                               ("S010", "neutral"): 1, ("S010", "happy"): 1}
    by = {(r.subject, r.expression): os.path.basename(r.path) for r in records}
    assert by[("S005", "neutral")] == "S005_001_00000001.png"
    assert by[("S005", "disgusted")] == "S005_001_00000011.png"
    assert summary["skipped"] == {"unlabelled sequence": 1, "contempt sequence": 1}
    records, _ = _run("ckplus", root, tmp_path / "out2", peak_frames=3, neutral_frames=2,
                      unlabelled_neutral=True)
    assert _pairs(records) == {("S005", "neutral"): 4, ("S005", "disgusted"): 3,
                               ("S010", "neutral"): 2, ("S010", "happy"): 3}


def test_ckplus_nested_download_folders(tmp_path):
    root = tmp_path / "ck"
    _ck_sequence(root / "extended-cohn-kanade-images", "S005", "001", 3, 7.0)
    os.rename(root / "extended-cohn-kanade-images" / "Emotion", tmp_path / "Emotion")
    (root / "Emotion_labels").mkdir()
    os.rename(tmp_path / "Emotion", root / "Emotion_labels" / "Emotion")
    records, _ = _run("ckplus", root, tmp_path / "out")
    assert _pairs(records) == {("S005", "neutral"): 1, ("S005", "surprised"): 1}


def test_ckplus_errors(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match=r"lacks cohn-kanade-images and Emotion.*S005_001_00000011\.png"):
        scan_dataset("ckplus", tmp_path / "e")
    _ck_sequence(tmp_path / "bad", "S005", "001", 3, 9.0)
    with pytest.raises(UnknownExpressionError, match="unknown emotion label"):
        scan_dataset("ckplus", tmp_path / "bad")
    root = tmp_path / "flat"
    _img(root / "cohn-kanade-images" / "frame1.png")
    (root / "Emotion").mkdir()
    with pytest.raises(ManifestError, match="no file named as expected.*S005_001_00000011"):
        scan_dataset("ckplus", root)


# ----------------------------------------------------------------- CFEE


def test_cfee(tmp_path):
    root = tmp_path / "cfee"
    for subject in ("1", "2"):
        for nn in range(1, 23):
            _img(root / subject / f"{subject}_{nn:02d}.jpg")
    _img(root / "2" / "2_happily_surprised.jpg")
    records, summary = _run("cfee", root, tmp_path / "out")
    assert _pairs(records) == {(s, e): 1 for s in ("1", "2") for e in
                               ("neutral", "happy", "sad", "fearful", "angry", "surprised", "disgusted")}
    assert summary["skipped_total"] == 31 and summary["skipped"]["happily surprised"] == 3
    assert summary["skipped"]["awed"] == 2
    by = {(r.subject, r.expression): os.path.basename(r.path) for r in records}
    assert by[("1", "fearful")] == "1_04.jpg" and by[("2", "disgusted")] == "2_07.jpg"


def test_cfee_mapping_override(tmp_path):
    root = tmp_path / "cfee"
    for nn in (1, 2):
        _img(root / "S1" / f"S1_{nn:02d}.jpg")
    records, _ = _run("cfee", root, tmp_path / "out", mapping={1: "happiness", "02": "neutral"})
    assert {os.path.basename(r.path): r.expression for r in records} == {
        "S1_01.jpg": "happy", "S1_02.jpg": "neutral"}


def test_cfee_errors(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match=r"<subject>_<NN>\.jpg.*1/1_02\.jpg"):
        scan_dataset("cfee", tmp_path / "e")
    _img(tmp_path / "r" / "x" / "Rafd090_01_Caucasian_female_angry_frontal.jpg")
    with pytest.raises(ManifestError, match="no file named as expected"):
        scan_dataset("cfee", tmp_path / "r")
    _img(tmp_path / "b" / "1" / "1_23.jpg")
    with pytest.raises(UnknownExpressionError, match="unknown category '23'"):
        scan_dataset("cfee", tmp_path / "b")


# ----------------------------------------------------------------- MMI


def test_mmi(tmp_path):
    root = tmp_path / "mmi"
    _img(root / "Sessions" / "100" / "S001-100.jpg")
    _img(root / "Sessions" / "100" / "S001-101.jpg")
    _img(root / "Sessions" / "200" / "a.png")
    _img(root / "Sessions" / "200" / "b.png")
    _img(root / "Sessions" / "300" / "x.jpg")
    (root / "Sessions" / "300" / "session.xml").write_text("<session/>")
    _img(root / "Sessions" / "400" / "y.jpg")
    csv_path = tmp_path / "mmi.csv"
    csv_path.write_text("session,subject,expression,file\n"
                        "100,S001,neutral,\n"
                        "200,S002,happiness,b.png\n"
                        "300,S003,contempt,\n")
    records, summary = _run("mmi", root, tmp_path / "out", sessions_csv=str(csv_path))
    assert _pairs(records) == {("S001", "neutral"): 2, ("S002", "happy"): 1}
    assert summary["skipped"] == {"expression contempt": 1, "session not in sessions_csv": 1}
    assert json.load(open(tmp_path / "out" / "import.json"))["options"]["sessions_csv"] == str(csv_path)


def test_mmi_errors(tmp_path):
    root = tmp_path / "mmi"
    (root / "Sessions").mkdir(parents=True)
    with pytest.raises(ManifestError, match="no sessions_csv"):
        scan_dataset("mmi", root)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("session,subject,expression\n1,S1,bored\n")
    with pytest.raises(ManifestError, match=r"no session folder.*Sessions/1766/S001-102\.jpg"):
        scan_dataset("mmi", root, sessions_csv=str(csv_path))
    _img(root / "Sessions" / "1" / "a.jpg")
    with pytest.raises(UnknownExpressionError, match="'bored'"):
        scan_dataset("mmi", root, sessions_csv=str(csv_path))
    with pytest.raises(ManifestError, match="lacks the sub-folder Sessions"):
        scan_dataset("mmi", tmp_path, sessions_csv=str(csv_path))


# ----------------------------------------------------------------- Yale


YALE = ("centerlight", "glasses", "happy", "leftlight", "noglasses", "normal", "rightlight", "sad",
        "sleepy", "surprised", "wink")


def test_yale(tmp_path):
    root = tmp_path / "yalefaces"
    for s in ("subject01", "subject02"):
        for cond in YALE:
            _img(root / f"{s}.{cond}", "GIF")
    _img(root / "subject01.gif", "GIF")
    (root / "Readme.txt").write_text("yale")
    records, summary = _run("yale", root, tmp_path / "out")
    assert _pairs(records) == {(s, e): 1 for s in ("subject01", "subject02")
                               for e in ("neutral", "happy", "sad", "surprised")}
    assert summary["skipped_total"] == 15 and summary["skipped"]["wink"] == 2
    assert Image.open(records[0].path).format == "GIF"


def test_yale_errors(tmp_path):
    _img(tmp_path / "k" / "AF01" / "AF01ANS.JPG", "JPEG")
    with pytest.raises(ManifestError, match=r"subject01\.happy"):
        scan_dataset("yale", tmp_path / "k")
    _img(tmp_path / "b" / "subject01.angry", "GIF")
    with pytest.raises(UnknownExpressionError, match="'angry'.*sleepy"):
        scan_dataset("yale", tmp_path / "b")


# ----------------------------------------------------------------- folders


def test_folders(tmp_path):
    root = tmp_path / "f"
    _img(root / "happy" / "S1_a.jpg")
    _img(root / "happiness" / "S2_b.png")
    _img(root / "neutral" / "S1_x.jpg")
    _img(root / "contempt" / "S1_c.jpg")
    (root / "neutral" / "notes.txt").write_text("x")
    _img(root / "top.jpg")
    records, summary = _run("folders", root, tmp_path / "out")
    assert _pairs(records) == {("S1", "happy"): 1, ("S2", "happy"): 1, ("S1", "neutral"): 1}
    assert summary["skipped"] == {"contempt": 1}
    records, _ = _run("folders", root, tmp_path / "out2", subject_regex=r"^(?P<subject>S)\d")
    assert {r.subject for r in records} == {"S"}


def test_folders_errors(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match=r"happy/S001_1\.jpg"):
        scan_dataset("folders", tmp_path / "e")
    _img(tmp_path / "b" / "bored" / "S1_a.jpg")
    with pytest.raises(UnknownExpressionError, match="'bored'"):
        scan_dataset("folders", tmp_path / "b")
    _img(tmp_path / "n" / "happy" / "nosubject.jpg")
    with pytest.raises(ManifestError, match="subject_regex"):
        scan_dataset("folders", tmp_path / "n")


def test_nothing_of_our_classes(tmp_path):
    _img(tmp_path / "y" / "subject01.wink", "GIF")
    with pytest.raises(ManifestError, match="no image of our classes.*wink"):
        import_dataset("yale", tmp_path / "y", tmp_path / "out", progress=False)


def test_summary_printed(tmp_path, capsys):
    _img(tmp_path / "y" / "subject01.normal", "GIF")
    _img(tmp_path / "y" / "subject01.wink", "GIF")
    import_dataset("yale", tmp_path / "y", tmp_path / "out")
    out = capsys.readouterr().out
    assert "imported 1 images of 1 subjects (neutral 1); skipped 1 (wink 1)" in out
    assert importers.read_import_summary(str(tmp_path / "out"))["imported"] == 1


def test_every_registered_data_set_is_a_dataset_flag_choice():
    from mlc_keras import config as config_lib
    from mlc_keras.data import sources

    assert config_lib.DATASETS == sources.names()
    help_text = dict((name, text) for name, _, text in config_lib._SPEC)["dataset"]
    assert all(name in help_text for name in sources.names())


def test_manifest_for_imports_a_published_layout_into_the_cache(tmp_path):
    import types

    from mlc_keras.data import sources

    _img(tmp_path / "yale" / "subject01.happy", "GIF")
    _img(tmp_path / "yale" / "subject01.normal", "GIF")
    config = types.SimpleNamespace(dataset="yale", data_dir=str(tmp_path / "yale"), workdir="",
                                   data_cache=str(tmp_path / "cache"))
    path = sources.manifest_for(config)
    assert path == str(tmp_path / "cache" / "yale" / "manifest.csv")
    assert {(r.subject, r.expression) for r in read_manifest(path)} == {
        ("subject01", "happy"), ("subject01", "neutral")}
