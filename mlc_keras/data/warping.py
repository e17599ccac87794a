"""Image warping for alignment and paste-back: similarity transforms and a
bicubic, antialiased affine warp of uint8 images. Pure numpy + PIL; may import
nothing from the package."""

import numpy as np
from PIL import Image


def similarity_matrix(src_left, src_right, dst_left, dst_right):
    """The similarity (rotation + uniform scale + translation) taking
    ``dst_*`` points to ``src_*`` points.

    Returns: float64 (3, 3) ``M`` with ``M @ [x_dst, y_dst, 1] = [x_src, y_src, 1]``.
    """
    s0 = complex(*map(float, src_left))
    s1 = complex(*map(float, src_right))
    d0 = complex(*map(float, dst_left))
    d1 = complex(*map(float, dst_right))
    if abs(d1 - d0) < 1e-9 or abs(s1 - s0) < 1e-9:
        raise ValueError(f"eye positions coincide: {src_left} / {src_right}")
    a = (s1 - s0) / (d1 - d0)
    t = s0 - a * d0
    return np.array(
        [[a.real, -a.imag, t.real], [a.imag, a.real, t.imag], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def index_map(indices, n, border):
    """Maps out-of-range pixel indices back into [0, n) (edge / reflect)."""
    if border == "edge" or n == 1:
        return np.clip(indices, 0, n - 1)
    period = 2 * (n - 1)
    m = np.mod(indices, period)
    return np.where(m > n - 1, period - m, m)


def shift(dx, dy):
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def warp(source, matrix, out_w, out_h, border="edge", fill=None):
    """Samples ``source`` (uint8 (H, W, C)) at ``matrix @ (x, y, 1)`` for every
    output pixel (x, y) (pixel-index coordinates): bicubic, antialiased by a
    Lanczos pre-shrink when minifying, borders replicated/reflected (or
    ``fill`` with border=None). Returns uint8 (out_h, out_w, C)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    if scale >= 2.0:
        # Strong minification: box-reduce the whole photo by an integer
        # factor first (antialiasing, and bounds the memory of the crop
        # region below); the remaining factor lies in [1, 2).
        factor = int(scale)
        source = np.asarray(Image.fromarray(source).reduce(factor))
        # Continuous coords shrink by `factor`; index = continuous - 0.5.
        matrix = shift(-0.5, -0.5) @ np.diag([1.0 / factor, 1.0 / factor, 1.0]) @ shift(0.5, 0.5) @ matrix
    h, w = source.shape[:2]
    corners = np.array([[-0.5, -0.5, 1], [out_w - 0.5, -0.5, 1], [-0.5, out_h - 0.5, 1],
                        [out_w - 0.5, out_h - 0.5, 1]], dtype=np.float64).T
    mapped = (matrix @ corners)[:2]
    margin = 3
    x0 = int(np.floor(mapped[0].min())) - margin
    x1 = int(np.ceil(mapped[0].max())) + margin + 1
    y0 = int(np.floor(mapped[1].min())) - margin
    y1 = int(np.ceil(mapped[1].max())) + margin + 1
    if border is None:
        x0, x1 = max(x0, 0), min(x1, w)
        y0, y1 = max(y0, 0), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return np.zeros((out_h, out_w, source.shape[2]), np.uint8)
        region = source[y0:y1, x0:x1]
    else:
        rows = index_map(np.arange(y0, y1), h, border)
        cols = index_map(np.arange(x0, x1), w, border)
        region = source[rows[:, None], cols[None, :]]
    rh, rw = region.shape[:2]
    # PIL's transform works in continuous coordinates (pixel i spans [i, i+1]).
    to_region = shift(0.5 - x0, 0.5 - y0) @ matrix @ shift(-0.5, -0.5)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))  # now < 2
    img = Image.fromarray(np.ascontiguousarray(region))
    if scale > 1.5:  # minifying: shrink with a proper low-pass filter first.
        nw, nh = max(1, round(rw / scale)), max(1, round(rh / scale))
        img = img.resize((nw, nh), Image.LANCZOS)
        to_region = np.diag([nw / rw, nh / rh, 1.0]) @ to_region
    coeffs = tuple(to_region[:2].reshape(-1))
    fillcolor = tuple(fill) if fill is not None else None
    out = img.transform((out_w, out_h), Image.AFFINE, coeffs, resample=Image.BICUBIC, fillcolor=fillcolor)
    return np.asarray(out, dtype=np.uint8)
