"""MLCGAN: the training step of the multi-level critic GAN (keras-io idiom).

The model owns G, D, the per-level critic networks and three optimizers; it
knows nothing about files. One ``train_step`` = one forward pass of every
network on a global batch (split across replicas by ``tf.distribute``),
then simultaneous updates of G, D and the critics from one persistent tape.

Data contract of ``train_step(data)``: a dict with
  source        [B, R, R, 3] float32 in [-1, 1]  the input face x
  target        [B, R, R, 3] float32 in [-1, 1]  the real target x_t
  target_label  [B] int32                        the target expression id c

Losses (see losses.py), each reduced over the GLOBAL batch:
  L_D      = D's GAN loss on (x_t | x, c) vs (G(x, c) | x, c)
  L_P^n    = photo critic at level n on (x_t down n) vs G_n(x, c)
  L_V^n    = variation critic on f(x_t^n) - f(x^n) vs f(G_n) - f(x^n)
  L_G      = adv_weight * adv(D) + sum_n [photo_weight * adv(P^n)
             + variation_weight * adv(V^n)] + l1_weight * sum_levels L1(G_l, x_t^l)
"""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from mlc_keras.training import losses
from mlc_keras.models.layers import downsample_images


@dataclasses.dataclass(frozen=True)
class LossWeights:
    gan_loss: str = "nonsaturating"
    adv_weight: float = 1.0
    photo_weight: float = 1.0
    variation_weight: float = 1.0
    l1_weight: float = 100.0
    gp_weight: float = 10.0
    l1_all_levels: bool = True  # False: L1 on the final image only (pix2pix)
    cls_weight: float = 1.0  # StarGAN: domain classification
    rec_weight: float = 10.0  # StarGAN: cycle reconstruction


class LevelCritic:
    """The critic network at one decoder level: photo critic, f and variation critic
    (each may be None). A plain holder; the models are tracked by MLCGAN."""

    def __init__(self, level, photo=None, encoder=None, variation=None):
        self.level = level
        self.photo = photo
        self.encoder = encoder
        self.variation = variation


def _average(per_example):
    """[B] per-replica losses -> scalar scaled by the GLOBAL batch."""
    return tf.nn.compute_average_loss(per_example)


def _apply(optimizer, tape, loss, variables):
    """One optimizer update, leaving out variables the loss does not reach
    (e.g. the lower image heads when only the final image is trained), which
    Keras would otherwise warn about at every trace."""
    grads = tape.gradient(loss, variables)
    used = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if used:
        optimizer.apply([g for g, _ in used], [v for _, v in used])


class MLCGAN(keras.Model):
    """Generator + discriminator + multi-level critics with a custom train_step."""

    def __init__(self, generator, discriminator, critics=(), loss_weights=LossWeights(),
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.critics = list(critics)
        self.critic_levels = tuple(c.level for c in self.critics)
        self.loss_weights = loss_weights
        self.num_classes = generator.num_classes
        self.levels = generator.levels
        for level in self.critic_levels:
            if level not in self.levels:
                raise ValueError(f"critic level {level} is not a decoder level {self.levels}")
        # Track every critic network exactly once (a shared f appears in several levels).
        self.photo_critics = [c.photo for c in self.critics if c.photo is not None]
        self.variation_critics = [c.variation for c in self.critics if c.variation is not None]
        unique = []
        for c in self.critics:
            if c.encoder is not None and all(c.encoder is not u for u in unique):
                unique.append(c.encoder)
        self.feature_encoders = unique
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._tracker_names = self._metric_names()
        self.trackers = {name: keras.metrics.Mean(name=name.replace("/", "_"))
                         for name in self._tracker_names}

    def _metric_names(self):
        names = ["G/loss", "G/adv"]
        names += [f"G/l1/{lv}" for lv in self.levels]
        for c in self.critics:
            if c.photo is not None:
                names += [f"G/critic/{c.level}/photo", f"critic/{c.level}/photo"]
            if c.variation is not None:
                names += [f"G/critic/{c.level}/variation", f"critic/{c.level}/variation"]
        names += ["D/loss", "D/real", "D/fake"]
        if self.critics:
            names.append("critic/loss")
        if self.loss_weights.gan_loss == "wgan":
            names.append("D/gp")
        return names

    def compile(self, g_optimizer, d_optimizer, c_optimizer=None, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.c_optimizer = c_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def critic_variables(self):
        variables = []
        for model in self.photo_critics + self.variation_critics + self.feature_encoders:
            variables += model.trainable_variables
        return variables

    def build_all(self, batch_size=1):
        """Creates every network's variables and the optimizers' slots.

        Call inside ``strategy.scope()`` before ``fit`` or a checkpoint restore.
        """
        r = self.generator.resolution
        x = ops.zeros((batch_size, r, r, 3))
        c = ops.zeros((batch_size, self.num_classes))
        outputs = self.generator((x, c))
        self.discriminator((x, x, c))
        for critic in self.critics:
            idx = self.levels.index(critic.level)
            xn = outputs[idx]
            if critic.photo is not None:
                critic.photo((xn, xn, c))
            if critic.variation is not None:
                critic.variation((critic.encoder(xn), None, c))
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        if self.c_optimizer is not None and self.critic_variables:
            self.c_optimizer.build(self.critic_variables)
        self.built = True
        return self

    def _gp(self, critic_fn, real, fake):
        eps = keras.random.uniform((ops.shape(real)[0],), seed=self.seed_generator)
        return losses.gradient_penalty(critic_fn, real, fake, eps)

    def train_step(self, data):
        w = self.loss_weights
        kind = w.gan_loss
        source = tf.cast(data["source"], tf.float32)
        target = tf.cast(data["target"], tf.float32)
        condition = tf.one_hot(tf.cast(data["target_label"], tf.int32), self.num_classes)
        values = {}

        with tf.GradientTape(persistent=True) as tape:
            fakes = self.generator((source, condition), training=True)

            # Main discriminator on the final image.
            real_logits = self.discriminator((target, source, condition), training=True)
            fake_logits = self.discriminator((fakes[0], source, condition), training=True)
            d_total, d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits, kind)
            if kind == "wgan":
                gp = self._gp(lambda z: self.discriminator((z, source, condition), training=True),
                              target, fakes[0])
                values["D/gp"] = _average(gp)
                d_total = d_total + w.gp_weight * gp
            g_adv = losses.generator_adversarial_loss(fake_logits, kind)
            g_total = w.adv_weight * g_adv
            values.update({"D/real": _average(d_real), "D/fake": _average(d_fake),
                           "G/adv": _average(g_adv)})

            # L1 to the real target at every decoder level (or the final one).
            for level, fake in zip(self.levels, fakes):
                l1 = losses.l1_loss(fake, downsample_images(target, level))
                values[f"G/l1/{level}"] = _average(l1)
                if w.l1_all_levels or level == self.levels[0]:
                    g_total = g_total + w.l1_weight * l1

            # Multi-level critic network.
            c_total = 0.0
            for critic in self.critics:
                lv = critic.level
                fake_n = fakes[self.levels.index(lv)]
                real_n = downsample_images(target, lv)
                source_n = downsample_images(source, lv)
                if critic.photo is not None:
                    p = critic.photo
                    pr = p((real_n, source_n, condition), training=True)
                    pf = p((fake_n, source_n, condition), training=True)
                    p_loss, _, _ = losses.discriminator_loss(pr, pf, kind)
                    if kind == "wgan":
                        p_loss = p_loss + w.gp_weight * self._gp(
                            lambda z, p=p, s=source_n: p((z, s, condition), training=True),
                            real_n, fake_n)
                    g_p = losses.generator_adversarial_loss(pf, kind)
                    values[f"critic/{lv}/photo"] = _average(p_loss)
                    values[f"G/critic/{lv}/photo"] = _average(g_p)
                    c_total = c_total + p_loss
                    g_total = g_total + w.photo_weight * g_p
                if critic.variation is not None:
                    f, v = critic.encoder, critic.variation
                    f_source = f(source_n, training=True)
                    real_diff = f(real_n, training=True) - f_source
                    fake_diff = f(fake_n, training=True) - f_source
                    vr = v((real_diff, None, condition), training=True)
                    vf = v((fake_diff, None, condition), training=True)
                    v_loss, _, _ = losses.discriminator_loss(vr, vf, kind)
                    if kind == "wgan":
                        v_loss = v_loss + w.gp_weight * self._gp(
                            lambda z, v=v: v((z, None, condition), training=True),
                            real_diff, fake_diff)
                    g_v = losses.generator_adversarial_loss(vf, kind)
                    values[f"critic/{lv}/variation"] = _average(v_loss)
                    values[f"G/critic/{lv}/variation"] = _average(g_v)
                    c_total = c_total + v_loss
                    g_total = g_total + w.variation_weight * g_v

            d_loss = _average(d_total)
            g_loss = _average(g_total)
            c_loss = _average(c_total) if self.critics else None

        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        _apply(self.g_optimizer, tape, g_loss, g_vars)
        _apply(self.d_optimizer, tape, d_loss, d_vars)
        if c_loss is not None:
            c_vars = self.critic_variables
            _apply(self.c_optimizer, tape, c_loss, c_vars)
            values["critic/loss"] = c_loss
        del tape

        values["G/loss"] = g_loss
        values["D/loss"] = d_loss
        # Each replica's value is its share of the global mean (scaled by the
        # global batch); times the replica count it is the replica's own mean,
        # and fit() averages the replicas' results.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in values.items():
            self.trackers[name].update_state(value * replicas)
        return {name: self.trackers[name].result() for name in self._tracker_names}


class StarGAN(MLCGAN):
    """The StarGAN baseline (Choi et al. 2018) on the same pipeline and loop.

    No paired target reaches G: the target image is only a real example of
    its expression for D. Per step, with c the target and c' the source
    expression:
      L_D = adv(D_src(x_t), D_src(G(x, c))) + cls_weight * CE(D_cls(x_t), c)
            [+ gp_weight * GP with --gan_loss=wgan]
      L_G = adv_weight * adv(D_src(G(x, c))) + cls_weight * CE(D_cls(G(x, c)), c)
            + rec_weight * L1(G(G(x, c), c'), x)
    ``discriminator`` must return (patch logits, class logits)
    (models.StarDiscriminator). G and D are updated once each per step, like
    every model here (StarGAN updates G every 5th D step).
    """

    def __init__(self, generator, discriminator, loss_weights=LossWeights(), seed=0, **kwargs):
        super().__init__(generator, discriminator, (), loss_weights, seed=seed, **kwargs)

    def _metric_names(self):
        names = ["G/loss", "G/adv", "G/cls", "G/rec", "D/loss", "D/real", "D/fake", "D/cls",
                 "D/accuracy"]
        if self.loss_weights.gan_loss == "wgan":
            names.append("D/gp")
        return names

    def train_step(self, data):
        w = self.loss_weights
        kind = w.gan_loss
        source = tf.cast(data["source"], tf.float32)
        target = tf.cast(data["target"], tf.float32)
        target_label = tf.cast(data["target_label"], tf.int32)
        target_code = tf.one_hot(target_label, self.num_classes)
        source_code = tf.one_hot(tf.cast(data["source_label"], tf.int32), self.num_classes)
        values = {}

        with tf.GradientTape(persistent=True) as tape:
            fake = self.generator((source, target_code), training=True)[0]
            reconstructed = self.generator((fake, source_code), training=True)[0]
            real_logits, real_classes = self.discriminator((target, None, None), training=True)
            fake_logits, fake_classes = self.discriminator((fake, None, None), training=True)

            d_total, d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits, kind)
            d_cls = losses.classification_loss(target_label, real_classes)
            d_total = d_total + w.cls_weight * d_cls
            if kind == "wgan":
                gp = self._gp(lambda z: self.discriminator((z, None, None), training=True)[0],
                              target, fake)
                values["D/gp"] = _average(gp)
                d_total = d_total + w.gp_weight * gp
            correct = tf.cast(tf.equal(tf.argmax(real_classes, -1, output_type=tf.int32),
                                       target_label), tf.float32)

            g_adv = losses.generator_adversarial_loss(fake_logits, kind)
            g_cls = losses.classification_loss(target_label, fake_classes)
            g_rec = losses.l1_loss(reconstructed, source)
            g_total = w.adv_weight * g_adv + w.cls_weight * g_cls + w.rec_weight * g_rec

            d_loss = _average(d_total)
            g_loss = _average(g_total)

        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        _apply(self.g_optimizer, tape, g_loss, g_vars)
        _apply(self.d_optimizer, tape, d_loss, d_vars)
        del tape

        values.update({
            "G/loss": g_loss, "G/adv": _average(g_adv), "G/cls": _average(g_cls),
            "G/rec": _average(g_rec), "D/loss": d_loss, "D/real": _average(d_real),
            "D/fake": _average(d_fake), "D/cls": _average(d_cls), "D/accuracy": _average(correct)})
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in values.items():
            self.trackers[name].update_state(value * replicas)
        return {name: self.trackers[name].result() for name in self._tracker_names}
