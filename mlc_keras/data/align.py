"""Face detection and eye-based alignment: one code path for every photo
(photos are read by ``data/photos.py``; its names are re-exported here).

Training-data importers (``mlc_keras.data.sources.london``) and users' own photos go
through the same functions, so a model sees test faces framed exactly like
its training faces:

    load_image(path)                     -> uint8 RGB (H, W, 3), EXIF applied
    FaceAligner().detect(image)          -> [Face, ...], largest first
    align_face(image, left, right, size) -> (uint8 (size, size, 3), 3x3 matrix)

``align_photo(path, size)`` chains the first three and raises ``NoFaceError``
naming the file when the photo holds no face.

Coordinates: ``(x, y)`` pixel-index coordinates, origin at the top-left
pixel's centre (the convention of dlib's landmarks): pixel ``image[j, i]``
is centred at ``(i, j)``. "Left"/"right" eye always mean IMAGE-left /
IMAGE-right (for a photo of a person facing the camera, the image-left eye is
the subject's right eye).

Detection uses dlib (wheel ``dlib-bin``): its HOG frontal face detector and
the 68-point (or 5-point) landmark model file shipped inside the
``face_recognition_models`` package; nothing is downloaded at run time.
"""

import dataclasses
import importlib.util
import os
import threading

import numpy as np
from PIL import Image

from mlc_keras.data.warping import similarity_matrix, warp
from mlc_keras.data.photos import (DEFAULT_MAX_PIXELS, PIXEL_LIMIT_MESSAGE,  # noqa: F401 (re-exported)
                                   ImageError, _as_rgb_array, load_image, pixel_limit_message)
from mlc_keras.errors import MissingDependencyError

__all__ = [
    "DEFAULT_EYE_DIST",
    "DEFAULT_EYE_Y",
    "DEFAULT_MAX_PIXELS",
    "PIXEL_LIMIT_MESSAGE",
    "AlignedFace",
    "Face",
    "FaceAligner",
    "ImageError",
    "MissingDependencyError",
    "NoFaceError",
    "align_face",
    "align_photo",
    "canonical_eyes",
    "get_default_aligner",
    "load_image",
    "pixel_limit_message",
    "similarity_matrix",
]

DEFAULT_EYE_Y = 0.40
DEFAULT_EYE_DIST = 0.33
_PIP_HINT = "pip install dlib-bin face_recognition_models"


class NoFaceError(ImageError):
    """The face detector found no face in the image named by ``path``."""




# ----------------------------------------------------------------- detection


@dataclasses.dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    box: (x0, y0, x1, y1) ints, the detector's rectangle (may extend past
      the image border).
    left_eye, right_eye: (x, y) floats, IMAGE-left and IMAGE-right eye
      centres (mean of each eye's landmarks).
    landmarks: float32 array (N, 2) of (x, y), N = 68 or 5, in dlib's order.
    score: the detector's confidence (higher is more confident).
    """

    box: tuple
    left_eye: tuple
    right_eye: tuple
    landmarks: np.ndarray
    score: float = 0.0

    @property
    def area(self):
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)


@dataclasses.dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned crop and how it maps back to its photo.

    image: uint8 (S, S, 3) aligned crop.
    matrix: float64 (3, 3), crop pixel coords -> photo pixel coords.
    face: the ``Face`` it was aligned from (None when eyes were given).
    """

    image: np.ndarray
    matrix: np.ndarray
    face: object = None

    def landmarks_in_crop(self):
        """The face's landmarks (N, 2) in crop pixel coordinates, or None."""
        if self.face is None:
            return None
        points = np.asarray(self.face.landmarks, np.float64)
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        return (homogeneous @ np.linalg.inv(self.matrix).T)[:, :2]


_MODEL_FILES = {
    68: "shape_predictor_68_face_landmarks.dat",
    5: "shape_predictor_5_face_landmarks.dat",
}


def _import_dlib():
    try:
        import dlib  # noqa: WPS433 (optional heavy dependency, imported lazily)
    except ImportError as e:
        raise MissingDependencyError(
            f"face detection needs dlib, from the prebuilt wheel 'dlib-bin' "
            f"(not 'dlib', which compiles for a long time): {_PIP_HINT}  [{e}]"
        ) from e
    return dlib


def dlib_model_path(filename, env_var, purpose):
    """Path of a dlib model file shipped in ``face_recognition_models``,
    found without importing that package (its ``__init__`` needs
    ``pkg_resources``, absent from new setuptools); ``env_var`` overrides."""
    override = os.environ.get(env_var, "")
    if override:
        if not os.path.isfile(override):
            raise MissingDependencyError(f"{env_var}={override!r} is not a file")
        return override
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = os.path.join(folder, "models", filename)
        if os.path.isfile(candidate):
            return candidate
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise MissingDependencyError(
        f"{purpose} need the model file {filename} from the package "
        f"'face_recognition_models'{where}: {_PIP_HINT}")


def _predictor_path(points):
    """The 68- or 5-point landmark model (``MLC_DLIB_SHAPE_PREDICTOR`` overrides)."""
    if points not in _MODEL_FILES:
        raise ValueError(f"landmark_points must be 68 or 5, got {points!r}")
    return dlib_model_path(_MODEL_FILES[points], "MLC_DLIB_SHAPE_PREDICTOR", "face landmarks")


def _eye_centres(points, n):
    """(N, 2) landmarks -> (image-left eye, image-right eye) centres."""
    if n == 68:
        a, b = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    else:  # 5-point model: 0-1 one eye's corners, 2-3 the other's, 4 nose.
        a, b = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    if a[0] > b[0]:
        a, b = b, a
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


class FaceAligner:
    """Detects faces and eye centres with dlib; aligns them.

    dlib models load on first use, once per instance (the 68-point model
    takes ~1.5 s); share one instance (``get_default_aligner()``).

    Args:
      landmark_points: 68 (default) or 5, which shape predictor to use.
      detect_max_side: photos are downscaled so their longer side is at most
        this for the (slow) HOG detector; landmarks are then fitted on the
        full-resolution photo.
      upsample: dlib upsampling levels tried in turn until a face is found
        (0 = as is; 1 doubles the size, finding faces down to ~40 px).
    """

    def __init__(self, landmark_points=68, detect_max_side=1024, upsample=(0, 1)):
        if landmark_points not in _MODEL_FILES:
            raise ValueError(f"landmark_points must be 68 or 5, got {landmark_points!r}")
        self.landmark_points = landmark_points
        self.detect_max_side = int(detect_max_side)
        self.upsample = tuple(int(u) for u in upsample) or (0,)
        self._lock = threading.Lock()
        self._detector = None
        self._predictor = None
        self._dlib = None

    def _load(self):
        if self._predictor is None:
            dlib = _import_dlib()
            path = _predictor_path(self.landmark_points)
            detector = dlib.get_frontal_face_detector()
            predictor = dlib.shape_predictor(path)
            self._dlib, self._detector, self._predictor = dlib, detector, predictor

    def detect(self, image):
        """Finds faces.

        Args:
          image: uint8 array (H, W, 3) RGB (or (H, W) grey).

        Returns:
          list of ``Face``, largest box first; empty when none is found.
        """
        rgb = _as_rgb_array(image)
        with self._lock:
            self._load()
            h, w = rgb.shape[:2]
            scale = 1.0
            small = rgb
            if max(h, w) > self.detect_max_side:
                scale = self.detect_max_side / float(max(h, w))
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0))
                small = np.ascontiguousarray(small)
            rects, scores = [], []
            for level in self.upsample:
                rects, scores, _ = self._detector.run(small, level, 0.0)
                if len(rects):
                    break
            faces = []
            for rect, score in zip(rects, scores):
                box = (
                    int(round(rect.left() / scale)),
                    int(round(rect.top() / scale)),
                    int(round((rect.right() + 1) / scale)),
                    int(round((rect.bottom() + 1) / scale)),
                )
                full = self._dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
                shape = self._predictor(rgb, full)
                pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                left, right = _eye_centres(pts, self.landmark_points)
                faces.append(Face(box, left, right, pts, float(score)))
        faces.sort(key=lambda f: (f.area, f.score), reverse=True)
        return faces

    def landmarks_in_box(self, image, box):
        """The landmarks (N, 2) fitted inside ``box`` (x0, y0, x1, y1), without
        the detector (for crops already framed on a face)."""
        rgb = _as_rgb_array(image)
        with self._lock:
            self._load()
            shape = self._predictor(rgb, self._dlib.rectangle(*[int(v) for v in box]))
            return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect_largest(self, image, source="image"):
        """The largest face in ``image``; ``NoFaceError`` naming ``source``
        when there is none."""
        faces = self.detect(image)
        if not faces:
            h, w = np.shape(image)[:2]
            raise NoFaceError(
                f"no face found in {source!r} ({w}x{h}); use a front-facing photo in which "
                f"the face is at least ~80 pixels wide",
                source,
            )
        return faces[0]

    def align(self, image, output_size, source="image", eye_y=DEFAULT_EYE_Y,
              eye_dist=DEFAULT_EYE_DIST, border="edge"):
        """Detects the largest face and aligns it; returns ``AlignedFace``
        (image uint8 (S, S, 3), matrix crop->photo (3, 3), face)."""
        face = self.detect_largest(image, source)
        crop, matrix = align_face(image, face.left_eye, face.right_eye, output_size,
                                  eye_y=eye_y, eye_dist=eye_dist, border=border)
        return AlignedFace(crop, matrix, face)


_default_aligner = None
_default_lock = threading.Lock()


def get_default_aligner():
    """The process-wide shared ``FaceAligner`` (68-point landmarks)."""
    global _default_aligner
    with _default_lock:
        if _default_aligner is None:
            _default_aligner = FaceAligner()
        return _default_aligner


def align_photo(path, output_size, aligner=None, eye_y=DEFAULT_EYE_Y,
                eye_dist=DEFAULT_EYE_DIST, max_pixels=DEFAULT_MAX_PIXELS):
    """Loads a photo, finds its largest face and aligns it.

    The single path for importers and user photos alike.

    Returns:
      (AlignedFace, photo): the crop (uint8 (S, S, 3)), its crop->photo
      matrix, the ``Face``, and the loaded photo (uint8 (H, W, 3)) for
      ``paste_back``.

    Raises:
      ImageError: unreadable/corrupt/too-large file; NoFaceError: no face.
    """
    photo = load_image(path, max_pixels=max_pixels)
    aligner = aligner or get_default_aligner()
    return aligner.align(photo, output_size, source=os.fspath(path), eye_y=eye_y, eye_dist=eye_dist), photo


# ----------------------------------------------------------------- warping


def canonical_eyes(output_size, eye_y=DEFAULT_EYE_Y, eye_dist=DEFAULT_EYE_DIST):
    """Canonical (image-left, image-right) eye centres in an aligned crop of
    ``output_size`` pixels: x = (0.5 -/+ eye_dist/2) * size, y = eye_y * size
    (pixel-index coordinates)."""
    s = float(output_size)
    return (
        ((0.5 - eye_dist / 2.0) * s - 0.5, eye_y * s - 0.5),
        ((0.5 + eye_dist / 2.0) * s - 0.5, eye_y * s - 0.5),
    )


def align_face(image, left_eye, right_eye, output_size, eye_y=DEFAULT_EYE_Y,
               eye_dist=DEFAULT_EYE_DIST, border="edge"):
    """Rotates, scales and crops ``image`` so the eyes land on the canonical
    positions (see ``canonical_eyes``).

    Args:
      image: uint8 (H, W, 3) RGB photo.
      left_eye, right_eye: (x, y) IMAGE-left / IMAGE-right eye centres in
        ``image`` (pixel-index coordinates).
      output_size: side S of the square crop.
      eye_y: eye height as a fraction of S.
      eye_dist: distance between the eye centres as a fraction of S.
      border: "edge" (replicate) or "reflect" fills what lies outside the photo.

    Returns:
      (crop, matrix): crop uint8 (S, S, 3); matrix float64 (3, 3) mapping crop
      pixel coords to photo pixel coords (``paste_back`` inverts it).
    """
    rgb = _as_rgb_array(image)
    output_size = int(output_size)
    if output_size < 2:
        raise ValueError(f"output_size must be >= 2, got {output_size}")
    if not (0.0 < eye_dist < 1.0 and 0.0 < eye_y < 1.0):
        raise ValueError(f"eye_y and eye_dist must lie in (0, 1), got {eye_y}, {eye_dist}")
    if border not in ("edge", "reflect"):
        raise ValueError(f"border must be 'edge' or 'reflect', got {border!r}")
    dst_left, dst_right = canonical_eyes(output_size, eye_y, eye_dist)
    if np.hypot(right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]) < 2.0:
        raise ValueError(f"eyes too close together to align: {left_eye}, {right_eye}")
    matrix = similarity_matrix(left_eye, right_eye, dst_left, dst_right)
    crop = warp(rgb, matrix, output_size, output_size, border=border)
    return crop, matrix

