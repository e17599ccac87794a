"""How well one training step uses the machine: FLOPs, step time, matmul peak (imports training/ and config).

flops.py counts a graph's FLOPs, machine.py describes the machine and
measures its float32 matmul rate, steps.py times a train step and runs the
whole benchmark behind ``python -m mlc_keras.benchmark``.
"""

from mlc_keras.tools.benchmark.flops import (COUNTED_TYPES, FlopCount, count_graph_flops,
                                             live_ops, op_flops, profiler_flops)
from mlc_keras.tools.benchmark.machine import (MatmulResult, cpu_model, cpu_simd, machine_info,
                                               measure_matmul, measure_matmul_gflops)
from mlc_keras.tools.benchmark.steps import (TARGET_UTILISATION, StepTiming, check_settings,
                                             count_step_flops, data_specs, format_report,
                                             random_batch, run_benchmark, summary_line,
                                             time_train_steps, train_step_function)

__all__ = [
    "COUNTED_TYPES", "FlopCount", "MatmulResult", "StepTiming", "TARGET_UTILISATION",
    "check_settings", "count_graph_flops", "count_step_flops", "cpu_model", "cpu_simd",
    "data_specs", "format_report", "summary_line", "live_ops", "machine_info", "measure_matmul",
    "measure_matmul_gflops", "op_flops", "profiler_flops", "random_batch", "run_benchmark",
    "time_train_steps", "train_step_function",
]
