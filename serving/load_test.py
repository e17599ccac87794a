"""Load test: N concurrent clients against the serving TEST DOUBLE for T
seconds, a fixed-seed mix of good and bad REST (and some gRPC) requests.

    python serving/load_test.py --export=EXPORT_ROOT [--model_name=mlc] \\
        [--clients=8] [--seconds=60] [--max_requests=100000] [--seed=0] [--json_out=F]

EXPORT_ROOT holds EXPORT_ROOT/<model_name>/<version>/ (python -m mlc_keras.export).
The server is tests/serving_double.py (the project's stand-in for
tensorflow_model_server, bound to 127.0.0.1), started in this process with
the newest complete version; the clients are threads of the same process,
so the RSS sampled here is the double's and the clients' together.

Every request has a kind and an expected answer:
  good (expect 200 / OK and an answer of the right shape):
    default, all_expressions, bytes, composite (REST), grpc_default,
    grpc_bytes, grpc_batch0 (gRPC carries an empty batch's shape: an empty
    answer)
  bad (expect 400 / INVALID_ARGUMENT with the input named):
    bad_shape, bad_id, nan, undecodable, malformed_json, empty_batch (REST),
    grpc_bad_id, grpc_nan
Anything else is unexpected: a 5xx, a 200 for a bad request, a 4xx for a
good one, a client error without its message, an exception or a timeout.

The run is bounded: it stops at --seconds or after --max_requests requests
(whichever comes first), every request has a --request_timeout, and client
threads still busy after the deadline are abandoned (daemon threads).

RSS: /proc/self/status VmRSS sampled every --sample_interval seconds, with
the number of requests completed at that moment; the RSS growth is the
largest RSS of the last third of the requests minus that of the first third
(the first third includes the warm-up of the clients and the server); it
must stay under --rss_growth_limit_mb, so that memory does not grow with the
number of requests.
"""

import argparse
import base64
import http.client
import io
import json
import math
import os
import random
import resource
import sys
import threading
import time
from collections import Counter, defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD_KINDS = ("default", "all_expressions", "bytes", "composite",
              "grpc_default", "grpc_bytes", "grpc_batch0")
BAD_KINDS = ("bad_shape", "bad_id", "nan", "undecodable", "malformed_json", "empty_batch",
             "grpc_bad_id", "grpc_nan")
# Relative weights of the mix (about 60 % good, 40 % bad, 20 % gRPC).
WEIGHTS = {"default": 16, "all_expressions": 10, "bytes": 14, "composite": 8,
           "grpc_default": 8, "grpc_bytes": 4, "grpc_batch0": 2,
           "bad_shape": 6, "bad_id": 6, "nan": 6, "undecodable": 6, "malformed_json": 5,
           "empty_batch": 5, "grpc_bad_id": 2, "grpc_nan": 2}
# The text each bad request's error must contain (the input it names).
BAD_MESSAGES = {"bad_shape": "images: expected [batch,", "bad_id": "expressions: ids must lie in",
                "nan": "images: NaN or inf values", "undecodable": "image_bytes[0]: undecodable bytes",
                "malformed_json": "JSON Parse error", "empty_batch": "images: expected rank 4",
                "grpc_bad_id": "expressions: ids must lie in", "grpc_nan": "images: NaN or inf values"}


def rss_mb():
    """This process's resident set size now (VmRSS), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, Linux: KiB


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class _Requests:
    """The prepared bodies of every kind (built once: the mix reuses them)."""

    def __init__(self, model_name, resolution, num_classes, seed):
        import numpy as np
        import tensorflow as tf
        from PIL import Image
        from tensorflow_serving.apis import model_pb2, predict_pb2

        rng = np.random.default_rng(seed)
        r, n = resolution, num_classes
        self.model_name, self.resolution, self.num_classes = model_name, r, n
        face = rng.uniform(-1, 1, (1, r, r, 3)).astype(np.float32).round(4)
        crop = rng.uniform(-1, 1, (1, 2 * r, 2 * r, 3)).astype(np.float32).round(4)
        nan = face.copy()
        nan[0, 0, 0, 0] = np.nan
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (3 * r // 2, r, 3), dtype=np.uint8)).save(
            buf, "JPEG", quality=90)
        jpeg = buf.getvalue()

        def b64(data):
            return {"b64": base64.b64encode(data).decode("ascii")}

        def rest(signature, instances):
            return json.dumps({"signature_name": signature, "instances": instances}).encode()

        self.rest = {
            "default": rest("serving_default", [{"images": face[0].tolist(), "expressions": 1 % n}]),
            "all_expressions": rest("all_expressions", [face[0].tolist()]),
            "bytes": rest("synthesize_bytes", [{"image_bytes": b64(jpeg), "expressions": n - 1}]),
            "composite": rest("composite", [{"images": crop[0].tolist(), "expressions": 0}]),
            "bad_shape": rest("serving_default", [{"images": face[0, : r // 2].tolist(),
                                                   "expressions": 0}]),
            "bad_id": rest("serving_default", [{"images": face[0].tolist(), "expressions": n}]),
            # json.dumps writes NaN (as TF Serving's RapidJSON parser accepts it)
            "nan": rest("serving_default", [{"images": nan[0].tolist(), "expressions": 0}]),
            "undecodable": rest("synthesize_bytes", [{"image_bytes": b64(b"not an image at all"),
                                                      "expressions": 0}]),
            "malformed_json": b'{"signature_name": "serving_default", "instances": [{"images": [[',
            # row format cannot carry an empty batch's shape: [] is rank 1
            "empty_batch": json.dumps({"signature_name": "serving_default",
                                       "inputs": {"images": [], "expressions": []}}).encode(),
        }

        def grpc(signature, **inputs):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            return request

        ids = np.array([1 % n], np.int32)
        self.grpc = {
            "grpc_default": grpc("serving_default", images=face, expressions=ids),
            "grpc_bytes": grpc("synthesize_bytes", image_bytes=np.array([jpeg], object),
                               expressions=ids),
            "grpc_batch0": grpc("serving_default", images=np.zeros((0, r, r, 3), np.float32),
                                expressions=np.zeros([0], np.int32)),
            "grpc_bad_id": grpc("serving_default", images=face, expressions=np.array([n], np.int32)),
            "grpc_nan": grpc("serving_default", images=nan, expressions=ids),
        }

    def check_rest_answer(self, kind, payload):
        """'' when a 200 answer has the expected shape, else what is wrong."""
        r, n = self.resolution, self.num_classes
        try:
            [row] = payload["predictions"]
            if kind == "default":
                ok = len(row) == r and len(row[0]) == r and len(row[0][0]) == 3
            elif kind == "all_expressions":
                ok = len(row) == n and len(row[0]) == r
            elif kind == "bytes":
                ok = base64.b64decode(row["b64"])[:8] == b"\x89PNG\r\n\x1a\n"
            else:  # composite
                ok = len(row["images"]) == 2 * r and len(row["change"][0][0]) == 1
        except (KeyError, TypeError, ValueError, IndexError) as e:
            return f"unexpected answer ({type(e).__name__}: {e})"
        return "" if ok else "answer of the wrong shape"

    def check_grpc_answer(self, kind, response):
        import tensorflow as tf

        try:
            key = "image_bytes" if kind == "grpc_bytes" else "images"
            value = tf.make_ndarray(response.outputs[key])
        except (KeyError, TypeError, ValueError) as e:
            return f"unexpected answer ({type(e).__name__}: {e})"
        r = self.resolution
        if kind == "grpc_bytes":
            ok = value.shape == (1,) and value[0][:8] == b"\x89PNG\r\n\x1a\n"
        else:
            ok = value.shape == ((0 if kind == "grpc_batch0" else 1), r, r, 3)
        return "" if ok else f"answer of the wrong shape {value.shape}"


class _Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.latencies = defaultdict(list)  # kind -> seconds
        self.outcomes = defaultdict(Counter)  # kind -> {outcome: n}
        self.examples = {}  # (kind, outcome) -> first detail

    def add(self, kind, seconds, outcome, detail=""):
        with self.lock:
            self.count += 1
            self.latencies[kind].append(seconds)
            self.outcomes[kind][outcome] += 1
            if outcome not in ("ok", "client_error") and (kind, outcome) not in self.examples:
                self.examples[(kind, outcome)] = detail[:300]


def _rest_call(port, path, body, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _classify_rest(requests, kind, status, data):
    """(outcome, detail). Outcomes: ok (a good request answered right),
    client_error (a bad one refused with its 400 naming the input), and the
    unexpected ones: server_error (5xx), wrong_status, wrong_message,
    wrong_answer."""
    if status >= 500:
        return "server_error", f"{status}: {data[:300]!r}"
    if kind in BAD_KINDS:
        if status != 400:
            return "wrong_status", f"{status} for a bad request: {data[:200]!r}"
        try:
            message = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            return "wrong_message", f"400 without an error JSON: {data[:200]!r}"
        if BAD_MESSAGES[kind] not in message:
            return "wrong_message", message
        return "client_error", ""
    if status != 200:
        return "wrong_status", f"{status} for a good request: {data[:300]!r}"
    try:
        problem = requests.check_rest_answer(kind, json.loads(data))
    except ValueError as e:
        problem = f"unparsable JSON answer ({e})"
    return ("wrong_answer", problem) if problem else ("ok", "")


def _classify_grpc(requests, kind, call):
    import grpc

    try:
        response = call()
    except grpc.RpcError as e:
        code, message = e.code(), e.details() or ""
        if kind in BAD_KINDS and code == grpc.StatusCode.INVALID_ARGUMENT:
            if BAD_MESSAGES[kind] in message:
                return "client_error", ""
            return "wrong_message", message
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
                    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED):
            return "server_error", f"{code.name}: {message}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "timeout", message
        return "wrong_status", f"{code.name}: {message}"
    if kind in BAD_KINDS:
        return "wrong_status", "OK for a bad request"
    problem = requests.check_grpc_answer(kind, response)
    return ("wrong_answer", problem) if problem else ("ok", "")


def _client(index, requests, kinds, weights, stats, rest_port, grpc_stub, path, seed, deadline,
            budget, timeout):
    rng = random.Random(seed * 1000 + index)
    while time.monotonic() < deadline and budget.acquire(blocking=False):
        kind = rng.choices(kinds, weights)[0]
        start = time.perf_counter()
        try:
            if kind.startswith("grpc_"):
                outcome, detail = _classify_grpc(
                    requests, kind, lambda: grpc_stub.Predict(requests.grpc[kind], timeout=timeout))
            else:
                status, data = _rest_call(rest_port, path, requests.rest[kind], timeout)
                outcome, detail = _classify_rest(requests, kind, status, data)
        except TimeoutError as e:
            outcome, detail = "timeout", str(e)
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the run
            outcome, detail = "exception", f"{type(e).__name__}: {e}"
        stats.add(kind, time.perf_counter() - start, outcome, detail)


def _sampler(stats, samples, stop, interval):
    while not stop.wait(interval):
        samples.append((time.monotonic(), stats.count, rss_mb()))


def _rss_summary(samples, total, limit_mb):
    """RSS over the run: first third vs last third of the requests."""
    if not samples or total < 3:
        return {"rss_first_third_mb": None, "rss_last_third_mb": None, "rss_growth_mb": None,
                "rss_bounded": True}
    first = [rss for _, n, rss in samples if n <= total / 3] or [samples[0][2]]
    last = [rss for _, n, rss in samples if n >= 2 * total / 3] or [samples[-1][2]]
    growth = max(last) - max(first)
    return {"rss_first_third_mb": round(max(first), 1), "rss_last_third_mb": round(max(last), 1),
            "rss_growth_mb": round(growth, 1),
            "rss_growth_mb_per_1000_requests": round(1000 * growth / (total / 3), 2),
            "rss_growth_limit_mb": limit_mb, "rss_bounded": growth <= limit_mb}


def run_load_test(export_root, model_name="mlc", clients=8, seconds=60.0, max_requests=100000,
                  seed=0, request_timeout=30.0, server_workers=4, sample_interval=0.25,
                  rss_growth_limit_mb=64.0, weights=None):
    """Starts the serving double on ``export_root`` (127.0.0.1) and runs
    ``clients`` threads for ``seconds`` (or ``max_requests`` requests);
    returns the report dict (see the module docstring; ``passed`` is True
    when nothing unexpected happened and the RSS growth is bounded)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    for path in (REPO, os.path.join(REPO, "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from mlc_keras.inference.loading import METADATA_FILE, version_numbers
    from serving_double import FakeModelServer

    model_dir = os.path.join(os.fspath(export_root), model_name)
    versions = version_numbers(model_dir, complete_only=True)
    if not versions:
        raise FileNotFoundError(f"no complete version folder under {model_dir}")
    version_path = os.path.join(model_dir, str(versions[-1]))
    with open(os.path.join(version_path, "assets.extra", METADATA_FILE)) as f:
        meta = json.load(f)
    resolution, num_classes = int(meta["resolution"]), len(meta["expressions"])
    weights = dict(WEIGHTS, **(weights or {}))
    kinds = [k for k in GOOD_KINDS + BAD_KINDS if weights.get(k, 0) > 0]
    requests = _Requests(model_name, resolution, num_classes, seed)
    stats = _Stats()
    samples = []
    rss_start = rss_mb()
    started = time.monotonic()
    with FakeModelServer(export_root, model_names=[model_name], workers=server_workers) as server:
        load_s = time.monotonic() - started
        rss_loaded = rss_mb()
        channel = grpc.insecure_channel(server.grpc_target, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        budget = threading.Semaphore(max_requests)
        stop = threading.Event()
        sampler = threading.Thread(target=_sampler, args=(stats, samples, stop, sample_interval),
                                   daemon=True, name="rss-sampler")
        begin = time.monotonic()
        deadline = begin + seconds
        threads = [threading.Thread(
            target=_client, name=f"load-client-{i}", daemon=True,
            args=(i, requests, kinds, [weights[k] for k in kinds], stats, server.rest_port, stub,
                  f"/v1/models/{model_name}:predict", seed, deadline, budget, request_timeout))
            for i in range(clients)]
        samples.append((begin, 0, rss_mb()))
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:  # bounded: a request past the deadline is abandoned after its timeout
            t.join(timeout=max(0.0, deadline - time.monotonic()) + request_timeout + 5)
        elapsed = time.monotonic() - begin
        stop.set()
        sampler.join(timeout=5)
        samples.append((time.monotonic(), stats.count, rss_mb()))
        stuck = sum(t.is_alive() for t in threads)
        channel.close()

    with stats.lock:
        total = stats.count
        latencies = {k: list(v) for k, v in stats.latencies.items()}
        outcomes = {k: dict(v) for k, v in stats.outcomes.items()}
        examples = {f"{k}/{o}": d for (k, o), d in stats.examples.items()}
    every = [x for v in latencies.values() for x in v]

    def lat(values):
        return {"n": len(values), "p50_ms": round(1000 * _percentile(values, 50), 2),
                "p99_ms": round(1000 * _percentile(values, 99), 2)} if values else {"n": 0}

    errors = Counter()
    for kind, counts in outcomes.items():
        for outcome, n in counts.items():
            errors[outcome] += n
    unexpected = sum(n for o, n in errors.items() if o not in ("ok", "client_error"))
    bad_sent = sum(sum(outcomes.get(k, {}).values()) for k in BAD_KINDS)
    bad_refused = sum(outcomes.get(k, {}).get("client_error", 0) for k in BAD_KINDS)
    good_sent = sum(sum(outcomes.get(k, {}).values()) for k in GOOD_KINDS)
    good_ok = sum(outcomes.get(k, {}).get("ok", 0) for k in GOOD_KINDS)
    report = {
        "model": version_path, "resolution": resolution, "expressions": num_classes,
        "clients": clients, "seconds": seconds, "max_requests": max_requests, "seed": seed,
        "server_workers": server_workers, "cpu_cores": os.cpu_count(),
        "tensorflow": tf.__version__, "server_load_s": round(load_s, 2),
        "elapsed_s": round(elapsed, 2), "requests": total,
        "requests_per_s": round(total / elapsed, 2) if elapsed > 0 else 0.0,
        "stopped_by": "max_requests" if total >= max_requests else "time",
        "stuck_clients": stuck,
        "latency": lat(every), "latency_by_kind": {k: lat(latencies[k]) for k in sorted(latencies)},
        "outcomes_by_kind": {k: outcomes[k] for k in sorted(outcomes)},
        "errors": {"expected_client_errors": errors.get("client_error", 0),
                   "unexpected": unexpected,
                   "unexpected_by_outcome": {o: n for o, n in sorted(errors.items())
                                             if o not in ("ok", "client_error")},
                   "examples": examples},
        "good_requests": good_sent, "good_answered_200": good_ok,
        "bad_requests": bad_sent, "bad_refused_400": bad_refused,
        "rss_start_mb": round(rss_start, 1), "rss_after_server_load_mb": round(rss_loaded, 1),
        "rss_peak_sampled_mb": round(max(s[2] for s in samples), 1),
        "rss_peak_process_mb": round(peak_rss_mb(), 1),
        "rss_samples": [(round(t - begin, 2), n, round(r, 1)) for t, n, r in samples],
    }
    report.update(_rss_summary(samples, total, rss_growth_limit_mb))
    report["passed"] = bool(total > 0 and unexpected == 0 and stuck == 0
                            and bad_refused == bad_sent and good_ok == good_sent
                            and report["rss_bounded"])
    return report


def format_report(report):
    lines = [
        f"model      {report['model']} ({report['resolution']} px, {report['expressions']} "
        f"expressions), TensorFlow {report['tensorflow']}, {report['cpu_cores']} cores",
        f"load       {report['clients']} clients, {report['elapsed_s']:.1f} s, "
        f"{report['requests']} requests (stopped by {report['stopped_by']}) -> "
        f"{report['requests_per_s']:.1f} requests/s",
        f"latency    p50 {report['latency'].get('p50_ms', 0):.1f} ms, "
        f"p99 {report['latency'].get('p99_ms', 0):.1f} ms (all kinds)",
    ]
    for kind, lat in report["latency_by_kind"].items():
        outcomes = ", ".join(f"{o} {n}" for o, n in sorted(report["outcomes_by_kind"][kind].items()))
        lines.append(f"  {kind:<16} n {lat['n']:>6}  p50 {lat['p50_ms']:>8.1f} ms  "
                     f"p99 {lat['p99_ms']:>8.1f} ms  [{outcomes}]")
    e = report["errors"]
    lines.append(f"errors     expected 4xx/INVALID_ARGUMENT {e['expected_client_errors']} "
                 f"(bad requests refused {report['bad_refused_400']}/{report['bad_requests']}); "
                 f"good answered {report['good_answered_200']}/{report['good_requests']}; "
                 f"unexpected {e['unexpected']} {e['unexpected_by_outcome'] or ''}")
    for key, detail in e["examples"].items():
        lines.append(f"  e.g. {key}: {detail}")
    lines.append(
        f"RSS        start {report['rss_start_mb']:.0f} MB, server loaded "
        f"{report['rss_after_server_load_mb']:.0f} MB, peak {report['rss_peak_sampled_mb']:.0f} MB "
        f"(sampled; process peak {report['rss_peak_process_mb']:.0f} MB); first third "
        f"{report['rss_first_third_mb']} MB -> last third {report['rss_last_third_mb']} MB: "
        f"growth {report['rss_growth_mb']} MB (limit {report.get('rss_growth_limit_mb')} MB, "
        f"{'bounded' if report['rss_bounded'] else 'NOT bounded'})")
    lines.append(f"result     {'PASSED' if report['passed'] else 'FAILED'} "
                 "(against tests/serving_double.py on 127.0.0.1, a test double)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="export root (DIR of DIR/<model>/<version>)")
    parser.add_argument("--model_name", default="mlc")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max_requests", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--request_timeout", type=float, default=30.0)
    parser.add_argument("--server_workers", type=int, default=4)
    parser.add_argument("--sample_interval", type=float, default=0.25)
    parser.add_argument("--rss_growth_limit_mb", type=float, default=64.0)
    parser.add_argument("--json_out", default="")
    args = parser.parse_args(argv)
    for name in ("clients", "max_requests", "server_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: must be at least 1")
    for name in ("seconds", "request_timeout", "sample_interval"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            parser.error(f"--{name}={value}: must be a positive number")
    if not os.path.isdir(os.path.join(args.export, args.model_name)):
        parser.error(f"--export={args.export}: no {args.model_name}/ folder in it")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    report = run_load_test(args.export, args.model_name, args.clients, args.seconds,
                           args.max_requests, args.seed, args.request_timeout,
                           args.server_workers, args.sample_interval, args.rss_growth_limit_mb)
    print(format_report(report))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
