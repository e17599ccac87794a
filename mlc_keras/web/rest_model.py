"""A ``SynthesisModel`` whose face edits run on a TensorFlow Serving REST endpoint.

The demo's ``--serving_url=http://HOST:8501/v1/models/NAME[/versions/N]``:
alignment, compositing and paste-back stay in this process
(``inference.synthesize``); only the two model calls go to the server, in
TF Serving's columnar REST format::

    POST <serving_url>:predict
    {"signature_name": "edit" | "composite_edit",
     "inputs": {"images": [B, S, S, 3] in [-1, 1], "targets": [B, N], "intensity": [B]}}
    -> {"outputs": {"images": ..., "change": ...}}   (a lone output: {"outputs": [...]})

The served model cannot say its resolution or expression names, so they
come from a local copy of the same model (``--model``). The standard
library's ``urllib`` does the HTTP; nothing else is needed.
"""

import json
import re
import urllib.error
import urllib.request

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.inference.loading import SynthesisModel

_URL = re.compile(r"^https?://[^/\s]+/v1/models/[^/:\s]+(/versions/\d+|/labels/[^/:\s]+)?$")
EDIT, COMPOSITE_EDIT = "edit", "composite_edit"


class ServingError(UserError, RuntimeError):
    """The model server cannot be reached, or refused or failed a request."""


def check_serving_url(url):
    """``url`` without a trailing slash; ServingError naming the flag when it
    is not ``http(s)://HOST[:PORT]/v1/models/NAME[/versions/N|/labels/L]``."""
    url = (url or "").strip().rstrip("/")
    if not _URL.match(url):
        raise ServingError(f"--serving_url={url}: expected http://HOST:PORT/v1/models/NAME "
                           "(optionally /versions/N), TF Serving's REST address of the model")
    return url


def _round_json(array):
    """float array -> nested lists of short decimals (5 places: a uint8 pixel
    mapped to [-1, 1] survives the trip exactly; the JSON is ~2x smaller)."""
    return np.round(np.asarray(array, np.float64), 5).tolist()


class RestEndpoint:
    """The model's REST address: ``predict(signature, inputs)`` and ``signatures()``."""

    def __init__(self, serving_url, timeout=300.0):
        self.url = check_serving_url(serving_url)
        self.timeout = float(timeout)

    def _call(self, url, body=None):
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as e:
            raise ServingError(f"--serving_url={self.url}: the model server answered HTTP "
                               f"{e.code}: {_server_message(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ServingError(f"--serving_url={self.url}: cannot reach the model server "
                               f"({reason})") from None
        except ValueError as e:
            raise ServingError(f"--serving_url={self.url}: the model server's answer is not "
                               f"JSON ({e})") from None

    def signatures(self):
        """The names of the served model's signatures (its REST metadata)."""
        meta = self._call(self.url + "/metadata")
        try:
            return sorted(meta["metadata"]["signature_def"]["signature_def"])
        except (KeyError, TypeError):
            raise ServingError(f"--serving_url={self.url}: the metadata lists no signatures "
                               "(is this a TF Serving model address?)") from None

    def predict(self, signature, inputs, names):
        """{input: array} -> {output name: float32 array} for ``names``."""
        body = {"signature_name": signature,
                "inputs": {k: _round_json(v) for k, v in inputs.items()}}
        outputs = self._call(self.url + ":predict", body).get("outputs")
        if not isinstance(outputs, dict):  # a signature with one output sends it bare
            outputs = {names[0]: outputs} if len(names) == 1 else {}
        missing = [n for n in names if n not in outputs]
        if missing:
            raise ServingError(f"--serving_url={self.url}: signature {signature!r} returned no "
                               f"{', '.join(missing)}")
        return {n: np.asarray(outputs[n], np.float32) for n in names}


def _server_message(error):
    try:
        text = error.read().decode("utf-8", "replace")
    except OSError:
        return error.reason
    try:
        text = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        pass
    return " ".join(str(text).split())[:500] or error.reason


def rest_synthesis_model(serving_url, metadata, timeout=300.0):
    """A ``SynthesisModel`` with ``metadata``'s resolution, expressions and
    framing (a ``SynthesisModel`` loaded from the same export) whose
    ``generate`` / ``composite`` call the served signatures ``edit`` /
    ``composite_edit``. Checks the server once (its metadata): ServingError
    when it is unreachable or lacks the ``edit`` signature; without
    ``composite_edit`` faces are pasted from the R-sized output."""
    endpoint = RestEndpoint(serving_url, timeout)
    served = endpoint.signatures()
    if EDIT not in served:
        raise ServingError(f"--serving_url={endpoint.url}: the served model has no {EDIT!r} "
                           f"signature (it has: {', '.join(served)}); export it again with this "
                           "version of mlc_keras")

    def fn(images, targets, intensity):
        return endpoint.predict(EDIT, {"images": images, "targets": targets,
                                       "intensity": intensity}, ["images"])["images"]

    composite_fn = None
    if COMPOSITE_EDIT in served:
        def composite_fn(crops, targets, intensity):
            out = endpoint.predict(COMPOSITE_EDIT, {"images": crops, "targets": targets,
                                                    "intensity": intensity}, ["images", "change"])
            return out["images"], out["change"]

    return SynthesisModel(fn, metadata.resolution, metadata.expressions,
                          import_resolution=metadata.import_resolution, dataset=metadata.dataset,
                          source=f"{endpoint.url} (TF Serving; metadata from {metadata.source})",
                          composite_fn=composite_fn)
