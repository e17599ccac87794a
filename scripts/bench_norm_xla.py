"""Micro-benchmark (issue 14): instance norm + ReLU, forward and backward, in
bfloat16: the fused batch-norm kernels of models.layers against the same
function under XLA, and against plain moments with and without XLA. Prints one
line per shape and variant (median of 10 calls, ms). Run:
    TF_ENABLE_ONEDNN_OPTS=1 python scripts/bench_norm_xla.py
"""
import statistics
import time

import tensorflow as tf
from mlc_keras.models.layers import fused_instance_norm

def norm_relu(x, g, b):
    return tf.nn.relu(fused_instance_norm(x, g, b, 1e-5))

def plain_norm_relu(x, g, b):
    xf = tf.cast(x, tf.float32)
    m, v = tf.nn.moments(xf, axes=[1, 2], keepdims=True)
    y = (xf - m) * tf.math.rsqrt(v + 1e-5) * g + b
    return tf.cast(tf.nn.relu(y), x.dtype)

def make(fn, jit):
    inner = tf.function(fn, jit_compile=True) if jit else fn
    @tf.function
    def step(x, g, b, dy):
        with tf.GradientTape() as t:
            t.watch([x, g, b])
            y = inner(x, g, b)
        return t.gradient(y, [x, g, b], output_gradients=dy)
    return step

for shape in ([16, 64, 64, 128], [16, 32, 32, 256], [16, 128, 128, 64]):
    dt = tf.bfloat16
    x = tf.cast(tf.random.normal(shape), dt); dy = tf.cast(tf.random.normal(shape), dt)
    g = tf.ones([shape[-1]]); b = tf.zeros([shape[-1]])
    res = {}
    ref = None
    for name, fn, jit in (("fused (current)", norm_relu, False), ("fused under XLA", norm_relu, True),
                          ("moments, no XLA", plain_norm_relu, False), ("moments under XLA", plain_norm_relu, True)):
        step = make(fn, jit)
        out = step(x, g, b, dy)
        if ref is None: ref = out
        err = float(tf.reduce_max(tf.abs(tf.cast(out[0], tf.float32) - tf.cast(ref[0], tf.float32))))
        ts = []
        for _ in range(10):
            t0 = time.perf_counter(); o = step(x, g, b, dy); _ = o[0].numpy(); ts.append(time.perf_counter() - t0)
        res[name] = statistics.median(ts) * 1e3
        print(f"{shape} {name:20s} {res[name]:8.1f} ms   max |dx - current| {err:.3g}", flush=True)
