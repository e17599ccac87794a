"""mlc_keras: facial emotion synthesis with multi-level critic networks
(Park, Kim & Ro, MMM 2019) in TensorFlow 2 / Keras 3.

Importing the package does not import TensorFlow; entry points
(``python -m mlc_keras.train`` ...) configure the CPU first.
"""

from mlc_keras.expressions import EXPRESSIONS

__version__ = "0.1.0"

__all__ = ["EXPRESSIONS", "__version__", "load_generator"]


def load_generator(path):
    """The trained generator as a Keras model, from a ``.keras`` file, an
    export folder or a training workdir (``inference.loading.load_generator``)::

        import mlc_keras
        model = mlc_keras.load_generator("exports/mlc-1.keras")
        images = model.predict([faces, one_hot_expressions])[0]
    """
    from mlc_keras.inference.loading import load_generator as load

    return load(path)

