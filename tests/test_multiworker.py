"""Multi-worker training: TF_CONFIG validation, the local launcher, and two
workers on 127.0.0.1 that train exactly like one worker on the same global
batch, with only the chief writing the run folder and its checkpoint
resuming in a single-worker run."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tiny import CONFIGS, REPO_ROOT, tiny_overrides
from mlc_keras.config import make_config
from mlc_keras.training import launcher, multiworker

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT}


def cluster(index=0, workers=2, kind="worker"):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{2000 + i}" for i in range(workers)]},
                       "task": {"type": kind, "index": index}})


def test_tf_config_is_read_and_the_chief_is_worker_0():
    assert multiworker.read_tf_config({}) is None
    assert multiworker.read_tf_config({"TF_CONFIG": "  "}) is None
    first = multiworker.read_tf_config({"TF_CONFIG": cluster(0)})
    second = multiworker.read_tf_config({"TF_CONFIG": cluster(1)})
    assert first.num_tasks == 2 and first.is_chief and not second.is_chief
    with_chief = json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                             "task": {"type": "worker", "index": 0}})
    assert not multiworker.read_tf_config({"TF_CONFIG": with_chief}).is_chief


@pytest.mark.parametrize("value,message", [
    ("{not json", "not valid JSON"),
    ('["a"]', "not a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["h:1", "h:2"]}}', 'no "task"'),
    (cluster(index=2), "task index 2 is out of range: the cluster has 2 'worker' task(s)"),
    (cluster(index=-1), "task index -1 is out of range"),
    (cluster(kind="chief"), "task type 'chief' is not in the cluster"),
    ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "'ps' in the cluster"),
    ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}',
     '"host:port"'),
])
def test_malformed_tf_config_is_one_error_naming_it(value, message):
    with pytest.raises(multiworker.ClusterError, match="^TF_CONFIG: ") as e:
        multiworker.read_tf_config({"TF_CONFIG": value})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_auto_picks_the_multi_worker_strategy_for_a_cluster(monkeypatch):
    import tensorflow as tf

    from mlc_keras.training.runtime import make_strategy

    # Once TensorFlow runs in a process, creating the strategy is refused, with a message that
    # shows auto chose it (and no server starts); one worker alone stays on one device.
    tf.config.list_logical_devices("CPU")  # starts TensorFlow's runtime in this process
    monkeypatch.setenv("TF_CONFIG", cluster(0))
    with pytest.raises(multiworker.ClusterError, match="--strategy=multi_worker: TensorFlow was "
                                                       "already running"):
        make_strategy("auto", 4)
    monkeypatch.setenv("TF_CONFIG", cluster(0, workers=1))
    assert make_strategy("auto", 4).num_replicas_in_sync == 1


def test_bad_tf_config_stops_train_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "mlc_keras.train", f"--flagfile={CONFIGS}/tiny.flags",
         "--workdir=/nonexistent/never_written"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=300, env={**ENV, "TF_CONFIG": cluster(index=5)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: TF_CONFIG: task index 5 is out of range: the cluster has 2")


def test_launcher_ports_and_tf_configs():
    ports = launcher.free_ports(3)
    assert len(set(ports)) == 3
    configs = [json.loads(c) for c in launcher.tf_configs(ports)]
    assert [c["task"]["index"] for c in configs] == [0, 1, 2]
    assert configs[2]["cluster"]["worker"] == [f"127.0.0.1:{p}" for p in ports]
    for c in configs:
        assert multiworker.read_tf_config({"TF_CONFIG": json.dumps(c)}) is not None


def test_launcher_stops_every_worker_when_one_fails(tmp_path):
    fake = tmp_path / "fake_python"  # stands in for the interpreter: worker 1 fails, 0 hangs
    fake.write_text(f"#!{sys.executable}\n"
                    "import json, os, sys, time\n"
                    "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
                    "print('started', index, sys.argv[1:4], flush=True)\n"
                    "time.sleep(0.5)\n"
                    "sys.exit(3) if index == 1 else time.sleep(120)\n")
    fake.chmod(0o755)
    out = io.StringIO()
    start = time.time()
    code = launcher.launch(2, ["--workdir=w"], stream=out, python=str(fake))
    assert code == 3 and time.time() - start < 30
    text = out.getvalue()
    assert "[worker 0] started 0 ['-m', 'mlc_keras.train', '--workdir=w']" in text
    assert "[worker 1] started 1" in text
    assert "[launch] worker 1 exited with status 3; stopping the others" in text


def test_launch_command_help_and_usage():
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.launch", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=ENV)
    first = (proc.stdout + proc.stderr).strip().splitlines()[0]
    assert first.startswith("python -m mlc_keras.launch --") and "[" not in first
    assert len(first) <= 100
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.launch", "--workers=2"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode != 0 and "give the training flags after --" in proc.stderr


def launch(workdir, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "mlc_keras.launch", "--workers=2", "--",
         f"--flagfile={CONFIGS}/tiny.flags", f"--workdir={workdir}", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)


def test_two_workers_train_like_one_and_the_chief_checkpoint_resumes(tmp_path, capsys):
    from mlc_keras.training.build import build_gan
    from mlc_keras.training.checkpoints import load_run_generator
    from mlc_keras.training.loop import train

    # SGD: Adam's first steps move every weight by about its learning rate whatever the
    # gradient's size, so a float-noise gradient could flip a weight's step (and it would hide
    # a gradient scaled by the worker count).
    sgd = {"optimizer": "sgd", "g_lr": 0.02, "d_lr": 0.02, "critic_lr": 0.02}
    workdir = tmp_path / "two"
    proc = launch(workdir, "--deterministic", *[f"--{k}={v}" for k, v in sgd.items()])
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = proc.stdout
    assert "[worker 0] Starting a new run" in out and "(worker0 of 2 workers)" in out
    assert "[worker 1] Trained to step 4" in out and "[worker 0] Trained to step 4" in out
    assert "[worker 1] step" not in out  # progress: the chief's only
    # the chief alone wrote the run folder: one metrics record per step, not two
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert sorted(os.listdir(workdir / "samples")) == ["step_0000002.png", "step_0000004.png"]
    assert not os.path.exists(multiworker.scratch_dir(str(workdir), "worker1"))

    # one worker, same seed and global batch: the same generator within float tolerance
    config = make_config(**tiny_overrides(tmp_path, deterministic=True, **sgd))
    initial = build_gan(config).generator.get_weights()
    single = train(config)
    assert single["step"] == 4
    generator, _ = load_run_generator(str(workdir))
    ours, theirs = generator.get_weights(), single["gan"].generator.get_weights()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert sum(not np.allclose(a, b) for a, b in zip(initial, ours)) > 10  # it really trained

    capsys.readouterr()
    resumed = train(make_config(**tiny_overrides(tmp_path, workdir=str(workdir), train_steps=6,
                                                 strategy="one_device", **sgd)))
    assert f"Resuming from {workdir}/checkpoints/ckpt-4 at step 4" in capsys.readouterr().out
    assert resumed["step"] == 6
    assert os.path.exists(workdir / "checkpoints" / "ckpt-6.index")


def _children(pid):
    """{task index: pid} of the launcher's worker processes."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            found[json.loads(env[b"TF_CONFIG"])["task"]["index"]] = int(entry)
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_killed_worker_stops_the_job_and_a_restart_resumes(tmp_path, victim):
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "mlc_keras.launch", "--workers=2", "--",
            f"--flagfile={CONFIGS}/tiny.flags", f"--workdir={workdir}", "--train_steps=400",
            "--checkpoint_every=2", "--summary_every=50"]
    job = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=ENV)
    try:
        deadline = time.time() + 400
        while not (workdir / "checkpoints" / "ckpt-4.index").exists():
            assert time.time() < deadline and job.poll() is None, "no checkpoint was written"
            time.sleep(0.5)
        os.kill(_children(job.pid)[victim], signal.SIGKILL)
        out, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 128 + signal.SIGKILL, out[-3000:]
    assert f"worker {victim} exited with status 137; stopping the others" in out
    saved = int(os.path.basename(
        __import__("tensorflow").train.latest_checkpoint(str(workdir / "checkpoints"))).split("-")[1])
    args[-3] = f"--train_steps={saved + 2}"
    again = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"Resuming from {workdir}/checkpoints/ckpt-{saved} at step {saved}" in again.stdout
    assert f"[worker 1] Resuming from {workdir}/checkpoints/ckpt-{saved}" in again.stdout
    assert os.path.exists(workdir / "checkpoints" / f"ckpt-{saved + 2}.index")


@pytest.mark.slow
def test_two_workers_stream_a_tfrecord_set(tmp_path):
    from mlc_keras.data import tfrecord

    records = tfrecord.convert(make_config(**tiny_overrides(tmp_path)), str(tmp_path / "set"),
                               shards=4)
    workdir = tmp_path / "run"
    proc = launch(workdir, "--dataset=tfrecord", f"--data_dir={os.path.dirname(records.path)}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "[worker 1] Trained to step 4" in proc.stdout
    assert os.path.exists(workdir / "checkpoints" / "ckpt-4.index")
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_workers_that_see_different_run_folders_stop_with_one_error(tmp_path, monkeypatch):
    from mlc_keras.training.loop import train

    monkeypatch.chdir(REPO_ROOT)  # configs/tiny.flags includes configs/base.flags

    workdir, elsewhere = tmp_path / "run", tmp_path / "not_shared"
    train(make_config(**tiny_overrides(tmp_path, train_steps=2)))  # the chief's folder: ckpt-2
    fake = tmp_path / "python"  # worker 1 is given another --workdir, as on an unshared disk
    fake.write_text(f"#!{sys.executable}\n"
                    "import json, os, sys\n"
                    "args = sys.argv[1:]\n"
                    "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 1:\n"
                    f"    args = [a.replace({str(workdir)!r}, {str(elsewhere)!r}) for a in args]\n"
                    f"os.execv({sys.executable!r}, [{sys.executable!r}] + args)\n")
    fake.chmod(0o755)
    out = io.StringIO()
    code = launcher.launch(2, [f"--flagfile={CONFIGS}/tiny.flags", f"--workdir={workdir}"],
                           stream=out, python=str(fake), env=ENV)
    assert code == 2, out.getvalue()[-3000:]
    errors = [line for line in out.getvalue().splitlines() if "error:" in line]
    assert any("error: the workers restored different checkpoints (steps 2, 0 in worker order)"
               in line for line in errors), errors
