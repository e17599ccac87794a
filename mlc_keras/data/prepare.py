"""prepare_data(config): the data set ``--dataset`` names, split, paired and decoded for training.

``select_pairs`` stops before decoding (the TFRecord writer streams from
it); ``prepare_training_data`` is what train() reads: the decoded set, or
for a streamed source (``--dataset=tfrecord``) the opened TFRecordSet.
"""

import dataclasses
import logging
import os

import tensorflow as tf

from mlc_keras.data import pipeline, sources
from mlc_keras.data.manifest import read_landmarks, read_manifest

log = logging.getLogger("mlc_keras")


@dataclasses.dataclass
class SelectedPairs:
    """The split and the pairs of a data set, no image decoded yet."""

    train_pairs: pipeline.PairSet
    test_pairs: pipeline.PairSet
    train_subjects: tuple
    test_subjects: tuple
    skipped_subjects: tuple
    skipped_images: int
    attribution: str = None
    manifest: str = None  # the source's manifest CSV


@dataclasses.dataclass
class PreparedData:
    train_pairs: pipeline.PairSet
    train_images: object  # uint8 [N, R, R, 3]
    test_pairs: pipeline.PairSet
    test_images: object
    train_subjects: tuple
    test_subjects: tuple
    skipped_subjects: tuple
    skipped_images: int
    attribution: str = None

    streaming = False

    @property
    def num_train_pairs(self):
        return len(self.train_pairs)

    @property
    def num_test_pairs(self):
        return len(self.test_pairs) if self.test_pairs is not None else 0

    def training_dataset(self, global_batch, seed, start_step=0, flip=True, flow_target=False,
                         flow_fold=False):
        """pipeline.training_dataset over the decoded set. Under several
        workers each one builds the whole stream and keeps its share of every
        global batch (AutoShardPolicy.DATA), so the stream is the one a single
        worker would see. ``flow_target``: each element also carries its
        pair's landmark motion (the pairs must carry landmarks), folded along
        the lip line where the mouth closes when ``flow_fold``."""
        flows = None
        if flow_target:
            flows = pipeline.pair_flows(self.train_pairs, self.train_images.shape[1],
                                        fold=flow_fold)
            if flow_fold:
                log.info("--flow_target_fold: %d of %d training pairs' flow targets folded "
                         "along the lip line (the mouth closes)",
                         pipeline.count_closing(self.train_pairs), len(self.train_pairs))
        ds = pipeline.training_dataset(self.train_pairs, self.train_images, global_batch, seed,
                                       start_step=start_step, flip=flip, flows=flows)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def held_out_sources(self, count):
        """Sample-grid inputs from the test pairs (training pairs without a test split)."""
        if self.test_pairs is not None:
            return pipeline.held_out_sources(self.test_pairs, self.test_images, count)
        return pipeline.held_out_sources(self.train_pairs, self.train_images, count)


def select_pairs(config):
    """Manifest -> checked images -> split -> pairs, validated; nothing decoded."""
    manifest = sources.manifest_for(config)
    records = read_manifest(manifest)
    bad = pipeline.check_images([r.path for r in records], skip_bad=config.skip_bad_images)
    if bad:
        log.warning("skipping %d unreadable image(s), e.g. %s", len(bad), sorted(bad)[0])
        records = [r for r in records if r.path not in bad]
    train_subjects, test_subjects = pipeline.split_subjects(records, config.test_fraction, config.seed,
                                                             config.test_subjects)
    vocab = tuple(config.expressions)
    train_pairs, skipped = pipeline.build_pairs(
        records, vocab, train_subjects, config.source_expression, config.identity_pairs,
        config.skip_bad_images)
    if config.open_mouth_targets or config.closed_mouth_targets:
        _, points = read_landmarks(manifest, train_pairs.paths)
        before = len(train_pairs)
        train_pairs, dropped = pipeline.keep_mouth_targets(
            train_pairs, pipeline.mouth_openness(points), config.mouth_open_threshold,
            open_ids=[vocab.index(e) for e in config.open_mouth_targets],
            closed_ids=[vocab.index(e) for e in config.closed_mouth_targets])
        for kind, classes, other in (("open", config.open_mouth_targets, "closed"),
                                     ("closed", config.closed_mouth_targets, "apart")):
            if classes:
                log.info("--%s_mouth_targets=%s: %d of %d training pairs dropped (target's lips %s)",
                         kind, ",".join(classes), dropped[kind], before, other)
    test_pairs, skipped_test = ((None, []) if not test_subjects else pipeline.build_pairs(
        records, vocab, test_subjects, config.source_expression, config.identity_pairs,
        config.skip_bad_images))
    return SelectedPairs(train_pairs, test_pairs, train_subjects, test_subjects,
                         tuple(skipped) + tuple(skipped_test), len(bad),
                         sources.get(config.dataset).attribution, os.path.abspath(manifest))


def open_stream(config):
    """The TFRecordSet of a streamed source, opened and checked against ``config``."""
    from mlc_keras.data import tfrecord

    return tfrecord.open_set(sources.manifest_for(config), config)


def prepare_data(config):
    """Manifest -> split -> pairs -> decoded images, validated before training.
    A streamed source is rebuilt in memory from its records' pair keys (for
    evaluation and comparison; training streams it)."""
    if sources.get(config.dataset).streaming:
        records = open_stream(config)
        train_pairs, train_images = records.load_split("train")
        test_pairs, test_images = records.load_split("test")
        return PreparedData(train_pairs, train_images, test_pairs, test_images,
                            records.train_subjects, records.test_subjects, records.skipped_subjects,
                            records.skipped_images, records.attribution)
    s = select_pairs(config)
    if config.flow_target_weight:
        size, points = read_landmarks(s.manifest, s.train_pairs.paths)
        s.train_pairs = dataclasses.replace(s.train_pairs, points=points, crop_size=size)
    train_images = pipeline.decode_images(s.train_pairs.paths, config.resolution)
    test_images = (pipeline.decode_images(s.test_pairs.paths, config.resolution)
                   if s.test_pairs is not None else None)
    return PreparedData(s.train_pairs, train_images, s.test_pairs, test_images, s.train_subjects,
                        s.test_subjects, s.skipped_subjects, s.skipped_images, s.attribution)


def prepare_training_data(config):
    """What train() reads: a TFRecordSet for a streamed source (nothing decoded
    up front), else the decoded PreparedData."""
    if sources.get(config.dataset).streaming:
        return open_stream(config)
    return prepare_data(config)
