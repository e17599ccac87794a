"""Networks: the multi-level generator, the discriminator and the critics."""

from mlc_keras.models.critics import FeatureEncoder, PatchDiscriminator, StarDiscriminator
from mlc_keras.models.generator import Generator, decoder_levels

__all__ = ["FeatureEncoder", "Generator", "PatchDiscriminator", "StarDiscriminator", "decoder_levels"]
