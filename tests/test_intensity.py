"""Expression intensity and blends: 0 returns the input, the change grows
linearly with the intensity at every level and at full resolution, blends
are normalised target vectors; bad values are refused with the input named."""

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.config import make_config
from mlc_keras.inference import loading
from mlc_keras.inference.composite import composite
from mlc_keras.models.layers import downsample_images
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")


@pytest.fixture(scope="module")
def generator():
    return build_generator(make_config(**TINY)).build_for_inputs()


def faces(n=2, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (n, size, size, 3)).astype(np.float32)


def test_intensity_scales_the_change_at_every_level(generator):
    x = faces()
    c = tf.one_hot([1, 2], 3)
    full = [np.asarray(t) for t in generator((x, c))]
    sources = [np.asarray(downsample_images(tf.constant(x), level)) for level in generator.levels]
    for out, source in zip(full, sources):
        assert np.abs(out - source).max() > 1e-3
    zero, one, half = ([np.asarray(t) for t in generator((x, c, tf.constant(v)))]
                       for v in ([0.0, 0.0], [1.0, 1.0], [0.5, 0.5]))
    for z, o, h, f, source in zip(zero, one, half, full, sources):
        np.testing.assert_allclose(z, source, atol=1e-6)
        np.testing.assert_allclose(o, f, atol=1e-6)
        np.testing.assert_allclose(h - source, 0.5 * (f - source), atol=1e-5)
    # per example: [0, 1] edits the second image only
    mixed = np.asarray(generator((x, c, tf.constant([0.0, 1.0])))[0])
    np.testing.assert_allclose(mixed[0], x[0], atol=1e-6)
    np.testing.assert_allclose(mixed[1], full[0][1], atol=1e-6)


def test_keras_predict_takes_the_intensity(generator, tmp_path):
    import keras

    path = str(tmp_path / "g.keras")
    generator.save(path)
    loaded = keras.models.load_model(path)
    x, c = faces(), np.eye(3, dtype=np.float32)[[1, 1]]
    out = loaded.predict([x, c, np.array([0.0, 1.0], np.float32)], verbose=0)[0]
    np.testing.assert_allclose(out[0], x[0], atol=1e-6)
    np.testing.assert_allclose(out[1], generator((x, c))[0].numpy()[1], atol=1e-5)


def test_composite_at_zero_is_the_crop_and_grows_monotonically(generator):
    crops = faces(1, size=48)
    c = tf.one_hot([1], 3)
    changes = []
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
        out, share = composite(generator, crops, c, tf.constant([strength]))
        changes.append(float(np.mean(np.abs(out.numpy() - crops))))
        if strength == 0.0:
            np.testing.assert_array_equal(out.numpy(), crops)
            assert float(tf.reduce_max(share)) == 0.0
        assert float(tf.reduce_min(share)) >= 0.0 and float(tf.reduce_max(share)) <= 1.0
    assert all(b > a for a, b in zip(changes, changes[1:])), changes
    default, _ = composite(generator, crops, c)
    np.testing.assert_allclose(default.numpy(), composite(generator, crops, c, [1.0])[0].numpy())


def test_synthesis_model_blends_and_refuses_bad_values(generator):
    model = loading._keras_model(generator, {}, "tiny")
    x = faces()
    blend = np.array([[0, 0.6, 0.4], [0, 3, 2]], np.float32)  # the same blend, unnormalised
    out = model.generate(x, blend)
    expected = np.asarray(generator((x, tf.constant([[0, 0.6, 0.4]] * 2)))[0])
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(model.generate(x, [1, 2], intensity=0.0), x, atol=1e-6)
    with pytest.raises(ValueError, match=r"intensity must lie in \[0, 2\]"):
        model.generate(x, [1, 2], intensity=-0.5)
    with pytest.raises(ValueError, match="non-negative weights"):
        model.generate(x, np.array([[0, -1, 2], [0, 1, 0]], np.float32))
    with pytest.raises(ValueError, match="ids must lie in"):
        model.generate(x, [1, 3])
    crop = (np.random.default_rng(1).uniform(0, 255, (40, 40, 3))).astype(np.uint8)
    images, share = model.composite(crop, [1, 1], intensity=[0.0, 1.0])
    np.testing.assert_array_equal(images[0], crop)
    assert share[0].max() == 0.0 and share[1].max() > 0.0
