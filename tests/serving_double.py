"""FakeModelServer: a TEST DOUBLE for TensorFlow Serving's model server.

No ``tensorflow_model_server`` binary (and no Docker engine) can be installed
on the test machines, so the serving tests run the clients against this
stand-in instead. It is NOT TF Serving: it imitates the parts of its public
interface that serving/client.py uses, over the real ``tensorflow-serving-api``
protos and gRPC stubs and TF Serving's documented REST formats, with models
loaded by ``tf.saved_model.load`` (TF2 loader, not the C++ session loader;
tests/test_export.py covers that one through saved_model_cli).

Served: an export root in TF Serving's layout, ``ROOT/<model>/<version>/``
(folders that are not all digits, such as ``.tmp-*`` leftovers, are
skipped), with the version policy ``latest`` (N newest, default 1) or
``all``. At load, each version replays its
``assets.extra/tf_serving_warmup_requests`` (PredictionLog TFRecords) as TF
Serving's ``--enable_model_warmup`` does; a failing record fails the start.

gRPC (PredictionService, ModelService):
  Predict           model_spec name/version/signature_name, inputs TensorProto
                    map, output_filter -> outputs + model_spec
  GetModelMetadata  metadata_field "signature_def" -> SignatureDefMap packed
                    in an Any, read from the SavedModel's MetaGraphDef
  GetModelStatus    model_version_status (AVAILABLE for loaded versions)
REST (http.server):
  GET  /v1/models/<m>[/versions/<v>]            status JSON
  GET  /v1/models/<m>[/versions/<v>]/metadata   {"model_spec", "metadata":
                                                 {"signature_def": {...}}}
  POST /v1/models/<m>[/versions/<v>]:predict    row ("instances" ->
       "predictions") or columnar ("inputs" -> "outputs"); {"b64": ...} for
       string inputs, and for outputs whose name ends in ``_bytes``
  errors: {"error": message} with TF Serving's status -> HTTP mapping.

Errors follow the real server: unknown model/version -> NOT_FOUND
("Servable not found for request: Latest(x)"), an unknown signature ->
FAILED_PRECONDITION ('Serving signature key "x" not found.'), bad inputs and
every ``tf.errors.InvalidArgumentError`` raised by the model ->
INVALID_ARGUMENT with the TensorFlow message.

Both servers bind to 127.0.0.1 on ports chosen by the OS, use bounded
thread pools, and start/stop with the context manager::

    with FakeModelServer(export_root) as server:
        server.rest_url      # http://127.0.0.1:PORT
        server.grpc_target   # 127.0.0.1:PORT

Manual use: ``PYTHONPATH=. python tests/serving_double.py EXPORT_ROOT``.
"""

import base64
import http.server
import json
import os
import re
import threading
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc)

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_SIGNATURE = "serving_default"
MAX_BODY = 64 * 1024 * 1024

# TF Serving's status -> HTTP status mapping (http_server ToHTTPStatusCode).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}
_GRPC_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class Fault(Exception):
    """A request error with its gRPC status code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message):
    return Fault(grpc.StatusCode.INVALID_ARGUMENT, message)


def _to_json(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True)


class _Servable:
    """One loaded model version."""

    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(path)
        meta_graph = saved_model_utils.get_meta_graph_def(path, "serve")
        self.signature_defs = dict(meta_graph.signature_def)
        self.warmup_replayed = 0

    def signature(self, name):
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs or name not in self.loaded.signatures:
            raise Fault(grpc.StatusCode.FAILED_PRECONDITION,
                        f'Serving signature key "{name}" not found.')
        return name, self.signature_defs[name]


def _check_shape(name, array, tensor_info):
    shape = tensor_info.tensor_shape
    if shape.unknown_rank:
        return
    want = [d.size for d in shape.dim]
    ok = array.ndim == len(want) and all(w < 0 or w == s for w, s in zip(want, array.shape))
    if not ok:
        raise _invalid(f"input '{name}': shape {list(array.shape)} is not compatible with the "
                       f"signature's {want} (-1: any size)")


_EAGER_PREAMBLE = re.compile(r"^Graph execution error:\s*(?:Detected at node .*?\n"
                             r"<stack traces unavailable>\n)?", re.S)


def _session_style(message):
    """Drops the eager runtime's "Graph execution error: Detected at node ..."
    preamble, which the C++ server (session based) does not add; the op's own
    message ("assertion failed: [...]") and node name are kept."""
    return _EAGER_PREAMBLE.sub("", message, count=1)


def _run(servable, signature_name, inputs, output_filter=()):
    """{name: ndarray} -> (signature name, {name: ndarray}); Fault on errors."""
    signature_name, sig = servable.signature(signature_name)
    expected, sent = set(sig.inputs), set(inputs)
    if expected != sent:
        raise _invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    unknown = [k for k in output_filter if k not in sig.outputs]
    if unknown:
        raise _invalid(f"output tensor alias not found in signature: {unknown[0]} Outputs "
                       f"expected to be in the set {{{','.join(sorted(sig.outputs))}}}.")
    tensors = {}
    for key, array in inputs.items():
        want = tf.dtypes.as_dtype(sig.inputs[key].dtype)
        got = tf.dtypes.as_dtype(array.dtype) if array.dtype != object else tf.string
        if got != want:
            raise _invalid(f"Expects arg[{key}] to be {want.name} but {got.name} is provided")
        _check_shape(key, array, sig.inputs[key])
        tensors[key] = tf.constant(array, dtype=want)
    try:
        outputs = servable.loaded.signatures[signature_name](**tensors)
    except tf.errors.OpError as e:
        raise Fault(_GRPC_BY_NUMBER.get(e.error_code, grpc.StatusCode.UNKNOWN),
                    _session_style(e.message)) from None
    except (TypeError, ValueError) as e:  # binding the inputs to the function failed
        raise _invalid(str(e)) from None
    keys = list(output_filter) or sorted(outputs)
    return signature_name, {k: outputs[k].numpy() for k in keys}


# --------------------------------------------------------------------------
# gRPC


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server):
        self.server = server

    def Predict(self, request, context):
        try:
            return self.server.predict_proto(request)
        except Fault as f:
            context.abort(f.code, f.message)

    def GetModelMetadata(self, request, context):
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in fields:
                if field != "signature_def":
                    raise _invalid(f"Metadata field {field} is not supported")
            servable = self.server.find(request.model_spec)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(self.server.signature_def_map(servable))
            return response
        except Fault as f:
            context.abort(f.code, f.message)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server):
        self.server = server

    def GetModelStatus(self, request, context):
        try:
            return self.server.status_proto(request.model_spec)
        except Fault as f:
            context.abort(f.code, f.message)


# --------------------------------------------------------------------------
# REST

_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<tail>/metadata|:[a-z]+)?$")


def _json_to_array(value, tensor_info, name):
    """A JSON value for one input -> ndarray of the signature's dtype."""
    dtype = tf.dtypes.as_dtype(tensor_info.dtype)
    if dtype == tf.string:
        def leaf(v):
            if isinstance(v, list):
                return [leaf(x) for x in v]
            if isinstance(v, dict):
                if set(v) != {"b64"} or not isinstance(v["b64"], str):
                    raise _invalid(f"input '{name}': objects must be {{\"b64\": <base64 string>}}")
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except ValueError:
                    raise _invalid(f"input '{name}': invalid base64 data") from None
            if isinstance(v, str):
                return v.encode("utf-8")
            raise _invalid(f"input '{name}': expected strings, got {json.dumps(v)[:40]}")
        data = leaf(value)
        try:
            return np.array(data, dtype=object)
        except ValueError as e:
            raise _invalid(f"input '{name}': {e}") from None
    try:
        array = np.array(value)
    except ValueError as e:  # ragged nesting
        raise _invalid(f"input '{name}': {e}") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise _invalid(f"input '{name}': expected numbers for {dtype.name}")
    if dtype.is_integer:
        if array.size and array.dtype.kind not in "iu":  # [] is an empty tensor of any dtype
            raise _invalid(f"input '{name}': expected integers for {dtype.name}")
        if array.size and (array.min() < dtype.min or array.max() > dtype.max):
            raise _invalid(f"input '{name}': value out of range for {dtype.name}")
    elif dtype == tf.bool and array.dtype.kind != "b":
        raise _invalid(f"input '{name}': expected true/false")
    return array.astype(dtype.as_numpy_dtype)


def _array_to_json(array, name):
    if array.dtype == object:
        binary = name.endswith("_bytes")

        def leaf(v):
            if isinstance(v, list):
                return [leaf(x) for x in v]
            if binary:
                return {"b64": base64.b64encode(v).decode("ascii")}
            return v.decode("utf-8", errors="replace")
        return leaf(array.tolist())
    return array.tolist()


def _named(value, names):
    """Whether a row/column value is a {input name: tensor} object."""
    return isinstance(value, dict) and set(value) != {"b64"}


def parse_predict_body(body, sig):
    """REST predict JSON -> ({input name: ndarray}, "row" | "columnar")."""
    if not isinstance(body, dict):
        raise _invalid("JSON Value: must be an object")
    if "instances" in body and "inputs" in body:
        raise _invalid("Not both 'instances' and 'inputs' can be specified")
    names = sorted(sig.inputs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise _invalid("'instances' must be a list")
        if rows and all(_named(r, names) for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise _invalid("Failed to process element: every instance must have the same "
                               "named inputs")
            columns = {k: [r[k] for r in rows] for k in keys}
        elif len(names) == 1:
            columns = {names[0]: rows}
        else:
            raise _invalid(f"instances: expected objects with the named inputs "
                           f"{names} (the signature has {len(names)} inputs)")
        layout = "row"
    elif "inputs" in body:
        value = body["inputs"]
        if _named(value, names):
            columns = dict(value)
        elif len(names) == 1:
            columns = {names[0]: value}
        else:
            raise _invalid(f"inputs: expected an object with the named inputs {names}")
        layout = "columnar"
    else:
        raise _invalid("Missing 'inputs' or 'instances' key")
    arrays = {}
    for key, value in columns.items():
        if key not in sig.inputs:
            raise _invalid(f"input '{key}' is not in the signature (inputs: {names})")
        arrays[key] = _json_to_array(value, sig.inputs[key], key)
    return arrays, layout


def predict_reply(outputs, layout):
    if layout == "row":
        batch = {v.shape[0] if v.ndim else None for v in outputs.values()}
        if len(batch) != 1 or None in batch:
            raise _invalid("row format output needs every output to share its 0th dimension")
        if len(outputs) == 1:
            (name, value), = outputs.items()
            return {"predictions": _array_to_json(value, name)}
        columns = {k: _array_to_json(v, k) for k, v in outputs.items()}
        n = batch.pop()
        return {"predictions": [{k: columns[k][i] for k in columns} for i in range(n)]}
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"outputs": _array_to_json(value, name)}
    return {"outputs": {k: _array_to_json(v, k) for k, v in outputs.items()}}


class _RestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "FakeModelServer"
    timeout = 30  # socket timeout: a stalled client cannot hold a worker forever

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method):
        fake = self.server.fake
        try:
            match = _ROUTE.match(self.path.split("?", 1)[0])
            tail = match and match.group("tail")
            if not match or (method, tail) not in {("GET", None), ("GET", "/metadata"),
                                                   ("POST", ":predict")}:
                raise _invalid(f"Malformed request: {method} {self.path}")
            spec = model_pb2.ModelSpec(name=match.group("name"))
            if match.group("version"):
                spec.version.value = int(match.group("version"))
            if match.group("label"):
                spec.version_label = match.group("label")
            if tail is None:
                self._send(200, _to_json(fake.status_proto(spec)))
            elif tail == "/metadata":
                servable = fake.find(spec)
                self._send(200, {
                    "model_spec": {"name": servable.name, "signature_name": "",
                                   "version": str(servable.version)},
                    "metadata": {"signature_def": _to_json(fake.signature_def_map(servable))}})
            else:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise _invalid(f"request body of {length} bytes exceeds {MAX_BODY}")
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError as e:
                    raise _invalid(f"JSON Parse error: {e}") from None
                servable = fake.find(spec)
                signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
                signature_name, sig = servable.signature(signature_name)
                inputs, layout = parse_predict_body(body, sig)
                _, outputs = _run(servable, signature_name, inputs)
                self._send(200, predict_reply(outputs, layout))
        except Fault as f:
            self._send(HTTP_STATUS.get(f.code, 500), {"error": f.message})
        except Exception as e:  # a bug in the double: report it like the server would
            self._send(500, {"error": f"{type(e).__name__}: {e}"})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")


class _PooledHTTPServer(http.server.HTTPServer):
    """HTTPServer whose requests run on a fixed-size thread pool (HTTP/1.0:
    one request per connection, so an idle keep-alive never pins a worker)."""

    def __init__(self, address, handler, workers, fake):
        self.fake = fake
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="fake-rest")
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        self._pool.submit(self._work, request, client_address)

    def _work(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=True)


# --------------------------------------------------------------------------


class FakeModelServer:
    """TEST DOUBLE for tensorflow_model_server (see the module docstring).

    Args:
      export_root: ROOT with ROOT/<model>/<version>/ SavedModels.
      model_names: the models to serve (default: every model folder).
      version_policy: "latest" (the ``num_versions`` newest) or "all".
      warmup: replay assets.extra/tf_serving_warmup_requests at load.
      workers: threads per transport.
    """

    def __init__(self, export_root, model_names=None, version_policy="latest", num_versions=1,
                 warmup=True, workers=4):
        if version_policy not in ("latest", "all"):
            raise ValueError(f"version_policy={version_policy!r}: 'latest' or 'all'")
        self.export_root = os.fspath(export_root)
        self.model_names = model_names
        self.version_policy = version_policy
        self.num_versions = num_versions
        self.warmup = warmup
        self.workers = workers
        self.models = {}  # name -> {version: _Servable}
        self._grpc = None
        self._http = None
        self._http_thread = None
        self.grpc_port = self.rest_port = None

    # -- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def rest_url(self):
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self):
        return f"127.0.0.1:{self.grpc_port}"

    def start(self):
        self._load()
        try:
            self._grpc = grpc.server(
                futures.ThreadPoolExecutor(self.workers, thread_name_prefix="fake-grpc"),
                maximum_concurrent_rpcs=4 * self.workers,
                options=[("grpc.max_send_message_length", MAX_BODY),
                         ("grpc.max_receive_message_length", MAX_BODY),
                         ("grpc.so_reuseport", 0)])
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                _PredictionService(self), self._grpc)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self),
                                                                       self._grpc)
            self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
            if not self.grpc_port:
                raise RuntimeError("could not bind a gRPC port on 127.0.0.1")
            self._grpc.start()
            self._http = _PooledHTTPServer(("127.0.0.1", 0), _RestHandler, self.workers, self)
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever,
                                                 kwargs={"poll_interval": 0.1},
                                                 name="fake-rest-accept", daemon=True)
            self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self._http is not None:
            if self._http_thread is not None:
                self._http.shutdown()
                self._http_thread.join(timeout=10)
            self._http.server_close()
            self._http = self._http_thread = None
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait(timeout=10)
            self._grpc = None

    def _load(self):
        names = self.model_names or sorted(
            d for d in os.listdir(self.export_root)
            if os.path.isdir(os.path.join(self.export_root, d)) and not d.startswith("."))
        for name in names:
            base = os.path.join(self.export_root, name)
            versions = sorted(int(v) for v in (os.listdir(base) if os.path.isdir(base) else [])
                              if v.isdigit() and os.path.isfile(
                                  os.path.join(base, v, "saved_model.pb")))
            if self.version_policy == "latest":
                versions = versions[-self.num_versions:]
            if not versions:
                raise FileNotFoundError(f"{base}: no version folders with a saved_model.pb")
            self.models[name] = {}
            for version in versions:
                servable = _Servable(name, version, os.path.join(base, str(version)))
                if self.warmup:
                    self._replay_warmup(servable)
                self.models[name][version] = servable

    def _replay_warmup(self, servable):
        path = os.path.join(servable.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise RuntimeError(f"{path}: only predict_log warm-up records are supported")
            request = log.predict_log.request
            try:
                _run(servable, request.model_spec.signature_name, _inputs(request),
                     request.output_filter)
            except Fault as f:
                raise RuntimeError(f"{path}: warm-up request failed: {f.code.name}: "
                                   f"{f.message}") from None
            servable.warmup_replayed += 1

    # -- shared by both transports
    def find(self, spec):
        versions = self.models.get(spec.name)
        if spec.version_label:
            raise _invalid(f"Unrecognized servable version label: {spec.version_label}")
        if spec.HasField("version"):
            servable = (versions or {}).get(spec.version.value)
            if servable is None:
                raise Fault(grpc.StatusCode.NOT_FOUND, "Servable not found for request: "
                            f"Specific({spec.name}, {spec.version.value})")
            return servable
        if not versions:
            raise Fault(grpc.StatusCode.NOT_FOUND,
                        f"Servable not found for request: Latest({spec.name})")
        return versions[max(versions)]

    def signature_def_map(self, servable):
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            sigmap.signature_def[key].CopyFrom(value)
        return sigmap

    def status_proto(self, spec):
        versions = self.models.get(spec.name)
        if not versions:
            raise Fault(grpc.StatusCode.NOT_FOUND,
                        f"Could not find any versions of model {spec.name}")
        wanted = sorted(versions)
        if spec.HasField("version"):
            if spec.version.value not in versions:
                raise Fault(grpc.StatusCode.NOT_FOUND, f"Could not find version "
                            f"{spec.version.value} of model {spec.name}")
            wanted = [spec.version.value]
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in wanted:
            status = response.model_version_status.add()
            status.version = version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.error_message = ""
        return response

    def predict_proto(self, request):
        servable = self.find(request.model_spec)
        signature_name, outputs = _run(servable, request.model_spec.signature_name,
                                       _inputs(request), request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def _inputs(request):
    try:
        return {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    except (TypeError, ValueError) as e:
        raise _invalid(f"malformed TensorProto: {e}") from None


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: PYTHONPATH=. python tests/serving_double.py EXPORT_ROOT")
    with FakeModelServer(sys.argv[1]) as fake:
        print(f"TEST DOUBLE serving {sorted(fake.models)}: REST {fake.rest_url}  "
              f"gRPC {fake.grpc_target}  (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
