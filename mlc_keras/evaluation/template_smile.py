"""A non-learned reference smile for the full-photo evaluation (imports data/).

Why it exists (issue 10): every generator that draws the mouth through its
colour head leaves a soft, smudged mouth at 100 % zoom, and every warp head
so far kept the photograph but did not smile. This reference asks what a
photograph-preserving edit can reach with no learning at all, so a trained
generator has a floor to beat on the same photos and the same metrics:

  motion   the mean motion of dlib's 68 landmarks from neutral to smiling,
           over training pairs, in a frame where the eye centres sit at
           (0, 0) and (1, 0) (each smile first brought onto its neutral shot
           by a similarity on the rigid points, ``register.RIGID``). By
           default only smiles with the lips closed are averaged
           (``pipeline.mouth_openness`` below ``CLOSED_OPENNESS``): a warp
           can stretch lips but cannot draw teeth, so an open smile's motion
           turns the lips into a stretched band.
  shading  optional: the mean low-pass log-ratio between each real smile
           and its neutral photo moved along its own smile's motion
           (Gaussian of ``sigma`` x the eye distance), in the mean smile's
           shape; applied as a smooth multiplicative gain over the lower face.
  edit     a photo's own pixels moved by a thin-plate spline from its
           landmarks to landmarks + scale x motion (``register.local_warp``:
           exactly the photo's pixels outside the lower face, cubic sampling
           inside), times the gain.

A template fitted on London photos holds a picture-like field made from them
(the shading): keep saved templates out of the repository, as their images.
"""

import dataclasses

import numpy as np

from mlc_keras.data import register

__all__ = ["CLOSED_OPENNESS", "SmileTemplate", "canonical_matrix", "fit_template",
           "london_pairs", "photo_editor"]

CLOSED_OPENNESS = 0.05  # pipeline.mouth_openness below this: lips closed
# thin-plate smoothing: dlib puts closed lips' inner points on one another
# (61-63 on 67-65), and an exact spline through coincident points is singular
SMOOTHING = 0.1
GAIN_LIMIT = 0.5  # the log-gain is clipped to +-0.5 (a factor of 0.61-1.65)
_EYES = (slice(36, 42), slice(42, 48))


def eye_distance(points):
    points = np.asarray(points, np.float64)
    return float(np.linalg.norm(points[_EYES[0]].mean(0) - points[_EYES[1]].mean(0)))


def canonical_matrix(points):
    """The similarity taking a face's eye centres (means of dlib's points
    36-41 and 42-47) to (0, 0) and (1, 0)."""
    points = np.asarray(points, np.float64)
    eyes = np.stack([points[_EYES[0]].mean(0), points[_EYES[1]].mean(0)])
    return register.similarity_fit(eyes, np.array([[0.0, 0.0], [1.0, 0.0]]))


def lower_face_weight(points, shape, grow=1.1, feather=0.05):
    """(H, W) in [0, 1]: the hull of the jaw and brows of ``points`` grown by
    ``grow`` about its centre, feathered by a Gaussian of ``feather`` x the
    eye distance; exactly 0 where it falls below 0.02."""
    from PIL import Image, ImageDraw
    from scipy.ndimage import gaussian_filter

    points = np.asarray(points, np.float64)
    hull = np.concatenate([points[0:17], points[26:16:-1]])
    centre = hull.mean(0)
    hull = centre + (hull - centre) * grow
    mask = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in hull], fill=255)
    weight = gaussian_filter(np.asarray(mask, np.float64) / 255.0,
                             feather * eye_distance(points))
    return np.where(weight < 0.02, 0.0, weight)


def _log_gain(target, moved, sigma):
    from scipy.ndimage import gaussian_filter

    eps = 8.0  # in 8-bit levels: dark pixels do not blow the ratio up
    blur = lambda x: gaussian_filter(np.asarray(x, np.float64), (sigma, sigma, 0))  # noqa: E731
    return np.log(blur(target) + eps) - np.log(blur(moved) + eps)


def _affine_resample(image, matrix, shape):
    """``image`` (H, W, C) carried by ``matrix`` (image coords -> output
    coords) onto an output of ``shape``; bilinear, border repeated."""
    from scipy.ndimage import map_coordinates

    h, w = shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    at = register.transform_points(np.linalg.inv(matrix), np.stack([xs.ravel(), ys.ravel()], 1))
    coords = [at[:, 1].reshape(h, w), at[:, 0].reshape(h, w)]
    return np.stack([map_coordinates(np.asarray(image[..., c], np.float64), coords, order=1,
                                     mode="nearest") for c in range(image.shape[2])], -1)


@dataclasses.dataclass
class SmileTemplate:
    """mean_shape, motion: (68, 2) in the canonical eye frame; gain: None or
    (size, size, 3) mean log-gain laid on the mean smile shape in the frame
    ``_frame_matrix(size)``; sigma: its low-pass in eye distances; subjects:
    the pairs it was fitted on."""

    mean_shape: np.ndarray
    motion: np.ndarray
    gain: np.ndarray = None
    size: int = 256
    sigma: float = 0.0
    subjects: tuple = ()
    closed_only: bool = True

    def smile_points(self, points, scale=1.0):
        """``points`` (68, 2, photo pixels) moved by ``scale`` x the mean motion."""
        to_canon = canonical_matrix(points)
        moved = register.transform_points(to_canon, points) + float(scale) * self.motion
        return register.transform_points(np.linalg.inv(to_canon), moved)

    def edit(self, photo, points, scale=1.0, gain_scale=1.0):
        """``photo`` (H, W, 3) uint8 with the template's smile: its own pixels
        moved (``register.local_warp``), times the gain (when fitted). Scale 0
        returns the photo unchanged."""
        photo = np.asarray(photo)
        points = np.asarray(points, np.float64)
        if float(scale) == 0.0:
            return photo.copy()
        target = self.smile_points(points, scale)
        weight = lower_face_weight(points, photo.shape)
        out = register.local_warp(photo.astype(np.float64), points, target, weight)
        if self.gain is not None and gain_scale:
            to_frame = _frame_matrix(self.size) @ canonical_matrix(points)
            # the gain from the mean smile's shape onto this face's smile, in
            # the frame, then into the photo
            frame_target = register.transform_points(to_frame, target)
            shaped = register.tps_warp(self.gain, _frame_points(self.mean_shape + self.motion,
                                                                self.size), frame_target,
                                       smoothing=SMOOTHING)
            gain = _affine_resample(shaped, np.linalg.inv(to_frame), photo.shape)
            lower = lower_face_weight(target, photo.shape)[..., None]
            out = out * np.exp(float(gain_scale) * np.clip(gain, -GAIN_LIMIT, GAIN_LIMIT) * lower)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _frame_matrix(size):
    """Canonical eye frame -> template pixels: eyes at 0.35 and 0.65 of the width, 0.4 down."""
    return np.array([[0.3 * size, 0.0, 0.35 * size], [0.0, 0.3 * size, 0.4 * size],
                     [0.0, 0.0, 1.0]])


def _frame_points(canonical, size):
    return register.transform_points(_frame_matrix(size), canonical)


def fit_template(pairs, closed_only=True, sigma=0.0, size=256):
    """Fits a ``SmileTemplate``.

    Args:
      pairs: iterable of (subject, neutral photo, neutral points, smile photo,
        smile points), the smile already in the neutral photo's frame
        (``london_pairs``); the photos are only read when ``sigma`` > 0.
      closed_only: average only the smiles with the lips closed.
      sigma: the shading's low-pass in eye distances; 0: no shading.
      size: the side of the template's shading frame.

    Raises:
      ValueError when no pair is left to average.
    """
    from mlc_keras.data.pipeline import mouth_openness

    pairs = [p for p in pairs
             if not closed_only or mouth_openness(np.asarray(p[4])[None])[0] < CLOSED_OPENNESS]
    if not pairs:
        raise ValueError("no smile to average" + (" with the lips closed" if closed_only else ""))
    to_canon = [canonical_matrix(p[2]) for p in pairs]  # each pair's eye frame, once
    neutral = np.stack([register.transform_points(m, p[2]) for m, p in zip(to_canon, pairs)])
    smile = np.stack([register.transform_points(m, p[4]) for m, p in zip(to_canon, pairs)])
    template = SmileTemplate(neutral.mean(0), (smile - neutral).mean(0), None, int(size),
                             float(sigma), tuple(p[0] for p in pairs), bool(closed_only))
    if sigma > 0:
        mean_smile = _frame_points(template.mean_shape + template.motion, size)
        gains = []
        for (_, n_photo, n_points, s_photo, s_points), canon in zip(pairs, to_canon):
            n_points, s_points = np.asarray(n_points, np.float64), np.asarray(s_points, np.float64)
            weight = lower_face_weight(n_points, n_photo.shape)
            moved = register.local_warp(np.asarray(n_photo, np.float64), n_points, s_points, weight)
            gain = _log_gain(s_photo, moved, sigma * eye_distance(n_points))
            to_frame = _frame_matrix(size) @ canon
            in_frame = _affine_resample(gain, to_frame, (size, size))
            gains.append(register.tps_warp(in_frame, register.transform_points(to_frame, s_points),
                                           mean_smile, smoothing=SMOOTHING))
        template.gain = np.mean(gains, 0).astype(np.float32)
    return template


def london_pairs(photos_dir, subjects, aligner):
    """Yields (subject, neutral photo, its 68 points, smiling photo moved onto
    the neutral photo's frame, its points there) for each subject of a
    London-layout folder whose two photos have a detected face; the smile is
    carried by the similarity that best lays its rigid points
    (``register.RIGID``) onto the neutral's."""
    from mlc_keras.data import align
    from mlc_keras.data.sources import london

    neutral, smiling = london.scan_london(photos_dir)
    rigid = list(register.RIGID)
    for subject in subjects:
        if subject not in neutral or subject not in smiling:
            continue
        try:
            n_photo = align.load_image(neutral[subject])
            s_photo = align.load_image(smiling[subject])
            n_points = np.asarray(aligner.detect_largest(n_photo, neutral[subject]).landmarks,
                                  np.float64)
            s_points = np.asarray(aligner.detect_largest(s_photo, smiling[subject]).landmarks,
                                  np.float64)
        except align.ImageError:
            continue
        if len(n_points) < 68 or len(s_points) < 68:
            continue
        onto = register.similarity_fit(s_points[rigid], n_points[rigid])
        yield (subject, n_photo, n_points, _affine_resample(s_photo, onto, n_photo.shape),
               register.transform_points(onto, s_points))


def photo_editor(template, aligner, scale=1.0, gain_scale=1.0):
    """A callable for ``evaluation.photos.evaluate_photos(editor=...)``:
    photo path -> (photo, detected face, the photo with the template's smile)."""
    from mlc_keras.data import align

    def edit(path):
        photo = align.load_image(path)
        face = aligner.detect_largest(photo, path)
        return photo, face, template.edit(photo, face.landmarks, scale, gain_scale)

    return edit
