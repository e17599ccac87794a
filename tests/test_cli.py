"""The command line: every command's --help opens with a one-line example,
and TensorFlow's C++ log lines are hidden unless asked for."""

import os
import subprocess
import sys

import pytest

from mlc_keras.training.runtime import NATIVE_LOG_LINE
from tiny import REPO_ROOT

COMMANDS = ("train", "export", "synthesize", "evaluate", "benchmark", "compare", "demo", "launch",
            "data.to_tfrecord")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_starts_with_a_one_line_example(command):
    """absl's --help prints the command module's docstring first (checked
    once through a real --help below); here every docstring is read."""
    import importlib

    module = importlib.import_module(f"mlc_keras.{command}")
    first = (module.__doc__ or "").strip().splitlines()[0]
    assert first.startswith(f"python -m mlc_keras.{command} --"), first
    assert len(first) <= 100 and "[" not in first, first  # runnable as written


def test_help_output_opens_with_that_example():
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.train", "--help"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    first = (proc.stdout + proc.stderr).strip().splitlines()[0]
    assert first.startswith("python -m mlc_keras.train --"), first


def test_native_log_pattern_spares_python_and_user_lines():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795908806.868683   25740 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1795908813.188250   25740 cuda_platform.cc:52] failed call to cuInit: X",
        "W0000 00:00:1795907506.249708   23333 dataset.cc:997] Input of GeneratorDatasetOp",
        "2026-11-28 10:00:00.123456: W tensorflow/core/grappler/x.cc:12] remapper failed",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
    ]
    kept = [
        "I1128 23:11:40.511080 140006924241792 loop.py:126] data: 160 train pairs",
        "error: --input=x.jpg: does not exist",
        "F0000 00:00:1795908813.188250   25740 x.cc:52] Check failed: fatal",
        "warning: photo.jpg: the synthesized face may not pass as the same person",
    ]
    assert all(NATIVE_LOG_LINE.match(line) for line in noise)
    assert not any(NATIVE_LOG_LINE.match(line) for line in kept)


SCRIPT = """
import os, sys
from mlc_keras.training.runtime import configure_cpu
configure_cpu()
os.write(2, b"E0000 00:00:1795908813.188250   25740 cuda_platform.cc:52] failed call to cuInit\\n")
os.write(2, b"a C++ line the user should see\\n")
import tensorflow as tf
print(float(tf.reduce_sum(tf.ones([3]))))
print("python stderr line", file=sys.stderr)
sys.stderr.flush()
import time; time.sleep(0.3)  # lets the filter thread forward the C++ line
"""


@pytest.mark.parametrize("show", [False, True])
def test_native_logs_are_hidden_by_default_and_shown_on_request(show):
    env = dict(os.environ)
    env.pop("MLC_KERAS_NATIVE_LOGS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if show:
        env["MLC_KERAS_NATIVE_LOGS"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3.0"
    assert "python stderr line" in proc.stderr
    assert "a C++ line the user should see" in proc.stderr
    assert ("failed call to cuInit" in proc.stderr) == show, proc.stderr


# -- TF_ONEDNN_ASSUME_FROZEN_WEIGHTS: on for inference, refused where anything trains


@pytest.fixture
def no_frozen_env(monkeypatch):
    from mlc_keras.training import runtime

    monkeypatch.setattr(runtime, "quiet_native_logs", lambda: False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # left as the process had it
    # setenv first so that the undo removes what configure_cpu sets (a bare
    # delenv of an absent variable records nothing): a leaked =1 would make
    # later tests in this worker train on stale filters
    monkeypatch.setenv(runtime.FROZEN_WEIGHTS, "0")
    monkeypatch.delenv(runtime.FROZEN_WEIGHTS)
    return runtime


def test_inference_processes_get_frozen_weights_unless_the_user_chose(no_frozen_env, monkeypatch):
    runtime = no_frozen_env
    note = runtime.configure_cpu(inference=True)
    assert os.environ[runtime.FROZEN_WEIGHTS] == "1" and runtime.FROZEN_WEIGHTS in note
    monkeypatch.setenv(runtime.FROZEN_WEIGHTS, "0")
    runtime.configure_cpu(inference=True)
    assert os.environ[runtime.FROZEN_WEIGHTS] == "0"
    runtime.configure_cpu()  # "0" is not a request for frozen weights: training may go on


def test_training_processes_refuse_frozen_weights(no_frozen_env, monkeypatch):
    runtime = no_frozen_env
    assert "FROZEN" not in runtime.configure_cpu()
    assert runtime.FROZEN_WEIGHTS not in os.environ  # training never sets it
    monkeypatch.setenv(runtime.FROZEN_WEIGHTS, "1")
    with pytest.raises(runtime.FrozenWeightsError, match="TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1"):
        runtime.configure_cpu()


@pytest.mark.parametrize("module", ["mlc_keras.train", "mlc_keras.evaluate", "mlc_keras.benchmark"])
def test_commands_that_train_exit_with_one_line_under_frozen_weights(module, tmp_path):
    env = {**os.environ, "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": "1"}
    proc = subprocess.run([sys.executable, "-m", module, f"--workdir={tmp_path / 'w'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1" in lines[0], proc.stderr
    assert not (tmp_path / "w").exists()  # nothing written


# -- bfloat16 where oneDNN has no bfloat16 kernels


def test_bfloat16_is_refused_only_where_onednn_lacks_its_kernels(monkeypatch):
    from mlc_keras.training import runtime

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    avx2, avx512 = {"avx2", "fma"}, {"avx2", "fma", "avx512f"}
    with pytest.raises(runtime.PrecisionError, match="no bfloat16 kernels for this CPU"):
        runtime.check_precision_kernels("bfloat16", flags=avx2)
    runtime.check_precision_kernels("bfloat16", flags=avx512)
    runtime.check_precision_kernels("bfloat16", flags=avx2 | {"avx_ne_convert"})
    runtime.check_precision_kernels("float32", flags=avx2)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    with pytest.raises(runtime.PrecisionError, match="ONEDNN_MAX_CPU_ISA=AVX2"):
        runtime.check_precision_kernels("bfloat16", flags=avx512)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # TensorFlow's own kernels run bfloat16
    runtime.check_precision_kernels("bfloat16", flags=avx2)


@pytest.mark.parametrize("module", ["mlc_keras.train", "mlc_keras.benchmark"])
def test_bfloat16_under_an_avx2_cap_exits_with_one_line(module, tmp_path):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env.pop("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", None)
    proc = subprocess.run([sys.executable, "-m", module, "--flagfile=configs/tiny.flags",
                           "--mixed_precision=bfloat16", f"--workdir={tmp_path / 'w'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--mixed_precision=bfloat16" in lines[0], proc.stderr
    assert not (tmp_path / "w").exists()  # nothing written
