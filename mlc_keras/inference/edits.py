"""What to do to a face: an expression, a blend of expressions, at an
intensity. Parses the ``--expressions`` / ``--intensity`` syntax of
synthesize and the web demo. May import expressions and inference/loading.

    "happy,sad"                     two edits, each one expression
    "all"                           every expression of the model
    "happy:0.6,surprised:0.4"       one blend (weights are relative: normalised to sum 1)
    "happy:0.6,surprised:0.4;sad"   columns separated by ';' when blends are involved
    intensities (0, 0.5, 1)         every edit at each intensity (grid columns)

An edit's label names its column and its files: ``happy``,
``happy_0.5`` (intensity 0.5), ``happy0.6+surprised0.4``.
"""

import dataclasses

import numpy as np

from mlc_keras.expressions import UnknownExpressionError, canonical_expression
from mlc_keras.inference.loading import MAX_INTENSITY, SynthesisError


@dataclasses.dataclass(frozen=True)
class Edit:
    """weights: ((expression name, relative weight), ...); intensity in [0, 2]."""

    weights: tuple
    intensity: float = 1.0

    @property
    def label(self):
        if len(self.weights) == 1:
            base = self.weights[0][0]
        else:
            base = "+".join(f"{name}{weight:g}" for name, weight in self.weights)
        return base if self.intensity == 1.0 else f"{base}_{self.intensity:g}"

    def target(self, vocabulary):
        """float32 [N]: the normalised target vector over ``vocabulary``."""
        vector = np.zeros(len(vocabulary), np.float32)
        for name, weight in self.weights:
            vector[list(vocabulary).index(name)] += weight
        return vector / vector.sum()

    def at(self, intensity):
        return dataclasses.replace(self, intensity=float(intensity))


def _match(name, vocabulary):
    """The model's class for a user's name (any case, or a data-set spelling)."""
    lower = {v.lower(): v for v in vocabulary}
    match = lower.get(name.lower())
    if match is None:
        try:
            canonical = canonical_expression(name)
        except UnknownExpressionError:
            canonical = None
        match = canonical if canonical in vocabulary else None
    if match is None:
        raise UnknownExpressionError(
            f"--expressions: unknown expression {name!r}; this model's expressions are: "
            f"{', '.join(vocabulary)} (or 'all')")
    return match


def _weight(term):
    name, _, value = term.partition(":")
    if not value.strip():
        return name.strip(), 1.0
    try:
        weight = float(value)
    except ValueError:
        raise SynthesisError(f"--expressions: {term!r}: the weight after ':' must be a number") \
            from None
    if not np.isfinite(weight) or weight <= 0:
        raise SynthesisError(f"--expressions: {term!r}: a weight must be a positive number")
    return name.strip(), weight


def parse_intensities(value):
    """"0.5" or "0,0.25,0.5" (or numbers) -> tuple of floats in [0, MAX_INTENSITY]."""
    if value is None or value == "":
        return (1.0,)
    items = value.split(",") if isinstance(value, str) else (
        list(value) if np.ndim(value) else [value])
    out = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise SynthesisError(f"--intensity={value}: {item!r} is not a number") from None
        if not np.isfinite(number) or not 0.0 <= number <= MAX_INTENSITY:
            raise SynthesisError(f"--intensity={value}: each value must lie in "
                                 f"[0, {MAX_INTENSITY:g}] (0: unchanged, 1: the full expression)")
        out.append(number)
    if not out:
        raise SynthesisError(f"--intensity={value}: no value given")
    return tuple(out)


def resolve_edits(requested, vocabulary, intensities=(1.0,)):
    """The edits of ``--expressions`` (see the module doc) at each intensity,
    without repeats, in the order given.

    ``requested`` may also be a list of names or of ``Edit`` objects (which
    are kept, and not multiplied by ``intensities``).

    Raises:
      UnknownExpressionError naming an unknown expression and this model's
      classes; SynthesisError for a malformed weight or intensity.
    """
    vocabulary = tuple(vocabulary)
    if not isinstance(requested, str) and requested and all(isinstance(e, Edit)
                                                            for e in requested):
        return list(dict.fromkeys(requested))
    intensities = parse_intensities(intensities)
    if isinstance(requested, str):
        text = requested.strip()
        if text.lower() == "all":
            columns = [[(v, 1.0)] for v in vocabulary]
        elif ":" in text or ";" in text:
            columns = [[_weight(t) for t in part.split(",") if t.strip()]
                       for part in text.split(";") if part.strip()]
        else:
            columns = [[(t.strip(), 1.0)] for t in text.split(",") if t.strip()]
    else:
        columns = [[(str(n).strip(), 1.0)] for n in requested if str(n).strip()]
    if not columns:
        raise UnknownExpressionError(f"--expressions: empty; give names from this model's "
                                     f"expressions ({', '.join(vocabulary)}) or 'all'")
    edits = []
    for column in columns:
        merged = {}
        for name, weight in column:
            match = _match(name, vocabulary)
            merged[match] = merged.get(match, 0.0) + weight
        base = Edit(tuple(merged.items()))
        edits += [base.at(a) for a in intensities]
    return list(dict.fromkeys(edits))
