"""Multi-worker training: TF_CONFIG, MultiWorkerMirroredStrategy, each worker's role and the step loop.

A cluster is named by the standard ``TF_CONFIG`` variable (Kubernetes,
Vertex AI and Slurm launchers set it; ``mlc_keras.launch`` does on one
machine). The chief (task ``chief``, else ``worker`` 0) writes the run
folder; every other worker runs exactly the same code, collectives and
checkpoint saves included, but writes into a scratch folder that is
deleted, as the TensorFlow multi-worker guide prescribes.

May import errors and training/runtime; TensorFlow and Keras are imported inside functions.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

from mlc_keras.errors import UserError

TF_CONFIG = "TF_CONFIG"
TASK_TYPES = ("chief", "worker")


class ClusterError(UserError, ValueError):
    """TF_CONFIG does not describe a usable cluster; the message says what."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A validated TF_CONFIG: ``jobs`` {type: [host:port, ...]}, this task's type and index."""

    jobs: dict
    task_type: str
    task_index: int

    @property
    def num_tasks(self):
        return sum(len(addresses) for addresses in self.jobs.values())

    @property
    def is_chief(self):
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and "chief" not in self.jobs)


def read_tf_config(environ=None):
    """The cluster that TF_CONFIG names, or None when it is unset or empty.

    Raises ClusterError (one line naming TF_CONFIG) for malformed JSON, a
    missing cluster or task, an unknown task type or an index out of range.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None

    def bad(why):
        return ClusterError(f"{TF_CONFIG}: {why}; expected "
                            '{"cluster": {"worker": ["host:port", ...]}, '
                            '"task": {"type": "worker", "index": N}}')

    try:
        value = json.loads(text)
    except ValueError as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise bad("not a JSON object")
    jobs, task = value.get("cluster"), value.get("task")
    if not isinstance(jobs, dict) or not jobs:
        raise bad('no "cluster" (a map from task type to its addresses)')
    for kind, addresses in jobs.items():
        if kind not in TASK_TYPES:
            raise bad(f"task type {kind!r} in the cluster is not supported here (only chief "
                      "and worker: synchronous training has no parameter servers or evaluators)")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise bad(f'cluster["{kind}"] must be a non-empty list of "host:port" strings')
    if len(jobs.get("chief", [])) > 1:
        raise bad("the cluster names more than one chief")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise bad('no "task" with a "type" and an "index"')
    kind, index = task["type"], task["index"]
    if kind not in jobs:
        raise bad(f"task type {kind!r} is not in the cluster ({', '.join(jobs)})")
    if isinstance(index, bool) or not isinstance(index, int):
        raise bad(f"task index {index!r} is not an integer")
    if not 0 <= index < len(jobs[kind]):
        raise bad(f"task index {index} is out of range: the cluster has {len(jobs[kind])} "
                  f"{kind!r} task(s), indices 0..{len(jobs[kind]) - 1}")
    return Cluster({k: list(v) for k, v in jobs.items()}, kind, index)


def make_multi_worker_strategy():
    """MultiWorkerMirroredStrategy over the TF_CONFIG cluster (a single worker
    when TF_CONFIG is unset). Collectives: AUTO (NCCL between GPUs, gRPC ring
    between CPU workers); no extra setting is needed on CPU. Must be created
    before any other TensorFlow op runs in the process."""
    import logging

    import tensorflow as tf

    from mlc_keras.training.runtime import native_logs_wanted

    if not native_logs_wanted():  # one INFO line per all-reduce traced: dozens per worker
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as e:
        if "program startup" not in str(e):
            raise
        raise ClusterError(
            "--strategy=multi_worker: TensorFlow was already running in this process; the "
            "multi-worker strategy must be created first (start training in a fresh process)"
        ) from None


def is_multi_worker(strategy):
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@dataclasses.dataclass(frozen=True)
class Role:
    """What this process writes: ``is_chief`` writes the run folder; the others
    write into ``scratch`` (deleted when training ends)."""

    is_chief: bool = True
    task: str = "chief"
    num_workers: int = 1
    scratch: str = None

    def output_dir(self, workdir):
        """Where this process writes what the run folder would hold."""
        return workdir if self.is_chief else self.scratch

    def remove_scratch(self):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def scratch_dir(workdir, task):
    """A fixed local folder per (run folder, task): a restarted worker clears
    what a killed one left there."""
    digest = hashlib.sha256(os.path.abspath(workdir).encode("utf-8")).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"mlc_keras-{digest}-{task}")


def role_of(strategy, workdir):
    """This process's Role under ``strategy`` (the chief alone for every
    strategy but a multi-worker one); a non-chief's scratch folder is emptied."""
    if not is_multi_worker(strategy):
        return Role()
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:  # MultiWorkerMirroredStrategy without a cluster: one worker
        return Role()
    jobs = resolver.cluster_spec().as_dict()
    num_workers = sum(len(v) for k, v in jobs.items() if k in TASK_TYPES)
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in jobs)
    task = f"{task_type}{task_id}"
    if chief:
        return Role(True, task, num_workers)
    scratch = scratch_dir(workdir, task)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch, exist_ok=True)
    return Role(False, task, num_workers, scratch)


class WorkersDisagree(UserError, RuntimeError):
    """The workers restored different checkpoints (their run folders differ)."""


def check_same_step(strategy, step, checkpoints):
    """Every worker must resume from the same step; a worker that sees another
    run folder (not on a shared filesystem) would otherwise train silently
    from other weights. A collective gather, so every worker calls it."""
    import tensorflow as tf

    if not is_multi_worker(strategy) or strategy.cluster_resolver.task_type is None:
        return
    local = strategy.run(lambda: tf.constant([float(step)], tf.float32))
    steps = [int(v) for v in strategy.gather(local, axis=0).numpy()]
    if len(set(steps)) > 1:
        raise WorkersDisagree(
            f"the workers restored different checkpoints (steps {', '.join(map(str, steps))} in "
            f"worker order) from {checkpoints}: every worker must read the chief's run folder; "
            "put --workdir on a filesystem they all share")


def run_steps(gan, strategy, dataset, steps, callbacks):
    """``gan.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=...)`` for
    MultiWorkerMirroredStrategy, where Keras 3.15's fit fails: its symbolic
    build reduces a nested batch across workers and its log reduction asks for
    axis 0 of scalars (tensorflow/tensorflow#72388). Same callbacks, same
    order: metrics reset, on_train_begin, per step the distributed train_step
    with its outputs averaged over the replicas, on_train_batch_end, stop on
    ``gan.stop_training``, on_train_end.

    ``dataset``: a tf.data.Dataset batched with the global batch, or a
    tf.distribute.DistributedDataset.
    """
    import keras
    import tensorflow as tf

    if not isinstance(dataset, tf.distribute.DistributedDataset):
        dataset = strategy.experimental_distribute_dataset(dataset)
    iterator = iter(dataset)

    @tf.function
    def one_step(iterator):
        outputs = strategy.run(gan.train_step, args=(next(iterator),))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in outputs.items()}

    callback_list = keras.callbacks.CallbackList(list(callbacks), model=gan)
    gan.stop_training = False
    gan.reset_metrics()
    callback_list.on_train_begin()
    for batch in range(steps):
        callback_list.on_train_batch_begin(batch)
        logs = {name: float(value) for name, value in one_step(iterator).items()}
        callback_list.on_train_batch_end(batch, logs)
        if gan.stop_training:
            break
    callback_list.on_train_end()
