"""The non-learned reference smile (evaluation/template_smile.py) and the
registration helpers under it: the similarity fit, the faded cubic warp that
keeps a photo's own pixels outside the weight, the template's mean motion
over closed-lip smiles only, its shading gain, and the full-photo evaluation
judging an editor in place of a model (London test skips visibly without
the set)."""

import json
import os
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, london_dir
from mlc_keras.data import register
from mlc_keras.evaluation import template_smile


def _similarity(scale, degrees, shift):
    a = np.deg2rad(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                     [scale * np.sin(a), scale * np.cos(a), shift[1]], [0.0, 0.0, 1.0]])


def test_similarity_fit_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (12, 2))
    matrix = _similarity(1.3, 20.0, (5.0, -7.0))
    fitted = register.similarity_fit(points, register.transform_points(matrix, points))
    np.testing.assert_allclose(fitted, matrix, atol=1e-9)
    with pytest.raises(ValueError, match="N >= 2"):
        register.similarity_fit(points[:1], points[:1])
    with pytest.raises(ValueError, match="one shape"):
        register.similarity_fit(points, points[:5])


def test_local_warp_moves_inside_the_weight_and_keeps_the_rest_bit_for_bit():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 40, (64, 64, 3)).astype(np.uint8)
    image[20:25, 20:25] = 250  # a bright blob centred on (22, 22)
    anchors = np.array([[8.0, 8.0], [8.0, 40.0], [40.0, 8.0], [40.0, 40.0]])
    moved_from = np.concatenate([[[22.0, 22.0]], anchors])
    moved_to = np.concatenate([[[25.0, 22.0]], anchors])  # the blob 3 px to the right
    weight = np.zeros((64, 64))
    weight[:44, :44] = 1.0
    out = register.local_warp(image, moved_from, moved_to, weight, smoothing=0.0)
    assert out.dtype == np.uint8 and out.shape == image.shape
    outside = weight == 0
    np.testing.assert_array_equal(out[outside], image[outside])
    bright = np.argwhere(out[..., 0] > 200)
    assert abs(bright[:, 1].mean() - 25.0) < 0.6 and abs(bright[:, 0].mean() - 22.0) < 0.6
    # no weight: the image itself; a float image stays float
    np.testing.assert_array_equal(register.local_warp(image, moved_from, moved_to,
                                                      np.zeros((64, 64))), image)
    assert register.local_warp(image.astype(np.float32), moved_from, moved_to,
                               weight).dtype == np.float32
    with pytest.raises(ValueError, match="weight has shape"):
        register.local_warp(image, moved_from, moved_to, weight[:10])


def _face(size=160):
    """68 dlib-ordered points of a frontal face on a size x size photo: jaw
    0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67 (closed)."""
    s = float(size)
    t = np.linspace(0.0, np.pi, 17)
    points = np.zeros((68, 2))
    points[0:17] = np.stack([0.5 + 0.38 * np.cos(np.pi - t), 0.45 + 0.45 * np.sin(t)], 1)
    points[17:27] = np.stack([np.linspace(0.2, 0.8, 10), np.full(10, 0.3)], 1)
    points[27:36] = np.stack([np.full(9, 0.5), np.linspace(0.38, 0.6, 9)], 1)
    for k, cx in ((36, 0.35), (42, 0.65)):
        a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        points[k:k + 6] = np.stack([cx + 0.05 * np.cos(a), 0.4 + 0.02 * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([0.5 - 0.15 * np.cos(a), 0.75 - 0.04 * np.sin(a)], 1)
    inner_x = [0.4, 0.45, 0.5, 0.55, 0.6, 0.55, 0.5, 0.45]  # 61-63 on 67-65: lips closed
    points[60:68] = np.stack([inner_x, np.full(8, 0.75)], 1)
    return points * s


def _smile(points, open_lips=False):
    """Corners out and up by 4 px; with open_lips the lower inner lip drops 10 px."""
    smile = points.copy()
    smile[48] += (-4.0, -4.0)
    smile[54] += (4.0, -4.0)
    if open_lips:
        smile[65:68, 1] += 10.0
    return smile


def _pair(subject, points, smile, matrix, photo=None, smiling=None):
    moved = register.transform_points(matrix, points)
    return (subject, photo, moved, smiling, register.transform_points(matrix, smile))


def test_fit_template_averages_the_closed_lip_smiles_in_the_eye_frame():
    base = _face()
    closed, opened = _smile(base), _smile(base, open_lips=True)
    pairs = [_pair("a", base, closed, _similarity(1.0, 0.0, (0, 0))),
             _pair("b", base, closed, _similarity(1.4, 12.0, (9.0, -3.0))),
             _pair("c", base, opened, _similarity(0.8, -8.0, (-4.0, 6.0)))]
    to_canon = template_smile.canonical_matrix(base)
    expected = (register.transform_points(to_canon, closed)
                - register.transform_points(to_canon, base))
    template = template_smile.fit_template(pairs)
    assert template.subjects == ("a", "b") and template.closed_only and template.gain is None
    np.testing.assert_allclose(template.motion, expected, atol=1e-9)
    everyone = template_smile.fit_template(pairs, closed_only=False)
    assert everyone.subjects == ("a", "b", "c")
    assert everyone.motion[66, 1] > template.motion[66, 1] + 1e-3  # the open lip's drop
    # the fitted motion, applied to a face in another pose, is that face's smile
    pose = _similarity(1.2, 5.0, (3.0, 4.0))
    np.testing.assert_allclose(template.smile_points(register.transform_points(pose, base)),
                               register.transform_points(pose, closed), atol=1e-6)
    with pytest.raises(ValueError, match="lips closed"):
        template_smile.fit_template(pairs[2:])


def test_template_edit_moves_and_shades_only_the_lower_face():
    rng = np.random.default_rng(2)
    base = _face()
    photo = (rng.integers(60, 120, (160, 160, 3))).astype(np.uint8)
    lower = template_smile.lower_face_weight(base, photo.shape)
    brighter = np.clip(photo * (1 + 0.25 * lower[..., None]), 0, 255).astype(np.uint8)
    identity = _similarity(1.0, 0.0, (0, 0))
    pairs = [_pair(s, base, _smile(base), identity, photo, brighter) for s in "ab"]
    template = template_smile.fit_template(pairs, sigma=0.1, size=96)
    assert template.gain.shape == (96, 96, 3) and template.gain.max() > 0.05

    shaded = template.edit(photo, base)
    moved_only = template.edit(photo, base, gain_scale=0)
    outside = (lower == 0) & (template_smile.lower_face_weight(template.smile_points(base),
                                                               photo.shape) == 0)
    assert outside.any() and (~outside).any()
    for out in (shaded, moved_only):
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out[outside], photo[outside])
    assert np.abs(moved_only.astype(int) - photo).max() > 10  # the lips moved
    # the learnt gain brightens the lower face, as the smiles did
    inside = lower > 0.9
    assert shaded[inside].mean() > moved_only[inside].mean() + 5
    np.testing.assert_array_equal(template.edit(photo, base, scale=0), photo)


def test_template_smile_script_refuses_overlapping_subjects(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    import template_smile as script

    for n in ("001", "002"):
        for folder, suffix in (("neutral_front", "03"), ("smiling_front", "08")):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"{n}_{suffix}.jpg").write_bytes(b"")
    rc = script.main([f"--photos_dir={tmp_path}", "--subjects=001",
                      "--train_subjects=001,002", f"--output={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: --train_subjects and --subjects share 001"]
    assert not (tmp_path / "out").exists()


def test_full_photo_evaluation_judges_the_template_editor(aligner, tmp_path):
    from mlc_keras.data.sources import london
    from mlc_keras.evaluation import photos

    folder = london_dir()
    neutral, smiling = london.scan_london(folder)
    paired = sorted(set(neutral) & set(smiling))
    fit_on, judged = paired[:4], paired[4:6]
    template = template_smile.fit_template(template_smile.london_pairs(folder, fit_on, aligner),
                                           closed_only=False)
    assert len(template.subjects) >= 3
    out = tmp_path / "template"
    results = photos.evaluate_photos(
        "template smile", folder, judged, str(out), generator_subjects=fit_on, crop=64, cell=48,
        classifier="small", classifier_epochs=1, two_sample_epochs=1, aligner=aligner,
        external_judge="off", editor=template_smile.photo_editor(template, aligner, 1.5))
    assert results["model"] == "template smile"
    assert json.loads((out / "photos.json").read_text()) == results
    used = results["subjects"]
    assert len(used) >= 1 and results["sharpness"]["n"] == len(used)
    # the photo's own pixels outside the lower face: sharp, and the same person
    assert results["sharpness"]["mean"] > 0.7
    assert 0 < results["identity"]["generated_vs_source_mean"] < 0.4
    assert (out / photos.SHEET).exists() and (out / photos.MOUTH_SHEET).exists()
