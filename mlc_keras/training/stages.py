"""--stages: a staged recipe (curriculum) as one resumable command.

A stage continues the previous stage's generator with fresh D, critics,
expression classifier and optimizers, and its own learning-rate schedule:
what ``--init_generator`` does between separate runs, done by one command.
``--stages`` holds the stages separated by ``;``; each is a list of
``name=value`` overrides separated by spaces, applied on top of the previous
stage's options (the first stage's on top of the command's own flags)::

    --stages="expression_weight=1 train_steps=2000; mask_sparsity_weight=5 train_steps=300"

Run folder (``--workdir``)::

  stages.json     the plan (each stage's overrides and folder), and for each
                  stage the training seconds of every sitting (a killed sitting
                  counts up to its last checkpoint)
  stage1/ ...     each stage is an ordinary run folder (options.json,
                  checkpoints/, events/, samples/, ...)
  stageK/generator.keras   the stage's final generator, the next stage's start
  data/           the imported data set, shared by the stages (unless --data_cache)

Killed anywhere, the same command resumes: finished stages are skipped, the
stage in progress resumes from its newest checkpoint. Export, evaluate and
synthesize accept the staged folder and use the last stage.
"""

import dataclasses
import os
import time

from mlc_keras import config as config_lib
from mlc_keras.images import atomic_path, read_json, write_json_atomic

from mlc_keras.training.checkpoints import STAGES_FILE, step_of

GENERATOR_FILE = "generator.keras"
# Options a stage may not change: they fix the data, the split or the run folder.
_FIXED = frozenset({"workdir", "stages", "init_generator", "dataset", "data_dir", "data_cache",
                    "seed", "expressions", "test_subjects", "strategy", "cpu_devices"})


def parse_stages(text):
    """``[{name: value}, ...]`` from a --stages string; raises ConfigError
    naming --stages and the faulty item."""
    stages = []
    for number, chunk in enumerate((c.strip() for c in text.split(";")), start=1):
        if not chunk:
            continue
        overrides = {}
        for item in chunk.split():
            name, sep, value = item.partition("=")
            name = name.lstrip("-")
            if not sep or not name:
                raise config_lib.ConfigError(
                    f"--stages: stage {number}: {item!r} is not name=value")
            if name not in config_lib.Config.__dataclass_fields__:
                raise config_lib.ConfigError(f"--stages: stage {number}: unknown option {name!r}")
            if name in _FIXED:
                raise config_lib.ConfigError(
                    f"--stages: stage {number}: --{name} is fixed for the whole run")
            overrides[name] = value
        stages.append(overrides)
    return stages


def stage_configs(config):
    """The validated Config of every stage of ``config.stages``, in order."""
    plan = parse_stages(config.stages)
    if not plan:
        raise config_lib.ConfigError("--stages: no stage given")
    configs, previous = [], dataclasses.replace(config, stages="")
    for number, overrides in enumerate(plan, start=1):
        values = dataclasses.asdict(previous)
        try:
            values.update({k: config_lib._coerce(k, v) for k, v in overrides.items()})
        except ValueError:
            raise config_lib.ConfigError(
                f"--stages: stage {number}: a value of the wrong type in "
                f"{' '.join(f'{k}={v}' for k, v in overrides.items())}") from None
        values.update(workdir=os.path.join(config.workdir, f"stage{number}"),
                      init_generator=config.init_generator if number == 1 else "",
                      data_cache=config.data_cache or os.path.join(config.workdir, "data"))
        try:
            previous = config_lib.validate(config_lib.Config(**values))
        except config_lib.ConfigError as e:
            raise config_lib.ConfigError(f"--stages: stage {number}: {e}") from None
        configs.append(previous)
    return configs


def _killed_sitting(stage_dir, running):
    """The sitting a kill ended: from its start to its last checkpoint (the
    steps after that are trained again), or nothing when it saved none."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(stage_dir, "checkpoints"))
    saved = os.path.getmtime(latest + ".index") if latest else 0.0
    seconds = max(0.0, saved - float(running["since"]))
    steps = step_of(latest) if seconds else 0
    return {"steps_to": steps, "seconds": round(seconds, 1), "killed": True}


def _save_generator(stage_dir):
    """Writes the stage's final generator to ``stage_dir/generator.keras``
    (atomically; once)."""
    from mlc_keras.training.checkpoints import load_run_generator

    path = os.path.join(stage_dir, GENERATOR_FILE)
    if not os.path.isfile(path):
        generator, _ = load_run_generator(stage_dir)
        with atomic_path(path, suffix=".keras") as tmp:
            generator.save(tmp)
    return path


def train_stages(config, train_one):
    """Runs (or resumes) every stage with ``train_one(stage_config)`` (the
    one-run ``loop.train``); returns the last stage's summary plus
    ``stages`` (one entry per stage) and ``seconds`` (training time of all
    stages, over every sitting)."""
    from mlc_keras.training import multiworker

    if multiworker.read_tf_config() is not None:
        raise config_lib.ConfigError("--stages runs on one machine; TF_CONFIG names a cluster "
                                     "(train each stage as its own run with --init_generator)")
    configs = stage_configs(config)
    os.makedirs(config.workdir, exist_ok=True)
    record_path = os.path.join(config.workdir, STAGES_FILE)
    plan = [{"folder": os.path.basename(c.workdir), "overrides": o, "train_steps": c.train_steps}
            for c, o in zip(configs, parse_stages(config.stages))]
    record = read_json(record_path) if os.path.isfile(record_path) else {}
    old = record.get("stages", [])  # a changed plan: each stage's options.json check decides
    for i, entry in enumerate(plan):
        entry["sittings"] = old[i].get("sittings", []) if i < len(old) else []
        if i < len(old) and "running" in old[i]:  # a sitting that was killed
            killed = _killed_sitting(configs[i].workdir, old[i]["running"])
            if killed["seconds"]:
                entry["sittings"].append(killed)
    record = {"stages": plan}
    write_json_atomic(record_path, record, indent=1)

    summary, start_from = None, config.init_generator
    for number, (stage, entry) in enumerate(zip(configs, plan), start=1):
        if number > 1:
            stage = dataclasses.replace(stage, init_generator=start_from)
        print(f"Stage {number} of {len(configs)}: {stage.workdir} ("
              + (" ".join(f"{k}={v}" for k, v in entry["overrides"].items()) or "no overrides")
              + ")", flush=True)
        entry["running"] = {"since": time.time()}
        write_json_atomic(record_path, record, indent=1)
        summary = None  # the previous stage's networks can go
        summary = train_one(stage)
        del entry["running"]
        seconds = float(summary.get("seconds", 0.0))
        if seconds:
            entry["sittings"].append({"steps_to": int(summary["step"]), "seconds": round(seconds, 1)})
        write_json_atomic(record_path, record, indent=1)
        start_from = _save_generator(stage.workdir)
    total = sum(s["seconds"] for e in plan for s in e["sittings"])
    print(f"All {len(configs)} stages trained ({total:.0f}s of training over every sitting); "
          f"the final generator is {start_from}.", flush=True)
    return dict(summary, stages=plan, seconds=total, final_generator=start_from)
