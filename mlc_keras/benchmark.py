"""python -m mlc_keras.benchmark [training flags] [--steps=10] [--warmup_steps=3]
                                [--matmul_size=2048] [--json_out=PATH]

Measures how well one training step uses the machine:

  1. the machine: CPU model, cores, TensorFlow / Keras versions, oneDNN;
  2. training throughput (s/step, images/s) at the configured setting, timed
     through the same Keras train function that ``fit`` calls, on random data
     of the pipeline's contract, after warm-up (tracing) steps;
  3. the FLOPs of one training step, counted from the traced graph (below);
  4. the achieved GFLOP/s = step FLOPs / s_per_step;
  5. the float32 matmul rate of this machine, measured in the same run;
  6. achieved / matmul rate, against the target of 75 %.

Every training flag works (--resolution, --batch_size, --g_channels,
--critic_levels, --jit_compile, --strategy, --flagfile, ...); see
mlc_keras/config.py.

FLOP counting
-------------
``count_graph_flops`` walks a graph and counts 2 * multiply-accumulates of the
ops that carry the arithmetic of this model -- Conv2D, Conv2DBackpropInput
(also the forward op of a transposed conv), Conv2DBackpropFilter, MatMul and
BatchMatMul{,V2,V3} -- from the static shapes in the graph. Elementwise ops,
normalisation and the optimizer update are not counted (they are memory
bound and a few per cent of the arithmetic). The walker

  * descends into function bodies (PartitionedCall / StatefulPartitionedCall,
    calls by function name, If / Case branches -- the largest branch counts --
    and While bodies, which count once per loop and are reported);
  * counts only the ops that run: TensorFlow prunes a function body to what
    its outputs, control outputs and stateful ops depend on, and so does the
    walker (``prune=True``). A persistent GradientTape leaves dead gradient ops
    in the graph, e.g. the filter gradients of D when only G's gradients are
    asked for.

TensorFlow's own profiler (``tf.compat.v1.profiler.profile`` with
``float_operation()``, wrapped by ``profiler_flops``) registers flop counts
for Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter and MatMul, and agrees
with the walker on a flat graph (the tests check it; its BatchMatMul count
reads a transpose_a attribute that BatchMatMul does not have, so it is wrong
with adj_x -- the walker reads adj_x), but it only visits the
top-level nodes: ops inside function bodies (a nested tf.function such as the
step Keras builds for ``fit``, or a tf.cond / tf.while_loop) are not counted,
and it cannot tell dead ops from live ones. The benchmark therefore reports
the walker's count and prints the profiler's per-type figures on the same
(unpruned) graph as a cross-check.
"""

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time

from absl import app, flags

from mlc_keras import config as config_lib
from mlc_keras.errors import exit_on_user_error

config_lib.define_flags()

for _name, _default, _help in (
        ("warmup_steps", 3, "Benchmark: untimed train steps first (tracing, compilation, caches)."),
        ("steps", 10, "Benchmark: timed train steps."),
        ("matmul_size", 2048, "Benchmark: n of the n x n float32 matmul that measures the "
                              "machine."),
        ("matmul_reps", 10, "Benchmark: timed repetitions of the matmul.")):
    if _name not in flags.FLAGS:
        flags.DEFINE_integer(_name, _default, _help)
if "json_out" not in flags.FLAGS:
    flags.DEFINE_string("json_out", "", "Benchmark: also write the results as JSON to this path.")

TARGET_UTILISATION = 0.75  # achieved GFLOP/s as a fraction of the measured matmul rate

MATMUL_TYPES = frozenset({"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"})
CONV_TYPES = frozenset({"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"})
COUNTED_TYPES = CONV_TYPES | MATMUL_TYPES
_IF_TYPES = frozenset({"If", "StatelessIf"})
_CASE_TYPES = frozenset({"Case", "StatelessCase"})
_WHILE_TYPES = frozenset({"While", "StatelessWhile"})
_BACKWARD_SCOPE = "gradient_tape"  # the name scope of GradientTape.gradient's ops


# ----------------------------------------------------------------------------- machine


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
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                            if x in present]
    except OSError:
        pass
    return []


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
    }


# ----------------------------------------------------------------------------- FLOP counting


@dataclasses.dataclass
class FlopCount:
    """FLOPs (2 x multiply-accumulates) of the counted op types in a graph.

    total: all counted FLOPs; by_type: per op type; backward: the part under
    GradientTape.gradient's name scope (the rest is the forward pass);
    ops: counted op instances per type; dead: FLOPs of ops that do not run and
    were left out (prune=True); while_loops: While bodies counted once each;
    unresolved: counted-type ops whose shapes were not static (left out).
    """

    total: int = 0
    by_type: dict = dataclasses.field(default_factory=dict)
    ops: dict = dataclasses.field(default_factory=dict)
    backward: int = 0
    dead: int = 0
    while_loops: int = 0
    unresolved: list = dataclasses.field(default_factory=list)

    @property
    def forward(self):
        return self.total - self.backward

    def add(self, op_type, flops, backward):
        self.total += flops
        self.by_type[op_type] = self.by_type.get(op_type, 0) + flops
        self.ops[op_type] = self.ops.get(op_type, 0) + 1
        if backward:
            self.backward += flops

    def merge(self, other):
        self.total += other.total
        self.backward += other.backward
        self.dead += other.dead
        self.while_loops += other.while_loops
        self.unresolved += other.unresolved
        for t, v in other.by_type.items():
            self.by_type[t] = self.by_type.get(t, 0) + v
        for t, v in other.ops.items():
            self.ops[t] = self.ops.get(t, 0) + v

    def as_dict(self):
        return {"total": self.total, "forward": self.forward, "backward": self.backward,
                "by_type": dict(sorted(self.by_type.items())),
                "ops": dict(sorted(self.ops.items())),
                "dead": self.dead, "while_loops": self.while_loops,
                "unresolved": list(self.unresolved)}


def _dims(shape):
    """A static TensorShape -> list of ints, or None when any dim is unknown."""
    if shape.rank is None:
        return None
    dims = shape.as_list()
    return None if any(d is None for d in dims) else dims


def _prod(values):
    return math.prod(int(v) for v in values)


def op_flops(op):
    """2 x MACs of one Conv2D / Conv2DBackpropInput / Conv2DBackpropFilter /
    MatMul / BatchMatMul* op from its static shapes; None for any other op type.
    Raises ValueError when a needed shape is not static.

    Every conv form does the MACs of its forward convolution: one per element
    of the forward output (= out_backprop) per filter tap (kh * kw * Cin, the
    filter's per-group input depth), whatever the data format or padding.
    """
    t = op.type
    if t not in COUNTED_TYPES:
        return None

    def static(tensor, what):
        dims = _dims(tensor.shape)
        if dims is None:
            raise ValueError(f"{t} {op.name}: {what} shape {tensor.shape} is not static")
        return dims

    if t == "Conv2D":
        out = static(op.outputs[0], "output")
        kh, kw, cin, _ = static(op.inputs[1], "filter")
        return 2 * _prod(out) * kh * kw * cin
    if t == "Conv2DBackpropInput":  # inputs: input_sizes, filter, out_backprop
        kh, kw, cin, _ = static(op.inputs[1], "filter")
        return 2 * _prod(static(op.inputs[2], "out_backprop")) * kh * kw * cin
    if t == "Conv2DBackpropFilter":  # inputs: input, filter_sizes, out_backprop -> filter grad
        kh, kw, cin, _ = static(op.outputs[0], "filter")
        return 2 * _prod(static(op.inputs[2], "out_backprop")) * kh * kw * cin
    a = static(op.inputs[0], "a")
    out = static(op.outputs[0], "output")
    if t == "MatMul":
        k = a[0] if op.get_attr("transpose_a") else a[1]
    else:  # BatchMatMul*: adj_x (BatchMatMul has no transpose_a attribute)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
    return 2 * _prod(out) * k


def _is_stateful(op):
    try:
        return op.op_def.is_stateful
    except Exception:  # noqa: BLE001 - a call by function name has no registered OpDef
        return True


def live_ops(graph):
    """The ops TensorFlow runs when it calls ``graph`` as a function: those its
    outputs, control outputs and stateful ops depend on (as in TensorFlow's
    PruneFunctionBody). A graph without declared outputs keeps every op."""
    outputs = list(getattr(graph, "outputs", None) or [])
    control = list(getattr(graph, "control_outputs", None) or [])
    if not outputs and not control:
        return set(graph.get_operations())
    seeds = [t.op for t in outputs] + control
    seeds += [op for op in graph.get_operations()
              if op.type != "Placeholder" and _is_stateful(op)]
    live, stack = set(), list(seeds)
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def _function_graph(graph, name, call_op):
    """The FuncGraph of library function ``name`` as seen from ``graph``."""
    g = graph
    while g is not None:
        fn = g._get_function(name)  # noqa: SLF001 - no public lookup by name
        if fn is not None:
            fg = getattr(fn, "graph", None)
            if fg is not None:
                return fg
            from tensorflow.python.framework import function_def_to_graph

            fdef = getattr(fn, "cached_definition", None) or fn.definition
            shapes = [t.shape for t in call_op.inputs]
            return function_def_to_graph.function_def_to_graph(fdef, input_shapes=shapes)
        g = getattr(g, "outer_graph", None)
    raise ValueError(f"function {name!r} (called by {call_op.name}) is not in the graph's library")


def _func_attrs(op):
    """[(attr name, [function names])] of an op's function-valued attributes."""
    found = []
    for key, value in op.node_def.attr.items():
        if value.HasField("func"):
            found.append((key, [value.func.name]))
        elif value.HasField("list") and value.list.func:
            found.append((key, [f.name for f in value.list.func]))
    return found


def count_graph_flops(graph, prune=True, _backward=False, _depth=0):
    """FlopCount of ``graph`` (a tf.Graph / FuncGraph), nested bodies included.

    prune: count only ops that run (see ``live_ops``); False counts every node,
    as TensorFlow's profiler does.
    """
    if _depth > 64:
        raise ValueError("function nesting deeper than 64 levels")
    count = FlopCount()
    live = live_ops(graph) if prune else None
    for op in graph.get_operations():
        backward = _backward or _BACKWARD_SCOPE in op.name
        is_live = live is None or op in live
        if op.type in COUNTED_TYPES:
            try:
                flops = op_flops(op)
            except ValueError as e:
                count.unresolved.append(str(e))
                continue
            if is_live:
                count.add(op.type, flops, backward)
            else:
                count.dead += flops
            continue
        bodies = _func_attrs(op)
        if graph._is_function(op.type):  # noqa: SLF001 - a direct call by function name
            bodies.append(("call", [op.type]))
        if not bodies:
            continue

        def sub(name):
            fg = _function_graph(graph, name, op)
            return count_graph_flops(fg, prune, backward, _depth + 1)

        if op.type in _IF_TYPES or op.type in _CASE_TYPES:
            branch_keys = ("then_branch", "else_branch", "branches")
            names = [n for key, ns in bodies if key in branch_keys for n in ns]
            inner = max((sub(n) for n in names), key=lambda c: c.total, default=FlopCount())
        else:
            inner = FlopCount()
            for _, names in bodies:
                for n in names:
                    inner.merge(sub(n))
            if op.type in _WHILE_TYPES:
                inner.while_loops += 1
        if is_live:
            count.merge(inner)
        else:
            count.dead += inner.total + inner.dead
    return count


def profiler_flops(graph):
    """TensorFlow's profiler on ``graph``: (total float ops of every registered
    op type, {op type: float ops}). Top-level nodes only, dead ones included."""
    import tensorflow as tf
    from tensorflow.python.util import deprecation

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    with deprecation.silence():
        result = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    # The 'op' view is a chain root -> type -> type ...: float_ops is each
    # type's own count, total_float_ops includes the rest of the chain.
    by_type, stack = {}, list(result.children)
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_type[node.name] = by_type.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return int(result.total_float_ops), by_type


# ----------------------------------------------------------------------------- the train step


def data_specs(batch, resolution):
    """tf.TensorSpecs of one element of the training stream (pipeline contract)."""
    import tensorflow as tf

    image = tf.TensorSpec([batch, resolution, resolution, 3], tf.float32)
    label = tf.TensorSpec([batch], tf.int32)
    return {"source": image, "target": image, "target_label": label, "source_label": label}


def random_batch(batch, resolution, num_classes, seed=0):
    """Random data of the contract: images in [-1, 1], labels in range."""
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    images = lambda: g.uniform([batch, resolution, resolution, 3], -1.0, 1.0)  # noqa: E731
    labels = lambda: g.uniform([batch], 0, num_classes, dtype=tf.int32)  # noqa: E731
    return {"source": images(), "target": images(), "target_label": labels(),
            "source_label": labels()}


def train_step_function(gan, batch, resolution=None):
    """Concrete function of one training step on a global batch of ``batch``:
    ``gan.train_step`` under the GAN's strategy, as Keras runs it. Under a
    strategy with k replicas each gets batch / k examples (so the graph holds
    k replica copies: the whole global step)."""
    import tensorflow as tf

    resolution = resolution or gan.generator.resolution
    strategy = gan.distribute_strategy
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
        raise ValueError(f"batch {batch} does not split over {replicas} replicas")

    @tf.function(autograph=False)
    def step(data):
        return strategy.run(gan.train_step, args=(data,))

    with strategy.scope():
        return step.get_concrete_function(data_specs(batch // replicas, resolution))


def count_step_flops(gan, batch, resolution=None, prune=True):
    """FlopCount of ONE training step on a global batch of ``batch``, counted
    from the traced graph (tracing only: no weight or state changes)."""
    return count_graph_flops(train_step_function(gan, batch, resolution).graph, prune=prune)


@dataclasses.dataclass
class StepTiming:
    steps: int  # train steps timed
    calls: int  # train-function calls timed (steps_per_execution steps each)
    steps_per_execution: int
    first_call_s: float  # the first warm-up call: tracing (+ XLA compilation)
    call_s: list  # wall time of each timed call

    @property
    def s_per_step(self):
        """Median call time / steps per call: robust to a busy machine."""
        return statistics.median(self.call_s) / self.steps_per_execution

    @property
    def mean_s_per_step(self):
        return sum(self.call_s) / (len(self.call_s) * self.steps_per_execution)

    @property
    def min_s_per_step(self):
        return min(self.call_s) / self.steps_per_execution

    def as_dict(self):
        return {"steps": self.steps, "calls": self.calls,
                "steps_per_execution": self.steps_per_execution,
                "first_call_s": self.first_call_s, "call_s": list(self.call_s),
                "s_per_step_median": self.s_per_step, "s_per_step_mean": self.mean_s_per_step,
                "s_per_step_min": self.min_s_per_step}


def _sync(logs):
    import tensorflow as tf

    leaves = tf.nest.flatten(logs)
    if leaves and hasattr(leaves[0], "numpy"):
        leaves[0].numpy()


def time_train_steps(gan, batch, steps=10, warmup_steps=3, resolution=None, seed=0):
    """Times train steps through ``gan.train_function`` (the function ``fit``
    calls, with the compiled jit_compile / steps_per_execution) on a repeated
    random batch of the data contract. Warm-up calls come first, untimed
    except the first (tracing). Each timed call is synchronised."""
    import tensorflow as tf

    resolution = resolution or gan.generator.resolution
    strategy = gan.distribute_strategy
    spe = max(1, int(getattr(gan, "steps_per_execution", 1) or 1))
    data = random_batch(batch, resolution, gan.num_classes, seed)
    dataset = tf.data.Dataset.from_tensors(data).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    gan.make_train_function()
    warmup_calls = max(1, math.ceil(warmup_steps / spe))
    calls = max(1, math.ceil(steps / spe))
    start = time.perf_counter()
    _sync(gan.train_function(iterator))
    first = time.perf_counter() - start
    for _ in range(warmup_calls - 1):
        _sync(gan.train_function(iterator))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        _sync(gan.train_function(iterator))
        times.append(time.perf_counter() - start)
    return StepTiming(calls * spe, calls, spe, first, times)


# ----------------------------------------------------------------------------- machine peak


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


def measure_matmul(n=2048, reps=10, warmup=2, seed=0):
    """Times a float32 n x n matmul in a tf.function: MatmulResult."""
    import tensorflow as tf

    g = tf.random.Generator.from_seed(seed)
    a = g.normal([n, n])
    b = g.normal([n, n])
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


# ----------------------------------------------------------------------------- the benchmark


def run_benchmark(config, warmup_steps=3, steps=10, matmul_size=2048, matmul_reps=10,
                  profiler_check=True, log=print):
    """Builds the configured GAN and measures it; returns the report dict."""
    from mlc_keras.training.build import build_gan
    from mlc_keras.training.runtime import make_strategy, split_cpu

    split_cpu(config.cpu_devices)
    strategy = make_strategy(config.strategy, config.batch_size)
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and (config.jit_compile or config.steps_per_execution > 1):
        raise config_lib.ConfigError(
            "--jit_compile and --steps_per_execution > 1 fail under MirroredStrategy "
            f"({replicas} replicas); use --strategy=one_device for them")
    report = {"machine": machine_info(), "setting": {
        "resolution": config.resolution, "global_batch": config.batch_size,
        "strategy": type(strategy).__name__, "replicas": replicas,
        "jit_compile": config.jit_compile, "steps_per_execution": config.steps_per_execution,
        "g_channels": config.g_channels, "d_channels": config.d_channels,
        "critic_levels": list(config.critic_levels)}}

    log("building the GAN ...")
    with strategy.scope():
        gan = build_gan(config)

    log("tracing one train step and counting its FLOPs ...")
    start = time.perf_counter()
    fn = train_step_function(gan, config.batch_size, config.resolution)
    count = count_graph_flops(fn.graph, prune=True)
    report["flops"] = count.as_dict()
    report["flops"]["trace_s"] = time.perf_counter() - start
    if count.unresolved:
        log(f"warning: {len(count.unresolved)} op(s) without static shapes were not counted, "
            f"e.g. {count.unresolved[0]}")
    if profiler_check:
        all_nodes = count_graph_flops(fn.graph, prune=False)
        prof_total, prof_by_type = profiler_flops(fn.graph)
        report["profiler_check"] = {
            "walker_all_nodes": dict(sorted(all_nodes.by_type.items())),
            "profiler": {t: prof_by_type.get(t, 0) for t in sorted(all_nodes.by_type)},
            "profiler_total_all_registered_types": prof_total,
        }
    del fn

    log(f"timing {steps} train steps after {warmup_steps} warm-up ...")
    timing = time_train_steps(gan, config.batch_size, steps, warmup_steps, config.resolution,
                              config.seed)
    report["timing"] = timing.as_dict()

    log(f"timing a float32 {matmul_size}^2 matmul ...")
    matmul = measure_matmul(matmul_size, matmul_reps)
    report["matmul"] = matmul.as_dict()

    s = timing.s_per_step
    achieved = count.total / s / 1e9
    ratio = achieved / matmul.gflops
    report["results"] = {
        "s_per_step": s,
        "images_per_s": config.batch_size / s,
        "gflop_per_step": count.total / 1e9,
        "gflop_per_image": count.total / config.batch_size / 1e9,
        "achieved_gflops": achieved,
        "matmul_gflops": matmul.gflops,
        "utilisation": ratio,
        # fastest step vs fastest matmul: less sensitive to other jobs on the machine
        "utilisation_best": count.total / timing.min_s_per_step / 1e9 / matmul.best_gflops,
        "target": TARGET_UTILISATION,
        "target_met": ratio >= TARGET_UTILISATION,
    }
    report["machine"]["load_average_after"] = machine_info()["load_average"]
    return report


def _g(flops):
    return f"{flops / 1e9:,.2f}"


def format_report(report):
    """The report as a compact table."""
    m, st, r, t = report["machine"], report["setting"], report["results"], report["timing"]
    f, mm = report["flops"], report["matmul"]
    onednn = "on" if m["onednn_enabled"] else "off"
    load = " ".join(map(str, m["load_average"] or [])) or "?"
    load_after = " ".join(map(str, m.get("load_average_after") or [])) or "?"
    rows = [
        ("machine", f"{m['cpu_model']} ({'/'.join(m.get('simd') or []) or '?'}), {m['cpu_count']} "
                    f"logical cores ({m['usable_cores']} usable); "
                    f"load avg {load} before, {load_after} after"),
        ("software", f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, Python {m['python']}, "
                     f"oneDNN {onednn} (TF_ENABLE_ONEDNN_OPTS={m['onednn_env']})"),
        ("setting", f"{st['resolution']} px, global batch {st['global_batch']}, {st['strategy']} "
                    f"({st['replicas']} replica{'s' if st['replicas'] > 1 else ''}), jit_compile "
                    f"{'on' if st['jit_compile'] else 'off'}, steps_per_execution "
                    f"{st['steps_per_execution']}"),
        ("train step", f"{r['s_per_step']:.3f} s/step (median of {t['steps']}; mean "
                       f"{t['s_per_step_mean']:.3f}, min {t['s_per_step_min']:.3f}; first call "
                       f"{t['first_call_s']:.1f} s)"),
        ("throughput", f"{r['images_per_s']:.2f} images/s"),
        ("step FLOPs", f"{_g(f['total'])} GFLOP/step = {_g(f['forward'])} forward + "
                       f"{_g(f['backward'])} backward; {r['gflop_per_image']:.3f} GFLOP/image"),
        ("  by op", ", ".join(f"{k} {_g(v)}" for k, v in f["by_type"].items())),
        ("  method", "graph walker over the traced train step, 2*MACs of Conv2D/Conv2DBackprop"
                     f"Input/Filter/MatMul/BatchMatMul, function bodies included, dead ops "
                     f"skipped ({_g(f['dead'])} GFLOP)"
                     + (f", {f['while_loops']} While bodies counted once" if f["while_loops"]
                        else "")),
        ("achieved", f"{r['achieved_gflops']:.1f} GFLOP/s"),
        ("matmul", f"{r['matmul_gflops']:.1f} GFLOP/s (float32 {mm['n']}^2, median of "
                   f"{len(mm['seconds'])}; best {mm['gflops_best']:.1f})"),
        ("utilisation", f"{100 * r['utilisation']:.1f} % of matmul (medians; fastest step vs "
                        f"fastest matmul {100 * r.get('utilisation_best', math.nan):.1f} %); "
                        "target "
                        f"{100 * r['target']:.0f} %: {'MET' if r['target_met'] else 'NOT MET'}"),
    ]
    check = report.get("profiler_check")
    if check:
        parts = []
        for op_type, walker in check["walker_all_nodes"].items():
            prof = check["profiler"].get(op_type, 0)
            same = "=" if prof == walker else "!="
            parts.append(f"{op_type} {_g(prof)} {same} {_g(walker)}")
        rows.append(("profiler", "GFLOP per type, profiler vs walker on all top-level nodes: "
                                 + "; ".join(parts)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import atomic_write_text, configure_cpu

    note = configure_cpu()  # before TensorFlow is imported
    fv = flags.FLAGS
    with exit_on_user_error():
        config = config_lib.config_from_flags()
        for name, least in (("steps", 1), ("warmup_steps", 0), ("matmul_size", 1),
                            ("matmul_reps", 1)):
            if fv[name].value < least:
                raise config_lib.ConfigError(f"--{name}={fv[name].value}: must be >= {least}")
        print(note, flush=True)
        report = run_benchmark(config, fv.warmup_steps, fv.steps, fv.matmul_size, fv.matmul_reps,
                               log=lambda msg: print(msg, flush=True))
    print(format_report(report), flush=True)
    if fv.json_out:
        atomic_write_text(fv.json_out, json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {fv.json_out}", flush=True)


if __name__ == "__main__":
    app.run(main, argv=sys.argv)
