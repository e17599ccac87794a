"""Inference: loading a trained generator and using it on photos and exports.

May import models/, data/align, data/pipeline, config, images, errors,
expressions, and ``mlc_keras.training.checkpoints`` only to load a run
folder; never the rest of training/. Import the submodules directly:
``loading`` (every way to load a generator), ``faces`` (detect, align, paste
back), ``synthesize`` (the library behind ``python -m mlc_keras.synthesize``),
``export`` (the export library), ``compare`` (runs side by side).
"""
