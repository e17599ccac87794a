"""Writing synthesis results and reading inputs: output checks before any
work, the grid / pasted PNGs, the photo list of a folder, the skip reasons
and the folder progress line. May import data/align, images and
inference/loading."""

import collections
import os
import tempfile

from mlc_keras.data import align
from mlc_keras.images import atomic_path, write_gif_atomic, write_png_atomic
from mlc_keras.inference.loading import IdentityError, SynthesisError


def _grid_path(output, stem):
    """The grid PNG for ``output``: the file itself, or ``<stem>_grid.png``
    in an existing folder (or a name ending in a separator)."""
    if os.path.isdir(output) or output.endswith(os.sep):
        return os.path.join(output, f"{stem}_grid.png")
    if os.path.splitext(output)[1].lower() != ".png":
        raise SynthesisError(f"--output={output}: the grid is a PNG; give a .png file name "
                             "or an existing folder")
    return output


def check_output(output, folder, stem=None):
    """Raises ``SynthesisError`` naming ``--output`` when the output cannot
    be written there: the grid PNG (``folder=False``, ``stem`` for an
    existing folder) or the output folder (``folder=True``). Creates
    nothing: a probe file is made and removed in the nearest existing
    folder. Run before the model is loaded, so a bad path costs no work."""
    output = os.fspath(output)
    if folder:
        if os.path.exists(output) and not os.path.isdir(output):
            raise SynthesisError(f"--output={output}: the output here is a folder (one "
                                 "<stem>_<expression>.png per expression), but this is a file")
        target = os.path.abspath(output)
    else:
        target = os.path.dirname(os.path.abspath(_grid_path(output, stem or "photo")))
    existing = target
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SynthesisError(f"--output={output}: cannot be written ({existing} is a file, "
                             "not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".tmp-write-check-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise SynthesisError(f"--output={output}: cannot be written ({existing}: "
                             f"{e.strerror or e})") from e


def _write_png(path, image, output):
    try:
        write_png_atomic(path, image)
    except OSError as e:
        raise SynthesisError(f"--output={output}: cannot write {path} ({e.strerror or e})") from e


def save_result(result, output, stem):
    """Writes a result; returns the paths written.

    Grid: ``output`` is the PNG file, or an existing folder (``<stem>_grid.png``
    inside). Paste back: ``output`` is a folder of ``<stem>_<expression>.png``.
    """
    output = os.fspath(output)
    written = []
    if not result.paste_back:
        path = _grid_path(output, stem)
        for _, image in result.images():
            _write_png(path, image, output)
            written.append(path)
        return written
    if os.path.exists(output) and not os.path.isdir(output):
        raise SynthesisError(f"--output={output}: with --paste_back the output is a folder "
                             "(one <stem>_<expression>.png per expression), but this is a file")
    for expression, image in result.images():
        path = os.path.join(output, f"{stem}_{expression}.png")
        _write_png(path, image, output)
        written.append(path)
    return written


def save_animations(result, animated, output, stem, mp4=None):
    """Writes one animation per edit of ``animated``: ``{label: [frame
    labels in order]}`` of columns of ``result``. A frame is the pasted photo
    (paste back) or, per face, [aligned input | edited face]. Writes
    ``<stem>_<label>.gif`` (and ``.mp4`` when ``mp4`` and imageio's ffmpeg
    writer is installed); returns the paths written."""
    written = []
    for label, frame_labels in animated.items():
        if result.paste_back:
            frames = [result.pasted(f) for f in frame_labels]
        else:
            frames = [result.row_grid(f) for f in frame_labels]
        path = os.path.join(output, f"{stem}_{label}.gif")
        try:
            write_gif_atomic(path, frames)
            written.append(path)
            if mp4 and _mp4_writer() is not None:
                path = os.path.join(output, f"{stem}_{label}.mp4")
                with atomic_path(path, suffix=".mp4") as tmp:
                    _mp4_writer().imwrite(tmp, _even(frames), fps=max(1, len(frames) // 2))
                written.append(path)
        except OSError as e:
            raise SynthesisError(f"--output={output}: cannot write {path} ({e.strerror or e})") \
                from e
    return written


def _even(frames):
    """Video encoders want even sizes: drop a last row / column where odd."""
    import numpy as np

    h, w = frames[0].shape[:2]
    return np.stack([f[:h - h % 2, :w - w % 2] for f in frames])


def _mp4_writer():
    """imageio.v3 when it can write MP4 (imageio-ffmpeg installed), else None."""
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return None
    return iio


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
    if isinstance(error, IdentityError):
        return "identity"
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
