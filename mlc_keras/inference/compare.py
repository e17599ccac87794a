"""Side-by-side sample grid of several trained runs on the same held-out faces.

May import inference/loading and inference/synthesize, data/, images,
errors; nothing of training/ (runs load through ``loading``).

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

import dataclasses
import os

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.images import to_uint8, write_png_atomic, write_text_atomic
from mlc_keras.inference import loading
from mlc_keras.inference.synthesize import make_grid


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


def data_seeds(config):
    """What of a run's seed decides its data: the synthetic faces' render seed
    and the held-out split (``--test_subjects`` pins it; else the seeded hash
    of ``--seed`` and ``--test_fraction``). Runs that differ only in ``--seed``
    but pin both are compared on the same faces."""
    from mlc_keras.data.sources.synthetic import render_seed

    seeds = {}
    if config.dataset == "synthetic":
        seeds["synthetic_seed"] = render_seed(config)
    if config.test_subjects:
        seeds["test_subjects"] = tuple(sorted(config.test_subjects))
    else:
        seeds["seed"] = (config.seed, config.test_fraction)
    return seeds


def compare_runs(workdirs, labels, output, num_sources=3, gap=2):
    """Writes the comparison grid; returns (grid uint8 array, row names)."""
    from mlc_keras.data import pipeline
    from mlc_keras.data.prepare import prepare_data

    if not workdirs:
        raise CompareError("--workdirs: give at least one training run folder")
    if len(labels) != len(workdirs):
        raise CompareError(f"--labels: {len(labels)} label(s) for {len(workdirs)} run(s)")
    if num_sources < 1:
        raise CompareError(f"--num_sources={num_sources}: must be positive")
    runs = []
    for workdir in workdirs:
        try:
            runs.append(loading.load_run(workdir))
        except UserError as e:
            raise CompareError(str(e)) from None
    first = runs[0][1]
    keys = ("dataset", "data_dir", "synthetic_subjects", "expressions", "resolution",
            "source_expression")
    theirs = data_seeds(first)
    for workdir, (_, config, _) in zip(workdirs[1:], runs[1:]):
        differ = [k for k in keys if getattr(config, k) != getattr(first, k)]
        mine = data_seeds(config)
        differ += sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
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
        for label, (generator, _, _) in zip(labels, runs):
            fake = loading.generate(generator, batch, np.arange(num_classes), num_classes)
            rows.append([to_uint8(source)] + list(to_uint8(fake)))
            names.append(f"{subject}: {label}")
    grid = make_grid(rows, gap=gap)
    write_png_atomic(output, grid)
    header = ["columns: source, " + ", ".join(first.expressions), "rows:"] + [
        f"  {i + 1}. {n}" for i, n in enumerate(names)]
    if data.attribution:
        header += ["", data.attribution]
    write_text_atomic(output + ".txt", "\n".join(header) + "\n")
    return grid, names
