"""The baselines' training schedule and the copy-the-source baseline:
--n_critic steps D and the critics n times per G step (G once, on the last
batch, against the updated D), the linear decay in each optimizer's own
iterations, the presets' official values, and --model=copy's output is its
input through the run-folder loader the evaluation uses."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tiny import CONFIGS, tiny_overrides
from mlc_keras import config as config_lib
from mlc_keras.config import ConfigError, make_config
from mlc_keras.training.build import CopyGenerator, LinearDecay, _schedule, build_gan
from mlc_keras.training.loop import pairs_per_step, train

SMALL = dict(resolution=16, g_downsamples=1, g_channels=4, g_res_blocks=1, d_channels=4,
             feature_channels=4, batch_size=2, expressions="neutral,happy,sad",
             lr_decay_start=1.0)


def stacked_batch(config, n, seed=0):
    """``n`` global batches of the data contract stacked along the batch axis."""
    rng = np.random.default_rng(seed)
    r, b = config.resolution, config.batch_size * n
    images = lambda: rng.uniform(-1, 1, (b, r, r, 3)).astype(np.float32)  # noqa: E731
    labels = rng.integers(0, len(config.expressions), b).astype(np.int32)
    return {"source": images(), "target": images(), "target_label": labels,
            "source_label": np.zeros(b, np.int32)}


def fit(gan, data, steps=1):
    return gan.fit(tf.data.Dataset.from_tensors(data).repeat(), epochs=1, steps_per_epoch=steps,
                   shuffle=False, verbose=0).history


def iterations(gan):
    return {name: int(getattr(gan, name).iterations.numpy())
            for name in ("g_optimizer", "d_optimizer", "c_optimizer")}


@pytest.mark.parametrize("model", ["mlc", "stargan"])
def test_n_critic_updates_d_and_critics_n_times_per_g_update(model):
    extra = (dict(critic_levels="8") if model == "mlc" else
             dict(model="stargan", critic_levels="", g_conditioning="input", g_output="direct",
                  g_skips=False, d_condition="none", spectral_norm=False, gan_loss="wgan"))
    config = make_config(**SMALL, **extra, n_critic=2, update_order="d_then_g")
    gan = build_gan(config)
    g_before = [w.copy() for w in gan.generator.get_weights()]
    history = fit(gan, stacked_batch(config, 2), steps=3)
    counts = iterations(gan)
    assert counts["g_optimizer"] == 3 and counts["d_optimizer"] == 6
    assert counts["c_optimizer"] == (6 if model == "mlc" else 0)
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert any(not np.allclose(a, b) for a, b in zip(g_before, gan.generator.get_weights()))


def test_g_update_uses_the_last_batch_and_the_updated_d():
    """With D frozen (rate 0) the alternating G update on two stacked batches
    equals a joint update on the second one; with D moving it differs (G sees
    the updated D)."""
    base = dict(SMALL, critic_levels="", optimizer="sgd", g_lr=0.1, spectral_norm=False)
    data = stacked_batch(make_config(**base), 2)
    second = {k: v[len(v) // 2:] for k, v in data.items()}

    def g_after(config, batch):
        gan = build_gan(config)  # same seed: same initial weights
        fit(gan, batch)
        return gan.generator.get_weights()

    joint = g_after(make_config(**base, d_lr=1e-30), second)
    frozen_d = g_after(make_config(**base, d_lr=1e-30, n_critic=2, update_order="d_then_g"), data)
    for a, b in zip(joint, frozen_d):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    moving_d = g_after(make_config(**base, d_lr=1.0, n_critic=2, update_order="d_then_g"), data)
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(joint, moving_d))


def test_decay_is_linear_over_the_last_part_in_each_optimizers_own_updates():
    config = make_config(train_steps=10, lr_decay_start=0.5, n_critic=5, update_order="d_then_g")
    g = _schedule(1e-4, config)
    d = _schedule(1e-4, config, updates_per_step=5)
    assert isinstance(g, LinearDecay) and (g.decay_start, g.total_steps) == (5, 10)
    assert (d.decay_start, d.total_steps) == (25, 50)
    g_values = [float(g(step)) for step in range(11)]
    np.testing.assert_allclose(g_values, [1e-4] * 6 + [8e-5, 6e-5, 4e-5, 2e-5, 0.0], atol=1e-12)
    # D's update k of G step s follows the same curve at the same point of training
    np.testing.assert_allclose([float(d(5 * s)) for s in range(11)], g_values, atol=1e-12)
    assert _schedule(1e-4, make_config(lr_decay_start=1.0)) == 1e-4


def read_presets(*names):
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    args = fv.read_flags_from_files([f"--flagfile={CONFIGS}/{n}.flags" for n in names],
                                    force_gnu=False)
    fv(["prog"] + args)
    return config_lib.config_from_flags(fv)


def test_presets_carry_the_official_values():
    star = read_presets("demo", "stargan")
    assert (star.n_critic, star.update_order, star.gan_loss, star.gp_weight) == (5, "d_then_g",
                                                                                 "wgan", 10.0)
    assert (star.cls_weight, star.rec_weight, star.g_lr, star.d_lr) == (1.0, 10.0, 1e-4, 1e-4)
    assert (star.beta1, star.beta2, star.lr_decay_start) == (0.5, 0.999, 0.5)
    # StarGAN's solver: 200k D iterations, decay over the last 100k = 40k G steps here
    d = _schedule(1e-4, dataclasses.replace(star, train_steps=40000), star.n_critic)
    assert (d.decay_start, d.total_steps) == (100000, 200000)
    assert pairs_per_step(star) == 5 * star.batch_size
    pix = read_presets("demo", "pix2pix")
    assert (pix.n_critic, pix.update_order, pix.gan_loss, pix.l1_weight) == (1, "d_then_g",
                                                                             "nonsaturating", 100.0)
    assert (pix.g_lr, pix.d_lr, pix.beta1, pix.beta2, pix.lr_decay_start) == (2e-4, 2e-4, 0.5,
                                                                              0.999, 0.5)
    assert (pix.d_downsamples, pix.spectral_norm, pix.l1_levels) == (3, False, "final")


def test_bad_schedule_flags_are_one_line_errors_naming_the_flag():
    with pytest.raises(ConfigError, match=r"--n_critic=0: must be at least 1"):
        make_config(n_critic=0)
    with pytest.raises(ConfigError, match=r"--n_critic=5 needs --update_order=d_then_g"):
        make_config(n_critic=5)
    with pytest.raises(ConfigError, match=r"--update_order=both: expected one of"):
        make_config(update_order="both")


def test_copy_generator_outputs_its_input_at_every_level():
    generator = CopyGenerator(16, 3, 2).build_for_inputs()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    outputs = generator((x, tf.one_hot([0, 2], 3)))
    assert generator.levels == (16, 8, 4) and not generator.weights
    np.testing.assert_array_equal(outputs[0], x)
    np.testing.assert_allclose(outputs[1], x.reshape(2, 8, 2, 8, 2, 3).mean((2, 4)), atol=1e-6)


def test_copy_run_folder_loads_as_the_identity(tmp_path):
    from mlc_keras.inference.loading import generate, load_run

    config = make_config(**tiny_overrides(tmp_path, model="copy", critic_levels=""))
    first = train(config)
    assert first["step"] == 0 and first["checkpoint"].endswith("ckpt-0")
    assert train(config)["checkpoint"] == first["checkpoint"]  # a second call writes nothing
    generator, loaded, checkpoint = load_run(config.workdir)
    assert loaded.model == "copy" and checkpoint.endswith("ckpt-0")
    x = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(generate(generator, x, [0, 3, 6]), x)
