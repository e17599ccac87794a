"""Full-resolution compositing: the generator's colour map and attention mask,
computed at the model's R, applied to the sharp aligned crop at its own size S.

Where the mask keeps the source (mask = 1), the output is the crop's own
pixels (moved along the upsampled flow, for a generator with a warp head);
only where the model changes the face does its (upsampled) colour
show. So a 128 px model edits a 256 px (or larger) crop without blurring the
rest of it, and there is no double contour: nothing of the model's own
re-drawing of unchanged regions is used. The same function runs in the
exported graph (signature ``composite``) and in ``synthesize``.

May import models/generator's ``scale_change`` (the one definition of
expression intensity); the networks come through the generator object given.
"""

import tensorflow as tf

from mlc_keras.models.generator import scale_change, warp_blend

# A 3x3 binomial filter: feathers the mask at R before it is upsampled, so its
# edges are soft at any S.
_FEATHER = tf.constant([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def supports_maps(generator):
    """True when the generator has attention heads (colour + mask)."""
    return getattr(generator, "output_kind", None) == "attention"


def _feather(mask):
    kernel = tf.reshape(_FEATHER, [3, 3, 1, 1])
    padded = tf.pad(mask, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")


def composite(generator, crops, condition, intensity=None):
    """Edits aligned crops at their own resolution.

    Args:
      generator: a ``models.Generator``.
      crops: float32 [B, S, S, 3] in [-1, 1], S >= R (aligned as in training).
      condition: float32 [B, N], the target expression code (one-hot, or a
        blend of expressions).
      intensity: optional float32 [B]: the change from the crop is scaled
        (``models.generator.scale_change``); 0 returns the crop unchanged.

    Returns:
      (images float32 [B, S, S, 3] in [-1, 1], change float32 [B, S, S, 1] in
      [0, 1]: how much of each pixel comes from the model; 0 = the crop's own).
      A generator without attention heads has no mask: its final image is
      upsampled (bicubic) and ``change`` is 1 everywhere.
    """
    crops = tf.convert_to_tensor(crops, tf.float32)
    r = generator.resolution
    size = tf.shape(crops)[1:3]
    small = tf.image.resize(crops, [r, r], method="area", antialias=True)
    if intensity is None:
        intensity = tf.ones(tf.shape(crops)[:1], tf.float32)
    strength = tf.reshape(tf.cast(intensity, tf.float32), [-1, 1, 1, 1])
    if not supports_maps(generator):
        out = generator((small, condition), training=False)[0]
        up = tf.clip_by_value(tf.image.resize(out, size, method="bicubic"), -1.0, 1.0)
        return scale_change(crops, up, intensity), tf.ones_like(up[..., :1]) * tf.minimum(
            strength, 1.0)
    colour, keep, flow = generator.final_maps_and_flow((small, condition))
    keep = tf.clip_by_value(tf.image.resize(_feather(keep), size, method="bilinear"), 0.0, 1.0)
    colour = tf.clip_by_value(tf.image.resize(colour, size, method="bicubic"), -1.0, 1.0)
    if flow is not None:  # warp head: the sharp crop itself is moved along the flow
        flow = tf.image.resize(flow, size, method="bilinear")
        out, keep = warp_blend(crops, colour, keep, flow, intensity)
        return out, 1.0 - keep
    out = scale_change(crops, keep * crops + (1.0 - keep) * colour, intensity)
    return out, tf.clip_by_value(strength * (1.0 - keep), 0.0, 1.0)
