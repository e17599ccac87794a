"""Sharded TFRecords of training pairs: the format, the writer, and the streamed training input.

One record per PAIR holds both images encoded (PNG or JPEG at the set's
resolution), their expression ids, the subject and the two image keys, so
training needs no image table in memory and the pairs can be rebuilt
exactly. A folder holds ``train-NNNNN-of-MMMMM.tfrecord`` and
``test-...`` shards and ``tfrecords.json`` (written last), the manifest:
format, resolution, expressions, pairing options, split, shards with their
record counts and byte sizes, counts per target expression, attribution.

The training stream (``TFRecordSet.training_dataset``) reads each input
pipeline's own shards (worker i of W: shards i, i+W, ...), interleaved,
shuffled by shard order and within blocks of SHUFFLE_BUFFER records,
decoded in parallel and prefetched; its memory is bounded by these
buffers, not by the set's size. Every order is drawn by stateless ops from
(seed, pipeline, epoch), so the stream is a function of (seed, position)
and a resumed run skips to its position. (tf.data's sliding shuffle buffer
would need its state, or TensorFlow's global seed, to resume exactly.)

May import mlc_keras.data (pipeline, manifest), errors and images; no models, no training.
"""

import json
import os

import numpy as np
import tensorflow as tf

from mlc_keras.data.pipeline import DataError, PairSet, _decode, decode_image_bytes, square_resize
from mlc_keras.images import read_json, tf_to_float, write_json_atomic

MANIFEST_NAME = "tfrecords.json"
FORMAT = "mlc_keras.tfrecord_pairs"
VERSION = 1
IMAGE_FORMATS = ("png", "jpeg")
SPLITS = ("train", "test")
SHUFFLE_BUFFER = 1024  # records (pairs) shuffled together, per block, by each input pipeline
CYCLE_LENGTH = 8  # shards read at once by each input pipeline

FEATURES = {
    "source/image": tf.io.FixedLenFeature([], tf.string),
    "target/image": tf.io.FixedLenFeature([], tf.string),
    "source/label": tf.io.FixedLenFeature([], tf.int64),
    "target/label": tf.io.FixedLenFeature([], tf.int64),
    "subject": tf.io.FixedLenFeature([], tf.string),
    "source/key": tf.io.FixedLenFeature([], tf.string),
    "target/key": tf.io.FixedLenFeature([], tf.string),
}


class TFRecordError(DataError):
    """A TFRecord set (its manifest or a shard) is missing, damaged or does not fit the config."""


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def pair_example(source, target, source_label, target_label, subject, source_key, target_key):
    """One pair as a serialized tf.train.Example (images: encoded bytes)."""
    def feature(value):
        if isinstance(value, (int, np.integer)):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        if isinstance(value, str):
            value = value.encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    values = {"source/image": source, "target/image": target, "source/label": source_label,
              "target/label": target_label, "subject": subject, "source/key": source_key,
              "target/key": target_key}
    return tf.train.Example(features=tf.train.Features(
        feature={k: feature(v) for k, v in values.items()})).SerializeToString()


def _encoded_images(paths, resolution, image_format):
    """Yields each file of ``paths`` decoded, centre-cropped, area-resized to
    ``resolution`` (as the in-memory path does) and encoded again, in order."""
    def encode(path):
        image = _decode(path, resolution)
        return tf.io.encode_png(image) if image_format == "png" else tf.io.encode_jpeg(image, quality=95)

    if not paths:
        return
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(64)
    yield from ds.as_numpy_iterator()


def write_split(folder, split, pairs, keys, num_shards, resolution, image_format="png", seed=0):
    """Writes the pairs of ``pairs`` (a PairSet) into ``num_shards`` shards.

    Subjects are written in an order drawn from ``seed``; a subject's images
    are decoded once and only while its pairs are written (memory: one
    subject), its pairs dealt round-robin over the shards. Each shard is
    written under a temporary name and renamed when complete.
    Returns [{"file", "records", "bytes"}] per shard.
    """
    num_shards = max(1, min(int(num_shards), len(pairs))) if len(pairs) else 1
    by_subject = {}
    for p in range(len(pairs)):
        by_subject.setdefault(pairs.subjects[int(pairs.src[p])], []).append(p)
    subjects = sorted(by_subject)
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    image_order, owner = [], []
    for subject in order:
        used = sorted({int(i) for p in by_subject[subject] for i in (pairs.src[p], pairs.tgt[p])})
        image_order += used
        owner += [subject] * len(used)
    names = [shard_name(split, i, num_shards) for i in range(num_shards)]
    temps = [os.path.join(folder, f".tmp-{name}") for name in names]
    writers = [tf.io.TFRecordWriter(t) for t in temps]
    counts = [0] * num_shards
    dealt = 0
    encoded = {}

    def flush(subject):
        nonlocal dealt
        for p in by_subject[subject]:
            s, t = int(pairs.src[p]), int(pairs.tgt[p])
            record = pair_example(encoded[s], encoded[t], int(pairs.labels[s]), int(pairs.labels[t]),
                                  subject, keys[s], keys[t])
            writers[dealt % num_shards].write(record)
            counts[dealt % num_shards] += 1
            dealt += 1
        encoded.clear()

    try:
        images = _encoded_images([pairs.paths[i] for i in image_order], resolution, image_format)
        for k, raw in enumerate(images):
            encoded[image_order[k]] = raw
            if k + 1 == len(image_order) or owner[k + 1] != owner[k]:
                flush(owner[k])
        for w in writers:
            w.close()
        shards = []
        for name, temp, count in zip(names, temps, counts):
            os.replace(temp, os.path.join(folder, name))
            shards.append({"file": name, "records": count,
                           "bytes": os.path.getsize(os.path.join(folder, name))})
        return shards
    finally:
        for w, temp in zip(writers, temps):
            w.close()
            if os.path.exists(temp):
                os.remove(temp)


def _per_target(pairs, expressions):
    if pairs is None:
        return {e: 0 for e in expressions}
    counts = np.bincount(pairs.tgt_label, minlength=len(expressions))
    return {e: int(counts[i]) for i, e in enumerate(expressions)}


def write_set(folder, selected, config, num_shards, test_shards=1, image_format="png", key_root=None,
              source=None):
    """Writes the pairs of ``selected`` (prepare.SelectedPairs) as a TFRecord set
    in ``folder`` and its manifest last; returns the manifest path.

    ``key_root``: image keys are paths relative to it (the source manifest's folder).
    """
    if image_format not in IMAGE_FORMATS:
        raise TFRecordError(f"--image_format={image_format}: expected png or jpeg")
    if os.path.exists(os.path.join(folder, MANIFEST_NAME)):
        raise TFRecordError(f"--output={folder}: already holds a TFRecord set ({MANIFEST_NAME}); "
                            "choose another folder or delete it")
    os.makedirs(folder, exist_ok=True)
    expressions = list(config.expressions)
    manifest = {
        "format": FORMAT, "version": VERSION, "resolution": int(config.resolution),
        "image_format": image_format, "expressions": expressions,
        "source_expression": config.source_expression, "identity_pairs": bool(config.identity_pairs),
        "seed": int(config.seed), "source": source or {"dataset": config.dataset},
        "attribution": selected.attribution,
        "split": {"train": list(selected.train_subjects), "test": list(selected.test_subjects)},
        "skipped_subjects": list(selected.skipped_subjects),
        "skipped_images": int(selected.skipped_images),
        "shards": {}, "counts": {},
    }
    for split, pairs, shards in (("train", selected.train_pairs, num_shards),
                                 ("test", selected.test_pairs, test_shards)):
        if pairs is None or not len(pairs):
            manifest["shards"][split] = []
            manifest["counts"][split] = {"pairs": 0, "images": 0,
                                         "per_target_expression": _per_target(None, expressions)}
            continue
        root = key_root or os.path.dirname(os.path.commonpath(
            [os.path.abspath(p) for p in pairs.paths]))
        keys = [os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/") for p in pairs.paths]
        manifest["shards"][split] = write_split(folder, split, pairs, keys, shards,
                                                config.resolution, image_format, config.seed)
        manifest["counts"][split] = {"pairs": len(pairs), "images": len(pairs.paths),
                                     "per_target_expression": _per_target(pairs, expressions)}
    path = os.path.join(folder, MANIFEST_NAME)
    write_json_atomic(path, manifest)
    return path


def _manifest_path(data_dir):
    return data_dir if data_dir.endswith(".json") else os.path.join(data_dir, MANIFEST_NAME)


def open_set(data_dir, config=None):
    """The TFRecordSet in ``data_dir`` (its folder or its tfrecords.json), its
    manifest and shards checked (present, the recorded byte size); with
    ``config``, also checked against the config and decoded at its resolution.
    Raises TFRecordError, one line naming the file and what is wrong."""
    path = _manifest_path(os.fspath(data_dir))
    label = f"--data_dir={data_dir}"
    if not os.path.isfile(path):
        raise TFRecordError(f"{label}: no TFRecord manifest {path!r} (write one with python -m "
                            "mlc_keras.data.to_tfrecord)")
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as e:
        raise TFRecordError(f"{path}: damaged TFRecord manifest (not readable JSON: "
                            f"{str(e).splitlines()[0]})") from None
    required = ("format", "version", "resolution", "image_format", "expressions", "split", "shards",
                "counts", "source_expression", "identity_pairs")
    missing = [k for k in required if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise TFRecordError(f"{path}: damaged TFRecord manifest (missing {', '.join(missing)})")
    if manifest["format"] != FORMAT or manifest["version"] != VERSION:
        raise TFRecordError(f"{path}: not a TFRecord manifest of this version ({manifest['format']!r} "
                            f"v{manifest['version']}; expected {FORMAT!r} v{VERSION})")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        shards = {split: list(manifest["shards"][split]) for split in SPLITS}
        for split in SPLITS:
            for shard in shards[split]:
                int(shard["records"]), int(shard["bytes"]), str(shard["file"])
    except (KeyError, TypeError, ValueError) as e:
        raise TFRecordError(f"{path}: damaged TFRecord manifest (shard list: {e!r})") from None
    if not shards["train"]:
        raise TFRecordError(f"{path}: the set has no training shards")
    for split in SPLITS:
        for shard in shards[split]:
            file = os.path.join(folder, shard["file"])
            if not os.path.isfile(file):
                raise TFRecordError(f"{file}: shard listed in {path} is missing")
            size = os.path.getsize(file)
            if size != int(shard["bytes"]):
                raise TFRecordError(f"{file}: damaged shard ({size:,} bytes; the manifest "
                                    f"records {int(shard['bytes']):,}): truncated or rewritten")
    records = TFRecordSet(folder, manifest, path)
    if config is not None:
        records.check_config(config)
    return records


class TFRecordSet:
    """An opened TFRecord set: what train() reads instead of an in-memory data set."""

    streaming = True

    def __init__(self, folder, manifest, path):
        self.folder = folder
        self.manifest = manifest
        self.path = path
        self.resolution = int(manifest["resolution"])
        split = manifest["split"]
        self.train_subjects = tuple(split.get("train", ()))
        self.test_subjects = tuple(split.get("test", ()))
        self.skipped_subjects = tuple(manifest.get("skipped_subjects", ()))
        self.skipped_images = int(manifest.get("skipped_images", 0))
        self.attribution = manifest.get("attribution")

    def count(self, split, what="pairs"):
        return int(self.manifest["counts"].get(split, {}).get(what, 0))

    @property
    def num_train_pairs(self):
        return self.count("train")

    @property
    def num_test_pairs(self):
        return self.count("test")

    def per_target_expression(self, split):
        return dict(self.manifest["counts"].get(split, {}).get("per_target_expression", {}))

    def files(self, split):
        return [os.path.join(self.folder, s["file"]) for s in self.manifest["shards"][split]]

    def check_config(self, config):
        """The config must train what the set holds: same expressions and pairing,
        a resolution no larger than the stored one (smaller ones are resized)."""
        m = self.manifest
        label = f"--data_dir={config.data_dir}"
        if list(config.expressions) != list(m["expressions"]):
            raise TFRecordError(f"{label}: the set holds the expressions {','.join(m['expressions'])}; "
                                f"train with --expressions={','.join(m['expressions'])} or convert "
                                "the data again")
        for name in ("source_expression", "identity_pairs"):
            if getattr(config, name) != m[name]:
                raise TFRecordError(f"{label}: the set was paired with --{name}={m[name]} (this "
                                    f"run: {getattr(config, name)}); convert again to change it")
        if config.resolution > m["resolution"]:
            raise TFRecordError(f"{label}: the set is stored at {m['resolution']} px, smaller than "
                                f"--resolution={config.resolution}; convert it at that resolution")
        self.resolution = int(config.resolution)

    def _decode(self, raw):
        image = decode_image_bytes(raw)
        if self.resolution != int(self.manifest["resolution"]):
            image = square_resize(image, self.resolution)
        image.set_shape([self.resolution, self.resolution, 3])
        return image

    def training_dataset(self, batch_size, seed, start_record=0, flip=True, num_pipelines=1,
                         pipeline_id=0):
        """The infinite training stream of one input pipeline (a worker).

        Yields dicts batched with ``batch_size`` (a per-pipeline batch) in the
        contract of pipeline.training_dataset. Pipeline i of P reads shards
        i, i+P, ... (every shard, keeping every P-th record, when there are
        fewer shards than pipelines). ``start_record``: records this pipeline
        has already consumed (a resumed run's position).
        """
        files = self.files("train")
        counts = [int(s["records"]) for s in self.manifest["shards"]["train"]]
        by_record = len(files) < num_pipelines
        if not by_record:
            files, counts = files[pipeline_id::num_pipelines], counts[pipeline_id::num_pipelines]
        total = sum(counts)
        epoch_size = len(range(pipeline_id, total, num_pipelines)) if by_record else total
        if epoch_size == 0:
            raise TFRecordError(f"{self.path}: {total} training pairs cannot feed {num_pipelines} "
                                "input pipelines")
        start_epoch, offset = divmod(int(start_record), epoch_size)
        names = tf.constant(files)
        cycle = min(CYCLE_LENGTH, len(files))

        def epoch(e):
            keys = tf.random.stateless_uniform([len(files)], seed=tf.stack([tf.constant(seed, tf.int64), e]))
            order = tf.data.Dataset.from_tensor_slices(tf.gather(names, tf.argsort(keys)))
            records = order.interleave(tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            if by_record:
                records = records.shard(num_pipelines, pipeline_id)

            def permute(block, records):
                # stateless: the same (seed, pipeline, epoch, block) gives the same order
                keys = tf.random.stateless_uniform(tf.shape(records), seed=tf.stack(
                    [tf.constant(seed * 1_000_003 + pipeline_id, tf.int64), e * 1_000_003 + block]))
                return tf.data.Dataset.from_tensor_slices(tf.gather(records, tf.argsort(keys)))

            return records.batch(SHUFFLE_BUFFER).enumerate().flat_map(permute)

        def parse(position, serialized):
            ex = tf.io.parse_single_example(serialized, FEATURES)
            source, target = self._decode(ex["source/image"]), self._decode(ex["target/image"])
            if flip:
                # one coin per (seed, pipeline, record): the same after a resume
                coin = tf.random.stateless_uniform([], seed=tf.stack(
                    [tf.constant(seed + 1, tf.int64), position * num_pipelines + pipeline_id]))
                source = tf.cond(coin < 0.5, lambda: tf.reverse(source, [1]), lambda: source)
                target = tf.cond(coin < 0.5, lambda: tf.reverse(target, [1]), lambda: target)
            return {"source": tf_to_float(source), "target": tf_to_float(target),
                    "target_label": tf.cast(ex["target/label"], tf.int32),
                    "source_label": tf.cast(ex["source/label"], tf.int32)}

        ds = tf.data.Dataset.range(start_epoch, 2 ** 62).flat_map(epoch).skip(offset)
        ds = ds.enumerate(start=int(start_record))
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    def _records(self, split):
        files = self.files(split)
        if not files:
            return None
        return tf.data.TFRecordDataset(files).map(
            lambda s: tf.io.parse_single_example(s, FEATURES))

    def held_out_sources(self, count):
        """Up to ``count`` source images of distinct subjects from the first
        records of the test shards (training shards when there are none):
        (float32 [K, R, R, 3] in [-1, 1], subject ids)."""
        records = self._records("test") or self._records("train")
        chosen, subjects = [], []
        for ex in records:
            subject = ex["subject"].numpy().decode("utf-8")
            if subject in subjects:
                continue
            subjects.append(subject)
            chosen.append(tf_to_float(self._decode(ex["source/image"])).numpy())
            if len(chosen) == count:
                break
        r = self.resolution
        return (np.stack(chosen) if chosen else np.zeros((0, r, r, 3), np.float32)), subjects

    def load_split(self, split):
        """(PairSet, uint8 [N, R, R, 3]) of one split rebuilt in memory from the
        pair keys (each image decoded once), or (None, None) when it is empty.
        For evaluation; training streams instead."""
        records = self._records(split)
        if records is None:
            return None, None
        index, raws, subjects, labels, src, tgt = {}, [], [], [], [], []
        for ex in records.as_numpy_iterator():
            for side in ("source", "target"):
                key = ex[f"{side}/key"].decode("utf-8")
                if key not in index:
                    index[key] = len(raws)
                    raws.append(ex[f"{side}/image"])
                    subjects.append(ex["subject"].decode("utf-8"))
                    labels.append(int(ex[f"{side}/label"]))
            src.append(index[ex["source/key"].decode("utf-8")])
            tgt.append(index[ex["target/key"].decode("utf-8")])
        images = tf.data.Dataset.from_tensor_slices(raws).map(
            self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
        images = np.concatenate([b.numpy() for b in images], 0)
        pairs = PairSet(tuple(index), tuple(subjects), np.array(labels, np.int32),
                        np.array(src, np.int32), np.array(tgt, np.int32))
        return pairs, images


def describe(records):
    """A short JSON summary of a TFRecordSet (for the command's output)."""
    m = records.manifest
    return json.dumps({"folder": records.folder, "resolution": m["resolution"],
                       "image_format": m["image_format"],
                       "shards": {s: len(m["shards"][s]) for s in SPLITS},
                       "pairs": {s: records.count(s) for s in SPLITS},
                       "subjects": {"train": len(records.train_subjects),
                                    "test": len(records.test_subjects)}})


def convert(config, output, shards, test_shards=1, image_format="png"):
    """``python -m mlc_keras.data.to_tfrecord``: the data set of ``config``
    (``--dataset``, its split and pairing) written as a TFRecord set in
    ``output``. The source is read through its manifest and streamed, one
    subject at a time; an importer's cache goes to ``--data_cache`` or, when
    none is given, to a temporary folder removed afterwards.
    Returns the opened TFRecordSet."""
    import dataclasses
    import tempfile

    from mlc_keras.data import sources
    from mlc_keras.data.prepare import select_pairs

    if sources.get(config.dataset).streaming:
        raise TFRecordError(f"--dataset={config.dataset}: is already a TFRecord set")
    if not output:
        raise TFRecordError("--output is required (the folder to write the shards to)")
    if shards < 1 or test_shards < 1:
        raise TFRecordError(f"--shards={shards} --test_shards={test_shards}: must be at least 1")
    if os.path.exists(output) and not os.path.isdir(output):
        raise TFRecordError(f"--output={output}: is a file, not a folder")
    with tempfile.TemporaryDirectory(prefix="mlc_keras_convert_") as scratch:
        if not config.data_cache and not config.workdir:
            config = dataclasses.replace(config, data_cache=scratch)
        selected = select_pairs(config)
        source = {"dataset": config.dataset, "data_dir": config.data_dir}
        path = write_set(output, selected, config, shards, test_shards, image_format,
                         key_root=os.path.dirname(selected.manifest), source=source)
    return open_set(path)
