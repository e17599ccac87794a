"""mlc_keras: facial emotion synthesis with multi-level critic networks
(Park, Kim & Ro, MMM 2019) in TensorFlow 2 / Keras 3.

Importing the package does not import TensorFlow; entry points
(``python -m mlc_keras.train`` ...) configure the CPU first. It is enough
for plain Keras loading, as with keras_hub::

    import keras
    import mlc_keras
    model = keras.saving.load_model("exports/mlc-1.keras")

The Keras classes (``mlc_keras.models``) are registered when Keras is
imported: at once if it already is, else right after its import finishes
(a one-shot import hook), so TensorFlow is still imported only when Keras is.
"""

import importlib
import importlib.abc
import importlib.util
import sys

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



def _register_keras_classes():
    """Imports ``mlc_keras.models``, whose classes register themselves with
    ``keras.saving.register_keras_serializable`` (package ``mlc_keras``)."""
    importlib.import_module("mlc_keras.models")


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """One-shot finder: finds ``keras`` the normal way and makes its loader
    register the mlc_keras classes once the module has executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot; also keeps find_spec below from recursing
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _register_keras_classes()

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


if "keras" in sys.modules:
    _register_keras_classes()
elif not any(isinstance(f, _RegisterWhenKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
