"""One GAN step in isolation: finite losses, a gradient for every trainable
variable of G, D and each critic network, none for a frozen f."""

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.config import make_config
from mlc_keras.training import losses
from mlc_keras.training.build import build_gan
from tiny import tiny_overrides


def batch(config, seed=0):
    rng = np.random.default_rng(seed)
    r, b = config.resolution, config.batch_size
    images = lambda: tf.constant(rng.uniform(-1, 1, (b, r, r, 3)).astype(np.float32))  # noqa: E731
    labels = tf.constant(rng.integers(0, len(config.expressions), b).astype(np.int32))
    return {"source": images(), "target": images(), "target_label": labels,
            "source_label": tf.zeros_like(labels)}


def gradients(gan, data):
    """{role: [(variable, gradient)]} of one step's averaged losses."""
    values = {}
    with tf.GradientTape(persistent=True) as tape:
        g_total, d_total, c_total = gan.step_losses(data, values)
        totals = {"G": tf.reduce_mean(g_total), "D": tf.reduce_mean(d_total)}
        if c_total is not None:
            totals["critics"] = tf.reduce_mean(c_total)
    variables = {"G": gan.generator.trainable_variables,
                 "D": gan.discriminator.trainable_variables, "critics": gan.critic_variables}
    grads = {role: list(zip(variables[role], tape.gradient(loss, variables[role])))
             for role, loss in totals.items()}
    return totals, values, grads


@pytest.mark.parametrize("gan_loss", [
    form if form in ("nonsaturating", "wgan") else pytest.param(form, marks=pytest.mark.slow)
    for form in losses.GAN_LOSSES])  # the other two forms in the slow run (-m slow)
def test_mlc_step_reaches_every_network(tmp_path, gan_loss):
    config = make_config(**tiny_overrides(tmp_path, gan_loss=gan_loss))
    gan = build_gan(config)
    totals, values, grads = gradients(gan, batch(config))
    for name, value in list(totals.items()) + list(values.items()):
        assert np.isfinite(float(value)), name
    assert set(grads) == {"G", "D", "critics"}
    for role, pairs in grads.items():
        missing = [v.path for v, g in pairs if g is None]
        assert not missing, f"{role}: no gradient for {missing}"
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for _, g in pairs), role
    # every critic network (photo, variation, f) of both levels is among the critics' variables
    critic_nets = gan.photo_critics + gan.variation_critics + gan.feature_encoders
    assert len(critic_nets) == 6
    reached = {id(v) for v, _ in grads["critics"]}
    for net in critic_nets:
        assert net.trainable_variables and all(id(v) in reached for v in net.trainable_variables)
    for level in config.critic_levels:
        assert f"critic/{level}/photo" in values and f"G/critic/{level}/variation" in values


def test_frozen_feature_encoder_gets_no_update(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, feature_encoder="frozen"))
    gan = build_gan(config)
    frozen = [v for f in gan.feature_encoders for v in f.weights]
    assert frozen and not any(v.trainable for v in frozen)
    before = [v.numpy().copy() for v in frozen]
    _, _, grads = gradients(gan, batch(config))
    assert not {id(v) for v in frozen} & {id(v) for v, _ in grads["critics"]}
    gan.train_step(batch(config, seed=1))
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, frozen))


def test_step_updates_and_reports(tmp_path):
    config = make_config(**tiny_overrides(tmp_path))
    gan = build_gan(config)
    g_before = [v.numpy().copy() for v in gan.generator.trainable_variables]
    logs = gan.train_step(batch(config))
    assert set(logs) == set(gan._tracker_names)
    assert all(np.isfinite(float(v)) for v in logs.values())
    changed = [not np.array_equal(b, v.numpy())
               for b, v in zip(g_before, gan.generator.trainable_variables)]
    assert all(changed)


def test_pix2pix_is_the_paired_base_without_critics(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, model="pix2pix", critic_levels="",
                                          l1_levels="final"))
    gan = build_gan(config)
    assert type(gan).__name__ == "PairedGAN" and not gan.critics
    totals, values, grads = gradients(gan, batch(config))
    assert set(grads) == {"G", "D"}
    assert all(g is not None for _, g in grads["D"])


def test_stargan_generator_loss_never_reads_the_target(tmp_path):
    # no spectral norm (as configs/stargan.flags): D's power iteration on the
    # real batch would otherwise change its output on the fake one
    config = make_config(**tiny_overrides(tmp_path, model="stargan", critic_levels="",
                                          d_condition="none", spectral_norm=False))
    gan = build_gan(config)
    data = batch(config)
    _, _, first = gradients(gan, data)
    _, _, second = gradients(gan, dict(data, target=-data["target"]))
    compared = 0
    for (v, a), (_, b) in zip(first["G"], second["G"]):
        if a is None:  # the lower image heads: StarGAN trains the final image only
            assert b is None and "to_image" in v.path
            continue
        compared += 1
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert compared > 10
    assert any(not np.allclose(a.numpy(), b.numpy()) for (_, a), (_, b) in zip(first["D"],
                                                                             second["D"]))


def test_colour_l1_trains_the_colour_map_everywhere(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, colour_l1_weight=10.0))
    gan = build_gan(config)
    data = batch(config)
    _, values, _ = gradients(gan, data)
    assert "G/colour_l1" in values and float(values["G/colour_l1"]) > 0
    # saturate the final mask to "keep the source": the plain L1 no longer
    # reaches the final head's colour channels, the colour L1 still does
    head = gan.generator.heads[0]
    bias = head.bias.numpy()
    bias[3] = 40.0
    head.bias.assign(bias)
    kernel_grad = dict((v.path, g) for v, g in gradients(gan, data)[2]["G"])[head.kernel.path]
    assert float(tf.reduce_max(tf.abs(kernel_grad[..., :3]))) > 0
    plain = build_gan(make_config(**tiny_overrides(tmp_path)))
    assert "G/colour_l1" not in plain._tracker_names
    with pytest.raises(Exception, match="needs --g_output=attention"):
        make_config(colour_l1_weight=1.0, g_output="direct")


def test_expression_classifier_learns_reals_and_pushes_g_toward_the_target(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, expression_weight=1.0))
    gan = build_gan(config)
    data = batch(config)
    _, values, grads = gradients(gan, data)
    for name in ("G/expression", "E/loss", "E/accuracy"):
        assert name in values
    e_vars = {v.path for v in gan.expression_classifier.trainable_variables}
    critic_grads = {v.path: g for v, g in grads["critics"]}
    # E's trunk and class head learn from the real images ...
    assert any(critic_grads[p] is not None and float(tf.reduce_max(tf.abs(critic_grads[p]))) > 0
               for p in e_vars if "classes" in p)
    # ... and G gets E's verdict on its image toward the target class: a
    # different target class gives G a different gradient through E
    def g_gradient(labels):
        condition = tf.one_hot(labels, gan.num_classes)
        with tf.GradientTape() as tape:
            fake = gan.generator((data["source"], condition))[0]
            term = tf.reduce_mean(gan.expression_losses(
                data["source"], data["source_label"], data["target"], labels, fake, {})[1])
        return tape.gradient(term, gan.generator.trainable_variables)

    first = g_gradient(data["target_label"])
    second = g_gradient((data["target_label"] + 1) % gan.num_classes)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in first)
    assert any(a is not None and not np.allclose(a.numpy(), b.numpy())
               for a, b in zip(first, second))
    plain = build_gan(make_config(**tiny_overrides(tmp_path)))
    assert plain.expression_classifier is None and "E/loss" not in plain._tracker_names
    with pytest.raises(Exception, match="already classifies"):
        make_config(expression_weight=1.0, model="stargan", critic_levels="", d_condition="none")


def test_mask_regularisers_measure_the_change_and_its_roughness():
    keep = np.ones((2, 8, 8, 1), np.float32)
    keep[1, 2:4, 2:4] = 0.0  # the second mask changes a 2x2 square
    change = losses.mask_change(tf.constant(keep)).numpy()
    tv = losses.total_variation(tf.constant(keep)).numpy()
    np.testing.assert_allclose(change, [0.0, 4 / 64], rtol=1e-6)
    assert tv[0] == 0.0 and tv[1] > 0
    smooth = np.ones((1, 8, 8, 1), np.float32)
    smooth[0, :, :4] = 0.0  # same area, one straight edge: less variation than speckles
    speckled = np.ones((1, 8, 8, 1), np.float32)
    speckled[0, ::2, ::2] = 0.0
    speckled[0, 1::2, 1::2] = 0.0
    assert losses.total_variation(smooth)[0] < losses.total_variation(speckled)[0]


def test_mask_weights_train_the_final_keep_mask(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, mask_sparsity_weight=1.0,
                                          mask_smooth_weight=1.0, l1_weight=0.0, adv_weight=0.0,
                                          photo_weight=0.0, variation_weight=0.0))
    gan = build_gan(config)
    _, values, grads = gradients(gan, batch(config))
    assert float(values["G/mask_change"]) > 0
    head = gan.generator.heads[0]
    bias_grad = dict((v.path, g) for v, g in grads["G"])[head.bias.path]
    # only the mask losses are on: lowering the change means raising the keep logit
    assert float(bias_grad[3]) < 0
    with pytest.raises(Exception, match="needs --g_output=attention"):
        make_config(mask_smooth_weight=1.0, g_output="direct")


def test_mask_binary_weight_pushes_the_keep_mask_to_a_hard_choice(tmp_path):
    config = make_config(**tiny_overrides(tmp_path, mask_binary_weight=1.0, l1_weight=0.0,
                                          adv_weight=0.0, photo_weight=0.0, variation_weight=0.0))
    gan = build_gan(config)
    _, values, grads = gradients(gan, batch(config))
    assert 0 < float(values["G/mask_indecision"]) <= 1
    head = gan.generator.heads[0]
    bias_grad = dict((v.path, g) for v, g in grads["G"])[head.bias.path]
    # the keep logit starts at +1 (keep ~0.73): a harder choice means keeping more
    assert float(bias_grad[3]) < 0
    np.testing.assert_allclose(bias_grad[:3], 0.0)  # the colour is not in this loss
    with pytest.raises(Exception, match="mask_binary_weight needs --g_output=attention"):
        make_config(mask_binary_weight=1.0, g_output="direct")


def test_fused_passes_give_the_losses_and_gradients_of_separate_calls(tmp_path, monkeypatch):
    # without spectral norm (whose estimate moves at every training call) the
    # stacked calls are the same function as the separate ones
    config = make_config(**tiny_overrides(tmp_path, spectral_norm=False))
    gan = build_gan(config)
    data = batch(config)
    seen = []  # the batch sizes D is called with
    call = type(gan.discriminator).call
    monkeypatch.setattr(type(gan.discriminator), "call",
                        lambda self, inputs, training=None: seen.append(
                            (self.name, int(inputs[0].shape[0]))) or call(self, inputs, training))
    separate = gradients(gan, data)
    b = config.batch_size
    assert ("discriminator", b) in seen and ("discriminator", 2 * b) not in seen
    seen.clear()
    gan.fused_passes = True
    fused = gradients(gan, data)
    assert ("discriminator", 2 * b) in seen and ("discriminator", b) not in seen
    for name in ("D/real", "D/fake", "G/adv") + tuple(
            k for k in separate[1] if k.startswith(("critic/", "G/critic/"))):
        np.testing.assert_allclose(float(fused[1][name]), float(separate[1][name]), rtol=1e-5,
                                   err_msg=name)
    for role in ("G", "D", "critics"):
        for (v, a), (_, b) in zip(separate[2][role], fused[2][role]):
            if a is not None:
                np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6,
                                           err_msg=v.path)
    assert any(k.startswith("critic/") for k in separate[1])  # the critics were compared


def test_remat_recomputes_blocks_with_the_same_losses_and_gradients(tmp_path, monkeypatch):
    from mlc_keras.models.layers import ConvNormAct
    plain_config = make_config(**tiny_overrides(tmp_path))
    remat_config = make_config(**tiny_overrides(tmp_path, remat=True))
    plain, remat = build_gan(plain_config), build_gan(remat_config)
    assert not any(getattr(l, "remat", False) for l in plain.generator._flatten_layers())
    assert all(l.remat for l in remat.generator._flatten_layers() if isinstance(l, ConvNormAct))
    for a, b in zip(plain.weights, remat.weights):  # the same seed builds the same weights
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    forwards = []
    forward = ConvNormAct._forward
    monkeypatch.setattr(ConvNormAct, "_forward", lambda self, *a: forwards.append(self.name)
                        or forward(self, *a))
    data = batch(plain_config)
    first = gradients(plain, data)
    plain_calls = len(forwards)
    forwards.clear()
    second = gradients(remat, data)
    # eagerly, each block's forward runs again in the backward pass
    assert len(forwards) > plain_calls
    for name, value in first[1].items():
        np.testing.assert_allclose(float(second[1][name]), float(value), rtol=1e-5, err_msg=name)
    for role in ("G", "D", "critics"):
        for (v, a), (_, b) in zip(first[2][role], second[2][role]):
            if a is not None:
                np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6,
                                           err_msg=v.path)
    # the spectral-norm estimates moved once per training call in both
    for a, b in zip(plain.non_trainable_weights, remat.non_trainable_weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)


def _mouth_config(tmp_path, **overrides):
    # no spectral norm: its power iteration would change D between the calls compared
    return make_config(**tiny_overrides(tmp_path, spectral_norm=False, **overrides))


def _differ_in(data, box, inside):
    """A copy of ``data`` whose target differs from it only inside (or only
    outside) ``box`` of the image."""
    from mlc_keras.training.gan import box_weight_map

    r = data["target"].shape[1]
    mask = 1.0 - box_weight_map(r, box, 0.0)  # 1 inside the box
    region = mask if inside else 1.0 - mask
    return {**data, "target": data["target"] + 0.5 * region}


def test_mouth_critic_judges_the_box_of_the_final_image(tmp_path):
    from mlc_keras.training.checkpoints import checkpoint_variables

    config = _mouth_config(tmp_path, mouth_critic_weight=2.0)
    gan = build_gan(config)
    mouth = [c for c in gan.critics if c.box is not None]
    assert len(mouth) == 1 and mouth[0].level == 16 and mouth[0].name == "mouth"
    assert gan.critic_levels == config.critic_levels  # the box critic is not a decoder level
    data = batch(config)
    totals, values, grads = gradients(gan, data)
    for name in ("critic/mouth/photo", "G/critic/mouth/photo"):
        assert name in values and np.isfinite(float(values[name]))
    reached = {id(v) for v, g in grads["critics"] if g is not None
               and float(tf.reduce_max(tf.abs(g))) > 0}
    assert all(id(v) in reached for v in mouth[0].photo.trainable_variables)
    assert any("photo_mouth" in key for key in checkpoint_variables(gan))
    # the critic sees the box alone: a target changed outside it leaves its loss as it was
    same = gradients(gan, _differ_in(data, mouth[0].box, inside=False))[1]
    moved = gradients(gan, _differ_in(data, mouth[0].box, inside=True))[1]
    assert float(same["critic/mouth/photo"]) == float(values["critic/mouth/photo"])
    assert float(moved["critic/mouth/photo"]) != float(values["critic/mouth/photo"])
    # without --mouth_critic_weight there is no mouth critic
    assert "G/critic/mouth/photo" not in build_gan(_mouth_config(tmp_path))._tracker_names


def test_mouth_l1_scale_weights_the_pixel_loss_inside_the_box(tmp_path):
    config = _mouth_config(tmp_path, mouth_l1_scale=0.0)
    gan = build_gan(config)
    box = gan.loss_weights.mouth_box
    data = batch(config)
    base = gradients(gan, data)[1]
    inside = gradients(gan, _differ_in(data, box, inside=True))[1]
    outside = gradients(gan, _differ_in(data, box, inside=False))[1]
    for level in gan.levels:  # every level's L1 ignores the box at scale 0
        key = f"G/l1/{level}"
        np.testing.assert_allclose(float(inside[key]), float(base[key]), rtol=1e-5)
        assert abs(float(outside[key]) - float(base[key])) > 1e-3
    # scale 1 is the plain L1
    plain = build_gan(_mouth_config(tmp_path))
    half = build_gan(_mouth_config(tmp_path, mouth_l1_scale=0.5))
    fake, target = data["source"], data["target"]
    np.testing.assert_allclose(plain._l1(fake, target).numpy(),
                               losses.l1_loss(fake, target).numpy(), rtol=1e-6)
    assert np.all(half._l1(fake, target).numpy() < plain._l1(fake, target).numpy())


def test_mouth_flags_are_checked():
    from mlc_keras.config import ConfigError

    with pytest.raises(ConfigError, match="--mouth_box=0.2,0.5,0.75,1.0: at --resolution=128"):
        make_config(mouth_critic_weight=1.0, mouth_box="0.2,0.5,0.75,1.0")
    with pytest.raises(ConfigError, match="only --model=mlc"):
        make_config(mouth_critic_weight=1.0, model="pix2pix", critic_levels="",
                    l1_levels="final")
    with pytest.raises(ConfigError, match="--mouth_box=0.5,0.5,0.25,1: expected x0,y0,x1,y1"):
        make_config(mouth_box="0.5,0.5,0.25,1")
    with pytest.raises(ConfigError, match="--mouth_l1_scale=-1.0: must not be negative"):
        make_config(mouth_l1_scale=-1.0)
    with pytest.raises(ConfigError, match="--mouth_critic_weight=-1.0: must not be negative"):
        make_config(mouth_critic_weight=-1.0)


def test_feature_match_weight_trains_g_on_d_features_of_the_target(tmp_path):
    off = dict(l1_weight=0.0, adv_weight=0.0, photo_weight=0.0, variation_weight=0.0)
    config = _mouth_config(tmp_path, feature_match_weight=2.0, **off)
    gan = build_gan(config)
    data = batch(config)
    totals, values, grads = gradients(gan, data)
    # every other term of G is off: G's loss is the weighted feature matching alone
    np.testing.assert_allclose(float(totals["G"]), 2.0 * float(values["G/feature_match"]),
                               rtol=1e-5)
    assert float(values["G/feature_match"]) > 0
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for _, g in grads["G"])
    # D's own loss is untouched by it
    plain = build_gan(_mouth_config(tmp_path, **off))
    plain.set_weights(gan.get_weights())
    np.testing.assert_allclose(float(gradients(plain, data)[0]["D"]), float(totals["D"]),
                               rtol=1e-5)
    assert "G/feature_match" not in plain._tracker_names
    # zero on identical images, and the real side is a constant
    condition = tf.one_hot(data["target_label"], len(config.expressions))
    same = gan.feature_matching(data["target"], data["target"], data["source"], condition)
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-7)
    target = tf.Variable(data["target"])
    with tf.GradientTape(persistent=True) as tape:
        fake = target * 0.5
        matching = tf.reduce_mean(gan.feature_matching(target, tf.stop_gradient(fake),
                                                       data["source"], condition))
    assert tape.gradient(matching, target) is None
    # D's pass of the alternating update leaves it out
    gan._pass = "d"
    d_values = {}
    gan.step_losses(data, d_values)
    gan._pass = "joint"
    assert "G/feature_match" not in d_values


def test_feature_match_flags_are_checked():
    from mlc_keras.config import ConfigError

    with pytest.raises(ConfigError, match="--feature_match_weight=-1.0: must not be negative"):
        make_config(feature_match_weight=-1.0)
    with pytest.raises(ConfigError, match="--feature_match_weight: --model=stargan has no paired"):
        make_config(feature_match_weight=1.0, model="stargan", critic_levels="")
