"""python -m mlc_keras.synthesize --input=photo.jpg --expressions=happy --paste_back --output=out/

Synthesizes expressions on your own photos: --expressions=happy,sad|all|happy:0.6,surprised:0.4
(a blend), --intensity=0.5 (or 0,0.5,1: one column each), --frames=N (an animated GIF).
--model: a .keras file, an export folder, a training workdir or a SavedModel (version)
folder. --input: a photo or a folder of photos. Output layout and face framing:
``mlc_keras.inference.synthesize``. Exit code 0 when at least one photo was written, else 2
(a single unusable photo: one ``error: ...`` line)."""

from mlc_keras import config as config_lib
from mlc_keras import errors
from mlc_keras.inference.synthesize import FACE_MODES

FLAGS_SPEC = (
    ("model", "", "A .keras file, an export folder, a SavedModel (version) folder or a training "
                  "workdir (default: the London neutral<->happy model shipped in the package)."),
    ("input", "", "A photo, or a folder of photos."),
    ("expressions", "all", "Comma-separated expression names, or 'all'; a blend with relative "
                           "weights: happy:0.6,surprised:0.4 (several columns: separate them "
                           "with ';')."),
    ("intensity", "1", "How strong the expression is: 0 leaves the face unchanged, 1 is the full "
                       "expression, up to 2 exaggerates it. Several values, e.g. "
                       "0,0.25,0.5,0.75,1, give one column (or pasted photo) per value."),
    ("frames", 0, "Write an animated GIF per expression (and MP4 when imageio-ffmpeg is installed) "
                  "that morphs from the photo to the expression over this many frames (2-120) "
                  "instead of still images."),
    ("output", "", "Single photo: the grid PNG (or, with --paste_back, a folder). Folder input: a "
                   "folder (default <input>_synth)."),
    ("paste_back", False, "Write one photo per expression with the new faces blended into the "
                          "original, instead of a grid."),
    ("faces", "largest", "Use the largest face or all faces.", FACE_MODES),
    ("batch_size", 8, "Faces per model call."),
    ("strict", False, "A synthesized face whose dlib distance to its source exceeds the same-person "
                      "threshold (0.6) is an error: nothing is written for that photo (default: a "
                      "warning naming the file)."),
    ("fine_detail", 0.15, "Full-resolution compositing: the photo's own fine detail (what the "
                          "model's resolution cannot hold) is kept under the model's change "
                          "where its colour stays within about this much of the photo's "
                          "(exp(-difference / this), colours in [-1, 1]); 0: off. A SavedModel "
                          "keeps the setting it was exported with."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu(inference=True)  # before TensorFlow is imported (never trains)
    from mlc_keras.inference.synthesize import run_synthesis

    f = flags.FLAGS
    return run_synthesis(f.model, f.input, f.expressions, output=f.output or None,
                         paste_back=f.paste_back, faces=f.faces, batch_size=f.batch_size,
                         strict=f.strict, intensity=f.intensity, frames=f.frames,
                         detail=f.fine_detail)


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
