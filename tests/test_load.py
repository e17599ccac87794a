"""The load test (serving/load_test.py), short and small: 2 clients for ~3 s
against the serving test double with a tiny untrained 16 px export. The full
run (8 clients, 60 s) and its figures are in BENCHMARKS.md."""

import json

import pytest

from mlc_keras.config import make_config
from mlc_keras.inference import export
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from serving.load_test import run_load_test

    root = tmp_path_factory.mktemp("load_export")
    config = make_config(**TINY)
    export.export_generator(build_generator(config).build_for_inputs(), config, str(root), "mlc", 1)
    return run_load_test(str(root), clients=2, seconds=3, max_requests=5000, seed=0,
                         request_timeout=30, sample_interval=0.1,
                         rss_growth_limit_mb=200)


def test_no_unexpected_errors(report):
    from serving.load_test import format_report

    assert report["errors"]["unexpected"] == 0, format_report(report)
    assert report["stuck_clients"] == 0
    assert report["good_answered_200"] == report["good_requests"] > 0


def test_every_bad_request_gets_its_client_error(report):
    from serving.load_test import BAD_KINDS

    assert report["bad_refused_400"] == report["bad_requests"] > 0
    for kind in BAD_KINDS:
        counts = report["outcomes_by_kind"].get(kind, {})
        assert set(counts) <= {"client_error"}, (kind, counts)


def test_throughput_and_bounds(report):
    assert report["requests_per_s"] > 0 and report["requests"] > 0
    assert report["stopped_by"] == "time" and report["elapsed_s"] < 3 + 35
    assert report["latency"]["p50_ms"] <= report["latency"]["p99_ms"]
    # generous: a leak of a few KB per request over hundreds of requests stays under it,
    # the 1.2 GB per request of an undecoded bomb (issue 11) would not
    assert report["rss_bounded"] and report["rss_growth_mb"] < 200, report["rss_samples"]
    assert report["passed"]
    json.dumps(report)  # --json_out can write it


@pytest.mark.slow
def test_request_budget_stops_the_run(tmp_path):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from serving.load_test import run_load_test

    config = make_config(**TINY)
    export.export_generator(build_generator(config).build_for_inputs(), config, str(tmp_path),
                            "mlc", 1)
    out = run_load_test(str(tmp_path), clients=2, seconds=60, max_requests=20, seed=1)
    assert out["requests"] == 20 and out["stopped_by"] == "max_requests"
    assert out["elapsed_s"] < 60 and out["errors"]["unexpected"] == 0
