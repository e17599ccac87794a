"""Who is in a face crop: dlib's 128-D face descriptors and distances between them.

Used by the evaluation (identity metrics) and by synthesis (the identity
guard). Models come from the pip package ``face_recognition_models``; nothing
is downloaded. May import data/align and images only.
"""

import threading

import numpy as np

FACE_FEATURES_NAME = "dlib_face_recognition_resnet_model_v1 (face_recognition_models)"
# dlib's authors' "same person" threshold on the Euclidean descriptor distance.
SAME_PERSON_THRESHOLD = 0.6
_RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def _recognition_model_path():
    """Path of dlib_face_recognition_resnet_model_v1.dat inside the
    ``face_recognition_models`` package; ``MLC_DLIB_FACE_RECOGNITION_MODEL`` overrides."""
    from mlc_keras.data import align

    return align.dlib_model_path(_RECOGNITION_MODEL_FILE, "MLC_DLIB_FACE_RECOGNITION_MODEL",
                                 "face features")


class FaceEmbedder:
    """128-D face descriptors from dlib's face recognition ResNet.

    Model: ``FACE_FEATURES_NAME`` (dlib_face_recognition_resnet_model_v1.dat
    and a shape predictor, both shipped in the pip package
    ``face_recognition_models``; dlib itself from the wheel ``dlib-bin``).
    Nothing is downloaded. Descriptors are NOT normalised (norms ~1.4-1.6 on
    London faces); compare them by Euclidean distance, for which dlib's
    authors use < 0.6 as "same person".

    Per image: the crop is upscaled (bicubic) so its shorter side is at least
    ``min_side`` (default 150, dlib's chip size) - generated 64 px faces are
    too small otherwise; then dlib's HOG frontal face detector looks for a
    face (with ``detect=True``). If it finds none - likely on small or
    imperfect generated faces - the WHOLE crop is used as the face box.
    The shape predictor then fits landmarks inside that box, dlib extracts
    its standard 150x150 aligned chip and the ResNet maps it to 128-D.
    For comparable numbers across real and generated faces, feed aligned
    crops with the same framing (e.g. ``align_photo`` output) and consider
    ``detect=False`` so every image takes the same whole-crop path.

    Args:
      landmark_points: 5 (default; the model dlib's chips were designed for)
        or 68.
      detect: try the HOG detector first (True) or always use the whole crop.
      min_side: crops are upscaled to at least this many pixels.
      num_jitters: dlib's test-time jittering (0 = none, deterministic).

    Loading is lazy (first ``embed``) and thread-safe. Missing dlib or model
    files raise ``mlc_keras.errors.MissingDependencyError`` naming
    ``pip install dlib-bin face_recognition_models``.
    """

    name = FACE_FEATURES_NAME
    dim = 128

    def __init__(self, landmark_points=5, detect=True, min_side=150, num_jitters=0):
        if landmark_points not in (5, 68):
            raise ValueError(f"landmark_points must be 5 or 68, got {landmark_points!r}")
        self.landmark_points = landmark_points
        self.detect = bool(detect)
        self.min_side = int(min_side)
        self.num_jitters = int(num_jitters)
        self._lock = threading.Lock()
        self._dlib = None
        self._detector = None
        self._predictor = None
        self._model = None
        self.last_detected = None  # bool [N] of the last embed: detector found the face

    def _load(self):
        if self._model is None:
            from mlc_keras.data import align

            dlib = align._import_dlib()
            predictor = dlib.shape_predictor(align._predictor_path(self.landmark_points))
            model = dlib.face_recognition_model_v1(_recognition_model_path())
            self._detector = dlib.get_frontal_face_detector()
            self._dlib, self._predictor, self._model = dlib, predictor, model

    def _prepare(self, image):
        from PIL import Image

        h, w = image.shape[:2]
        if min(h, w) < self.min_side:
            s = self.min_side / float(min(h, w))
            size = (max(self.min_side, int(round(w * s))), max(self.min_side, int(round(h * s))))
            image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        return np.ascontiguousarray(image)

    def _embed_one(self, image):
        img = self._prepare(image)
        h, w = img.shape[:2]
        rect, found = None, False
        if self.detect:
            rects = self._detector(img, 0)
            if len(rects):
                rect = max(rects, key=lambda r: r.width() * r.height())
                found = True
        if rect is None:
            rect = self._dlib.rectangle(0, 0, w - 1, h - 1)
        shape = self._predictor(img, rect)
        desc = self._model.compute_face_descriptor(img, shape, self.num_jitters)
        return np.asarray(desc, dtype=np.float32), found

    def embed(self, images_uint8):
        """Face descriptors.

        Args:
          images_uint8: uint8 [N, H, W, 3] RGB (or one [H, W, 3] image);
            convert generator output with ``to_uint8`` first.

        Returns:
          float32 [N, 128]. ``self.last_detected`` (bool [N]) records which
          images the HOG detector found a face in (the others used the whole
          crop as the face box).
        """
        x = np.asarray(images_uint8)
        if x.dtype != np.uint8:
            raise TypeError(f"embed expects uint8 images in [0, 255], got {x.dtype} "
                            f"(use metrics.to_uint8 for [-1, 1] floats)")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"embed expects [N, H, W, 3], got {x.shape}")
        out = np.zeros((x.shape[0], self.dim), np.float32)
        found = np.zeros((x.shape[0],), bool)
        with self._lock:
            self._load()
            for i in range(x.shape[0]):
                out[i], found[i] = self._embed_one(np.ascontiguousarray(x[i]))
            self.last_detected = found
        return out


def identity_distances(embed_generated, embed_source):
    """Euclidean distance between paired embeddings.

    Args:
      embed_generated, embed_source: float [N, D] (row i of each belongs to
        the same example).

    Returns:
      float64 [N]; smaller = identity better preserved (dlib descriptors:
      < 0.6 is dlib's "same person" threshold).
    """
    g = np.asarray(embed_generated, dtype=np.float64)
    s = np.asarray(embed_source, dtype=np.float64)
    if g.shape != s.shape or g.ndim != 2:
        raise ValueError(f"expected two [N, D] arrays of equal shape, got {g.shape}, {s.shape}")
    return np.linalg.norm(g - s, axis=1)
