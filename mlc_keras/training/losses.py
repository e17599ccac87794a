"""Pure loss functions. Each returns a PER-EXAMPLE loss of shape [B].

Reduction to a scalar is the caller's job: under ``tf.distribute`` the train
step divides the per-example sum by the GLOBAL batch
(``tf.nn.compute_average_loss``), so gradients summed across replicas equal
the single-device gradient of the same global batch.

Discriminator outputs are logits of any shape [B, ...] (PatchGAN maps
[B, h, w, 1] or vectors [B, 1]); they are averaged over all non-batch axes.

GAN forms (``kind``):
  - ``nonsaturating`` (the paper's slides): D maximises
    log D(real) + log(1 - D(fake)); G maximises log D(fake).
  - ``hinge``, ``lsgan`` and ``wgan`` (with ``gradient_penalty``) as
    alternatives.
"""

import tensorflow as tf

from mlc_keras import config

# name -> (real term, fake term) of a discriminator's per-position loss, and
# the generator's per-position term; logits in, losses out (same shape).
_DISCRIMINATOR_TERMS = {
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    "nonsaturating": (lambda r: tf.nn.softplus(-r), lambda f: tf.nn.softplus(f)),
    "hinge": (lambda r: tf.nn.relu(1.0 - r), lambda f: tf.nn.relu(1.0 + f)),
    "lsgan": (lambda r: 0.5 * tf.square(r - 1.0), lambda f: 0.5 * tf.square(f)),
    "wgan": (lambda r: -r, lambda f: f),
}
_GENERATOR_TERMS = {
    "nonsaturating": lambda f: tf.nn.softplus(-f),  # -log D(G(x, c))
    "hinge": lambda f: -f,
    "wgan": lambda f: -f,
    "lsgan": lambda f: 0.5 * tf.square(f - 1.0),
}
GAN_LOSSES = config.GAN_LOSSES
assert set(_DISCRIMINATOR_TERMS) == set(_GENERATOR_TERMS) == set(GAN_LOSSES), "a loss form lacks a term"


def _per_example_mean(x):
    """[B, ...] -> [B]: mean over every non-batch axis."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 1:
        return x
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _form(table, kind):
    try:
        return table[kind]
    except KeyError:
        raise ValueError(f"gan loss kind {kind!r}: expected one of {GAN_LOSSES}") from None


def discriminator_loss(real_logits, fake_logits, kind="nonsaturating"):
    """Loss of a discriminator or critic.

    Args:
      real_logits: [B, ...] logits on real inputs (x_t, or f(x_t) - f(x)).
      fake_logits: [B, ...] logits on generated inputs.
      kind: one of GAN_LOSSES.

    Returns:
      (total [B], real_term [B], fake_term [B]).
    """
    real_term, fake_term = _form(_DISCRIMINATOR_TERMS, kind)
    real = _per_example_mean(real_term(tf.cast(real_logits, tf.float32)))
    fake = _per_example_mean(fake_term(tf.cast(fake_logits, tf.float32)))
    return real + fake, real, fake


def generator_adversarial_loss(fake_logits, kind="nonsaturating"):
    """The generator's adversarial term against one discriminator.

    Args:
      fake_logits: [B, ...] the discriminator's logits on G's output.
      kind: one of GAN_LOSSES.

    Returns:
      [B] per-example loss (non-saturating: -log D(G(x, c))).
    """
    term = _form(_GENERATOR_TERMS, kind)
    return _per_example_mean(term(tf.cast(fake_logits, tf.float32)))


def weighted_l1_loss(generated, target, weights):
    """Per-example mean of ``weights * |generated - target|`` ([B]); ``weights``
    broadcasts to the images (e.g. [1, H, W, 1]). Not renormalised: weights
    below 1 lower the loss's total weight where they lie."""
    generated = tf.cast(generated, tf.float32)
    target = tf.cast(target, tf.float32)
    return _per_example_mean(tf.cast(weights, tf.float32) * tf.abs(generated - target))


def l1_loss(generated, target):
    """Mean absolute error per example.

    Args:
      generated, target: [B, H, W, C] images (same shape, any range).

    Returns:
      [B].
    """
    generated = tf.cast(generated, tf.float32)
    target = tf.cast(target, tf.float32)
    return _per_example_mean(tf.abs(generated - target))


def gradient_penalty(critic_fn, real, fake, epsilon):
    """WGAN-GP penalty (||grad critic(x_hat)||_2 - 1)^2 on interpolates.

    Args:
      critic_fn: callable [B, ...] -> logits [B, ...]; the critic with its
        conditioning already bound.
      real, fake: [B, ...] inputs of the same shape.
      epsilon: [B] interpolation weights in [0, 1].

    Returns:
      [B] per-example penalty.
    """
    real = tf.cast(real, tf.float32)
    fake = tf.cast(fake, tf.float32)
    shape = tf.concat([tf.shape(real)[:1], tf.ones([tf.rank(real) - 1], tf.int32)], 0)
    eps = tf.reshape(tf.cast(epsilon, tf.float32), shape)
    interpolated = eps * real + (1.0 - eps) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        logits = critic_fn(interpolated)
        score = tf.reduce_sum(_per_example_mean(logits))
    grads = tape.gradient(score, interpolated)
    norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(grads), [tf.shape(grads)[0], -1]), axis=1) + 1e-12)
    return tf.square(norm - 1.0)


def classification_loss(labels, class_logits):
    """Softmax cross-entropy of a domain classifier (StarGAN's L_cls).

    Args:
      labels: [B] int class ids.
      class_logits: [B, N] unnormalised class scores.

    Returns:
      [B] per-example -log p(label).
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(class_logits, tf.float32))


def mask_change(keep):
    """Mean changed area of an attention head: mean(1 - keep) per example.

    Args:
      keep: [B, H, W, 1] keep mask in [0, 1] (1 keeps the source pixel).

    Returns:
      [B]; 0 when G keeps every source pixel.
    """
    return _per_example_mean(1.0 - tf.cast(keep, tf.float32))


def mask_indecision(keep):
    """How far an attention mask is from a hard choice: mean(4 keep (1 - keep))
    per example (1 where every pixel is 0.5, 0 where each is 0 or 1).

    Args:
      keep: [B, H, W, 1] keep mask in [0, 1].

    Returns:
      [B].
    """
    keep = tf.cast(keep, tf.float32)
    return _per_example_mean(4.0 * keep * (1.0 - keep))


def flow_l1(flow, target):
    """[B]: mean |flow - target| over pixels and both components, in pixels
    of the flow's own resolution (flows are fractions of the size).

    Args:
      flow, target: [B, H, W, 2] (dy, dx) as fractions of H and W.
    """
    flow, target = tf.cast(flow, tf.float32), tf.cast(target, tf.float32)
    size = tf.cast(tf.stack([tf.shape(flow)[1], tf.shape(flow)[2]]), tf.float32)
    return _per_example_mean(tf.abs(flow - target) * size)


def total_variation(mask):
    """Mean absolute difference between neighbouring pixels, per example
    (GANimation's smoothness term, normalised by the pixel count).

    Args:
      mask: [B, H, W, C].

    Returns:
      [B]; 0 for a constant mask.
    """
    mask = tf.cast(mask, tf.float32)
    dy = _per_example_mean(tf.abs(mask[:, 1:] - mask[:, :-1]))
    dx = _per_example_mean(tf.abs(mask[:, :, 1:] - mask[:, :, :-1]))
    return dx + dy
