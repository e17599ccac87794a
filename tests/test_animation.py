"""Intensity, blends and animation through synthesize: the --expressions /
--intensity syntax, intensity 0 gives back the photo at full resolution,
intensity columns in the grid, the GIF's frames, and the one-line errors.
Real faces come from the London set (skipped with a reason when absent)."""

import os

import numpy as np
import pytest
from PIL import Image

from conftest import london_dir  # the aligner fixture is in conftest too
from mlc_keras.config import make_config
from mlc_keras.expressions import UnknownExpressionError
from mlc_keras.inference import loading, synthesize
from mlc_keras.inference.edits import Edit, parse_intensities, resolve_edits
from mlc_keras.inference.loading import SynthesisError
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,surprised", import_resolution=64)
VOCAB = ("neutral", "happy", "surprised")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    generator = build_generator(make_config(**TINY)).build_for_inputs()
    path = str(tmp_path_factory.mktemp("g") / "g.keras")
    generator.save(path)
    return loading.load_model_for_synthesis(path)


def photo():
    return os.path.join(london_dir(), "neutral_front", "001_03.jpg")


def test_expression_and_intensity_syntax():
    assert [e.label for e in resolve_edits("happy,Smiling,surprised", VOCAB)] == [
        "happy", "surprised"]
    blend = resolve_edits("happy:0.6,surprised:0.4", VOCAB)
    assert [e.label for e in blend] == ["happy0.6+surprised0.4"]
    np.testing.assert_allclose(blend[0].target(VOCAB), [0, 0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(resolve_edits("happy:3,surprised:2", VOCAB)[0].target(VOCAB),
                               [0, 0.6, 0.4], rtol=1e-6)
    columns = resolve_edits("happy:0.6,surprised:0.4;neutral", VOCAB, "0,0.5")
    assert [e.label for e in columns] == ["happy0.6+surprised0.4_0", "happy0.6+surprised0.4_0.5",
                                          "neutral_0", "neutral_0.5"]
    assert [e.label for e in resolve_edits("all", VOCAB, 1.25)] == [
        "neutral_1.25", "happy_1.25", "surprised_1.25"]
    assert parse_intensities("0, 0.25,1") == (0.0, 0.25, 1.0) and parse_intensities(None) == (1.0,)
    for bad, message in [("happy:x", "must be a number"), ("happy:-1", "positive number"),
                         ("happy:0", "positive number")]:
        with pytest.raises(SynthesisError, match=message):
            resolve_edits(bad, VOCAB)
    with pytest.raises(UnknownExpressionError, match="'angry'.*neutral, happy, surprised"):
        resolve_edits("happy:0.5,angry:0.5", VOCAB)
    for bad in ("2.5", "-0.1", "half", "nan"):
        with pytest.raises(SynthesisError, match="--intensity"):
            parse_intensities(bad)
    kept = [Edit((("happy", 1.0),), 0.3)]
    assert resolve_edits(kept, VOCAB, "0,1") == kept


def test_intensity_zero_returns_the_photo_and_columns_grow(aligner, model):
    result = synthesize.synthesize_photo(model, photo(), "happy", paste_back=True,
                                         aligner=aligner, intensity="0,0.5,1")
    assert result.expressions == ["happy_0", "happy_0.5", "happy"]
    original = result.photo.astype(np.float32)
    diffs = [np.abs(result.pasted(label).astype(np.float32) - original).mean()
             for label in result.expressions]
    face = result.faces[0]
    assert diffs[0] <= 2.0  # mean |difference| over the photo at full resolution, in 1/255
    np.testing.assert_array_equal(face.composites["happy_0"], face.full_crop)
    assert diffs[0] < diffs[1] < diffs[2], diffs
    # the grid: input + one column per intensity
    grid = result.grid()
    r, gap = model.resolution, synthesize.GRID_GAP
    assert grid.shape[1] == 4 * r + 3 * gap


def test_frames_write_a_gif_from_the_photo_to_the_expression(aligner, model, tmp_path):
    out = tmp_path / "anim"
    code = synthesize.run_synthesis(model, photo(), "happy:0.6,surprised:0.4", output=str(out),
                                    paste_back=True, aligner=aligner, frames=5, mp4=False,
                                    identity_guard=False)
    assert code == 0
    written = sorted(os.listdir(out))
    assert written == ["001_03_happy0.6+surprised0.4.gif"]
    gif = Image.open(out / written[0])
    assert gif.n_frames == 5
    gif.seek(0)
    first = np.asarray(gif.convert("RGB"), np.float32)
    source = np.asarray(Image.open(photo()).convert("RGB"), np.float32)
    assert first.shape == source.shape
    # GIF palettes quantise colours: the first frame is the photo within that
    assert np.abs(first - source).mean() < 6.0
    with pytest.raises(SynthesisError, match="--frames=1: an animation needs 2 to 120"):
        synthesize.run_synthesis(model, photo(), "happy", output=str(out), frames=1)
    with pytest.raises(SynthesisError, match="give one value"):
        synthesize.run_synthesis(model, photo(), "happy", output=str(out), frames=4,
                                 intensity="0.5,1")
