"""Serving speed on this machine: SavedModel latency and throughput on the
CPU, and the REST / gRPC round-trip overhead on loopback.

    python serving/benchmark.py --export=EXPORT_ROOT [--model_name=mlc] [--reps=30]

EXPORT_ROOT holds EXPORT_ROOT/<model_name>/<version>/ (python -m mlc_keras.export).
The round trips go to tests/serving_double.py, the project's TEST DOUBLE of
tensorflow_model_server (the real binary cannot be installed here): the
overhead it measures is the clients' encoding + the protocol + the double's
decoding on 127.0.0.1, not the C++ server's own overhead.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))], "reps": reps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="export root (DIR of DIR/<model>/<version>)")
    parser.add_argument("--model_name", default="mlc")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--json_out", default="")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    # as in synthesize and the demo (mlc_keras.training.runtime.configure_cpu):
    # the filters are constants in a serving process; 0 measures without it
    os.environ.setdefault("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    from serving.client import GrpcClient, RestClient
    from serving_double import FakeModelServer

    model_dir = os.path.join(args.export, args.model_name)
    from mlc_keras.inference.loading import METADATA_FILE, version_numbers

    versions = version_numbers(model_dir, complete_only=True)
    if not versions:
        sys.exit(f"error: no version folder under {model_dir}")
    path = os.path.join(model_dir, str(versions[-1]))
    meta = json.load(open(os.path.join(path, "assets.extra", METADATA_FILE)))
    r = meta["resolution"]
    fn = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(0)

    def batch(n):
        return (rng.uniform(-1, 1, (n, r, r, 3)).astype(np.float32),
                rng.integers(0, len(meta["expressions"]), n).astype(np.int32))

    report = {"model": path, "resolution": r, "cpu_cores": os.cpu_count(),
              "tensorflow": tf.__version__,
              "onednn": os.environ["TF_ENABLE_ONEDNN_OPTS"],
              "frozen_weights": os.environ["TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"]}
    x1, e1 = batch(1)
    x16, e16 = batch(16)
    report["savedmodel_batch1"] = _timed(
        lambda: fn(images=tf.constant(x1), expressions=tf.constant(e1)), args.reps)
    b16 = _timed(lambda: fn(images=tf.constant(x16), expressions=tf.constant(e16)),
                 max(5, args.reps // 3))
    b16["images_per_s"] = 16 / (b16["median_ms"] / 1000)
    report["savedmodel_batch16"] = b16
    with FakeModelServer(args.export, model_names=[args.model_name], warmup=False) as server:
        rest = RestClient(server.rest_url, args.model_name)
        rest_cols = RestClient(server.rest_url, args.model_name, request_format="columnar")
        grpc_client = GrpcClient(server.grpc_target, args.model_name)
        for name, client in (("rest_row", rest), ("rest_columnar", rest_cols), ("grpc", grpc_client)):
            t = _timed(lambda c=client: c.predict(x1, e1), args.reps)
            t["overhead_ms"] = t["median_ms"] - report["savedmodel_batch1"]["median_ms"]
            report[f"{name}_batch1"] = t
        grpc_client.close() if hasattr(grpc_client, "close") else None

    lines = [
        f"model        {path} ({r} px), TensorFlow {tf.__version__}, {os.cpu_count()} cores",
        f"settings     TF_ENABLE_ONEDNN_OPTS={report['onednn']} "
        f"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS={report['frozen_weights']}",
        "SavedModel   batch 1: {median_ms:.1f} ms median, {p90_ms:.1f} ms p90".format(
            **report["savedmodel_batch1"]),
        "SavedModel   batch 16: {median_ms:.1f} ms median -> {images_per_s:.1f} images/s".format(
            **report["savedmodel_batch16"]),
    ]
    for name in ("rest_row", "rest_columnar", "grpc"):
        t = report[f"{name}_batch1"]
        lines.append(f"{name:<12} batch 1 round trip: {t['median_ms']:.1f} ms median "
                     f"(+{t['overhead_ms']:.1f} ms over the direct call), p90 {t['p90_ms']:.1f} ms")
    lines.append("(round trips against tests/serving_double.py on 127.0.0.1, a test double)")
    report.update(floor_report(args.export, args.model_name, versions[-1], r,
                               report["savedmodel_batch1"]["median_ms"],
                               report["savedmodel_batch16"]["median_ms"]))
    lines.append("FLOP floor   batch 1: {batch1_floor_ms:.1f} ms at the same-run float32 matmul "
                 "peak ({peak_gflops:.0f} GFLOP/s): measured / floor = {batch1_over_floor:.2f}; "
                 "batch 16 uses {batch16_fraction_of_peak:.1%} of that peak".format(**report))
    print("\n".join(lines))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: (round(report[k], 4) if isinstance(report[k], float) else report[k])
                      for k in ("batch1_ms", "batch1_floor_ms", "batch16_fraction_of_peak",
                                "peak_gflops", "cpu", "frozen_weights")}))


def floor_report(export_root, model_name, version, resolution, batch1_ms, batch16_ms):
    """FLOPs of the generator's forward pass (counted from its traced graph)
    at batch 1 and 16, the same-run float32 matmul peak, and the floors."""
    import tensorflow as tf

    from mlc_keras.inference.loading import load_generator
    from mlc_keras.tools.benchmark import count_graph_flops, cpu_model, measure_matmul

    generator = load_generator(os.path.join(export_root, f"{model_name}-{version}.keras"))
    n = generator.num_classes

    def flops(batch):
        fn = tf.function(lambda x, c: generator((x, c), training=False)[0])
        graph = fn.get_concrete_function(
            tf.TensorSpec([batch, resolution, resolution, 3], tf.float32),
            tf.TensorSpec([batch, n], tf.float32)).graph
        return count_graph_flops(graph, prune=True).total

    peak = measure_matmul(2048, 10).gflops
    f1, f16 = flops(1), flops(16)
    floor1 = f1 / (peak * 1e9) * 1000
    return {"gflop_batch1": f1 / 1e9, "gflop_batch16": f16 / 1e9, "peak_gflops": peak,
            "batch1_ms": batch1_ms, "batch1_floor_ms": floor1,
            "batch1_over_floor": batch1_ms / floor1,
            "batch16_fraction_of_peak": f16 / (batch16_ms / 1000) / 1e9 / peak,
            "cpu": cpu_model()}


if __name__ == "__main__":
    main()
