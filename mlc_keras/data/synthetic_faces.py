"""Procedural, deterministic faces: identities drawn from a seed, seven expressions, rendering.

Nothing is shipped: every image is drawn from a handful of identity
parameters (face shape, skin tone, hair, eyes, nose, mouth, brows,
background, glasses, beard) and one of the seven ``EXPRESSIONS``; the
synthetic data set (``sources.synthetic``) renders every identity with every
expression, so it is fully paired.

Drawing (``synthetic_drawing``) happens on a supersampled canvas with
``PIL.ImageDraw`` and is box-filtered down, so the faces are anti-aliased at
any resolution from 16 to 512 px and above. Faces mirror aligned crops: the
head is centred, the eye centres lie at ``synthetic_drawing.EYE_Y`` (40 %) of the height and
the inter-eye distance is 30-34 % of the width.

Coordinates below are fractions of the image side (x right, y down).

API:
  * ``sample_identity(rng) -> Identity``
  * ``identity_for(subject_index, seed) -> Identity``
  * ``render_face(identity, expression, resolution, intensity=1.0)``
    -> ``np.ndarray`` uint8 ``(resolution, resolution, 3)``
  * ``preview_grid(num_subjects, resolution, seed=0, expressions=EXPRESSIONS)``
    -> ``np.ndarray`` uint8 ``(num_subjects*resolution,
    len(expressions)*resolution, 3)``
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mlc_keras.data.synthetic_drawing import DARK, draw_face, mix, scale
from mlc_keras.expressions import EXPRESSIONS, canonical_expression

# Bump whenever the drawing changes: cached data sets are then re-rendered.
GENERATOR_VERSION = 1

Color = tuple  # (r, g, b) ints in 0..255


_SKIN_TONES = (
    (255, 226, 204),
    (244, 204, 176),
    (231, 182, 146),
    (207, 149, 111),
    (170, 112, 78),
    (128, 82, 55),
    (92, 58, 40),
)
_HAIR_COLORS = (
    (28, 24, 24),  # black
    (55, 38, 28),  # dark brown
    (100, 66, 40),  # brown
    (140, 66, 36),  # auburn
    (196, 156, 96),  # dark blonde
    (230, 204, 146),  # blonde
    (140, 138, 136),  # grey
    (222, 220, 214),  # white
)
_HAIR_WEIGHTS = (0.22, 0.2, 0.16, 0.09, 0.1, 0.09, 0.08, 0.06)
_EYE_COLORS = (
    (58, 34, 20),  # dark brown
    (104, 62, 30),  # brown
    (128, 100, 48),  # hazel
    (66, 116, 72),  # green
    (62, 108, 168),  # blue
    (108, 124, 140),  # grey
)
HAIR_STYLES = ("bald", "short", "medium", "long")
HAIRLINES = ("round", "fringe", "side", "receding")
BEARDS = ("none", "stubble", "full", "moustache")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Parameters of one synthetic person; lengths are fractions of the side."""

    face_width: float  # half-width of the head oval
    face_height: float  # half-height of the head oval
    face_center_y: float
    jaw_taper: float  # 0 = square jaw, larger = pointier chin
    squareness: float  # superellipse exponent of the head (2 = ellipse)
    skin: Color
    hair_color: Color
    hair_style: str  # one of HAIR_STYLES
    hairline: str  # one of HAIRLINES
    hairline_y: float  # height of the hairline at the centre
    hair_volume: float  # how far the hair stands off the head
    hair_side: int  # +1 / -1: side of a side-swept fringe
    eye_color: Color
    eye_spacing: float  # distance between the eye centres
    eye_size: float  # half-width of one eye
    eye_height: float  # upper-lid height / eye half-width
    brow_thickness: float
    brow_arch: float
    brow_color: Color
    nose_width: float  # half-width of the nostril wings
    nose_tip_y: float
    nose_round: float  # 0 = narrow tip, 1 = round bulbous tip
    mouth_y: float
    mouth_width: float  # half-width of the closed mouth
    lip_thickness: float
    lip_color: Color
    background: Color
    shirt: Color
    glasses: bool
    glasses_color: Color
    beard: str  # one of BEARDS
    sneer_side: int  # +1 / -1: side raised in disgust
    teeth_smile: bool  # happy shows teeth (else a closed-mouth smile)
    expressiveness: float  # scales every expression's strength

    def to_dict(self):
        return dataclasses.asdict(self)


def _luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _at_most(c, reference, ratio):
    """``c`` darkened until its luma is at most ``ratio`` x ``reference``'s."""
    limit = ratio * _luma(reference)
    lum = _luma(c)
    return c if lum <= limit else scale(c, limit / max(lum, 1e-6))


def _jitter(rng, c, amount):
    d = rng.uniform(-amount, amount, 3)
    return tuple(int(min(255.0, max(0.0, v + dv))) for v, dv in zip(c, d))


def _palette(rng, colors):
    """Colour interpolated at a random point of an ordered palette."""
    t = rng.uniform(0, len(colors) - 1)
    i = min(int(t), len(colors) - 2)
    return mix(colors[i], colors[i + 1], t - i)


def _random_color(rng, lo, hi, saturation):
    base = rng.uniform(lo, hi)
    hue = rng.uniform(0, 2 * math.pi)
    return tuple(
        int(min(255.0, max(0.0, base + saturation * math.cos(hue + k * 2 * math.pi / 3))))
        for k in range(3)
    )


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draws one identity from ``rng`` (a ``np.random.Generator``).

    Every field is drawn unconditionally and in a fixed order, so the number
    of draws per identity is constant.
    """
    skin = _jitter(rng, _palette(rng, _SKIN_TONES), 6)
    hair = _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS)]
    hair = _jitter(rng, hair, 10)
    hair_style = HAIR_STYLES[rng.choice(4, p=(0.06, 0.36, 0.28, 0.30))]
    hairline = HAIRLINES[rng.choice(4, p=(0.35, 0.25, 0.25, 0.15))]
    eye = _jitter(rng, _EYE_COLORS[rng.integers(len(_EYE_COLORS))], 8)
    lip = mix(scale(skin, 0.78), (176, 70, 80), rng.uniform(0.3, 0.55))
    lip = _at_most(lip, skin, 0.8)
    # brows keep a clear contrast with the skin whatever the hair colour
    brow = _at_most(mix(hair, DARK, rng.uniform(0.45, 0.75)), skin, 0.55)
    background = _random_color(rng, 70, 200, rng.uniform(10, 60))
    shirt = _random_color(rng, 40, 210, rng.uniform(20, 90))
    glasses = bool(rng.random() < 0.15)
    glasses_color = _random_color(rng, 20, 90, 30)
    beard = BEARDS[rng.choice(4, p=(0.74, 0.1, 0.1, 0.06))]
    return Identity(
        face_width=float(rng.uniform(0.325, 0.37)),
        face_height=float(rng.uniform(0.39, 0.44)),
        face_center_y=float(0.5 + rng.uniform(-0.01, 0.01)),
        jaw_taper=float(rng.uniform(0.12, 0.42)),
        squareness=float(rng.uniform(2.0, 2.9)),
        skin=skin,
        hair_color=hair,
        hair_style=hair_style,
        hairline=hairline,
        hairline_y=float(rng.uniform(0.17, 0.22)),
        hair_volume=float(rng.uniform(0.015, 0.06)),
        hair_side=int(rng.choice((-1, 1))),
        eye_color=eye,
        eye_spacing=float(rng.uniform(0.30, 0.34)),
        eye_size=float(rng.uniform(0.062, 0.074)),
        eye_height=float(rng.uniform(0.4, 0.52)),
        brow_thickness=float(rng.uniform(0.017, 0.028)),
        brow_arch=float(rng.uniform(0.0, 0.014)),
        brow_color=brow,
        nose_width=float(rng.uniform(0.036, 0.054)),
        nose_tip_y=float(rng.uniform(0.565, 0.6)),
        nose_round=float(rng.uniform(0.0, 1.0)),
        mouth_y=float(rng.uniform(0.69, 0.715)),
        mouth_width=float(rng.uniform(0.085, 0.112)),
        lip_thickness=float(rng.uniform(0.016, 0.025)),
        lip_color=lip,
        background=background,
        shirt=shirt,
        glasses=glasses,
        glasses_color=glasses_color,
        beard=beard,
        sneer_side=int(rng.choice((-1, 1))),
        teeth_smile=bool(rng.random() < 0.7),
        expressiveness=float(rng.uniform(0.9, 1.1)),
    )


def identity_for(subject_index: int, seed: int) -> Identity:
    """The identity of subject ``subject_index`` in the set seeded ``seed``.

    Independent of how many subjects are generated.
    """
    return sample_identity(np.random.default_rng([int(seed), int(subject_index)]))


# --------------------------------------------------------------------------
# Expressions: a few continuous action parameters; neutral = all zero.

_EXPRESSION_ACTIONS = {
    "neutral": {},
    "angry": dict(
        brow_raise=-0.45, brow_inner=-1.0, brow_squeeze=1.0, eye_open=-0.3,
        lower_lid=0.5, mouth_curve=-0.2, mouth_width=-0.2, lip_press=1.0,
        nostril_flare=0.7, glabella=1.0, chin=0.8,
    ),
    "disgusted": dict(
        brow_raise=-0.35, brow_inner=-0.45, brow_squeeze=0.6, eye_open=-0.4,
        lower_lid=0.9, mouth_curve=-0.55, mouth_open=0.22, upper_lip=1.0,
        asym=1.0, nose_wrinkle=1.0, nostril_flare=1.0, fold=1.0,
    ),
    "fearful": dict(
        brow_raise=0.75, brow_inner=0.85, brow_squeeze=0.7, eye_open=0.8,
        mouth_curve=-0.45, mouth_open=0.42, mouth_width=0.35, lower_teeth=1.0,
        forehead=0.7,
    ),
    "happy": dict(
        brow_raise=0.1, eye_open=-0.1, lower_lid=1.0, mouth_curve=1.0,
        mouth_width=0.42, mouth_open=0.45, fold=1.0, cheek=1.0, crow=1.0,
    ),
    "sad": dict(
        brow_raise=-0.1, brow_inner=1.1, brow_squeeze=0.5, eye_open=-0.3,
        lid_droop=1.0, mouth_curve=-1.1, mouth_width=-0.08, pout=1.0,
        chin=0.5, gaze_down=1.0,
    ),
    "surprised": dict(
        brow_raise=1.15, brow_inner=0.15, eye_open=0.95, mouth_open=1.0,
        mouth_round=1.0, mouth_width=-0.38, forehead=1.0,
    ),
}


@dataclasses.dataclass(frozen=True)
class _Actions:
    """Continuous facial actions; all zero = the neutral face."""

    brow_raise: float = 0.0  # whole brow up (+) / down (-)
    brow_inner: float = 0.0  # inner ends up (+, sad/fear) / down (-, anger)
    brow_squeeze: float = 0.0  # inner ends pulled together
    eye_open: float = 0.0  # eyelid aperture (+ wide, - narrow)
    lower_lid: float = 0.0  # lower lid pushed up (cheek raise / squint)
    lid_droop: float = 0.0  # outer upper lid droops (sad)
    mouth_curve: float = 0.0  # corners up (+) / down (-)
    mouth_open: float = 0.0
    mouth_width: float = 0.0  # stretch (+) / purse (-)
    mouth_round: float = 0.0  # O-shaped opening
    lip_press: float = 0.0  # thinned lips
    upper_lip: float = 0.0  # upper lip raised (disgust)
    asym: float = 0.0  # one-sided corner raise (disgust sneer)
    lower_teeth: float = 0.0
    nose_wrinkle: float = 0.0
    nostril_flare: float = 0.0
    fold: float = 0.0  # nasolabial folds
    cheek: float = 0.0  # raised, flushed cheeks
    crow: float = 0.0  # crow's feet
    forehead: float = 0.0  # horizontal forehead lines
    glabella: float = 0.0  # vertical frown lines between the brows
    chin: float = 0.0  # chin boss pushed up
    pout: float = 0.0  # fuller, raised lower lip
    gaze_down: float = 0.0  # irises lowered


def expression_actions(identity: Identity, expression: str, intensity: float = 1.0):
    """The action parameters (a frozen dataclass of floats) for one face.

    Every action is the expression's value times ``intensity`` times the
    identity's ``expressiveness``; neutral and ``intensity == 0`` give all
    zeros. A closed-mouth smiler parts the lips only a little when happy
    (and curls the corners a bit more).
    """
    intensity = float(intensity)
    if not intensity >= 0:
        raise ValueError(f"intensity must be >= 0, got {intensity}")
    name = canonical_expression(expression)
    if name not in _EXPRESSION_ACTIONS:  # pragma: no cover - vocabulary guard
        raise ValueError(f"no synthetic rendering for expression {name!r}")
    values = dict(_EXPRESSION_ACTIONS[name])
    if name == "happy" and not identity.teeth_smile:
        values["mouth_open"] = 0.15
        values["mouth_curve"] = 1.15
    k = intensity * identity.expressiveness
    if k == 0:
        return _Actions()
    return _Actions(**{key: v * k for key, v in values.items()})


def render_face(identity: Identity, expression: str, resolution: int, intensity: float = 1.0) -> np.ndarray:
    """Renders one face.

    Args:
      identity: an ``Identity``.
      expression: any name ``canonical_expression`` knows.
      resolution: output side in pixels (>= 8).
      intensity: expression strength; 0 gives the neutral face exactly,
        1 the full expression (values above 1 exaggerate).

    Returns:
      ``np.ndarray`` of dtype uint8 and shape ``(resolution, resolution, 3)``.
    """
    resolution = int(resolution)
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    a = expression_actions(identity, expression, intensity)
    return draw_face(identity, a, resolution)


def preview_grid(num_subjects, resolution, seed=0, expressions=EXPRESSIONS, intensity=1.0):
    """Rows = subjects, columns = expressions.

    Returns ``np.ndarray`` uint8 of shape
    ``(num_subjects * resolution, len(expressions) * resolution, 3)``.
    """
    rows = []
    for i in range(num_subjects):
        idn = identity_for(i, seed)
        rows.append(np.concatenate([render_face(idn, e, resolution, intensity) for e in expressions], axis=1))
    return np.concatenate(rows, axis=0)
