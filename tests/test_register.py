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
