"""Realism metrics (mlc_keras.evaluation.realism) on tiny synthetic textures."""

import numpy as np
import pytest

from mlc_keras.errors import UserError
from mlc_keras.evaluation import realism

R = 32


def textures(n, seed):
    """uint8 [n, R, R, 3]: a random colour plus pixel noise per image."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 190, [n, 1, 1, 3])
    noise = rng.normal(0, 40, [n, R, R, 3])
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def box_blur(images, k=5):
    x = images.astype(np.float64)
    pad = k // 2
    p = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="edge")
    out = sum(p[:, i:i + R, j:j + R] for i in range(k) for j in range(k)) / (k * k)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def subjects_pool(num_subjects=20, per_subject=6, seed=0):
    images = textures(num_subjects * per_subject, seed)
    groups = np.repeat([f"s{i:02d}" for i in range(num_subjects)], per_subject)
    return images, groups


def check_split(result, groups):
    train, test = set(result["train_subjects"]), set(result["test_subjects"])
    assert not train & test
    assert train | test == set(groups)
    assert abs(len(train) - len(test)) <= 1


def test_two_sample_copies_are_indistinguishable():
    images, groups = subjects_pool()
    # A random half of each subject's images is called "generated". (The CI
    # misses 0.5 for about 1 seed in 20 by design; these seeds are not such a case.)
    rng = np.random.default_rng(2)
    is_gen = np.zeros(len(groups), bool)
    for s in np.unique(groups):
        idx = np.flatnonzero(groups == s)
        is_gen[rng.choice(idx, idx.size // 2, replace=False)] = True
    result = realism.two_sample_test(images[~is_gen], images[is_gen], groups[~is_gen],
                                     groups[is_gen], epochs=8, seed=1)
    check_split(result, groups)
    assert result["n_test"] == 60 and result["n_train"] == 60
    assert result["ci_low"] <= 0.5 <= result["ci_high"], result
    assert 0.3 <= result["accuracy"] <= 0.7


@pytest.mark.parametrize("fake", ["blur", "colour"])
def test_two_sample_detects_blur_and_colour_shift(fake):
    real, groups = subjects_pool(num_subjects=16, per_subject=4, seed=2)
    other = textures(len(groups), seed=3)
    if fake == "blur":
        generated = box_blur(other)
    else:
        shifted = other.astype(np.int32) + np.array([120, 0, -80])
        generated = np.clip(shifted, 0, 255).astype(np.uint8)
    # float [-1, 1] generated images are accepted beside uint8 real ones.
    generated = generated.astype(np.float32) / 127.5 - 1.0
    result = realism.two_sample_test(real, generated, groups, groups, epochs=15, seed=0)
    check_split(result, groups)
    assert result["accuracy"] >= 0.9, result
    assert result["ci_low"] > 0.5


def test_two_sample_balances_classes_and_resizes():
    real, groups = subjects_pool(num_subjects=4, per_subject=3, seed=4)
    generated = box_blur(real[::3])  # one generated image per subject
    result = realism.two_sample_test(real, generated, groups, groups[::3], epochs=1,
                                     resolution=16)
    assert result["resolution"] == 16
    assert result["n_train"] == 4 and result["n_test"] == 4  # 2 subjects x (1 real + 1 generated)


def test_two_sample_rejects_bad_inputs():
    real, groups = subjects_pool(num_subjects=1, per_subject=2)
    with pytest.raises(UserError, match="at least 2 subjects"):
        realism.two_sample_test(real, real, groups, groups, epochs=1)
    with pytest.raises(UserError, match="subject ids"):
        realism.two_sample_test(real, real, groups[:1], groups, epochs=1)


def test_subject_split_is_seeded_and_disjoint():
    groups = ["b", "a", "c", "a", "d", "e"]
    train, test = realism.subject_split(groups, seed=3)
    assert train == sorted(train) and test == sorted(test)
    assert not set(train) & set(test) and set(train) | set(test) == set(groups)
    assert (len(train), len(test)) == (2, 3)
    assert realism.subject_split(groups, seed=3) == (train, test)


def test_wilson_interval_hand_values():
    # p = 0.8, n = 10: centre 0.71674, half width 0.22658.
    assert realism.wilson_interval(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-4)
    low, high = realism.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-4)
    assert realism.wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=1e-4)
    with pytest.raises(UserError):
        realism.wilson_interval(3, 0)


def test_sharpness_blur_and_boxes():
    sharp = textures(3, seed=5)
    blurred = box_blur(sharp)
    s, b = realism.sharpness(sharp), realism.sharpness(blurred)
    assert s.shape == (3,) and np.all(b < 0.2 * s)
    ratio = realism.sharpness_ratio(blurred, sharp)
    assert ratio["mean"] < 1 and ratio["median"] < 1 and len(ratio["ratios"]) == 3
    assert realism.sharpness_ratio(sharp, sharp)["mean"] == pytest.approx(1.0)
    # float [-1, 1] input gives the same numbers as uint8.
    np.testing.assert_allclose(realism.sharpness(sharp.astype(np.float32) / 127.5 - 1), s,
                               rtol=1e-4)
    # A box over a flat area sees no texture, even though the rest is noisy.
    half_flat = sharp.copy()
    half_flat[:, :, :16] = 128
    assert realism.sharpness(half_flat, boxes=(0, 0, 16, R)) == pytest.approx(0.0, abs=1e-9)
    assert np.all(realism.sharpness(half_flat, boxes=[(16, 0, R, R)] * 3) > 100)
    # Hand value: a single bright pixel in a flat 3x3 region -> one Laplacian value.
    dot = np.zeros([5, 5, 3], np.uint8)
    dot[2, 2] = 255
    assert realism.sharpness(dot, boxes=(1, 1, 4, 4))[0] == pytest.approx(0.0)
    lap = np.array([[0, 255, 0], [255, -1020, 255], [0, 255, 0]], np.float64)
    assert realism.sharpness(dot)[0] == pytest.approx(np.var(lap))
    with pytest.raises(UserError, match="3x3"):
        realism.sharpness(sharp, boxes=(0, 0, 2, 2))
    with pytest.raises(UserError, match="differ in shape"):
        realism.sharpness_ratio(sharp, sharp[:, :16, :16])


def test_verification_and_identity_summary():
    d = [0.2, 0.59, 0.6, 0.9, float("nan")]
    assert realism.verification_rate(d) == pytest.approx(0.5)
    assert realism.verification_rate(d, threshold=1.0) == pytest.approx(1.0)
    assert np.isnan(realism.verification_rate([]))
    summary = realism.identity_summary([0.7, 0.8], [0.3, 0.5, 0.7])
    assert summary["generated_vs_source_mean"] == pytest.approx(0.75)
    assert summary["real_same_person_mean"] == pytest.approx(0.5)
    assert summary["generated_verification_rate"] == 0.0
    assert summary["real_verification_rate"] == pytest.approx(2 / 3)
    assert (summary["n_generated"], summary["n_real"]) == (2, 3)


def test_expression_rate_ratio_and_suspect_note():
    out = realism.expression_rate_ratio([1, 1, 0, 2], [1, 1, 1, 0, 1], target_class=1)
    assert out["generated_rate"] == 0.5 and out["real_rate"] == 0.8
    assert out["ratio"] == pytest.approx(0.625)
    assert realism.expression_rate_ratio([1], [0, 2], 1)["ratio"] is None
    assert realism.suspect_note(0.1, 0.2) == (
        "suspect: the classifier may be fooled (generated error below real error)")
    assert realism.suspect_note(0.2, 0.2) == "" and realism.suspect_note(0.3, 0.2) == ""


def test_paired_ratio_ci_resamples_subjects_with_both_verdicts():
    # 22 subjects as in the London evaluation: 13 generated and 15 real hits
    gen = np.array([1] * 13 + [0] * 9)
    real = np.array([1] * 15 + [0] * 7)
    low, high = realism.paired_ratio_ci(gen, real, reps=4000, seed=1)
    assert low < 13 / 15 < high
    assert 0.5 < low and high < 1.3  # a one-face change (0.067) lies well inside it
    # identical verdicts: every resample has ratio 1
    assert realism.paired_ratio_ci(real, real) == [1.0, 1.0]
    # pairing: a subject's two verdicts move together, so perfectly correlated
    # hits give a narrower interval than the same rates with anti-correlated hits
    together = realism.paired_ratio_ci([1] * 10 + [0] * 10, [1] * 10 + [0] * 10, seed=2)
    apart = realism.paired_ratio_ci([1] * 10 + [0] * 10, [0] * 10 + [1] * 10, seed=2)
    assert together[1] - together[0] < apart[1] - apart[0]
    assert realism.paired_ratio_ci([1], [1]) is None
    assert realism.paired_ratio_ci([1, 0], [0, 0]) is None
    with pytest.raises(realism.RealismError, match="3 generated verdicts but 2 real"):
        realism.paired_ratio_ci([1, 0, 1], [1, 1])
    out = realism.expression_rate_ratio(gen, real, 1, paired=True, seed=1)
    assert out["ratio_ci"] == realism.paired_ratio_ci(gen == 1, real == 1, seed=1)
    assert "ratio_ci" not in realism.expression_rate_ratio(gen, real, 1)


def test_disjoint_subjects():
    realism.disjoint_subjects(["a", "b"], ["c"])
    with pytest.raises(realism.SubjectOverlapError, match="b, c") as info:
        realism.disjoint_subjects(["a", "b", "c"], ["c", "b", "d"])
    assert isinstance(info.value, UserError)
    assert "subject(s): b, c;" in str(info.value)
