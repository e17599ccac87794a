"""Tests for mlc_keras.evaluation.metrics: paired fidelity metrics, KID, dlib face
embeddings (on the real London set when present) and the identity report."""

import itertools
import math

import numpy as np
import pytest

from mlc_keras.evaluation import metrics as M


def _images(n=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.8, 0.8, (n, size, size, 3)).astype(np.float32)


# ----------------------------------------------------------------- fidelity


def test_registry_and_identical_images():
    a = _images()
    assert set(M.METRICS) == {"l1", "psnr", "ssim"}
    np.testing.assert_array_equal(M.l1(a, a), np.zeros(3))
    assert np.all(np.isinf(M.psnr(a, a))) and np.all(M.psnr(a, a) > 0)
    np.testing.assert_allclose(M.psnr(a, a, max_db=100.0), 100.0)
    np.testing.assert_allclose(M.ssim(a, a), 1.0, atol=1e-5)
    for fn in M.METRICS.values():
        assert fn(a, a).shape == (3,)


def test_constant_offset_exact_l1_psnr():
    a = np.zeros((2, 12, 12, 3), np.float32)
    b = a + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    np.testing.assert_allclose(M.l1(a, b), 0.2, rtol=1e-6)
    np.testing.assert_allclose(M.psnr(a, b), 20.0, rtol=1e-6)
    c = a - 1.0  # 0.5 on [0,1] -> MSE 0.25 -> 10 log10(4)
    np.testing.assert_allclose(M.psnr(a, c), 10 * math.log10(4.0), rtol=1e-6)


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy * 2 - 1], -1) * 0.7
    a = np.repeat(base[None].astype(np.float32), 3, 0)
    noise = rng.normal(size=a.shape).astype(np.float32)
    scores = [M.ssim(a, np.clip(a + s * noise, -1, 1)).mean() for s in (0.0, 0.05, 0.2, 0.5)]
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert all(x > y for x, y in zip(scores, scores[1:])), scores


def test_ssim_small_images_use_smaller_window():
    a = _images(2, size=8)
    b = np.clip(a + 0.1 * _images(2, size=8, seed=3), -1, 1)
    s = M.ssim(a, b)
    assert s.shape == (2,) and np.all(s < 1.0) and np.all(s > -1.0)
    np.testing.assert_allclose(M.ssim(a, a), 1.0, atol=1e-5)


def test_summarize_and_shape_errors():
    s = M.summarize([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert M.summarize([])["n"] == 0
    with pytest.raises(ValueError):
        M.l1(_images(2), _images(3))


# ----------------------------------------------------------------- KID


def _mmd2_direct(x, y):
    """Textbook unbiased MMD^2 with explicit loops."""
    def k(u, v):
        return (float(np.dot(u, v)) / len(u) + 1.0) ** 3
    m = len(x)
    sxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_matches_direct_formula_on_tiny_sets():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[2.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    # subset_size = N = M: each subset is a permutation; MMD is order free.
    out = M.kid(x, y, subsets=3, subset_size=10)
    assert out["subset_size"] == 3
    assert out["kid"] == pytest.approx(_mmd2_direct(x, y), rel=1e-12)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-12)
    # Hand check of one kernel value: k([0,1],[1,1]) = (1/2 + 1)^3 = 3.375.
    assert M._poly_kernel(x[:1], x[2:]) == pytest.approx(3.375)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) + 0.3
    assert M.kid(a, b, subsets=1)["kid"] == pytest.approx(_mmd2_direct(a, b), rel=1e-10)


def test_kid_same_vs_shifted_distributions():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 16))
    same = rng.normal(size=(400, 16))
    shifted = rng.normal(size=(400, 16)) + 0.5
    r0 = M.kid(real, same, subsets=50, subset_size=200, seed=0)
    r1 = M.kid(real, shifted, subsets=50, subset_size=200, seed=0)
    assert set(r0) >= {"kid", "kid_std", "kid_stderr"}
    assert r0["kid_stderr"] == pytest.approx(r0["kid_std"] / math.sqrt(50))
    assert abs(r0["kid"]) < 0.05 and abs(r0["kid"]) < 4 * r0["kid_stderr"] + 1e-3, r0
    assert r1["kid"] > 0.1 and r1["kid"] > 20 * r1["kid_stderr"] + 10 * abs(r0["kid"]), (r0, r1)
    # deterministic for a fixed seed; subset_size clipped to min(N, M)
    assert M.kid(real, same, subsets=5, subset_size=100, seed=3) == \
        M.kid(real, same, subsets=5, subset_size=100, seed=3)
    assert M.kid(real[:30], same, subsets=2)["subset_size"] == 30
    with pytest.raises(ValueError):
        M.kid(real[:1], same)


# ----------------------------------------------------------------- identity


def test_identity_distances_and_report_synthetic():
    rng = np.random.default_rng(0)
    n_subj, dim = 6, 128
    centres = rng.normal(size=(n_subj, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    subjects = np.arange(n_subj)
    src = centres + 0.01 * rng.normal(size=centres.shape)
    real = centres + 0.01 * rng.normal(size=centres.shape)
    gen = centres + 0.03 * rng.normal(size=centres.shape)
    d = M.identity_distances(gen, src)
    assert d.shape == (n_subj,)
    np.testing.assert_allclose(d, np.linalg.norm(gen - src, axis=1))
    rep = M.identity_report(gen, src, real, subjects)
    assert rep["different_people"]["n"] == n_subj * (n_subj - 1) // 2
    assert rep["same_person"]["mean"] < rep["generated_vs_source"]["mean"] \
        < rep["different_people"]["mean"]
    assert 0.0 < rep["relative_position"] < 1.0
    assert rep["features"] == M.FACE_FEATURES_NAME
    # pairs of the same subject are excluded from the "different people" set
    rep2 = M.identity_report(gen, src, None, [0, 0, 1, 1, 2, 2])
    assert rep2["different_people"]["n"] == 15 - 3
    assert "same_person" not in rep2 and math.isnan(rep2["relative_position"])


def test_fid_note_and_uint8():
    assert "Inception" in M.fid_note() and "KID" in M.FID_NOTE and M.FACE_FEATURES_NAME in M.FID_NOTE
    u = M.to_uint8(np.array([[-1.0, 0.0, 1.0, 2.0]]))
    np.testing.assert_array_equal(u, [[0, 128, 255, 255]])
    assert u.dtype == np.uint8


# ----------------------------------------------------------------- dlib embedder


@pytest.fixture(scope="module")
def embedder(aligner):  # conftest's aligner fixture skips when dlib is absent
    from mlc_keras.data import align, identity

    try:
        align._predictor_path(5)
        identity._recognition_model_path()
    except align.MissingDependencyError as e:
        pytest.skip(str(e))
    return M.FaceEmbedder()


def test_embedder_on_london_faces(embedder, aligner):
    from conftest import london_dir

    from mlc_keras.data.align import align_photo

    root = london_dir()
    ids = ["001", "002", "003"]
    crops = []
    for i in ids:
        for path in (f"{root}/neutral_front/{i}_03.jpg", f"{root}/smiling_front/{i}_08.jpg"):
            crops.append(align_photo(path, 160, aligner=aligner)[0].image)
    x = np.stack(crops)  # rows: 001 neutral, 001 smiling, 002 neutral, ...
    emb = embedder.embed(x)
    assert emb.shape == (6, 128) and emb.dtype == np.float32
    assert embedder.last_detected.shape == (6,)
    assert np.all(np.isfinite(emb)) and np.all(np.linalg.norm(emb, axis=1) > 0.5)
    # the same face twice -> ~0
    again = embedder.embed(x[:1])
    assert M.identity_distances(again, emb[:1])[0] < 1e-4
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    same = [d[0, 1], d[2, 3], d[4, 5]]
    different = [d[i, j] for i in range(6) for j in range(6) if i // 2 != j // 2]
    assert max(same) < min(different), (same, different)
    assert max(same) < 0.45 and min(different) > 0.5, (same, different)
    # a 64 px version (generator size) still embeds close to the 160 px one
    from PIL import Image

    small = np.stack([np.asarray(Image.fromarray(c).resize((64, 64), Image.LANCZOS)) for c in crops])
    emb64 = embedder.embed(small)
    d64 = M.identity_distances(emb64, emb)
    assert np.all(d64 < 0.35) and d64.max() < min(different), (d64, different)
    rep = M.identity_report(emb[1::2], emb[0::2], emb[1::2], ids)
    assert rep["same_person"]["mean"] < rep["different_people"]["mean"]


def test_embedder_whole_crop_fallback_and_errors(embedder):
    blank = np.full((2, 40, 40, 3), 128, np.uint8)  # no face: whole crop is the box
    emb = M.FaceEmbedder(detect=False).embed(blank)
    assert emb.shape == (2, 128) and np.all(np.isfinite(emb))
    emb2 = embedder.embed(blank)
    assert not embedder.last_detected.any()
    np.testing.assert_allclose(emb, emb2, atol=1e-5)
    with pytest.raises(TypeError, match="to_uint8"):
        embedder.embed(blank.astype(np.float32))
