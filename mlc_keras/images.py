"""Pixel-range conversions and the one atomic file writer.

Conventions: model images are float32 NHWC in [-1, 1]; stored images are
uint8 in [0, 255]. Conversions round half to even (``np.rint``), as the
exported graph's ``tf.round`` does, so a picture written here and one from
TF Serving are the same bytes. May import nothing from the package.
"""

import contextlib
import functools
import json
import os
import tempfile

import numpy as np


def to_uint8(images):
    """float [..., 3] in [-1, 1] -> uint8 in [0, 255] (clipped, rounded half to even)."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_float(images):
    """uint8 [..., 3] -> float32 in [-1, 1]; float input is returned as float32 unchanged."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    return x.astype(np.float32)


def to_unit(images):
    """[-1, 1] -> [0, 1] float32 (values outside are clipped)."""
    return np.clip((np.asarray(images, np.float32) + 1.0) * 0.5, 0.0, 1.0)


def tf_to_float(images):
    """The graph version of ``to_float``: a uint8 tensor -> float32 in [-1, 1]."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def clip_crop(image, box):
    """The (x0, y0, x1, y1) pixel box of an [H, W, ...] array, clipped to it."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    return image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]


@functools.lru_cache(maxsize=1)
def _file_mode():
    """The mode ``open()`` gives a new file under this process's umask (read
    once, at the first atomic write, not at import)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside ``path``; on success renames it onto
    ``path``, on any failure removes it. A reader never sees a half-written
    file, and a killed writer leaves only a ``.tmp-*`` file, which no loader
    takes for a result.

    ``suffix`` is kept on the temporary name (writers that pick a format from
    the extension, such as ``keras.Model.save``, need it).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path) + "-",
                               suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    """Writes ``text`` to ``path``, never half-written."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def write_json_atomic(path, value, **dump_options):
    """Writes ``value`` as JSON (sorted keys, indented, newline at the end)."""
    options = {"indent": 2, "sort_keys": True, **dump_options}
    write_text_atomic(path, json.dumps(value, **options) + "\n")


def write_png_atomic(path, array):
    """Writes a uint8 [H, W, 3] (or [H, W]) array as a PNG, never half-written."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(array)).save(tmp, format="PNG")


def write_gif_atomic(path, frames, seconds=2.0):
    """Writes uint8 [H, W, 3] frames as a looping animated GIF (each frame
    shown ``seconds / len(frames)``; the last one held as long again)."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f)) for f in frames]
    each = max(20, int(round(1000 * seconds / len(images))))
    durations = [each] * (len(images) - 1) + [4 * each]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=durations, optimize=False)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
