"""The loss reduction under MirroredStrategy: one SGD step over 2 logical CPU
devices must update the weights exactly as one device on the same global
batch (SGD, not Adam: Adam's normalisation would hide a 2x scaling error)."""

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.training.build import build_gan
from mlc_keras.config import make_config
from mlc_keras.training.runtime import StrategyError, make_strategy

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            d_channels=4, feature_channels=4, batch_size=4, optimizer="sgd", g_lr=0.5, d_lr=0.5,
            critic_lr=0.5, lr_decay_start=1.0, train_steps=1)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "source": rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32),
        "target": rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32),
        "target_label": np.array([1, 4, 0, 6], np.int32),
        "source_label": np.zeros(4, np.int32),
    }


def one_step(strategy_name, initial=None):
    config = make_config(strategy=strategy_name, **TINY)
    strategy = make_strategy(strategy_name, config.batch_size)
    with strategy.scope():
        gan = build_gan(config)
    nets = [gan.generator, gan.discriminator] + gan.photo_critics + gan.variation_critics + \
        gan.feature_encoders
    if initial is not None:
        for net, weights in zip(nets, initial):
            net.set_weights(weights)
    before = [net.get_weights() for net in nets]
    ds = tf.data.Dataset.from_tensors(batch())
    gan.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    after = [net.get_weights() for net in nets]
    return strategy.num_replicas_in_sync, before, after


def test_mirrored_step_equals_single_device_step():
    replicas, before, single = one_step("one_device")
    assert replicas == 1
    replicas, before_m, mirrored = one_step("mirrored", initial=before)
    assert replicas == 2
    moved = 0
    for net_b, net_s, net_m in zip(before, single, mirrored):
        for b, s, m in zip(net_b, net_s, net_m):
            delta_s, delta_m = s - b, m - b
            np.testing.assert_allclose(delta_m, delta_s, rtol=1e-3, atol=1e-6)
            moved += int(np.abs(delta_s).max() > 1e-5)
    assert moved > 10  # the step really updated G, D and the critics


def test_global_batch_must_split_across_replicas():
    with pytest.raises(StrategyError, match="not divisible by the 2 replicas"):
        make_strategy("mirrored", 3)
