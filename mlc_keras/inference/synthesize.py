"""The synthesis library: photos -> aligned faces -> every requested expression -> PNGs.

May import inference/loading and inference/faces, data/align, images, errors,
expressions; nothing of training/ (models load through ``loading``).

--output layout (what ``save_result`` / ``run_synthesis`` write): default
grid: a PNG per photo, one row per face: [aligned input | one column per
expression], 2 px white gaps. With paste_back: one photo per expression,
each synthesized face warped back and soft-blended into the original photo.
Single photo: the grid file (default ``<photo dir>/<stem>_grid.png``) or,
with paste_back, a folder (default the photo's folder) of
``<stem>_<expression>.png``. Folder input: a folder (default
``<input>_synth``) of ``<stem>_grid.png`` / ``<stem>_<expression>.png``.

Faces are framed exactly like the training crops: the same dlib detector and
eye alignment as the importers (``mlc_keras.data.align``, default eye
layout), at the run's ``import_resolution`` (256 unless the run options say
otherwise), then area-resized to the model resolution with the training
pipeline's ``square_resize``.

A folder is processed photo by photo with a progress bar on stderr; a photo
that cannot be used (unreadable, corrupt, not an image, a decompression bomb,
no face) is reported and skipped, and a summary ends the run.

Library use::

    from mlc_keras.inference.loading import load_model_for_synthesis
    from mlc_keras.inference.synthesize import synthesize_photo
    model = load_model_for_synthesis("exports/mlc-1.keras")
    result = synthesize_photo(model, "me.jpg", ["happy", "sad"])
    result.grid()                       # uint8 [H, W, 3]
    result.faces[0].outputs["happy"]    # uint8 [R, R, 3]
    result.pasted("happy")              # the photo with the new face pasted in
"""

import dataclasses
import os
import sys

import numpy as np

from mlc_keras.data import align
from mlc_keras.data.identity import SAME_PERSON_THRESHOLD, FaceEmbedder
from mlc_keras.images import to_float, to_uint8
from mlc_keras.inference.edits import Edit, parse_intensities, resolve_edits  # noqa: F401
from mlc_keras.inference.faces import FaceResult, prepare_face
from mlc_keras.inference.faces import paste_back as paste_face_back
from mlc_keras.inference.loading import (IdentityError, SynthesisError, SynthesisModel,
                                         load_model_for_synthesis)
from mlc_keras.inference.output import (_Progress, _reason, _stems, check_output,  # noqa: F401
                                        list_photos, save_animations, save_result)

__all__ = [
    "FACE_MODES",
    "SynthesisResult",
    "check_output",
    "list_photos",
    "make_grid",
    "resolve_expressions",
    "run_synthesis",
    "save_result",
    "synthesize_photo",
]

FACE_MODES = ("largest", "all")
GRID_GAP = 2
GRID_BACKGROUND = 255



def resolve_expressions(requested, vocabulary):
    """``"happy,sad"``, ``"all"`` or a list of names -> the model's class
    names, in the order given, without repeats.

    A name matches a class of the model exactly (any case) or through the
    data-set spellings of ``mlc_keras.expressions`` ("smiling" -> "happy").

    Raises:
      UnknownExpressionError naming the unknown name and this model's classes.
    """
    return list(dict.fromkeys(e.weights[0][0] for e in resolve_edits(
        requested.replace(";", ",") if isinstance(requested, str) else requested, vocabulary)))


@dataclasses.dataclass(eq=False)
class SynthesisResult:
    """Everything synthesized from one photo.

    source: the photo's path (or "array").
    photo: uint8 [H, W, 3], the loaded photo (EXIF orientation applied).
    expressions: the edits' labels (``edits.Edit.label``), in column order.
    edits: the ``Edit`` of each column.
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
    edits: list = dataclasses.field(default_factory=list)

    def grid(self, gap=GRID_GAP, background=GRID_BACKGROUND):
        """uint8 grid: per face a row [aligned input, one column per expression]."""
        rows = [[f.aligned] + [f.outputs[e] for e in self.expressions] for f in self.faces]
        return make_grid(rows, gap=gap, background=background)

    def row_grid(self, label):
        """uint8: per face a row [aligned input, its ``label`` output]."""
        return make_grid([[f.aligned, f.outputs[label]] for f in self.faces])

    def pasted(self, expression):
        """uint8 [H, W, 3]: the photo with every face replaced by its
        ``expression`` version: the composite at the face's own resolution
        where the model has one (only the pixels the model changes are
        replaced), else the R output upsampled to the crop size; warped back
        and soft-blended by ``faces.paste_back``."""
        from PIL import Image

        if expression not in self.expressions:
            raise KeyError(f"{expression!r} was not synthesized (have: {', '.join(self.expressions)})")
        out = self.photo
        for f in self.faces:
            if f.composites is not None:  # edited at the face's own resolution
                out = paste_face_back(out, f.composites[expression], f.full_matrix,
                                      crop_size=f.full_crop.shape[0], alpha=f.changes[expression])
                continue
            face = f.outputs[expression]
            if face.shape[0] != f.crop_size:
                face = np.asarray(Image.fromarray(face).resize((f.crop_size, f.crop_size),
                                                               Image.BICUBIC))
            out = paste_face_back(out, face, f.matrix, crop_size=f.crop_size)
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
                     aligner=None, batch_size=8, max_pixels=align.DEFAULT_MAX_PIXELS,
                     intensity=None):
    """Detects, aligns and synthesizes the faces of one photo.

    Args:
      model: a ``SynthesisModel`` (or anything ``load_model_for_synthesis`` takes).
      photo_path: an image file, or a uint8 [H, W, 3] array.
      expressions: "happy,sad", "all", "happy:0.6,surprised:0.4" (a blend), a
        list of names or of ``edits.Edit`` (see ``inference.edits``).
      intensity: None (1.0), a number, "0,0.5,1" or a list: every
        expression at each intensity (0 returns the face unchanged).
      faces: "largest" (the largest face; ``ignored_faces`` counts the rest)
        or "all".
      paste_back: what ``result.images()`` yields (grid or pasted photos); with
        it, each face is also composited at its own resolution
        (``FaceResult.composites``, what the pasted photos are made of).
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
    edits = resolve_edits(expressions, model.expressions, intensity)
    names = [e.label for e in edits]
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
    targets = np.stack([edit.target(model.expressions) for edit in edits])
    strengths = np.array([edit.intensity for edit in edits], np.float32)
    e = len(edits)
    inputs = to_float(np.stack([p[0] for p in prepared]))
    out = model.generate(np.repeat(inputs, e, axis=0), np.tile(targets, (len(prepared), 1)),
                         batch_size, intensity=np.tile(strengths, len(prepared)))
    out = out.reshape((len(prepared), e) + out.shape[1:])
    results = []
    for face, (aligned, matrix, size, full, full_matrix), synthesized in zip(used, prepared, out):
        pixels = to_uint8(synthesized)
        result = FaceResult(face, aligned, matrix, size, synthesized,
                            {n: pixels[k] for k, n in enumerate(names)}, full, full_matrix)
        if paste_back and model.can_composite:  # only pasted photos use the composites
            composites, changes = model.composite(full, targets, strengths)
            result.composites = {n: composites[k] for k, n in enumerate(names)}
            result.changes = {n: changes[k] for k, n in enumerate(names)}
        results.append(result)
    return SynthesisResult(source, photo, names, results, len(found) - len(used), bool(paste_back),
                           edits)



def identity_check(result, embedder, threshold=SAME_PERSON_THRESHOLD):
    """Measures each output face's identity distance to its source face (dlib
    descriptors of the same framing: the full-resolution crop and its
    composite, or the R input and output) and records it in
    ``face.identity``. Returns ``[(face index, expression, distance)]`` of
    the outputs past ``threshold`` (dlib's same-person threshold)."""
    failures = []
    for index, face in enumerate(result.faces):
        if face.composites is not None:
            source, outputs = face.full_crop, face.composites
        else:
            source, outputs = face.aligned, face.outputs
        names = list(result.expressions)
        embedded = embedder.embed(np.stack([source] + [outputs[n] for n in names]))
        distances = np.linalg.norm(embedded[1:] - embedded[:1], axis=1)
        face.identity = {n: float(d) for n, d in zip(names, distances)}
        failures += [(index, n, float(d)) for n, d in zip(names, distances) if d > threshold]
    return failures


def _identity_message(source, failures, threshold):
    listed = ", ".join(f"face {i + 1} {n}: {d:.3f}" for i, n, d in failures)
    return (f"{source}: the synthesized face may not pass as the same person (dlib distance to "
            f"the source above {threshold}: {listed})")


def _ignored_note(result):
    if not result.ignored_faces:
        return None
    return (f"note: {result.source}: {result.ignored_faces + 1} faces found; used the largest, "
            f"ignored {result.ignored_faces} (--faces=all uses every face)")


def animation_edits(edits, frames):
    """{label of each edit: [labels of its frames]} and the frames' edits:
    ``frames`` intensities from 0 to the edit's own, evenly spaced."""
    animated, every = {}, []
    for edit in edits:
        steps = [edit.at(round(float(a), 6)) for a in np.linspace(0.0, edit.intensity, frames)]
        animated[edit.label] = [e.label for e in steps]
        every += steps
    return animated, list(dict.fromkeys(every))


def run_synthesis(model, input, expressions="all", output=None, paste_back=False, faces="largest",
                  batch_size=8, aligner=None, stdout=None, stderr=None, strict=False,
                  identity_guard=True, intensity=None, frames=0, mp4=True, detail=None):
    """The command: one photo or a folder of photos -> PNG files.

    Every output face's identity distance to its source is measured
    (``identity_check``); past dlib's same-person threshold a warning names
    the file, and with ``strict`` that photo is an error: nothing is written
    for it (a single photo: ``IdentityError``; in a folder it is skipped).

    ``intensity``: one value or several (every expression at each: grid
    columns). ``frames`` >= 2: instead of still images, one animated GIF
    (and MP4 when imageio-ffmpeg is installed and ``mp4``) per expression
    that morphs from the photo (intensity 0) to the expression at
    ``intensity`` over that many frames, written like pasted photos
    (``<stem>_<label>.gif`` in the output folder). ``detail``: the
    fine-detail gate of full-resolution compositing (``inference.composite``;
    None: the default, 0: off; a SavedModel keeps its export's setting).

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
    intensities = parse_intensities(intensity)
    if detail is not None:
        from mlc_keras.inference.composite import check_detail

        detail = check_detail(detail)
    frames = int(frames or 0)
    if frames == 1 or frames < 0 or frames > 120:
        raise SynthesisError(f"--frames={frames}: an animation needs 2 to 120 frames (0: stills)")
    if frames and len(intensities) > 1:
        raise SynthesisError(f"--intensity={intensity}: an animation (--frames) runs from 0 to "
                             "one intensity; give one value")
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
        check_output(out_dir, folder=True)
    else:
        stem = os.path.splitext(os.path.basename(input))[0]
        as_folder = paste_back or bool(frames)
        target = output or (os.path.dirname(os.path.abspath(input)) if as_folder else
                            os.path.join(os.path.dirname(os.path.abspath(input)), f"{stem}_grid.png"))
        check_output(target, folder=as_folder, stem=stem)  # before the model: no wasted work
    if not isinstance(model, SynthesisModel):
        model = load_model_for_synthesis(model, detail)
    edits = resolve_edits(expressions, model.expressions, intensities)
    animated = None
    if frames:
        animated, edits = animation_edits(edits, frames)
    if model.dataset == "synthetic":
        print(f"note: {model.source} was trained on the synthetic data set; real photos are "
              "outside what it has seen", file=stderr, flush=True)
    aligner = aligner or align.get_default_aligner()
    embedder = FaceEmbedder(detect=False) if identity_guard else None

    def one(path, warn):
        result = synthesize_photo(model, path, edits, faces=faces, paste_back=paste_back,
                                  aligner=aligner, batch_size=batch_size)
        failures = identity_check(result, embedder) if embedder is not None else []
        if failures:
            message = _identity_message(path, failures, SAME_PERSON_THRESHOLD)
            if strict:
                raise IdentityError(message + "; nothing written (--strict)")
            warn(f"warning: {message}")
        return result

    def save(result, where, stem):
        if animated is None:
            return save_result(result, where, stem)
        os.makedirs(where, exist_ok=True)
        return save_animations(result, animated, where, stem, mp4=mp4)

    if not folder:
        result = one(input, lambda text: print(text, file=stderr, flush=True))
        note = _ignored_note(result)
        if note:
            print(note, file=stderr, flush=True)
        for path in save(result, target, stem):
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
                result = one(path, progress.message)
            except (align.ImageError, IdentityError) as e:
                skipped.append((name, _reason(e)))
                progress.message(f"skipped {name}: {e}")
            else:
                save(result, out_dir, stem)
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

