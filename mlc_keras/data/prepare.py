"""prepare_data(config): the data set ``--dataset`` names, split, paired and decoded for training."""

import dataclasses
import logging

from mlc_keras.data import pipeline, sources
from mlc_keras.data.manifest import read_manifest

log = logging.getLogger("mlc_keras")


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


def prepare_data(config):
    """Manifest -> split -> pairs -> decoded images, validated before training."""
    records = read_manifest(sources.manifest_for(config))
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
    test_pairs, skipped_test = ((None, []) if not test_subjects else pipeline.build_pairs(
        records, vocab, test_subjects, config.source_expression, config.identity_pairs,
        config.skip_bad_images))
    train_images = pipeline.decode_images(train_pairs.paths, config.resolution)
    test_images = (pipeline.decode_images(test_pairs.paths, config.resolution)
                   if test_pairs is not None else None)
    return PreparedData(
        train_pairs, train_images, test_pairs, test_images, train_subjects, test_subjects,
        tuple(skipped) + tuple(skipped_test), len(bad), sources.get(config.dataset).attribution)
