"""Synthesize expressions on your own photos.

    python -m mlc_keras.synthesize --model=EXPORT_OR_WORKDIR --input=PHOTO|DIR \\
        --expressions=happy,sad|all [--output=PATH] [--paste_back] \\
        [--faces=largest|all] [--batch_size=8]

--model     a ``.keras`` file, an export folder (its newest ``.keras``), a
            training workdir (its newest checkpoint), a SavedModel version
            folder ``DIR/<name>/<version>/`` (its ``serving_default``
            signature) or ``DIR/<name>/`` (its newest version).
--input     one photo, or a folder of photos (not recursive; hidden files
            are ignored, every other file is tried).
--output    default grid: a PNG per photo, one row per face:
              [aligned input | one column per expression], 2 px white gaps.
            --paste_back: one photo per expression, each synthesized face
              warped back and soft-blended into the original photo.
            Single photo: the grid file (default ``<photo dir>/<stem>_grid.png``)
            or, with --paste_back, a folder (default the photo's folder) of
            ``<stem>_<expression>.png``. Folder input: a folder (default
            ``<input>_synth``) of ``<stem>_grid.png`` / ``<stem>_<expression>.png``.

Faces are framed exactly like the training crops: the same dlib detector and
eye alignment as the importers (``mlc_keras.data.align``, default eye
layout), at the run's ``import_resolution`` (256 unless the run options say
otherwise), then area-resized to the model resolution with the training
pipeline's ``square_resize``.

A folder is processed photo by photo with a progress bar on stderr; a photo
that cannot be used (unreadable, corrupt, not an image, a decompression bomb,
no face) is reported and skipped, and a summary ends the run. The exit code
is 0 when at least one photo was written, 2 when none was. A single photo
that cannot be used ends the command with one ``error: ...`` line, exit 2.

Library use::

    from mlc_keras.synthesize import load_model_for_synthesis, synthesize_photo
    model = load_model_for_synthesis("exports/mlc-1.keras")
    result = synthesize_photo(model, "me.jpg", ["happy", "sad"])
    result.grid()                       # uint8 [H, W, 3]
    result.faces[0].outputs["happy"]    # uint8 [R, R, 3]
    result.pasted("happy")              # the photo with the new face pasted in
"""

from mlc_keras.errors import UserError
import collections
import dataclasses
import json
import os
import sys

import numpy as np

from mlc_keras.data import align
from mlc_keras.expressions import EXPRESSIONS, UnknownExpressionError, canonical_expression

__all__ = [
    "FACE_MODES",
    "FaceResult",
    "SynthesisError",
    "SynthesisModel",
    "SynthesisResult",
    "list_photos",
    "load_model_for_synthesis",
    "make_grid",
    "prepare_face",
    "resolve_expressions",
    "run_synthesis",
    "save_result",
    "synthesize_photo",
    "to_uint8",
]

FACE_MODES = ("largest", "all")
DEFAULT_IMPORT_RESOLUTION = 256
GRID_GAP = 2
GRID_BACKGROUND = 255
METADATA_FILE = "mlc_keras.json"  # == mlc_keras.export.METADATA_FILE


class SynthesisError(UserError, ValueError):
    """A model, input or output path cannot be used; the message says why."""


# ----------------------------------------------------------------- helpers


def to_uint8(images):
    """float images in [-1, 1] -> uint8 (the export's rounding)."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SynthesisError(f"{path}: unreadable metadata ({e})") from e


def resolve_expressions(requested, vocabulary):
    """``"happy,sad"``, ``"all"`` or a list of names -> the model's class
    names, in the order given, without repeats.

    A name matches a class of the model exactly (any case) or through the
    data-set spellings of ``mlc_keras.expressions`` ("smiling" -> "happy").

    Raises:
      UnknownExpressionError naming the unknown name and this model's classes.
    """
    vocabulary = tuple(vocabulary)
    if isinstance(requested, str):
        if requested.strip().lower() == "all":
            return list(vocabulary)
        requested = requested.split(",")
    names = [str(n).strip() for n in requested if str(n).strip()]
    known = ", ".join(vocabulary)
    if not names:
        raise UnknownExpressionError(f"--expressions: empty; give names from this model's "
                                     f"expressions ({known}) or 'all'")
    lower = {v.lower(): v for v in vocabulary}
    out = []
    for name in names:
        match = lower.get(name.lower())
        if match is None:
            try:
                canonical = canonical_expression(name)
            except UnknownExpressionError:
                canonical = None
            match = canonical if canonical in vocabulary else None
        if match is None:
            raise UnknownExpressionError(
                f"--expressions: unknown expression {name!r}; this model's expressions are: "
                f"{known} (or 'all')")
        if match not in out:
            out.append(match)
    return out


# ----------------------------------------------------------------- the model


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
    """

    def __init__(self, fn, resolution, expressions, import_resolution=DEFAULT_IMPORT_RESOLUTION,
                 dataset=None, source=""):
        self._fn = fn
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

    def generate(self, images, ids, batch_size=8):
        """Synthesizes ``images[i]`` with expression ``ids[i]``.

        Args:
          images: float [B, R, R, 3] in [-1, 1].
          ids: int [B], ids into ``expressions``.
          batch_size: images per model call.

        Returns:
          np.ndarray float32 [B, R, R, 3] in [-1, 1] (the final decoder level).
        """
        images = np.asarray(images, np.float32)
        ids = np.asarray(ids, np.int32).reshape(-1)
        r = self.resolution
        if images.ndim != 4 or images.shape[1:] != (r, r, 3):
            raise ValueError(f"images: expected [batch, {r}, {r}, 3], got {images.shape}")
        if ids.shape[0] != images.shape[0]:
            raise ValueError(f"ids: {ids.shape[0]} ids for {images.shape[0]} images")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise ValueError(f"ids must lie in [0, {self.num_classes - 1}], got {ids.tolist()}")
        batch_size = max(1, int(batch_size))
        chunks = [np.asarray(self._fn(images[i:i + batch_size], ids[i:i + batch_size]), np.float32)
                  for i in range(0, images.shape[0], batch_size)]
        return np.concatenate(chunks, 0) if chunks else np.zeros((0, r, r, 3), np.float32)


def _keras_model(generator, options, source, metadata=None):
    import tensorflow as tf

    r, n = int(generator.resolution), int(generator.num_classes)
    names = (getattr(generator, "expressions", None) or (metadata or {}).get("expressions")
             or (options or {}).get("expressions") or EXPRESSIONS[:n])
    names = tuple(names)
    if len(names) != n:
        names = tuple(EXPRESSIONS[:n])

    @tf.function(input_signature=[tf.TensorSpec([None, r, r, 3], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def run(images, ids):
        return generator((images, tf.one_hot(ids, n, dtype=tf.float32)), training=False)[0]

    def fn(images, ids):
        return run(tf.constant(images), tf.constant(ids)).numpy()

    options = options or {}
    return SynthesisModel(fn, r, names,
                          import_resolution=options.get("import_resolution", DEFAULT_IMPORT_RESOLUTION),
                          dataset=options.get("dataset"), source=source)


def _saved_model(path):
    import tensorflow as tf

    meta_path = os.path.join(path, "assets.extra", METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise SynthesisError(f"--model={path}: a SavedModel without assets.extra/{METADATA_FILE}, "
                             "so its resolution and expressions are unknown; use the .keras file "
                             "written beside the export")
    meta = _read_json(meta_path)
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
    signature = loaded.signatures["serving_default"]

    def fn(images, ids):
        out = signature(images=tf.constant(images, tf.float32), expressions=tf.constant(ids, tf.int32))
        return out["images"].numpy()

    options = meta.get("options") or {}
    model = SynthesisModel(fn, resolution, names,
                           import_resolution=options.get("import_resolution", DEFAULT_IMPORT_RESOLUTION),
                           dataset=options.get("dataset"), source=path)
    model._loaded = loaded  # keeps the restored objects alive
    return model


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
        return _read_json(path)
    except SynthesisError:
        return None


def _load_keras_file(path):
    from mlc_keras.export import load_generator

    try:
        generator = load_generator(path)
    except (ValueError, OSError, TypeError) as e:
        raise SynthesisError(f"--model={path}: cannot load the Keras file ({e})") from e
    meta = _export_metadata_for(path)
    return _keras_model(generator, (meta or {}).get("options"), path, meta)


def load_model_for_synthesis(path):
    """A ``SynthesisModel`` from anything ``export.load_generator`` accepts
    (a ``.keras`` file, an export folder, a training workdir), a SavedModel
    version folder ``DIR/<name>/<version>/`` or a model folder
    ``DIR/<name>/`` (its newest version).

    Raises:
      SynthesisError / export.ExportError / config.ConfigError naming the path.
    """
    from mlc_keras.export import ExportError, newest_keras_file, version_numbers
    from mlc_keras.training.checkpoints import load_run_generator

    path = os.fspath(path)
    if not path:
        raise SynthesisError("--model is required (a .keras file, an export folder, a SavedModel "
                             "version folder or a training workdir)")
    if not os.path.exists(path):
        raise SynthesisError(f"--model={path}: does not exist")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise SynthesisError(f"--model={path}: a file, but not a .keras file")
        return _load_keras_file(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _saved_model(path)
    if os.path.isfile(os.path.join(path, "options.json")):
        generator, config = load_run_generator(path)
        return _keras_model(generator, dataclasses.asdict(config), path)
    newest = newest_keras_file(path)
    if newest:  # the export root: the .keras file of the newest version
        return _load_keras_file(newest)
    versions = version_numbers(path, complete_only=True)
    if versions:
        return _saved_model(os.path.join(path, str(versions[-1])))
    raise ExportError(f"--model={path}: not a .keras file, an export folder, a SavedModel "
                      "(version) folder or a training workdir")


# ----------------------------------------------------------------- faces


def prepare_face(photo, face, model):
    """Aligns ``face`` of ``photo`` as the training crops were aligned.

    The importers' crop (``align_face`` with the default eye layout at the
    run's import resolution) is area-resized to R by the training
    pipeline's ``square_resize``.

    Returns:
      (aligned uint8 [R, R, 3], matrix crop->photo (3, 3), crop size S).
    """
    import tensorflow as tf

    from mlc_keras.data.pipeline import square_resize

    size = model.import_resolution
    crop, matrix = align.align_face(photo, face.left_eye, face.right_eye, size,
                                    eye_y=align.DEFAULT_EYE_Y, eye_dist=align.DEFAULT_EYE_DIST)
    aligned = square_resize(tf.constant(crop), model.resolution).numpy()
    return aligned, matrix, size


@dataclasses.dataclass(eq=False)
class FaceResult:
    """One synthesized face.

    face: the detected ``align.Face``.
    aligned: uint8 [R, R, 3], the model's input.
    matrix: float64 (3, 3), aligned-crop coords (at ``crop_size``) -> photo coords.
    crop_size: S, the side of the aligned crop ``matrix`` is made for.
    synthesized: float32 [E, R, R, 3] in [-1, 1], one per requested expression.
    outputs: {expression: uint8 [R, R, 3]}.
    """

    face: object
    aligned: np.ndarray
    matrix: np.ndarray
    crop_size: int
    synthesized: np.ndarray
    outputs: dict


@dataclasses.dataclass(eq=False)
class SynthesisResult:
    """Everything synthesized from one photo.

    source: the photo's path (or "array").
    photo: uint8 [H, W, 3], the loaded photo (EXIF orientation applied).
    expressions: the expression names, in column order.
    faces: [FaceResult], largest face first.
    ignored_faces: faces found but not used (``faces="largest"``).
    paste_back: which output ``images()`` yields (and ``save_result`` writes).
    """

    source: str
    photo: np.ndarray
    expressions: list
    faces: list
    ignored_faces: int = 0
    paste_back: bool = False

    def grid(self, gap=GRID_GAP, background=GRID_BACKGROUND):
        """uint8 grid: per face a row [aligned input, one column per expression]."""
        rows = [[f.aligned] + [f.outputs[e] for e in self.expressions] for f in self.faces]
        return make_grid(rows, gap=gap, background=background)

    def pasted(self, expression):
        """uint8 [H, W, 3]: the photo with every face replaced by its
        ``expression`` version (upsampled to the aligned crop size, warped
        back and soft-blended by ``align.paste_back``)."""
        from PIL import Image

        if expression not in self.expressions:
            raise KeyError(f"{expression!r} was not synthesized (have: {', '.join(self.expressions)})")
        out = self.photo
        for f in self.faces:
            face = f.outputs[expression]
            if face.shape[0] != f.crop_size:
                face = np.asarray(Image.fromarray(face).resize((f.crop_size, f.crop_size),
                                                               Image.BICUBIC))
            out = align.paste_back(out, face, f.matrix, crop_size=f.crop_size)
        return out

    def images(self):
        """Yields (suffix, uint8 image): ("grid", grid) or, with paste_back,
        (expression, pasted photo) per expression, computed one at a time."""
        if not self.paste_back:
            yield "grid", self.grid()
            return
        for expression in self.expressions:
            yield expression, self.pasted(expression)


def make_grid(rows, gap=GRID_GAP, background=GRID_BACKGROUND):
    """Tiles equally sized uint8 images: ``rows[i][j]`` goes to row i,
    column j, with ``gap`` pixels of ``background`` between tiles (none
    around the border). Short rows are padded with background."""
    rows = [list(r) for r in rows]
    if not rows or not any(rows):
        raise ValueError("make_grid: no images")
    tiles = [np.asarray(t) for r in rows for t in r]
    h, w = tiles[0].shape[:2]
    if any(t.shape != tiles[0].shape for t in tiles):
        raise ValueError(f"make_grid: tiles differ in shape: {sorted({t.shape for t in tiles})}")
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * h + (len(rows) - 1) * gap, cols * w + (cols - 1) * gap)
                   + tiles[0].shape[2:], background, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = i * (h + gap), j * (w + gap)
            grid[y:y + h, x:x + w] = tile
    return grid


def synthesize_photo(model, photo_path, expressions, faces="largest", paste_back=False,
                     aligner=None, batch_size=8, max_pixels=align.DEFAULT_MAX_PIXELS):
    """Detects, aligns and synthesizes the faces of one photo.

    Args:
      model: a ``SynthesisModel`` (or anything ``load_model_for_synthesis`` takes).
      photo_path: an image file, or a uint8 [H, W, 3] array.
      expressions: "happy,sad", "all" or a list of names.
      faces: "largest" (the largest face; ``ignored_faces`` counts the rest)
        or "all".
      paste_back: what ``result.images()`` yields (grid or pasted photos).
      aligner: an ``align.FaceAligner`` (default: the shared one).
      batch_size: images per model call.
      max_pixels: decompression-bomb limit of ``align.load_image``.

    Returns:
      SynthesisResult.

    Raises:
      align.ImageError (unreadable, corrupt, too large, not an image),
      align.NoFaceError, UnknownExpressionError, align.MissingDependencyError.
    """
    if faces not in FACE_MODES:
        raise SynthesisError(f"--faces={faces}: expected one of {', '.join(FACE_MODES)}")
    if not isinstance(model, SynthesisModel):
        model = load_model_for_synthesis(model)
    names = resolve_expressions(expressions, model.expressions)
    if isinstance(photo_path, np.ndarray):
        source, photo = "array", align._as_rgb_array(photo_path, "photo")
    else:
        source = os.fspath(photo_path)
        photo = align.load_image(source, max_pixels=max_pixels)
    aligner = aligner or align.get_default_aligner()
    found = aligner.detect(photo)
    if not found:
        h, w = photo.shape[:2]
        raise align.NoFaceError(f"no face found in {source!r} ({w}x{h}); use a front-facing photo "
                                "in which the face is at least ~80 pixels wide", source)
    used = found if faces == "all" else found[:1]
    prepared = []
    for face in used:
        try:
            prepared.append(prepare_face(photo, face, model))
        except ValueError as e:
            raise align.ImageError(f"{source!r}: cannot align a face ({e})", source) from e
    ids = [model.expressions.index(n) for n in names]
    e = len(ids)
    inputs = np.stack([p[0] for p in prepared]).astype(np.float32) / 127.5 - 1.0
    out = model.generate(np.repeat(inputs, e, axis=0), np.tile(ids, len(prepared)), batch_size)
    out = out.reshape((len(prepared), e) + out.shape[1:])
    results = []
    for face, (aligned, matrix, size), synthesized in zip(used, prepared, out):
        pixels = to_uint8(synthesized)
        results.append(FaceResult(face, aligned, matrix, size, synthesized,
                                  {n: pixels[k] for k, n in enumerate(names)}))
    return SynthesisResult(source, photo, names, results, len(found) - len(used), bool(paste_back))


# ----------------------------------------------------------------- output


def _save_png(image, path):
    from PIL import Image

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_result(result, output, stem):
    """Writes a result; returns the paths written.

    Grid: ``output`` is the PNG file, or an existing folder (``<stem>_grid.png``
    inside). Paste back: ``output`` is a folder of ``<stem>_<expression>.png``.
    """
    output = os.fspath(output)
    written = []
    if not result.paste_back:
        path = output
        if os.path.isdir(output) or output.endswith(os.sep):
            path = os.path.join(output, f"{stem}_grid.png")
        elif os.path.splitext(output)[1].lower() != ".png":
            raise SynthesisError(f"--output={output}: the grid is a PNG; give a .png file name "
                                 "or an existing folder")
        for _, image in result.images():
            _save_png(image, path)
            written.append(path)
        return written
    if os.path.exists(output) and not os.path.isdir(output):
        raise SynthesisError(f"--output={output}: with --paste_back the output is a folder "
                             "(one <stem>_<expression>.png per expression), but this is a file")
    for expression, image in result.images():
        path = os.path.join(output, f"{stem}_{expression}.png")
        _save_png(image, path)
        written.append(path)
    return written


def list_photos(folder):
    """The files of ``folder`` to try, sorted (not recursive, no hidden
    files); each is tried, so a non-image is reported rather than ignored."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if not n.startswith(".") and os.path.isfile(os.path.join(folder, n)))


def _stems(paths):
    """Output stems: the file name without extension, or with the
    extension folded in (``a_jpg``) where two files share a stem."""
    base = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    counts = collections.Counter(base)
    return [b if counts[b] == 1 else os.path.basename(p).replace(".", "_")
            for p, b in zip(paths, base)]


def _reason(error):
    """A short category for the summary line."""
    if isinstance(error, align.NoFaceError):
        return "no face"
    text = str(error)
    for needle, label in (("decompression bomb", "too large"), ("not a readable image", "not an image"),
                          ("corrupt or truncated", "corrupt"), ("does not exist", "missing"),
                          ("cannot align", "cannot align")):
        if needle in text:
            return label
    return "unreadable"


class _Progress:
    """``\\r[#####     ] 3/10 name`` on a stream; messages get their own lines."""

    def __init__(self, total, stream, width=24):
        self.total, self.stream, self.width = total, stream, width
        self.done, self._last = 0, ""

    def _draw(self, name=""):
        filled = int(self.width * self.done / max(1, self.total))
        line = f"[{'#' * filled}{' ' * (self.width - filled)}] {self.done}/{self.total}"
        if name:
            line += f" {name}"[:60]
        self.stream.write("\r" + line.ljust(len(self._last)))
        self.stream.flush()
        self._last = line

    def message(self, text):
        if self._last:
            self.stream.write("\r" + " " * len(self._last) + "\r")
            self._last = ""
        self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, name=""):
        self.done += 1
        self._draw(name)

    def start(self):
        self._draw()

    def close(self):
        if self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""


def _ignored_note(result):
    if not result.ignored_faces:
        return None
    return (f"note: {result.source}: {result.ignored_faces + 1} faces found; used the largest, "
            f"ignored {result.ignored_faces} (--faces=all uses every face)")


def run_synthesis(model, input, expressions="all", output=None, paste_back=False, faces="largest",
                  batch_size=8, aligner=None, stdout=None, stderr=None):
    """The command: one photo or a folder of photos -> PNG files.

    Returns the exit code: 0 when at least one photo was written, 2 when a
    folder held no usable photo. A single photo that cannot be used raises
    (``align.ImageError``, ``NoFaceError``); so do bad arguments
    (``SynthesisError``, ``UnknownExpressionError``, ``ExportError``).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if faces not in FACE_MODES:
        raise SynthesisError(f"--faces={faces}: expected one of {', '.join(FACE_MODES)}")
    if int(batch_size) < 1:
        raise SynthesisError(f"--batch_size={batch_size}: must be at least 1")
    if not input:
        raise SynthesisError("--input is required (a photo or a folder of photos)")
    input = os.fspath(input)
    if not os.path.exists(input):
        raise SynthesisError(f"--input={input}: does not exist")
    folder = os.path.isdir(input)
    if folder:
        photos = list_photos(input)
        if not photos:
            raise SynthesisError(f"--input={input}: the folder holds no files")
        out_dir = os.fspath(output) if output else input.rstrip(os.sep) + "_synth"
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise SynthesisError(f"--output={out_dir}: for a folder of photos the output is a "
                                 "folder, but this is a file")
        if os.path.abspath(out_dir) == os.path.abspath(input):
            raise SynthesisError(f"--output={out_dir}: is the input folder; outputs would mix with "
                                 "the photos")
    if not isinstance(model, SynthesisModel):
        model = load_model_for_synthesis(model)
    names = resolve_expressions(expressions, model.expressions)
    if model.dataset == "synthetic":
        print(f"note: {model.source} was trained on the synthetic data set; real photos are "
              "outside what it has seen", file=stderr, flush=True)
    aligner = aligner or align.get_default_aligner()

    def one(path):
        return synthesize_photo(model, path, names, faces=faces, paste_back=paste_back,
                                aligner=aligner, batch_size=batch_size)

    if not folder:
        stem = os.path.splitext(os.path.basename(input))[0]
        target = output or (os.path.dirname(os.path.abspath(input)) if paste_back else
                            os.path.join(os.path.dirname(os.path.abspath(input)), f"{stem}_grid.png"))
        result = one(input)
        note = _ignored_note(result)
        if note:
            print(note, file=stderr, flush=True)
        for path in save_result(result, target, stem):
            print(f"wrote {path}", file=stdout, flush=True)
        return 0

    os.makedirs(out_dir, exist_ok=True)
    progress = _Progress(len(photos), stderr)
    progress.start()
    done, skipped, faces_done = 0, [], 0
    try:
        for path, stem in zip(photos, _stems(photos)):
            name = os.path.basename(path)
            try:
                result = one(path)
            except align.ImageError as e:
                skipped.append((name, _reason(e)))
                progress.message(f"skipped {name}: {e}")
            else:
                save_result(result, out_dir, stem)
                done += 1
                faces_done += len(result.faces)
                note = _ignored_note(result)
                if note:
                    progress.message(note)
            progress.step(name)
    finally:
        progress.close()
    summary = (f"processed {done} photo(s) ({faces_done} face(s)) -> {out_dir}; "
               f"skipped {len(skipped)}")
    if skipped:
        summary += ": " + ", ".join(f"{n} ({r})" for n, r in skipped)
    print(summary, file=stderr if not done else stdout, flush=True)
    if not done:
        print(f"error: none of the {len(photos)} file(s) in {input} could be used", file=stderr,
              flush=True)
        return 2
    return 0


# ----------------------------------------------------------------- command


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()  # before TensorFlow is imported
    from mlc_keras.errors import exit_on_user_error

    f = flags.FLAGS
    with exit_on_user_error():
        try:
            code = run_synthesis(f.model, f.input, f.expressions, output=f.output or None,
                                 paste_back=f.paste_back, faces=f.faces, batch_size=f.batch_size)
        except (SynthesisError, align.MissingDependencyError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
    return code


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", "", "A .keras file, an export folder, a SavedModel (version) "
                                     "folder or a training workdir.")
    flags.DEFINE_string("input", "", "A photo, or a folder of photos.")
    flags.DEFINE_string("expressions", "all", "Comma-separated expression names, or 'all'.")
    flags.DEFINE_string("output", "", "Single photo: the grid PNG (or, with --paste_back, a "
                                      "folder). Folder input: a folder (default <input>_synth).")
    flags.DEFINE_boolean("paste_back", False, "Write one photo per expression with the new faces "
                                              "blended into the original, instead of a grid.")
    flags.DEFINE_enum("faces", "largest", list(FACE_MODES), "Use the largest face or all faces.")
    flags.DEFINE_integer("batch_size", 8, "Faces per model call.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
