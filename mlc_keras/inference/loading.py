"""Every way to load a trained generator, once; and the one batched generator call.

May import models/, config, images, errors, expressions and
``mlc_keras.training.checkpoints`` (to load a run folder); nothing else of
training/. TensorFlow is imported inside the functions, so importing this
module stays cheap (commands configure the CPU first).

    load_generator(path)            Keras generator: .keras file, export root, run folder
    load_run(workdir)               (generator, config, checkpoint) of a run folder
    load_model_for_synthesis(path)  SynthesisModel: the above or a SavedModel (version) folder
    generate(generator, images, ids, batch_size)   final-level images, batched
"""

import dataclasses
import os

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.expressions import EXPRESSIONS
from mlc_keras.images import read_json, to_float, to_uint8

METADATA_FILE = "mlc_keras.json"  # in <export>/<name>/<version>/assets.extra/
# Temporary names (``images.atomic_path``, the export's version folder and
# .keras file) start with this; such a file is never a result, whatever follows.
TEMP_PREFIX = ".tmp-"
DEFAULT_IMPORT_RESOLUTION = 256


class ExportError(UserError, ValueError):
    """The workdir, the model path or the export output cannot be used; the message says why."""


class SynthesisError(UserError, ValueError):
    """A model, input or output path cannot be used; the message says why."""


class IdentityError(SynthesisError):
    """An output's face no longer passes as its source's person (``--strict``)."""


# ----------------------------------------------------------------- export folders


def version_numbers(model_dir, complete_only=False):
    """Sorted version numbers under ``DIR/<name>/`` (numeric folder names, as
    TF Serving reads them); ``complete_only`` keeps those with a saved_model.pb."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(v) for v in os.listdir(model_dir)
                  if v.isdigit() and not v.startswith(TEMP_PREFIX) and (
                      not complete_only
                      or os.path.isfile(os.path.join(model_dir, v, "saved_model.pb"))))


def newest_keras_file(folder):
    """The ``<name>-<version>.keras`` file of the highest version in an export
    root, or None. Hidden names, and so the ``.tmp-*`` files a killed export
    leaves, are never candidates."""
    def version(name):
        tail = name[:-len(".keras")].rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    names = sorted((f for f in os.listdir(folder)
                    if f.endswith(".keras") and not f.startswith((TEMP_PREFIX, "."))
                    and os.path.isfile(os.path.join(folder, f))), key=version) \
        if os.path.isdir(folder) else []
    return os.path.join(folder, names[-1]) if names else None


# ----------------------------------------------------------------- Keras generators


def load_generator(path=None):
    """A Keras generator from a ``.keras`` file, an export folder (the
    ``.keras`` file written beside the newest version), a training workdir
    (its newest checkpoint) or, with no path, the model shipped in the
    package (checksum verified). ``model.predict([images, one_hot])[0]`` is
    the final image."""
    from mlc_keras.training.checkpoints import is_run_folder, load_run_generator

    if not path:
        from mlc_keras import weights

        path = weights.path()
    path = os.fspath(path)
    if path.endswith(".keras") and os.path.isfile(path):
        return _load_keras(path)
    if is_run_folder(path):
        return load_run_generator(path)[0]
    newest = newest_keras_file(path)
    if newest:
        return load_generator(newest)
    raise ExportError(f"{path}: not a .keras file, an export folder with one, or a training workdir")


def _load_keras(path):
    """``keras.models.load_model`` with a damaged file reported as such
    (Keras says "File not found" for a file that is not a zip archive)."""
    import zipfile

    import keras

    import mlc_keras.models  # noqa: F401  (registers the custom classes)

    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path}: a corrupt or unreadable .keras file (not a zip archive; "
                          "truncated or not written by Keras)")
    try:
        return keras.models.load_model(path)
    except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
        detail = " ".join(str(e).split())[:300]
        raise ExportError(f"{path}: a corrupt or unreadable .keras file ({type(e).__name__}: "
                          f"{detail})") from e


def load_run(workdir):
    """(generator, config, checkpoint path) of a training run folder's newest
    checkpoint; ``config.workdir`` is the folder given (the run may have been
    moved). Raises ``training.checkpoints.RunFolderError`` naming the folder."""
    import tensorflow as tf

    from mlc_keras.training.checkpoints import RunFolderError, final_stage, load_run_generator

    if not workdir:
        raise RunFolderError("--workdir is required")
    if not os.path.isdir(workdir):
        raise RunFolderError(f"--workdir={workdir}: no such folder")
    workdir = final_stage(workdir)
    if not os.path.isfile(os.path.join(workdir, "options.json")):
        raise RunFolderError(f"--workdir={workdir}: no options.json; is it a training run folder?")
    checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if not checkpoint:
        raise RunFolderError(f"--workdir={workdir}: no checkpoint yet; train first")
    generator, config = load_run_generator(workdir, checkpoint)
    return generator, dataclasses.replace(config, workdir=os.path.abspath(workdir)), checkpoint


def _batched(fn, arrays, batch_size):
    """``fn(*[a[i:i + b] for a in arrays])`` over the whole batch, concatenated (float32)."""
    batch_size = max(1, int(batch_size))
    n = arrays[0].shape[0]
    chunks = [np.asarray(fn(*[a[i:i + batch_size] for a in arrays]), np.float32)
              for i in range(0, n, batch_size)]
    return np.concatenate(chunks, 0) if chunks else np.zeros((0,) + arrays[0].shape[1:], np.float32)


def generate(generator, images, ids, batch_size=64):
    """The final decoder level of a Keras generator for ``images[i]`` with
    expression ``ids[i]``, ``batch_size`` images per call.

    Args:
      images: float [B, R, R, 3] in [-1, 1].
      ids: int [B], ids into the generator's expressions.

    Returns:
      np.ndarray float32 [B, R, R, 3] in [-1, 1].
    """
    import tensorflow as tf

    n = int(generator.num_classes)

    def call(x, i):
        return generator((tf.constant(x, tf.float32), tf.one_hot(i, n)), training=False)[0]

    return _batched(call, [np.asarray(images, np.float32), np.asarray(ids, np.int32).reshape(-1)],
                    batch_size)


MAX_INTENSITY = 2.0


def as_targets(ids_or_targets, num_classes, batch):
    """Expression ids [B] or target vectors [B, N] -> float32 [B, N] whose
    rows are non-negative and sum to 1 (a blend of expressions; a one-hot row
    is one expression). Raises ValueError naming what is wrong."""
    values = np.asarray(ids_or_targets)
    if values.ndim == 1 and values.dtype.kind in "iu":
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"ids must lie in [0, {num_classes - 1}], got {values.tolist()}")
        targets = np.eye(num_classes, dtype=np.float32)[values]
    elif values.ndim == 2 and values.shape[1] == num_classes:
        targets = values.astype(np.float32)
        sums = targets.sum(axis=1, keepdims=True)
        if not np.all(np.isfinite(targets)) or (targets < 0).any() or (sums <= 0).any():
            raise ValueError("targets: each row must hold non-negative weights with a positive sum")
        targets = targets / sums
    else:
        raise ValueError(f"expected int ids [batch] or float targets [batch, {num_classes}], got "
                         f"{values.dtype} {values.shape}")
    if targets.shape[0] != batch:
        raise ValueError(f"ids: {targets.shape[0]} targets for {batch} images")
    return targets


def as_intensity(intensity, batch):
    """None (1.0), a number or one per image -> float32 [B] in [0, MAX_INTENSITY]."""
    values = np.broadcast_to(np.asarray(1.0 if intensity is None else intensity, np.float32),
                             (batch,)).copy()
    if not np.all(np.isfinite(values)) or (values < 0).any() or (values > MAX_INTENSITY).any():
        raise ValueError(f"intensity must lie in [0, {MAX_INTENSITY:g}], got {values.tolist()}")
    return values


# ----------------------------------------------------------------- synthesis models


class SynthesisModel:
    """A generator ready for synthesis, whatever it was loaded from.

    Attributes:
      resolution: R, the side of the model's input and output images.
      expressions: tuple of class names in id order.
      import_resolution: side of the aligned crop a training photo was cut
        at before being area-resized to R (run option ``import_resolution``).
      dataset: the run's ``dataset`` option when known ("synthetic",
        "london", "manifest"), else None.
      source: a description of what was loaded (for messages).

    ``fn(images, targets, intensity)`` and ``composite_fn(crops, targets,
    intensity)`` take float32 target vectors [B, N] and intensities [B].
    """

    def __init__(self, fn, resolution, expressions, import_resolution=DEFAULT_IMPORT_RESOLUTION,
                 dataset=None, source="", composite_fn=None):
        self._fn = fn
        self._composite_fn = composite_fn
        self.resolution = int(resolution)
        self.expressions = tuple(expressions)
        self.import_resolution = int(import_resolution)
        self.dataset = dataset
        self.source = source

    @property
    def num_classes(self):
        return len(self.expressions)

    def __repr__(self):
        return (f"SynthesisModel({self.source!r}, resolution={self.resolution}, "
                f"expressions={self.expressions}, import_resolution={self.import_resolution})")

    def generate(self, images, ids, batch_size=8, intensity=None):
        """Synthesizes ``images[i]`` with expression ``ids[i]``.

        Args:
          images: float [B, R, R, 3] in [-1, 1].
          ids: int [B], ids into ``expressions``, or float [B, N] target
            vectors (blends; each row is normalised to sum 1).
          batch_size: images per model call.
          intensity: None (1.0), a number or float [B] in [0, 2]: the change
            from the input is scaled (0 returns the input).

        Returns:
          np.ndarray float32 [B, R, R, 3] in [-1, 1] (the final decoder level).
        """
        images = np.asarray(images, np.float32)
        r = self.resolution
        if images.ndim != 4 or images.shape[1:] != (r, r, 3):
            raise ValueError(f"images: expected [batch, {r}, {r}, 3], got {images.shape}")
        targets = as_targets(ids, self.num_classes, images.shape[0])
        strength = as_intensity(intensity, images.shape[0])
        return _batched(self._fn, [images, targets, strength], batch_size)

    @property
    def can_composite(self):
        """True when the model edits crops at their own resolution (a
        generator with attention heads, or an export with the ``composite``
        signature)."""
        return self._composite_fn is not None

    def composite(self, crop, ids, intensity=None):
        """Edits one aligned crop at its own resolution, once per target.

        Args:
          crop: uint8 [S, S, 3], S >= R, framed like the training crops.
          ids: int [E], ids into ``expressions``, or float [E, N] targets.
          intensity: None, a number or float [E] (see ``generate``).

        Returns:
          (uint8 [E, S, S, 3], float32 [E, S, S]: the model's share per pixel).
        """
        if self._composite_fn is None:
            raise SynthesisError(f"{self.source}: this model cannot composite at full resolution "
                                 "(no attention heads, or an export without the 'composite' "
                                 "signature)")
        e = np.asarray(ids).shape[0]
        targets = as_targets(ids, self.num_classes, e)
        strength = as_intensity(intensity, e)
        crops = np.repeat(to_float(np.asarray(crop))[None], e, axis=0)
        images, change = self._composite_fn(crops, targets, strength)
        return to_uint8(images), np.asarray(change, np.float32)[..., 0]


def _read_metadata(path):
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise SynthesisError(f"{path}: unreadable metadata ({e})") from e


def _synthesis_model(fn, resolution, names, options, source, composite_fn=None):
    options = options or {}
    return SynthesisModel(fn, resolution, names,
                          import_resolution=options.get("import_resolution", DEFAULT_IMPORT_RESOLUTION),
                          dataset=options.get("dataset"), source=source, composite_fn=composite_fn)


def _keras_model(generator, options, source, metadata=None, detail=None):
    import tensorflow as tf

    r, n = int(generator.resolution), int(generator.num_classes)
    names = (getattr(generator, "expressions", None) or (metadata or {}).get("expressions")
             or (options or {}).get("expressions") or EXPRESSIONS[:n])
    names = tuple(names)
    if len(names) != n:
        names = tuple(EXPRESSIONS[:n])

    @tf.function(input_signature=[tf.TensorSpec([None, r, r, 3], tf.float32),
                                  tf.TensorSpec([None, n], tf.float32),
                                  tf.TensorSpec([None], tf.float32)])
    def run(images, targets, intensity):
        return generator((images, targets, intensity), training=False)[0]

    def fn(images, targets, intensity):
        return run(tf.constant(images), tf.constant(targets), tf.constant(intensity)).numpy()

    from mlc_keras.inference.composite import check_detail, composite, supports_maps

    if detail is None:  # the export's own setting, where the .keras file sits beside one
        detail = (metadata or {}).get("composite_detail")
    detail = check_detail(detail)
    composite_fn = None
    if supports_maps(generator):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                      tf.TensorSpec([None, n], tf.float32),
                                      tf.TensorSpec([None], tf.float32)])
        def run_composite(crops, targets, intensity):
            return composite(generator, crops, targets, intensity, detail=detail)

        def composite_fn(crops, targets, intensity):
            images, change = run_composite(tf.constant(crops), tf.constant(targets),
                                           tf.constant(intensity))
            return images.numpy(), change.numpy()

    return _synthesis_model(fn, r, names, options, source, composite_fn)


def _saved_model(path):
    import tensorflow as tf

    meta_path = os.path.join(path, "assets.extra", METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise SynthesisError(f"--model={path}: a SavedModel without assets.extra/{METADATA_FILE}, "
                             "so its resolution and expressions are unknown; use the .keras file "
                             "written beside the export")
    meta = _read_metadata(meta_path)
    try:
        resolution = int(meta["resolution"])
        names = tuple(meta["expressions"])
    except (KeyError, TypeError, ValueError) as e:
        raise SynthesisError(f"{meta_path}: lacks resolution / expressions ({e})") from e
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001 - a broken folder is the user's input
        raise SynthesisError(f"--model={path}: cannot load the SavedModel ({e})") from e
    if "serving_default" not in loaded.signatures:
        raise SynthesisError(f"--model={path}: the SavedModel has no serving_default signature")
    signatures = loaded.signatures
    if "edit" in signatures:
        edit = signatures["edit"]

        def fn(images, targets, intensity):
            return edit(images=tf.constant(images, tf.float32),
                        targets=tf.constant(targets, tf.float32),
                        intensity=tf.constant(intensity, tf.float32))["images"].numpy()
    else:  # an export from before intensity: one-hot targets at full strength only
        signature = signatures["serving_default"]

        def fn(images, targets, intensity):
            ids = _plain_ids(path, targets, intensity)
            out = signature(images=tf.constant(images, tf.float32),
                            expressions=tf.constant(ids, tf.int32))
            return out["images"].numpy()

    composite_fn = None
    if "composite_edit" in signatures:
        composite_edit = signatures["composite_edit"]

        def composite_fn(crops, targets, intensity):
            out = composite_edit(images=tf.constant(crops, tf.float32),
                                 targets=tf.constant(targets, tf.float32),
                                 intensity=tf.constant(intensity, tf.float32))
            return out["images"].numpy(), out["change"].numpy()
    elif "composite" in signatures:
        composite_signature = signatures["composite"]

        def composite_fn(crops, targets, intensity):
            out = composite_signature(images=tf.constant(crops, tf.float32),
                                      expressions=tf.constant(_plain_ids(path, targets, intensity),
                                                              tf.int32))
            return out["images"].numpy(), out["change"].numpy()

    model = _synthesis_model(fn, resolution, names, meta.get("options"), path, composite_fn)
    model._loaded = loaded  # keeps the restored objects alive
    return model


def _plain_ids(path, targets, intensity):
    """Ids for a SavedModel without the ``edit`` signatures (exported before
    intensity existed): only one-hot targets at intensity 1 can be served."""
    if not (np.allclose(intensity, 1.0) and np.allclose(targets.max(axis=1), 1.0)):
        raise SynthesisError(f"--model={path}: this export has no 'edit' signature (it predates "
                             "intensities and blends); export the model again")
    return targets.argmax(axis=1).astype(np.int32)


def _export_metadata_for(keras_path):
    """The export's metadata for ``<dir>/<name>-<version>.keras``: the json in
    ``<dir>/<name>/<version>/assets.extra/``, or None."""
    base = os.path.basename(keras_path)[:-len(".keras")]
    if "-" not in base:
        return None
    name, version = base.rsplit("-", 1)
    path = os.path.join(os.path.dirname(os.path.abspath(keras_path)), name, version,
                        "assets.extra", METADATA_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return _read_metadata(path)
    except SynthesisError:
        return None


def _load_keras_file(path, detail=None):
    try:
        generator = load_generator(path)
    except ExportError as e:  # already names the file and what is wrong with it
        raise SynthesisError(f"--model={e}") from e
    except (ValueError, OSError, TypeError) as e:
        raise SynthesisError(f"--model={path}: cannot load the Keras file ({e})") from e
    meta = _export_metadata_for(path)
    return _keras_model(generator, (meta or {}).get("options"), path, meta, detail)


def load_model_for_synthesis(path, detail=None):
    """A ``SynthesisModel`` from anything ``load_generator`` accepts (a
    ``.keras`` file, an export folder, a training workdir, nothing: the
    shipped model), a SavedModel version folder ``DIR/<name>/<version>/`` or
    a model folder ``DIR/<name>/`` (its newest version), or the name of a
    model shipped in the package (``mlc_keras.weights.names()``, e.g.
    ``synthetic_demo_64``) where no such path exists.

    ``detail``: the fine-detail gate of full-resolution compositing
    (``inference.composite``; None: its default, 0: off). A SavedModel keeps
    the setting it was exported with.

    Raises:
      SynthesisError / ExportError / config.ConfigError naming the path.
    """
    from mlc_keras import weights
    from mlc_keras.training.checkpoints import is_run_folder, load_run_generator

    def shipped(name):
        return _keras_model(load_generator(weights.path(name)), weights.info(name).get("options"),
                            f"the shipped model {name}", detail=detail)

    if not path:  # the default model shipped in the package
        return shipped(weights.DEFAULT_MODEL)
    path = os.fspath(path)
    if not os.path.exists(path):
        if path in weights.names():
            return shipped(path)
        raise SynthesisError(f"--model={path}: does not exist (nor is it a shipped model: "
                             f"{', '.join(weights.names())})")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise SynthesisError(f"--model={path}: a file, but not a .keras file")
        return _load_keras_file(path, detail)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _saved_model(path)
    if is_run_folder(path):
        generator, config = load_run_generator(path)
        return _keras_model(generator, dataclasses.asdict(config), path, detail=detail)
    newest = newest_keras_file(path)
    if newest:  # the export root: the .keras file of the newest version
        return _load_keras_file(newest, detail)
    versions = version_numbers(path, complete_only=True)
    if versions:
        return _saved_model(os.path.join(path, str(versions[-1])))
    raise ExportError(f"--model={path}: not a .keras file, an export folder, a SavedModel "
                      "(version) folder or a training workdir")
