"""The procedural paired face set: determinism, expressions, cache."""

import dataclasses
import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image

from mlc_keras.data.sources import synthetic
from mlc_keras.data.manifest import read_manifest
from mlc_keras.expressions import EXPRESSIONS, UnknownExpressionError


def _diff(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _feature_diff(a, b):
    """Mean abs difference over the face's feature area (brows to chin)."""
    r = a.shape[0]
    y0, y1, x0, x1 = int(0.25 * r), int(0.85 * r), int(0.15 * r), int(0.85 * r)
    return _diff(a[y0:y1, x0:x1], b[y0:y1, x0:x1])


def test_identity_and_pixels_are_deterministic():
    a = synthetic.identity_for(3, seed=0)
    assert a == synthetic.identity_for(3, seed=0)
    assert dataclasses.is_dataclass(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.face_width = 0.1
    np.testing.assert_array_equal(
        synthetic.render_face(a, "happy", 32), synthetic.render_face(synthetic.identity_for(3, 0), "happy", 32))
    other = synthetic.identity_for(3, seed=1)
    assert other != a
    assert _diff(synthetic.render_face(a, "neutral", 32), synthetic.render_face(other, "neutral", 32)) > 3
    # the generator draws from the rng it is given
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert synthetic.sample_identity(r1) == synthetic.sample_identity(r2)


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_shapes_and_dtype(resolution):
    idn = synthetic.identity_for(0, 0)
    img = synthetic.render_face(idn, "surprised", resolution)
    assert img.shape == (resolution, resolution, 3)
    assert img.dtype == np.uint8
    assert img.std() > 10  # a picture, not a flat colour


def test_expressions_are_clearly_distinct_and_intensity_zero_is_neutral():
    for i in range(3):
        idn = synthetic.identity_for(i, 0)
        images = {e: synthetic.render_face(idn, e, 48) for e in EXPRESSIONS}
        for a, b in itertools.combinations(EXPRESSIONS, 2):
            assert _feature_diff(images[a], images[b]) > 1.0, (i, a, b)
            # a real feature moved, not a faint tint
            peak = int(np.abs(images[a].astype(int) - images[b].astype(int)).max())
            assert peak > 30, (i, a, b, peak)
        for e in EXPRESSIONS:
            np.testing.assert_array_equal(synthetic.render_face(idn, e, 48, intensity=0.0), images["neutral"])
        # half intensity lies between neutral and the full expression
        half = synthetic.render_face(idn, "happy", 48, intensity=0.5)
        d_half, d_full = _diff(half, images["neutral"]), _diff(images["happy"], images["neutral"])
        assert 0 < d_half < d_full


def test_expression_names_are_canonicalised():
    idn = synthetic.identity_for(1, 0)
    np.testing.assert_array_equal(synthetic.render_face(idn, "Happiness", 16), synthetic.render_face(idn, "happy", 16))
    with pytest.raises(UnknownExpressionError):
        synthetic.render_face(idn, "bored", 16)
    with pytest.raises(ValueError):
        synthetic.render_face(idn, "happy", 16, intensity=-1)


def test_identities_differ():
    faces = [synthetic.render_face(synthetic.identity_for(i, 0), "neutral", 32) for i in range(6)]
    for a, b in itertools.combinations(faces, 2):
        assert _diff(a, b) > 5


def test_eyes_are_aligned_across_identities():
    for i in range(5):
        idn = synthetic.identity_for(i, 7)
        assert 0.30 <= idn.eye_spacing <= 0.35
        assert 0.5 - idn.eye_spacing / 2 - idn.eye_size > 0.5 - idn.face_width  # eyes inside the head


def _read(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_manifest_lists_every_subject_and_expression(tmp_path):
    out = tmp_path / "syn"
    path = synthetic.write_synthetic_dataset(out, num_subjects=3, resolution=16, seed=4)
    assert path == os.path.join(str(out), "manifest.csv")
    records = read_manifest(path)
    assert len(records) == 3 * len(EXPRESSIONS)
    assert sorted({r.subject for r in records}) == ["s0000", "s0001", "s0002"]
    for s in ("s0000", "s0001", "s0002"):
        assert [r.expression for r in records if r.subject == s] == list(EXPRESSIONS)
    assert all(r.split == "" for r in records)
    for r in records:
        img = _read(r.path)
        assert img.shape == (16, 16, 3)
    happy = next(r for r in records if r.subject == "s0002" and r.expression == "happy")
    assert os.path.basename(happy.path) == "s0002_happy.png"
    np.testing.assert_array_equal(
        _read(happy.path), synthetic.render_face(synthetic.identity_for(2, 4), "happy", 16))
    params = json.loads((out / "synthetic.json").read_text())
    assert params["num_subjects"] == 3 and params["resolution"] == 16 and params["seed"] == 4


def test_subject_independent_of_num_subjects(tmp_path):
    a = synthetic.write_synthetic_dataset(tmp_path / "a", 2, 16, seed=1, expressions=("neutral", "sad"))
    b = synthetic.write_synthetic_dataset(tmp_path / "b", 3, 16, seed=1, expressions=("neutral", "sad"))
    ra = {(r.subject, r.expression): r.path for r in read_manifest(a)}
    rb = {(r.subject, r.expression): r.path for r in read_manifest(b)}
    assert len(ra) == 4 and len(rb) == 6
    for key in ra:
        np.testing.assert_array_equal(_read(ra[key]), _read(rb[key]))


def test_cache_reused_and_invalidated(tmp_path):
    out = tmp_path / "syn"
    exprs = ("neutral", "happy")
    path = synthetic.write_synthetic_dataset(out, 2, 16, seed=0, expressions=exprs)
    image = out / "images" / "s0001_happy.png"
    stamps = (os.stat(path).st_mtime_ns, os.stat(image).st_mtime_ns)

    # same parameters: nothing is rewritten
    assert synthetic.write_synthetic_dataset(out, 2, 16, seed=0, expressions=exprs) == path
    assert (os.stat(path).st_mtime_ns, os.stat(image).st_mtime_ns) == stamps

    # an interrupted run (no manifest) is redone: a corrupt image gets repaired
    image.write_bytes(b"not a png")
    os.remove(path)
    synthetic.write_synthetic_dataset(out, 2, 16, seed=0, expressions=exprs)
    assert os.path.isfile(path)
    assert _read(image).shape == (16, 16, 3)

    # a missing image is noticed even with a manifest present
    os.remove(image)
    synthetic.write_synthetic_dataset(out, 2, 16, seed=0, expressions=exprs)
    assert image.is_file()

    # a parameter change re-renders, and stale subjects are removed
    synthetic.write_synthetic_dataset(out, 1, 24, seed=0, expressions=exprs)
    records = read_manifest(path)
    assert {r.subject for r in records} == {"s0000"}
    assert _read(records[0].path).shape == (24, 24, 3)
    assert not image.exists()
    assert json.loads((out / "synthetic.json").read_text())["resolution"] == 24


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        synthetic.write_synthetic_dataset(tmp_path, 0, 16)
    with pytest.raises(ValueError):
        synthetic.write_synthetic_dataset(tmp_path, 1, 16, expressions=("happy", "happiness"))
    with pytest.raises(UnknownExpressionError):
        synthetic.write_synthetic_dataset(tmp_path, 1, 16, expressions=("bored",))
    assert not (tmp_path / "manifest.csv").exists()
