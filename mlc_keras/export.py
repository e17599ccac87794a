"""python -m mlc_keras.export --workdir=runs/london128 --output=exports

Exports a trained generator for TF Serving and Keras:
    python -m mlc_keras.export [--workdir=RUN] --output=DIR [--model_name=mlc] [--version=N]

Without --workdir the London neutral<->happy model shipped in the package is exported.

writes DIR/<model_name>/<version>/ (a SavedModel in TF Serving's layout, with
warm-up requests and mlc_keras.json in assets.extra/) and
DIR/<model_name>-<version>.keras. The signatures and their input checks are
described in ``mlc_keras.inference.export``.
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("workdir", "", "Training run folder to export from (default: the model shipped in the "
                    "package)."),
    ("output", "", "Export root: DIR/<model_name>/<version>/ is written."),
    ("model_name", "mlc", "Model name (TF Serving's model name)."),
    ("version", 0, "Version number (0: one above the newest present)."),
    ("checkpoint", "", "A specific checkpoint (default: the newest)."),
    ("mixed_precision", "float32", "Compute dtype of the exported graph: float32, or bfloat16 "
                                   "(faster on CPUs with AMX; outputs within 2/255 of float32)."),
    ("fine_detail", 0.15, "The composite signatures' fine-detail gate (synthesize --fine_detail; "
                          "0: off), fixed in the graph and recorded in its metadata."),
)


def main(argv):
    from absl import flags

    del argv
    from mlc_keras.training.runtime import configure_cpu

    print(configure_cpu(inference=True), flush=True)  # never trains
    from mlc_keras.inference.export import export_run

    f = flags.FLAGS
    result = export_run(f.workdir, f.output, f.model_name, f.version or None, f.checkpoint or None,
                        f.mixed_precision, f.fine_detail)
    print(f"SavedModel: {result['saved_model']}\nKeras file: {result['keras']}")
    if not result["warmup"]:
        print("note: tensorflow-serving-api is not installed; no warm-up requests written "
              "(pip install -e '.[serving]')")
    return 0


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
