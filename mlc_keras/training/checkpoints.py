"""Checkpoints of a training run: the variable names they use, saving and
restoring a GAN, and loading the generator of a run folder.

May import models/, config, errors, images, training/build; not data/.
"""

import logging
import os
import re

import tensorflow as tf

from mlc_keras import config as config_lib
from mlc_keras.errors import UserError
from mlc_keras.images import read_json


log = logging.getLogger("mlc_keras")


class RunFolderError(UserError, ValueError):
    """A training run folder cannot be read; the message names it."""


def checkpoint_key(prefix, variable):
    """The name a variable is saved under: stable across processes for the
    same options (Keras paths follow the layer names we give)."""
    return f"{prefix}/{variable.path}".replace("/", ".")


def restore_generator(generator, checkpoint_path):
    """Restores only the generator's weights from a training checkpoint."""
    named = {checkpoint_key("net", v): v for v in generator.weights}
    tf.train.Checkpoint(**named).restore(checkpoint_path).expect_partial() \
        .assert_existing_objects_matched()
    return generator


def checkpoint_variables(gan):
    """{stable name: variable} for every network weight (trainable or not,
    e.g. spectral-norm estimates), every optimizer slot and iteration counter
    (the global step) and the RNG state.

    Variables are listed by their Keras paths rather than through object
    tracking: Keras 3 layers held in Python lists are not children in
    TensorFlow's object graph, so their non-trainable weights would be
    silently left out of a tf.train.Checkpoint of the models.
    """
    named = {}

    def add(prefix, variables):
        for v in variables:
            key = checkpoint_key(prefix, v)
            if key in named and named[key] is not v:
                raise RuntimeError(f"two variables share the checkpoint name {key!r}")
            named[key] = v

    for net in [gan.generator, gan.discriminator] + gan.photo_critics + \
            gan.variation_critics + gan.feature_encoders + gan.classifiers:
        add("net", net.weights)
    for opt in (gan.g_optimizer, gan.d_optimizer, gan.c_optimizer):
        if opt is not None:
            add(opt.name, opt.variables)
    named["rng"] = gan.seed_generator.state  # its Keras path carries a per-process counter
    return named


def make_checkpoint(gan):
    return tf.train.Checkpoint(**checkpoint_variables(gan))


def checkpoint_paths(folder):
    """The checkpoints a CheckpointManager keeps in ``folder``, oldest first
    (read from its index; nothing is written)."""
    state = tf.train.get_checkpoint_state(folder)
    return list(state.all_model_checkpoint_paths) if state is not None else []


def restore_latest(checkpoint, manager):
    """Restores the newest checkpoint that loads; returns its path or None.
    A damaged newest checkpoint (e.g. a disk filled mid-save) falls back to
    the one before, with a warning. ``manager``: a CheckpointManager, or the
    folder of one (how a non-chief worker reads the chief's checkpoints)."""
    paths = checkpoint_paths(manager) if isinstance(manager, (str, os.PathLike)) \
        else manager.checkpoints
    for path in reversed(paths):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, OSError) as e:
            log.warning("checkpoint %s could not be restored (%s); trying an older one", path,
                        str(e).splitlines()[0])
    return None


STAGES_FILE = "stages.json"  # a --stages run folder (training/stages.py)


def final_stage(workdir):
    """The folder of the last stage of a staged run folder, or ``workdir``
    itself when it is not one."""
    path = os.path.join(workdir, STAGES_FILE)
    if os.path.isfile(os.path.join(workdir, "options.json")) or not os.path.isfile(path):
        return workdir
    stages = read_json(path).get("stages") or []
    return os.path.join(workdir, stages[-1]["folder"]) if stages else workdir


def is_run_folder(path):
    """``path`` is a training run folder, or a staged one (its last stage is)."""
    return os.path.isfile(os.path.join(final_stage(path), "options.json"))


def step_of(checkpoint_path):
    """The step in a ``.../ckpt-STEP`` checkpoint path (0 for none)."""
    match = re.search(r"-(\d+)$", checkpoint_path or "")
    return int(match.group(1)) if match else 0


def load_run_generator(workdir, checkpoint=None):
    """(generator, config) from a training run folder's options and newest
    (or the given) checkpoint; a staged run folder gives its last stage's."""
    from mlc_keras.training.build import build_generator

    workdir = final_stage(workdir)
    options = os.path.join(workdir, "options.json")
    if not os.path.isfile(options):
        raise RunFolderError(f"--workdir={workdir}: no options.json; is it a training run folder?")
    config = config_lib.from_dict(read_json(options))
    checkpoint = checkpoint or tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if not checkpoint:
        raise RunFolderError(f"--workdir={workdir}: no checkpoint yet; train first")
    generator = build_generator(config).build_for_inputs()
    restore_generator(generator, checkpoint)
    return generator, config
