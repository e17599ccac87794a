"""train(config): the whole training run as one library call.

Run folder (``config.workdir``):
  options.json      the resolved config (a resumed run must match it)
  split.json        train / test subjects
  checkpoints/      tf.train.CheckpointManager: every network, every optimizer
                    state (whose iteration counter is the global step), the RNG
  events/           TensorBoard scalars and sample grids
  metrics.jsonl     the same scalars: one JSON object per --summary_every steps
  samples/          step_XXXXXXX.png sample grids (+ ATTRIBUTION.txt for London)

Under MultiWorkerMirroredStrategy only the chief writes the run folder; the
other workers run the same steps and saves into a scratch folder
(``training/multiworker.py``), and every worker restores from the chief's
checkpoints.
"""

import dataclasses
import json
import logging
import os
import shutil
import time

import tensorflow as tf

from mlc_keras import config as config_lib
from mlc_keras.data import sources
from mlc_keras.data.prepare import prepare_training_data
from mlc_keras.errors import UserError
from mlc_keras.images import read_json, write_text_atomic
from mlc_keras.training.build import build_gan
from mlc_keras.training.callbacks import (NaNGuard, PeriodicCheckpoint, ProgressLine, SampleGrid,
                                          ScalarSummaries)
from mlc_keras.training import multiworker
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
    data = prepare_training_data(config)
    names = config.expressions

    def per_expression(split):
        if data.streaming:  # counted when the TFRecord set was written
            counts = data.per_target_expression(split)
            return {n: int(counts.get(n, 0)) for n in names}
        pairs = data.train_pairs if split == "train" else data.test_pairs
        counts = collections.Counter(int(t) for t in pairs.tgt_label) if pairs is not None else {}
        return {names[i]: counts.get(i, 0) for i in range(len(names))}

    summary = {
        "train_subjects": len(data.train_subjects),
        "test_subjects": len(data.test_subjects),
        "train_pairs": data.num_train_pairs,
        "test_pairs": data.num_test_pairs,
        "train_pairs_per_target_expression": per_expression("train"),
        "test_pairs_per_target_expression": per_expression("test"),
        "train_images": (data.count("train", "images") if data.streaming
                         else int(data.train_images.shape[0])),
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
    (same architecture, checked weight by weight; a warp or shading head that
    the source lacks keeps its zero start)."""
    import keras

    if not os.path.isfile(path):
        raise WorkdirError(f"--init_generator={path}: no such file")
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:  # a damaged or foreign file
        raise WorkdirError(f"--init_generator={path}: not a loadable .keras model "
                           f"({type(e).__name__})") from None
    theirs = source.weights
    # A warp head (--g_warp) is the one part a source generator may lack: it
    # starts at zero, so the continued generator begins with no motion.
    flow = getattr(generator, "flow_head", None)
    new = {id(w) for w in flow.weights} if flow is not None and not getattr(
        source, "warp", False) else set()
    # so is a shading head (--g_shading): it starts with no gain
    gain = getattr(generator, "gain_head", None)
    if gain is not None and not getattr(source, "shading", False):
        new |= {id(w) for w in gain.weights}
    ours = [w for w in generator.weights if id(w) not in new]
    shapes = lambda ws: [tuple(w.shape) for w in ws]  # noqa: E731
    if shapes(theirs) != shapes(ours):
        raise WorkdirError(
            f"--init_generator={path}: its generator has a different architecture "
            f"({len(theirs)} weights, {sum(w.numpy().size for w in theirs):,} values) than this "
            f"config's ({len(ours)}, {sum(w.numpy().size for w in ours):,}); match --resolution, "
            "--g_channels, --g_res_blocks and the expressions")
    for mine, other in zip(ours, theirs):
        mine.assign(other.numpy())


def _check_workdir(config, writer=True):
    """Refuses an unusable workdir before anything is written. The run's
    options are written only when training starts (``_write_options``), so a
    run refused by data validation does not block its own corrected command.
    ``writer``: this process writes the run folder (not a non-chief worker,
    which only reads it, perhaps before the chief has created it)."""
    if not config.workdir:
        raise WorkdirError("--workdir is required")
    if os.path.exists(config.workdir) and not os.path.isdir(config.workdir):
        raise WorkdirError(f"--workdir={config.workdir}: is a file, not a folder")
    if writer:
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


def pairs_per_step(config):
    """Training pairs one step (one G update) consumes: --n_critic global
    batches, one per D update (images seen = steps x this)."""
    return config.batch_size * config.n_critic


def _training_input(data, strategy, config, step):
    """The training stream from ``step`` on: the decoded set as one tf.data
    stream of global batches, or a streamed TFRecord set as one pipeline per
    worker (each reading its own shards), resumed at its own position. A
    step's batch holds ``pairs_per_step`` pairs (--n_critic batches stacked),
    so the stream stays a pure function of (seed, step) for any --n_critic."""
    per_step_batch = pairs_per_step(config)
    if not data.streaming:
        return data.training_dataset(per_step_batch, config.seed, start_step=step,
                                     flip=config.flip,
                                     flow_target=bool(config.flow_target_weight),
                                     flow_fold=config.flow_target_fold)

    def per_pipeline(context):
        per_step = per_step_batch // context.num_input_pipelines  # records a step takes
        return data.training_dataset(
            context.get_per_replica_batch_size(per_step_batch), config.seed,
            start_record=step * per_step, flip=config.flip,
            num_pipelines=context.num_input_pipelines, pipeline_id=context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(per_pipeline)


def _copy_run(config, role):
    """--model=copy: nothing to train. Writes options.json and a step-0
    checkpoint (no weights) so that the run folder is evaluated, compared and
    loaded like any other; split.json is already written."""
    folder = os.path.join(config.workdir, "checkpoints")
    existing = tf.train.latest_checkpoint(folder)
    if existing:
        print(f"--model=copy: the run folder is complete ({existing}); nothing to train.",
              flush=True)
        return {"step": 0, "checkpoint": existing, "workdir": config.workdir, "seconds": 0.0}
    path = None
    if role.is_chief:
        _write_options(config)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(), folder, max_to_keep=1)
        path = manager.save(checkpoint_number=0)
    print(f"--model=copy: the output is the input image; nothing to train. Wrote "
          f"{config.workdir} (checkpoint {path}); evaluate it with python -m "
          "mlc_keras.evaluate.", flush=True)
    return {"step": 0, "checkpoint": path, "workdir": config.workdir, "seconds": 0.0}


def train(config):
    """Trains (or resumes) the run in ``config.workdir``; returns a summary dict."""
    if not config.workdir:
        raise WorkdirError("--workdir is required")
    if config.stages:
        from mlc_keras.training.stages import train_stages

        return train_stages(config, train)
    split_cpu(config.cpu_devices)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy, config.batch_size)  # before any other TF op
    role = multiworker.role_of(strategy, config.workdir)
    try:
        return _train(config, strategy, role)
    finally:
        role.remove_scratch()


def _train(config, strategy, role):
    _check_workdir(config, writer=role.is_chief)
    if strategy.num_replicas_in_sync > 1 and (config.jit_compile or config.steps_per_execution > 1):
        raise config_lib.ConfigError(
            "--jit_compile and --steps_per_execution > 1 fail under MirroredStrategy "
            f"({strategy.num_replicas_in_sync} replicas); use --strategy=one_device for them")
    streaming = sources.get(config.dataset).streaming
    if not role.is_chief and not config.data_cache and not streaming:
        # a worker prepares its own copy: concurrent imports into one cache could collide
        config = dataclasses.replace(config, data_cache=os.path.join(role.scratch, "data"))

    data = prepare_training_data(config)
    log.info("data: %d train pairs from %d subjects, %d test subjects%s", data.num_train_pairs,
             len(data.train_subjects), len(data.test_subjects),
             f"; skipped {len(data.skipped_subjects)} subject(s) without a source image and "
             f"{data.skipped_images} unreadable image(s)"
             if (data.skipped_subjects or data.skipped_images) else "")
    if role.is_chief:
        write_text_atomic(os.path.join(config.workdir, "split.json"), json.dumps(
            {"train": list(data.train_subjects), "test": list(data.test_subjects),
             "skipped": list(data.skipped_subjects)}, indent=1) + "\n")

    if config.model == "copy":
        return _copy_run(config, role)
    with strategy.scope():
        gan = build_gan(config)
    checkpoint = make_checkpoint(gan)
    run_checkpoints = os.path.join(config.workdir, "checkpoints")  # the chief's: every worker reads them
    out = role.output_dir(config.workdir)  # what this process writes: the run folder or its scratch
    if role.is_chief:
        _remove_partial_checkpoints(run_checkpoints)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(out, "checkpoints"), max_to_keep=config.keep_checkpoints)
    restored = restore_latest(checkpoint, manager if role.is_chief else run_checkpoints)
    step = int(gan.g_optimizer.iterations.numpy())
    multiworker.check_same_step(strategy, step, run_checkpoints)
    who = "" if role.num_workers == 1 else f" ({role.task} of {role.num_workers} workers)"
    if restored:
        print(f"Resuming from {restored} at step {step} of {config.train_steps}{who}.", flush=True)
    else:
        if config.init_generator:
            init_generator(gan.generator, config.init_generator)
            print(f"G starts from {config.init_generator}.", flush=True)
        per_step = (f", {config.n_critic} D updates and {pairs_per_step(config)} pairs per step"
                    if config.n_critic > 1 else "")
        print(f"Starting a new run in {config.workdir} ({config.train_steps} steps{per_step}, "
              f"{strategy.num_replicas_in_sync} replica(s)){who}.", flush=True)
    remaining = config.train_steps - step
    summary = {"step": step, "checkpoint": restored, "workdir": config.workdir}
    if remaining <= 0:
        print(f"Already trained to step {step}; raise --train_steps to continue.", flush=True)
        return summary

    dataset = _training_input(data, strategy, config, step)
    writer = tf.summary.create_file_writer(os.path.join(out, "events"))
    guard = NaNGuard()
    saver = PeriodicCheckpoint(manager, config.checkpoint_every, guard)
    metrics_log = os.path.join(out, "metrics.jsonl")
    callbacks = [guard, saver, ScalarSummaries(writer, config.summary_every, metrics_log),
                 ProgressLine(config.train_steps, config.verbose if role.is_chief else 0,
                              config.summary_every)]
    if config.num_samples:
        sources_, _ = data.held_out_sources(config.num_samples)
        callbacks.append(SampleGrid(writer, os.path.join(out, "samples"), sources_,
                                    len(config.expressions), config.sample_every, data.attribution))
    if role.is_chief:
        _write_options(config)
    start = time.time()
    try:
        if multiworker.is_multi_worker(strategy):
            multiworker.run_steps(gan, strategy, dataset, remaining, callbacks)
        else:
            gan.fit(dataset, epochs=1, steps_per_epoch=remaining, verbose=0, shuffle=False,
                    callbacks=callbacks)
    except tf.errors.DataLossError as e:
        if not streaming:
            raise
        from mlc_keras.data.tfrecord import TFRecordError

        raise TFRecordError(
            f"--data_dir={config.data_dir}: a TFRecord shard is damaged "
            f"({str(e).splitlines()[0]}); training stopped at step "
            f"{int(gan.g_optimizer.iterations.numpy())}; write the set again "
            "(python -m mlc_keras.data.to_tfrecord) and resume") from None
    writer.close()
    final = int(gan.g_optimizer.iterations.numpy())
    last = manager.latest_checkpoint if role.is_chief else tf.train.latest_checkpoint(run_checkpoints)
    if guard.failure is not None:
        bad_step, names = guard.failure
        raise TrainingDiverged(
            f"loss became NaN/inf at step {bad_step} ({names}); training stopped. The last good "
            f"checkpoint is {last or 'none (no checkpoint was written before)'}; lower the "
            "learning rates or change --gan_loss and resume.")
    elapsed = time.time() - start
    print(f"Trained to step {final} in {elapsed:.1f}s; checkpoint {last}.", flush=True)
    summary.update(step=final, checkpoint=last, seconds=elapsed, gan=gan)
    return summary
