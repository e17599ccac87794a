"""Registration of a target to its source (thin-plate spline on landmarks), and
the fixed test split that the London preset uses."""

import numpy as np
import pytest

from mlc_keras.data import register
from mlc_keras.data.manifest import Record
from mlc_keras.data.pipeline import DataError, split_subjects


def blob_image(centre, size=64):
    ys, xs = np.mgrid[0:size, 0:size]
    d2 = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
    img = np.exp(-d2 / (2 * 3.0 ** 2))
    return np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=-1)


def peak(image):
    y, x = np.unravel_index(np.argmax(image[..., 0]), image.shape[:2])
    return x, y


def test_tps_moves_content_to_the_target_points():
    image = blob_image((30, 30))
    frame = np.array([[0, 0], [63, 0], [0, 63], [63, 63]], float)
    moved_from = np.concatenate([[[30.0, 30.0]], frame])
    moved_to = np.concatenate([[[36.0, 27.0]], frame])
    warped = register.tps_warp(image, moved_from, moved_to)
    assert warped.dtype == np.uint8 and warped.shape == image.shape
    assert peak(warped) == (36, 27)
    # identity control points leave the image as it is
    same = register.tps_warp(image, frame, frame)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1


def test_register_target_pins_the_anchors_and_frees_the_mouth():
    rng = np.random.default_rng(0)
    source = rng.uniform(10, 54, (68, 2))
    target = source + np.array([2.0, -1.5])  # the head moved
    target[list(register.MOUTH)] += np.array([0.0, 3.0])  # and the mouth moved on its own
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    warped, moved = register.register_target(image, target, source)
    assert warped.shape == image.shape
    anchors = list(register.OUTSIDE_MOUTH)
    np.testing.assert_allclose(moved[anchors], source[anchors], atol=1e-6)
    # the mouth keeps its own motion relative to the (now registered) face
    offset = moved[list(register.MOUTH)] - source[list(register.MOUTH)]
    assert np.allclose(offset.mean(axis=0), [0.0, 3.0], atol=0.5)
    assert register.landmark_distance(target, source) > 2.0
    assert register.landmark_distance(moved, source) < 1e-6


def test_landmark_flow_moves_the_source_onto_the_target_points():
    from mlc_keras.models.layers import warp_images

    rng = np.random.default_rng(1)
    source = rng.uniform(16, 48, (68, 2))
    target = source.copy()
    target[list(register.MOUTH)] += np.array([3.0, -2.0])  # the mouth moves 3 px right, 2 up
    flow = register.landmark_flow(source, target, crop_size=64, resolution=64)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    # at a moved landmark the flow points back to where it was on the source (dy, dx)
    x, y = np.rint(target[50]).astype(int)
    np.testing.assert_allclose(flow[y, x] * 64, [2.0, -3.0], atol=0.6)
    # the crop's border does not move
    assert np.abs(flow[0]).max() * 64 < 0.1 and np.abs(flow[:, -1]).max() * 64 < 0.1
    # a blob at a source mouth point lands on the same target point once warped
    image = blob_image(source[57]).astype(np.float32)[None]
    moved = warp_images(image, flow[None]).numpy()[0]
    assert np.hypot(*(np.array(peak(moved)) - target[57])) < 1.0
    # the same motion at half the resolution: fractions of the size, not pixels
    half = register.landmark_flow(source, target, crop_size=64, resolution=32)
    pooled = flow.reshape(32, 2, 32, 2, 2).mean(axis=(1, 3))  # the same pixel centres
    assert np.abs(half - pooled).mean() * 64 < 0.05 and np.abs(half - pooled).max() * 64 < 0.5


def test_anchor_sets_are_the_configs_choices():
    from mlc_keras.config import ConfigError, make_config

    assert set(register.RIGID) < set(register.STABLE)
    for name in register.ANCHOR_SETS:
        assert make_config(london_register_anchors=name).london_register_anchors == name
    with pytest.raises(ConfigError, match="--london_register_anchors=lips: expected one of"):
        make_config(london_register_anchors="lips")


def test_landmark_flow_stays_finite_where_lip_corners_coincide():
    rng = np.random.default_rng(2)
    source = rng.uniform(16, 48, (68, 2))
    source[60], source[64] = source[48], source[54]  # dlib puts inner corners on the outer ones
    target = source.copy()
    target[48] += [-2.0, -2.0]  # the outer corner moves, the inner one at its place does not
    flow = register.landmark_flow(source, target, crop_size=64, resolution=64)
    assert np.isfinite(flow).all() and np.abs(flow).max() * 64 < 5.0


def test_landmark_flow_refuses_mismatched_points():
    with pytest.raises(ValueError, match="two \\(N, 2\\) arrays of one shape"):
        register.landmark_flow(np.zeros((68, 2)), np.zeros((67, 2)), 64, 64)


def test_landmarks_in_crop_invert_the_crop_matrix():
    from mlc_keras.data.align import AlignedFace, Face

    matrix = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, 5.0], [0, 0, 1]])
    face = Face((0, 0, 1, 1), (10.0, 5.0), (30.0, 25.0), np.array([[10.0, 5.0], [30.0, 25.0]]))
    aligned = AlignedFace(np.zeros((8, 8, 3), np.uint8), matrix, face)
    np.testing.assert_allclose(aligned.landmarks_in_crop(), [[0, 0], [10, 10]])
    assert AlignedFace(aligned.image, matrix).landmarks_in_crop() is None


def records(subjects):
    return [Record(f"{s}_{e}.png", s, e, "") for s in subjects for e in ("neutral", "happy")]


def test_fixed_test_subjects_override_the_fraction():
    data = records(["001", "002", "124", "172"])
    train, test = split_subjects(data, 0.5, 0, test_subjects=("124", "172"))
    assert test == ("124", "172") and train == ("001", "002")
    with pytest.raises(DataError, match="--test_subjects: 999 not in the data set"):
        split_subjects(data, 0.5, 0, test_subjects=("124", "999"))
    with pytest.raises(DataError, match="none is left for training"):
        split_subjects(data, 0.0, 0, test_subjects=("001", "002", "124", "172"))


def mouth_points(gap, lips_in=0.0, seed=3):
    """68 landmarks on a 128 px crop: a 40 px wide mouth centred at (64, 90)
    whose inner lips are ``gap`` px apart (outer lips ``lips_in`` px closer to
    the middle), everything else fixed points above it."""
    rng = np.random.default_rng(seed)
    points = np.zeros((68, 2))
    points[:48] = np.stack([rng.uniform(10, 118, 48), rng.uniform(10, 60, 48)], 1)
    points[48], points[54] = (44, 90), (84, 90)
    points[49:54] = [(x, 84 + lips_in) for x in (50, 57, 64, 71, 78)]
    points[55:60] = [(x, 98 - lips_in) for x in (78, 71, 64, 57, 50)]
    points[60], points[64] = (47, 90), (81, 90)
    points[61:64] = [(x, 90 - gap / 2) for x in (56, 64, 72)]
    points[65:68] = [(x, 90 + gap / 2) for x in (72, 64, 56)]
    return points


def test_inner_lip_gap_is_the_gap_over_the_width_for_one_face_or_many():
    open_, closed = mouth_points(8.0), mouth_points(0.0)
    assert register.inner_lip_gap(open_) == pytest.approx(8.0 / 40.0)
    np.testing.assert_allclose(register.inner_lip_gap(np.stack([open_, closed])), [0.2, 0.0])
    assert register.mouth_closes(open_, closed) and not register.mouth_closes(closed, open_)
    assert not register.mouth_closes(open_, mouth_points(6.5))  # 0.0375 of the width: too little


def test_folded_flow_samples_each_lip_over_the_teeth():
    source, target = mouth_points(8.0), mouth_points(0.0, lips_in=2.0)  # the mouth closes
    teeth = (90 - 4.0, 90 + 4.0)  # the source's open mouth, between its inner lips

    def sampled_y(flow, row, col=64):  # where on the source the target pixel comes from
        return row + flow[row, col, 0] * 128

    plain = register.landmark_flow(source, target, 128, 128)
    folded = register.landmark_flow(source, target, 128, 128, fold=True)
    # one spline through both lips: the closed lip line samples the teeth
    for row in (89, 91):
        assert teeth[0] < sampled_y(plain, row) < teeth[1]
    # folded: just above the line the upper lip, just below it the lower lip
    assert sampled_y(folded, 89) < teeth[0] and sampled_y(folded, 91) > teeth[1]
    # far from the mouth the two fields agree
    assert np.abs(folded[:50] - plain[:50]).max() * 128 < 0.5
    # a mouth that does not close is not folded
    same = mouth_points(8.0, lips_in=1.0)
    np.testing.assert_array_equal(register.landmark_flow(source, same, 128, 64, fold=True),
                                  register.landmark_flow(source, same, 128, 64))
