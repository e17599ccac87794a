"""Does bfloat16 training still learn? float32 against bfloat16 on the demo preset, seeds as the noise.

    python scripts/precision_learning.py --steps=1000 --seeds=0,1 --output=docs/precision

Trains ``configs/demo.flags`` (the embedded synthetic set, 64 px) once per
precision and seed, in ROOT/PRECISION_sSEED (``python -m mlc_keras.train``
in its own process; a finished run is skipped and a killed one resumes).
Every run draws the same synthetic faces (``--synthetic_seed=0``) and holds
out the same subjects (the seed-0 split, pinned with ``--test_subjects``),
so the seeds vary only weights and data order.

Then, on every held-out pair (source, target expression, real target):
- the L1 at every decoder level (the real target downsampled to the level as
  in training), per run, and per precision as mean and seed spread. bfloat16
  learns like float32 when the gap between the precisions' means is within
  the spread between seeds of one precision;
- one sample grid of all runs on the same held-out faces
  (``mlc_keras.compare``): OUTPUT/grid.png, its rows named in grid.png.txt;
- the serving check: the float32 seed-0 generator exported as a bfloat16
  SavedModel variant (``export.with_precision``), its ``serving_default``
  outputs against the float32 generator's, in 1/255 of the pixel range
  (target: within 2/255), on 8 uniform-noise images and on up to 16
  held-out images of the run's data.

Runs trained elsewhere can be measured too: link them in as
ROOT/float32_s0 and ROOT/bfloat16_s0 and pass ``--eval_only`` with their
``--steps`` (every run must hold out the same subjects).

Writes OUTPUT/precision.json and OUTPUT/precision.md (the tables). The
synthetic faces are drawn by the project, so the grid may be committed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mlc_keras.images import to_float, write_json_atomic, write_text_atomic  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds (>= 2 for a spread)")
    parser.add_argument("--flagfile", default="configs/demo.flags")
    parser.add_argument("--root", default="runs/precision", help="where the runs go")
    parser.add_argument("--output", default="docs/precision", help="folder for the tables and the grid")
    parser.add_argument("--extra", default="", help="more training flags, space-separated (tests: tiny shapes)")
    parser.add_argument("--num_sources", type=int, default=3, help="held-out faces in the grid")
    parser.add_argument("--eval_only", action="store_true", help="train nothing; measure the runs there are")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds!r}: expected comma-separated integers")
    if not args.seeds:
        parser.error("--seeds: give at least one seed")
    if args.steps < 1:
        parser.error(f"--steps={args.steps}: must be >= 1")
    return args


def base_flags(args):
    return [f"--flagfile={args.flagfile}"] + args.extra.split()


def workdir(args, precision, seed):
    return os.path.join(args.root, f"{precision}_s{seed}")


def pinned_split(args):
    """The seed-0 held-out subjects of the preset, computed once into ROOT/split.json."""
    path = os.path.join(args.root, "split.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)["test"]
    from absl import flags

    from mlc_keras import config as config_lib
    from mlc_keras.data.prepare import select_pairs

    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    rest = fv.read_flags_from_files(base_flags(args), force_gnu=False)
    fv(["precision_learning"] + rest + ["--seed=0", f"--workdir={args.root}/unused"])
    selected = select_pairs(config_lib.config_from_flags(fv))
    test = [str(s) for s in selected.test_subjects]
    os.makedirs(args.root, exist_ok=True)
    write_json_atomic(path, {"test": test})
    return test


def finished_step(folder):
    import tensorflow as tf

    from mlc_keras.training.checkpoints import step_of

    return step_of(tf.train.latest_checkpoint(os.path.join(folder, "checkpoints")))


def train(args, precision, seed, test_subjects):
    """Trains (or resumes) one run; returns its wall time in seconds, or None if it was done."""
    folder = workdir(args, precision, seed)
    if finished_step(folder) >= args.steps:
        return None
    command = [sys.executable, "-m", "mlc_keras.train"] + base_flags(args) + [
        f"--mixed_precision={precision}", f"--seed={seed}", f"--train_steps={args.steps}",
        f"--workdir={folder}", f"--test_subjects={','.join(test_subjects)}", "--synthetic_seed=0",
        f"--checkpoint_every={min(250, args.steps)}", f"--sample_every={args.steps}"]
    print(f"{precision} seed {seed}: training {args.steps} steps in {folder}", flush=True)
    start = time.time()
    subprocess.run(command, cwd=ROOT, check=True)
    return round(time.time() - start, 1)


def level_l1(generator, data, batch_size=32):
    """Mean |G(x, c)_level - downsample(target)| over the held-out pairs, per level (finest first)."""
    import numpy as np
    import tensorflow as tf

    from mlc_keras.models.layers import downsample_images

    pairs, images = data.test_pairs, data.test_images
    sums, n = None, 0
    for i in range(0, len(pairs), batch_size):
        src = pairs.src[i:i + batch_size]
        tgt = pairs.tgt[i:i + batch_size]
        x, y = tf.constant(to_float(images[src])), tf.constant(to_float(images[tgt]))
        c = tf.one_hot(pairs.labels[tgt], generator.num_classes)
        outs = generator((x, c), training=False)
        errs = [float(tf.reduce_sum(tf.reduce_mean(
            tf.abs(tf.cast(o, tf.float32) - downsample_images(y, int(o.shape[1]))), [1, 2, 3])))
            for o in outs]
        sums = errs if sums is None else [a + b for a, b in zip(sums, errs)]
        n += len(src)
    return {int(o.shape[1]): s / n for o, s in zip(outs, sums)}


def export_check(generator, config, images=None):
    """Max / mean |bfloat16 SavedModel - float32 generator| in 1/255, on 8
    uniform-noise images, and on ``images`` (float32 [K, R, R, 3] in [-1, 1],
    held-out faces) when given: a list with one entry per input kind."""
    import numpy as np
    import tensorflow as tf

    from mlc_keras.inference import export, loading

    low = export.with_precision(generator, "bfloat16")
    r = generator.resolution
    rng = np.random.default_rng(0)
    kinds = [("8 uniform-noise images", rng.uniform(-1, 1, (8, r, r, 3)).astype(np.float32))]
    if images is not None and len(images):
        kinds.append((f"{len(images)} held-out images", np.asarray(images, np.float32)))
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        result = export.export_generator(low, config, tmp, "mlc", 1)
        loaded = tf.saved_model.load(result["saved_model"])
        for label, x in kinds:
            ids = (np.arange(len(x)) % generator.num_classes).astype(np.int32)
            served = loaded.signatures["serving_default"](
                images=tf.constant(x), expressions=tf.constant(ids))["images"].numpy()
            diff = np.abs(served - loading.generate(generator, x, ids)) * 127.5  # 1/255 units
            checks.append({"max_255": round(float(diff.max()), 3),
                           "mean_255": round(float(diff.mean()), 4),
                           "p999_255": round(float(np.percentile(diff, 99.9)), 3),
                           "share_over_2_255": round(float((diff > 2.0).mean()), 6),
                           "inputs": label})
    return checks


def spread(values):
    import numpy as np

    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "range": float(v.max() - v.min()), "n": int(v.size)}


def report(args, results, check, times):
    levels = sorted({lvl for r in results.values() for lvl in r}, reverse=True)
    lines = [f"Held-out L1 (mean |generated - real target| in [-1, 1] units) after {args.steps} steps "
             f"of `{args.flagfile}`, per run:", "",
             "| run | " + " | ".join(f"L1 at {lvl} px" for lvl in levels) + " | train s |",
             "|---|" + "---|" * (len(levels) + 1)]
    for name, r in results.items():
        t = times.get(name)
        lines.append(f"| {name} | " + " | ".join(f"{r[lvl]:.4f}" for lvl in levels)
                     + f" | {t if t is not None else '-'} |")
    summary = {}
    lines += ["", "| level | float32 mean (seed range) | bfloat16 mean (seed range) | gap of means | "
              "within the seed spread? |", "|---|---|---|---|---|"]
    for lvl in levels:
        per = {p: spread([r[lvl] for n, r in results.items() if n.startswith(p)]) for p in PRECISIONS}
        if any(per[p]["n"] == 0 for p in PRECISIONS):
            continue
        gap = abs(per["float32"]["mean"] - per["bfloat16"]["mean"])
        noise = max(per["float32"]["range"], per["bfloat16"]["range"])
        within = gap <= noise if min(per[p]["n"] for p in PRECISIONS) > 1 else None
        summary[lvl] = {**{p: per[p] for p in PRECISIONS}, "gap": gap, "seed_range": noise,
                        "within": within}
        lines.append(f"| {lvl} px | {per['float32']['mean']:.4f} ({per['float32']['range']:.4f}) | "
                     f"{per['bfloat16']['mean']:.4f} ({per['bfloat16']['range']:.4f}) | {gap:.4f} | "
                     f"{'n/a (one seed)' if within is None else 'yes' if within else 'NO'} |")
    for c in check or []:
        lines += ["", f"bfloat16 SavedModel variant of float32_s{args.seeds[0]} against the float32 "
                  f"generator ({c['inputs']}): max {c['max_255']}/255, 99.9th percentile "
                  f"{c['p999_255']}/255, mean {c['mean_255']}/255, share of values over 2/255: "
                  f"{c['share_over_2_255']} (target: within 2/255: "
                  f"{'met' if c['max_255'] <= 2 else 'NOT met'})."]
    return "\n".join(lines) + "\n", summary


def main(argv=None):
    args = parse_args(argv)
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()
    args.root, args.output = os.path.abspath(args.root), os.path.abspath(args.output)
    os.chdir(ROOT)  # relative flagfiles are read from the repository root, as the commands do
    test_subjects = pinned_split(args)
    times = {}
    if not args.eval_only:
        for seed in args.seeds:
            for precision in PRECISIONS:
                t = train(args, precision, seed, test_subjects)
                if t is not None:
                    times[f"{precision}_s{seed}"] = t

    from mlc_keras.data.prepare import prepare_data
    from mlc_keras.inference import loading
    from mlc_keras.inference.compare import compare_runs

    runs = [(p, s) for s in args.seeds for p in PRECISIONS
            if finished_step(workdir(args, p, s)) >= args.steps]
    if not runs:
        print("no finished run to measure", file=sys.stderr)
        return 1
    data = None
    results = {}
    check = None
    for precision, seed in sorted(runs):
        generator, config, _ = loading.load_run(workdir(args, precision, seed))
        if data is None:  # every run holds out the same subjects
            data = prepare_data(config)  # the run's own data cache, rendered when it trained
        results[f"{precision}_s{seed}"] = level_l1(generator, data)
        if precision == "float32" and seed == args.seeds[0]:
            held_out = to_float(data.test_images[:16]) if len(data.test_images) else None
            check = export_check(generator, config, held_out)
    os.makedirs(args.output, exist_ok=True)
    names = [f"{p}_s{s}" for p, s in sorted(runs)]
    compare_runs([os.path.join(args.root, n) for n in names], names,
                 os.path.join(args.output, "grid.png"), args.num_sources)
    text, summary = report(args, results, check, times)
    record = {"steps": args.steps, "flagfile": args.flagfile, "extra": args.extra, "seeds": args.seeds,
              "test_subjects": test_subjects, "l1_per_level": results, "summary": summary,
              "export_check": check, "train_seconds": times}
    write_json_atomic(os.path.join(args.output, "precision.json"), record, indent=1)
    write_text_atomic(os.path.join(args.output, "precision.md"), text)
    print(text)
    print(json.dumps({"l1_gap_within_seed_spread": {str(k): v["within"] for k, v in summary.items()},
                      "export_max_255": {c["inputs"]: c["max_255"] for c in check or []}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
