"""Training callbacks: NaN guard, periodic checkpoints, TensorBoard scalars and
held-out sample grids. They read the global step from the generator
optimizer's iteration counter, which the checkpoint restores."""

import json
import logging
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from mlc_keras.images import to_uint8, write_png_atomic, write_text_atomic

log = logging.getLogger("mlc_keras")


def global_step(gan):
    return int(gan.g_optimizer.iterations.numpy())


def _all_finite(variables):
    return all(bool(tf.reduce_all(tf.math.is_finite(v)).numpy()) for v in variables
               if "float" in str(v.dtype))


class NaNGuard(keras.callbacks.Callback):
    """Stops training when a loss becomes NaN/inf; records where."""

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if bad and self.failure is None:
            self.failure = (global_step(self.model), ", ".join(sorted(bad)))
            self.model.stop_training = True


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves through a tf.train.CheckpointManager every ``every`` steps and at
    the end, but never weights from a diverged step. A save writes new files
    and then swaps the 'checkpoint' index atomically, so a kill at any moment
    leaves the previous checkpoint restorable."""

    def __init__(self, manager, every, nan_guard):
        super().__init__()
        self.manager = manager
        self.every = every
        self.nan_guard = nan_guard
        self.last_saved = None

    def _save(self, step):
        if self.nan_guard.failure is not None or step == self.last_saved:
            return
        if not _all_finite(self.model.generator.variables):
            log.warning("step %d: generator weights are not finite; checkpoint not written", step)
            return
        self.manager.save(checkpoint_number=step)
        self.last_saved = step

    def on_train_begin(self, logs=None):
        self.last_saved = global_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if step - self.last_saved >= self.every:
            self._save(step)

    def on_train_end(self, logs=None):
        self._save(global_step(self.model))


class ScalarSummaries(keras.callbacks.Callback):
    """Writes every logged loss (hierarchical names) and the learning rates.

    Keras's logs are running means since the start of ``fit`` (one epoch for
    the whole run here), which flatten a curve more and more as training
    goes on. Each scalar written is instead the mean over the steps since
    the previous write: cumulative mean x count, differenced.
    """

    def __init__(self, writer, every, jsonl_path=None):
        super().__init__()
        self.writer = writer
        self.every = every
        self.last = None
        # metrics.jsonl: the same window means, one JSON object per write
        self.jsonl_path = jsonl_path

    def on_train_begin(self, logs=None):
        self.start = self.last = global_step(self.model)
        self.sums = {}

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if step - self.last < self.every:
            return
        count, window = step - self.start, step - self.last
        self.last = step
        record = {"step": step, "time": round(time.time(), 3)}
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                total = float(value) * count
                record[name] = (total - self.sums.get(name, 0.0)) / window
                tf.summary.scalar(name, record[name])
                self.sums[name] = total
            for opt in (self.model.g_optimizer, self.model.d_optimizer, self.model.c_optimizer):
                if opt is not None:
                    record[f"lr/{opt.name}"] = float(opt.learning_rate)
                    tf.summary.scalar(f"lr/{opt.name}", record[f"lr/{opt.name}"])
        self.writer.flush()
        if self.jsonl_path:
            append_jsonl(self.jsonl_path, record)


def append_jsonl(path, record):
    """Appends one JSON object as a line; a line left partial by a killed run
    is closed first, so every later record stays readable."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))


def read_jsonl(path):
    """The records of a metrics.jsonl (lines that do not parse are skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


MAX_WIDTH = 120


def _duration(seconds):
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLine(keras.callbacks.Callback):
    """Console progress in real steps (a resumed run continues from its step).

    On a terminal (verbose 1): one line rewritten in place, at most a few
    times a second. Elsewhere (a log file, CI) or with verbose 2: a plain line
    every ``every`` steps and at the end. verbose 0: nothing.
    """

    def __init__(self, total, verbose=1, every=50, stream=None, interval=0.25):
        super().__init__()
        self.total = int(total)
        self.verbose = int(verbose)
        self.every = max(1, int(every))
        self.stream = stream or sys.stdout
        self.interval = interval
        self.dynamic = self.verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start_step = self.start_time = self.last_draw = None

    def on_train_begin(self, logs=None):
        self.start_step = global_step(self.model)
        self.start_time = self.last_draw = time.time()

    def _line(self, step, logs):
        """At most four figures (steps/s, ETA, G and D loss), <= MAX_WIDTH
        characters; every other metric is in TensorBoard and metrics.jsonl."""
        done = step - self.start_step
        elapsed = time.time() - self.start_time
        rate = done / elapsed if done and elapsed > 0 else 0.0
        eta = _duration((self.total - step) / rate) if rate else "?"
        losses = "".join(f"  {label} {float(logs[key]):.4g}"
                         for key, label in (("G/loss", "G"), ("D/loss", "D"))
                         if key in (logs or {}))
        line = f"step {step}/{self.total}  {rate:.3g} steps/s  ETA {eta}{losses}"
        return line[:MAX_WIDTH]

    def on_train_batch_end(self, batch, logs=None):
        if not self.verbose:
            return
        step = global_step(self.model)
        if self.dynamic:
            now = time.time()
            if now - self.last_draw >= self.interval or step >= self.total:
                self.last_draw = now
                self.stream.write("\r" + self._line(step, logs) + "\033[K")
                self.stream.flush()
        elif step % self.every == 0 or step >= self.total:
            print(self._line(step, logs), file=self.stream, flush=True)

    def on_train_end(self, logs=None):
        if self.dynamic:
            self.stream.write("\n")
            self.stream.flush()


def sample_grids(generator, sources, num_classes, batch_size=16):
    """Runs G on every (source, expression) and tiles the results.

    Args:
      sources: float32 [K, R, R, 3] in [-1, 1].
    Returns:
      {level: uint8 [K * R, (N + 1) * R, 3]}: a row per input, the input in
      column 0 then one column per expression; lower levels are upscaled
      (nearest) to R so the grids line up.
    """
    k, r = sources.shape[0], sources.shape[1]
    inputs = np.repeat(sources, num_classes, axis=0)
    labels = np.tile(np.eye(num_classes, dtype=np.float32), (k, 1))
    outputs = None
    for start in range(0, inputs.shape[0], batch_size):
        out = generator((inputs[start:start + batch_size], labels[start:start + batch_size]),
                        training=False)
        out = [np.asarray(o) for o in out]
        outputs = out if outputs is None else [np.concatenate([a, b]) for a, b in zip(outputs, out)]
    grids = {}
    for level, images in zip(generator.levels, outputs):
        factor = r // level
        images = images.repeat(factor, axis=1).repeat(factor, axis=2)
        images = images.reshape(k, num_classes, r, r, 3)
        cells = np.concatenate([sources[:, None], images], axis=1)  # [K, N+1, R, R, 3]
        grid = cells.transpose(0, 2, 1, 3, 4).reshape(k * r, (num_classes + 1) * r, 3)
        grids[level] = to_uint8(grid)
    return grids


class SampleGrid(keras.callbacks.Callback):
    """Every ``every`` steps (and at the end): the grid of fixed held-out inputs
    at every decoder level, to TensorBoard and to WORKDIR/samples/."""

    def __init__(self, writer, folder, sources, num_classes, every, attribution=None):
        super().__init__()
        self.writer = writer
        self.folder = folder
        self.sources = sources
        self.num_classes = num_classes
        self.every = every
        self.attribution = attribution
        self.last = None
        os.makedirs(folder, exist_ok=True)
        if attribution:
            write_text_atomic(os.path.join(folder, "ATTRIBUTION.txt"), attribution + "\n")

    def write(self, step):
        grids = sample_grids(self.model.generator, self.sources, self.num_classes)
        with self.writer.as_default(step=step):
            for level, grid in grids.items():
                tf.summary.image(f"samples/level_{level}", grid[None], step=step,
                                 description=self.attribution)
        self.writer.flush()
        combined = np.concatenate([grids[lv] for lv in sorted(grids, reverse=True)], axis=0)
        path = os.path.join(self.folder, f"step_{step:07d}.png")
        write_png_atomic(path, combined)
        return path

    def on_train_begin(self, logs=None):
        self.last = global_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self.every and step - self.last >= self.every:
            self.last = step
            self.write(step)

    def on_train_end(self, logs=None):
        step = global_step(self.model)
        if step != self.last or self.every == 0:
            self.write(step)
