"""The demo's Flask app and server: the page and the HTTP API beside it.

    GET  /                  the page (templates/index.html, static/demo.js, static/demo.css)
    GET  /api/expressions   JSON list of the model's expressions, in id order
    POST /api/synthesize    multipart form: image (file), expression (text), intensity
                            (number in [0, 2], default 1) -> image/png, the whole photo
                            with its largest face edited at full resolution

A bad request gets a 4xx answer with a JSON body ``{"error": "<one line>"}``
that names the input: 400 for a missing or malformed field (image,
expression, intensity), 422 for a photo that cannot be used (not an image,
corrupt, too many pixels, no face), 413 for an upload over the size limit
(refused from the Content-Length header before the body is read). A failing
model server (``--serving_url``) is 502, a missing face detector 503;
anything else is 500 with the traceback in the server's log only.

Uploads stay in memory: the request's files are buffered in memory (the
size limit bounds them) and decoded by ``align.load_image``, the command
line's reader, through an anonymous in-memory file (Linux ``memfd``; on other
systems a file in a private temporary folder, removed at once). Nothing is
written anywhere else. The model is loaded once; model calls are serialised
by a lock (TensorFlow already uses every core for one call).
"""

import contextlib
import io
import os
import re
import sys
import tempfile
import threading

import numpy as np

from mlc_keras.data import align
from mlc_keras.errors import MissingDependencyError, UserError
from mlc_keras.inference.edits import resolve_edits
from mlc_keras.inference.loading import MAX_INTENSITY, load_model_for_synthesis
from mlc_keras.inference.synthesize import synthesize_photo
from mlc_keras.web.rest_model import ServingError, check_serving_url, rest_synthesis_model

DEFAULT_MAX_UPLOAD_MB = 10
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


class DemoError(UserError, ValueError):
    """A flag of the demo command cannot be used; the message says why."""


class RequestError(Exception):
    """A request the demo refuses: HTTP ``status`` and a one-line message naming the input."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------- the work of one request


def load_demo_model(model_path="", serving_url=""):
    """The model the demo serves: ``load_model_for_synthesis(model_path)``
    (empty: the shipped model) or, with ``serving_url``, a model whose edits
    run on that TF Serving endpoint and whose metadata come from
    ``model_path`` (then required)."""
    if not serving_url:
        return load_model_for_synthesis(model_path or None)
    url = check_serving_url(serving_url)
    if not model_path:
        raise DemoError(f"--serving_url={url} needs --model: the same model's .keras file or "
                        "export folder, for its resolution, expressions and face framing (TF "
                        "Serving does not tell them)")
    return rest_synthesis_model(url, load_model_for_synthesis(model_path))


@contextlib.contextmanager
def _readable_path(data):
    """A path to ``data`` that ``open`` can read: an anonymous in-memory file
    where the system has them, else a file in a private temporary folder."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("mlc-demo-upload", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="mlc-demo-") as folder:
        path = os.path.join(folder, "upload")
        with open(path, "wb") as f:
            f.write(data)
        yield path


def upload_name(filename):
    """The uploaded file's base name as messages show it (at most 80 characters)."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    return (name or "upload")[:80]


def decode_upload(data, filename="upload", max_pixels=align.DEFAULT_MAX_PIXELS):
    """An uploaded photo's bytes -> uint8 RGB [H, W, 3], EXIF orientation
    applied, by ``align.load_image`` (the size limit is read from the header
    before decoding). Raises ``align.ImageError`` naming ``filename``."""
    name = upload_name(filename)
    with _readable_path(data) as path:
        try:
            return align.load_image(path, max_pixels=max_pixels)
        except align.ImageError as e:
            raise align.ImageError(str(e).replace(repr(path), repr(name)), name) from None


def parse_edit(model, expression, intensity):
    """The form's ``expression`` and ``intensity`` -> one ``edits.Edit``.

    ``expression``: one of the model's expressions (any case, or a data-set
    spelling such as "smiling"), or a blend "happy:0.6,surprised:0.4";
    ``intensity``: a number in [0, 2], None for 1. RequestError (400) naming
    the field otherwise."""
    text = (expression or "").strip()
    if not text:
        raise RequestError(400, "expression: missing; send one of this model's expressions: "
                                f"{', '.join(model.expressions)}")
    if intensity is None:
        value = 1.0
    else:
        try:
            value = float(str(intensity).strip())
        except ValueError:
            raise RequestError(400, f"intensity: {str(intensity)[:40]!r} is not a number; send "
                                    f"a number from 0 to {MAX_INTENSITY:g}") from None
        if not (np.isfinite(value) and 0.0 <= value <= MAX_INTENSITY):
            raise RequestError(400, f"intensity: {str(intensity)[:40]} is outside [0, "
                                    f"{MAX_INTENSITY:g}] (0 leaves the face unchanged, 1 is the "
                                    "full expression)")
    try:
        edits = resolve_edits(text, model.expressions, (value,))
    except UserError as e:
        raise RequestError(400, str(e).replace("--expressions:", "expression:", 1)) from None
    if len(edits) != 1:
        raise RequestError(400, f"expression: {text[:80]!r} names {len(edits)} edits; send one "
                                "expression (or one blend such as happy:0.6,surprised:0.4)")
    return edits[0]


def synthesize_upload(model, data, filename, edit, lock=None, aligner=None,
                      max_pixels=align.DEFAULT_MAX_PIXELS):
    """The photo ``data`` with its largest face given ``edit``, pasted back at
    full resolution: uint8 [H, W, 3] (``synthesize --paste_back``'s library
    path). Raises ``align.ImageError`` / ``align.NoFaceError`` naming the file."""
    name = upload_name(filename)
    photo = decode_upload(data, name, max_pixels)
    try:
        with lock or contextlib.nullcontext():
            result = synthesize_photo(model, photo, [edit], paste_back=True, aligner=aligner,
                                      max_pixels=max_pixels)
            return result.pasted(result.expressions[0])
    except align.ImageError as e:  # no face, or one that cannot be aligned: name the upload
        message = str(e).replace("'array'", repr(name))
        raise type(e)(message if message.startswith("image") else f"image: {message}",
                      name) from None


def encode_png(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------- the app


def create_app(model, max_upload_bytes=DEFAULT_MAX_UPLOAD_MB * 1024 * 1024, aligner=None,
               max_pixels=align.DEFAULT_MAX_PIXELS):
    """The Flask app serving ``model`` (a ``SynthesisModel``); see the module doc."""
    import flask
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    class InMemoryRequest(flask.Request):
        """Uploaded files are buffered in memory, never spooled to disk
        (``max_content_length`` bounds them)."""

        def _get_file_stream(self, total_content_length, content_type, filename=None,
                             content_length=None):
            return io.BytesIO()

    app = flask.Flask(__name__)  # templates/ and static/ beside this module
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_bytes)
    lock = threading.Lock()
    limit_mb = f"{max_upload_bytes / (1024 * 1024):g} MB"

    def error(status, message):
        return flask.jsonify(error=" ".join(str(message).split())), status

    @app.get("/")
    def page():
        return flask.render_template("index.html", source=model.source,
                                     max_upload_bytes=int(max_upload_bytes), limit=limit_mb,
                                     max_intensity=MAX_INTENSITY)

    @app.get("/api/expressions")
    def expressions():
        return flask.jsonify(list(model.expressions))

    @app.post("/api/synthesize")
    def synthesize():
        request = flask.request
        upload = request.files.get("image")
        if upload is None:
            raise RequestError(400, "image: missing; send the photo as the multipart file field "
                                    "'image'")
        edit = parse_edit(model, request.form.get("expression"), request.form.get("intensity"))
        data = upload.read()
        name = upload_name(upload.filename)
        if not data:
            raise RequestError(400, f"image: {name!r} is empty")
        try:
            pasted = synthesize_upload(model, data, name, edit, lock, aligner, max_pixels)
        except align.ImageError as e:
            raise RequestError(422, str(e)) from None
        stem = _SAFE_NAME.sub("_", os.path.splitext(name)[0]) or "photo"
        label = _SAFE_NAME.sub("_", edit.label)
        response = flask.Response(encode_png(pasted), mimetype="image/png")
        response.headers["Content-Disposition"] = f'inline; filename="{stem}_{label}.png"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(RequestError)
    def refused(e):
        return error(e.status, e)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        return error(413, f"image: the upload is larger than the limit of {limit_mb} "
                          "(the demo's --max_upload_mb)")

    @app.errorhandler(ServingError)
    def serving_failed(e):
        return error(502, e)

    @app.errorhandler(MissingDependencyError)
    def not_installed(e):  # the server's fault, not the request's (serve() checks it at start)
        return error(503, e)

    @app.errorhandler(UserError)
    def user_error(e):
        return error(400, e)

    @app.errorhandler(HTTPException)
    def http_error(e):
        return error(e.code, f"{flask.request.path}: {e.code} {e.name}")

    @app.errorhandler(Exception)
    def crashed(e):
        app.logger.exception("request failed")
        return error(500, f"internal error ({type(e).__name__}); see the demo server's log")

    return app


# ----------------------------------------------------------------- the command


def warm_up(model, aligner):
    """Loads the face detector and runs each model call once, so that the
    first visitor does not wait (and a bad --serving_url fails at start)."""
    aligner.detect(np.zeros((32, 32, 3), np.uint8))
    r = model.resolution
    model.generate(np.zeros((1, r, r, 3), np.float32), [0])
    if model.can_composite:
        model.composite(np.zeros((r, r, 3), np.uint8), [0])


def _make_server(app, host, port):
    """werkzeug's threaded server on a socket bound here, so that a port in
    use is a DemoError (werkzeug itself would print and exit 1)."""
    import socket

    from werkzeug.serving import get_sockaddr, make_server, select_address_family

    try:
        family = select_address_family(host, port)
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(get_sockaddr(host, port, family))
            listener.listen(128)
            return make_server(host, port, app, threaded=True, fd=listener.fileno())
        finally:
            listener.close()  # the server holds its own duplicate
    except (OSError, OverflowError) as e:
        raise DemoError(f"--host={host} --port={port}: cannot listen there "
                        f"({getattr(e, 'strerror', None) or e})") from None


def serve(model_path="", port=8080, host="127.0.0.1", serving_url="",
          max_upload_mb=DEFAULT_MAX_UPLOAD_MB, stdout=None):
    """The demo command: loads the model, then serves the page and the API
    until interrupted (Ctrl+C). ``port`` 0 picks a free port; the address
    is printed once the server listens. Returns the exit code."""
    stdout = stdout or sys.stdout
    if not 0 <= int(port) <= 65535:
        raise DemoError(f"--port={port}: must lie in [0, 65535] (0: any free port)")
    if not max_upload_mb or not 0 < float(max_upload_mb) <= 1024:
        raise DemoError(f"--max_upload_mb={max_upload_mb}: must lie in (0, 1024]")
    model = load_demo_model(model_path, serving_url)
    aligner = align.get_default_aligner()
    warm_up(model, aligner)
    app = create_app(model, int(float(max_upload_mb) * 1024 * 1024), aligner)
    server = _make_server(app, host, int(port))
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {model.source} on http://{shown}:{server.port}/ (Ctrl+C stops)",
          file=stdout, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
