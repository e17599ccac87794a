import numpy as np
import pytest
import tensorflow as tf
import keras

from mlc_keras.training.build import build_gan
from mlc_keras.config import ConfigError, make_config
from mlc_keras.models import FeatureEncoder, Generator, PatchDiscriminator
from mlc_keras.models.layers import SNConv2D, downsample_images

TINY = dict(resolution=32, critic_levels="8,16", g_channels=8, g_res_blocks=1, d_channels=8,
            feature_channels=8)


def counts(gan):
    return (gan.generator.count_params(), gan.discriminator.count_params(),
            [m.count_params() for m in gan.photo_critics],
            [m.count_params() for m in gan.variation_critics],
            [m.count_params() for m in gan.feature_encoders])


@pytest.mark.parametrize("overrides,expected", [
    (TINY, (51516, 12306, [1754, 3906], [2010, 2010], [728, 728])),
    ({}, (8629644, 671874, [145922, 145922], [73410, 73410], [34496, 34496])),
])
def test_parameter_counts_are_pinned(overrides, expected):
    assert counts(build_gan(make_config(**overrides))) == expected


def test_shared_and_frozen_feature_encoders():
    shared = build_gan(make_config(feature_encoder="shared", **TINY))
    assert len(shared.feature_encoders) == 1
    assert shared.critics[0].encoder is shared.critics[1].encoder
    frozen = build_gan(make_config(feature_encoder="frozen", **TINY))
    frozen_vars = {id(v) for f in frozen.feature_encoders for v in f.variables}
    assert frozen_vars and not frozen_vars & {id(v) for v in frozen.critic_variables}


@pytest.mark.parametrize("resolution,downsamples", [(32, 1), (64, 2), (128, 2), (256, 3)])
def test_every_decoder_level_has_its_shape(resolution, downsamples):
    g = Generator(resolution, num_classes=7, base_channels=4, downsamples=downsamples,
                  res_blocks=1)
    x = tf.random.uniform((2, resolution, resolution, 3), -1, 1)
    c = tf.one_hot([1, 4], 7)
    outputs = g((x, c))
    assert g.levels == tuple(resolution // 2 ** i for i in range(downsamples + 1))
    assert [tuple(o.shape) for o in outputs] == [(2, lv, lv, 3) for lv in g.levels]
    for o in outputs:
        assert float(tf.reduce_max(tf.abs(o))) <= 1.0


def test_generator_depends_on_the_expression():
    g = Generator(32, num_classes=3, base_channels=4, res_blocks=1)
    x = tf.random.uniform((1, 32, 32, 3), -1, 1)
    a = g((x, tf.one_hot([0], 3)))[0]
    b = g((x, tf.one_hot([2], 3)))[0]
    assert float(tf.reduce_mean(tf.abs(a - b))) > 1e-4


@pytest.mark.parametrize("kwargs,message", [
    (dict(resolution=96), "power of two"),
    (dict(resolution=64, critic_levels="8"), "produces levels 64,32,16"),
    (dict(resolution=32, g_downsamples=4), "supports 1..3"),
    (dict(critic_levels="a"), "expected integers"),
    (dict(expressions="neutral,grumpy"), "unknown expression 'grumpy'"),
    (dict(strategy="mirrored", jit_compile=True), "jit_compile"),
    (dict(dataset="london"), "needs --data_dir"),
])
def test_config_rejects_what_the_decoder_cannot_do(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**kwargs)


def test_empty_critic_levels_means_no_critics():
    gan = build_gan(make_config(**{**TINY, "critic_levels": ""}))
    assert gan.critics == [] and gan.critic_variables == []


def test_spectral_norm_bounds_the_kernel():
    layer = SNConv2D(6, 3)
    x = tf.random.uniform((1, 8, 8, 5))
    layer(x)
    layer.kernel.assign(layer.kernel * 50.0)
    for _ in range(30):  # power iteration converges while training
        layer(x, training=True)
    w = tf.reshape(layer.normalized_kernel(), (-1, 6)).numpy()
    assert np.linalg.svd(w, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-2)


def test_discriminator_conditioning_changes_inputs():
    d = PatchDiscriminator(16, base_channels=4, downsamples=2, condition="both")
    x = tf.zeros((2, 16, 16, 3))
    out_a = d((x, x, tf.one_hot([0, 0], 3)))
    out_b = d((x, x, tf.one_hot([1, 1], 3)))
    assert out_a.shape == (2, 4, 4, 1)
    assert float(tf.reduce_max(tf.abs(out_a - out_b))) > 0
    assert FeatureEncoder(8)(tf.zeros((1, 16, 16, 3))).shape == (1, 4, 4, 8)


def test_downsample_is_area_average():
    x = tf.reshape(tf.range(16, dtype=tf.float32), (1, 4, 4, 1))
    y = downsample_images(x, 2)
    np.testing.assert_allclose(y.numpy().ravel(), [2.5, 4.5, 10.5, 12.5])


def test_generator_config_round_trip():
    g = Generator(32, num_classes=3, base_channels=4, res_blocks=2, skips=False,
                  conditioning="input_and_decoder", output="direct")
    clone = Generator.from_config(g.get_config())
    assert clone.get_config() == g.get_config()
    assert clone.skips is False and clone.res_blocks == 2 and clone.output_kind == "direct"


def test_attention_heads_blend_the_input_at_every_level():
    g = Generator(32, num_classes=3, base_channels=4, res_blocks=1, output="attention")
    x = tf.random.uniform((2, 32, 32, 3), -1, 1)
    c = tf.one_hot([0, 2], 3)
    g((x, c))
    for head in g.heads:  # mask saturated at 1: every level is the input itself
        kernel, bias = head.get_weights()
        head.set_weights([np.zeros_like(kernel), np.array([0, 0, 0, 30.0], np.float32)])
    for level, out in zip(g.levels, g((x, c))):
        np.testing.assert_allclose(out, downsample_images(x, level), atol=1e-5)
    for head in g.heads:  # mask at 0: the colour map tanh(0) = 0 everywhere
        kernel, _ = head.get_weights()
        head.set_weights([np.zeros_like(kernel), np.array([0, 0, 0, -30.0], np.float32)])
    assert all(float(tf.reduce_max(tf.abs(o))) < 1e-5 for o in g((x, c)))


@pytest.mark.parametrize("l1_levels,lower_heads_move", [("all", True), ("final", False)])
def test_l1_levels_decide_which_heads_learn(l1_levels, lower_heads_move):
    overrides = dict(resolution=16, g_downsamples=1, g_channels=4, g_res_blocks=1, d_channels=4,
                     critic_levels="", l1_levels=l1_levels, optimizer="sgd", g_lr=0.5,
                     lr_decay_start=1.0)
    if l1_levels == "final":
        overrides.update(model="pix2pix", g_output="direct")
    gan = build_gan(make_config(**overrides))
    head = gan.generator.heads[-1]  # the 8 px level
    before = [w.copy() for w in head.get_weights()]
    rng = np.random.default_rng(0)
    batch = {"source": rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32),
             "target": rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32),
             "target_label": np.array([1, 2], np.int32), "source_label": np.zeros(2, np.int32)}
    gan.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0)
    moved = any(not np.allclose(a, b) for a, b in zip(before, head.get_weights()))
    assert moved == lower_heads_move


def test_wide_head_equals_the_conv_at_batch_one_and_when_traced():
    from mlc_keras.models.layers import shifted_taps_conv, wide_head

    rng = np.random.default_rng(0)
    conv = keras.layers.Conv2D(4, 7, padding="same", bias_initializer="ones")
    x = rng.normal(size=(3, 12, 10, 5)).astype("float32")
    reference = conv(x).numpy()
    np.testing.assert_allclose(shifted_taps_conv(x, conv.kernel).numpy() + 1.0, reference,
                               atol=1e-4)
    np.testing.assert_allclose(wide_head(conv, x[:1]).numpy(), reference[:1], atol=1e-4)
    traced = tf.function(lambda v: wide_head(conv, v),
                         input_signature=[tf.TensorSpec([None, 12, 10, 5])])
    for n in (1, 3):
        np.testing.assert_allclose(traced(x[:n]).numpy(), reference[:n], atol=1e-4)
    with pytest.raises(ValueError, match="odd kernel"):
        shifted_taps_conv(x, tf.zeros([4, 4, 5, 2]))


def test_instance_norm_equals_group_norm_in_value_and_gradient():
    """The fused per-image kernels (static batch), the batch-of-one kernel
    behind a traced unknown batch, and the plain ops above the per-image limit
    all give GroupNormalization(groups=-1)'s outputs and gradients."""
    from mlc_keras.models import layers as mlc_layers

    rng = np.random.default_rng(1)
    reference = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)
    fused = mlc_layers.InstanceNormalization()
    for layer in (reference, fused):
        layer.build((None, 6, 5, 4))
    gamma, beta = rng.normal(size=4).astype("float32"), rng.normal(size=4).astype("float32")
    for layer in (reference, fused):
        layer.set_weights([gamma, beta])
    upstream = tf.constant(rng.normal(size=(70, 6, 5, 4)).astype("float32"))

    def values_and_grads(layer, x, call=None):
        call = call or layer
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            loss = tf.reduce_sum(y * upstream[:x.shape[0]])
        return [y] + tape.gradient(loss, [x] + layer.trainable_variables)

    traced = tf.function(fused, input_signature=[tf.TensorSpec([None, 6, 5, 4])])
    for n in (1, 3, 70):  # 70 is above the per-image limit of 64
        x = tf.constant((3 * rng.normal(size=(n, 6, 5, 4)) + 1).astype("float32"))
        want = values_and_grads(reference, x)
        for got in (values_and_grads(fused, x), values_and_grads(fused, x, traced)):
            for a, b in zip(got, want):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    assert mlc_layers.normalization("instance", "norm").__class__ is mlc_layers.InstanceNormalization


def test_float32_image_norm_runs_on_tiles_with_the_image_statistics():
    """A float32 image with an even H*W reaches the fused kernel as H*W/2
    tiles of 2 x 1 (the AVX2 speed-up), with the untiled kernel's result;
    odd H*W and bfloat16 keep the image shape."""
    from mlc_keras.models import layers as mlc_layers

    rng = np.random.default_rng(2)
    gamma = tf.constant(rng.normal(size=4).astype("float32"))
    beta = tf.constant(rng.normal(size=4).astype("float32"))
    for (h, w, dtype), want_shape in (((6, 5, tf.float32), [15, 2, 1, 4]),
                                      ((5, 5, tf.float32), [1, 5, 5, 4]),
                                      ((6, 5, tf.bfloat16), [1, 6, 5, 4])):
        x = tf.cast(3 * rng.normal(size=(1, h, w, 4)) + 1, dtype)
        graph = tf.function(mlc_layers.fused_instance_norm).get_concrete_function(
            x, gamma, beta, 1e-5).graph
        shapes = [op.inputs[0].shape.as_list() for op in graph.get_operations()
                  if op.type == "FusedBatchNormV3"]
        assert shapes == [want_shape], (h, w, dtype, shapes)
        got = mlc_layers.fused_instance_norm(x, gamma, beta, 1e-5)
        untiled = mlc_layers._fused_norm(x, gamma, beta, 1e-5)
        assert got.shape == x.shape
        np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(),
                                   tf.cast(untiled, tf.float32).numpy(), rtol=1e-6, atol=1e-6)


def test_instance_norm_under_bfloat16_keeps_float32_weights():
    from mlc_keras.models import layers as mlc_layers

    layer = mlc_layers.InstanceNormalization(dtype="mixed_bfloat16")
    x = tf.random.normal([2, 8, 8, 3])
    y = layer(tf.cast(x, "bfloat16"))
    assert y.dtype == tf.bfloat16 and layer.gamma.dtype == "float32"
    want = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)(x)
    np.testing.assert_allclose(tf.cast(y, "float32").numpy(), want.numpy(), atol=0.05)
    clone = mlc_layers.InstanceNormalization.from_config(layer.get_config())
    assert clone.groups == -1 and clone.epsilon == layer.epsilon
