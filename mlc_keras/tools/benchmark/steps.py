"""Times and counts one training step and runs the whole benchmark (imports config, training, tools.benchmark)."""

import dataclasses
import json
import math
import os
import statistics
import time

from mlc_keras import config as config_lib
from mlc_keras.tools.benchmark.flops import count_graph_flops, profiler_flops
from mlc_keras.tools.benchmark.machine import machine_info, measure_matmul

TARGET_UTILISATION = 0.80  # issue 14: achieved GFLOP/s as a fraction of the measured matmul rate


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


def stacked(gan, batch):
    """Examples one train step reads: ``batch`` per D update, ``n_critic``
    D updates stacked along the batch axis (``--n_critic``, StarGAN's 5)."""
    return int(batch) * int(getattr(gan, "n_critic", 1) or 1)


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
        return step.get_concrete_function(data_specs(stacked(gan, batch) // replicas, resolution))


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
    data = random_batch(stacked(gan, batch), resolution, gan.num_classes, seed)
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


def check_settings(**settings):
    """Raises ConfigError naming the first benchmark count below its least value
    (steps, matmul_size and matmul_reps >= 1; warmup_steps >= 0)."""
    for name, least in (("steps", 1), ("warmup_steps", 0), ("matmul_size", 1),
                        ("matmul_reps", 1)):
        if settings[name] < least:
            raise config_lib.ConfigError(f"--{name}={settings[name]}: must be >= {least}")


def profile_step_and_serving(gan, config, logdir, log=print):
    """Profiler tables (``profile.op_time_table``) of one training step and
    of one batch-1 generator call (the serving path's model call)."""
    import tensorflow as tf

    from mlc_keras.tools.benchmark import profile

    data = random_batch(stacked(gan, config.batch_size), config.resolution, gan.num_classes,
                        config.seed)
    iterator = iter(gan.distribute_strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(data).repeat()))
    gan.make_train_function()
    tables = {}
    log("profiling 2 train steps ...")
    train_dir = os.path.join(logdir, "train_step")
    profile.profile_calls(lambda: _sync(gan.train_function(iterator)), train_dir, calls=2)
    tables["train_step"] = profile.op_time_table(train_dir, calls=2)
    r, n = config.resolution, gan.num_classes
    serve = tf.function(lambda x, c: gan.generator((x, c), training=False)[0])
    x, c = tf.zeros([1, r, r, 3]), tf.one_hot([0], n)
    log("profiling 5 batch-1 generator calls ...")
    serve_dir = os.path.join(logdir, "serving_batch1")
    profile.profile_calls(lambda: serve(x, c).numpy(), serve_dir, calls=5)
    tables["serving_batch1"] = profile.op_time_table(serve_dir, calls=5)
    return tables


def run_benchmark(config, warmup_steps=3, steps=10, matmul_size=2048, matmul_reps=10,
                  profiler_check=True, log=print, profile_dir=None):
    """Builds the configured GAN and measures it; returns the report dict
    (with ``profile_dir``: also the profiler tables of a step and of a
    batch-1 generator call, traces kept there)."""
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
        "critic_levels": list(config.critic_levels),
        "mixed_precision": config.mixed_precision}}

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

    if profile_dir:
        report["profile"] = profile_step_and_serving(gan, config, profile_dir, log)

    if config.mixed_precision != "float32":
        log(f"timing a {config.mixed_precision} {matmul_size}^2 matmul ...")
        report["matmul_low_precision"] = measure_matmul(matmul_size, matmul_reps,
                                                        dtype=config.mixed_precision).as_dict()

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
    if "matmul_low_precision" in report:
        low = report["matmul_low_precision"]["gflops_median"]
        report["results"]["low_precision_matmul_gflops"] = low
        report["results"]["utilisation_of_low_precision_peak"] = achieved / low
    report["machine"]["load_average_after"] = machine_info()["load_average"]
    return report


def summary_line(report):
    """The one JSON line a benchmark run ends with (fraction of the same-run
    float32 matmul peak, s/step, that peak, the CPU)."""
    r = report["results"]
    line = {"fraction_of_peak": round(r["utilisation"], 4), "s_per_step": round(r["s_per_step"], 4),
            "peak_gflops": round(r["matmul_gflops"], 1), "cpu": report["machine"]["cpu_model"],
            "mixed_precision": report["setting"]["mixed_precision"],
            "resolution": report["setting"]["resolution"],
            "global_batch": report["setting"]["global_batch"]}
    if "low_precision_matmul_gflops" in r:
        line["low_precision_peak_gflops"] = round(r["low_precision_matmul_gflops"], 1)
    if report["machine"].get("onednn_max_cpu_isa"):
        line["onednn_max_cpu_isa"] = report["machine"]["onednn_max_cpu_isa"]
    return json.dumps(line)


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
                     f"oneDNN {onednn} (TF_ENABLE_ONEDNN_OPTS={m['onednn_env']}"
                     + (f", ONEDNN_MAX_CPU_ISA={m['onednn_max_cpu_isa']}"
                        if m.get("onednn_max_cpu_isa") else "") + ")"),
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
