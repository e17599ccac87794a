"""Tests of mlc_keras.data.sources.london (the London Set importer).

Real-data tests copy a few subjects of the London Set into pytest's tmp_path
(never into the repository) and skip when the set is absent (MLC_LONDON_DIR)
or dlib is not importable. Layout errors are tested on synthetic folders.
"""

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from mlc_keras.data import align
from mlc_keras.data.sources import london
from mlc_keras.data.manifest import ManifestError, read_manifest

from conftest import london_dir  # the aligner fixture is in conftest too


def _subjects(root, n):
    names = sorted(os.listdir(os.path.join(root, "neutral_front")))
    ids = [x[:-7] for x in names if x.endswith("_03.jpg")]
    ids = [s for s in ids if os.path.isfile(os.path.join(root, "smiling_front", f"{s}_08.jpg"))]
    if len(ids) < n:
        pytest.skip(f"London set at {root} has fewer than {n} complete subjects")
    return ids[:n]


@pytest.fixture
def small_london(tmp_path):
    """A 3-subject copy of the London Set in the published layout."""
    root = london_dir()
    dst = tmp_path / "london"
    (dst / "neutral_front").mkdir(parents=True)
    (dst / "smiling_front").mkdir()
    subjects = _subjects(root, 3)
    for s in subjects:
        for name in (f"{s}_03.jpg", f"{s}_03.tem"):
            shutil.copy(os.path.join(root, "neutral_front", name), dst / "neutral_front" / name)
        shutil.copy(os.path.join(root, "smiling_front", f"{s}_08.jpg"), dst / "smiling_front" / f"{s}_08.jpg")
    return dst, subjects


def _fake_layout(root, neutral=("001",), smiling=("001",)):
    (root / "neutral_front").mkdir(parents=True)
    (root / "smiling_front").mkdir()
    for s in neutral:
        Image.new("RGB", (32, 32), (128, 128, 128)).save(root / "neutral_front" / f"{s}_03.jpg")
    for s in smiling:
        Image.new("RGB", (32, 32), (128, 128, 128)).save(root / "smiling_front" / f"{s}_08.jpg")
    return root


# ----------------------------------------------------------------- layout errors (no dlib)


def test_missing_folder(tmp_path):
    with pytest.raises(ManifestError, match="does not exist") as e:
        london.import_london(tmp_path / "absent", tmp_path / "out", progress=False)
    assert "absent" in str(e.value) and "neutral_front/NNN_03.jpg" in str(e.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="is empty.*neutral_front"):
        london.import_london(tmp_path / "empty", tmp_path / "out", progress=False)


def test_missing_subfolder(tmp_path):
    root = tmp_path / "half"
    (root / "neutral_front").mkdir(parents=True)
    with pytest.raises(ManifestError, match="lacks the sub-folder.*smiling_front"):
        london.import_london(root, tmp_path / "out", progress=False)


def test_subfolders_without_images(tmp_path):
    root = _fake_layout(tmp_path / "l", neutral=(), smiling=("001",))
    (root / "neutral_front" / "readme.txt").write_text("x")
    with pytest.raises(ManifestError, match="no NNN_03.jpg images"):
        london.import_london(root, tmp_path / "out", progress=False)


def test_smiling_without_neutral_is_an_error(tmp_path):
    root = _fake_layout(tmp_path / "l", neutral=("001",), smiling=("001", "007"))
    with pytest.raises(ManifestError, match="007.*no neutral source photo.*skip_bad"):
        london.import_london(root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_bad_resolution(tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        london.import_london(tmp_path, tmp_path / "out", resolution=4, progress=False)


def test_read_template_pupils_errors(tmp_path):
    bad = tmp_path / "x.tem"
    bad.write_text("189\nnot numbers\n")
    with pytest.raises(align.ImageError, match="x.tem"):
        london.read_template_pupils(bad)
    good = tmp_path / "y.tem"
    good.write_text("3\n300\t200\n100.5\t210\n5\t5\n")
    assert london.read_template_pupils(good) == ((100.5, 210.0), (300.0, 200.0))


# ----------------------------------------------------------------- real import (dlib + London)


def test_import_small_copy(small_london, tmp_path, aligner, capsys):
    data, subjects = small_london
    out = tmp_path / "out"
    path = london.import_london(data, out, resolution=128, aligner=aligner)
    assert path == str(out / "manifest.csv")
    records = read_manifest(path)
    assert sorted((r.subject, r.expression) for r in records) == sorted(
        (s, e) for s in subjects for e in ("neutral", "happy")
    )
    assert all(r.split == "" for r in records)
    for r in records:
        assert r.path.startswith(str(out / "images")) and r.path.endswith(".png")
        img = align.load_image(r.path)
        assert img.shape == (128, 128, 3)
    summary = london.read_import_summary(out)
    assert summary["imported"] == 6 and summary["skipped"] == 0 and summary["pairs"] == 3
    printed = capsys.readouterr().out
    assert "6/6 photos aligned" in printed and "imported 6 photos" in printed

    # Same parameters: reused without rewriting a crop.
    stamp = {r.path: os.stat(r.path).st_mtime_ns for r in records}
    time.sleep(0.01)
    assert london.import_london(data, out, resolution=128, aligner=aligner) == path
    assert "reusing" in capsys.readouterr().out
    assert stamp == {r.path: os.stat(r.path).st_mtime_ns for r in records}

    # Other parameters: imported again.
    london.import_london(data, out, resolution=64, aligner=aligner, progress=False)
    with open(out / "import.json") as f:
        assert json.load(f)["params"]["resolution"] == 64
    assert align.load_image(read_manifest(path)[0].path).shape == (64, 64, 3)


def test_import_with_templates(small_london, tmp_path, aligner):
    data, subjects = small_london
    out = tmp_path / "out"
    london.import_london(data, out, resolution=128, use_templates=True, aligner=aligner, progress=False)
    records = read_manifest(out / "manifest.csv")
    assert len(records) == 6
    # Template-aligned neutral crop: pupils at the canonical spot, so the
    # detector (whose eye centres sit ~2.7 px lower at 512 px) agrees closely.
    crop = align.load_image(next(r.path for r in records if r.expression == "neutral"))
    face = aligner.detect(crop)[0]
    (clx, cly), (crx, cry) = align.canonical_eyes(128)
    assert abs(face.left_eye[0] - clx) < 2.5 and abs(face.right_eye[0] - crx) < 2.5
    assert -1.0 < face.left_eye[1] - cly < 4.0


def test_import_registered_pairs(small_london, tmp_path, aligner):
    data, subjects = small_london
    plain = london.import_london(data, tmp_path / "plain", resolution=128, aligner=aligner,
                                 progress=False)
    registered = london.import_london(data, tmp_path / "reg", resolution=128, aligner=aligner,
                                      progress=False, register=True)
    summary = london.read_import_summary(tmp_path / "reg")
    moved = summary["registration_px"]
    # landmarks detected again on the warped smile sit closer to the neutral ones
    assert moved["after"] < moved["before"]
    by_key = {(r.subject, r.expression): r.path for r in read_manifest(registered)}
    plain_by_key = {(r.subject, r.expression): r.path for r in read_manifest(plain)}
    s = subjects[0]
    # neutral crops are untouched; the smiling crop is warped
    assert np.array_equal(align.load_image(by_key[(s, "neutral")]),
                          align.load_image(plain_by_key[(s, "neutral")]))
    assert not np.array_equal(align.load_image(by_key[(s, "happy")]),
                              align.load_image(plain_by_key[(s, "happy")]))
    with open(tmp_path / "reg" / "import.json") as f:
        assert json.load(f)["params"]["register"] is True
    # each crop's landmarks are stored beside the manifest; the smile's are carried through
    # the registration, so outside the mouth they sit on the neutral ones
    from mlc_keras.data import register
    from mlc_keras.data.manifest import read_landmarks

    size, points = read_landmarks(registered, [by_key[(s, "neutral")], by_key[(s, "happy")]])
    assert size == 128 and points.shape == (2, 68, 2)
    outside = list(register.OUTSIDE_MOUTH)
    np.testing.assert_allclose(points[1][outside], points[0][outside], atol=0.01)
    assert np.abs(points[1][list(register.MOUTH)] - points[0][list(register.MOUTH)]).max() > 1.0
    # registered on the rigid points only, the eyelids and the chin keep the smile's own motion
    rigid = london.import_london(data, tmp_path / "rigid", resolution=128, aligner=aligner,
                                 progress=False, register=True, anchors="rigid")
    rigid_key = {(r.subject, r.expression): r.path for r in read_manifest(rigid)}
    _, rigid_points = read_landmarks(rigid, [rigid_key[(s, "neutral")], rigid_key[(s, "happy")]])
    pinned = list(register.RIGID)
    free = [i for i in register.OUTSIDE_MOUTH if i not in register.RIGID]
    np.testing.assert_allclose(rigid_points[1][pinned], rigid_points[0][pinned], atol=0.01)
    assert np.abs(rigid_points[1][free] - rigid_points[0][free]).max() > 0.5
    with open(tmp_path / "rigid" / "import.json") as f:
        assert json.load(f)["params"]["register_anchors"] == "rigid"
    with pytest.raises(ValueError, match="anchors 'lips': must be one of outside_mouth, rigid"):
        london.import_london(data, tmp_path / "bad", resolution=128, aligner=aligner,
                             progress=False, register=True, anchors="lips")


def test_training_with_a_flow_target_on_registered_london_pairs(small_london, tmp_path, aligner):
    from mlc_keras.config import make_config
    from mlc_keras.training.loop import train
    from tiny import tiny_overrides

    data, _ = small_london
    config = make_config(**tiny_overrides(
        tmp_path, dataset="london", data_dir=str(data), london_register=True,
        import_resolution=64, test_fraction=0.0, expressions="neutral,happy",
        source_expression="any", identity_pairs=False, g_warp=True, flow_target_weight=1.0,
        train_steps=2, checkpoint_every=2, sample_every=0))
    train(config)
    with open(os.path.join(config.workdir, "metrics.jsonl")) as f:
        last = json.loads(f.readlines()[-1])
    # a fresh flow head is at rest, so the loss is the landmark motion itself: a smile moves
    assert 0.01 < last["G/flow_target"] < 5.0


def test_smiling_without_neutral_skipped(small_london, tmp_path, aligner):
    data, subjects = small_london
    os.remove(data / "neutral_front" / f"{subjects[1]}_03.jpg")
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=f"{subjects[1]}.*no neutral source photo"):
        london.import_london(data, out, aligner=aligner, progress=False)
    london.import_london(data, out, resolution=64, skip_bad=True, aligner=aligner, progress=False)
    records = read_manifest(out / "manifest.csv")
    assert subjects[1] not in {r.subject for r in records} and len(records) == 4
    summary = london.read_import_summary(out)
    assert summary["skipped"] == 1 and summary["problems"][0]["subject"] == subjects[1]


def test_corrupt_jpeg(small_london, tmp_path, aligner):
    data, subjects = small_london
    bad = data / "smiling_front" / f"{subjects[2]}_08.jpg"
    bad.write_bytes(bad.read_bytes()[:500])  # truncated JPEG
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match=f"{subjects[2]}_08.jpg") as e:
        london.import_london(data, out, resolution=64, aligner=aligner, progress=False)
    assert isinstance(e.value.__cause__, align.ImageError)
    london.import_london(data, out, resolution=64, skip_bad=True, aligner=aligner, progress=False)
    records = read_manifest(out / "manifest.csv")
    assert len(records) == 5
    assert (subjects[2], "happy") not in {(r.subject, r.expression) for r in records}
    assert london.read_import_summary(out)["skipped"] == 1


def test_corrupt_neutral_skips_whole_subject(small_london, tmp_path, aligner):
    data, subjects = small_london
    (data / "neutral_front" / f"{subjects[0]}_03.jpg").write_bytes(b"garbage")
    out = tmp_path / "out"
    london.import_london(data, out, resolution=64, skip_bad=True, aligner=aligner, progress=False)
    records = read_manifest(out / "manifest.csv")
    assert subjects[0] not in {r.subject for r in records} and len(records) == 4
    assert london.read_import_summary(out)["skipped"] == 2


def test_photo_without_face(small_london, tmp_path, aligner):
    data, subjects = small_london
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
        data / "smiling_front" / f"{subjects[0]}_08.jpg")
    out = tmp_path / "out"
    with pytest.raises(ManifestError, match="no face found") as e:
        london.import_london(data, out, resolution=64, aligner=aligner, progress=False)
    assert isinstance(e.value.__cause__, align.NoFaceError)
    london.import_london(data, out, resolution=64, skip_bad=True, aligner=aligner, progress=False)
    assert len(read_manifest(out / "manifest.csv")) == 5


@pytest.mark.skipif(not os.environ.get("MLC_FULL_LONDON"),
                    reason="whole-set import (~15 s) runs only with MLC_FULL_LONDON=1")
def test_import_whole_set(tmp_path, aligner):
    start = time.perf_counter()
    path = london.import_london(london_dir(), tmp_path / "out", aligner=aligner)
    seconds = time.perf_counter() - start
    summary = london.read_import_summary(tmp_path / "out")
    print(f"\nwhole London set: {summary['imported']} photos, {summary['skipped']} skipped, {seconds:.1f} s")
    assert summary["skipped"] == 0 and len(read_manifest(path)) == summary["imported"]
    assert seconds < 60
