"""The StarGAN baseline: D's two heads, losses that match their definitions,
G never trained towards the paired target, and the preset trains end to end."""

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tiny import CONFIGS, tiny_overrides
from mlc_keras import config as config_lib
from mlc_keras.training import losses
from mlc_keras.training.build import build_gan
from mlc_keras.config import ConfigError, make_config
from mlc_keras.training.gan import StarGAN
from mlc_keras.models import StarDiscriminator
from mlc_keras.training.checkpoints import restore_generator
from mlc_keras.training.loop import train

STARGAN = dict(model="stargan", critic_levels="", g_conditioning="input", g_output="direct",
               g_skips=False, d_condition="none", spectral_norm=False, gan_loss="wgan")


def small(**kw):
    base = dict(resolution=16, g_downsamples=1, g_channels=4, g_res_blocks=1, d_channels=4,
                optimizer="sgd", g_lr=0.05, d_lr=0.05, lr_decay_start=1.0,
                expressions="neutral,happy,sad", **STARGAN)
    base.update(kw)
    return make_config(**base)


def batch(seed=0, n=2, size=16):
    rng = np.random.default_rng(seed)
    return {"source": rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
            "target": rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
            "target_label": np.array([1, 2], np.int32), "source_label": np.zeros(n, np.int32)}


def one_step(gan, data):
    return gan.fit(tf.data.Dataset.from_tensors(data), epochs=1, steps_per_epoch=1,
                   verbose=0).history


def test_star_discriminator_returns_patch_and_class_logits():
    d = StarDiscriminator(num_classes=5, input_size=32, base_channels=4, downsamples=3)
    patch, classes = d((tf.zeros((2, 32, 32, 3)), None, None))
    assert patch.shape == (2, 4, 4, 1) and classes.shape == (2, 5)
    clone = StarDiscriminator.from_config(d.get_config())
    assert clone.get_config() == d.get_config()
    with pytest.raises(ValueError, match="num_classes=1"):
        StarDiscriminator(num_classes=1)


def test_reported_losses_follow_their_definitions():
    gan = build_gan(small(gp_weight=0.0))
    assert isinstance(gan, StarGAN)
    data = batch()
    src = tf.one_hot(data["source_label"], 3)
    tgt = tf.one_hot(data["target_label"], 3)
    fake = gan.generator((data["source"], tgt), training=True)[0]
    rec = gan.generator((fake, src), training=True)[0]
    _, real_classes = gan.discriminator((data["target"], None, None))
    _, fake_classes = gan.discriminator((fake, None, None))
    expect = {
        "G/rec": np.mean(np.abs(rec.numpy() - data["source"])),
        "D/cls": np.mean(losses.classification_loss(data["target_label"], real_classes)),
        "G/cls": np.mean(losses.classification_loss(data["target_label"], fake_classes)),
    }
    history = one_step(gan, data)  # metrics are computed before the update
    for name, value in expect.items():
        np.testing.assert_allclose(history[name][0], value, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("model,target_matters", [("stargan", False), ("mlc", True)])
def test_generator_never_learns_from_the_paired_target(model, target_matters):
    """StarGAN's G update with only the cycle term is blind to the target
    pixels; the paired models' L1 is not (the control)."""
    if model == "stargan":
        config = small(adv_weight=0.0, cls_weight=0.0)
    else:
        config = make_config(resolution=16, g_downsamples=1, g_channels=4, g_res_blocks=1,
                             d_channels=4, critic_levels="", optimizer="sgd", g_lr=0.05,
                             adv_weight=0.0, lr_decay_start=1.0, expressions="neutral,happy,sad")
    after = []
    for target_seed in (1, 2):
        gan = build_gan(config)  # same seed: same initial weights
        data = batch()
        data["target"] = batch(target_seed)["target"]
        one_step(gan, data)
        after.append(gan.generator.get_weights())
    same = all(np.allclose(a, b) for a, b in zip(*after))
    assert same != target_matters


def test_domain_classifier_learns_the_target_expression():
    gan = build_gan(small(adv_weight=0.0, gp_weight=0.0, optimizer="adam", d_lr=0.01))
    data = batch()
    first = one_step(gan, data)["D/cls"][0]
    for _ in range(15):
        last = one_step(gan, data)["D/cls"][0]
    assert last < 0.5 * first


def test_stargan_refuses_critics_and_conditioned_d():
    with pytest.raises(ConfigError, match="--model=stargan has no critic networks"):
        small(critic_levels="8")
    with pytest.raises(ConfigError, match="--d_condition=none"):
        small(d_condition="both")


def test_preset_trains_checkpoints_and_restores(tmp_path):
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    args = fv.read_flags_from_files(
        [f"--flagfile={CONFIGS}/tiny.flags", f"--flagfile={CONFIGS}/stargan.flags"],
        force_gnu=False)
    fv(["prog"] + args)
    overrides = tiny_overrides(tmp_path, train_steps=2, critic_levels="")
    overrides = {k: v for k, v in overrides.items()
                 if k in ("workdir", "data_cache", "verbose", "train_steps")}
    config = config_lib.config_from_flags(fv, **overrides)
    assert config.model == "stargan" and config.gan_loss == "wgan" and not config.critic_levels
    result = train(config)
    assert result["step"] == 2
    trackers = result["gan"].trackers
    assert np.isfinite(float(trackers["G/rec"].result())) and "D/gp" in trackers
    from mlc_keras.training.build import build_generator
    generator = build_generator(config)
    generator((tf.zeros((1, 32, 32, 3)), tf.zeros((1, 7))))
    restore_generator(generator, str(tmp_path / "run" / "checkpoints" / "ckpt-2"))
