"""The GAN train steps (keras-io idiom): PairedGAN (G + D + L1: the pix2pix
baseline), MLCGAN (adds the multi-level critic networks) and StarGAN.

A model owns its networks and optimizers; it knows nothing about files, flags
or photos (may import models/ and training/losses only). One ``train_step``
is ONE generator update (the global step is G's optimizer's iteration count).
By default (``n_critic=1``, joint order) it is one forward pass of every
network on a global batch (split across replicas by ``tf.distribute``),
then simultaneous updates of G, D and the critics from one persistent tape.
With ``alternate=True`` (``--update_order=d_then_g``) the step receives
``n_critic`` global batches stacked along the batch axis: D and the critics
(and E) are updated once on each of them in turn, then G's losses are
computed again on the last one against the updated D and G is updated once
(the official StarGAN solver with n_critic 5; pix2pix's with n_critic 1).

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
Optional terms (weights 0 by default): colour_l1_weight * L1(C, x_t) and
mask_sparsity_weight * mean(1 - A) + mask_smooth_weight * TV(A)
+ mask_binary_weight * mean(4 A (1 - A)) on the final attention head
(colour C, keep mask A); for a warp head, flow_smooth_weight * TV(flow) and
warp_l1_weight * sum_levels L1(warp(x^l, flow^l), x_t^l) (the source moved
alone, at every level, so the flow also learns from coarse, long-range
gradients) and flow_target_weight * L1(flow, landmark motion) (in pixels;
the data's ``flow_target``); expression_weight * CE(E(G(x, c)), c) with an
expression classifier E trained beside the critics on real images:
  L_E      = (CE(E(x_t), c) + CE(E(x), c_x)) / 2
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mlc_keras.training import losses
from mlc_keras.models.layers import downsample_images, warp_images


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
    colour_l1_weight: float = 0.0  # attention heads: L1(colour map, target) everywhere
    expression_weight: float = 0.0  # G: cross-entropy of E on the final image
    mask_sparsity_weight: float = 0.0  # attention heads: mean changed area of the final mask
    mask_smooth_weight: float = 0.0  # attention heads: total variation of the final mask
    mask_binary_weight: float = 0.0  # attention heads: mean 4 A (1 - A) of the final mask
    flow_smooth_weight: float = 0.0  # warp head: total variation of the flow field
    warp_l1_weight: float = 0.0  # warp head: L1(source moved by the flow, target) at every level
    flow_target_weight: float = 0.0  # warp head: L1(flow, landmark motion) in pixels of R
    mouth_critic_weight: float = 0.0  # G: the mouth critic's adversarial term (a box critic)
    mouth_box: tuple = (0.25, 0.5, 0.75, 1.0)  # x0, y0, x1, y1 fractions of the aligned face
    mouth_l1_scale: float = 1.0  # the pixel and colour-map L1 inside mouth_box are scaled by it
    feature_match_weight: float = 0.0  # G: L1 between D's block features of target and fake


class LevelCritic:
    """The critic network at one decoder level: photo critic, f and variation critic
    (each may be None). A plain holder; the models are tracked by MLCGAN.

    With ``box`` (x0, y0, x1, y1 fractions), a box critic instead: its photo
    critic judges that crop of the final image (``level`` is the crop's side
    in pixels), and it is named "mouth" in the logs."""

    def __init__(self, level, photo=None, encoder=None, variation=None, box=None):
        self.level = level
        self.photo = photo
        self.encoder = encoder
        self.variation = variation
        self.box = tuple(box) if box is not None else None
        if self.box is not None and (encoder is not None or variation is not None):
            raise ValueError("a box critic has a photo critic only")

    @property
    def name(self):
        return "mouth" if self.box is not None else str(self.level)


def _box_slices(box, height, width):
    """(rows, cols) slices of ``box`` (x0, y0, x1, y1 fractions) rounded to pixels."""
    return (slice(int(round(box[1] * height)), int(round(box[3] * height))),
            slice(int(round(box[0] * width)), int(round(box[2] * width))))


def crop_box(images, box):
    """[B, H, W, C] -> the ``box`` (x0, y0, x1, y1 fractions, rounded to pixels)."""
    rows, cols = _box_slices(box, images.shape[1], images.shape[2])
    return images[:, rows, cols, :]


def box_weight_map(size, box, inside):
    """[1, size, size, 1] float32: 1 outside ``box``, ``inside`` within it."""
    weights = np.ones([1, size, size, 1], np.float32)
    rows, cols = _box_slices(box, size, size)
    weights[:, rows, cols, :] = inside
    return tf.constant(weights)


def _twice(x):
    """``x`` stacked twice on the batch axis (the conditioning of a fused pass)."""
    return tf.concat([x, x], 0)


def _average(per_example):
    """[B] per-replica losses -> scalar scaled by the GLOBAL batch."""
    return tf.nn.compute_average_loss(per_example)


def _apply(optimizer, tape, loss, variables):
    """One optimizer update, leaving out variables the loss does not reach
    (e.g. the lower image heads when only the final image is trained), which
    Keras would otherwise warn about at every trace. ``loss`` was scaled by
    ``optimizer.scale_loss`` under the tape (float16 loss scaling; a no-op
    otherwise), and ``apply`` unscales."""
    grads = tape.gradient(loss, variables)
    used = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if used:
        optimizer.apply([g for g, _ in used], [v for _, v in used])


class PairedGAN(keras.Model):
    """G + a PatchGAN D on the final image + L1 to the paired target: the
    pix2pix baseline, and the base of every train step here.

    Subclasses override ``step_losses`` (the per-example losses of one step,
    computed under the step's tape) and ``_metric_names``; the update and
    the bookkeeping stay here.
    """

    def __init__(self, generator, discriminator, loss_weights=LossWeights(), seed=0, critics=(),
                 expression_classifier=None, n_critic=1, alternate=False, fused_passes=False,
                 **kwargs):
        super().__init__(**kwargs)
        # One call of D (and of each critic and f) on real and fake stacked,
        # instead of one call each (--fused_passes).
        self.fused_passes = bool(fused_passes)
        if int(n_critic) < 1 or (int(n_critic) > 1 and not alternate):
            raise ValueError(f"n_critic={n_critic}: must be 1, or > 1 with alternate=True")
        self.n_critic = int(n_critic)
        self.alternate = bool(alternate)
        # Which updates the losses being traced serve: "joint" (all), "d" (D and
        # the critics only) or "g" (G only); terms no update needs are skipped.
        self._pass = "joint"
        self.generator = generator
        self.discriminator = discriminator
        # E: a StarDiscriminator whose class head alone is used (--expression_weight).
        self.expression_classifier = expression_classifier
        if (expression_classifier is None) != (not loss_weights.expression_weight):
            raise ValueError("an expression classifier goes with expression_weight > 0")
        self.loss_weights = loss_weights
        self.num_classes = generator.num_classes
        self.levels = generator.levels
        # The per-level critic networks (LevelCritic); only MLCGAN trains them.
        self.critics = list(critics)
        if self.critics and type(self).critic_losses is PairedGAN.critic_losses:
            raise ValueError(f"{type(self).__name__} has no critic networks; use MLCGAN")
        self.critic_levels = tuple(c.level for c in self.critics if c.box is None)
        for level in self.critic_levels:
            if level not in self.levels:
                raise ValueError(f"critic level {level} is not a decoder level {self.levels}")
        # Track every critic network exactly once (a shared f appears in several levels).
        self.photo_critics = [c.photo for c in self.critics if c.photo is not None]
        self.variation_critics = [c.variation for c in self.critics if c.variation is not None]
        self.feature_encoders = []
        for c in self.critics:
            if c.encoder is not None and all(c.encoder is not u for u in self.feature_encoders):
                self.feature_encoders.append(c.encoder)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._tracker_names = self._metric_names()
        self.trackers = {name: keras.metrics.Mean(name=name.replace("/", "_"))
                         for name in self._tracker_names}

    def _metric_names(self):
        names = ["G/loss", "G/adv"] + [f"G/l1/{lv}" for lv in self.levels]
        w = self.loss_weights
        if w.colour_l1_weight:
            names.append("G/colour_l1")
        if w.mask_sparsity_weight or w.mask_smooth_weight or w.mask_binary_weight:
            names += ["G/mask_change", "G/mask_tv", "G/mask_indecision"]
        if w.flow_smooth_weight:
            names.append("G/flow_tv")
        if w.warp_l1_weight:
            names.append("G/warp_l1")
        if w.flow_target_weight:
            names.append("G/flow_target")
        if w.feature_match_weight:
            names.append("G/feature_match")
        if self.expression_classifier is not None:
            names += ["G/expression", "E/loss", "E/accuracy"]
        names += ["D/loss", "D/real", "D/fake"]
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
        for model in self.photo_critics + self.variation_critics + self.feature_encoders + \
                self.classifiers:
            variables += model.trainable_variables
        return variables

    @property
    def classifiers(self):
        return [] if self.expression_classifier is None else [self.expression_classifier]

    def _classify(self, images, training=True):
        """E's class logits [B, N] (its real/fake head is not used)."""
        net = self.expression_classifier
        return net.classes(net.flatten(net.features((images, None, None), training=training)))

    def _build_discriminator(self, x, c):
        self.discriminator((x, x, c))
        if self.expression_classifier is not None:
            self.expression_classifier((x, None, None))

    def build_all(self, batch_size=1):
        """Creates every network's variables and the optimizers' slots.

        Call inside ``strategy.scope()`` before ``fit`` or a checkpoint restore.
        """
        r = self.generator.resolution
        x = ops.zeros((batch_size, r, r, 3))
        c = ops.zeros((batch_size, self.num_classes))
        outputs = self.generator((x, c))
        self._build_discriminator(x, c)
        self._build_critics(outputs, c)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        if self.c_optimizer is not None and self.critic_variables:
            self.c_optimizer.build(self.critic_variables)
        self.built = True
        return self

    def _build_critics(self, outputs, condition):
        pass

    def _gp(self, critic_fn, real, fake):
        eps = keras.random.uniform((ops.shape(real)[0],), seed=self.seed_generator)
        return losses.gradient_penalty(critic_fn, real, fake, eps)

    def _discriminator_losses(self, discriminator_fn, real, fake, values, prefix, logits=None,
                              pair_fn=None):
        """One discriminator (or critic) against G on (real, fake).

        ``logits``: (real, fake) logits when the caller already has them.
        ``pair_fn``: the discriminator on real and fake stacked on the batch
        axis (its conditioning stacked twice); used with ``fused_passes``.
        Returns (its loss [B], G's adversarial term against it [B]); the main
        D (prefix "D") also reports its real/fake terms and gradient penalty.
        """
        w = self.loss_weights
        if logits is None and pair_fn is not None and self.fused_passes:
            logits = tf.split(pair_fn(tf.concat([real, fake], 0)), 2, axis=0)
        real_logits, fake_logits = logits or (discriminator_fn(real), discriminator_fn(fake))
        d_loss, d_real, d_fake = losses.discriminator_loss(real_logits, fake_logits, w.gan_loss)
        if w.gan_loss == "wgan" and self._pass != "g":  # G's update does not need the penalty
            penalty = self._gp(discriminator_fn, real, fake)
            if prefix == "D":
                values["D/gp"] = _average(penalty)
            d_loss = d_loss + w.gp_weight * penalty
        if prefix == "D":
            values["D/real"] = _average(d_real)
            values["D/fake"] = _average(d_fake)
        return d_loss, losses.generator_adversarial_loss(fake_logits, w.gan_loss)

    def step_losses(self, data, values):
        """Per-example losses of one step: (generator [B], discriminator [B],
        critics [B] or None). Called under the step's gradient tape; writes
        the scalars to report into ``values``."""
        w = self.loss_weights
        source = tf.cast(data["source"], tf.float32)
        target = tf.cast(data["target"], tf.float32)
        condition = tf.one_hot(tf.cast(data["target_label"], tf.int32), self.num_classes)
        targets = {level: downsample_images(target, level) for level in self.levels}
        extra = 0.0  # G's terms on the attention maps and from E
        mask_terms = w.mask_sparsity_weight or w.mask_smooth_weight or w.mask_binary_weight
        flow_terms = w.flow_smooth_weight or w.warp_l1_weight or w.flow_target_weight
        if w.colour_l1_weight or mask_terms or flow_terms:
            fakes, colour, keep, flow = self.generator.call_with_maps((source, condition),
                                                                      training=True)
            if w.flow_smooth_weight:
                flow_tv = losses.total_variation(flow)
                values["G/flow_tv"] = _average(flow_tv)
                extra = extra + w.flow_smooth_weight * flow_tv
            if w.warp_l1_weight:
                warp_l1 = self.warp_l1(source, targets, flow)
                values["G/warp_l1"] = _average(warp_l1)
                extra = extra + w.warp_l1_weight * warp_l1
            if w.flow_target_weight:
                flow_target = losses.flow_l1(flow, data["flow_target"])
                values["G/flow_target"] = _average(flow_target)
                extra = extra + w.flow_target_weight * flow_target
            if w.colour_l1_weight:
                colour_l1 = self._l1(colour, target)
                values["G/colour_l1"] = _average(colour_l1)
                extra = extra + w.colour_l1_weight * colour_l1
            if mask_terms:
                change, tv = losses.mask_change(keep), losses.total_variation(keep)
                indecision = losses.mask_indecision(keep)
                values["G/mask_change"] = _average(change)
                values["G/mask_tv"] = _average(tv)
                values["G/mask_indecision"] = _average(indecision)
                extra = (extra + w.mask_sparsity_weight * change + w.mask_smooth_weight * tv
                         + w.mask_binary_weight * indecision)
        else:
            fakes = self.generator((source, condition), training=True)
        e_loss = None
        if self.expression_classifier is not None:
            target_label = tf.cast(data["target_label"], tf.int32)
            e_loss, g_expression = self.expression_losses(
                source, tf.cast(data["source_label"], tf.int32), target, target_label, fakes[0],
                values)
            extra = extra + w.expression_weight * g_expression

        d_loss, g_adv = self._discriminator_losses(
            lambda image: self.discriminator((image, source, condition), training=True),
            target, fakes[0], values, "D",
            pair_fn=lambda images: self.discriminator((images, _twice(source), _twice(condition)),
                                                      training=True))
        values["G/adv"] = _average(g_adv)
        g_loss = w.adv_weight * g_adv
        if w.feature_match_weight and self._pass != "d":  # D's update does not need it
            matching = self.feature_matching(target, fakes[0], source, condition)
            values["G/feature_match"] = _average(matching)
            g_loss = g_loss + w.feature_match_weight * matching
        for level, fake in zip(self.levels, fakes):
            l1 = self._l1(fake, targets[level])
            values[f"G/l1/{level}"] = _average(l1)
            if w.l1_all_levels or level == self.levels[0]:
                g_loss = g_loss + w.l1_weight * l1
        critic_g, critic_loss = self.critic_losses(fakes, source, target, condition, values)
        if e_loss is not None:
            critic_loss = e_loss if critic_loss is None else critic_loss + e_loss
        return g_loss + extra + critic_g, d_loss, critic_loss

    def _l1(self, generated, target):
        """[B] L1, with ``mouth_l1_scale`` inside ``mouth_box`` when it is not 1."""
        w = self.loss_weights
        if w.mouth_l1_scale == 1.0:
            return losses.l1_loss(generated, target)
        weights = box_weight_map(generated.shape[1], w.mouth_box, w.mouth_l1_scale)
        return losses.weighted_l1_loss(generated, target, weights)

    def feature_matching(self, target, fake, source, condition):
        """[B]: pix2pixHD's feature-matching loss on the main D. The mean
        absolute difference between D's block features of the real target and
        of the generated image, averaged over the blocks. The real features
        are constants, and G alone is trained by it. It is a paired loss in a
        space that D learns in order to tell texture apart, so two plausible
        mouths do not average to one blur as they do under the pixel L1."""
        real = self.discriminator.feature_maps((target, source, condition), training=True)
        generated = self.discriminator.feature_maps((fake, source, condition), training=True)
        total = 0.0
        for r, g in zip(real, generated):
            total = total + losses.l1_loss(g, tf.stop_gradient(r))
        return total / len(real)

    def warp_l1(self, source, targets, flow):
        """[B]: L1 between the source moved by the flow alone and the target,
        summed over the decoder levels (``targets``: {level: the target
        area-downsampled to it}; source and flow are downsampled the same way;
        the flow is in fractions of the size, so it is the same motion). A
        bilinear warp's gradient sees one pixel around each sample; at 32 px
        that pixel is 4 px of the 128 px image."""
        total = 0.0
        for level in self.levels:
            moved = warp_images(downsample_images(source, level), downsample_images(flow, level))
            total = total + losses.l1_loss(moved, targets[level])
        return total

    def expression_losses(self, source, source_label, target, target_label, fake, values):
        """E learns the expression of the real images (source and target);
        G is scored by E's cross-entropy of its image against the target
        class. Returns (E's loss [B], G's term [B])."""
        real_logits = self._classify(target)
        e_loss = 0.5 * (losses.classification_loss(target_label, real_logits)
                        + losses.classification_loss(source_label, self._classify(source)))
        correct = tf.cast(tf.equal(tf.argmax(real_logits, -1, output_type=tf.int32),
                                   target_label), tf.float32)
        g_term = losses.classification_loss(target_label, self._classify(fake))
        values["E/loss"] = _average(e_loss)
        values["E/accuracy"] = _average(correct)
        values["G/expression"] = _average(g_term)
        return e_loss, g_term

    def critic_losses(self, fakes, source, target, condition, values):
        """(G's terms against the critic networks [B], the critics' loss [B] or None)."""
        return 0.0, None

    def train_step(self, data):
        values = self._alternating_update(data) if self.alternate else self._joint_update(data)
        # Each replica's value is its share of the global mean (scaled by the
        # global batch); times the replica count it is the replica's own mean,
        # and fit() averages the replicas' results.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in values.items():
            self.trackers[name].update_state(value * replicas)
        return {name: self.trackers[name].result() for name in self._tracker_names}

    def _alternating_update(self, data):
        """``n_critic`` updates of D and the critics, one per stacked batch,
        then one G update on the last batch against the updated D. Reports
        D's and the critics' values of their last update and G's values of
        its update."""
        chunks = [dict(zip(data, parts)) for parts in
                  zip(*[tf.split(value, self.n_critic, axis=0) for value in data.values()])]
        values = {}
        self._pass = "d"
        try:
            for chunk in chunks:
                d_values = {}
                with tf.GradientTape(persistent=True) as tape:
                    _, d_total, c_total = self.step_losses(chunk, d_values)
                    d_loss = _average(d_total)
                    c_loss = _average(c_total) if c_total is not None else None
                    scaled_d = self.d_optimizer.scale_loss(d_loss)
                    scaled_c = self.c_optimizer.scale_loss(c_loss) if c_loss is not None else None
                _apply(self.d_optimizer, tape, scaled_d, self.discriminator.trainable_variables)
                if c_loss is not None:
                    _apply(self.c_optimizer, tape, scaled_c, self.critic_variables)
                    if "critic/loss" in self.trackers:
                        d_values["critic/loss"] = c_loss
                del tape
                d_values["D/loss"] = d_loss
                values.update({k: v for k, v in d_values.items() if not k.startswith("G/")})
            self._pass = "g"
            g_values = {}
            with tf.GradientTape() as tape:
                g_total, _, _ = self.step_losses(chunks[-1], g_values)
                g_loss = _average(g_total)
                scaled_g = self.g_optimizer.scale_loss(g_loss)
            _apply(self.g_optimizer, tape, scaled_g, self.generator.trainable_variables)
        finally:
            self._pass = "joint"
        g_values["G/loss"] = g_loss
        values.update({k: v for k, v in g_values.items() if k.startswith("G/")})
        return values

    def _joint_update(self, data):
        values = {}
        with tf.GradientTape(persistent=True) as tape:
            g_total, d_total, c_total = self.step_losses(data, values)
            g_loss = _average(g_total)
            d_loss = _average(d_total)
            c_loss = _average(c_total) if c_total is not None else None
            scaled = [self.g_optimizer.scale_loss(g_loss), self.d_optimizer.scale_loss(d_loss),
                      self.c_optimizer.scale_loss(c_loss) if c_loss is not None else None]
        _apply(self.g_optimizer, tape, scaled[0], self.generator.trainable_variables)
        _apply(self.d_optimizer, tape, scaled[1], self.discriminator.trainable_variables)
        if c_loss is not None:
            _apply(self.c_optimizer, tape, scaled[2], self.critic_variables)
            if "critic/loss" in self.trackers:
                values["critic/loss"] = c_loss
        del tape
        values["G/loss"] = g_loss
        values["D/loss"] = d_loss
        return values


class MLCGAN(PairedGAN):
    """The paper's model: PairedGAN plus a critic network at each critic level
    (photo-realistic critic P^n, variation critic V^n on features f)."""

    def __init__(self, generator, discriminator, critics=(), loss_weights=LossWeights(),
                 seed=0, expression_classifier=None, n_critic=1, alternate=False, **kwargs):
        super().__init__(generator, discriminator, loss_weights, seed=seed, critics=critics,
                         expression_classifier=expression_classifier, n_critic=n_critic,
                         alternate=alternate, **kwargs)

    def _metric_names(self):
        names = super()._metric_names()
        wgan_gp = names.pop() if names[-1] == "D/gp" else None
        d_names = names[-3:]
        names = names[:-3]
        for c in self.critics:
            if c.photo is not None:
                names += [f"G/critic/{c.name}/photo", f"critic/{c.name}/photo"]
            if c.variation is not None:
                names += [f"G/critic/{c.name}/variation", f"critic/{c.name}/variation"]
        names += d_names
        if self.critics:
            names.append("critic/loss")
        if wgan_gp:
            names.append(wgan_gp)
        return names

    def _build_critics(self, outputs, condition):
        for critic in self.critics:
            if critic.box is not None:
                image = crop_box(outputs[0], critic.box)
            else:
                image = outputs[self.levels.index(critic.level)]
            if critic.photo is not None:
                critic.photo((image, image, condition))
            if critic.variation is not None:
                critic.variation((critic.encoder(image), None, condition))

    def critic_losses(self, fakes, source, target, condition, values):
        g_total, critic_total = 0.0, 0.0
        for critic in self.critics:
            fake = (crop_box(fakes[0], critic.box) if critic.box is not None
                    else fakes[self.levels.index(critic.level)])
            g_terms, critic_loss = self.critic_level_losses(
                critic, fake, source, target, condition, values)
            g_total = g_total + g_terms
            critic_total = critic_total + critic_loss
        return g_total, (critic_total if self.critics else None)

    def critic_level_losses(self, critic, fake, source, target, condition, values):
        """The critic network at one level: photo critic on (x_t^n vs G_n | x^n, c)
        and variation critic on (f(x_t^n) - f(x^n) vs f(G_n) - f(x^n) | c).

        Returns (G's weighted terms [B], the critics' loss [B]).
        """
        w = self.loss_weights
        level = critic.name
        if critic.box is not None:  # the same crop of the full-size target and source
            real, source_at_level = crop_box(target, critic.box), crop_box(source, critic.box)
        else:
            real = downsample_images(target, critic.level)
            source_at_level = downsample_images(source, critic.level)
        # (kind, weight, discriminator fn, its fn on real and fake stacked, real, fake input)
        parts = []
        if critic.photo is not None:
            parts.append(("photo", w.mouth_critic_weight if critic.box is not None
                          else w.photo_weight,
                          lambda image: critic.photo((image, source_at_level, condition), training=True),
                          lambda images: critic.photo(
                              (images, _twice(source_at_level), _twice(condition)), training=True),
                          real, fake))
        if critic.variation is not None:
            features = critic.encoder
            # A frozen f stays the same function: its spectral-norm estimates
            # are not refined either (training=False).
            training = features.trainable
            if self.fused_passes:  # f once on source, real and fake stacked
                source_features, real_features, fake_features = tf.split(
                    features(tf.concat([source_at_level, real, fake], 0), training=training), 3)
            else:
                source_features = features(source_at_level, training=training)
                real_features = features(real, training=training)
                fake_features = features(fake, training=training)
            parts.append(("variation", w.variation_weight,
                          lambda variation: critic.variation((variation, None, condition),
                                                             training=True),
                          lambda variations: critic.variation((variations, None, _twice(condition)),
                                                              training=True),
                          real_features - source_features, fake_features - source_features))
        g_terms, critic_loss = 0.0, 0.0
        for kind, weight, critic_fn, pair_fn, real_input, fake_input in parts:
            loss, g_term = self._discriminator_losses(critic_fn, real_input, fake_input, values,
                                                      f"critic/{level}/{kind}", pair_fn=pair_fn)
            values[f"critic/{level}/{kind}"] = _average(loss)
            values[f"G/critic/{level}/{kind}"] = _average(g_term)
            critic_loss = critic_loss + loss
            g_terms = g_terms + weight * g_term
        return g_terms, critic_loss


class StarGAN(PairedGAN):
    """The StarGAN baseline (Choi et al. 2018) on the same pipeline and loop.

    No paired target reaches G: the target image is only a real example of
    its expression for D. Per step, with c the target and c' the source
    expression:
      L_D = adv(D_src(x_t), D_src(G(x, c))) + cls_weight * CE(D_cls(x_t), c)
            [+ gp_weight * GP with --gan_loss=wgan]
      L_G = adv_weight * adv(D_src(G(x, c))) + cls_weight * CE(D_cls(G(x, c)), c)
            + rec_weight * L1(G(G(x, c), c'), x)
    ``discriminator`` must return (patch logits, class logits)
    (models.StarDiscriminator). By default G and D are updated once each
    per step, like every model here; configs/stargan.flags sets
    ``--n_critic=5 --update_order=d_then_g``, the official solver's order
    (five D updates on five batches, then one G update).
    """

    def _metric_names(self):
        names = ["G/loss", "G/adv", "G/cls", "G/rec", "D/loss", "D/real", "D/fake", "D/cls",
                 "D/accuracy"]
        if self.loss_weights.gan_loss == "wgan":
            names.append("D/gp")
        return names

    def _build_discriminator(self, x, c):
        self.discriminator((x, None, None))

    def step_losses(self, data, values):
        w = self.loss_weights
        source = tf.cast(data["source"], tf.float32)
        target = tf.cast(data["target"], tf.float32)
        target_label = tf.cast(data["target_label"], tf.int32)
        target_code = tf.one_hot(target_label, self.num_classes)
        source_code = tf.one_hot(tf.cast(data["source_label"], tf.int32), self.num_classes)

        fake = self.generator((source, target_code), training=True)[0]
        # D's own update does not need the cycle (official solver: G step only).
        reconstructed = (source if self._pass == "d"
                         else self.generator((fake, source_code), training=True)[0])
        real_logits, real_classes = self.discriminator((target, None, None), training=True)
        fake_logits, fake_classes = self.discriminator((fake, None, None), training=True)
        d_loss, g_adv = self._discriminator_losses(
            lambda image: self.discriminator((image, None, None), training=True)[0],
            target, fake, values, "D", logits=(real_logits, fake_logits))
        d_cls = losses.classification_loss(target_label, real_classes)
        correct = tf.cast(tf.equal(tf.argmax(real_classes, -1, output_type=tf.int32),
                                   target_label), tf.float32)
        g_cls = losses.classification_loss(target_label, fake_classes)
        g_rec = losses.l1_loss(reconstructed, source)
        values.update({"G/adv": _average(g_adv), "G/cls": _average(g_cls),
                       "G/rec": _average(g_rec), "D/cls": _average(d_cls),
                       "D/accuracy": _average(correct)})
        g_loss = w.adv_weight * g_adv + w.cls_weight * g_cls + w.rec_weight * g_rec
        return g_loss, d_loss + w.cls_weight * d_cls, None
