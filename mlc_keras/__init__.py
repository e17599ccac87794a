"""mlc_keras: facial emotion synthesis with multi-level critic networks
(Park, Kim & Ro, MMM 2019) in TensorFlow 2 / Keras 3.

Importing the package does not import TensorFlow; entry points
(``python -m mlc_keras.train`` ...) configure the CPU first.
"""

from mlc_keras.expressions import EXPRESSIONS

__version__ = "0.1.0"

__all__ = ["EXPRESSIONS", "__version__"]
