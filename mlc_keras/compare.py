"""Side-by-side sample grid of several trained runs on the same held-out faces.

    python -m mlc_keras.compare --workdirs=runs/synth_mlc,runs/synth_pix2pix \
        --labels=MLC,pix2pix --num_sources=3 --output=docs/compare.png

For each held-out source face (of the first run's test split): one row with
the real images of that subject (source, then each expression where the
data set has it, blank where it does not), then one row per run (source,
then the run's final-level output for each expression). Every run must be
trained on the same data set, split and expression list. A side file
``OUTPUT.txt`` names the rows. For data sets whose licence asks for
attribution (London), the attribution is written next to the picture, and
the picture is refused inside a git checkout: derived images of real
people stay out of repositories.
"""

from mlc_keras.errors import UserError
import dataclasses
import os
import sys

import numpy as np



class CompareError(UserError):
    """Runs that cannot be compared, or a bad output path."""


def _inside_git_checkout(path):
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent


def compare_runs(workdirs, labels, output, num_sources=3, gap=2):
    """Writes the comparison grid; returns (grid uint8 array, row names)."""
    from mlc_keras.data import pipeline
    from mlc_keras.evaluate import EvaluationError, _load
    from mlc_keras.synthesize import make_grid, to_uint8
    from mlc_keras.training.callbacks import write_png_atomic
    from mlc_keras.training.loop import prepare_data

    if not workdirs:
        raise CompareError("--workdirs: give at least one training run folder")
    if len(labels) != len(workdirs):
        raise CompareError(f"--labels: {len(labels)} label(s) for {len(workdirs)} run(s)")
    if num_sources < 1:
        raise CompareError(f"--num_sources={num_sources}: must be positive")
    runs = []
    for workdir in workdirs:
        try:
            runs.append(_load(workdir))
        except EvaluationError as e:
            raise CompareError(str(e)) from None
    first = runs[0][1]
    keys = ("dataset", "data_dir", "synthetic_subjects", "expressions", "resolution", "seed",
            "test_fraction", "source_expression")
    for workdir, (_, config, _) in zip(workdirs[1:], runs[1:]):
        differ = [k for k in keys if getattr(config, k) != getattr(first, k)]
        if differ:
            raise CompareError(f"{workdir} was trained on other data than {workdirs[0]} "
                               f"({', '.join(differ)} differ)")
    if first.dataset == "london" and _inside_git_checkout(output):
        raise CompareError(f"--output={output}: inside a git checkout; pictures made from London "
                           "faces must not be committed: write them to a run folder")
    data = prepare_data(dataclasses.replace(first, data_cache=first.data_cache or os.path.join(
        first.workdir, "data")))
    pairs, images = data.test_pairs, data.test_images
    if pairs is None or not len(pairs.src):
        raise CompareError(f"{workdirs[0]}: the run has no held-out subjects to compare on")
    sources, subjects = pipeline.held_out_sources(pairs, images, num_sources)
    num_classes = len(first.expressions)
    size = first.resolution
    blank = np.full((size, size, 3), 255, np.uint8)
    rows, names = [], []
    for source, subject in zip(sources, subjects):
        real = [blank] * num_classes
        for i in range(len(pairs.src)):
            if pairs.subjects[int(pairs.tgt[i])] == subject:
                real[int(pairs.labels[int(pairs.tgt[i])])] = np.asarray(images[int(pairs.tgt[i])])
        rows.append([to_uint8(source)] + real)
        names.append(f"{subject}: real")
        batch = np.repeat(source[None], num_classes, axis=0)
        codes = np.eye(num_classes, dtype=np.float32)
        for label, (generator, _, _) in zip(labels, runs):
            fake = generator((batch, codes), training=False)[0]
            rows.append([to_uint8(source)] + list(to_uint8(fake)))
            names.append(f"{subject}: {label}")
    grid = make_grid(rows, gap=gap)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_png_atomic(output, grid)
    header = ["columns: source, " + ", ".join(first.expressions), "rows:"] + [
        f"  {i + 1}. {n}" for i, n in enumerate(names)]
    if data.attribution:
        header += ["", data.attribution]
    with open(output + ".txt", "w") as f:
        f.write("\n".join(header) + "\n")
    return grid, names


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()
    f = flags.FLAGS
    workdirs = [w for w in f.workdirs.split(",") if w]
    labels = [x for x in f.labels.split(",") if x] if f.labels else [
        os.path.basename(os.path.normpath(w)) for w in workdirs]
    from mlc_keras.errors import exit_on_user_error

    try:
        with exit_on_user_error():
            _, names = compare_runs(workdirs, labels, f.output, f.num_sources)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"wrote {f.output} ({len(names)} rows; names in {f.output}.txt)")
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdirs", "", "Comma-separated training run folders.")
    flags.DEFINE_string("labels", "", "Comma-separated row labels (default: the folder names).")
    flags.DEFINE_string("output", "compare.png", "PNG to write (a .txt with the row names beside).")
    flags.DEFINE_integer("num_sources", 3, "Held-out source faces (groups of rows).")


if __name__ == "__main__":
    from absl import app

    from mlc_keras import compare as _compare

    _compare._define_flags()
    app.run(_compare.main)
