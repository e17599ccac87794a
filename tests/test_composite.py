"""Full-resolution compositing: the crop's own pixels where the mask keeps the
source, the model's colour where it does not; the same in the exported graph;
paste-back that leaves unchanged pixels untouched."""

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.config import make_config
from mlc_keras.inference import composite as composite_lib
from mlc_keras.inference import export, faces
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy")


@pytest.fixture(scope="module")
def generator():
    return build_generator(make_config(**TINY)).build_for_inputs()


def crops(size, n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def set_mask_bias(generator, value):
    head = generator.heads[0]
    bias = head.bias.numpy()
    bias[3] = value
    head.bias.assign(bias)


def test_final_maps_make_the_final_image(generator):
    x = crops(16)
    c = tf.one_hot([0, 1], 2)
    colour, keep = generator.final_maps((x, c))
    assert colour.shape == (2, 16, 16, 3) and keep.shape == (2, 16, 16, 1)
    expected = keep * x + (1.0 - keep) * colour
    np.testing.assert_allclose(generator((x, c))[0].numpy(), expected.numpy(), atol=1e-5)


def test_keep_mask_gives_the_crops_own_pixels(generator):
    original = generator.heads[0].bias.numpy().copy()
    try:
        set_mask_bias(generator, 30.0)  # the mask keeps the source everywhere
        x = crops(64)
        out, change = composite_lib.composite(generator, x, tf.one_hot([1, 0], 2))
        assert out.shape == (2, 64, 64, 3) and change.shape == (2, 64, 64, 1)
        assert float(tf.reduce_max(change)) < 1e-6
        np.testing.assert_allclose(out.numpy(), x, atol=1e-5)
        set_mask_bias(generator, -30.0)  # the model's colour everywhere, upsampled
        out, change = composite_lib.composite(generator, x, tf.one_hot([1, 0], 2))
        small = tf.image.resize(x, [16, 16], method="area", antialias=True)
        colour, _ = generator.final_maps((small, tf.one_hot([1, 0], 2)))
        up = tf.clip_by_value(tf.image.resize(colour, [64, 64], method="bicubic"), -1, 1)
        np.testing.assert_allclose(out.numpy(), up.numpy(), atol=1e-5)
        assert float(tf.reduce_min(change)) > 1 - 1e-6
    finally:
        generator.heads[0].bias.assign(original)


def test_composite_signature_any_size_and_bad_sizes(generator, tmp_path):
    config = make_config(**TINY)
    result = export.export_generator(generator, config, str(tmp_path), "mlc", 1)
    loaded = tf.saved_model.load(result["saved_model"])
    signature = loaded.signatures["composite"]
    ids = tf.constant([1, 0], tf.int32)
    for size in (16, 40, 64):
        x = crops(size, seed=size)
        out = signature(images=tf.constant(x), expressions=ids)
        live, change = composite_lib.composite(generator, x, tf.one_hot(ids, 2))
        np.testing.assert_allclose(out["images"].numpy(), live.numpy(), atol=1e-5)
        np.testing.assert_allclose(out["change"].numpy(), change.numpy(), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="S >= 16"):
        signature(images=tf.constant(crops(8)), expressions=ids)
    with pytest.raises(tf.errors.InvalidArgumentError, match="S >= 16"):
        signature(images=tf.zeros([2, 32, 24, 3]), expressions=ids)


def test_paste_back_with_zero_alpha_leaves_the_photo_untouched():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    matrix = np.array([[1.0, 0, 20], [0, 1.0, 10], [0, 0, 1]])
    alpha = np.zeros((48, 48), np.float32)
    assert np.array_equal(faces.paste_back(photo, face, matrix, alpha=alpha), photo)
    alpha[20:30, 20:30] = 1.0
    pasted = faces.paste_back(photo, face, matrix, alpha=alpha)
    changed = np.any(pasted != photo, axis=-1)
    ys, xs = np.nonzero(changed)
    # only pixels near the alpha square (photo coords: +20 x, +10 y) change
    assert changed.any() and xs.min() >= 38 and xs.max() <= 51 and ys.min() >= 28 and ys.max() <= 41


def test_native_crop_size_follows_the_eye_distance():
    class Face:
        left_eye, right_eye = (100.0, 100.0), (166.0, 100.0)

    size = faces.native_crop_size(Face(), 128)
    assert size % 8 == 0 and abs(size - 66 / 0.33) <= 8
    assert faces.native_crop_size(Face(), 256) == 256  # never below R
    Face.right_eye = (5000.0, 100.0)
    assert faces.native_crop_size(Face(), 128) == 1024  # bounded
