"""--stages: a staged recipe as one resumable command (training/stages.py)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from tiny import tiny_overrides
from mlc_keras.config import ConfigError, make_config
from mlc_keras.inference.loading import load_generator
from mlc_keras.training import loop
from mlc_keras.training.stages import parse_stages, stage_configs, train_stages


@pytest.mark.parametrize("text, message", [
    ("expression_weight", "stage 1: 'expression_weight' is not name=value"),
    ("train_steps=2; no_such_option=1", "stage 2: unknown option 'no_such_option'"),
    ("train_steps=2; expressions=neutral,happy", "stage 2: --expressions is fixed"),
    ("train_steps=two", "stage 1: a value of the wrong type"),
    ("train_steps=2; gan_loss=nonsense", "--stages: stage 2: --gan_loss"),
])
def test_a_bad_stage_is_named_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        stage_configs(make_config(**tiny_overrides(tmp_path, stages=text)))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_stages_apply_their_overrides_cumulatively(tmp_path):
    config = make_config(**tiny_overrides(
        tmp_path, init_generator="start.keras",
        stages="expression_weight=1 train_steps=3;  ; --mask_sparsity_weight=5 train_steps=2"))
    assert parse_stages(config.stages) == [{"expression_weight": "1", "train_steps": "3"},
                                           {"mask_sparsity_weight": "5", "train_steps": "2"}]
    first, second = stage_configs(config)
    assert (first.expression_weight, first.mask_sparsity_weight, first.train_steps) == (1.0, 0.0, 3)
    assert (second.expression_weight, second.mask_sparsity_weight, second.train_steps) == (1.0, 5.0, 2)
    assert first.workdir == os.path.join(config.workdir, "stage1")
    assert second.workdir == os.path.join(config.workdir, "stage2")
    assert (first.init_generator, second.init_generator) == ("start.keras", "")
    assert first.stages == second.stages == ""
    assert first.lr_decay_start == config.lr_decay_start  # everything else is the command's


def _g_weights(model):
    return [w.numpy() for w in model.weights]


def test_staged_run_continues_g_resumes_and_loads_its_last_stage(tmp_path, capsys):
    config = make_config(**tiny_overrides(
        tmp_path, train_steps=2, checkpoint_every=2, num_samples=0,
        stages="train_steps=4; mask_sparsity_weight=5 train_steps=2"))
    calls = []

    def killed(stage):  # the first sitting is killed after stage 1's step-2 checkpoint
        calls.append(stage)
        loop.train(dataclasses.replace(stage, train_steps=2))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_stages(config, killed)
    assert not (tmp_path / "run" / "stage1" / "generator.keras").exists()
    killed_record = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert "running" in killed_record["stages"][0]

    def killed_as_stage_2_starts(stage):  # the second sitting
        calls.append(stage)
        if stage.workdir.endswith("stage2"):
            raise KeyboardInterrupt
        return loop.train(stage)

    with pytest.raises(KeyboardInterrupt):
        train_stages(config, killed_as_stage_2_starts)
    stage1_g = tmp_path / "run" / "stage1" / "generator.keras"
    assert stage1_g.is_file()
    assert calls[0].init_generator == "" and calls[2].init_generator == str(stage1_g)
    assert calls[0].data_cache == calls[2].data_cache == str(tmp_path / "data")
    # the stage's generator file is its final checkpoint's generator
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in _g_weights(load_generator(str(stage1_g)))]),
        np.concatenate([w.ravel() for w in _g_weights(load_generator(str(tmp_path / "run" / "stage1")))]))

    # the same command again: stage 1 is not trained again, stage 2 starts from its G
    result = loop.train(config)
    out = capsys.readouterr().out
    assert "Already trained to step 4" in out and "G starts from" in out
    record = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert [s["folder"] for s in record["stages"]] == ["stage1", "stage2"]
    first, second = (s["sittings"] for s in record["stages"])
    assert first[0]["killed"] and first[0]["steps_to"] == 2 and first[0]["seconds"] > 0
    assert first[1]["steps_to"] == 4 and "killed" not in first[1]
    assert len(second) == 1 and second[0]["steps_to"] == 2  # the kill before it saved nothing
    assert all("running" not in s for s in record["stages"])
    assert result["seconds"] == pytest.approx(
        sum(x["seconds"] for s in record["stages"] for x in s["sittings"]))
    stage2 = json.loads((tmp_path / "run" / "stage2" / "options.json").read_text())
    assert stage2["mask_sparsity_weight"] == 5.0 and stage2["stages"] == ""
    # a staged folder loads (and so exports and evaluates) as its last stage
    last = _g_weights(load_generator(str(tmp_path / "run")))
    for a, b in zip(last, _g_weights(load_generator(str(tmp_path / "run" / "stage2")))):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(
        last, _g_weights(load_generator(str(stage1_g)))))  # stage 2 did train G
    # and once more: nothing left to train, nothing recorded twice
    loop.train(config)
    again = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert again["stages"] == record["stages"]


def test_ship_model_takes_a_staged_folders_seconds_from_stages_json(tmp_path):
    """scripts/ship_model.py records every stage's training seconds (all
    sittings) for a --stages folder, and nothing staged for a plain one."""
    import sys

    from tiny import REPO_ROOT

    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    import ship_model

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "options.json").write_text("{}")
    assert ship_model.staged_provenance(str(plain)) == (None, None)
    staged = tmp_path / "staged"
    (staged / "stage2").mkdir(parents=True)
    (staged / "stage2" / "options.json").write_text("{}")
    (staged / "stages.json").write_text(json.dumps({"stages": [
        {"folder": "stage1", "overrides": {}, "train_steps": 4,
         "sittings": [{"steps_to": 2, "seconds": 10.5}, {"steps_to": 4, "seconds": 9.0}]},
        {"folder": "stage2", "overrides": {"expression_weight": "1"}, "train_steps": 6,
         "sittings": [{"steps_to": 6, "seconds": 30.0}]}]}))
    total, stages = ship_model.staged_provenance(str(staged))
    assert total == 49.5
    assert [(s["folder"], s["sittings"], s["seconds"]) for s in stages] == [
        ("stage1", 2, 19.5), ("stage2", 1, 30.0)]
    assert stages[1]["overrides"] == {"expression_weight": "1"}
