"""Process-level setup: CPU options and the distribution strategy.

``configure_cpu`` must run before TensorFlow is imported; entry points call
it first.
"""

import io
import logging
import os
import re
import sys
import threading

from mlc_keras.errors import UserError

log = logging.getLogger("mlc_keras")


# TensorFlow's C++ log lines: absl's pre-initialisation format
# ("I0000 00:00:1795908806.86 25740 port.cc:153] ...") and the older tsl one
# ("2026-11-28 10:00:00.000000: W tensorflow/...:12] ..."), and absl's banner.
NATIVE_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow with"  # cpu_feature_guard
    r"|[IWE]0000 00:00:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\])")
SHOW_NATIVE_LOGS = "MLC_KERAS_NATIVE_LOGS"
_filter_thread = None


def native_logs_wanted():
    """True when the user asked for TensorFlow's C++ logs: the environment
    variable MLC_KERAS_NATIVE_LOGS=1, or absl's --verbosity >= 1 (-v 1)."""
    if os.environ.get(SHOW_NATIVE_LOGS, "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        from absl import flags

        return flags.FLAGS.is_parsed() and int(flags.FLAGS.verbosity) >= 1
    except Exception:  # noqa: BLE001 - no absl flags: the default applies
        return False


def quiet_native_logs():
    """Hides TensorFlow's C++ log lines (cuInit errors without a GPU,
    Grappler's "remapper failed", oneDNN banners), which the C++ side writes
    to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says: fd 2 becomes a
    pipe whose lines are forwarded unless they match ``NATIVE_LOG_LINE``
    (fatal "F" lines always pass); Python's own stderr bypasses the pipe.
    Call before TensorFlow is imported; a no-op when the user wants the logs
    (``native_logs_wanted``) or when already done. Returns True when active."""
    global _filter_thread
    if native_logs_wanted():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return False
    if _filter_thread is not None:
        return True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    # Python's writes go straight to the terminal, in order with stdout.
    sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(original), "w"), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)

    def forward():
        with io.FileIO(read_end, "r") as pipe, io.FileIO(original, "w") as out:
            for line in iter(pipe.readline, b""):
                if not NATIVE_LOG_LINE.match(line.decode("utf-8", "replace")):
                    out.write(line)

    _filter_thread = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    _filter_thread.start()
    return True


FROZEN_WEIGHTS = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"


def _env_true(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


class FrozenWeightsError(UserError, RuntimeError):
    pass


def configure_cpu(inference=False):
    """Turns on oneDNN when the user has not chosen (TensorFlow leaves it off on
    AMD CPUs; measured here it doubles matmul throughput) and hides
    TensorFlow's C++ log noise (``quiet_native_logs``). Returns a note.

    ``inference=True`` (processes that never change a weight: synthesize, the
    web demo, export, compare, the serving benchmark) also sets TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1
    unless the user set it. TensorFlow's oneDNN convolution then treats each
    filter as a constant: it reorders it once into oneDNN's blocked layout and
    keeps it. Without that, a float32 batch-1 call gets the plain HWIO filter
    layout, which oneDNN's brgemm kernels reject on AVX2 CPUs, and it falls back
    to an im2col + GEMM convolution at half the speed (BENCHMARKS.md, issue 14).
    The setting is wrong for anything that trains: the cached filter is not
    refreshed when the weights change. So any other process (train, evaluate,
    which trains its classifiers, ...) refuses to run with it set."""
    if "tensorflow" not in sys.modules:
        quiet_native_logs()
    notes = []
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        notes.append(f"TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']} (set by the user)")
    else:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
        notes.append("TF_ENABLE_ONEDNN_OPTS=1 (enabled by mlc_keras; set it to 0 to turn oneDNN off)")
    if inference:
        if FROZEN_WEIGHTS not in os.environ:
            os.environ[FROZEN_WEIGHTS] = "1"
            notes.append(f"{FROZEN_WEIGHTS}=1 (inference only; set it to 0 to turn it off)")
    elif _env_true(FROZEN_WEIGHTS):
        raise FrozenWeightsError(
            f"{FROZEN_WEIGHTS}={os.environ[FROZEN_WEIGHTS]} is set: this command trains (a model "
            f"or a classifier) and oneDNN would keep computing with stale weights; unset it or "
            f"set it to 0 (it is for inference-only processes)")
    return "; ".join(notes)


class PrecisionError(UserError, ValueError):
    pass


# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) below which it has no bfloat16 kernels.
_NO_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (None where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def check_precision_kernels(precision, flags=None):
    """Refuses --mixed_precision=bfloat16 where oneDNN is on and has no
    bfloat16 kernels: a CPU without AVX-512 (nor AVX2-VNNI-2's bfloat16
    conversions), or oneDNN capped below them by ONEDNN_MAX_CPU_ISA. There the
    first bfloat16 convolution fails inside TensorFlow ("could not create a
    primitive descriptor"); measured on a Xeon capped to AVX2. With oneDNN
    off, TensorFlow's own kernels run bfloat16 (slowly). ``flags``: the CPU's
    feature flags (default: ``cpu_flags()``)."""
    if precision != "bfloat16" or not _env_true("TF_ENABLE_ONEDNN_OPTS"):
        return
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    flags = cpu_flags() if flags is None else set(flags)
    if cap in _NO_BF16_ISAS:
        why = f"ONEDNN_MAX_CPU_ISA={cap} leaves oneDNN without bfloat16 kernels"
    elif flags is not None and not flags & {"avx512f", "avx_ne_convert"}:
        why = "oneDNN has no bfloat16 kernels for this CPU (no avx512f in /proc/cpuinfo)"
    else:
        return
    raise PrecisionError(f"--mixed_precision=bfloat16: {why}; use --mixed_precision=float32, "
                         f"or set TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's slower kernels)")


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
    """auto | mirrored | one_device | multi_worker -> a tf.distribute strategy.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of more
    than one task, else MirroredStrategy when several GPUs are visible, else
    one device. mirrored: MirroredStrategy over every GPU, or every logical
    CPU device when there are no GPUs. multi_worker: MultiWorkerMirroredStrategy
    over the TF_CONFIG cluster (``training/multiworker.py``); it is created
    before anything else touches TensorFlow's runtime. A set TF_CONFIG is
    validated whatever the strategy. The global batch must split evenly.
    """
    import tensorflow as tf

    from mlc_keras.training import multiworker

    cluster = multiworker.read_tf_config()
    if name == "auto" and cluster is not None and cluster.num_tasks > 1:
        name = "multi_worker"
    if name == "multi_worker":
        strategy = multiworker.make_multi_worker_strategy()
    elif name in ("auto", "one_device", "mirrored"):
        gpus = tf.config.list_logical_devices("GPU")
        if name == "auto":
            name = "mirrored" if len(gpus) > 1 else "one_device"
        if name == "one_device":
            strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
        else:
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
            strategy = tf.distribute.MirroredStrategy(
                devices=devices,
                cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice())
    else:
        raise StrategyError(f"--strategy={name}: expected auto, mirrored, one_device or multi_worker")
    if global_batch is not None and global_batch % strategy.num_replicas_in_sync:
        raise StrategyError(
            f"--batch_size={global_batch} is not divisible by the {strategy.num_replicas_in_sync} "
            "replicas; the global batch is split evenly across replicas")
    return strategy
