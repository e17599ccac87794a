"""Micro-benchmark (issue 14): instance norm + ReLU, forward and backward, in
bfloat16: the fused batch-norm kernels of models.layers against the same
function under XLA, and against plain moments with and without XLA. Prints the
CPU, then one line per shape and variant (median of 10 calls, ms). Run:
    TF_ENABLE_ONEDNN_OPTS=1 python scripts/bench_norm_xla.py
"""
import os
import statistics
import time

SHAPES = ([16, 64, 64, 128], [16, 32, 32, 256], [16, 128, 128, 64])
REPS = 10


def norm_relu(x, g, b):
    from mlc_keras.models.layers import fused_instance_norm
    import tensorflow as tf

    return tf.nn.relu(fused_instance_norm(x, g, b, 1e-5))


def plain_norm_relu(x, g, b):
    import tensorflow as tf

    xf = tf.cast(x, tf.float32)
    m, v = tf.nn.moments(xf, axes=[1, 2], keepdims=True)
    y = (xf - m) * tf.math.rsqrt(v + 1e-5) * g + b
    return tf.cast(tf.nn.relu(y), x.dtype)


def forward_backward(fn, jit):
    """One graph call: ``fn`` (compiled by XLA where ``jit``) and its gradients."""
    import tensorflow as tf

    inner = tf.function(fn, jit_compile=True) if jit else fn

    @tf.function
    def step(x, g, b, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, g, b])
            y = inner(x, g, b)
        return tape.gradient(y, [x, g, b], output_gradients=dy)

    return step


def main():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    import tensorflow as tf
    from mlc_keras.tools.benchmark.machine import cpu_model

    print(f"cpu: {cpu_model()}, TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']}")
    variants = (("fused (current)", norm_relu, False), ("fused under XLA", norm_relu, True),
                ("moments, no XLA", plain_norm_relu, False),
                ("moments under XLA", plain_norm_relu, True))
    for shape in SHAPES:
        x = tf.cast(tf.random.normal(shape), tf.bfloat16)
        dy = tf.cast(tf.random.normal(shape), tf.bfloat16)
        g, b = tf.ones([shape[-1]]), tf.zeros([shape[-1]])
        ref = None
        for name, fn, jit in variants:
            step = forward_backward(fn, jit)
            dx = tf.cast(step(x, g, b, dy)[0], tf.float32)  # first call traces
            ref = dx if ref is None else ref
            err = float(tf.reduce_max(tf.abs(dx - ref)))
            times = []
            for _ in range(REPS):
                start = time.perf_counter()
                step(x, g, b, dy)[0].numpy()
                times.append(time.perf_counter() - start)
            print(f"{shape} {name:20s} {1e3 * statistics.median(times):8.1f} ms   "
                  f"max |dx - current| {err:.3g}", flush=True)


if __name__ == "__main__":
    main()
