"""Copies a training run's generator into the package as a shipped model.

    python scripts/ship_model.py --workdir=runs/london128 [--name=london_neutral_happy_128] \
        [--command="python -m mlc_keras.train --flagfile=configs/london128.flags"]

Writes mlc_keras/weights/<name>.keras and <name>.json (sha256, the run's
options with machine-specific paths removed, provenance: step, command, the
training wall time from the run's TensorBoard events, or for a ``--stages``
folder the training seconds of every stage from its stages.json, the CPU, the
run's held-out subjects from split.json). A staged folder ships its last stage.
"""

import argparse
import dataclasses
import glob
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wall_seconds(workdir):
    """Seconds between the first and the last event of the run (all sittings)."""
    import tensorflow as tf

    times = []
    for path in glob.glob(os.path.join(workdir, "events", "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            times.append(event.wall_time)
    return round(max(times) - min(times), 1) if times else None


def staged_provenance(workdir):
    """(total training seconds, per-stage summary) of a ``--stages`` run
    folder from its stages.json, or (None, None) for a plain run folder."""
    from mlc_keras.images import read_json
    from mlc_keras.training import checkpoints

    if checkpoints.final_stage(workdir) == workdir:
        return None, None
    stages = read_json(os.path.join(workdir, checkpoints.STAGES_FILE))["stages"]
    summary = [{"folder": s["folder"], "overrides": s["overrides"],
                "train_steps": s["train_steps"], "sittings": len(s["sittings"]),
                "seconds": round(sum(x["seconds"] for x in s["sittings"]), 1)} for s in stages]
    return round(sum(s["seconds"] for s in summary), 1), summary


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--name", default="london_neutral_happy_128")
    parser.add_argument("--command", default="python -m mlc_keras.train "
                                             "--flagfile=configs/london128.flags")
    parser.add_argument("--note", default="")
    parser.add_argument("--override", action="append", default=[],
                        help="KEY=VALUE: record this option value instead of the run's (e.g. "
                             "when the run read a manifest equivalent to a preset's data options)")
    args = parser.parse_args()

    from mlc_keras import config as config_lib
    from mlc_keras import weights
    from mlc_keras.inference.loading import load_run
    from mlc_keras.training import checkpoints

    generator, config, checkpoint = load_run(args.workdir)
    options = dataclasses.asdict(config)
    options.update(workdir="", data_cache="")
    for item in args.override:
        key, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            value = value.lower() == "true"
        options[key] = value.split(",") if key in ("test_subjects", "expressions") else value
    if options["dataset"] == "london":
        options["data_dir"] = "../shared/data/london"
    options = {**dataclasses.asdict(config_lib.from_dict(options)), "workdir": "", "data_cache": ""}
    step = int(checkpoint.rsplit("-", 1)[-1])
    staged_seconds, stages = staged_provenance(args.workdir)
    final = checkpoints.final_stage(args.workdir)
    provenance = {"checkpoint_step": step, "command": args.command,
                  "train_wall_seconds": staged_seconds or wall_seconds(final),
                  "cpu": cpu_name(), "cores": os.cpu_count(), "note": args.note}
    if stages:  # training seconds of every stage and sitting, from stages.json
        provenance["stages"] = stages
    split = os.path.join(final, "split.json")
    if os.path.isfile(split):  # the subjects the generator never saw
        from mlc_keras.images import read_json

        provenance["held_out_subjects"] = read_json(split).get("test", [])
    path = weights.write(generator, options, args.name, provenance)
    print(f"wrote {path} ({os.path.getsize(path) / 2 ** 20:.1f} MiB), step {step}")


if __name__ == "__main__":
    main()
