"""Process-level setup: CPU options and the distribution strategy.

``configure_cpu`` must run before TensorFlow is imported; entry points call
it first.
"""

import logging
import os

from mlc_keras.errors import UserError

log = logging.getLogger("mlc_keras")


def configure_cpu():
    """Turns on oneDNN when the user has not chosen (TensorFlow leaves it off on
    AMD CPUs; measured here it doubles matmul throughput). Returns a note."""
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return f"TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']} (set by the user)"
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    return "TF_ENABLE_ONEDNN_OPTS=1 (enabled by mlc_keras; set it to 0 to turn oneDNN off)"


def split_cpu(num_devices):
    """Splits the physical CPU into logical devices (before any op runs)."""
    import tensorflow as tf

    if num_devices <= 0:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num_devices:
        return
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])


class StrategyError(UserError, ValueError):
    pass


def make_strategy(name, global_batch=None):
    """auto | mirrored | one_device -> a tf.distribute strategy.

    auto: MirroredStrategy when several GPUs are visible, else one device.
    mirrored: MirroredStrategy over every GPU, or every logical CPU device
    when there are no GPUs. The global batch must split evenly.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    elif name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice())
    else:
        raise StrategyError(f"--strategy={name}: expected auto, mirrored or one_device")
    if global_batch is not None and global_batch % strategy.num_replicas_in_sync:
        raise StrategyError(
            f"--batch_size={global_batch} is not divisible by the {strategy.num_replicas_in_sync} "
            "replicas; the global batch is split evenly across replicas")
    return strategy
