"""python -m mlc_keras.demo --model=exports/mlc-1.keras --port=8080

A web page to try the model: upload a photo, choose an expression and an
intensity, see the whole photo with the face edited at full resolution, and
download it. Beside the page, an HTTP API: ``GET /api/expressions`` and
``POST /api/synthesize`` (multipart ``image``, ``expression``, ``intensity``
-> PNG; a bad input -> 4xx with ``{"error": "..."}``), described in
``mlc_keras.web.app``. The model is loaded once; with --serving_url its edits
run on a TF Serving REST endpoint instead (``mlc_keras.web.rest_model``).
Needs Flask: pip install -e ".[demo]".
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("model", "", "A .keras file, an export folder, a SavedModel (version) folder or a training "
                  "workdir (default: the London neutral<->happy model shipped in the package); "
                  "with --serving_url, the served model's own export, for its metadata."),
    ("port", 8080, "Port to listen on (0: any free port; the address is printed)."),
    ("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface; the demo has no "
                          "authentication)."),
    ("serving_url", "", "Edit faces on this TF Serving REST endpoint instead of in this process, "
                        "e.g. http://localhost:8501/v1/models/mlc (needs --model)."),
    ("max_upload_mb", 10.0, "Largest upload accepted, in MB (larger requests get HTTP 413 "
                            "before their body is read)."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        import flask  # noqa: F401
    except ImportError:
        raise errors.MissingDependencyError(
            'the demo needs Flask: pip install -e ".[demo]" (or pip install flask)') from None
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu(inference=True)  # before TensorFlow is imported (never trains)
    from mlc_keras.web.app import serve

    f = flags.FLAGS
    return serve(f.model, port=f.port, host=f.host, serving_url=f.serving_url,
                 max_upload_mb=f.max_upload_mb)


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
