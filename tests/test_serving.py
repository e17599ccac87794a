"""TF Serving support (serving/): the REST and gRPC clients and the CLI, end
to end against tests/serving_double.FakeModelServer -- a TEST DOUBLE, since no
tensorflow_model_server binary can be installed here -- serving a tiny export;
plus static checks of the server configuration files (launch.sh is never run).
"""

import base64
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
requests = pytest.importorskip("requests")

from mlc_keras.inference import export, loading  # noqa: E402
from mlc_keras.training.build import build_generator  # noqa: E402
from mlc_keras.config import make_config  # noqa: E402
from serving import client as client_lib  # noqa: E402
from serving.client import GrpcClient, RestClient, ServingError  # noqa: E402
from serving_double import FakeModelServer  # noqa: E402  (tests/ is on sys.path, as for conftest)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = os.path.join(REPO, "serving")
TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, SavedModel loaded directly, export root): versions 1 and 2
    (a copy of 1) of model "mlc", both loaded (latest 2)."""
    root = tmp_path_factory.mktemp("serving_export")
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    result = export.export_generator(generator, config, str(root), "mlc", 1)
    shutil.copytree(result["saved_model"], root / "mlc" / "2")
    loaded = tf.saved_model.load(result["saved_model"])
    with FakeModelServer(root, num_versions=2) as server:
        yield server, loaded, root


@pytest.fixture(params=["rest-row", "rest-columnar", "grpc"])
def client(request, served):
    server = served[0]
    if request.param == "grpc":
        c = GrpcClient(server.grpc_target, "mlc", timeout=30)
    else:
        c = RestClient(server.rest_url, "mlc", request_format=request.param.split("-")[1],
                       timeout=30)
    with c:
        yield c


def faces(n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def jpeg(seed=1, size=(40, 30)):
    buf = io.BytesIO()
    photo = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def direct(loaded, signature, **kwargs):
    return {k: v.numpy() for k, v in loaded.signatures[signature](
        **{k: tf.constant(v) for k, v in kwargs.items()}).items()}


# -- predictions ------------------------------------------------------------


def test_predict_matches_the_saved_model(served, client):
    x, ids = faces(), np.array([1, 2], np.int32)
    want = direct(served[1], "serving_default", images=x, expressions=ids)["images"]
    got = client.predict(x, ids)
    assert got.dtype == np.float32 and got.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # one expression for the whole batch, given by name through expressions_list
    client.expressions_list = ("neutral", "happy", "sad")
    np.testing.assert_allclose(client.predict(x, "sad"), direct(
        served[1], "serving_default", images=x, expressions=np.array([2, 2], np.int32))["images"],
        atol=1e-6)


def test_row_and_columnar_give_identical_results(served):
    server, x = served[0], faces(3, seed=4)
    ids = np.array([0, 1, 2], np.int32)
    with RestClient(server.rest_url, "mlc", request_format="row") as row, \
            RestClient(server.rest_url, "mlc", request_format="columnar") as col:
        np.testing.assert_array_equal(row.predict(x, ids), col.predict(x, ids))
        np.testing.assert_array_equal(row.all_expressions(x), col.all_expressions(x))
        assert row.predict_bytes([jpeg()], [1]) == col.predict_bytes([jpeg()], [1])


def test_bytes_round_trip_jpeg_in_png_out(served, client):
    blobs = [jpeg(1), jpeg(2, size=(24, 50))]
    pngs = client.predict_bytes(blobs, [2, 0])
    want = direct(served[1], "synthesize_bytes", image_bytes=np.array(blobs, object),
                  expressions=np.array([2, 0], np.int32))["image_bytes"]
    assert pngs == list(want)
    for png in pngs:
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (16, 16)


def test_all_expressions_shape_and_values(served, client):
    x = faces(2, seed=7)
    every = client.all_expressions(x)
    assert every.shape == (2, 3, 16, 16, 3)
    np.testing.assert_allclose(every, direct(served[1], "all_expressions", images=x)["images"],
                               atol=1e-6)


def test_pinned_version(served):
    server = served[0]
    with RestClient(server.rest_url, "mlc", version=1) as rest, \
            GrpcClient(server.grpc_target, "mlc", version=2) as rpc:
        x, ids = faces(1), [1]
        np.testing.assert_allclose(rest.predict(x, ids), rpc.predict(x, ids), atol=1e-6)
        assert rest.metadata()["version"] == 1 and rpc.metadata()["version"] == 2


# -- metadata and status ----------------------------------------------------


def test_metadata_lists_the_three_signatures(client):
    meta = client.metadata()
    assert meta["model_name"] == "mlc" and meta["version"] == 2  # the newest
    assert set(meta["signatures"]) == set(export.SIGNATURES)
    sigs = meta["signatures"]
    inputs = sigs["serving_default"]["inputs"]
    assert {k: v["dtype"] for k, v in inputs.items()} == {"images": "float32",
                                                          "expressions": "int32"}
    # input shapes are left open (None: any rank) so that the model's own
    # checks answer a wrong rank with a message; if given, they are batch-first
    assert inputs["images"]["shape"] in (None, [-1, -1, -1, -1])
    assert inputs["expressions"]["shape"] in (None, [-1])
    assert sigs["serving_default"]["outputs"] == {
        "images": {"dtype": "float32", "shape": [-1, 16, 16, 3]}}
    assert sigs["synthesize_bytes"]["inputs"]["image_bytes"]["dtype"] == "string"
    assert sigs["synthesize_bytes"]["inputs"]["expressions"]["dtype"] == "int32"
    assert list(sigs["all_expressions"]["inputs"]) == ["images"]
    assert sigs["synthesize_bytes"]["outputs"]["image_bytes"]["dtype"] == "string"
    assert sigs["all_expressions"]["outputs"]["images"] == {"dtype": "float32",
                                                           "shape": [-1, 3, 16, 16, 3]}
    assert all(s["method_name"] == "tensorflow/serving/predict" for s in sigs.values())
    assert meta["resolution"] == 16 and meta["num_expressions"] == 3


def test_status_reports_available(client):
    assert client.status() == [
        {"version": v, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
        for v in (1, 2)]


# -- errors -----------------------------------------------------------------


@pytest.mark.parametrize("case", ["id_out_of_range", "negative_id", "wrong_image_size",
                                  "values_out_of_range", "wrong_rank"])
def test_bad_requests_are_invalid_argument(client, case):
    x, ids, message = faces(), [0, 1], None
    if case == "id_out_of_range":
        ids, message = [0, 3], "ids must lie in [0, 2]"
    elif case == "negative_id":
        ids, message = [-1, 0], "ids must lie in [0, 2]"
    elif case == "wrong_image_size":
        x, message = faces()[:, :8, :8], "expected [batch, 16, 16, 3]"
    elif case == "values_out_of_range":
        x, message = faces() * 3, "values must lie in [-1, 1]"
    else:  # the model's "expected rank 4", or the server's own shape check
        x, message = faces()[:, 0], "rank"
    with pytest.raises(ServingError) as info:
        client.predict(x, ids)
    assert info.value.code == "INVALID_ARGUMENT"
    assert message in info.value.message, info.value.message
    if isinstance(client, RestClient):
        assert info.value.http_status == 400


def test_undecodable_bytes_are_invalid_argument(client):
    with pytest.raises(ServingError) as info:
        client.predict_bytes([b"not an image"], [0])
    assert info.value.code == "INVALID_ARGUMENT"


def test_unknown_model_and_version_are_not_found(served):
    server = served[0]
    for make in (lambda **kw: RestClient(server.rest_url, **kw),
                 lambda **kw: GrpcClient(server.grpc_target, **kw)):
        for kwargs, text in [(dict(model_name="nope"), "Latest(nope)"),
                             (dict(model_name="mlc", version=9), "Specific(mlc, 9)")]:
            with make(**kwargs) as c:
                with pytest.raises(ServingError) as info:
                    c.predict(faces(1), [0])
                assert info.value.code == "NOT_FOUND" and text in info.value.message
                if isinstance(c, RestClient):
                    assert info.value.http_status == 404
                with pytest.raises(ServingError) as info:
                    c.status()
                assert info.value.code == "NOT_FOUND"
        with make(model_name="mlc") as c:  # the real server: FAILED_PRECONDITION (HTTP 400)
            with pytest.raises(ServingError, match='signature key "nope" not found'):
                c.predict_signature("nope", {"images": faces(1)}, {"images": np.float32})


def test_rest_wire_format(served):
    """Raw JSON, as curl would send it (the README's examples)."""
    server = served[0]
    url = f"{server.rest_url}/v1/models/mlc"
    x = faces(1)
    body = {"signature_name": "synthesize_bytes",
            "instances": [{"image_bytes": {"b64": base64.b64encode(jpeg()).decode()},
                           "expressions": 1}]}
    reply = requests.post(f"{url}:predict", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    (item,) = reply.json()["predictions"]
    assert set(item) == {"b64"} and base64.b64decode(item["b64"]).startswith(b"\x89PNG")
    # columnar, one unnamed input
    reply = requests.post(f"{url}/versions/1:predict", timeout=30, json={
        "signature_name": "all_expressions", "inputs": x.tolist()}).json()
    assert np.asarray(reply["outputs"]).shape == (1, 3, 16, 16, 3)
    # default signature in row format
    reply = requests.post(f"{url}:predict", timeout=30, json={
        "instances": [{"images": x[0].tolist(), "expressions": 2}]}).json()
    assert np.asarray(reply["predictions"]).shape == (1, 16, 16, 3)
    for bad, status in [({"instances": [], "inputs": {}}, 400), ({"signature_name": "x"}, 400),
                        ({"inputs": {"images": x.tolist(), "expressions": [1.5]}}, 400)]:
        reply = requests.post(f"{url}:predict", json=bad, timeout=30)
        assert reply.status_code == status and set(reply.json()) == {"error"}, reply.text
    reply = requests.get(f"{server.rest_url}/v1/models/nope", timeout=30)
    assert reply.status_code == 404 and "nope" in reply.json()["error"]
    status = requests.get(url, timeout=30).json()
    assert status["model_version_status"][0] == {
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    meta = requests.get(f"{url}/metadata", timeout=30).json()
    assert meta["model_spec"] == {"name": "mlc", "signature_name": "", "version": "2"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["expressions"]["dtype"] == "DT_INT32"


# -- warm-up records --------------------------------------------------------


def test_warmup_records_replay_on_the_server(served):
    from tensorflow_serving.apis import prediction_log_pb2, prediction_service_pb2_grpc
    import grpc

    server, _, root = served
    n = len(export.SIGNATURES)  # one warm-up record per signature
    assert {v: s.warmup_replayed for v, s in server.models["mlc"].items()} == {1: n, 2: n}
    path = os.path.join(root, "mlc", "1", "assets.extra", export.WARMUP_FILE)
    seen = []
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            assert request.model_spec.name == "mlc"
            reply = stub.Predict(request, timeout=30)
            seen.append(request.model_spec.signature_name)
            assert reply.model_spec.signature_name == request.model_spec.signature_name
            two = request.model_spec.signature_name in ("composite", "composite_edit")
            assert len(reply.outputs) == (2 if two else 1)  # images (+ change)
    assert sorted(seen) == sorted(export.SIGNATURES)


# -- command line -----------------------------------------------------------


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(SERVING, "client.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def test_cli(served, tmp_path):
    import json

    server, loaded, root = served
    image = tmp_path / "face.jpg"
    image.write_bytes(jpeg(5))
    want = direct(loaded, "synthesize_bytes", image_bytes=np.array([image.read_bytes()], object),
                  expressions=np.array([1], np.int32))["image_bytes"][0]

    proc = _cli("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "predict" in proc.stdout and "--grpc" in proc.stdout
    proc = _cli("--rest", server.rest_url, "status", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [s["state"] for s in json.loads(proc.stdout)] == ["AVAILABLE", "AVAILABLE"]
    meta_json = os.path.join(root, "mlc", "1", "assets.extra", loading.METADATA_FILE)
    proc = _cli("--rest", server.rest_url, "--format", "columnar", "--expressions_list",
                meta_json, "predict", "--image", str(image), "--expression", "happy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "face-happy.png").read_bytes() == want
    proc = _cli("--grpc", server.grpc_target, "predict", "--image", str(image), "--expression",
                "1", "--output", str(tmp_path / "g.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "g.png").read_bytes() == want
    # names without a list: 3 expressions are not the default 7 -> usage error
    proc = _cli("--rest", server.rest_url, "predict", "--image", str(image), "--expression",
                "happy", cwd=tmp_path)
    assert proc.returncode == 2 and "--expressions_list" in proc.stderr
    # a server error: exit 1 with the server's message
    proc = _cli("--rest", server.rest_url, "predict", "--image", str(image), "--expression",
                "7", cwd=tmp_path)
    assert proc.returncode == 1 and "INVALID_ARGUMENT" in proc.stderr
    assert "ids must lie in [0, 2]" in proc.stderr


def test_expression_names():
    import mlc_keras

    assert client_lib._DEFAULT_EXPRESSIONS == tuple(mlc_keras.EXPRESSIONS)
    c = RestClient("http://127.0.0.1:9", expressions_list="neutral, happy,sad")
    assert c.expression_ids(["Happiness", 2, "0", "neutral"]).tolist() == [1, 2, 0, 0]
    with pytest.raises(client_lib.ExpressionError, match="not among"):
        c.expression_ids(["angry"])
    c.expressions_list = None
    c._metadata = {"num_expressions": 7}
    assert c.expression_ids("surprised").tolist() == [6]
    c.close()


# -- configuration files (static: nothing is launched) ----------------------


def test_models_config_parses():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(SERVING, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "mlc" and model.base_path == "/models/mlc"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") is not None


def test_batching_and_monitoring_configs_are_well_formed():
    fields = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
              "num_batch_threads", "allowed_batch_sizes", "pad_variable_length_inputs",
              "thread_pool_name", "enable_large_batch_splitting"}
    seen = set()
    with open(os.path.join(SERVING, "batching_parameters.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"(\w+)\s*(?:\{\s*value:\s*(\S+)\s*\}|:\s*(\S+))", line)
            assert m and m.group(1) in fields, line
            seen.add(m.group(1))
    assert {"max_batch_size", "batch_timeout_micros", "num_batch_threads",
            "max_enqueued_batches"} <= seen
    text = open(os.path.join(SERVING, "monitoring.config")).read()
    assert re.search(r"prometheus_config\s*\{[^}]*enable:\s*true", text)
    assert re.search(r'path:\s*"/monitoring/prometheus/metrics"', text)


def test_launch_script_is_well_formed():
    path = os.path.join(SERVING, "launch.sh")
    assert os.access(path, os.X_OK)
    text = open(path).read()
    for needle in ["set -euo pipefail", "tensorflow/serving", "8500", "8501",
                   "--model_config_file=", "--enable_batching", "--batching_parameters_file=",
                   "--monitoring_config_file=", "usage"]:
        assert needle in text, needle
    if shutil.which("bash"):  # parse only (-n): the script is never executed here
        proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_launch_script_passes_the_onednn_settings_to_the_server(tmp_path):
    """Run against a stand-in ``docker`` on PATH that prints its arguments."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "docker"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    root = tmp_path / "export"
    (root / "mlc" / "3").mkdir(parents=True)
    (root / "mlc" / "3" / "saved_model.pb").write_bytes(b"")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS")}
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"

    def launch(**extra):
        proc = subprocess.run(["bash", os.path.join(SERVING, "launch.sh"), str(root)],
                              capture_output=True, text=True, env={**env, **extra})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    args = launch()
    assert "TF_ENABLE_ONEDNN_OPTS=1" in args and "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1" in args
    assert args[args.index("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1") - 1] == "-e"
    assert f"{root}:/models:ro" in args
    assert "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0" in launch(TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="0")


FROZEN_PROBE = """
import sys, numpy as np, tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
x = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
outs = [fn(images=tf.constant(x[s]), expressions=tf.constant(np.arange(3, dtype=np.int32)[s]))
        ["images"].numpy() for s in (slice(0, 1), slice(0, 3), slice(2, 3), slice(1, 3))]
np.save(sys.argv[2], np.concatenate(outs))
"""


def test_frozen_weights_leave_the_served_outputs_unchanged(served, tmp_path):
    """The serving processes' TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (launch.sh, the
    serving benchmark): batch 1, 3, 1 again and 2 from one process, with and
    without it, agree to float32 round-off (batch 1 uses another oneDNN kernel)."""
    path = os.path.join(served[2], "mlc", "1")
    got = {}
    for frozen in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
               "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS": frozen}
        out = tmp_path / f"frozen{frozen}.npy"
        proc = subprocess.run([sys.executable, "-c", FROZEN_PROBE, path, str(out)],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got[frozen] = np.load(out)
    assert got["0"].shape == (7, 16, 16, 3)
    np.testing.assert_allclose(got["1"], got["0"], atol=1e-5)
    assert np.abs(got["0"][0] - got["0"][5]).max() > 1e-3  # different faces: not a constant output
