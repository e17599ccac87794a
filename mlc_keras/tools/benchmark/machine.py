"""The machine a benchmark runs on: CPU, software versions, the float32 matmul rate (imports
only training/runtime from the package, for the CPU flags)."""

import dataclasses
import os
import platform
import statistics
import time


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_simd():
    """The vector extensions that bound float32 throughput (from /proc/cpuinfo)."""
    from mlc_keras.training.runtime import cpu_flags

    present = cpu_flags() or set()
    return [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in present]


def machine_info():
    """CPU, cores, load, TensorFlow / Keras versions and the oneDNN setting."""
    import keras
    import tensorflow as tf

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        "cpu_model": cpu_model(),
        "simd": cpu_simd(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "onednn_env": onednn,
        "onednn_enabled": onednn not in (None, "0", "false", "False"),
        # oneDNN's own cap on the vector ISA it dispatches to (e.g. AVX2 on an
        # AVX-512 CPU): the kernels of a smaller CPU kind on this one
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
    }


@dataclasses.dataclass
class MatmulResult:
    n: int
    seconds: list  # each timed repetition

    @property
    def flops(self):
        return 2 * self.n ** 3

    @property
    def gflops(self):
        """Median rate, GFLOP/s."""
        return self.flops / statistics.median(self.seconds) / 1e9

    @property
    def best_gflops(self):
        return self.flops / min(self.seconds) / 1e9

    def as_dict(self):
        return {"n": self.n, "seconds": list(self.seconds), "gflops_median": self.gflops,
                "gflops_best": self.best_gflops}


def measure_matmul(n=2048, reps=10, warmup=2, seed=0, dtype="float32"):
    """Times an n x n matmul (float32, or bfloat16 / float16) in a
    tf.function: MatmulResult."""
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    a = tf.cast(g.normal([n, n]), dtype)
    b = tf.cast(g.normal([n, n]), dtype)
    matmul = tf.function(lambda x, y: tf.matmul(x, y), autograph=False)
    for _ in range(max(1, warmup)):
        matmul(a, b).numpy()
    seconds = []
    for _ in range(max(1, reps)):
        start = time.perf_counter()
        matmul(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return MatmulResult(n, seconds)


def measure_matmul_gflops(n=2048, reps=10):
    """The machine's float32 matmul rate in GFLOP/s (2 n^3 / median time)."""
    return measure_matmul(n, reps).gflops
