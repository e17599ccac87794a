"""The warp head (--g_warp): a bilinear backward warp, a generator whose final
level moves the input along a predicted flow before the mask blends it, the
same motion at full resolution in compositing and in the exported graph, and
a warp head added to a trained generator that starts with no motion."""

import os

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.config import make_config
from mlc_keras.inference import composite as composite_lib
from mlc_keras.inference import export
from mlc_keras.models.layers import warp_images
from mlc_keras.training.build import build_gan, build_generator
from mlc_keras.training.loop import init_generator
from test_gan import batch, gradients
from tiny import tiny_overrides

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy")


def images(size, n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def constant_flow(n, size, dy, dx):
    flow = np.zeros((n, size, size, 2), np.float32)
    flow[..., 0], flow[..., 1] = dy, dx
    return flow


def set_head(generator, keep_logit, flow_logits=(0.0, 0.0)):
    """Constant maps: the keep mask's logit and the flow head's (pre-tanh) output."""
    bias = generator.heads[0].bias.numpy()
    bias[3] = keep_logit
    generator.heads[0].bias.assign(bias)
    generator.flow_head.kernel.assign(np.zeros(generator.flow_head.kernel.shape, np.float32))
    generator.flow_head.bias.assign(np.array(flow_logits, np.float32))


def test_warp_images_moves_pixels_by_a_fraction_of_the_size():
    x = images(8)
    np.testing.assert_array_equal(warp_images(x, constant_flow(2, 8, 0, 0)).numpy(), x)
    # dx = 2/8 samples two columns to the right; dy = -1/8 one row up
    out = warp_images(x, constant_flow(2, 8, 0, 2 / 8)).numpy()
    np.testing.assert_allclose(out[:, :, :-2], x[:, :, 2:], atol=1e-6)
    np.testing.assert_allclose(out[:, :, -2:], x[:, :, -1:].repeat(2, axis=2), atol=1e-6)  # border
    out = warp_images(x, constant_flow(2, 8, -1 / 8, 0)).numpy()
    np.testing.assert_allclose(out[:, 1:], x[:, :-1], atol=1e-6)
    half = warp_images(x, constant_flow(2, 8, 0, 0.5 / 8)).numpy()
    np.testing.assert_allclose(half[:, :, :-1], (x[:, :, 1:] + x[:, :, :-1]) / 2, atol=1e-6)


def test_warp_gradient_moves_the_flow_toward_the_target():
    ramp = np.tile(np.linspace(-1, 1, 16, dtype=np.float32)[None, None, :, None], (1, 16, 1, 3))
    target = warp_images(ramp, constant_flow(1, 16, 0, 1 / 16)).numpy()
    flow = tf.Variable(constant_flow(1, 16, 0, 0))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(warp_images(ramp, flow)[:, :, 2:-2] - target[:, :, 2:-2]))
    grad = tape.gradient(loss, flow).numpy()
    assert grad[..., 1].sum() < 0  # descending it raises dx toward +1/16
    np.testing.assert_allclose(grad[..., 0], 0.0)  # the ramp has no vertical structure


def test_cubic_warp_keeps_whole_pixel_shifts_exact_and_blurs_less_than_bilinear():
    from mlc_keras.models.layers import warp_images_cubic

    x = images(16)
    np.testing.assert_allclose(warp_images_cubic(x, constant_flow(2, 16, 0, 0)).numpy(), x,
                               atol=1e-6)
    np.testing.assert_allclose(warp_images_cubic(x, constant_flow(2, 16, 2 / 16, -1 / 16)).numpy(),
                               warp_images(x, constant_flow(2, 16, 2 / 16, -1 / 16)).numpy(),
                               atol=1e-6)
    # a linear ramp is reproduced at a sub-pixel shift (inside the border)
    ramp = np.tile(np.arange(16, dtype=np.float32)[None, None, :, None], (1, 16, 1, 3))
    shifted = warp_images_cubic(ramp, constant_flow(1, 16, 0, 0.3 / 16)).numpy()
    np.testing.assert_allclose(shifted[:, :, 1:-3], ramp[:, :, 1:-3] + 0.3, atol=1e-4)
    # half a pixel on noise: more of the detail survives than bilinear's average
    half = constant_flow(2, 16, 0.5 / 16, 0.5 / 16)
    assert np.var(warp_images_cubic(x, half).numpy()) > 1.3 * np.var(warp_images(x, half).numpy())


def test_generator_warp_moves_the_source_where_the_mask_keeps_it():
    generator = build_generator(make_config(g_warp=True, max_flow=0.25, **TINY)).build_for_inputs()
    x, c = images(16), tf.one_hot([1, 0], 2)
    set_head(generator, keep_logit=30.0)
    np.testing.assert_allclose(generator((x, c))[0].numpy(), x, atol=1e-5)  # no motion yet
    set_head(generator, keep_logit=30.0, flow_logits=(0.0, float(np.arctanh(0.5))))
    moved = warp_images(x, constant_flow(2, 16, 0, 0.125)).numpy()  # 0.25 * tanh = 2 px right
    outputs = generator((x, c))
    np.testing.assert_allclose(outputs[0].numpy(), moved, atol=1e-5)
    fakes, colour, keep, flow = generator.call_with_maps((x, c))
    np.testing.assert_allclose(fakes[0].numpy(), moved, atol=1e-5)
    np.testing.assert_allclose(flow.numpy(), constant_flow(2, 16, 0, 0.125), atol=1e-6)
    # the coarser level keeps the plain attention head (no flow there)
    np.testing.assert_allclose(fakes[1].numpy(), outputs[1].numpy(), atol=1e-6)
    # intensity 0 is the source exactly; 0.5 moves half the way
    zero = generator((x, c, tf.constant([0.0, 0.0])))[0].numpy()
    np.testing.assert_allclose(zero, x, atol=1e-6)
    half = generator((x, c, tf.constant([0.5, 0.5])))[0].numpy()
    np.testing.assert_allclose(half, warp_images(x, constant_flow(2, 16, 0, 0.0625)).numpy(),
                               atol=1e-5)


def test_composite_moves_the_full_resolution_crop_by_the_same_fraction(tmp_path):
    config = make_config(g_warp=True, max_flow=0.25, **TINY)
    generator = build_generator(config).build_for_inputs()
    set_head(generator, keep_logit=30.0, flow_logits=(float(np.arctanh(0.5)), 0.0))
    crops, ids = images(64), tf.constant([1, 0], tf.int32)
    out, change = composite_lib.composite(generator, crops, tf.one_hot(ids, 2))
    # 0.125 of 64 px: the sharp crop itself, 8 rows down, not a resized model image
    np.testing.assert_allclose(out.numpy()[:, :-8], crops[:, 8:], atol=1e-5)
    # every pixel moved: all of it is the model's, so a paste through the
    # change map takes the moved crop (it once read 0 here and pasted nothing)
    np.testing.assert_allclose(change.numpy(), 1.0, atol=1e-6)
    loaded = tf.saved_model.load(
        export.export_generator(generator, config, str(tmp_path), "mlc", 1)["saved_model"])
    served = loaded.signatures["composite"](images=tf.constant(crops), expressions=ids)
    np.testing.assert_allclose(served["images"].numpy(), out.numpy(), atol=1e-5)


def test_composite_change_counts_the_moved_pixels_in_proportion_below_half_a_pixel():
    generator = build_generator(make_config(g_warp=True, max_flow=0.25, **TINY)).build_for_inputs()
    crops, onehot = images(64), tf.one_hot([1, 0], 2)
    set_head(generator, keep_logit=30.0)  # keeps the source, no motion: the crop's own
    out, change = composite_lib.composite(generator, crops, onehot, detail=0)
    np.testing.assert_allclose(out.numpy(), crops, atol=1e-5)
    assert float(tf.reduce_max(change)) < 1e-6
    # a quarter of a pixel of the 64 px crop: half of composite.MOVED_PX
    set_head(generator, keep_logit=30.0,
             flow_logits=(0.0, float(np.arctanh(0.25 / 64 / 0.25))))
    _, change = composite_lib.composite(generator, crops, onehot, detail=0)
    np.testing.assert_allclose(change.numpy(), 0.25 / composite_lib.MOVED_PX, atol=1e-4)
    # intensity scales the motion, and so the share
    _, change = composite_lib.composite(generator, crops, onehot, tf.constant([2.0, 0.0]),
                                        detail=0)
    np.testing.assert_allclose(change.numpy()[0], 1.0, atol=1e-4)
    assert float(tf.reduce_max(change[1])) < 1e-6


def test_a_warp_head_continues_a_trained_generator_with_no_motion(tmp_path):
    plain = build_generator(make_config(**TINY)).build_for_inputs()
    path = str(tmp_path / "plain.keras")
    plain.save(path)
    warped = build_generator(make_config(g_warp=True, **TINY)).build_for_inputs()
    init_generator(warped, path)
    x, c = images(16), tf.one_hot([0, 1], 2)
    for a, b in zip(plain((x, c)), warped((x, c))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # saved and loaded, the warp head and its bound come back
    import keras
    warped.flow_head.bias.assign([0.1, -0.2])
    again_path = str(tmp_path / "warp.keras")
    warped.save(again_path)
    again = keras.saving.load_model(again_path, compile=False)
    assert again.warp and again.max_flow == warped.max_flow
    np.testing.assert_allclose(again((x, c))[0].numpy(), warped((x, c))[0].numpy(), atol=1e-6)


def test_flow_smooth_weight_trains_the_flow_head(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, g_warp=True, flow_smooth_weight=1.0))
    gan = build_gan(config)
    gan.generator.flow_head.kernel.assign(
        np.random.default_rng(0).normal(0, 0.1, gan.generator.flow_head.kernel.shape))
    _, values, grads = gradients(gan, batch(config))
    assert float(values["G/flow_tv"]) > 0
    kernel_grad = dict((v.path, g) for v, g in grads["G"])[gan.generator.flow_head.kernel.path]
    assert float(tf.reduce_max(tf.abs(kernel_grad))) > 0


def test_warp_l1_pulls_the_flow_toward_the_targets_motion(tmp_path):
    config = make_config(**tiny_overrides(
        tmp_path, g_warp=True, warp_l1_weight=1.0, l1_weight=0.0, adv_weight=0.0,
        photo_weight=0.0, variation_weight=0.0))
    gan = build_gan(config)
    r = config.resolution
    ramp = np.tile(np.linspace(-1, 1, r, dtype=np.float32)[None, None, :, None],
                   (config.batch_size, r, 1, 3))
    target = warp_images(ramp, constant_flow(config.batch_size, r, 0, 2 / r))  # content moves left
    data = {"source": tf.constant(ramp), "target": target,
            "target_label": tf.ones([config.batch_size], tf.int32),
            "source_label": tf.zeros([config.batch_size], tf.int32)}
    _, values, grads = gradients(gan, data)
    assert float(values["G/warp_l1"]) > 0
    bias_grad = dict((v.path, g) for v, g in grads["G"])[gan.generator.flow_head.bias.path]
    assert float(bias_grad[1]) < 0  # descending raises dx, the target's motion
    # the loss is the source moved alone: it does not reach the colour map or the mask
    head_grad = dict((v.path, g) for v, g in grads["G"]).get(gan.generator.heads[0].bias.path)
    assert head_grad is None or float(tf.reduce_max(tf.abs(head_grad))) == 0.0


def test_flow_target_pulls_the_flow_toward_the_landmark_motion(tmp_path):
    config = make_config(**tiny_overrides(
        tmp_path, g_warp=True, flow_target_weight=1.0, l1_weight=0.0, adv_weight=0.0,
        photo_weight=0.0, variation_weight=0.0))
    gan = build_gan(config)
    r, b = config.resolution, config.batch_size
    data = batch(config)
    data["flow_target"] = tf.constant(constant_flow(b, r, -1 / r, 2 / r))
    _, values, grads = gradients(gan, data)
    # a flow head at zero is 1 px (dy) and 2 px (dx) off: the mean over both is 1.5 px
    np.testing.assert_allclose(float(values["G/flow_target"]), 1.5, rtol=0.05)
    by_path = dict((v.path, g) for v, g in grads["G"])
    bias_grad = by_path[gan.generator.flow_head.bias.path]
    assert float(bias_grad[0]) > 0 and float(bias_grad[1]) < 0  # toward dy < 0, dx > 0
    head_grad = by_path.get(gan.generator.heads[0].bias.path)
    assert head_grad is None or float(tf.reduce_max(tf.abs(head_grad))) == 0.0


def test_a_flow_target_without_landmarks_is_refused_before_training(tmp_path):
    from mlc_keras.data.manifest import ManifestError
    from mlc_keras.training.loop import train

    config = make_config(**tiny_overrides(tmp_path, g_warp=True, flow_target_weight=1.0))
    with pytest.raises(ManifestError, match="no face landmarks beside manifest .*synthetic"):
        train(config)
    assert not os.path.isdir(os.path.join(config.workdir, "checkpoints"))


@pytest.mark.parametrize("overrides, message", [
    (dict(flow_target_weight=1.0), "flow_target_weight needs --g_warp"),
    (dict(g_warp=True, flow_target_weight=1.0, dataset="tfrecord", data_dir="x"),
     "TFRecord shards do not carry"),
    (dict(flow_smooth_weight=1.0), "flow_smooth_weight needs --g_warp"),
    (dict(warp_l1_weight=1.0), "warp_l1_weight needs --g_warp"),
    (dict(g_warp=True, g_output="direct"), "g_warp needs --g_output=attention"),
    (dict(g_warp=True, max_flow=0.0), "--max_flow=0.0"),
    (dict(g_warp=True, flow_target_fold=True), "flow_target_fold needs --flow_target_weight"),
])
def test_bad_warp_options_are_refused(overrides, message):
    with pytest.raises(Exception, match=message):
        make_config(**overrides)


def _set_gain(generator, bias, kernel_scale=0.0, seed=0):
    kernel = np.random.default_rng(seed).normal(0, kernel_scale, generator.gain_head.kernel.shape)
    generator.gain_head.kernel.assign(kernel.astype(np.float32))
    generator.gain_head.bias.assign(np.asarray(bias, np.float32))


def test_shading_head_lights_the_moved_input_smoothly_and_within_its_bound():
    from mlc_keras.models.generator import GAIN_LIMIT, SHADING_CELL, shade

    generator = build_generator(make_config(g_warp=True, g_shading=True, max_flow=0.25,
                                            **TINY)).build_for_inputs()
    x, c = images(16), tf.one_hot([1, 0], 2)
    set_head(generator, keep_logit=30.0)
    np.testing.assert_allclose(generator((x, c))[0].numpy(), x, atol=1e-5)  # no gain yet
    _set_gain(generator, [0.4, 0.0, -0.4])
    gain = GAIN_LIMIT * np.tanh(np.array([0.4, 0.0, -0.4], np.float32))
    expected = shade(x, gain).numpy()
    np.testing.assert_allclose(generator((x, c))[0].numpy(), expected, atol=1e-5)
    assert expected[..., 0].mean() > x[..., 0].mean() and expected[..., 2].mean() < x[..., 2].mean()
    # the intensity scales the gain: 0 is the input, 0.5 half the log-gain
    np.testing.assert_allclose(generator((x, c, tf.constant([0.0, 0.0])))[0].numpy(), x, atol=1e-6)
    np.testing.assert_allclose(generator((x, c, tf.constant([0.5, 0.5])))[0].numpy(),
                               shade(x, gain / 2).numpy(), atol=1e-5)
    # a noisy head gives a smooth gain: interpolated between cell centres, it
    # never jumps between neighbours by more than a share of its range
    _set_gain(generator, [0.0, 0.0, 0.0], kernel_scale=0.02)
    g = generator.final_maps_flow_and_gain((x, c))[3].numpy()
    assert g.shape == (2, 16, 16, 3) and np.abs(g).max() > 1e-3
    for axis in (1, 2):
        step = np.abs(np.diff(g, axis=axis)).max()
        assert step <= (g.max() - g.min()) / (SHADING_CELL / 2) + 1e-6
    # and a wild one stays within its bound
    _set_gain(generator, [0.0, 0.0, 0.0], kernel_scale=30.0)
    g = generator.final_maps_flow_and_gain((x, c))[3].numpy()
    assert np.abs(g).max() <= GAIN_LIMIT + 1e-6
    with pytest.raises(ValueError, match="needs warp=True"):
        from mlc_keras.models.generator import Generator
        Generator(resolution=16, num_classes=2, shading=True)


def test_composite_shades_the_sharp_crop_and_counts_it_as_changed(tmp_path):
    from mlc_keras.models.generator import GAIN_LIMIT, shade

    config = make_config(g_warp=True, g_shading=True, **TINY)
    generator = build_generator(config).build_for_inputs()
    set_head(generator, keep_logit=30.0)
    _set_gain(generator, [0.2, 0.2, 0.2])
    crops, ids = images(64), tf.constant([1, 0], tf.int32)
    out, change = composite_lib.composite(generator, crops, tf.one_hot(ids, 2), detail=0)
    gain = GAIN_LIMIT * np.tanh(0.2)  # about 0.1: past composite.SHADED_GAIN
    np.testing.assert_allclose(out.numpy(), shade(crops, gain).numpy(), atol=1e-5)
    np.testing.assert_allclose(change.numpy(), 1.0, atol=1e-6)
    zero, change0 = composite_lib.composite(generator, crops, tf.one_hot(ids, 2),
                                            tf.constant([0.0, 0.0]), detail=0)
    np.testing.assert_allclose(zero.numpy(), crops, atol=1e-6)
    assert float(tf.reduce_max(change0)) < 1e-6
    served = tf.saved_model.load(export.export_generator(
        generator, config, str(tmp_path), "mlc", 1)["saved_model"]).signatures["composite"](
            images=tf.constant(crops), expressions=ids)
    live, _ = composite_lib.composite(generator, crops, tf.one_hot(ids, 2))
    np.testing.assert_allclose(served["images"].numpy(), live.numpy(), atol=1e-5)


def test_a_shading_head_continues_a_warp_generator_with_no_gain(tmp_path):
    from mlc_keras.config import ConfigError

    warped = build_generator(make_config(g_warp=True, **TINY)).build_for_inputs()
    warped.flow_head.bias.assign([0.1, -0.2])
    path = str(tmp_path / "warp.keras")
    warped.save(path)
    shaded = build_generator(make_config(g_warp=True, g_shading=True, **TINY)).build_for_inputs()
    init_generator(shaded, path)
    x, c = images(16), tf.one_hot([0, 1], 2)
    for a, b in zip(warped((x, c)), shaded((x, c))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    import keras
    _set_gain(shaded, [0.3, 0.1, -0.1])
    again_path = str(tmp_path / "shaded.keras")
    shaded.save(again_path)
    again = keras.saving.load_model(again_path, compile=False)
    assert again.shading
    np.testing.assert_allclose(again((x, c))[0].numpy(), shaded((x, c))[0].numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="--g_shading needs --g_warp"):
        make_config(g_shading=True, **TINY)


def test_motion_box_keeps_the_flow_and_gain_inside_it_and_travels_with_the_model(tmp_path):
    import keras
    from mlc_keras.config import ConfigError
    from mlc_keras.models.generator import MOTION_FEATHER, box_weight

    box = (0.25, 0.5, 0.75, 0.875)
    w = box_weight(box, 64).numpy()[0, :, :, 0]
    c = (np.arange(64) + 0.5) / 64
    inside = np.outer((c > box[1] + MOTION_FEATHER / 2) & (c < box[3] - MOTION_FEATHER / 2),
                      (c > box[0] + MOTION_FEATHER / 2) & (c < box[2] - MOTION_FEATHER / 2))
    outside = ~np.outer((c > box[1] - MOTION_FEATHER / 2) & (c < box[3] + MOTION_FEATHER / 2),
                        (c > box[0] - MOTION_FEATHER / 2) & (c < box[2] + MOTION_FEATHER / 2))
    np.testing.assert_allclose(w[inside], 1.0)
    np.testing.assert_array_equal(w[outside], 0.0)

    overrides = dict(TINY, resolution=32, critic_levels="16")
    free = build_generator(make_config(g_warp=True, g_shading=True, **overrides)).build_for_inputs()
    boxed = build_generator(make_config(g_warp=True, g_shading=True, motion_box="0.25,0.5,0.75,0.875",
                                        **overrides)).build_for_inputs()
    assert boxed.motion_box == box
    for g in (free, boxed):
        set_head(g, keep_logit=30.0, flow_logits=(0.3, -0.2))
        _set_gain(g, [0.2, 0.1, -0.1])
    x, cond = images(32), tf.one_hot([1, 0], 2)
    _, _, flow_free, gain_free = free.final_maps_flow_and_gain((x, cond))
    _, _, flow_boxed, gain_boxed = boxed.final_maps_flow_and_gain((x, cond))
    weight = box_weight(box, 32).numpy()
    np.testing.assert_allclose(flow_boxed.numpy(), flow_free.numpy() * weight, atol=1e-6)
    np.testing.assert_allclose(gain_boxed.numpy(), gain_free.numpy() * weight, atol=1e-6)
    # at full resolution, the crop outside the box is its own and not changed
    crops = images(64)
    out, change = composite_lib.composite(boxed, crops, cond, detail=0)
    # (the box's weight is made at the model's 32 px and interpolated: one
    # 32 px pixel past its edge is still moved a little)
    grown = (box[0] - 1 / 32, box[1] - 1 / 32, box[2] + 1 / 32, box[3] + 1 / 32)
    far = box_weight(grown, 64).numpy()[0, :, :, 0] == 0
    np.testing.assert_allclose(out.numpy()[:, far], crops[:, far], atol=1e-5)
    assert float(tf.reduce_max(change.numpy()[:, far])) < 1e-6
    assert float(tf.reduce_max(change)) > 0.5
    path = str(tmp_path / "boxed.keras")
    boxed.save(path)
    again = keras.saving.load_model(path, compile=False)
    assert again.motion_box == box
    np.testing.assert_allclose(again((x, cond))[0].numpy(), boxed((x, cond))[0].numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="--motion_box needs --g_warp"):
        make_config(motion_box="0.25,0.5,0.75,0.875", **TINY)
    with pytest.raises(ConfigError, match="--motion_box=0.5,0.5,0.2,0.9: expected"):
        make_config(g_warp=True, motion_box="0.5,0.5,0.2,0.9", **TINY)


def _tear(size=32, ramp=(-4.4, -1.6, 4.1), at=14):
    """[1, size, size, 2] flow in fractions: dy of -4 px of R above row ``at``,
    +4 px below, with ``ramp`` (px) on the rows from ``at``; dx a column ramp."""
    dy = np.where(np.arange(size) < at, -4.0, 4.0)
    dy[at:at + len(ramp)] = ramp
    flow = np.zeros((1, size, size, 2), np.float32)
    flow[0, :, :, 0] = dy[:, None] / size
    flow[0, :, :, 1] = np.linspace(-0.02, 0.02, size)[None, :]
    return flow


def test_snap_tears_makes_a_ramp_across_a_tear_a_step_and_leaves_smooth_fields_alone():
    from mlc_keras.models.generator import snap_tears

    flow = _tear()
    snapped = snap_tears(flow).numpy()
    dy_px = snapped[0, :, 5, 0] * 32
    # every pixel of the ramp takes one side's motion: no motion in between
    np.testing.assert_allclose(np.abs(dy_px), 4.0, atol=1e-5)
    assert dy_px[15] == pytest.approx(-4.0) and dy_px[16] == pytest.approx(4.0)
    np.testing.assert_array_equal(snapped[0, :12], flow[0, :12])  # far above: untouched
    np.testing.assert_array_equal(snapped[0, 20:], flow[0, 20:])  # far below: untouched
    np.testing.assert_allclose(snapped[..., 1], flow[..., 1], atol=1e-7)  # dx the same here
    # a smooth field (0.2 px per px) and a field that converges are returned as they are
    rows = np.arange(32, dtype=np.float32)
    smooth = np.zeros((1, 32, 32, 2), np.float32)
    smooth[0, :, :, 0] = (0.2 * rows / 32)[:, None]
    np.testing.assert_array_equal(snap_tears(smooth).numpy(), smooth)
    np.testing.assert_array_equal(snap_tears(-flow).numpy(), -flow)


def test_flow_snap_sharpens_the_generators_flow_and_travels_with_the_model(tmp_path):
    import keras
    from mlc_keras.config import ConfigError
    from mlc_keras.models.generator import snap_tears

    overrides = dict(TINY, resolution=32, critic_levels="16")
    plain = build_generator(make_config(g_warp=True, **overrides)).build_for_inputs()
    snapping = build_generator(make_config(g_warp=True, g_flow_snap=True, **overrides))
    snapping.build_for_inputs()
    assert snapping.flow_snap and not plain.flow_snap
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in plain.get_weights()]
    plain.set_weights(weights)
    snapping.set_weights(weights)  # the snap has no weights of its own
    x, cond = images(32), tf.one_hot([1, 0], 2)
    flow_plain = plain.final_maps_and_flow((x, cond))[2]
    flow_snapped = snapping.final_maps_and_flow((x, cond))[2]
    np.testing.assert_allclose(flow_snapped.numpy(), snap_tears(flow_plain).numpy(), atol=1e-6)
    assert np.abs(flow_snapped.numpy() - flow_plain.numpy()).max() > 1e-3  # it did snap
    path = str(tmp_path / "snap.keras")
    snapping.save(path)
    again = keras.saving.load_model(path, compile=False)
    assert again.flow_snap
    np.testing.assert_allclose(again((x, cond))[0].numpy(), snapping((x, cond))[0].numpy(),
                               atol=1e-6)
    with pytest.raises(ConfigError, match="--g_flow_snap needs --g_warp"):
        make_config(g_flow_snap=True, **TINY)
