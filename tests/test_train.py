"""End to end: the tiny preset trains, stops, resumes and matches an
uninterrupted run; divergence keeps the last good checkpoint; user errors
end with one clear line and no traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tiny import CONFIGS, REPO_ROOT, tiny_overrides
from mlc_keras.training import losses
from mlc_keras.config import make_config
from mlc_keras.training.loop import TrainingDiverged, train


def weights(gan):
    nets = [gan.generator, gan.discriminator] + gan.photo_critics + gan.variation_critics
    return [w for net in nets for w in net.get_weights()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    result = train(make_config(**tiny_overrides(tmp, deterministic=True)))
    return result, tmp


def test_tiny_run_writes_checkpoints_events_and_samples(uninterrupted):
    result, tmp = uninterrupted
    workdir = tmp / "run"
    assert result["step"] == 4
    assert sorted(os.listdir(workdir / "checkpoints")) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
        "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    options = json.loads((workdir / "options.json").read_text())
    assert options["resolution"] == 32 and options["critic_levels"] == [8, 16]
    split = json.loads((workdir / "split.json").read_text())
    assert split["test"] and not set(split["train"]) & set(split["test"])
    grid = np.asarray(Image.open(workdir / "samples" / "step_0000004.png"))
    # rows: 2 inputs x 3 levels; columns: the input + 7 expressions, 32 px cells
    assert grid.shape == (2 * 32 * 3, 8 * 32, 3)
    assert os.listdir(workdir / "events")


def test_resumed_run_matches_uninterrupted(uninterrupted, tmp_path, capsys):
    result, _ = uninterrupted
    overrides = tiny_overrides(tmp_path, deterministic=True)
    first = train(make_config(**{**overrides, "train_steps": 2}))
    assert first["step"] == 2
    second = train(make_config(**overrides))
    assert "Resuming from" in capsys.readouterr().out
    assert second["step"] == 4
    for a, b in zip(weights(second["gan"]), weights(result["gan"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # and the run really moved away from its initial weights
    fresh = make_config(**{**overrides, "workdir": str(tmp_path / "other"), "train_steps": 1})
    assert any(not np.allclose(a, b) for a, b in zip(weights(train(fresh)["gan"]),
                                                      weights(second["gan"])))


def test_changed_model_options_refuse_the_workdir(uninterrupted):
    _, tmp = uninterrupted
    with pytest.raises(ValueError, match="--g_channels: 8 -> 16"):
        train(make_config(**tiny_overrides(tmp, g_channels=16, train_steps=6)))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    overrides = tiny_overrides(tmp_path)
    train(make_config(**{**overrides, "train_steps": 2}))
    monkeypatch.setattr(losses, "l1_loss", lambda g, t: tf.fill([tf.shape(g)[0]], np.nan))
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at step 3.*ckpt-2"):
        train(make_config(**overrides))
    ckpts = tf.train.get_checkpoint_state(str(tmp_path / "run" / "checkpoints"))
    assert os.path.basename(ckpts.model_checkpoint_path) == "ckpt-2"
    reader = tf.train.load_checkpoint(ckpts.model_checkpoint_path)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mlc_keras.train", f"--flagfile={CONFIGS}/tiny.flags", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})


def test_tiny_flagfile_matches_test_overrides(tmp_path):
    from absl import flags

    from mlc_keras import config as config_lib

    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    args = fv.read_flags_from_files([f"--flagfile={CONFIGS}/tiny.flags"], force_gnu=False)
    fv(["prog"] + args)
    from_file = config_lib.config_from_flags(fv, workdir="w", data_cache="d", verbose=0)
    from_test = make_config(**tiny_overrides(tmp_path, workdir="w", data_cache="d"))
    assert from_file == from_test


@pytest.mark.parametrize("args,message", [
    (["--resolution=48"], "--resolution=48: must be a power of two"),
    (["--critic_levels=64"], "produces levels 32,16,8"),
    (["--dataset=manifest", "--data_dir=/nonexistent/data"], "no manifest CSV found"),
    (["--dataset=london", "--data_dir=/nonexistent/london"], "/nonexistent/london"),
    (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=3"], "not divisible by the 2"),
    (["--expressions=neutral,grumpy"], "unknown expression 'grumpy'"),
    (["--g_lr=nan"], "--g_lr=nan: must be a finite number"),
    (["--test_subjects=s9999"], "--test_subjects: s9999 not in the data set"),
    (["--workdir={tmp}/a_file"], "is a file, not a folder"),
])
def test_user_errors_are_one_clear_line(tmp_path, args, message):
    (tmp_path / "a_file").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli(f"--workdir={tmp_path}/run", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    # nothing of a run was written
    assert not os.path.exists(tmp_path / "run" / "options.json")
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_corrupt_image_is_named_before_training(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rows = ["path,subject,expression"]
    for subject in ("a", "b", "c"):
        for expr in ("neutral", "happy"):
            Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(images / f"{subject}_{expr}.png")
            rows.append(f"imgs/{subject}_{expr}.png,{subject},{expr}")
    (images / "b_happy.png").write_bytes(b"garbage")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    proc = run_cli(f"--workdir={tmp_path}/run", "--dataset=manifest", f"--data_dir={tmp_path}")
    assert proc.returncode == 2 and "b_happy.png" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_trained_run_exports_and_reloads(uninterrupted, tmp_path):
    from mlc_keras import load_generator

    result, tmp = uninterrupted
    workdir = str(tmp / "run")
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.export", f"--workdir={workdir}",
                           f"--output={tmp_path}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(tmp_path / "mlc" / "1" / "saved_model.pb")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    onehot = np.eye(7, dtype=np.float32)[[4, 6]]
    live = result["gan"].generator((x, onehot))[0].numpy()
    for source in (str(tmp_path / "mlc-1.keras"), workdir):
        np.testing.assert_allclose(load_generator(source)((x, onehot))[0].numpy(), live, atol=1e-5)
    loaded = tf.saved_model.load(str(tmp_path / "mlc" / "1"))
    out = loaded.signatures["serving_default"](images=tf.constant(x),
                                               expressions=tf.constant([4, 6], tf.int32))
    np.testing.assert_allclose(out["images"].numpy(), live, atol=1e-5)
    again = subprocess.run([sys.executable, "-m", "mlc_keras.export", f"--workdir={workdir}",
                            f"--output={tmp_path}", "--version=1"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_damaged_newest_checkpoint_falls_back_to_the_previous(uninterrupted, tmp_path):
    import shutil

    from mlc_keras.training.build import build_gan
    from mlc_keras.training.checkpoints import make_checkpoint, restore_latest

    _, tmp = uninterrupted
    run = tmp_path / "run"
    shutil.copytree(tmp / "run", run)
    data = run / "checkpoints" / "ckpt-4.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # killed mid-write
    gan = build_gan(make_config(**tiny_overrides(tmp_path)))
    manager = tf.train.CheckpointManager(make_checkpoint(gan), str(run / "checkpoints"),
                                         max_to_keep=3)
    restored = restore_latest(make_checkpoint(gan), manager)
    assert restored.endswith("ckpt-2")
    assert int(gan.g_optimizer.iterations.numpy()) == 2


def test_unusable_workdir_is_refused_before_anything_is_written(tmp_path):
    from mlc_keras.training.loop import WorkdirError

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WorkdirError, match="is a file, not a folder"):
        train(make_config(**tiny_overrides(tmp_path, workdir=str(a_file))))
    with pytest.raises(WorkdirError, match="cannot be created"):
        train(make_config(**tiny_overrides(tmp_path, workdir=str(a_file / "run"))))


def test_run_refused_by_its_data_does_not_block_the_corrected_command(tmp_path):
    from mlc_keras.data.manifest import ManifestError

    bad = tiny_overrides(tmp_path, dataset="manifest", data_dir=str(tmp_path / "missing"))
    with pytest.raises(ManifestError):
        train(make_config(**bad))
    assert not (tmp_path / "run" / "options.json").exists()
    assert train(make_config(**tiny_overrides(tmp_path, train_steps=1)))["step"] == 1
    assert (tmp_path / "run" / "options.json").exists()


def test_partial_checkpoints_of_a_killed_save_are_removed(tmp_path):
    from mlc_keras.training.loop import _remove_partial_checkpoints

    folder = tmp_path / "checkpoints"
    (folder / "ckpt-6_temp" / "part-00000-of-00001").mkdir(parents=True)
    (folder / "ckpt-4.index").write_bytes(b"i")
    (folder / "checkpoint").write_text("x")
    _remove_partial_checkpoints(str(folder))
    assert sorted(os.listdir(folder)) == ["checkpoint", "ckpt-4.index"]


class _Steps:
    """A stand-in for the GAN: the progress line reads only the step counter."""

    def __init__(self, step):
        self.step = step
        self.g_optimizer = self

    @property
    def iterations(self):
        return self

    def numpy(self):
        return np.int64(self.step)


@pytest.mark.parametrize("verbose,tty", [(1, False), (2, True), (1, True), (0, False)])
def test_progress_counts_real_steps_and_is_plain_off_a_terminal(verbose, tty):
    import io

    from mlc_keras.training.callbacks import ProgressLine

    class Stream(io.StringIO):
        def isatty(self):
            return tty

    stream = Stream()
    model = _Steps(200)  # a resumed run: starts at step 200
    progress = ProgressLine(300, verbose=verbose, every=50, stream=stream, interval=0.0)
    progress.set_model(model)
    progress.on_train_begin()
    for step in range(201, 301):
        model.step = step
        progress.on_train_batch_end(step, {"G/loss": 1.5, "D/loss": 0.7})
    progress.on_train_end()
    text = stream.getvalue()
    if verbose == 0:
        assert text == ""
        return
    assert "step 300/300" in text and "G 1.5" in text and "D 0.7" in text and "step 1/" not in text
    for line in text.replace("\r", "\n").splitlines():
        assert len(line.replace("\x1b[K", "")) <= 120
    if tty and verbose == 1:
        assert "\r" in text
    else:
        assert "\r" not in text and "\x1b" not in text
        assert text.splitlines() == [l for l in text.splitlines() if l.startswith("step ")]
        assert [l.split()[1] for l in text.splitlines()] == ["250/300", "300/300"]


def test_init_generator_copies_g_and_refuses_another_architecture(uninterrupted, tmp_path):
    from mlc_keras.training.build import build_generator
    from mlc_keras.training.loop import WorkdirError, init_generator

    result, _ = uninterrupted
    path = str(tmp_path / "g.keras")
    result["gan"].generator.save(path)
    config = make_config(**tiny_overrides(tmp_path, seed=7))
    fresh = build_generator(config)
    fresh.build_for_inputs()
    before = [w.copy() for w in fresh.get_weights()]
    init_generator(fresh, path)
    trained = result["gan"].generator.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, fresh.get_weights()))
    for a, b in zip(trained, fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    wider = build_generator(make_config(**tiny_overrides(tmp_path, g_channels=16)))
    wider.build_for_inputs()
    with pytest.raises(WorkdirError, match="init_generator=.*different architecture"):
        init_generator(wider, path)
    with pytest.raises(WorkdirError, match="no such file"):
        init_generator(fresh, str(tmp_path / "missing.keras"))


def test_progress_line_holds_four_figures_within_120_characters():
    import io

    from mlc_keras.training.callbacks import ProgressLine

    model = _Steps(0)
    stream = io.StringIO()
    progress = ProgressLine(10 ** 9, verbose=2, every=1, stream=stream)
    progress.set_model(model)
    progress.on_train_begin()
    logs = {"G/loss": 123456.789e10, "D/loss": -0.000123456789, "critic/loss": 5.0,
            "G/l1/128": 0.1, "E/loss": 0.3}
    model.step = 1
    progress.on_train_batch_end(1, logs)
    line = stream.getvalue().strip()
    assert len(line) <= 120, line
    assert "steps/s" in line and "ETA" in line and " G " in line and " D " in line
    assert "critic" not in line and "l1" not in line and "E/" not in line


def test_metrics_jsonl_has_one_record_per_logging_step(uninterrupted):
    from mlc_keras.training.callbacks import append_jsonl, read_jsonl

    result, tmp = uninterrupted
    path = os.path.join(result["workdir"], "metrics.jsonl")
    records = read_jsonl(path)
    config = make_config(**tiny_overrides(tmp))
    steps = [r["step"] for r in records]
    assert steps == list(range(config.summary_every, result["step"] + 1, config.summary_every))
    assert all("G/loss" in r and "D/loss" in r and "lr/g_optimizer" in r for r in records)
    # a line cut by a kill is closed; the next record stays readable
    partial = str(tmp / "partial.jsonl")
    with open(partial, "w") as f:
        f.write('{"step": 1}\n{"step": 2, "G/lo')
    append_jsonl(partial, {"step": 3})
    assert [r["step"] for r in read_jsonl(partial)] == [1, 3]


def test_dry_run_prints_config_and_data_and_trains_nothing(tmp_path):
    workdir = tmp_path / "dry"
    proc = subprocess.run(
        [sys.executable, "-m", "mlc_keras.train", f"--flagfile={CONFIGS}/tiny.flags",
         f"--workdir={workdir}", "--dry_run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert '"resolution": 16' in out or '"resolution":' in out
    assert "training subjects" in out and "per target expression" in out and "nothing trained" in out
    assert not (workdir / "checkpoints").exists() and not (workdir / "events").exists()
    # TensorFlow's C++ log lines are hidden by default
    assert "I0000" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr
    assert "cuInit" not in proc.stderr and "cuda" not in proc.stderr.lower()
