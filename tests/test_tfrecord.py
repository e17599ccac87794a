"""TFRecord sets: the writer keeps every pair and pixel, the streamed input is
deterministic, resumable and split across workers by shard, training reads
it without decoding the set into memory, and a missing or damaged manifest
or shard is one clear error."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tiny import CONFIGS, REPO_ROOT, tiny_overrides
from mlc_keras.config import make_config
from mlc_keras.data import pipeline, tfrecord
from mlc_keras.data.prepare import prepare_data, select_pairs

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("records")
    config = make_config(**tiny_overrides(tmp))
    records = tfrecord.convert(config, str(tmp / "set"), shards=3, test_shards=1)
    return config, records, tmp


def take(ds, n):
    return [{k: v.numpy() for k, v in batch.items()} for batch in ds.take(n)]


def pair_hashes(batches):
    """One hash per (source, target) image pair of every batch."""
    out = []
    for b in batches:
        for s, t in zip(b["source"], b["target"]):
            out.append(hashlib.sha1(s.tobytes() + t.tobytes()).hexdigest())
    return out


def test_manifest_counts_shards_and_split(converted):
    config, records, _ = converted
    selected = select_pairs(config)
    m = json.loads(open(records.path).read())
    assert m["format"] == tfrecord.FORMAT and m["resolution"] == 32
    assert m["expressions"] == list(config.expressions)
    assert [s["file"] for s in m["shards"]["train"]] == [
        f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sum(s["records"] for s in m["shards"]["train"]) == len(selected.train_pairs) == 28
    assert [s["records"] for s in m["shards"]["train"]] == [10, 9, 9]  # dealt round-robin
    assert m["split"] == {"train": list(selected.train_subjects),
                          "test": list(selected.test_subjects)}
    assert records.num_test_pairs == len(selected.test_pairs)
    assert sum(m["counts"]["train"]["per_target_expression"].values()) == 28


def test_records_rebuild_the_same_pairs_and_pixels(converted):
    config, records, _ = converted
    selected = select_pairs(config)
    pairs, images = records.load_split("train")
    root = os.path.dirname(selected.manifest)
    key = {p: os.path.relpath(p, root) for p in selected.train_pairs.paths}
    want = {(key[selected.train_pairs.paths[s]], key[selected.train_pairs.paths[t]])
            for s, t in zip(selected.train_pairs.src, selected.train_pairs.tgt)}
    assert {(pairs.paths[s], pairs.paths[t]) for s, t in zip(pairs.src, pairs.tgt)} == want
    decoded = pipeline.decode_images(selected.train_pairs.paths, 32)
    by_key = {key[p]: decoded[i] for i, p in enumerate(selected.train_pairs.paths)}
    for i, k in enumerate(pairs.paths):  # PNG: lossless, the in-memory path's pixels exactly
        np.testing.assert_array_equal(images[i], by_key[k])
    labels = dict(zip(pairs.paths, pairs.labels))
    assert all(labels[key[p]] == lab for p, lab in zip(selected.train_pairs.paths,
                                                        selected.train_pairs.labels))
    # the in-memory path of a TFRecord set (what evaluation reads) is the same data
    memory = prepare_data(make_config(**tiny_overrides(
        converted[2], dataset="tfrecord", data_dir=os.path.dirname(records.path))))
    assert len(memory.train_pairs) == 28 and memory.train_images.shape == (28, 32, 32, 3)


def test_stream_contract_determinism_and_resume(converted):
    _, records, _ = converted
    full = take(records.training_dataset(4, seed=3), 10)
    assert full[0]["source"].shape == (4, 32, 32, 3) and full[0]["source"].dtype == np.float32
    assert full[0]["target_label"].dtype == np.int32 and full[0]["source_label"].dtype == np.int32
    assert all(-1 <= b["source"].min() and b["target"].max() <= 1 for b in full)
    again = take(records.training_dataset(4, seed=3), 10)
    resumed = take(records.training_dataset(4, seed=3, start_record=6 * 4), 4)
    other = take(records.training_dataset(4, seed=4), 10)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["source"], b["source"])
    for a, b in zip(full[6:], resumed):  # crosses the epoch boundary at record 28
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not all(np.array_equal(a["target"], b["target"]) for a, b in zip(full, other))


def test_an_epoch_visits_every_pair_once_and_flips_both_images(converted):
    _, records, _ = converted
    epoch = pair_hashes(take(records.training_dataset(4, seed=0, flip=False), 7))
    pairs, images = records.load_split("train")
    everything = {hashlib.sha1(pipeline.tf_to_float(images[s]).numpy().tobytes()
                               + pipeline.tf_to_float(images[t]).numpy().tobytes()).hexdigest()
                  for s, t in zip(pairs.src, pairs.tgt)}
    assert len(epoch) == 28 and set(epoch) == everything
    flipped = take(records.training_dataset(4, seed=0, flip=True), 7)
    plain = take(records.training_dataset(4, seed=0, flip=False), 7)
    n_flipped = 0
    for f, p in zip(flipped, plain):
        for i in range(4):
            src_flipped = np.array_equal(f["source"][i], p["source"][i][:, ::-1])
            tgt_flipped = np.array_equal(f["target"][i], p["target"][i][:, ::-1])
            assert src_flipped == tgt_flipped or np.array_equal(f["source"][i], p["source"][i])
            n_flipped += int(src_flipped and not np.array_equal(f["source"][i], p["source"][i]))
    assert 3 < n_flipped < 25


@pytest.mark.parametrize("pipelines", [2, 4])
def test_workers_read_disjoint_shares_that_cover_the_set(converted, pipelines):
    _, records, _ = converted
    # 3 shards: 2 pipelines read shards {0, 2} and {1}; 4 pipelines keep every 4th record
    sizes = [19, 9] if pipelines == 2 else [7, 7, 7, 7]
    shares = [pair_hashes(take(records.training_dataset(1, seed=0, flip=False,
                                                        num_pipelines=pipelines, pipeline_id=i), n))
              for i, n in enumerate(sizes)]
    assert all(len(set(s)) == len(s) for s in shares)
    assert sum(len(s) for s in shares) == len(set().union(*shares)) == 28


def test_config_must_match_the_set(converted):
    config, records, tmp = converted
    folder = os.path.dirname(records.path)
    base = tiny_overrides(tmp, dataset="tfrecord", data_dir=folder)
    with pytest.raises(tfrecord.TFRecordError, match="--expressions=neutral,angry"):
        tfrecord.open_set(folder, make_config(**{**base, "expressions": "neutral,happy"}))
    with pytest.raises(tfrecord.TFRecordError, match="stored at 32 px, smaller than --resolution=64"):
        tfrecord.open_set(folder, make_config(**{**base, "resolution": 64, "critic_levels": "16,32"}))
    with pytest.raises(tfrecord.TFRecordError, match="--identity_pairs=True"):
        tfrecord.open_set(folder, make_config(**{**base, "identity_pairs": False}))
    smaller = tfrecord.open_set(folder, make_config(**{**base, "resolution": 16, "critic_levels": "8",
                                                       "g_downsamples": 1}))
    assert take(smaller.training_dataset(2, seed=0), 1)[0]["source"].shape == (2, 16, 16, 3)


def damaged_copy(records, tmp_path, how):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(os.path.dirname(records.path), folder)
    shard = folder / "train-00001-of-00003.tfrecord"
    if how == "no manifest":
        os.remove(folder / tfrecord.MANIFEST_NAME)
    elif how == "manifest":
        (folder / tfrecord.MANIFEST_NAME).write_text('{"format": "mlc_keras.tfrecord_pairs", "ver')
    elif how == "missing shard":
        os.remove(shard)
    elif how == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:1000])
    elif how == "flipped bytes":
        data = bytearray(shard.read_bytes())
        for i in range(2000, 2400):
            data[i] ^= 0x5A
        shard.write_bytes(bytes(data))
    return folder


@pytest.mark.parametrize("how,message", [
    ("no manifest", "no TFRecord manifest"),
    ("manifest", "damaged TFRecord manifest (not readable JSON"),
    ("missing shard", "train-00001-of-00003.tfrecord: shard listed in"),
    ("truncated shard", "train-00001-of-00003.tfrecord: damaged shard (1,000 bytes; the manifest"),
])
def test_missing_or_damaged_sets_are_named(converted, tmp_path, how, message):
    _, records, _ = converted
    folder = damaged_copy(records, tmp_path, how)
    with pytest.raises(tfrecord.TFRecordError) as e:
        tfrecord.open_set(str(folder))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_damaged_manifest_is_one_line_from_the_command_line(converted, tmp_path):
    _, records, _ = converted
    folder = damaged_copy(records, tmp_path, "manifest")
    proc = subprocess.run(
        [sys.executable, "-m", "mlc_keras.train", f"--flagfile={CONFIGS}/tiny.flags",
         f"--workdir={tmp_path}/run", "--dataset=tfrecord", f"--data_dir={folder}", "--dry_run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tfrecords.json: damaged TFRecord manifest" in errors[0]


def test_training_streams_the_set_without_decoding_it(converted, tmp_path, monkeypatch, capsys):
    from mlc_keras.training.loop import dry_run, train

    config, records, _ = converted
    folder = os.path.dirname(records.path)

    def no_table(*args, **kwargs):
        raise AssertionError("the streamed path must not decode the set into memory")

    monkeypatch.setattr(pipeline, "decode_images", no_table)
    streamed = make_config(**tiny_overrides(tmp_path, dataset="tfrecord", data_dir=folder,
                                            train_steps=2))
    summary = dry_run(streamed)
    assert summary["train_pairs"] == 28 and summary["train_images"] == 28
    assert summary["train_pairs_per_target_expression"]["happy"] == 4
    result = train(streamed)
    assert result["step"] == 2
    run = tmp_path / "run"
    assert os.path.exists(run / "checkpoints" / "ckpt-2.index")
    assert sorted(os.listdir(run / "samples")) == ["step_0000002.png"]
    assert json.loads((run / "split.json").read_text())["test"] == list(records.test_subjects)


def test_a_damaged_shard_stops_training_with_one_error(converted, tmp_path):
    from mlc_keras.training.loop import train

    _, records, _ = converted
    folder = damaged_copy(records, tmp_path, "flipped bytes")
    manifest = json.loads((folder / tfrecord.MANIFEST_NAME).read_text())
    assert manifest["shards"]["train"][1]["bytes"] == os.path.getsize(
        folder / "train-00001-of-00003.tfrecord")  # same size: only reading finds it
    config = make_config(**tiny_overrides(tmp_path, dataset="tfrecord", data_dir=str(folder),
                                          train_steps=8, num_samples=0))
    with pytest.raises(tfrecord.TFRecordError, match="a TFRecord shard is damaged"):
        train(config)


def test_to_tfrecord_command(tmp_path):
    cache_before = os.path.exists(os.path.join(REPO_ROOT, "data"))
    args = [sys.executable, "-m", "mlc_keras.data.to_tfrecord", f"--flagfile={CONFIGS}/tiny.flags",
            f"--output={tmp_path}/set", "--shards=2", "--image_format=jpeg"]
    proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {tmp_path}/set/tfrecords.json" in proc.stdout
    assert json.loads((tmp_path / "set" / "tfrecords.json").read_text())["image_format"] == "jpeg"
    assert os.path.exists(os.path.join(REPO_ROOT, "data")) == cache_before  # no cache left behind
    again = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert again.returncode == 2 and "already holds a TFRecord set" in again.stderr
    assert "Traceback" not in again.stderr
    helped = subprocess.run([sys.executable, "-m", "mlc_keras.data.to_tfrecord", "--help"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=ENV)
    first = (helped.stdout + helped.stderr).strip().splitlines()[0]
    assert first.startswith("python -m mlc_keras.data.to_tfrecord --") and "[" not in first
    assert len(first) <= 100
