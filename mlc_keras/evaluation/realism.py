"""Honest realism metrics of generated faces: can they be told from real photos?

Imports images, errors and evaluation/classifier only (nothing from training/
or inference/). Every function is pure: arrays in, numbers / dicts out.

1. ``two_sample_test``: a classifier two-sample test. A FRESH binary
   classifier learns "real target photo vs generated face" on half of the
   subjects and is scored on the other half (a subject's real and generated
   images always lie on the same side). Test accuracy 0.5 = the classifier
   cannot tell them apart; 1.0 = trivially distinguishable. Reported with a
   95 % Wilson interval (``wilson_interval``).
2. ``sharpness`` / ``sharpness_ratio``: variance of the Laplacian of the
   luminance (optionally inside a face box), at each image's own resolution;
   a ratio generated / source below 1 means the generator blurs.
3. ``verification_rate`` / ``identity_summary``: the share of dlib descriptor
   distances under dlib's same-person threshold (0.6), for generated<->source
   pairs and, as the reference, for real same-person pairs.
4. ``expression_rate_ratio`` / ``suspect_note``: how often the expression
   judge sees the target expression in generated faces relative to real
   target photos; a generated error BELOW the real error is flagged as
   suspect (the judge is probably fooled), never reported as a win.
5. ``disjoint_subjects``: the expression judge must be trained on subjects
   disjoint from the generator's training subjects; raises when they overlap.

Images are NHWC, uint8 in [0, 255] or float in [-1, 1] (``images.to_float``).
"""

import math

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.evaluation.classifier import predict_labels, train_classifier
from mlc_keras.images import clip_crop, to_float, to_uint8

__all__ = [
    "DLIB_SAME_PERSON_THRESHOLD",
    "LAPLACIAN_KERNEL",
    "MAX_TEST_RESOLUTION",
    "SUSPECT_NOTE",
    "RealismError",
    "SubjectOverlapError",
    "disjoint_subjects",
    "expression_rate_ratio",
    "paired_ratio_ci",
    "identity_summary",
    "sharpness",
    "sharpness_ratio",
    "subject_split",
    "suspect_note",
    "two_sample_test",
    "verification_rate",
    "wilson_interval",
]

DLIB_SAME_PERSON_THRESHOLD = 0.6
MAX_TEST_RESOLUTION = 64
LAPLACIAN_KERNEL = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
SUSPECT_NOTE = "suspect: the classifier may be fooled (generated error below real error)"
# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


class RealismError(UserError, ValueError):
    """Unusable input to a realism metric (shapes, counts, too few subjects)."""


class SubjectOverlapError(RealismError):
    """The expression judge's subjects overlap the generator's training subjects."""


# ------------------------------------------------------------ two-sample test


def wilson_interval(successes, n, z=1.96):
    """Wilson score interval of a binomial proportion.

    Args:
      successes: number of successes (0 <= successes <= n).
      n: number of trials (> 0).
      z: normal quantile (1.96: 95 %).

    Returns:
      (low, high) floats in [0, 1].
    """
    successes, n, z = float(successes), float(n), float(z)
    if n <= 0 or successes < 0 or successes > n:
        raise RealismError(f"need 0 <= successes <= n and n > 0; got {successes:g} of {n:g}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def subject_split(groups, seed=0):
    """Splits subjects in two halves: the sorted distinct ids, shuffled with
    ``numpy.random.default_rng(seed)``; the first half (rounded down) trains,
    the rest tests.

    Returns:
      (train_subjects, test_subjects): two disjoint sorted lists.
    """
    subjects = sorted(set(_ids(groups)))
    if len(subjects) < 2:
        raise RealismError(f"the two-sample test needs at least 2 subjects, got {len(subjects)}")
    order = np.random.default_rng(int(seed)).permutation(len(subjects))
    half = len(subjects) // 2
    train = sorted(subjects[i] for i in order[:half])
    test = sorted(subjects[i] for i in order[half:])
    return train, test


def two_sample_test(real, generated, real_groups, generated_groups, arch="small", epochs=15,
                    seed=0, resolution=None):
    """Classifier two-sample test: can a fresh classifier tell real photos from generated faces?

    The subjects (``subject_split``) are halved; a fresh binary classifier
    (``classifier.train_classifier`` with 2 classes, random flips) is trained
    on the train half's real (label 0) and generated (label 1) images and
    scored on the test half's. Each side is balanced: the larger class is
    subsampled (seeded) to the smaller one's count, so 0.5 is chance.

    Both sets are first put on the uint8 grid (float inputs are quantized as
    a saved picture would be, so quantization itself is no tell), then
    area-resized to ``resolution`` x ``resolution``.

    Args:
      real: uint8 [N, H, W, 3] or float [-1, 1], real photos in the target expression.
      generated: the same for generated faces (any count M).
      real_groups, generated_groups: length-N / length-M subject ids.
      arch: classifier architecture ("small" or "alexnet").
      epochs: training passes; seed: split, subsampling, weights and flips.
      resolution: side the images are resized to (default: the input's
        larger side, at most 64).

    Returns:
      dict: "accuracy" (test accuracy; 0.5 = indistinguishable), "ci_low",
      "ci_high" (95 % Wilson interval), "n_train", "n_test" (images, both
      classes), "train_subjects", "test_subjects" (sorted lists), plus
      "resolution", "arch", "epochs", "seed", "train_accuracy".
    """
    real, generated = _batch(real, "real"), _batch(generated, "generated")
    real_groups, generated_groups = _ids(real_groups), _ids(generated_groups)
    if len(real_groups) != real.shape[0] or len(generated_groups) != generated.shape[0]:
        raise RealismError(f"{len(real_groups)} / {len(generated_groups)} subject ids for "
                           f"{real.shape[0]} real / {generated.shape[0]} generated images")
    if resolution is None:
        resolution = min(max(real.shape[1], real.shape[2]), MAX_TEST_RESOLUTION)
    resolution = int(resolution)
    if resolution < 8:
        raise RealismError(f"resolution must be at least 8, got {resolution}")
    train_subjects, test_subjects = subject_split(real_groups + generated_groups, seed)
    rng = np.random.default_rng(int(seed) + 1)
    sides = {}
    for name, subjects in (("train", train_subjects), ("test", test_subjects)):
        chosen = set(subjects)
        r = np.flatnonzero([g in chosen for g in real_groups])
        g = np.flatnonzero([g in chosen for g in generated_groups])
        k = min(r.size, g.size)
        if k == 0:
            raise RealismError(f"the {name} half ({len(subjects)} subjects) has "
                               f"{r.size} real and {g.size} generated images; both are needed")
        r, g = np.sort(rng.choice(r, k, replace=False)), np.sort(rng.choice(g, k, replace=False))
        images = np.concatenate([_resize(real[r], resolution), _resize(generated[g], resolution)])
        labels = np.concatenate([np.zeros(k, np.int32), np.ones(k, np.int32)])
        sides[name] = images, labels
    model = train_classifier(*sides["train"], num_classes=2, arch=arch, epochs=epochs, seed=seed,
                             flip=True)
    x_test, y_test = sides["test"]
    correct = int(np.sum(predict_labels(model, x_test) == y_test))
    low, high = wilson_interval(correct, y_test.size)
    return {"accuracy": correct / y_test.size, "ci_low": low, "ci_high": high,
            "n_train": int(sides["train"][1].size), "n_test": int(y_test.size),
            "train_subjects": train_subjects, "test_subjects": test_subjects,
            "resolution": resolution, "arch": arch, "epochs": int(epochs), "seed": int(seed),
            "train_accuracy": float(getattr(model, "train_accuracy", float("nan")))}


def _batch(images, name):
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise RealismError(f"{name} images: expected [N, H, W, 3] with N > 0, got {x.shape}")
    return x if x.dtype == np.uint8 else to_uint8(to_float(x))


def _ids(groups):
    return [g.item() if isinstance(g, np.generic) else g for g in np.asarray(groups).reshape(-1)]


def _resize(images_uint8, resolution):
    """uint8 [N, H, W, 3] -> float32 [-1, 1] [N, R, R, 3], area resizing."""
    x = to_float(images_uint8)
    if x.shape[1:3] == (resolution, resolution):
        return x
    import tensorflow as tf

    return tf.image.resize(x, [resolution, resolution], method="area", antialias=True).numpy()


# ------------------------------------------------------------------ sharpness


def sharpness(images, boxes=None):
    """Variance of the Laplacian of each image's luminance (higher = sharper).

    The luminance is 0.299 R + 0.587 G + 0.114 B on the [0, 255] scale; the
    Laplacian uses the 3x3 kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] on
    the interior pixels only (no padding), at the image's own resolution.

    Args:
      images: uint8 [N, H, W, 3] or float [-1, 1], or a list of [H, W, 3]
        images of different sizes.
      boxes: None (whole image), one box (x0, y0, x1, y1) for all images, or
        [N, 4] boxes in pixels; x1 / y1 exclusive, clipped to the image. Each
        clipped box must be at least 3 x 3 pixels.

    Returns:
      float64 [N].
    """
    images = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    n = len(images)
    if boxes is not None:
        boxes = np.asarray(boxes, np.float64)
        if boxes.shape == (4,):
            boxes = np.broadcast_to(boxes, (n, 4))
        if boxes.shape != (n, 4):
            raise RealismError(f"boxes: expected (x0, y0, x1, y1) or [{n}, 4], got {boxes.shape}")
    out = np.zeros([n], np.float64)
    for i, image in enumerate(images):
        x = np.asarray(image)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise RealismError(f"image {i}: expected [H, W, 3], got {x.shape}")
        luma = ((to_float(x).astype(np.float64) + 1.0) * 127.5) @ _LUMA
        if boxes is not None:
            luma = clip_crop(luma, [int(round(v)) for v in boxes[i]])
        if luma.shape[0] < 3 or luma.shape[1] < 3:
            raise RealismError(f"image {i}: region {luma.shape[1]}x{luma.shape[0]} is smaller "
                               f"than the 3x3 Laplacian")
        lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
               - 4.0 * luma[1:-1, 1:-1])
        out[i] = np.var(lap)
    return out


def sharpness_ratio(generated, source, boxes=None):
    """Per-image sharpness of generated faces relative to their sources.

    Args:
      generated, source: paired images (see ``sharpness``) of equal shapes,
        so that the same ``boxes`` cover the same region of both.
      boxes: as in ``sharpness``, applied to both.

    Returns:
      dict: "mean", "median" of the finite ratios (nan when none), "ratios"
      (list of generated / source per pair; nan where the source region is
      flat, i.e. its sharpness is 0), "n" (pairs), "n_finite".
    """
    if len(generated) != len(source):
        raise RealismError(f"{len(generated)} generated images for {len(source)} sources")
    for i, (g, s) in enumerate(zip(generated, source)):
        if np.shape(g) != np.shape(s):
            raise RealismError(f"pair {i}: generated {np.shape(g)} and source {np.shape(s)} "
                               f"differ in shape; resize them to one size first")
    g, s = sharpness(generated, boxes), sharpness(source, boxes)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(s > 0, g / np.where(s > 0, s, 1.0), np.nan)
    finite = ratios[np.isfinite(ratios)]
    return {"mean": float(np.mean(finite)) if finite.size else float("nan"),
            "median": float(np.median(finite)) if finite.size else float("nan"),
            "ratios": [float(r) for r in ratios], "n": int(ratios.size),
            "n_finite": int(finite.size)}


# ------------------------------------------------------------------- identity


def verification_rate(distances, threshold=DLIB_SAME_PERSON_THRESHOLD):
    """Fraction of descriptor distances strictly below ``threshold`` (dlib's
    usual same-person threshold 0.6). Non-finite distances (faces that could
    not be embedded) are left out; nan when no finite distance is left."""
    d = np.asarray(distances, np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    return float(np.mean(d < float(threshold))) if d.size else float("nan")


def identity_summary(gen_to_source, real_same_person, threshold=DLIB_SAME_PERSON_THRESHOLD):
    """Identity preservation beside its real reference.

    Args:
      gen_to_source: distances generated face <-> its source face.
      real_same_person: distances between real photos of the same person
        (e.g. source <-> real target expression): what a perfect generator
        would reach.
      threshold: same-person threshold of ``verification_rate``.

    Returns:
      dict: "generated_vs_source_mean", "real_same_person_mean" (means of the
      finite distances; nan when none), "generated_verification_rate",
      "real_verification_rate", "threshold", "n_generated", "n_real".
    """
    def finite(values):
        v = np.asarray(values, np.float64).reshape(-1)
        return v[np.isfinite(v)]

    g, r = finite(gen_to_source), finite(real_same_person)
    return {"generated_vs_source_mean": float(np.mean(g)) if g.size else float("nan"),
            "real_same_person_mean": float(np.mean(r)) if r.size else float("nan"),
            "generated_verification_rate": verification_rate(g, threshold),
            "real_verification_rate": verification_rate(r, threshold),
            "threshold": float(threshold), "n_generated": int(g.size), "n_real": int(r.size)}


# ----------------------------------------------------------------- expression


def expression_rate_ratio(pred_generated, pred_real, target_class, paired=False, seed=0):
    """How often the expression judge sees the target expression, generated vs real.

    Args:
      pred_generated: predicted class ids of generated faces (target: ``target_class``).
      pred_real: predicted class ids of real photos in the target expression.
      target_class: the target expression id.
      paired: entry i of both sets is the same subject (a generated face and
        that person's real photo): also return "ratio_ci", the 95 %
        subject-bootstrap interval of the ratio (``paired_ratio_ci``).
      seed: the bootstrap's seed.

    Returns:
      dict: "generated_rate", "real_rate" (fractions predicted as
      ``target_class``), "ratio" (generated / real; None when the real rate
      is 0), "target_class", "n_generated", "n_real"; with ``paired``, "ratio_ci".
    """
    g = np.asarray(pred_generated).reshape(-1)
    r = np.asarray(pred_real).reshape(-1)
    if g.size == 0 or r.size == 0:
        raise RealismError(f"need predictions for both sets; got {g.size} generated, {r.size} real")
    g_rate = float(np.mean(g == target_class))
    r_rate = float(np.mean(r == target_class))
    out = {"generated_rate": g_rate, "real_rate": r_rate,
           "ratio": g_rate / r_rate if r_rate > 0 else None,
           "target_class": target_class, "n_generated": int(g.size), "n_real": int(r.size)}
    if paired:
        out["ratio_ci"] = paired_ratio_ci(g == target_class, r == target_class, seed=seed)
    return out


def paired_ratio_ci(generated_hits, real_hits, reps=2000, level=0.95, seed=0):
    """Percentile bootstrap interval of mean(generated_hits) / mean(real_hits)
    when entry i of both comes from the same subject: subjects are resampled
    with replacement, each taking its generated and its real verdict along.
    [low, high], or None for fewer than 2 subjects; draws whose real rate is
    0 are left out (they have no ratio)."""
    g = np.asarray(generated_hits, np.float64).reshape(-1)
    r = np.asarray(real_hits, np.float64).reshape(-1)
    if g.shape != r.shape:
        raise RealismError(f"paired ratio: {g.size} generated verdicts but {r.size} real ones; "
                           "pairing needs one of each per subject")
    if g.size < 2:
        return None
    idx = np.random.default_rng(int(seed)).integers(0, g.size, size=(int(reps), g.size))
    real_rate = r[idx].mean(axis=1)
    keep = real_rate > 0
    if not keep.any():
        return None
    ratios = g[idx].mean(axis=1)[keep] / real_rate[keep]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))]


def suspect_note(generated_error, real_error):
    """``SUSPECT_NOTE`` when the judge errs less on generated faces than on real
    photos (it is probably exploiting generator artefacts), else ""."""
    return SUSPECT_NOTE if float(generated_error) < float(real_error) else ""


def disjoint_subjects(classifier_subjects, generator_subjects):
    """Raises ``SubjectOverlapError`` naming the shared subjects when the
    expression judge's training subjects overlap the generator's."""
    overlap = sorted(set(_ids(classifier_subjects)) & set(_ids(generator_subjects)), key=str)
    if overlap:
        raise SubjectOverlapError(
            f"the expression classifier and the generator share {len(overlap)} training "
            f"subject(s): {', '.join(str(s) for s in overlap)}; train the classifier on "
            f"disjoint subjects")
