"""Faces of users' photos: aligned like the training crops, synthesized faces pasted back.

May import data/align, data/pipeline and images; nothing of training/ or models/.
"""

import dataclasses

import numpy as np

from mlc_keras.data import align
from mlc_keras.data.align import _as_rgb_array
from mlc_keras.data.warping import shift, warp

__all__ = ["FaceResult", "native_crop_size", "paste_back", "prepare_face"]


def native_crop_size(face, resolution, limit=1024):
    """The aligned-crop side S at which one crop pixel is about one photo pixel
    (from the eye distance), at least ``resolution`` and at most ``limit``:
    the size at which a face is composited without losing the photo's detail."""
    dx = face.right_eye[0] - face.left_eye[0]
    dy = face.right_eye[1] - face.left_eye[1]
    native = float(np.hypot(dx, dy)) / align.DEFAULT_EYE_DIST
    return int(min(max(8 * round(native / 8), resolution), limit))


def prepare_face(photo, face, model):
    """Aligns ``face`` of ``photo`` as the training crops were aligned.

    The importers' crop (``align_face`` with the default eye layout at the
    run's import resolution) is area-resized to R by the training
    pipeline's ``square_resize``. A second crop with the same framing at the
    face's own resolution (``native_crop_size``) is what compositing edits.

    Returns:
      (aligned uint8 [R, R, 3], matrix crop->photo (3, 3), crop size S,
       full-resolution crop uint8 [F, F, 3], its matrix crop->photo).
    """
    import tensorflow as tf

    from mlc_keras.data.pipeline import square_resize

    size = model.import_resolution
    crop, matrix = align.align_face(photo, face.left_eye, face.right_eye, size,
                                    eye_y=align.DEFAULT_EYE_Y, eye_dist=align.DEFAULT_EYE_DIST)
    aligned = square_resize(tf.constant(crop), model.resolution).numpy()
    full_size = native_crop_size(face, model.resolution)
    full, full_matrix = align.align_face(photo, face.left_eye, face.right_eye, full_size,
                                         eye_y=align.DEFAULT_EYE_Y, eye_dist=align.DEFAULT_EYE_DIST)
    return aligned, matrix, size, full, full_matrix


@dataclasses.dataclass(eq=False)
class FaceResult:
    """One synthesized face.

    face: the detected ``align.Face``.
    aligned: uint8 [R, R, 3], the model's input.
    matrix: float64 (3, 3), aligned-crop coords (at ``crop_size``) -> photo coords.
    crop_size: S, the side of the aligned crop ``matrix`` is made for.
    synthesized: float32 [E, R, R, 3] in [-1, 1], one per requested expression.
    outputs: {expression: uint8 [R, R, 3]}.
    full_crop: uint8 [F, F, 3], the same framing at the face's own resolution.
    full_matrix: float64 (3, 3), full-crop coords -> photo coords.
    composites: {expression: uint8 [F, F, 3]}, the full crop edited at its
      own resolution (``inference.composite``).
    changes: {expression: float32 [F, F]}, the model's share of each pixel.
    identity: {expression: dlib distance output <-> source} once measured
      (``synthesize.identity_check``).
    """

    face: object
    aligned: np.ndarray
    matrix: np.ndarray
    crop_size: int
    synthesized: np.ndarray
    outputs: dict
    full_crop: np.ndarray = None
    full_matrix: np.ndarray = None
    composites: dict = None
    changes: dict = None
    identity: dict = None


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def paste_back(original, face, matrix, feather=0.08, ellipse=(0.5, 0.56, 0.40, 0.48), crop_size=None,
               alpha=None):
    """Blends an (edited) aligned face back into its photo.

    Args:
      original: uint8 (H, W, 3), the photo the crop was aligned from.
      face: uint8 (S', S', 3), the new face in aligned coordinates (may have
        another resolution than the crop ``matrix`` was made for).
      matrix: (3, 3) or (2, 3), crop coords -> photo coords, from
        ``align_face``.
      feather: width of the soft edge as a fraction of the ellipse radius
        (0 = hard edge).
      ellipse: (cx, cy, rx, ry) of the blend mask as fractions of the crop
        size; the default covers forehead to chin for the default eye layout.
      crop_size: S the matrix was made for (default S').
      alpha: optional float (S', S') in [0, 1], in face coordinates: how much
        of each face pixel to use (the compositor's ``change`` map). Where it
        is 0 the photo keeps its own pixels, not a resampled copy of them.

    Returns:
      uint8 (H, W, 3): a new array; ``original`` is untouched.
    """
    photo = _as_rgb_array(original, "original")
    new_face = _as_rgb_array(face, "face")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3):
        raise ValueError(f"matrix must be (3, 3) or (2, 3), got {m.shape}")
    fs = new_face.shape[0]
    if new_face.shape[1] != fs:
        raise ValueError(f"face must be square, got {new_face.shape}")
    size = float(crop_size or fs)
    # Face-pixel coords -> crop coords -> photo coords.
    k = size / fs
    face_to_photo = m @ shift(0.5 * k - 0.5, 0.5 * k - 0.5) @ np.diag([k, k, 1.0])
    h, w = photo.shape[:2]
    corners = np.array([[-0.5, -0.5, 1], [fs - 0.5, -0.5, 1], [-0.5, fs - 0.5, 1],
                        [fs - 0.5, fs - 0.5, 1]], dtype=np.float64).T
    mapped = (face_to_photo @ corners)[:2]
    x0 = max(int(np.floor(mapped[0].min())), 0)
    x1 = min(int(np.ceil(mapped[0].max())) + 1, w)
    y0 = max(int(np.floor(mapped[1].min())), 0)
    y1 = min(int(np.ceil(mapped[1].max())) + 1, h)
    result = photo.copy()
    if x0 >= x1 or y0 >= y1:
        return result
    photo_to_face = np.linalg.inv(face_to_photo)
    region_to_face = photo_to_face @ shift(x0, y0)
    bw, bh = x1 - x0, y1 - y0
    warped = warp(new_face, region_to_face, bw, bh, border="edge").astype(np.float32)
    # Soft elliptical mask evaluated analytically in normalised face coords.
    ys, xs = np.mgrid[0:bh, 0:bw].astype(np.float64)
    fx = region_to_face[0, 0] * xs + region_to_face[0, 1] * ys + region_to_face[0, 2]
    fy = region_to_face[1, 0] * xs + region_to_face[1, 1] * ys + region_to_face[1, 2]
    u, v = (fx + 0.5) / fs, (fy + 0.5) / fs
    cx, cy, rx, ry = ellipse
    r = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
    if feather and feather > 0:
        mask = _smoothstep((1.0 - r) / float(feather))
    else:
        mask = (r <= 1.0).astype(np.float64)
    mask = mask.astype(np.float32)[:, :, None]
    if alpha is not None:
        alpha = np.asarray(alpha, np.float32).reshape(fs, fs)
        alpha8 = np.repeat(np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)[..., None], 3, -1)
        warped_alpha = warp(alpha8, region_to_face, bw, bh, border="edge")[..., :1]
        mask = mask * (warped_alpha.astype(np.float32) / 255.0)
    base = result[y0:y1, x0:x1].astype(np.float32)
    blended = base * (1.0 - mask) + warped * mask
    result[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return result
