"""Clients for an mlc_keras model served by TensorFlow Serving (REST and gRPC).

Library::

    from serving.client import RestClient, GrpcClient, ServingError

    with RestClient("http://localhost:8501", "mlc") as client:      # or request_format="columnar"
        out = client.predict(images, [1, 2])          # float32 [B,R,R,3] in [-1,1] -> same
        pngs = client.predict_bytes([jpeg_bytes], [1])  # encoded images -> list of PNG bytes
        every = client.all_expressions(images)        # [B, N, R, R, 3]
        client.metadata()                             # signatures, dtypes, shapes
        client.status()                               # [{"version": 3, "state": "AVAILABLE", ...}]

    with GrpcClient("localhost:8500", "mlc") as client:  # the same methods
        ...

Command line (the REST path imports neither TensorFlow nor grpc)::

    python serving/client.py --rest http://localhost:8501 status
    python serving/client.py --grpc localhost:8500 metadata
    python serving/client.py --rest http://localhost:8501 predict --image face.jpg \\
        --expression happy --expressions_list neutral,happy,sad --output happy.png

Expression names. TF Serving does not expose the export's
``assets.extra/mlc_keras.json``, so the served model cannot tell a client the
*names* of its expressions, only how many there are (the ``all_expressions``
output shape). Expressions are therefore given as integer ids, or as names
resolved through, in this order:

1. ``expressions_list`` / ``--expressions_list``: a comma separated list in id
   order (``neutral,happy,sad``), a sequence, or the path of the export's
   ``mlc_keras.json`` (its ``expressions`` field); its length must equal the
   served model's class count when the metadata gives it (an
   :class:`ExpressionError` naming the flag otherwise);
2. otherwise the default seven-class vocabulary (``mlc_keras.expressions.
   EXPRESSIONS`` order), but only when the served model has exactly seven
   expressions; any other count is an :class:`ExpressionError` asking for
   ``--expressions_list``.

Errors from the server raise :class:`ServingError` with the server's own
message (e.g. the model's INVALID_ARGUMENT text ``expressions: ids must lie
in [0, 2]``) and a status code name. gRPC reports the code itself; REST only
has the HTTP status, so ``code`` is derived from it (400 -> INVALID_ARGUMENT,
404 -> NOT_FOUND, ...) and ``http_status`` holds the number.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np

SIGNATURES = ("serving_default", "synthesize_bytes", "all_expressions")

# Copy of mlc_keras.expressions.EXPRESSIONS, used when mlc_keras is not
# importable (the client may run on a machine with only this file);
# tests/test_serving.py checks that the two agree.
_DEFAULT_EXPRESSIONS = ("neutral", "angry", "disgusted", "fearful", "happy", "sad", "surprised")

# REST gives only an HTTP status; TF Serving's status -> HTTP mapping,
# inverted to the most likely code.
_HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}

_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
           "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32", "DT_INT64": "int64",
           "DT_UINT8": "uint8", "DT_UINT16": "uint16", "DT_STRING": "string", "DT_BOOL": "bool"}


class ServingError(RuntimeError):
    """The model server refused or failed a request.

    Attributes:
      message: the server's error text, verbatim.
      code: status code name (``INVALID_ARGUMENT``, ``NOT_FOUND``,
        ``UNAVAILABLE`` ...); for REST derived from the HTTP status.
      http_status: the HTTP status (REST only), else None.
    """

    def __init__(self, message, code=None, http_status=None):
        self.message = message
        self.code = code
        self.http_status = http_status
        super().__init__(f"{code}: {message}" if code else message)


class ExpressionError(ValueError):
    """An expression name cannot be mapped to an id; the message says how to."""


# --------------------------------------------------------------------------
# expression names -> ids


def _canonical(name):
    try:
        from mlc_keras.expressions import canonical_expression
    except ImportError:
        return str(name).strip().lower()
    try:
        return canonical_expression(name)
    except ValueError:
        return str(name).strip().lower()


def default_expressions():
    """The default seven-class vocabulary in id order."""
    try:
        from mlc_keras.expressions import EXPRESSIONS
    except ImportError:
        return _DEFAULT_EXPRESSIONS
    return tuple(EXPRESSIONS)


def parse_expressions_list(value):
    """``"a,b,c"``, a sequence of names, or the path of an export's
    ``mlc_keras.json`` -> tuple of names in id order (None passes through)."""
    if value is None:
        return None
    if isinstance(value, str):
        if os.path.isfile(value):
            with open(value, encoding="utf-8") as f:
                names = json.load(f).get("expressions")
            if not names:
                raise ExpressionError(f"{value}: no 'expressions' list in this JSON file")
            return tuple(names)
        names = [n.strip() for n in value.split(",") if n.strip()]
        if not names:
            raise ExpressionError(f"--expressions_list={value!r}: no names")
        return tuple(names)
    return tuple(value)


def _is_id(value):
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


# --------------------------------------------------------------------------
# metadata / status normalisation (shared by both transports: the REST JSON
# and the gRPC protos converted to the same JSON mapping)


def _shape(tensor_shape):
    if not tensor_shape or tensor_shape.get("unknown_rank"):
        return None
    return [int(d.get("size", -1)) for d in tensor_shape.get("dim", [])]


def _tensor_info(info):
    dtype = info.get("dtype", "DT_INVALID")
    return {"dtype": _DTYPES.get(dtype, dtype.replace("DT_", "").lower()),
            "shape": _shape(info.get("tensor_shape"))}


def normalize_metadata(model_spec, signature_def_map):
    """(model_spec JSON, SignatureDefMap JSON) -> {"model_name", "version",
    "signatures": {name: {"method_name", "inputs", "outputs"}}, "resolution",
    "num_expressions"}; names starting with ``__`` (the init op) are left out.
    Inputs/outputs map tensor names to {"dtype": "float32", "shape": [-1, ...]}
    (-1: any size; shape None: unknown rank)."""
    defs = signature_def_map.get("signature_def", signature_def_map)
    signatures = {}
    for name, sd in sorted(defs.items()):
        if name.startswith("__") or name == "@type":
            continue
        signatures[name] = {
            "method_name": sd.get("method_name", ""),
            "inputs": {k: _tensor_info(v) for k, v in sorted(sd.get("inputs", {}).items())},
            "outputs": {k: _tensor_info(v) for k, v in sorted(sd.get("outputs", {}).items())},
        }
    version = model_spec.get("version")
    meta = {"model_name": model_spec.get("name"),
            "version": int(version) if version not in (None, "") else None,
            "signatures": signatures, "resolution": None, "num_expressions": None}
    out = signatures.get("serving_default", {}).get("outputs", {}).get("images", {}).get("shape")
    if out and len(out) == 4 and out[1] > 0:
        meta["resolution"] = out[1]
    every = signatures.get("all_expressions", {}).get("outputs", {}).get("images", {}).get("shape")
    if every and len(every) == 5 and every[1] > 0:
        meta["num_expressions"] = every[1]
    return meta


def normalize_status(response):
    """GetModelStatusResponse JSON -> [{"version", "state", "error_code",
    "error_message"}] sorted by version."""
    rows = []
    for s in response.get("model_version_status", []):
        status = s.get("status", {})
        rows.append({"version": int(s.get("version", 0)), "state": s.get("state", "UNKNOWN"),
                     "error_code": status.get("error_code", "OK"),
                     "error_message": status.get("error_message", "")})
    return sorted(rows, key=lambda r: r["version"])


# --------------------------------------------------------------------------
# shared client logic


class _Client:
    """Signature-level helpers shared by RestClient and GrpcClient."""

    def __init__(self, model_name="mlc", version=None, timeout=60.0, expressions_list=None):
        self.model_name = model_name
        self.version = int(version) if version not in (None, "", 0) else None
        self.timeout = timeout
        self.expressions_list = parse_expressions_list(expressions_list)
        self._metadata = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    # -- what subclasses implement
    def _predict(self, signature_name, inputs, outputs):
        raise NotImplementedError

    def metadata(self):
        raise NotImplementedError

    def status(self):
        raise NotImplementedError

    # -- public API
    def _num_expressions(self):
        """The served model's class count (the ``all_expressions`` output
        shape in its metadata), or None when the metadata cannot tell."""
        if self._metadata is None:
            self._metadata = self.metadata()
        return self._metadata.get("num_expressions")

    def vocabulary(self):
        """Expression names in id order (see the module docstring). A given
        ``expressions_list`` must have one name per class of the served model
        (checked when its metadata gives the count)."""
        if self.expressions_list:
            try:
                n = self._num_expressions()
            except ServingError:
                n = None  # the server cannot tell; the request itself will say what is wrong
            if n is not None and n != len(self.expressions_list):
                raise ExpressionError(
                    f"--expressions_list: {len(self.expressions_list)} names "
                    f"({', '.join(self.expressions_list)}) for a served model with {n} "
                    "expressions; give one name per class, in id order (or the path of the "
                    "export's assets.extra/mlc_keras.json)")
            return self.expressions_list
        n = self._num_expressions()
        default = default_expressions()
        if n == len(default):
            return default
        raise ExpressionError(
            f"the served model has {n} expressions and TF Serving does not expose their names; "
            "pass integer ids, or the names in id order with --expressions_list (e.g. "
            "neutral,happy,sad, or the path of the export's assets.extra/mlc_keras.json)")

    def expression_ids(self, expressions, batch=None):
        """Ids or names (one, or one per image) -> int32 [B]. Ids are passed
        through unchecked: the model validates them."""
        if np.ndim(expressions) == 0:
            values = [expressions]
        else:
            values = list(np.asarray(expressions, object).ravel())
        ids = []
        for value in values:
            if _is_id(value):
                ids.append(int(value))
                continue
            vocab = [_canonical(v) for v in self.vocabulary()]
            key = _canonical(value)
            if key not in vocab:
                raise ExpressionError(f"expression {value!r} is not among this model's "
                                      f"expressions ({', '.join(self.vocabulary())})")
            ids.append(vocab.index(key))
        if batch is not None and len(ids) == 1 and batch != 1:
            ids = ids * batch
        return np.asarray(ids, np.int32)

    def predict(self, images, expressions):
        """serving_default: float32 [B, R, R, 3] in [-1, 1] and one expression
        (id or name) per image, or one for all -> float32 [B, R, R, 3]."""
        images = np.asarray(images, np.float32)
        ids = self.expression_ids(expressions, batch=images.shape[0] if images.ndim else None)
        return self._predict("serving_default", {"images": images, "expressions": ids},
                             {"images": np.float32})["images"]

    def predict_bytes(self, encoded_images, expressions):
        """synthesize_bytes: encoded JPEG/PNG/GIF/BMP images (bytes, any size)
        -> list of PNG bytes at the model resolution."""
        blobs = [bytes(b) for b in encoded_images]
        ids = self.expression_ids(expressions, batch=len(blobs))
        batch = np.empty(len(blobs), object)
        batch[:] = blobs
        out = self._predict("synthesize_bytes", {"image_bytes": batch, "expressions": ids},
                            {"image_bytes": object})["image_bytes"]
        return [bytes(b) for b in np.asarray(out, object).ravel()]

    def all_expressions(self, images):
        """all_expressions: float32 [B, R, R, 3] -> float32 [B, N, R, R, 3]."""
        images = np.asarray(images, np.float32)
        return self._predict("all_expressions", {"images": images},
                             {"images": np.float32})["images"]

    def predict_signature(self, signature_name, inputs, outputs):
        """Any signature: {input name: array}, {output name: numpy dtype or
        object for strings} -> {output name: array}."""
        return self._predict(signature_name, inputs, outputs)


# --------------------------------------------------------------------------
# REST


def _to_json(array):
    """numpy -> JSON value; strings become {"b64": ...} (always safe for
    DT_STRING inputs)."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":
        def enc(v):
            if isinstance(v, list):
                return [enc(x) for x in v]
            if isinstance(v, str):
                v = v.encode("utf-8")
            return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
        return enc(array.tolist())
    return array.tolist()


def _from_json(value, dtype):
    if dtype is object:
        def dec(v):
            if isinstance(v, list):
                return [dec(x) for x in v]
            if isinstance(v, dict) and "b64" in v:
                return base64.b64decode(v["b64"])
            return v.encode("utf-8") if isinstance(v, str) else v
        return np.array(dec(value), dtype=object)
    return np.asarray(value, dtype)


def _is_b64(v):
    return isinstance(v, dict) and set(v) == {"b64"}


class RestClient(_Client):
    """TF Serving REST API client (``/v1/models/<name>[/versions/<v>]``).

    Args:
      base_url: ``http://host:8501``.
      model_name: the served model's name (``mlc``).
      version: a version number, or None for the newest loaded one.
      request_format: ``"row"`` (``{"instances": [...]}``, one object per
        image) or ``"columnar"`` (``{"inputs": {name: batch}}``).
      timeout: seconds per HTTP request.
      expressions_list: names in id order, for expression names.
    """

    def __init__(self, base_url, model_name="mlc", version=None, request_format="row",
                 timeout=60.0, expressions_list=None, session=None):
        super().__init__(model_name, version, timeout, expressions_list)
        if request_format not in ("row", "columnar"):
            raise ValueError(f"request_format={request_format!r}: 'row' or 'columnar'")
        self.base_url = base_url.rstrip("/")
        self.request_format = request_format
        import requests

        self._requests = requests
        self._session = session or requests.Session()

    def close(self):
        self._session.close()

    def url(self, suffix=""):
        path = f"{self.base_url}/v1/models/{self.model_name}"
        if self.version:
            path += f"/versions/{self.version}"
        return path + suffix

    def _call(self, method, url, body=None):
        try:
            response = self._session.request(
                method, url, data=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json"}, timeout=self.timeout)
        except self._requests.RequestException as e:
            raise ServingError(f"{method} {url}: {e}", code="UNAVAILABLE") from e
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            message = (payload.get("error") if isinstance(payload, dict) else None) or \
                response.text.strip() or response.reason
            raise ServingError(message, code=_HTTP_CODES.get(response.status_code, "UNKNOWN"),
                               http_status=response.status_code)
        if not isinstance(payload, dict):
            raise ServingError(f"{method} {url}: response is not a JSON object: "
                               f"{response.text[:200]!r}", code="INTERNAL",
                               http_status=response.status_code)
        return payload

    def _predict(self, signature_name, inputs, outputs):
        body = {"signature_name": signature_name}
        names = list(inputs)
        if self.request_format == "row":
            batch = len(next(iter(inputs.values())))
            if any(len(v) != batch for v in inputs.values()):
                raise ValueError("row format needs every input to have the same batch size; "
                                 "use request_format='columnar'")
            columns = {k: _to_json(v) for k, v in inputs.items()}
            if len(names) == 1:  # one named input: the instances are its values
                body["instances"] = columns[names[0]]
            else:
                body["instances"] = [{k: columns[k][i] for k in names} for i in range(batch)]
        else:
            body["inputs"] = {k: _to_json(v) for k, v in inputs.items()}
        reply = self._call("POST", self.url(":predict"), body)
        key = "predictions" if "predictions" in reply else "outputs"
        if key not in reply:
            raise ServingError(f"predict reply has neither 'predictions' nor 'outputs': "
                               f"{sorted(reply)}", code="INTERNAL")
        value = reply[key]
        if key == "predictions":
            named = (isinstance(value, list) and value and all(
                isinstance(v, dict) and not _is_b64(v) for v in value))
            if named:
                value = {k: [row[k] for row in value] for k in value[0]}
        else:
            named = isinstance(value, dict) and not _is_b64(value)
        if not named:  # one output: TF Serving leaves out its name
            if len(outputs) != 1:
                raise ServingError(f"one unnamed output returned; expected {sorted(outputs)}",
                                   code="INTERNAL")
            value = {next(iter(outputs)): value}
        missing = set(outputs) - set(value)
        if missing:
            raise ServingError(f"outputs {sorted(missing)} missing from the reply "
                               f"(got {sorted(value)})", code="INTERNAL")
        return {k: _from_json(value[k], dtype) for k, dtype in outputs.items()}

    def metadata(self):
        reply = self._call("GET", self.url("/metadata"))
        sigmap = reply.get("metadata", {}).get("signature_def", {})
        self._metadata = normalize_metadata(reply.get("model_spec", {}), sigmap)
        return self._metadata

    def status(self):
        return normalize_status(self._call("GET", self.url()))


# --------------------------------------------------------------------------
# gRPC


class GrpcClient(_Client):
    """TF Serving gRPC client (PredictionService + ModelService).

    Args:
      target: ``host:8500``.
      model_name, version, timeout, expressions_list: as for RestClient.
      max_message_mb: gRPC send/receive message limit.
    """

    def __init__(self, target, model_name="mlc", version=None, timeout=60.0,
                 expressions_list=None, max_message_mb=64, channel=None):
        super().__init__(model_name, version, timeout, expressions_list)
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._grpc = grpc
        self.target = target
        limit = int(max_message_mb) * 1024 * 1024
        self._channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", limit),
                             ("grpc.max_receive_message_length", limit)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def model_spec(self, signature_name=""):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if self.version:
            spec.version.value = self.version
        return spec

    def _rpc(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            raise ServingError(e.details() if hasattr(e, "details") else str(e),
                               code=code.name if code is not None else "UNKNOWN") from None

    def _predict(self, signature_name, inputs, outputs):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(model_spec=self.model_spec(signature_name))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        request.output_filter.extend(outputs)
        reply = self._rpc(self._predictions.Predict, request)
        missing = set(outputs) - set(reply.outputs)
        if missing:
            raise ServingError(f"outputs {sorted(missing)} missing from the reply "
                               f"(got {sorted(reply.outputs)})", code="INTERNAL")
        result = {}
        for name, dtype in outputs.items():
            array = tf.make_ndarray(reply.outputs[name])
            result[name] = array.astype(object) if dtype is object else array.astype(dtype,
                                                                                     copy=False)
        return result

    def metadata(self):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(), metadata_field=["signature_def"])
        reply = self._rpc(self._predictions.GetModelMetadata, request)
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in reply.metadata:
            reply.metadata["signature_def"].Unpack(sigmap)
        self._metadata = normalize_metadata(_message_json(reply.model_spec, json_format),
                                            _message_json(sigmap, json_format))
        return self._metadata

    def status(self):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec())
        reply = self._rpc(self._models.GetModelStatus, request)
        return normalize_status(_message_json(reply, json_format))


def _message_json(message, json_format):
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


# --------------------------------------------------------------------------
# command line


def make_client(args):
    if bool(args.rest) == bool(args.grpc):
        raise SystemExit("error: give exactly one of --rest URL or --grpc HOST:PORT")
    if args.rest:
        return RestClient(args.rest, args.model_name, args.version, args.format, args.timeout,
                          args.expressions_list)
    return GrpcClient(args.grpc, args.model_name, args.version, args.timeout,
                      args.expressions_list)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python serving/client.py",
        description="Query an mlc_keras model served by TensorFlow Serving.",
        epilog="Expression names need --expressions_list (names in id order, or the export's "
               "assets.extra/mlc_keras.json) unless the model has the default 7 classes; "
               "integer ids always work. Errors exit with status 1 (server) or 2 (usage).")
    where = parser.add_argument_group("server (one of)")
    where.add_argument("--rest", metavar="URL", help="REST base URL, e.g. http://localhost:8501")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC target, e.g. localhost:8500")
    parser.add_argument("--model_name", default="mlc", help="served model name (default: mlc)")
    parser.add_argument("--version", type=int, default=None,
                        help="model version (default: the newest loaded)")
    parser.add_argument("--format", choices=("row", "columnar"), default="row",
                        help="REST request format (default: row)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--expressions_list", default=None, metavar="NAMES|JSON",
                        help="expression names in id order (neutral,happy,sad) or the path of "
                             "the export's mlc_keras.json")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="version states (GetModelStatus)")
    sub.add_parser("metadata", help="signatures with input/output dtypes and shapes")
    predict = sub.add_parser("predict", help="one image -> PNG with the target expression "
                                             "(synthesize_bytes)")
    predict.add_argument("--image", required=True, help="JPEG/PNG/GIF/BMP file, any size")
    predict.add_argument("--expression", required=True, help="expression name or integer id")
    predict.add_argument("--output", default=None,
                         help="PNG to write (default: <image name>-<expression>.png here)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with make_client(args) as client:
            if args.command == "status":
                print(json.dumps(client.status(), indent=1))
            elif args.command == "metadata":
                print(json.dumps(client.metadata(), indent=1))
            else:
                with open(args.image, "rb") as f:
                    raw = f.read()
                png = client.predict_bytes([raw], [args.expression])[0]
                output = args.output or "{}-{}.png".format(
                    os.path.splitext(os.path.basename(args.image))[0], args.expression)
                with open(output, "wb") as f:
                    f.write(png)
                print(output)
    except ServingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ExpressionError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
