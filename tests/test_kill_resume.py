"""A tiny run killed with SIGKILL at 5 moments (fixed seed) and resumed each
time ends with the same weights as an uninterrupted run. Slow (seven process
starts): python -m pytest -q -m slow tests/test_kill_resume.py"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tiny import CONFIGS, REPO_ROOT

STEPS = 12


def command(workdir):
    return [sys.executable, "-m", "mlc_keras.train", f"--flagfile={CONFIGS}/tiny.flags",
            f"--workdir={workdir}", f"--train_steps={STEPS}", "--checkpoint_every=1",
            "--sample_every=0", "--summary_every=1", "--deterministic", "--verbose=2"]


def run(workdir, kill_at=None):
    """Runs the command to the end, or SIGKILLs it ``delay`` seconds after it
    printed step ``step`` (``kill_at=(step, delay)``: the moment lands
    anywhere in the next step, a checkpoint save included)."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    proc = subprocess.Popen(command(workdir), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if kill_at is None:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:]
        return out
    step, delay = kill_at
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
            time.sleep(delay)
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    return "".join(seen)


def final_generator_weights(workdir):
    folder = os.path.join(workdir, "checkpoints")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("net..generator.."))
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(tmp_path):
    straight = tmp_path / "straight"
    run(straight)
    killed = tmp_path / "killed"
    rng = np.random.default_rng(11)
    steps = sorted(rng.choice(np.arange(1, STEPS), 5, replace=False))
    delays = rng.uniform(0.0, 0.5, 5)
    for i, (step, delay) in enumerate(zip(steps, delays)):
        out = run(killed, kill_at=(int(step), float(delay)))
        if i:
            assert "Resuming from" in out
    out = run(killed)
    assert "Resuming from" in out
    expected, got = final_generator_weights(straight), final_generator_weights(killed)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
