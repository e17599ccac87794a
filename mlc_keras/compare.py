"""python -m mlc_keras.compare --workdirs=runs/a,runs/b --labels=A,B --output=/tmp/compare.png

Side-by-side sample grid of several trained runs on the same held-out faces:

    python -m mlc_keras.compare --workdirs=runs/synth_mlc,runs/synth_pix2pix \
        --labels=MLC,pix2pix --num_sources=3 --output=docs/compare.png

One row of real images per held-out subject, then one row per run; the rows
are named in ``OUTPUT.txt``. London pictures are refused inside a git
checkout. The layout is described in ``mlc_keras.inference.compare``.
"""

import os

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("workdirs", "", "Comma-separated training run folders."),
    ("labels", "", "Comma-separated row labels (default: the folder names)."),
    ("output", "compare.png", "PNG to write (a .txt with the row names beside)."),
    ("num_sources", 3, "Held-out source faces (groups of rows)."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu(inference=True)  # never trains
    from mlc_keras.inference.compare import compare_runs

    f = flags.FLAGS
    workdirs = [w for w in f.workdirs.split(",") if w]
    labels = [x for x in f.labels.split(",") if x] if f.labels else [
        os.path.basename(os.path.normpath(w)) for w in workdirs]
    _, names = compare_runs(workdirs, labels, f.output, f.num_sources)
    print(f"wrote {f.output} ({len(names)} rows; names in {f.output}.txt)")
    return 0


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
