"""Networks: the multi-level generator, the discriminator and the critics."""

from mlc_keras.models.critics import FeatureEncoder, PatchDiscriminator
from mlc_keras.models.generator import Generator, decoder_levels

__all__ = ["FeatureEncoder", "Generator", "PatchDiscriminator", "decoder_levels"]
