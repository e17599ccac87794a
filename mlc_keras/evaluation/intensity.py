"""How an expression grows with ``intensity``, measured on the synthetic set,
where the drawn geometry of every face is known.

Imports data.synthetic_faces, evaluation.classifier, images only (the model
is any ``inference.loading.SynthesisModel``-like object with ``resolution``,
``expressions`` and ``generate(images, ids, intensity=...)``).

Two measures per generated face, both independent of the generator:

  drawn intensity   the renderer's own expression intensity whose drawing of
                    the same identity is nearest to the generated face (mean
                    absolute difference inside the pixels the expression
                    moves; a grid of intensities refined by a parabola
                    through the best three). 0 = the neutral drawing, 1 =
                    the full drawn expression. This reads the geometry the
                    intensity controls (brows, lids, mouth corners, opening)
                    straight from the renderer, with no learned judge.
  p(target)         the softmax probability of the target class from an
                    expression classifier trained on REAL synthetic renders
                    of subjects the curve is not measured on.

``intensity_curve`` returns, per intensity, the means of both measures per
expression and overall, the input change (mean absolute difference from the
source), and whether each mean curve is monotone from 0 to 1 within a
tolerance, plus the share of single faces whose drawn intensity is monotone.
"""

import numpy as np

from mlc_keras.data.synthetic_faces import identity_for, render_face
from mlc_keras.errors import UserError
from mlc_keras.images import to_float, to_uint8

DRAWN_GRID = tuple(round(0.05 * i, 2) for i in range(0, 41))  # 0 .. 2.0
REGION_THRESHOLD = 8  # uint8 levels: a pixel the expression moves by more is in its region
DRAWN_TOLERANCE = 0.02  # allowed dip of the mean drawn-intensity curve
PROBABILITY_TOLERANCE = 0.02  # allowed dip of the mean p(target) curve


class IntensityCurveError(UserError, ValueError):
    """Bad arguments to the intensity curve (named in the message)."""


def expression_region(renders, threshold=REGION_THRESHOLD, grow=2):
    """bool [R, R]: pixels where any render differs from the first (the
    neutral one) by more than ``threshold`` levels, grown by ``grow`` pixels."""
    renders = np.asarray(renders, np.int16)
    moved = np.abs(renders - renders[:1]).max(axis=(0, 3)) > threshold
    region = moved.copy()
    for _ in range(int(grow)):
        shifted = region.copy()
        shifted[1:] |= region[:-1]
        shifted[:-1] |= region[1:]
        shifted[:, 1:] |= region[:, :-1]
        shifted[:, :-1] |= region[:, 1:]
        region = shifted
    return region


def _parabola_min(grid, errors, best):
    """Sub-grid position of the minimum through the best point and its neighbours."""
    if best == 0 or best == len(grid) - 1:
        return float(grid[best])
    y0, y1, y2 = errors[best - 1], errors[best], errors[best + 1]
    denom = y0 - 2 * y1 + y2
    if denom <= 0:
        return float(grid[best])
    step = grid[best + 1] - grid[best]
    return float(grid[best] + 0.5 * step * (y0 - y2) / denom)


def drawn_reference(identity, expression, resolution, grid=DRAWN_GRID):
    """(grid, renders uint8 [G, R, R, 3], region bool [R, R]) for ``drawn_intensity``."""
    renders = np.stack([render_face(identity, expression, resolution, t) for t in grid])
    region = expression_region(renders)
    if not region.any():
        raise IntensityCurveError(f"expression {expression!r} draws nothing different "
                                  "from the neutral face")
    return np.asarray(grid, np.float64), renders, region


def drawn_intensity(image, identity, expression, grid=DRAWN_GRID, reference=None):
    """The renderer intensity of ``expression`` nearest to ``image``.

    Args:
      image: uint8 [R, R, 3] (or float in [-1, 1]) of the face of ``identity``.
      identity: a ``synthetic_faces.Identity``.
      expression: the expression whose drawn intensity is read.
      grid: the intensities rendered (increasing, starting at 0).
      reference: ``drawn_reference(identity, expression, R, grid)``, to reuse
        the renders across images of the same face.

    Returns:
      float: the estimated intensity (0 = neutral drawing), refined between
      grid points.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = to_uint8(image)
    grid, renders, region = reference or drawn_reference(identity, expression, image.shape[0], grid)
    if renders.shape[1:] != image.shape:
        raise IntensityCurveError(f"image shape {image.shape} differs from the reference "
                                  f"renders {renders.shape[1:]}")
    diff = np.abs(renders.astype(np.int16) - image.astype(np.int16)[None])
    errors = diff[:, region].mean(axis=(1, 2))
    return _parabola_min(grid, errors, int(np.argmin(errors)))


def _softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def target_probability(classifier, images, ids, batch_size=128):
    """float [N]: the classifier's softmax probability of class ``ids[i]``."""
    x = to_float(images)
    ids = np.asarray(ids, np.int64)
    out = []
    for i in range(0, x.shape[0], batch_size):
        p = _softmax(np.asarray(classifier(x[i:i + batch_size], training=False), np.float64))
        out.append(p[np.arange(p.shape[0]), ids[i:i + batch_size]])
    return np.concatenate(out) if out else np.zeros([0])


def render_set(subjects, seed, resolution, expressions):
    """uint8 [S * E, R, R, 3] and int labels: every subject (index) x expression."""
    images, labels = [], []
    for s in subjects:
        idn = identity_for(int(s), seed)
        for k, e in enumerate(expressions):
            images.append(render_face(idn, e, resolution))
            labels.append(k)
    return np.stack(images), np.asarray(labels, np.int32)


def train_judge(subjects, seed, resolution, expressions, arch="small", epochs=15):
    """An expression classifier trained on the real renders of ``subjects``."""
    from mlc_keras.evaluation.classifier import train_classifier

    images, labels = render_set(subjects, seed, resolution, expressions)
    return train_classifier(images, labels, len(expressions), arch=arch, epochs=epochs, seed=seed)


def _monotone(values, tolerance):
    values = np.asarray(values, np.float64)
    return bool(np.all(np.diff(values) >= -tolerance))


METHODS = ("scale", "condition")


def intensity_curve(model, subjects, seed, intensities, expressions=None, judge=None,
                    source="neutral", method="scale"):
    """The drawn intensity and p(target) of generated faces at each intensity.

    Args:
      model: ``SynthesisModel``-like (``resolution``, ``expressions``,
        ``generate(images, ids, intensity=)``).
      subjects: synthetic subject indices (ints) to measure on; keep them out
        of the generator's and the judge's training subjects.
      seed: the synthetic set's seed (identities are ``identity_for(i, seed)``).
      intensities: increasing floats, the first 0 (the curve is judged
        monotone from the first to the one at 1.0).
      expressions: target expressions (default: every model class but
        ``source``).
      judge: an expression classifier over ``model.expressions`` (logits out)
        or None (no p(target)).
      source: the expression of the input faces.
      method: "scale", the library's intensity (the model's change from the
        input scaled: ``generate(..., intensity=a)``), or "condition",
        conditioning interpolation (the target vector ``(1 - a) * source +
        a * target`` at intensity 1; above 1 the full target's change
        is scaled), measured for comparison.

    Returns:
      dict: "intensities", "subjects", "expressions", "per_expression"
      {name: {"drawn": [...], "p_target": [...]}}, "overall" {"drawn",
      "p_target", "input_change" (mean |generated - source| in uint8 levels,
      whole image)}, "monotone" {"drawn", "p_target"} (mean curves from 0 to
      1, within DRAWN_TOLERANCE / PROBABILITY_TOLERANCE), "faces_monotone"
      (share of single (face, expression) drawn curves monotone to 1 within
      0.05), and "beyond_one" (drawn and p(target) at the largest intensity
      minus at 1.0, when the curve goes past 1).
    """
    intensities = [float(v) for v in intensities]
    if not intensities or intensities[0] != 0 or np.any(np.diff(intensities) <= 0):
        raise IntensityCurveError(f"intensities must increase from 0, got {intensities}")
    if 1.0 not in intensities:
        raise IntensityCurveError(f"intensities must contain 1.0, got {intensities}")
    names = tuple(model.expressions)
    if source not in names:
        raise IntensityCurveError(f"source expression {source!r} is not one of the model's "
                                  f"{', '.join(names)}")
    targets = tuple(expressions or [e for e in names if e != source])
    unknown = [e for e in targets if e not in names]
    if unknown:
        raise IntensityCurveError(f"expressions {unknown} are not the model's "
                                  f"({', '.join(names)})")
    if method not in METHODS:
        raise IntensityCurveError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    subjects = [int(s) for s in subjects]
    if not subjects:
        raise IntensityCurveError("no subjects to measure on")
    r = int(model.resolution)
    identities = [identity_for(s, seed) for s in subjects]
    sources = np.stack([render_face(idn, source, r) for idn in identities])
    src_float = to_float(sources)
    one = intensities.index(1.0)

    drawn = np.zeros([len(targets), len(intensities), len(subjects)])
    prob = np.full([len(targets), len(intensities), len(subjects)], np.nan)
    change = np.zeros([len(targets), len(intensities), len(subjects)])
    for a, expression in enumerate(targets):
        ids = np.full([len(subjects)], names.index(expression), np.int32)
        references = [drawn_reference(idn, expression, r) for idn in identities]
        for b, value in enumerate(intensities):
            if method == "scale":
                generated = model.generate(src_float, ids, intensity=value)
            else:
                vectors = np.zeros([len(subjects), len(names)], np.float32)
                vectors[:, names.index(source)] = 1.0 - min(value, 1.0)
                vectors[:, names.index(expression)] += min(value, 1.0)
                generated = model.generate(src_float, vectors, intensity=max(value, 1.0))
            generated = to_uint8(generated)
            change[a, b] = np.abs(generated.astype(np.int16)
                                  - sources.astype(np.int16)).mean(axis=(1, 2, 3))
            drawn[a, b] = [drawn_intensity(g, idn, expression, reference=ref)
                           for g, idn, ref in zip(generated, identities, references)]
            if judge is not None:
                prob[a, b] = target_probability(judge, generated, ids)

    mean_drawn = drawn.mean(axis=2)
    mean_prob = prob.mean(axis=2)
    overall_drawn = mean_drawn.mean(axis=0)
    overall_prob = mean_prob.mean(axis=0)
    up_to_one = slice(0, one + 1)
    monotone = {
        "drawn": _monotone(overall_drawn[up_to_one], DRAWN_TOLERANCE)
        and all(_monotone(c[up_to_one], DRAWN_TOLERANCE) for c in mean_drawn),
        "p_target": None if judge is None else (
            _monotone(overall_prob[up_to_one], PROBABILITY_TOLERANCE)
            and all(_monotone(c[up_to_one], PROBABILITY_TOLERANCE) for c in mean_prob)),
    }
    faces = drawn[:, up_to_one].transpose(0, 2, 1).reshape(-1, one + 1)
    faces_monotone = float(np.mean([_monotone(f, 0.05) for f in faces]))
    result = {
        "intensities": intensities,
        "subjects": subjects,
        "seed": int(seed),
        "source": source,
        "method": method,
        "expressions": list(targets),
        "per_expression": {
            e: {"drawn": mean_drawn[a].tolist(),
                "p_target": None if judge is None else mean_prob[a].tolist()}
            for a, e in enumerate(targets)},
        "overall": {"drawn": overall_drawn.tolist(),
                    "p_target": None if judge is None else overall_prob.tolist(),
                    "input_change": change.mean(axis=(0, 2)).tolist()},
        "monotone": monotone,
        "faces_monotone": faces_monotone,
    }
    if len(intensities) > one + 1:
        result["beyond_one"] = {
            "intensity": intensities[-1],
            "drawn": float(overall_drawn[-1] - overall_drawn[one]),
            "p_target": None if judge is None else float(overall_prob[-1] - overall_prob[one]),
        }
    return result


def curve_markdown(result):
    """A markdown table of ``intensity_curve``'s result."""
    has_p = result["overall"]["p_target"] is not None
    head = ["intensity", "drawn intensity (all)", "input change (levels)"]
    if has_p:
        head.insert(2, "p(target) (all)")
    head += [f"drawn: {e}" for e in result["expressions"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b, value in enumerate(result["intensities"]):
        row = [f"{value:g}", f"{result['overall']['drawn'][b]:.3f}",
               f"{result['overall']['input_change'][b]:.2f}"]
        if has_p:
            row.insert(2, f"{result['overall']['p_target'][b]:.3f}")
        row += [f"{result['per_expression'][e]['drawn'][b]:.3f}" for e in result["expressions"]]
        lines.append("| " + " | ".join(row) + " |")
    m = result["monotone"]
    lines.append("")
    lines.append(f"Monotone from 0 to 1: drawn intensity {m['drawn']}, p(target) {m['p_target']}; "
                 f"single faces with a monotone drawn curve: {result['faces_monotone']:.0%} "
                 f"({len(result['subjects'])} subjects x {len(result['expressions'])} expressions).")
    return "\n".join(lines) + "\n"
