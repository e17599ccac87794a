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
        out, change = composite_lib.composite(generator, x, tf.one_hot([1, 0], 2), detail=0)
        small = tf.image.resize(x, [16, 16], method="area", antialias=True)
        colour, _ = generator.final_maps((small, tf.one_hot([1, 0], 2)))
        up = tf.clip_by_value(tf.image.resize(colour, [64, 64], method="bicubic"), -1, 1)
        np.testing.assert_allclose(out.numpy(), up.numpy(), atol=1e-5)
        assert float(tf.reduce_min(change)) > 1 - 1e-6
    finally:
        generator.heads[0].bias.assign(original)


def _colour_only(generator, colour_fn):
    """A stand-in for the generator's final maps: mask 0 (the model's colour
    everywhere), colour = colour_fn(the crops at R)."""

    class Maps:
        resolution = generator.resolution
        output_kind = "attention"

        def final_maps_and_flow(self, inputs):
            small = inputs[0]
            return colour_fn(small), tf.zeros_like(small[..., :1]), None

    return Maps()


def test_fine_detail_keeps_the_crops_texture_where_the_model_only_shades(generator):
    x = crops(64, seed=3) * 0.5  # strong detail above R (noise at 64 px)
    c = tf.one_hot([1, 0], 2)
    shade = _colour_only(generator, lambda small: small + 0.05)  # a small, smooth change
    low = tf.image.resize(tf.image.resize(x, [16, 16], method="area", antialias=True), [64, 64],
                          method="bicubic")
    off, _ = composite_lib.composite(shade, x, c, detail=0)
    on, _ = composite_lib.composite(shade, x, c, detail=0.15)
    # off: the upsampled colour map (no detail above R); on: the crop's own
    # detail is back, shifted by the shading, except where clipped at +-1
    np.testing.assert_allclose(off.numpy(), np.clip(low.numpy() + 0.05, -1, 1), atol=1e-5)
    gate = np.exp(-0.05 / 0.15)
    expected = np.clip(low.numpy() + 0.05 + gate * (x - low.numpy()), -1, 1)
    np.testing.assert_allclose(on.numpy(), expected, atol=1e-4)
    assert np.std(on.numpy() - off.numpy()) > 0.5 * gate * np.std(x - low.numpy())


def test_fine_detail_adds_nothing_where_the_model_draws_something_new(generator):
    x = crops(64, seed=4) * 0.5
    c = tf.one_hot([1, 0], 2)

    def left_new(small):  # the left half new content (a flat 0.9), the right half unchanged
        left = tf.cast(tf.range(16) < 8, tf.float32)[None, None, :, None]
        return left * 0.9 + (1.0 - left) * small

    new = _colour_only(generator, left_new)
    off, _ = composite_lib.composite(new, x, c, detail=0)
    on, _ = composite_lib.composite(new, x, c, detail=0.15)
    diff = np.abs(on.numpy() - off.numpy())
    assert diff[:, :, :28].max() < 0.02  # |0.9 - R-pass| >= 0.4 there: gate < 0.07
    assert diff[:, :, 44:].max() > 0.2  # where the colour is the crop's R-pass: all its detail
    np.testing.assert_allclose(on.numpy()[:, :, 44:], np.clip(x, -1, 1)[:, :, 44:], atol=0.02)


def test_fine_detail_setting_is_checked_and_recorded_by_export(generator, tmp_path):
    from mlc_keras.inference.loading import ExportError, load_model_for_synthesis

    with pytest.raises(ExportError, match="--fine_detail=-1"):
        composite_lib.check_detail(-1)
    with pytest.raises(ExportError, match="--fine_detail=x"):
        composite_lib.check_detail("x")
    config = make_config(**TINY)
    result = export.export_generator(generator, config, str(tmp_path), "mlc", 1, detail=0)
    loaded = tf.saved_model.load(result["saved_model"])
    x = crops(32, seed=5)
    ids = tf.constant([1, 0], tf.int32)
    out = loaded.signatures["composite"](images=tf.constant(x), expressions=ids)["images"]
    plain, _ = composite_lib.composite(generator, x, tf.one_hot(ids, 2), detail=0)
    np.testing.assert_allclose(out.numpy(), plain.numpy(), atol=1e-5)
    # the .keras file beside the export takes the export's setting (0), not the default
    model = load_model_for_synthesis(result["keras"])
    crop = ((x[0] + 1) * 127.5).round().astype(np.uint8)
    images, _ = model.composite(crop, [1])
    with_default = load_model_for_synthesis(result["keras"], composite_lib.DEFAULT_DETAIL)
    via_export = load_model_for_synthesis(result["saved_model"])
    np.testing.assert_allclose(images, via_export.composite(crop, [1])[0], atol=1)
    assert np.abs(images.astype(int) - with_default.composite(crop, [1])[0]).max() > 5


def test_fine_detail_flags_default_to_the_library_default():
    from mlc_keras import evaluate, export as export_cli, synthesize

    for spec in (synthesize.FLAGS_SPEC, evaluate.FLAGS_SPEC, export_cli.FLAGS_SPEC):
        defaults = {row[0]: row[1] for row in spec}
        assert defaults["fine_detail"] == composite_lib.DEFAULT_DETAIL


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


def test_upsampled_flow_is_bilinear_where_smooth_and_keeps_a_fold_sharp():
    ramp = np.linspace(-0.02, 0.02, 16, dtype=np.float32)  # 0.04 px of R between neighbours
    smooth = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :]), -1)[None]
    np.testing.assert_allclose(composite_lib.upsample_flow(smooth, [64, 64]).numpy(),
                               tf.image.resize(smooth, [64, 64], method="bilinear").numpy(),
                               atol=1e-7)
    # a fold: the top half samples 3 px of R up, the bottom half 3 px down
    fold = np.zeros((1, 16, 16, 2), np.float32)
    fold[:, :8, :, 0], fold[:, 8:, :, 0] = -3.0 / 16, 3.0 / 16
    up = composite_lib.upsample_flow(fold, [64, 64]).numpy()
    np.testing.assert_array_equal(np.unique(up[..., 0]), [-3.0 / 16, 3.0 / 16])  # nothing between
    np.testing.assert_array_equal(up[:, :32, :, 0], -3.0 / 16)
    ramped = tf.image.resize(fold, [64, 64], method="bilinear").numpy()
    assert len(np.unique(ramped[..., 0])) > 2  # what bilinear upsampling would have sampled
