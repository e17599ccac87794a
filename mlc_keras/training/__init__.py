"""Training: the GAN train steps, losses, callbacks, run folder and the train() loop.

Knows nothing of photos (no alignment, no synthesis); may import models/,
data/, config, errors, images. Import the submodules directly.
"""
