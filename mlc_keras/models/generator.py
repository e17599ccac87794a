"""The generator G(x, c): encoder + multi-level decoder.

Input: a face x [B, R, R, 3] float32 in [-1, 1] and a target expression code
c [B, N] float32 (one-hot; a value in (0, 1] scales the code). Output: a tuple
of images, FINEST FIRST, one per decoder level:
``(image_R [B, R, R, 3], image_R/2, ..., image_R/2^D)``, each in [-1, 1].
The paper's setting is R = 128 with D = 2, so levels 128, 64 and 32.

Architecture (the slides give only "encoder + multi-level decoder"; the
details follow StarGAN's generator, with U-Net skips as in pix2pix):
  encoder: 7x7 conv -> D stride-2 4x4 convs (channels doubling)
  bottleneck: residual blocks at R/2^D  -> level image R/2^D
  decoder: D stride-2 transposed 4x4 convs, each followed by an image head
           (3x3 conv + tanh) at its level; the last head is the final image.

Image heads (``output``):
  direct     tanh(conv(features)) (StarGAN, pix2pix).
  attention  GANimation's form: a colour map C = tanh(.) and a mask
             A = sigmoid(.), output = A * x_level + (1 - A) * C, with x_level
             the input downsampled to the level. The mask bias starts at +1 so
             G starts close to the identity and learns where to change the face;
             on the CPU demo the direct head had not even learned to reproduce
             the face after 500 steps. Default.

Warp head (``warp=True``, attention heads only): the final level also predicts
a dense flow field (dy, dx in fractions of the image size, at most
``max_flow``), and the mask blends the colour map with the input *moved along
the flow* instead of the input in place:
``output = A * warp(x, flow) + (1 - A) * C`` (``warp_blend``). Where the mouth
moves, the photo's own lips are moved with it rather than shown through the
new ones (a half-transparent mask over an unmoved source draws doubled lip
lines), and the moved pixels keep the photo's texture; the colour map adds
what a warp cannot (teeth, the shading of cheeks and folds). The flow head
starts at zero (no motion), so a trained attention generator can be
continued with it (``--init_generator``). The coarser levels keep the plain
attention head.

Shading head (``shading=True``, with a warp head): the final level also
predicts a smooth log-gain per colour channel (on a grid of cells
``SHADING_CELL`` px wide, interpolated bilinearly, at most ``GAIN_LIMIT``
in size), and the moved input is multiplied by it before the blend:
``output = A * shade(warp(x, flow), gain) + (1 - A) * C``. It darkens a fold
or lights a cheek on the photo's own pixels, where the colour map would
redraw them. It starts at zero (no gain), so a warp generator can be
continued with it.

Motion box (``motion_box=(x0, y0, x1, y1)``, fractions of the aligned face,
with a warp head): the flow and the gain are faded to exactly 0 outside the
box (a smoothstep ``MOTION_FEATHER`` wide at each edge), so brows, eyes and
the jaw's outline keep the photo's own pixels and only the mouth and cheeks
move.

Tear snapping (``flow_snap=True``, with a warp head): where the vertical
flow jumps apart by more than ``SNAP_TEAR`` px of R within ``SNAP_REACH`` px
above and below a pixel (a tear: the lips of a closing mouth, the upper one
pulled down from above, the lower one up from below), each pixel in the jump
takes the whole motion of the nearer side (``snap_tears``). A network's flow
ramps over two or three pixels where its target jumps in one, and the pixels
of the ramp sample what the tear skips (the teeth); snapped, they sample a
lip. A smooth field is left as it is, and the snap has no weights, so it can
be turned on for a trained warp generator.

Expression conditioning (``conditioning``):
  input              c tiled onto the input channels (StarGAN).
  input_and_decoder  also tiled onto the input of every decoder block.
  film               tiled onto the input, and every residual block and decoder
                     block output is modulated x * (1 + gamma(c)) + beta(c)
                     (FiLM). A spatially constant input channel becomes a
                     constant per-channel offset after a conv, which instance
                     norm removes again: on the synthetic demo the tiled-only
                     generator learned to ignore c (every expression column the
                     same after 750 steps), so ``film`` is the default.
"""

import math

import keras
from keras import layers, ops

from mlc_keras.models.layers import (ConvNormAct, ResidualBlock, downsample_images, wide_head,
                                     tile_condition, warp_images)

CONDITIONINGS = ("input", "input_and_decoder", "film")
OUTPUTS = ("direct", "attention")


def scale_change(source, output, intensity):
    """Expression intensity: ``source + intensity * (output - source)``,
    clipped to [-1, 1]. 0 returns the source exactly, 1 the output; for an
    attention head it scales the model's share (1 - mask) of every pixel.

    Args:
      source, output: [B, H, W, 3] float in [-1, 1].
      intensity: [B] or [B, 1] float (values above 1 exaggerate the change).
    """
    intensity = ops.reshape(ops.cast(intensity, "float32"), (-1, 1, 1, 1))
    source = ops.cast(source, "float32")
    return ops.clip(source + intensity * (ops.cast(output, "float32") - source), -1.0, 1.0)


GAIN_LIMIT = 0.5  # the shading head's log-gain: a factor of 0.61-1.65 at most
SHADING_CELL = 8  # px of the model's resolution per cell of the shading grid
MOTION_FEATHER = 0.06  # the motion box's soft edge, a fraction of the image


SNAP_REACH = 3  # px of R above and below a pixel that ``snap_tears`` compares
SNAP_TEAR = 1.5  # px of R: a vertical jump this large starts to snap (fully at twice it)


def snap_tears(flow, reach=SNAP_REACH, tear=SNAP_TEAR):
    """``flow`` [B, H, W, 2] (dy, dx in fractions of the size) with its tears
    made sharp: where the flow ``reach`` px below a pixel moves more than
    ``tear`` px further down than the flow ``reach`` px above it, the pixel
    takes the motion (both components) of whichever of the two is nearer its
    own dy; smoothly from a jump of ``tear`` to fully at twice it, so a smooth
    field is returned unchanged."""
    h = flow.shape[1]
    padded = ops.concatenate([ops.repeat(flow[:, :1], reach, axis=1), flow,
                              ops.repeat(flow[:, -1:], reach, axis=1)], axis=1)
    above, below = padded[:, :h], padded[:, 2 * reach:]
    jump = (below[..., :1] - above[..., :1]) * float(h)
    on = ops.clip(jump / tear - 1.0, 0.0, 1.0)
    dy = flow[..., :1]
    nearer_above = ops.abs(dy - above[..., :1]) <= ops.abs(dy - below[..., :1])
    return flow + on * (ops.where(nearer_above, above, below) - flow)


def _smoothstep(t):
    t = ops.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def box_weight(box, size, feather=MOTION_FEATHER):
    """[1, size, size, 1] in [0, 1]: 1 inside ``box`` (x0, y0, x1, y1 as
    fractions), 0 past its edges by more than feather / 2, smooth between."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c = (ops.arange(size, dtype="float32") + 0.5) / float(size)
    wy = _smoothstep((c - y0) / feather + 0.5) * _smoothstep((y1 - c) / feather + 0.5)
    wx = _smoothstep((c - x0) / feather + 0.5) * _smoothstep((x1 - c) / feather + 0.5)
    return (wy[:, None] * wx[None, :])[None, :, :, None]


def shade(image, gain):
    """``image`` in [-1, 1] with its [0, 1] intensities multiplied by
    exp(``gain``) (a log-gain per channel, broadcast), clipped to [-1, 1]."""
    lit = (ops.cast(image, "float32") + 1.0) * ops.exp(ops.cast(gain, "float32")) - 1.0
    return ops.clip(lit, -1.0, 1.0)


def warp_blend(image, colour, keep, flow=None, intensity=None, gain=None):
    """The warp head's output: ``keep * shade(warp(image, flow), gain) +
    (1 - keep) * colour`` (a plain attention blend when ``flow`` and ``gain``
    are None).

    With ``intensity`` s, the flow and the gain are scaled by s and the changed share by s
    (``keep_s = clip(1 - s (1 - keep), 0, 1)``): 0 returns the image exactly,
    1 the full edit, and in between the mouth moves part of the way instead of
    cross-fading two mouths.

    Args:
      image: [B, H, W, 3] in [-1, 1]; colour: [B, H, W, 3]; keep: [B, H, W, 1]
        in [0, 1]; flow: [B, H, W, 2] (fractions of the size) or None, all at
        H x W; gain: [B, H, W, 3] log-gain or None.
      intensity: optional [B] float.

    Returns:
      (output [B, H, W, 3] float32, keep_s [B, H, W, 1]).
    """
    if intensity is not None:
        s = ops.reshape(ops.cast(intensity, "float32"), (-1, 1, 1, 1))
        flow = None if flow is None else flow * s
        gain = None if gain is None else gain * s
        keep = ops.clip(1.0 - s * (1.0 - keep), 0.0, 1.0)
    moved = image if flow is None else warp_images(image, flow)
    if gain is not None:
        moved = shade(moved, gain)
    out = keep * moved + (1.0 - keep) * ops.cast(colour, "float32")
    return ops.clip(out, -1.0, 1.0), keep


def decoder_levels(resolution, downsamples):
    """The image sizes the decoder emits, finest first: (R, R/2, ..., R/2^D)."""
    return tuple(resolution // (2 ** i) for i in range(downsamples + 1))


def validate_generator_shape(resolution, downsamples):
    """Raises ValueError when the decoder cannot produce these levels."""
    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(f"resolution {resolution}: must be a power of two >= 16")
    if downsamples < 1 or resolution // (2 ** downsamples) < 4:
        raise ValueError(
            f"g_downsamples {downsamples}: a {resolution} px decoder supports 1.."
            f"{int(math.log2(resolution)) - 2} levels below the final image")


@keras.saving.register_keras_serializable(package="mlc_keras")
class Generator(keras.Model):
    """Multi-level generator; see the module docstring for the contract."""

    def __init__(self, resolution=128, num_classes=7, base_channels=64, downsamples=2,
                 res_blocks=6, norm="instance", skips=True, conditioning="film",
                 output="attention", max_channels=512, expressions=None, warp=False,
                 max_flow=0.08, shading=False, motion_box=None, flow_snap=False, **kwargs):
        super().__init__(**kwargs)
        validate_generator_shape(resolution, downsamples)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning {conditioning!r}: expected one of {CONDITIONINGS}")
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r}: expected one of {OUTPUTS}")
        self.resolution = resolution
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.downsamples = downsamples
        self.res_blocks = res_blocks
        self.norm = norm
        self.skips = skips
        self.conditioning = conditioning
        self.output_kind = output
        if warp and output != "attention":
            raise ValueError("warp=True needs output='attention' (the mask blends the warped "
                             "input)")
        if not 0.0 < float(max_flow) <= 0.5:
            raise ValueError(f"max_flow {max_flow}: expected a fraction of the image size in "
                             "(0, 0.5]")
        if shading and not warp:
            raise ValueError("shading=True needs warp=True (the gain lights the moved input)")
        if flow_snap and not warp:
            raise ValueError("flow_snap=True needs warp=True (it sharpens the flow's tears)")
        self.flow_snap = bool(flow_snap)
        if motion_box is not None:
            motion_box = tuple(float(v) for v in motion_box)
            if not warp:
                raise ValueError("motion_box needs warp=True (it bounds the flow)")
            if len(motion_box) != 4 or not (0 <= motion_box[0] < motion_box[2] <= 1
                                            and 0 <= motion_box[1] < motion_box[3] <= 1):
                raise ValueError(f"motion_box {motion_box}: expected x0, y0, x1, y1 fractions")
        self.motion_box = motion_box
        self.warp = bool(warp)
        self.shading = bool(shading)
        self.max_flow = float(max_flow)
        # Class names in id order (metadata for users of a saved model).
        self.expressions = tuple(expressions) if expressions else None
        if self.expressions and len(self.expressions) != num_classes:
            raise ValueError(f"expressions {self.expressions}: expected {num_classes} names")
        self.max_channels = max_channels
        self.levels = decoder_levels(resolution, downsamples)

        def width(i):
            return min(base_channels * 2 ** i, max_channels)

        self.stem = ConvNormAct(width(0), 7, norm=norm, name="stem")
        self.down = [ConvNormAct(width(i + 1), 4, strides=2, norm=norm, name=f"down_{i}")
                     for i in range(downsamples)]
        self.blocks = [ResidualBlock(width(downsamples), norm=norm, name=f"res_{i}")
                       for i in range(res_blocks)]
        self.up = [ConvNormAct(width(downsamples - i - 1), 4, strides=2, transpose=True,
                               norm=norm, name=f"up_{i}") for i in range(downsamples)]
        # heads[0] is the final (finest) image, heads[-1] the coarsest
        film_widths = ([width(downsamples)] * res_blocks +
                       [width(downsamples - i - 1) for i in range(downsamples)])
        self.film = ([layers.Dense(2 * w, kernel_initializer="zeros", name=f"film_{i}")
                      for i, w in enumerate(film_widths)] if conditioning == "film" else [])
        head_channels = 4 if output == "attention" else 3
        mask_bias = keras.initializers.Constant([0.0, 0.0, 0.0, 1.0][:head_channels])
        # heads[0] is the final (finest) image, heads[-1] the coarsest
        self.heads = [layers.Conv2D(head_channels, 7 if i == 0 else 3, padding="same",
                                    bias_initializer=mask_bias, name=f"to_image_{self.levels[i]}")
                      for i in range(downsamples + 1)]
        # zero kernel and bias: a new flow head starts with no motion
        self.flow_head = (layers.Conv2D(2, 3, padding="same", kernel_initializer="zeros",
                                        name=f"to_flow_{resolution}") if self.warp else None)
        # likewise a new shading head starts with no gain
        self.gain_head = (layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros",
                                        name=f"to_gain_{resolution}") if self.shading else None)

    def _head(self, index, features, training=None):
        """The raw output of the image head at level ``index`` (the final 7x7
        head through ``layers.wide_head``: oneDNN's batch-1 kernel is slow)."""
        if index == 0:
            return wide_head(self.heads[0], features, training)
        return self.heads[index](features)

    def _head_maps(self, index, features, training=None):
        """The attention head at level ``index``: (colour in [-1, 1], mask in [0, 1])."""
        h = ops.cast(self._head(index, features, training), "float32")  # float32 under mixed precision
        return ops.tanh(h[..., :3]), ops.sigmoid(h[..., 3:])

    def _final_maps(self, features, training=None):
        """(colour, keep, flow or None) of the final level."""
        colour, keep = self._head_maps(0, features, training)
        flow = None
        if self.warp:
            raw = ops.cast(self.flow_head(features), "float32")
            flow = self.max_flow * ops.tanh(raw)
            if self.motion_box is not None:
                flow = flow * box_weight(self.motion_box, self.resolution)
            if self.flow_snap:
                flow = snap_tears(flow)
        return colour, keep, flow

    def _final_gain(self, features):
        """The shading head's smooth log-gain [B, R, R, 3], or None: the head's
        output averaged over cells of ``SHADING_CELL`` px, interpolated back
        bilinearly, bounded by ``GAIN_LIMIT``."""
        if not self.shading:
            return None
        raw = ops.cast(self.gain_head(features), "float32")
        cell = min(SHADING_CELL, self.resolution)
        coarse = ops.average_pool(raw, cell, strides=cell, padding="valid")
        smooth = ops.image.resize(coarse, (self.resolution, self.resolution),
                                  interpolation="bilinear")
        gain = GAIN_LIMIT * ops.tanh(smooth)
        if self.motion_box is not None:
            gain = gain * box_weight(self.motion_box, self.resolution)
        return gain

    def _final_image(self, features, image, training=None, intensity=None):
        """The final level's image; ``intensity`` only for a warp head (it
        scales the flow, the gain and the changed share, ``warp_blend``)."""
        if not self.warp:
            return self._to_image(0, features, image, training)
        colour, keep, flow = self._final_maps(features, training)
        return warp_blend(image, colour, keep, flow, intensity, self._final_gain(features))[0]

    def _to_image(self, index, features, image, training=None):
        if self.output_kind == "direct":
            return ops.tanh(ops.cast(self._head(index, features, training), "float32"))
        colour, mask = self._head_maps(index, features, training)
        source = downsample_images(image, self.levels[index])
        return mask * source + (1.0 - mask) * colour

    def _decode(self, image, condition, training=None):
        """Runs the network; returns the coarser levels' images (coarsest
        first) and the features the final head reads."""
        image = ops.cast(image, "float32")
        condition = ops.cast(condition, "float32")
        r = self.resolution
        x = ops.concatenate([image, tile_condition(condition, r, r)], axis=-1)
        x = self.stem(x, training=training)
        encoder_features = [x]
        for block in self.down:
            x = block(x, training=training)
            encoder_features.append(x)
        film = iter(self.film)

        def modulate(h):
            if not self.film:
                return h
            gamma, beta = ops.split(next(film)(condition)[:, None, None, :], 2, axis=-1)
            return h * (1.0 + gamma) + beta

        for block in self.blocks:
            x = modulate(block(x, training=training))
        coarser = []
        for i, block in enumerate(self.up):
            coarser.append(self._to_image(-(i + 1), x, image))
            if self.conditioning == "input_and_decoder":
                size = x.shape[1]
                x = ops.concatenate([x, tile_condition(condition, size, size)], axis=-1)
            x = modulate(block(x, training=training))
            if self.skips:
                x = ops.concatenate([x, encoder_features[-(i + 2)]], axis=-1)
        return coarser, x

    def call(self, inputs, training=None):
        """inputs: (images [B, R, R, 3] in [-1, 1], target [B, N] float: a
        one-hot expression or a blend of them) or the same plus intensity
        [B] (or [B, 1]) float: every level's change from its input is scaled,
        ``scale_change``. Returns the levels' images, finest first."""
        image, condition = inputs[0], inputs[1]
        image = ops.cast(image, "float32")
        coarser, features = self._decode(image, condition, training)
        intensity = inputs[2] if len(inputs) > 2 else None
        final = self._final_image(features, image, training, intensity)
        outputs = (final,) + tuple(reversed(coarser))
        if intensity is not None:
            outputs = tuple(out if (i == 0 and self.warp) else
                            scale_change(downsample_images(image, self.levels[i]), out, intensity)
                            for i, out in enumerate(outputs))
        return outputs

    def call_with_maps(self, inputs, training=None):
        """``call``'s outputs plus the final attention head's maps (colour,
        keep mask, flow or None without a warp head), from one forward pass.
        Only for ``output="attention"``."""
        if self.output_kind != "attention":
            raise ValueError("call_with_maps needs a generator with attention heads")
        image, condition = inputs
        image = ops.cast(image, "float32")
        coarser, features = self._decode(image, condition, training)
        colour, keep, flow = self._final_maps(features, training)
        final = warp_blend(image, colour, keep, flow, gain=self._final_gain(features))[0]
        return (final,) + tuple(reversed(coarser)), colour, keep, flow

    def final_maps(self, inputs):
        """The final attention head's maps, for compositing at a higher
        resolution than R: (colour [B, R, R, 3] in [-1, 1], mask [B, R, R, 1]
        in [0, 1]; 1 keeps the source). Only for ``output="attention"``."""
        return self.final_maps_and_flow(inputs)[:2]

    def final_maps_and_flow(self, inputs):
        """``final_maps`` plus the warp head's flow [B, R, R, 2] (dy, dx in
        fractions of the size; None without a warp head)."""
        return self.final_maps_flow_and_gain(inputs)[:3]

    def final_maps_flow_and_gain(self, inputs):
        """``final_maps_and_flow`` plus the shading head's log-gain [B, R, R, 3]
        (None without one), from one forward pass."""
        if self.output_kind != "attention":
            raise ValueError("final_maps needs a generator with attention heads (output='attention')")
        image, condition = inputs
        _, features = self._decode(image, condition, training=False)
        return self._final_maps(features, training=False) + (self._final_gain(features),)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(resolution=self.resolution, num_classes=self.num_classes,
                   base_channels=self.base_channels, downsamples=self.downsamples,
                   res_blocks=self.res_blocks, norm=self.norm, skips=self.skips,
                   conditioning=self.conditioning, output=self.output_kind,
                   max_channels=self.max_channels, warp=self.warp, max_flow=self.max_flow,
                   shading=self.shading, flow_snap=self.flow_snap,
                   motion_box=list(self.motion_box) if self.motion_box else None,
                   expressions=list(self.expressions) if self.expressions else None)
        return cfg

    def build_for_inputs(self, batch_size=1):
        """Creates every variable by calling the model once on zeros."""
        r = self.resolution
        self((ops.zeros((batch_size, r, r, 3)), ops.zeros((batch_size, self.num_classes))))
        return self
