"""Registration of a paired target to its source: a thin-plate-spline warp on
dlib's 68 landmarks outside the mouth, so that only the expression differs.

Why: in a real pair (neutral and smiling shot of one person) the head moves
and changes scale between shots; after eye alignment the target's nose, chin
and jaw still sit a few pixels from the source's. A pixel loss against such a
target teaches an average of two faces (doubled lip lines). Warping the
target so that its non-mouth landmarks land on the source's removes the head
motion and keeps the mouth's own motion (the mouth points are free).

Pure numpy + scipy; knows nothing of models or training.
"""

import numpy as np

# dlib's 68-point layout: 0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth.
MOUTH = tuple(range(48, 68))
OUTSIDE_MOUTH = tuple(range(0, 48))
# The points a smile moves least (brows, nose bridge and tip, eyes, upper jaw):
# used to measure how well two shots are registered.
STABLE = tuple(range(0, 4)) + tuple(range(13, 17)) + tuple(range(17, 48))
# The points fixed to the skull: upper jaw, nose bridge, the eyes' corners.
# Pinning only these removes the head's motion and keeps all of the
# expression's: the chin's drop, the eyelids' squint, the brows.
RIGID = tuple(range(0, 4)) + tuple(range(13, 17)) + (27, 28, 29, 30, 36, 39, 42, 45)
ANCHOR_SETS = {"outside_mouth": OUTSIDE_MOUTH, "rigid": RIGID}
# dlib's inner lips, paired across the mouth: 61 over 67, 62 over 66, 63 over 65.
UPPER_INNER_LIP = (61, 62, 63)
LOWER_INNER_LIP = (67, 66, 65)
# landmark_flow(fold=True) folds where the inner-lip gap shrinks by more than
# this share of the mouth's width (0.05 is about 2 px of a 256 px crop).
FOLD_MIN_GAP = 0.05
# ... and samples each lip this share of the mouth's width inside the lip's
# inner edge (dlib puts 61-63 and 65-67 on the edge, where a bilinear sample is
# half tooth).
FOLD_MARGIN = 0.04


def _thin_plate(moved_from, moved_to, smoothing=0.0):
    """The thin-plate spline that maps each point of ``moved_from`` onto the
    same row of ``moved_to`` ((N, 2) each): a callable on (M, 2) points."""
    from scipy.interpolate import RBFInterpolator

    return RBFInterpolator(np.asarray(moved_from, np.float64), np.asarray(moved_to, np.float64),
                           kernel="thin_plate_spline", smoothing=smoothing)


def tps_warp(image, moved_from, moved_to, smoothing=0.0):
    """Warps ``image`` so that the content at ``moved_from`` lands on ``moved_to``.

    Args:
      image: uint8 or float array (H, W, C).
      moved_from, moved_to: (N, 2) (x, y) pixel coordinates, N >= 3.
      smoothing: thin-plate-spline smoothing (0 interpolates exactly).

    Returns:
      the warped image, same shape and dtype; pixels that would come from
      outside the image repeat the border.
    """
    from scipy.ndimage import map_coordinates

    image = np.asarray(image)
    h, w = image.shape[:2]
    # Backward map: for each output pixel, where to sample the input.
    spline = _thin_plate(moved_to, moved_from, smoothing)
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    sample = spline(grid)
    coords = [sample[:, 1].reshape(h, w), sample[:, 0].reshape(h, w)]
    channels = [map_coordinates(image[..., c].astype(np.float64), coords, order=1, mode="nearest")
                for c in range(image.shape[2])]
    out = np.stack(channels, axis=-1)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def register_target(target, target_points, source_points, anchors=OUTSIDE_MOUTH):
    """The target warped onto the source's geometry outside the mouth.

    Args:
      target: (S, S, 3) aligned crop of the target expression.
      target_points, source_points: (68, 2) landmarks in crop coordinates.
      anchors: landmark indices pinned to the source's positions.

    Returns:
      (registered target, its landmarks after the warp (68, 2)).
    """
    target_points = np.asarray(target_points, np.float64)
    source_points = np.asarray(source_points, np.float64)
    anchors = list(anchors)
    # Keep the crop's corners and edge midpoints fixed, so the spline does not
    # swing the background.
    frame = _frame(target.shape[0])
    moved_from = np.concatenate([target_points[anchors], frame])
    moved_to = np.concatenate([source_points[anchors], frame])
    registered = tps_warp(target, moved_from, moved_to)
    return registered, _thin_plate(moved_from, moved_to)(target_points)


def similarity_fit(moved_from, moved_to):
    """The least-squares similarity (scale, rotation, shift) taking the points
    ``moved_from`` onto ``moved_to`` ((N, 2) each, N >= 2): a float64 (3, 3)
    matrix acting on (x, y, 1) columns."""
    a = np.asarray(moved_from, np.float64)
    b = np.asarray(moved_to, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2 or len(a) < 2:
        raise ValueError(f"points must be two (N, 2) arrays of one shape with N >= 2, got "
                         f"{a.shape} and {b.shape}")
    # u = p x - q y + tx, v = q x + p y + ty: linear in (p, q, tx, ty)
    rows = np.zeros((2 * len(a), 4))
    rows[0::2] = np.stack([a[:, 0], -a[:, 1], np.ones(len(a)), np.zeros(len(a))], 1)
    rows[1::2] = np.stack([a[:, 1], a[:, 0], np.zeros(len(a)), np.ones(len(a))], 1)
    p, q, tx, ty = np.linalg.lstsq(rows, b.reshape(-1), rcond=None)[0]
    return np.array([[p, -q, tx], [q, p, ty], [0.0, 0.0, 1.0]])


def transform_points(matrix, points):
    """(N, 2) points through a (3, 3) matrix on (x, y, 1) columns."""
    points = np.asarray(points, np.float64)
    return (np.concatenate([points, np.ones((len(points), 1))], 1) @ np.asarray(matrix).T)[:, :2]


def local_warp(image, moved_from, moved_to, weight, smoothing=0.1):
    """``tps_warp`` with its motion faded by ``weight``: where the weight is 0
    the output is the image's own pixels, bit for bit, and elsewhere the
    thin-plate motion is scaled by the weight and sampled by cubic splines
    (sharper than bilinear sampling, which blurs every sub-pixel shift).

    Args:
      image: uint8 or float (H, W, C).
      moved_from, moved_to: (N, 2) (x, y); 24 points round the image border
        are held still as well.
      weight: (H, W) in [0, 1], the share of the motion each pixel takes.
      smoothing: thin-plate-spline smoothing (not 0: dlib's inner and outer
        lip corners can coincide, see ``landmark_flow``).

    Returns:
      the warped image, same shape and dtype.
    """
    from scipy.ndimage import map_coordinates

    image = np.asarray(image)
    h, w = image.shape[:2]
    weight = np.asarray(weight, np.float64)
    if weight.shape != (h, w):
        raise ValueError(f"weight has shape {weight.shape}, expected the image's {(h, w)}")
    # the square frame stretched to W x H
    border = _frame(2, per_side=6) * np.array([(w - 1) / 1.0, (h - 1) / 1.0])
    spline = _thin_plate(np.concatenate([moved_to, border]),
                         np.concatenate([moved_from, border]), smoothing)
    ys, xs = np.mgrid[0:h, 0:w]
    moving = weight > 0
    out = image.astype(np.float64)
    if moving.any():
        at = np.stack([xs[moving], ys[moving]], 1).astype(np.float64)
        shift = (spline(at) - at) * weight[moving][:, None]
        coords = [at[:, 1] + shift[:, 1], at[:, 0] + shift[:, 0]]
        for c in range(image.shape[2]):
            out[..., c][moving] = map_coordinates(image[..., c].astype(np.float64), coords,
                                                  order=3, mode="nearest")
    if image.dtype == np.uint8:
        return np.where(moving[..., None], np.clip(np.rint(out), 0, 255), image).astype(np.uint8)
    return np.where(moving[..., None], out, image).astype(image.dtype)


def landmark_distance(a, b, indices=STABLE):
    """Mean Euclidean distance (pixels) between two (68, 2) landmark sets."""
    a, b = np.asarray(a, np.float64)[list(indices)], np.asarray(b, np.float64)[list(indices)]
    return float(np.mean(np.linalg.norm(a - b, axis=1)))


def _frame(size, per_side=2):
    """Points (x, y) spaced evenly round the border of a crop of ``size`` px:
    ``per_side`` intervals per side (2: the corners and edge midpoints)."""
    s = size - 1
    steps = np.linspace(0.0, s, per_side + 1)
    edges = [np.stack([steps, np.zeros_like(steps)], 1),
             np.stack([steps, np.full_like(steps, s)], 1),
             np.stack([np.zeros_like(steps), steps], 1)[1:-1],
             np.stack([np.full_like(steps, s), steps], 1)[1:-1]]
    return np.concatenate(edges)


def landmark_flow(source_points, target_points, crop_size, resolution, smoothing=0.1,
                  fold=False):
    """The dense motion that moves a source crop onto its target's landmarks.

    A backward flow, the convention of ``models.layers.warp_images``: the
    output pixel p (in the target's geometry) takes the source at p + flow(p).
    At each target landmark T_i the flow is S_i - T_i (S_i: the same
    landmark on the source); a thin-plate spline spreads it between the
    landmarks, with 32 points round the crop's border held still. For a
    registered pair (``register_target``) the pinned anchors coincide, so
    the flow is the expression's own motion.

    Args:
      source_points, target_points: (68, 2) (x, y) in pixels of a
        ``crop_size`` crop.
      crop_size: the side of the crop the landmarks were measured on.
      resolution: the side of the flow field returned.
      smoothing: thin-plate-spline smoothing. Not 0: dlib puts the inner
        lip corners (60, 64) on or next to the outer ones (48, 54), and an
        exact spline through two coincident points that move differently is
        singular (flows of 1e20 px).
      fold: where the mouth closes (the source's inner lips are further
        apart than the target's by more than ``FOLD_MIN_GAP`` of the mouth's
        width), split the field along the target's inner-lip line: above it
        the spline that leaves out the lower inner lip (61-63 follow the
        source's upper lip), below it the one that leaves out the upper inner
        lip. One spline through both lips puts the closed lip line of the
        target in the middle of the source's open mouth, so the warp squeezes
        the teeth into a line instead of covering them; the fold samples the
        two lips and skips what lies between them. Elsewhere, and where the
        mouth does not close, the field is the plain one.

    Returns:
      float32 (resolution, resolution, 2): (dy, dx) as fractions of the size
      (so the field means the same motion at any resolution).
    """
    source_points = np.asarray(source_points, np.float64)
    target_points = np.asarray(target_points, np.float64)
    if source_points.shape != target_points.shape or source_points.ndim != 2 \
            or source_points.shape[1] != 2:
        raise ValueError(f"landmarks must be two (N, 2) arrays of one shape, got "
                         f"{source_points.shape} and {target_points.shape}")
    frame = _frame(crop_size, per_side=8)
    # The backward map of tps_warp (target geometry -> where on the source),
    # minus the identity.
    def backward(keep):
        keep = list(keep)
        return _thin_plate(np.concatenate([target_points[keep], frame]),
                           np.concatenate([source_points[keep], frame]), smoothing)

    # Pixel centres of the output grid, in the crop's pixel coordinates.
    scale = crop_size / resolution
    coords = (np.arange(resolution, dtype=np.float64) + 0.5) * scale - 0.5
    xs, ys = np.meshgrid(coords, coords)
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    if fold and mouth_closes(source_points, target_points):
        everything = range(len(target_points))
        # the source's inner lips pushed into the lips, off the teeth's edge
        margin = FOLD_MARGIN * np.linalg.norm(source_points[54] - source_points[48])
        source_points = source_points.copy()
        source_points[list(UPPER_INNER_LIP), 1] -= margin
        source_points[list(LOWER_INNER_LIP), 1] += margin
        upper = backward(i for i in everything if i not in LOWER_INNER_LIP)(grid)
        lower = backward(i for i in everything if i not in UPPER_INNER_LIP)(grid)
        below = grid[:, 1] > _inner_lip_line(target_points, grid[:, 0])
        sample = np.where(below[:, None], lower, upper)
    else:
        sample = backward(range(len(target_points)))(grid)
    dxdy = (sample - grid).reshape(resolution, resolution, 2)
    return (dxdy[..., ::-1] / crop_size).astype(np.float32)


def inner_lip_gap(points):
    """The mean distance of the inner upper lip (61-63) to the inner lower lip
    (67-65) over the mouth's width (48 to 54), of landmarks [..., 68, 2]:
    float [...]. Closed lips read about 0-0.04, a smile with teeth 0.06-0.3."""
    points = np.asarray(points, np.float64)
    gap = np.linalg.norm(points[..., list(UPPER_INNER_LIP), :] - points[..., list(LOWER_INNER_LIP), :],
                         axis=-1).mean(-1)
    return gap / np.maximum(np.linalg.norm(points[..., 54, :] - points[..., 48, :], axis=-1), 1e-6)


def mouth_closes(source_points, target_points):
    """True when the inner-lip gap (``inner_lip_gap``) shrinks from source to
    target by more than ``FOLD_MIN_GAP``: where ``landmark_flow`` folds."""
    return inner_lip_gap(source_points) - inner_lip_gap(target_points) > FOLD_MIN_GAP


def _inner_lip_line(points, xs):
    """y of the target's inner-lip line (the corners 60 and 64 and the
    midpoints of 61/67, 62/66, 63/65) at each x, held level past the corners."""
    points = np.asarray(points, np.float64)
    middle = (points[list(UPPER_INNER_LIP)] + points[list(LOWER_INNER_LIP)]) / 2.0
    line = np.concatenate([points[[60]], middle, points[[64]]])
    line = line[np.argsort(line[:, 0])]
    return np.interp(xs, line[:, 0], line[:, 1])
