"""python -m mlc_keras.benchmark --flagfile=configs/london128.flags --steps=10

How well one training step uses the machine (command only):

    python -m mlc_keras.benchmark [training flags] [--steps=10] [--profile_dir=DIR]

Reports the machine, s/step and images/s at the configured setting, the FLOPs
of one training step (counted from the traced graph), the achieved GFLOP/s,
the float32 matmul rate of this machine and achieved / matmul against the
target of 80 % (issue 14). Every training flag works (--resolution, --batch_size,
--jit_compile, --strategy, --flagfile, ...; see mlc_keras/config.py). How the
FLOPs are counted: mlc_keras/tools/benchmark/flops.py.
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("warmup_steps", 3, "Benchmark: untimed train steps first (tracing, compilation, caches)."),
    ("steps", 10, "Benchmark: timed train steps."),
    ("matmul_size", 2048, "Benchmark: n of the n x n float32 matmul that measures the machine."),
    ("matmul_reps", 10, "Benchmark: timed repetitions of the matmul."),
    ("json_out", "", "Benchmark: also write the results as JSON to this path."),
    ("profile_dir", "", "Benchmark: also trace a train step and a batch-1 generator call with "
                        "the TensorFlow profiler here and print where the time goes."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import check_precision_kernels, configure_cpu

    note = configure_cpu()  # before TensorFlow is imported
    from mlc_keras.images import write_json_atomic
    from mlc_keras.tools import benchmark
    from mlc_keras.tools.benchmark.profile import format_table

    fv = flags.FLAGS
    config = config_lib.config_from_flags()
    check_precision_kernels(config.mixed_precision)
    benchmark.check_settings(**{name: fv[name].value for name, _, _ in FLAGS_SPEC[:4]})
    print(note, flush=True)
    report = benchmark.run_benchmark(config, fv.warmup_steps, fv.steps, fv.matmul_size,
                                     fv.matmul_reps, log=lambda msg: print(msg, flush=True),
                                     profile_dir=fv.profile_dir or None)
    print(benchmark.format_report(report), flush=True)
    for name, table in report.get("profile", {}).items():
        print(f"\n{name} (profiler, {fv.profile_dir}):\n{format_table(table)}", flush=True)
    if fv.json_out:
        write_json_atomic(fv.json_out, report)
        print(f"wrote {fv.json_out}", flush=True)
    print(benchmark.summary_line(report), flush=True)  # the last line: one JSON object


if __name__ == "__main__":
    config_lib.define_flags()
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
