"""Reading photos safely: any mode to RGB with EXIF orientation applied, the
declared size checked against a pixel limit before decoding, one
``ImageError`` naming the file for anything unusable. May import errors only.
"""

import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mlc_keras.errors import UserError

# Largest image load_image decodes (80 megapixels: 240 MB as RGB uint8).
DEFAULT_MAX_PIXELS = 80_000_000


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable, corrupt, too large, or holds no
    usable face. ``path`` is the offending file (or a description)."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


def _to_rgb(img):
    """PIL image of any mode -> PIL ``RGB``; transparency over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255.0:
            arr = arr * (255.0 / (65535.0 if hi <= 65535.0 else hi))
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


# The refusal of an image above the pixel limit, worded once: load_image and
# the exported ``synthesize_bytes`` signature (in its graph) say the same.
PIXEL_LIMIT_MESSAGE = ("{name} declares {width}x{height} = {pixels} pixels, more than the limit "
                       "of {limit} (possible decompression bomb); downscale it first")


def pixel_limit_message(name, width, height, limit):
    """``PIXEL_LIMIT_MESSAGE`` for an image called ``name`` (e.g. ``image 'a.png'``)."""
    return PIXEL_LIMIT_MESSAGE.format(name=name, width=width, height=height,
                                      pixels=width * height, limit=limit)


def _jpeg_size(f):
    """(width, height) from a JPEG's first SOF segment, or None."""
    f.seek(2)
    while True:
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind, length = marker[1], int.from_bytes(marker[2:4], "big")
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            sof = f.read(5)
            return (int.from_bytes(sof[3:5], "big"), int.from_bytes(sof[1:3], "big")) \
                if len(sof) == 5 else None
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)


def _declared_size(path):
    """(width, height) read from a JPEG/PNG/GIF/BMP header without decoding
    (the same fields the exported graph reads), or None (another format, a
    short or unreadable file: Pillow then has its say)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            if head[:4] == b"GIF8" and len(head) >= 10:
                return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
            if head[:2] == b"BM" and len(head) >= 26:
                if int.from_bytes(head[14:18], "little") == 12:  # OS/2 1.x: 16-bit sizes
                    return (int.from_bytes(head[18:20], "little"),
                            int.from_bytes(head[20:22], "little"))
                return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                        abs(int.from_bytes(head[22:26], "little", signed=True)))
            if head[:3] == b"\xff\xd8\xff":
                return _jpeg_size(f)
    except OSError:
        return None
    return None


def load_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads an image file as RGB with its EXIF orientation applied.

    Args:
      path: file path (str or os.PathLike). Any format Pillow reads; the
        first frame of multi-frame files; alpha is composited over white;
        16-bit greyscale is scaled to 8 bits.
      max_pixels: images declaring more than this many pixels (width *
        height, read from the header before decoding) are refused, guarding
        against decompression bombs. Pillow's own bomb errors are mapped to
        ``ImageError`` too.

    Returns:
      np.ndarray, dtype uint8, shape (H, W, 3), C-contiguous, RGB; H x W is
      the upright (EXIF-rotated) size.

    Raises:
      ImageError: naming the file, when it does not exist, is not an image,
        is corrupt/truncated or is too large.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise ImageError(f"image {name!r} does not exist", name)
    if os.path.isdir(name):
        raise ImageError(f"image {name!r} is a folder, not an image file", name)
    declared = _declared_size(name)
    if declared and max_pixels is not None and declared[0] * declared[1] > max_pixels:
        # Checked before Pillow opens the file: its own bomb error (at twice
        # its default limit) would otherwise speak first, in its own words.
        raise ImageError(pixel_limit_message(f"image {name!r}", *declared, max_pixels), name)
    try:
        with warnings.catch_warnings():
            # Our own limit below is authoritative; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(name) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise ImageError(f"image {name!r} declares an empty size {width}x{height}", name)
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageError(pixel_limit_message(f"image {name!r}", width, height,
                                                         max_pixels), name)
                img.load()
                try:
                    img = ImageOps.exif_transpose(img)
                except Exception:  # A malformed EXIF block must not reject the photo.
                    pass
                rgb = _to_rgb(img)
                array = np.array(rgb, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # a format _declared_size does not read
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f" declares {found.group(1)} pixels," if found else " is"
        raise ImageError(f"image {name!r}{pixels} more than the limit of {max_pixels} (possible "
                         "decompression bomb); downscale it first", name) from e
    except UnidentifiedImageError as e:
        raise ImageError(f"image {name!r} is not a readable image file (unknown or corrupt format)", name) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"image {name!r} is corrupt or truncated: {e}", name) from e
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"image {name!r} decoded to unexpected shape {array.shape}", name)
    return np.ascontiguousarray(array)


def _as_rgb_array(image, what="image"):
    """Validates an image array; returns uint8 (H, W, 3) C-contiguous."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"{what}: expected dtype uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what}: expected shape (H, W, 3), got {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: empty image {a.shape}")
    return np.ascontiguousarray(a)
