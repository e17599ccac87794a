"""The generators shipped inside the package, verified by checksum on load.

Each shipped model is ``<name>.keras`` (the generator) beside ``<name>.json``
(its sha256, the training options and provenance). Nothing is downloaded:
the files come with the package. May import errors and images only.
"""

import hashlib
import os

from mlc_keras.errors import UserError
from mlc_keras.images import atomic_path, read_json, write_json_atomic

DEFAULT_MODEL = "london_neutral_happy_128"
FOLDER = os.path.dirname(os.path.abspath(__file__))


class WeightsError(UserError, ValueError):
    """A shipped model is missing or its file does not match its checksum."""


def names(folder=FOLDER):
    """The shipped models (those with both files)."""
    return sorted(n[:-len(".json")] for n in os.listdir(folder)
                  if n.endswith(".json") and os.path.isfile(os.path.join(folder, n[:-5] + ".keras")))


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def info(name=DEFAULT_MODEL, folder=FOLDER):
    """The model's metadata (``sha256``, ``options``, ``provenance``)."""
    path = os.path.join(folder, name + ".json")
    if not os.path.isfile(path):
        available = ", ".join(names(folder)) or "none"
        raise WeightsError(f"no shipped model {name!r} (shipped: {available})")
    return read_json(path)


def path(name=DEFAULT_MODEL, folder=FOLDER):
    """The verified path of a shipped ``.keras`` file.

    Raises:
      WeightsError when the file is absent or its sha256 differs from the
      one recorded beside it (a damaged or replaced file is never loaded).
    """
    meta = info(name, folder)
    keras_path = os.path.join(folder, name + ".keras")
    if not os.path.isfile(keras_path):
        raise WeightsError(f"shipped model {name!r}: {keras_path} is missing; reinstall mlc-keras")
    actual = sha256(keras_path)
    if actual != meta.get("sha256"):
        raise WeightsError(f"shipped model {name!r}: {keras_path} has sha256 {actual[:12]}..., "
                           f"expected {str(meta.get('sha256'))[:12]}...; the file is damaged or was "
                           "replaced: reinstall mlc-keras")
    return keras_path


def write(generator, options, name, provenance, folder=FOLDER):
    """Saves ``generator`` as a shipped model with its checksum and metadata
    (both files written atomically; the json last, so a half-written pair is
    never taken for a model)."""
    keras_path = os.path.join(folder, name + ".keras")
    with atomic_path(keras_path, suffix=".keras") as tmp:
        generator.save(tmp)
    write_json_atomic(os.path.join(folder, name + ".json"),
                      {"sha256": sha256(keras_path), "options": options,
                       "provenance": provenance})
    return keras_path
