"""scripts/precision_learning.py: its verdict on "bfloat16 learns like float32"
and its flag checks."""

import os
import sys

import pytest

from tiny import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import precision_learning  # noqa: E402


def verdict(results, seeds=(0, 1)):
    args = precision_learning.parse_args([f"--seeds={','.join(map(str, seeds))}", "--steps=10"])
    text, summary = precision_learning.report(args, results, None, {})
    return text, summary


def test_a_precision_gap_within_the_seed_spread_counts_as_the_same_learning():
    text, summary = verdict({"float32_s0": {64: 0.10, 32: 0.08}, "float32_s1": {64: 0.12, 32: 0.09},
                             "bfloat16_s0": {64: 0.11, 32: 0.08}, "bfloat16_s1": {64: 0.13, 32: 0.09}})
    assert summary[64]["within"] is True and summary[32]["within"] is True
    assert summary[64]["gap"] == pytest.approx(0.01) and summary[64]["seed_range"] == pytest.approx(0.02)
    assert "NO" not in text


def test_a_gap_larger_than_the_seed_spread_is_reported_as_not_matching():
    _, summary = verdict({"float32_s0": {64: 0.10}, "float32_s1": {64: 0.11},
                          "bfloat16_s0": {64: 0.20}, "bfloat16_s1": {64: 0.21}})
    assert summary[64]["within"] is False


def test_one_seed_gives_no_verdict():
    text, summary = verdict({"float32_s0": {64: 0.10}, "bfloat16_s0": {64: 0.30}}, seeds=(0,))
    assert summary[64]["within"] is None and "one seed" in text


@pytest.mark.parametrize("argv, message", [(["--seeds=a"], "--seeds"), (["--steps=0"], "--steps")])
def test_bad_flags_exit_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        precision_learning.parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_serving_check_reports_each_input_kind_against_the_2_255_target():
    args = precision_learning.parse_args(["--seeds=0", "--steps=10"])
    checks = [{"inputs": "8 uniform-noise images", "max_255": 1.5, "p999_255": 0.9, "mean_255": 0.1,
               "share_over_2_255": 0.0},
              {"inputs": "16 held-out images", "max_255": 7.75, "p999_255": 2.1, "mean_255": 0.12,
               "share_over_2_255": 0.0012}]
    text, _ = precision_learning.report(args, {"float32_s0": {64: 0.1}, "bfloat16_s0": {64: 0.1}},
                                        checks, {})
    lines = [line for line in text.splitlines() if "SavedModel variant" in line]
    assert len(lines) == 2
    assert "8 uniform-noise images" in lines[0] and lines[0].endswith("within 2/255: met).")
    assert "16 held-out images" in lines[1] and "NOT met" in lines[1] and "7.75/255" in lines[1]
