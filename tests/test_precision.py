"""Mixed precision: --mixed_precision builds every network under its Keras
policy (float32 variables, bfloat16 / float16 compute), keeps outputs,
logits and losses in float32, scales the losses under float16, and a step
matches float32's within the precision's noise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.config import make_config
from mlc_keras.training.build import build_gan
from test_gan import batch  # the one random batch of the data contract
from tiny import tiny_overrides


def run_steps(tmp_path, precision, steps=2):
    config = make_config(**tiny_overrides(tmp_path / precision, mixed_precision=precision))
    gan = build_gan(config)
    data = batch(config)
    results = [{k: float(v) for k, v in gan.train_step(data).items()} for _ in range(steps)]
    return gan, results


def test_generator_under_bfloat16_computes_low_and_returns_float32():
    """The cheap check of the default run (the whole GAN's steps: slow run)."""
    from mlc_keras.models.precision import policy_scope
    from mlc_keras.training.build import build_generator

    before = keras.config.dtype_policy().name
    config = make_config(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4,
                         g_res_blocks=1, expressions="neutral,happy")
    keras.utils.set_random_seed(0)
    reference = build_generator(config).build_for_inputs()
    with policy_scope("bfloat16"):
        low = build_generator(config).build_for_inputs()
    assert keras.config.dtype_policy().name == before
    low.set_weights(reference.get_weights())
    assert low.stem.compute_dtype == "bfloat16" and all(v.dtype == "float32" for v in low.weights)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    c = tf.one_hot([0, 1], 2)
    outs, refs = low((x, c)), reference((x, c))
    assert all(o.dtype == tf.float32 for o in outs)
    diff = max(float(tf.reduce_max(tf.abs(o - r))) for o, r in zip(outs, refs))
    assert 0 < diff < 0.05, diff


@pytest.mark.slow  # two GANs traced: about a minute each here
@pytest.mark.parametrize("precision,compute", [("bfloat16", "bfloat16"), ("float16", "float16")])
def test_networks_compute_in_the_low_precision_and_keep_float32_state(tmp_path, precision,
                                                                       compute):
    before = keras.config.dtype_policy().name
    gan, results = run_steps(tmp_path, precision)
    assert keras.config.dtype_policy().name == before  # the global policy is restored
    nets = [gan.generator, gan.discriminator] + gan.photo_critics + gan.variation_critics
    for net in nets:
        assert net.dtype_policy.compute_dtype == compute, net.name
        assert all(v.dtype == "float32" for v in net.weights), net.name
    stem = gan.generator.stem
    assert stem.compute_dtype == compute
    r = gan.generator.resolution
    x = tf.zeros((1, r, r, 3))
    c = tf.one_hot([0], 7)
    assert all(out.dtype == tf.float32 for out in gan.generator((x, c)))
    assert gan.discriminator((x, x, c)).dtype == tf.float32
    assert all(np.isfinite(v) for r in results for v in r.values())
    if precision == "float16":
        assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
def test_bfloat16_steps_match_float32_within_its_noise(tmp_path):
    _, reference = run_steps(tmp_path, "float32")
    _, low = run_steps(tmp_path, "bfloat16")
    for ref, got in zip(reference, low):
        for key in [k for k in ref if k.startswith("G/l1/")] + ["D/loss", "G/loss"]:
            # bfloat16 keeps ~3 significant digits; the losses agree to about 1 %
            assert abs(got[key] - ref[key]) <= 0.02 * abs(ref[key]) + 1e-3, (key, ref, got)


@pytest.mark.slow  # an export takes about a minute here
def test_bfloat16_export_variant_stays_within_2_of_255(tmp_path):
    from mlc_keras.inference import export, loading
    from mlc_keras.training.build import build_generator

    config = make_config(resolution=16, g_downsamples=1, critic_levels="8", g_channels=8,
                         g_res_blocks=1, expressions="neutral,happy")
    keras.utils.set_random_seed(0)
    generator = build_generator(config).build_for_inputs()
    low = export.with_precision(generator, "bfloat16")
    assert low.dtype_policy.name == "mixed_bfloat16" and generator.dtype_policy.name == "float32"
    result = export.export_generator(low, config, str(tmp_path), "mlc", 1)
    loaded = tf.saved_model.load(result["saved_model"])
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    ids = np.array([0, 1, 0, 1], np.int32)
    served = loaded.signatures["serving_default"](images=tf.constant(x),
                                                  expressions=tf.constant(ids))["images"].numpy()
    reference = loading.generate(generator, x, ids)
    assert served.dtype == np.float32
    # in [-1, 1] units 2/255 of the pixel range is 4/255
    diff = np.abs(served - reference)
    assert diff.max() <= 4.0 / 255.0, (diff.max(), diff.mean())
    assert diff.max() > 0  # it did compute in bfloat16
