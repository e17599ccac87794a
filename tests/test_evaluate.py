"""Evaluation entry point: a tiny trained run is evaluated end to end; the
expression classifier is cached and reused, and learns the synthetic
expressions; user errors end with one clear line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tiny import REPO_ROOT, tiny_overrides
from mlc_keras.evaluation import classifier as clf_lib
from mlc_keras.config import make_config
from mlc_keras.evaluation.run import EvaluationError, evaluate_run
from mlc_keras.evaluation.metrics import FACE_FEATURES_NAME
from mlc_keras.data.prepare import prepare_data
from mlc_keras.training.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    config = make_config(**tiny_overrides(tmp, train_steps=2, synthetic_subjects=12,
                                          test_fraction=0.25))
    train(config)
    return tmp, config


@pytest.fixture(scope="module")
def evaluated(run):
    tmp, _ = run
    results = evaluate_run(str(tmp / "run"), classifier="small", classifier_epochs=1,
                           kid_subsets=5, two_sample_epochs=2)
    return tmp, results


def test_results_have_every_section_in_range(run, evaluated):
    tmp, results = evaluated
    out = tmp / "run" / "eval"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["step"] == 2 and on_disk["checkpoint"].endswith("ckpt-2")
    split = json.loads((tmp / "run" / "split.json").read_text())
    assert json.loads((out / "split.json").read_text()) == {"train": split["train"],
                                                           "test": split["test"]}
    data = prepare_data(run[1])
    test_expr = sorted({run[1].expressions[k] for k in data.test_pairs.labels[data.test_pairs.tgt]})
    c = on_disk["classification"]
    for part in ("real", "generated"):
        assert 0.0 <= c[part]["overall"] <= 1.0
        assert sorted(c[part]["per_expression"]) == test_expr
        for entry in c[part]["per_expression"].values():
            assert 0.0 <= entry["error"] <= 1.0 and entry["n"] > 0
    sources = len(set(data.test_pairs.src.tolist()))
    assert c["generated"]["n"] == sources * len(test_expr)
    fid = on_disk["fidelity"]
    assert fid["available"]
    assert -1.0 <= fid["ssim"]["mean"] <= 1.0
    assert 0.0 <= fid["l1"]["mean"] <= 2.0 and fid["psnr"]["mean"] > 0
    for section in ("identity", "realism"):
        assert on_disk[section]["features"] == FACE_FEATURES_NAME
    if on_disk["identity"]["available"]:
        ident = on_disk["identity"]
        for key in ("generated_vs_source", "same_person", "different_people"):
            assert ident[key]["mean"] >= 0 and ident[key]["n"] > 0
        kid = on_disk["realism"]
        assert kid["available"] and kid["kid_stderr"] >= 0 and kid["subsets"] == 5
        assert "FID" in kid["fid_note"]
    else:
        assert "pip install" in on_disk["identity"]["install"]
    md = (out / "results.md").read_text()
    assert "| expression | real held-out error |" in md and "| **overall** |" in md
    assert FACE_FEATURES_NAME in md
    assert "London" not in md  # synthetic run: no attribution line


def test_scalars_go_to_tensorboard(evaluated):
    import tensorflow as tf

    tmp, _ = evaluated
    tags = set()
    events = tmp / "run" / "events"
    for name in os.listdir(events):
        for event in tf.compat.v1.train.summary_iterator(str(events / name)):
            for value in event.summary.value:
                if value.tag.startswith("eval/"):
                    tags.add((value.tag, event.step))
    assert ("eval/classification/real/error", 2) in tags
    assert ("eval/ssim", 2) in tags
    for tag in ("eval/two_sample_accuracy", "eval/sharpness_ratio", "eval/judge/real_error",
                "eval/judge/generated_error"):
        assert (tag, 2) in tags, tag


def test_classifier_cache_is_written_and_reused(run, evaluated, tmp_path):
    tmp, first = evaluated
    info = first["classification"]["classifier"]
    path = info["path"]
    assert os.path.isfile(path)
    assert os.path.dirname(path) == str(tmp / "data")
    name = os.path.basename(path)
    assert name.startswith("classifier_synthetic-") and name.endswith("_small_32.keras")
    mtime = os.path.getmtime(path)
    second = evaluate_run(str(tmp / "run"), output=str(tmp_path / "again"), classifier="small",
                          classifier_epochs=1, kid_subsets=2, write_tensorboard=False,
                          two_sample_epochs=1)
    assert second["classification"]["classifier"]["cached"] is True
    assert os.path.getmtime(path) == mtime
    assert second["classification"]["real"] == first["classification"]["real"]
    assert os.path.isfile(tmp_path / "again" / "results.md")
    assert not [f for f in os.listdir(tmp / "data") if f.startswith(".tmp")]


@pytest.mark.slow  # long; python -m pytest -q -m slow tests
def test_cli_shares_one_classifier_cache_across_runs(run, tmp_path):
    tmp, _ = run
    shared = tmp_path / "classifiers"
    proc = subprocess.run(
        [sys.executable, "-m", "mlc_keras.evaluate", f"--workdir={tmp}/run",
         f"--output={tmp_path}/report", f"--classifier_cache={shared}", "--classifier=small",
         "--classifier_epochs=1", "--kid_subsets=2", "--two_sample_epochs=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "paper protocol" in proc.stdout and "disjoint-subject judge" in proc.stdout
    assert "two-sample test accuracy" in proc.stdout
    cached = [f for f in os.listdir(shared) if f.endswith("_small_32.keras")]
    assert len(cached) == 1
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert report["classification"]["classifier"]["path"] == str(shared / cached[0])


def test_classifier_beats_chance_on_held_out_real_faces(run):
    _, config = run
    data = prepare_data(config)
    model = clf_lib.train_classifier(data.train_images, data.train_pairs.labels,
                                     len(config.expressions), "small", epochs=25, seed=0)
    test = data.test_pairs
    predicted = clf_lib.predict_labels(model, data.test_images)
    accuracy = float(np.mean(predicted == test.labels))
    assert accuracy > 2.0 / len(config.expressions), accuracy  # chance is 1/7


def test_alexnet_builds_and_round_trips(tmp_path):
    import keras

    model = clf_lib.build_classifier("alexnet", 7, 32)
    assert len([l for l in model.features if isinstance(l, keras.layers.Conv2D)]) == 5
    assert len([l for l in model.head if isinstance(l, keras.layers.Dense)]) == 3
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="expected one of"):
        clf_lib.build_classifier("vgg", 7, 32)


def test_missing_workdir_is_a_clear_error(tmp_path):
    with pytest.raises(EvaluationError, match="no such folder"):
        evaluate_run(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="no options.json"):
        evaluate_run(str(tmp_path / "empty"))
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.evaluate",
                           f"--workdir={tmp_path}/nope"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no such folder" in proc.stderr and "Traceback" not in proc.stderr


def test_no_checkpoint_is_a_clear_error(run, tmp_path):
    tmp, _ = run
    import shutil

    shutil.copy(tmp / "run" / "options.json", tmp_path / "options.json")
    with pytest.raises(EvaluationError, match="no checkpoint"):
        evaluate_run(str(tmp_path))


def test_without_dlib_identity_and_kid_are_unavailable(run, evaluated, tmp_path, monkeypatch):
    from mlc_keras.evaluation import metrics
    from mlc_keras.data.align import MissingDependencyError

    def missing(self, images):
        raise MissingDependencyError("dlib not importable: pip install dlib-bin")

    monkeypatch.setattr(metrics.FaceEmbedder, "embed", missing)
    tmp, _ = evaluated
    results = evaluate_run(str(tmp / "run"), output=str(tmp_path), classifier="small",
                           classifier_epochs=1, write_tensorboard=False, two_sample_epochs=1)
    for section in ("identity", "realism"):
        assert results[section]["available"] is False
        assert results[section]["install"] == "pip install dlib-bin face_recognition_models"
    assert results["fidelity"]["available"]
    md = (tmp_path / "results.md").read_text()
    assert "unavailable" in md and FACE_FEATURES_NAME in md


@pytest.mark.parametrize("predicted,labels,expect", [
    ([1, 1, 1, 1], [0, 1, 0, 1], "one class for every real"),
    ([1, 0, 1, 0], [0, 1, 0, 1], "at or above chance"),
    ([0, 1, 0, 0], [0, 1, 0, 1], None),
])
def test_a_classifier_that_did_not_learn_is_flagged(predicted, labels, expect):
    from mlc_keras.evaluation.run import classifier_warning

    warning = classifier_warning(predicted, labels, num_classes=2)
    assert (warning is None) if expect is None else (expect in warning)


@pytest.mark.slow  # long; python -m pytest -q -m slow tests
def test_classifier_settings_are_part_of_the_cache(run, evaluated, tmp_path):
    tmp, first = evaluated
    assert first["classification"]["classifier"]["learning_rate"] == pytest.approx(2e-3)
    again = evaluate_run(str(tmp / "run"), output=str(tmp_path / "lr"), classifier="small",
                         classifier_epochs=1, classifier_lr=5e-4, kid_subsets=2,
                         write_tensorboard=False, two_sample_epochs=1)
    info = again["classification"]["classifier"]
    assert info["cached"] is False and info["learning_rate"] == pytest.approx(5e-4)


# ------------------------------------------------------------ honest realism metrics


def test_honest_metrics_are_in_range(run, evaluated):
    from mlc_keras.evaluation.realism import SUSPECT_NOTE
    from mlc_keras.evaluation.run import PAPER_PROTOCOL

    tmp, results = evaluated
    on_disk = json.loads((tmp / "run" / "eval" / "results.json").read_text())
    split = json.loads((tmp / "run" / "split.json").read_text())
    train, test = set(split["train"]), set(split["test"])
    data = prepare_data(run[1])
    pairs = data.test_pairs
    changed = sum(1 for s in sorted(set(pairs.src.tolist()))
                  for k in sorted(set(pairs.labels[pairs.tgt].tolist())) if k != pairs.labels[s])

    t = on_disk["two_sample"]
    assert t["available"], t
    assert 0.0 <= t["ci_low"] <= t["accuracy"] <= t["ci_high"] <= 1.0 and t["n_test"] > 0
    assert set(t["train_subjects"]) | set(t["test_subjects"]) <= test
    assert not set(t["train_subjects"]) & set(t["test_subjects"])

    sharp = on_disk["sharpness"]
    assert sharp["n"] == changed and sharp["mean"] > 0 and len(sharp["ratios"]) == changed

    judge = on_disk["expression_judge"]
    assert judge["available"], judge
    judged = set()
    for fold in judge["folds"]:
        assert not set(fold["train_subjects"]) & train  # never a generator-training subject
        assert set(fold["train_subjects"]) <= test and fold["train_images"] > 0
        assert not set(fold["train_subjects"]) & set(fold["judged_subjects"])
        judged |= set(fold["judged_subjects"])
    assert judged == test
    c = on_disk["classification"]
    assert c["protocol"] == PAPER_PROTOCOL
    for part in ("real", "generated"):
        assert 0.0 <= judge[part]["overall"] <= 1.0
        assert judge[part]["n"] == c[part]["n"]  # every image judged once, pooled
    assert sorted(judge["rate_ratio"]) == sorted(c["generated"]["per_expression"])
    for ratio in judge["rate_ratio"].values():
        assert 0.0 <= ratio["generated_rate"] <= 1.0 and 0.0 <= ratio["real_rate"] <= 1.0
        assert ratio["ratio"] is None or ratio["ratio"] >= 0.0

    md = (tmp / "run" / "eval" / "results.md").read_text()
    assert PAPER_PROTOCOL[0].upper() + PAPER_PROTOCOL[1:] in md
    for section in (c, judge):  # the note appears exactly when generated error < real error
        fooled = section["generated"]["overall"] < section["real"]["overall"]
        assert section["suspect"] == (SUSPECT_NOTE if fooled else "")
    assert (SUSPECT_NOTE in md) == bool(c["suspect"] or judge["suspect"])
    assert "two-sample test" in md and "Laplacian variance generated / source" in md

    ident = on_disk["identity"]
    if ident["available"]:
        v = ident["verification"]
        for key in ("generated_verification_rate", "real_verification_rate"):
            assert 0.0 <= v[key] <= 1.0
        assert v["generated_vs_source_mean"] >= 0 and v["threshold"] == 0.6
        assert v["n_generated"] == changed and "verification rate at 0.6" in md


def test_judge_refuses_generator_training_subjects():
    from mlc_keras.evaluation.realism import SubjectOverlapError
    from mlc_keras.evaluation.run import cross_fit_judge

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    judged = {"real": (images, groups)}
    preds, folds = cross_fit_judge(images, [0, 1] * 4, groups, judged, 2, ["x", "y"],
                                   arch="small", epochs=1)
    assert preds["real"].shape == (8,) and set(preds["real"].tolist()) <= {0, 1}
    assert sorted(folds[0]["train_subjects"] + folds[1]["train_subjects"]) == list("abcd")
    with pytest.raises(SubjectOverlapError, match="share"):
        cross_fit_judge(images, [0, 1] * 4, groups, judged, 2, ["a", "b", "c", "d"],
                        arch="small", epochs=1)
