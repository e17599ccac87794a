"""The main discriminator D, the photo- and variation-realistic critics and
the feature encoder f of the multi-level critic network.

All discriminators are PatchGANs (pix2pix / StarGAN): stride-2 4x4 convs
with leaky ReLU, then a 3x3 conv to one logit per patch. Output logits
[B, h, w, 1] with h = input_size / 2^downsamples.

Conditioning (``condition``): the slides draw D(G(x, c)) with no condition.
We allow concatenating the source image x (pix2pix's conditional D) and/or
the tiled expression code c, so that D can judge "the right change of this
face" and not only "a face": ``none``, ``source``, ``expression``, ``both``.
"""

import keras
from keras import ops

from mlc_keras.models.layers import ConvNormAct, tile_condition

D_CONDITIONS = ("none", "source", "expression", "both")


def patch_downsamples(input_size, wanted):
    """Number of stride-2 convs that keeps at least a 4x4 logit map."""
    n = 0
    while n < wanted and input_size // (2 ** (n + 1)) >= 4:
        n += 1
    return max(n, 1)


@keras.saving.register_keras_serializable(package="mlc_keras")
class PatchDiscriminator(keras.Model):
    """PatchGAN on an NHWC input plus optional conditioning.

    call((inputs, source, condition)):
      inputs: [B, S, S, C] images in [-1, 1] (or feature differences).
      source: [B, S, S, 3] or None; used when condition in (source, both).
      condition: [B, N] expression code or None; used when condition in
        (expression, both).
    Returns logits [B, S / 2^n, S / 2^n, 1].
    """

    def __init__(self, input_size=128, base_channels=64, downsamples=3, condition="both",
                 spectral_norm=True, norm="none", max_channels=512, **kwargs):
        super().__init__(**kwargs)
        if condition not in D_CONDITIONS:
            raise ValueError(f"discriminator condition {condition!r}: expected one of {D_CONDITIONS}")
        self.input_size = input_size
        self.base_channels = base_channels
        self.downsamples = downsamples
        self.condition = condition
        self.spectral_norm = spectral_norm
        self.norm = norm
        self.max_channels = max_channels
        n = patch_downsamples(input_size, downsamples)
        self.blocks = [
            ConvNormAct(min(base_channels * 2 ** i, max_channels), 4, strides=2,
                        norm="none" if i == 0 else norm, activation="lrelu",
                        spectral_norm=spectral_norm, use_bias=True, name=f"down_{i}")
            for i in range(n)
        ]
        self.logits = ConvNormAct(1, 3, norm="none", activation=None,
                                  spectral_norm=spectral_norm, use_bias=True, name="logits")

    def features(self, inputs, training=None):
        """The shared trunk: conditioning concatenated, then the stride-2 blocks."""
        return self.feature_maps(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=None):
        """Every stride-2 block's output, first to last (the trunk's last is
        ``features``): what --feature_match_weight compares on real and
        generated images."""
        x, source, condition = inputs
        parts = [ops.cast(x, "float32")]
        if self.condition in ("source", "both"):
            parts.append(ops.cast(source, "float32"))
        if self.condition in ("expression", "both"):
            parts.append(tile_condition(condition, x.shape[1], x.shape[2]))
        h = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        maps = []
        for block in self.blocks:
            h = block(h, training=training)
            maps.append(h)
        return maps

    def call(self, inputs, training=None):
        logits = self.logits(self.features(inputs, training=training), training=training)
        return ops.cast(logits, "float32")  # float32 under mixed precision

    def get_config(self):
        cfg = super().get_config()
        cfg.update(input_size=self.input_size, base_channels=self.base_channels,
                   downsamples=self.downsamples, condition=self.condition,
                   spectral_norm=self.spectral_norm, norm=self.norm,
                   max_channels=self.max_channels)
        return cfg


@keras.saving.register_keras_serializable(package="mlc_keras")
class FeatureEncoder(keras.Model):
    """The encoder f of the variation-realistic critic.

    call(images [B, S, S, 3]) -> features [B, S/4, S/4, channels].
    Fully convolutional, so one encoder can serve several levels.
    """

    def __init__(self, channels=64, spectral_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.spectral_norm = spectral_norm
        self.blocks = [
            ConvNormAct(channels // 2, 4, strides=2, norm="none", activation="lrelu",
                        spectral_norm=spectral_norm, use_bias=True, name="down_0"),
            ConvNormAct(channels, 4, strides=2, norm="none", activation="lrelu",
                        spectral_norm=spectral_norm, use_bias=True, name="down_1"),
        ]

    def call(self, images, training=None):
        h = ops.cast(images, "float32")
        for block in self.blocks:
            h = block(h, training=training)
        return h

    def get_config(self):
        cfg = super().get_config()
        cfg.update(channels=self.channels, spectral_norm=self.spectral_norm)
        return cfg


@keras.saving.register_keras_serializable(package="mlc_keras")
class StarDiscriminator(PatchDiscriminator):
    """StarGAN's discriminator: a PatchGAN real/fake map plus a domain
    (expression) classifier on the same trunk.

    call((inputs, source, condition)) -> (logits [B, h, w, 1], class_logits [B, N]).
    The classifier is a dense layer on the flattened trunk output, which is
    StarGAN's valid convolution whose kernel covers the whole map. StarGAN's D
    sees no condition (``condition="none"``): it must tell the expression itself.
    """

    def __init__(self, num_classes=7, input_size=128, base_channels=64, downsamples=3,
                 condition="none", spectral_norm=False, norm="none", max_channels=512, **kwargs):
        super().__init__(input_size, base_channels, downsamples, condition, spectral_norm, norm,
                         max_channels, **kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: a domain classifier needs at least 2")
        self.num_classes = num_classes
        self.flatten = keras.layers.Flatten(name="flatten")
        self.classes = keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="classes")

    def call(self, inputs, training=None):
        h = self.features(inputs, training=training)
        return (ops.cast(self.logits(h, training=training), "float32"),
                ops.cast(self.classes(self.flatten(h)), "float32"))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_classes=self.num_classes)
        return cfg
