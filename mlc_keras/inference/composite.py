"""Full-resolution compositing: the generator's colour map and attention mask,
computed at the model's R, applied to the sharp aligned crop at its own size S.

Where the mask keeps the source (mask = 1), the output is the crop's own
pixels (moved along the upsampled flow, for a generator with a warp head);
only where the model changes the face does its (upsampled) colour
show. So a 128 px model edits a 256 px (or larger) crop without blurring the
rest of it, and there is no double contour: nothing of the model's own
re-drawing of unchanged regions is used. The same function runs in the
exported graph (signature ``composite``) and in ``synthesize``.

Fine detail (``detail``): the upsampled colour map holds nothing finer than
the model's R, so where the mask opens, skin, stubble and moustache turn
soft. The crop's own detail above R (the crop minus its R-pass, i.e. what
the model never saw) is added back to the colour map, gated by how far the
colour map is from the crop's R-pass: where the model only shades (cheeks,
folds: a small change) the photo's texture stays; where it draws something
new (moved lips, teeth: a large change) nothing of the old detail is added,
so no old lip line shows through.

May import models/generator's ``scale_change`` (the one definition of
expression intensity); the networks come through the generator object given.
"""

import tensorflow as tf

from mlc_keras.models.generator import scale_change, shade, warp_blend
from mlc_keras.models.layers import warp_images_cubic

# ``detail``'s default: the gate exp(-|colour - crop's R-pass| / detail), the
# colour difference averaged over RGB in [-1, 1] units; 0 turns it off. 0.15
# was chosen by looking at the London mouths at 4x (MODEL_CARD.md, "Fine
# detail").
DEFAULT_DETAIL = 0.15

# A pixel the warp head moves by this many pixels of the crop or more is
# wholly the model's in ``change`` (a smaller motion, a proportional share):
# a paste through ``change`` takes the moved pixels, and keeps the photo's own
# bytes only where nothing moves and the mask keeps the source.
MOVED_PX = 0.5
# Likewise a pixel the shading head's log-gain changes by this much or more
# (about 2 %, 2-5 levels of 8 bits on skin).
SHADED_GAIN = 0.02

# Where the flow jumps by this many pixels of R or more between neighbours (a
# fold: the lips of a closing mouth, each side sampling its own lip), it is
# upsampled by nearest neighbour instead of bilinearly (fully so at twice
# this jump): a bilinear ramp across a fold passes through every motion in
# between and samples what the fold skips (the teeth, as a bright line).
FOLD_JUMP = 1.0

# A 3x3 binomial filter: feathers the mask at R before it is upsampled, so its
# edges are soft at any S.
_FEATHER = tf.constant([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def supports_maps(generator):
    """True when the generator has attention heads (colour + mask)."""
    return getattr(generator, "output_kind", None) == "attention"


def upsample_flow(flow, size, jump=FOLD_JUMP):
    """``flow`` [B, R, R, 2] (fractions of the size) resized to ``size``:
    bilinear where it is smooth, nearest neighbour next to a jump of
    ``jump`` pixels of R or more (see ``FOLD_JUMP``)."""
    flow = tf.convert_to_tensor(flow, tf.float32)
    h, w = tf.shape(flow)[1], tf.shape(flow)[2]
    px = flow * tf.cast(tf.stack([h, w]), tf.float32)
    padded = tf.pad(px, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    steps = [tf.norm(px - padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w], axis=-1)
             for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    largest = tf.reduce_max(tf.stack(steps, -1), axis=-1, keepdims=True)
    fold = tf.clip_by_value(largest / jump - 1.0, 0.0, 1.0)
    smooth = tf.image.resize(flow, size, method="bilinear")
    sharp = tf.image.resize(flow, size, method="nearest")
    return smooth + tf.image.resize(fold, size, method="nearest") * (sharp - smooth)


def _feather(mask):
    kernel = tf.reshape(_FEATHER, [3, 3, 1, 1])
    padded = tf.pad(mask, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")


def check_detail(detail, flag="--fine_detail"):
    """``detail`` as a float (None: the default); a clear error for a
    negative or non-finite value."""
    import math

    from mlc_keras.inference.loading import ExportError

    if detail is None:
        return DEFAULT_DETAIL
    try:
        value = float(detail)
    except (TypeError, ValueError):
        raise ExportError(f"{flag}={detail}: expected a number >= 0 (0: off)") from None
    if not math.isfinite(value) or value < 0:
        raise ExportError(f"{flag}={detail}: expected a finite number >= 0 (0: off)")
    return value


def fine_detail(colour, sharp, small, detail):
    """The colour map (upsampled to S) with ``sharp``'s detail above R added
    where the colour stays close to ``sharp``'s R-pass.

    Args:
      colour: [B, S, S, 3], the model's colour map upsampled to S.
      sharp: [B, S, S, 3], the crop the mask keeps (moved along the flow for a
        warp head).
      small: [B, R, R, 3], ``sharp`` at the model's R (what the model saw).
      detail: the gate's scale (> 0), in [-1, 1] colour units.
    """
    low = tf.image.resize(small, tf.shape(sharp)[1:3], method="bicubic")
    gap = tf.reduce_mean(tf.abs(colour - low), axis=-1, keepdims=True)
    return colour + tf.exp(-gap / detail) * (sharp - low)


def composite(generator, crops, condition, intensity=None, detail=DEFAULT_DETAIL):
    """Edits aligned crops at their own resolution.

    Args:
      generator: a ``models.Generator``.
      crops: float32 [B, S, S, 3] in [-1, 1], S >= R (aligned as in training).
      condition: float32 [B, N], the target expression code (one-hot, or a
        blend of expressions).
      intensity: optional float32 [B]: the change from the crop is scaled
        (``models.generator.scale_change``); 0 returns the crop unchanged.
      detail: the fine-detail gate's scale (``fine_detail``; a Python number,
        fixed in an exported graph); 0 uses the upsampled colour map alone.

    Returns:
      (images float32 [B, S, S, 3] in [-1, 1], change float32 [B, S, S, 1] in
      [0, 1]: how much of each pixel comes from the model; 0 = the crop's own;
      with a warp head, a pixel moved by ``MOVED_PX`` or more counts as 1).
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
    if hasattr(generator, "final_maps_flow_and_gain"):
        colour, keep, flow, gain = generator.final_maps_flow_and_gain((small, condition))
    else:  # a generator (or test double) without a shading head's protocol
        (colour, keep, flow), gain = generator.final_maps_and_flow((small, condition)), None
    keep = tf.clip_by_value(tf.image.resize(_feather(keep), size, method="bilinear"), 0.0, 1.0)
    colour = tf.image.resize(colour, size, method="bicubic")
    if flow is not None:  # warp head: the sharp crop itself is moved along the flow
        # moved once, here (as warp_blend would: the flow scaled by the
        # intensity); the blend then scales only the mask
        flow = upsample_flow(flow, size) * strength
        # bicubic: a bilinear sub-pixel shift blurs the whole moved region
        moved = tf.clip_by_value(warp_images_cubic(crops, flow), -1.0, 1.0)
        if gain is not None:  # the smooth shading, on the moved sharp crop
            gain = tf.image.resize(gain, size, method="bilinear") * strength
            moved = shade(moved, gain)
        if detail:
            moved_small = tf.image.resize(moved, [r, r], method="area", antialias=True)
            colour = fine_detail(colour, moved, moved_small, detail)
        colour = tf.clip_by_value(colour, -1.0, 1.0)
        out, keep = warp_blend(moved, colour, keep, None, intensity)
        # the moved pixels are the model's too (flow in fractions of the size)
        shift_px = tf.norm(flow * tf.cast(size, tf.float32), axis=-1, keepdims=True)
        moved_share = tf.clip_by_value(shift_px / MOVED_PX, 0.0, 1.0)
        if gain is not None:  # so are the pixels the gain lights or darkens
            lit = tf.reduce_max(tf.abs(gain), axis=-1, keepdims=True)
            moved_share = tf.maximum(moved_share, tf.clip_by_value(lit / SHADED_GAIN, 0.0, 1.0))
        return out, 1.0 - keep * (1.0 - moved_share)
    if detail:
        colour = fine_detail(colour, crops, small, detail)
    colour = tf.clip_by_value(colour, -1.0, 1.0)
    out = scale_change(crops, keep * crops + (1.0 - keep) * colour, intensity)
    return out, tf.clip_by_value(strength * (1.0 - keep), 0.0, 1.0)
