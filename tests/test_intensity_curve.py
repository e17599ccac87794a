"""The intensity curve on the synthetic set: the drawn-intensity reader
recovers the renderer's intensity, the curve tells a monotone model from a
non-monotone one, and the shipped synthetic model's expressions grow
monotonically with the intensity (drawn geometry and p(target))."""

import numpy as np
import pytest

from mlc_keras.data.synthetic_faces import identity_for, render_face
from mlc_keras.evaluation import intensity
from mlc_keras.images import to_float

SEED = 0
SIZE = 32


def test_drawn_intensity_reads_back_the_rendered_intensity():
    for subject, expression in ((3, "happy"), (11, "surprised")):
        idn = identity_for(subject, SEED)
        ref = intensity.drawn_reference(idn, expression, SIZE)
        for value in (0.0, 0.3, 0.75, 1.25):
            face = render_face(idn, expression, SIZE, value)
            got = intensity.drawn_intensity(face, idn, expression, reference=ref)
            assert abs(got - value) <= 0.06, (subject, expression, value, got)


def test_expression_region_is_where_the_drawing_moves():
    idn = identity_for(5, SEED)
    _, renders, region = intensity.drawn_reference(idn, "happy", SIZE)
    assert 0 < region.mean() < 0.5  # some pixels move, most do not
    assert not region[:3].any()  # the top rows (hair / background) never move for a smile
    moved = np.abs(renders[-1].astype(int) - renders[0].astype(int)).max(-1) > intensity.REGION_THRESHOLD
    assert region[moved].all()


class DrawingModel:
    """A stand-in generator that draws the identity's face at ``curve(a)``."""

    expressions = ("neutral", "happy", "sad")
    resolution = SIZE

    def __init__(self, subjects, curve):
        self.identities = [identity_for(s, SEED) for s in subjects]
        self.curve = curve

    def generate(self, images, ids, intensity=1.0):
        ids = np.asarray(ids)
        out = []
        for idn, k in zip(self.identities, ids):
            if ids.ndim == 2:  # a target vector: its non-neutral weight
                name, value = self.expressions[int(np.argmax(k[1:])) + 1], float(k[1:].max())
                value *= intensity
            else:
                name, value = self.expressions[int(k)], intensity
            out.append(render_face(idn, name, SIZE, self.curve(value)))
        return to_float(np.stack(out))


@pytest.mark.parametrize("method", ["scale", "condition"])
def test_curve_of_a_monotone_drawing_model_is_monotone_and_reads_its_intensity(method):
    subjects = [2, 7]
    model = DrawingModel(subjects, curve=lambda a: a)
    result = intensity.intensity_curve(model, subjects, SEED, [0, 0.5, 1, 1.25], method=method)
    assert result["monotone"]["drawn"] is True
    assert result["faces_monotone"] == 1.0
    np.testing.assert_allclose(result["overall"]["drawn"], [0, 0.5, 1, 1.25], atol=0.06)
    assert result["overall"]["input_change"][0] == 0.0
    assert result["beyond_one"]["drawn"] > 0.15
    assert "| 0.5 |" in intensity.curve_markdown(result)


def test_curve_flags_an_expression_that_fades_in_the_middle():
    subjects = [2, 7]
    model = DrawingModel(subjects, curve=lambda a: a if a != 0.5 else 0.1)
    result = intensity.intensity_curve(model, subjects, SEED, [0, 0.25, 0.5, 1])
    assert result["monotone"]["drawn"] is False
    assert result["faces_monotone"] == 0.0


def test_curve_refuses_bad_arguments():
    model = DrawingModel([1], curve=lambda a: a)
    with pytest.raises(intensity.IntensityCurveError, match="increase from 0"):
        intensity.intensity_curve(model, [1], SEED, [0.5, 1])
    with pytest.raises(intensity.IntensityCurveError, match="contain 1.0"):
        intensity.intensity_curve(model, [1], SEED, [0, 0.5])
    with pytest.raises(intensity.IntensityCurveError, match="'angry'"):
        intensity.intensity_curve(model, [1], SEED, [0, 1], expressions=["angry"])
    with pytest.raises(intensity.IntensityCurveError, match="method"):
        intensity.intensity_curve(model, [1], SEED, [0, 1], method="warp")


@pytest.fixture(scope="module")
def demo_model():
    from mlc_keras import weights
    from mlc_keras.inference.loading import load_model_for_synthesis

    if "synthetic_demo_64" not in weights.names():
        pytest.skip("the shipped synthetic_demo_64 model is not installed")
    return load_model_for_synthesis("synthetic_demo_64"), weights.info("synthetic_demo_64")


def test_shipped_synthetic_model_grows_its_expressions_monotonically(demo_model):
    """The library's intensity on the shipped demo model, held-out faces:
    0 is the input, the drawn geometry and the judge's p(target) grow from 0
    to 1 for every expression and keep growing to 1.25."""
    model, info = demo_model
    held_out = [int(s[1:]) for s in info["provenance"]["held_out_subjects"]][:4]
    seed = info["options"]["seed"]
    # the judge: real renders of identities outside the model's 120 subjects
    judge = intensity.train_judge(range(120, 150), seed, model.resolution,
                                  tuple(model.expressions), epochs=10)
    result = intensity.intensity_curve(model, held_out, seed, [0, 0.25, 0.5, 0.75, 1, 1.25],
                                       judge=judge)
    assert result["overall"]["input_change"][0] <= 2.0
    assert result["monotone"] == {"drawn": True, "p_target": True}, intensity.curve_markdown(result)
    overall = result["overall"]
    assert overall["drawn"][4] - overall["drawn"][0] > 0.3  # the geometry really moves
    assert overall["p_target"][4] - overall["p_target"][0] > 0.3
    assert result["beyond_one"]["drawn"] >= -intensity.DRAWN_TOLERANCE
    assert result["beyond_one"]["p_target"] >= -intensity.PROBABILITY_TOLERANCE
