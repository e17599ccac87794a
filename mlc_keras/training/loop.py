"""train(config): the whole training run as one library call.

Run folder (``config.workdir``):
  options.json      the resolved config (a resumed run must match it)
  split.json        train / test subjects
  checkpoints/      tf.train.CheckpointManager: every network, every optimizer
                    state (whose iteration counter is the global step), the RNG
  events/           TensorBoard scalars and sample grids
  metrics.jsonl     the same scalars: one JSON object per --summary_every steps
  samples/          step_XXXXXXX.png sample grids (+ ATTRIBUTION.txt for London)
"""

import json
import logging
import os
import shutil
import time

import tensorflow as tf

from mlc_keras import config as config_lib
from mlc_keras.data import pipeline
from mlc_keras.data.prepare import prepare_data
from mlc_keras.errors import UserError
from mlc_keras.images import read_json, write_text_atomic
from mlc_keras.training.build import build_gan
from mlc_keras.training.callbacks import (NaNGuard, PeriodicCheckpoint, ProgressLine, SampleGrid,
                                          ScalarSummaries)
from mlc_keras.training.checkpoints import make_checkpoint, restore_latest
from mlc_keras.training.runtime import make_strategy, split_cpu

log = logging.getLogger("mlc_keras")


class TrainingDiverged(UserError, RuntimeError):
    """A loss became NaN or inf; the last good checkpoint is kept."""


class WorkdirError(UserError, ValueError):
    """The workdir holds a run that this config cannot continue."""


def dry_run(config, stream=None):
    """``train --dry_run``: validates the config and the data (the data set is
    read, and imported into its cache when it has none yet), prints the
    resolved config and a data summary, trains nothing. Returns the summary
    dict."""
    import collections
    import sys

    stream = stream or sys.stdout
    data = prepare_data(config)
    names = config.expressions

    def per_expression(pairs):
        counts = collections.Counter(int(t) for t in pairs.tgt_label) if pairs is not None else {}
        return {names[i]: counts.get(i, 0) for i in range(len(names))}

    summary = {
        "train_subjects": len(data.train_subjects),
        "test_subjects": len(data.test_subjects),
        "train_pairs": len(data.train_pairs),
        "test_pairs": len(data.test_pairs) if data.test_pairs is not None else 0,
        "train_pairs_per_target_expression": per_expression(data.train_pairs),
        "test_pairs_per_target_expression": per_expression(data.test_pairs),
        "train_images": int(data.train_images.shape[0]),
        "skipped_subjects": len(data.skipped_subjects),
        "skipped_images": data.skipped_images,
        "test_subject_ids": list(data.test_subjects),
    }
    print("resolved config:", config_lib.to_json(config), sep="\n", file=stream)
    train_counts = summary["train_pairs_per_target_expression"]
    test_counts = summary["test_pairs_per_target_expression"]
    shown = list(data.test_subjects[:12]) + (["..."] if len(data.test_subjects) > 12 else [])
    print(f"data: {summary['train_subjects']} training subjects, {summary['test_subjects']} "
          f"held-out subjects ({', '.join(map(str, shown))})\n"
          f"  pairs: {summary['train_pairs']} training, {summary['test_pairs']} held-out; per "
          "target expression (training/held-out): "
          + ", ".join(f"{n} {train_counts[n]}/{test_counts[n]}" for n in names) + "\n"
          f"  skipped: {summary['skipped_subjects']} subject(s) without a source image, "
          f"{summary['skipped_images']} unreadable image(s)", file=stream)
    print(f"dry run: config and data are usable ({summary['train_pairs']} training pairs from "
          f"{summary['train_subjects']} subjects); nothing trained, no checkpoint written.",
          file=stream, flush=True)
    return summary


def init_generator(generator, path):
    """Copies the weights of the .keras generator at ``path`` into ``generator``
    (same architecture, checked weight by weight)."""
    import keras

    if not os.path.isfile(path):
        raise WorkdirError(f"--init_generator={path}: no such file")
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:  # a damaged or foreign file
        raise WorkdirError(f"--init_generator={path}: not a loadable .keras model "
                           f"({type(e).__name__})") from None
    theirs, ours = source.weights, generator.weights
    shapes = lambda ws: [tuple(w.shape) for w in ws]  # noqa: E731
    if shapes(theirs) != shapes(ours):
        raise WorkdirError(
            f"--init_generator={path}: its generator has a different architecture "
            f"({len(theirs)} weights, {sum(w.numpy().size for w in theirs):,} values) than this "
            f"config's ({len(ours)}, {sum(w.numpy().size for w in ours):,}); match --resolution, "
            "--g_channels, --g_res_blocks and the expressions")
    for mine, other in zip(ours, theirs):
        mine.assign(other.numpy())


def _check_workdir(config):
    """Refuses an unusable workdir before anything is written. The run's
    options are written only when training starts (``_write_options``), so a
    run refused by data validation does not block its own corrected command."""
    if not config.workdir:
        raise WorkdirError("--workdir is required")
    if os.path.exists(config.workdir) and not os.path.isdir(config.workdir):
        raise WorkdirError(f"--workdir={config.workdir}: is a file, not a folder")
    try:
        os.makedirs(config.workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"--workdir={config.workdir}: cannot be created ({e.strerror})") from None
    if not os.access(config.workdir, os.W_OK):
        raise WorkdirError(f"--workdir={config.workdir}: is not writable")
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


def _write_options(config):
    write_text_atomic(os.path.join(config.workdir, "options.json"), config_lib.to_json(config) + "\n")


def _remove_partial_checkpoints(folder):
    """Removes what a save killed midway leaves (``ckpt-N_temp*``); complete
    checkpoints are only ever renamed into place."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if "_temp" in name and name.startswith("ckpt-"):
            path = os.path.join(folder, name)
            log.info("removing the partial checkpoint %s of a killed save", path)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


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
    _remove_partial_checkpoints(os.path.join(config.workdir, "checkpoints"))
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(config.workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    restored = restore_latest(checkpoint, manager)
    step = int(gan.g_optimizer.iterations.numpy())
    if restored:
        print(f"Resuming from {restored} at step {step} of {config.train_steps}.", flush=True)
    else:
        if config.init_generator:
            init_generator(gan.generator, config.init_generator)
            print(f"G starts from {config.init_generator}.", flush=True)
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
    metrics_log = os.path.join(config.workdir, "metrics.jsonl")
    callbacks = [guard, saver, ScalarSummaries(writer, config.summary_every, metrics_log),
                 ProgressLine(config.train_steps, config.verbose, config.summary_every)]
    if config.num_samples:
        callbacks.append(SampleGrid(writer, os.path.join(config.workdir, "samples"), sources,
                                    len(config.expressions), config.sample_every, data.attribution))
    _write_options(config)
    start = time.time()
    gan.fit(dataset, epochs=1, steps_per_epoch=remaining, verbose=0, shuffle=False,
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
