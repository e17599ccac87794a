"""train(config): the whole training run as one library call.

Run folder (``config.workdir``):
  options.json      the resolved config (a resumed run must match it)
  split.json        train / test subjects
  checkpoints/      tf.train.CheckpointManager: every network, every optimizer
                    state (whose iteration counter is the global step), the RNG
  events/           TensorBoard scalars and sample grids
  samples/          step_XXXXXXX.png sample grids (+ ATTRIBUTION.txt for London)
"""

import dataclasses
import json
import logging
import os
import time

import tensorflow as tf

from mlc_keras import config as config_lib
from mlc_keras.errors import UserError
from mlc_keras.training.build import build_gan
from mlc_keras.training.callbacks import NaNGuard, PeriodicCheckpoint, SampleGrid, ScalarSummaries
from mlc_keras.data import pipeline
from mlc_keras.data.manifest import ManifestError, read_manifest
from mlc_keras.training.checkpoints import make_checkpoint, restore_latest
from mlc_keras.images import read_json, write_text_atomic
from mlc_keras.training.runtime import make_strategy, split_cpu

log = logging.getLogger("mlc_keras")

LONDON_ATTRIBUTION = (
    "Faces from the Face Research Lab London Set: DeBruine, L., & Jones, B. (2017). "
    "Face Research Lab London Set (Version 5). figshare. "
    "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)")


class TrainingDiverged(UserError, RuntimeError):
    """A loss became NaN or inf; the last good checkpoint is kept."""


class WorkdirError(UserError, ValueError):
    """The workdir holds a run that this config cannot continue."""


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


def manifest_for(config):
    """Runs the importer that ``--dataset`` names; returns a manifest path."""
    cache = pipeline.cache_dir_for(config)
    if config.dataset == "synthetic":
        from mlc_keras.data.synthetic import write_synthetic_dataset

        size = config.synthetic_resolution or config.resolution
        out = os.path.join(cache, f"synthetic_{config.synthetic_subjects}x{size}_seed{config.seed}")
        return write_synthetic_dataset(out, config.synthetic_subjects, size, seed=config.seed)
    if config.dataset == "london":
        from mlc_keras.data.london import import_london

        tag = "templates" if config.london_use_templates else "detector"
        out = os.path.join(cache, f"london_{config.import_resolution}_{tag}")
        return import_london(config.data_dir, out, resolution=config.import_resolution,
                             use_templates=config.london_use_templates,
                             skip_bad=config.skip_bad_images)
    path = config.data_dir
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.csv")
    if not os.path.isfile(path):
        raise ManifestError(f"--data_dir={config.data_dir}: no manifest CSV found at {path!r} "
                            "(columns path,subject,expression[,split])")
    return path


def prepare_data(config):
    """Manifest -> split -> pairs -> decoded images, validated before training."""
    records = read_manifest(manifest_for(config))
    bad = pipeline.check_images([r.path for r in records], skip_bad=config.skip_bad_images)
    if bad:
        log.warning("skipping %d unreadable image(s), e.g. %s", len(bad), sorted(bad)[0])
        records = [r for r in records if r.path not in bad]
    train_subjects, test_subjects = pipeline.split_subjects(records, config.test_fraction, config.seed)
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
        tuple(skipped) + tuple(skipped_test), len(bad),
        LONDON_ATTRIBUTION if config.dataset == "london" else None)


def _check_workdir(config):
    if not config.workdir:
        raise WorkdirError("--workdir is required")
    os.makedirs(config.workdir, exist_ok=True)
    options = os.path.join(config.workdir, "options.json")
    if os.path.exists(options):
        try:
            old = config_lib.from_dict(read_json(options))
        except (ValueError, json.JSONDecodeError) as e:
            raise WorkdirError(f"{options}: unreadable ({e}); use a new --workdir") from None
        diffs = config_lib.model_differences(old, config)
        if diffs:
            detail = "; ".join(f"--{d}: {getattr(old, d)!r} -> {getattr(config, d)!r}" for d in diffs)
            raise WorkdirError(
                f"--workdir={config.workdir} holds a run with other model/data options ({detail}); "
                "use a new --workdir or the same options")
    write_text_atomic(options, config_lib.to_json(config) + "\n")


def train(config):
    """Trains (or resumes) the run in ``config.workdir``; returns a summary dict."""
    _check_workdir(config)
    split_cpu(config.cpu_devices)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy, config.batch_size)
    if strategy.num_replicas_in_sync > 1 and (config.jit_compile or config.steps_per_execution > 1):
        raise config_lib.ConfigError(
            "--jit_compile and --steps_per_execution > 1 fail under MirroredStrategy "
            f"({strategy.num_replicas_in_sync} replicas); use --strategy=one_device for them")

    data = prepare_data(config)
    log.info("data: %d train pairs from %d subjects, %d test subjects%s", len(data.train_pairs),
             len(data.train_subjects), len(data.test_subjects),
             f"; skipped {len(data.skipped_subjects)} subject(s) without a source image and "
             f"{data.skipped_images} unreadable image(s)"
             if (data.skipped_subjects or data.skipped_images) else "")
    write_text_atomic(os.path.join(config.workdir, "split.json"), json.dumps(
        {"train": list(data.train_subjects), "test": list(data.test_subjects),
         "skipped": list(data.skipped_subjects)}, indent=1) + "\n")

    with strategy.scope():
        gan = build_gan(config)
    checkpoint = make_checkpoint(gan)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(config.workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    restored = restore_latest(checkpoint, manager)
    step = int(gan.g_optimizer.iterations.numpy())
    if restored:
        print(f"Resuming from {restored} at step {step} of {config.train_steps}.", flush=True)
    else:
        print(f"Starting a new run in {config.workdir} ({config.train_steps} steps, "
              f"{strategy.num_replicas_in_sync} replica(s)).", flush=True)
    remaining = config.train_steps - step
    summary = {"step": step, "checkpoint": restored, "workdir": config.workdir}
    if remaining <= 0:
        print(f"Already trained to step {step}; raise --train_steps to continue.", flush=True)
        return summary

    dataset = pipeline.training_dataset(data.train_pairs, data.train_images, config.batch_size,
                                        config.seed, start_step=step, flip=config.flip)
    held_pairs, held_images = ((data.test_pairs, data.test_images) if data.test_pairs is not None
                               else (data.train_pairs, data.train_images))
    sources, _ = pipeline.held_out_sources(held_pairs, held_images, config.num_samples)
    writer = tf.summary.create_file_writer(os.path.join(config.workdir, "events"))
    guard = NaNGuard()
    saver = PeriodicCheckpoint(manager, config.checkpoint_every, guard)
    callbacks = [guard, saver, ScalarSummaries(writer, config.summary_every)]
    if config.num_samples:
        callbacks.append(SampleGrid(writer, os.path.join(config.workdir, "samples"), sources,
                                    len(config.expressions), config.sample_every, data.attribution))
    start = time.time()
    gan.fit(dataset, epochs=1, steps_per_epoch=remaining, verbose=config.verbose, shuffle=False,
            callbacks=callbacks)
    writer.close()
    final = int(gan.g_optimizer.iterations.numpy())
    if guard.failure is not None:
        bad_step, names = guard.failure
        last = manager.latest_checkpoint
        raise TrainingDiverged(
            f"loss became NaN/inf at step {bad_step} ({names}); training stopped. The last good "
            f"checkpoint is {last or 'none (no checkpoint was written before)'}; lower the "
            "learning rates or change --gan_loss and resume.")
    elapsed = time.time() - start
    print(f"Trained to step {final} in {elapsed:.1f}s; checkpoint {manager.latest_checkpoint}.",
          flush=True)
    summary.update(step=final, checkpoint=manager.latest_checkpoint, seconds=elapsed, gan=gan)
    return summary
