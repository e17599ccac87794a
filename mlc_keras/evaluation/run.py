"""Evaluates a trained run on its held-out subjects (imports data, inference.loading, evaluation).

``evaluate_run(workdir, output=None, ...) -> dict``, behind ``python -m mlc_keras.evaluate``.

The run's options and newest checkpoint are loaded and the data is prepared
again with the run's options; the split must equal the run's split.json.
Reported (results.json, results.md, split.json in DIR, default RUN/eval;
the scalars also go to TensorBoard under ``eval/...`` in RUN/events at the
checkpoint's step):

  classification  PAPER PROTOCOL: an expression classifier
                  (``evaluation.classifier``) trained on the REAL images of
                  the generator's TRAIN subjects (cached under the run's data
                  cache) classifies (a) the real held-out target images and
                  (b) faces generated from the held-out subjects' source
                  images for every target expression the test pairs contain;
                  error per expression and overall. A generated error below
                  the real error is flagged ``realism.SUSPECT_NOTE``.
  expression_judge  the honest version: 2-fold cross-fitting over the
                  HELD-OUT subjects (a fresh classifier trained on the real
                  images of one half judges the other half's real targets
                  and generated faces, then the halves swap; predictions
                  pooled), so it never sees a generator-training subject
                  (``realism.disjoint_subjects``); real and generated error,
                  target-expression rate generated / real per class, suspect note.
  two_sample      ``realism.two_sample_test``: a fresh classifier tells real
                  held-out target photos from generated faces (expression-
                  changing rows: target expression != the source's), trained
                  on half of the held-out subjects, tested on the other half
                  (0.5 = indistinguishable; 95 % Wilson interval).
  sharpness       ``realism.sharpness_ratio``: variance of the Laplacian,
                  generated / source, whole image at the model resolution
                  (the same expression-changing rows).
  identity        dlib face descriptors (metrics.FaceEmbedder, whole-crop
                  path for every image): generated vs source, beside the
                  real same-person pair and different people; plus
                  "verification" (``realism.identity_summary``): mean distance
                  and verification rate at 0.6 for generated (expression-
                  changing rows) vs source beside real source vs real target.
  realism         KID (unbiased, mean and std error over subsets) between the
                  generated and the real target images on the same face
                  descriptors (NOT Inception features; see FID_NOTE).
  fidelity        SSIM, PSNR (dB, capped at 100), L1 against the real target
                  for every test pair with a different target image.

Without dlib, identity and realism are reported as unavailable with the pip
command to install it.
"""

import logging
import os

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.images import read_json, to_float, to_uint8

log = logging.getLogger("mlc_keras")

PSNR_CAP_DB = 100.0


class EvaluationError(UserError, ValueError):
    """The workdir cannot be evaluated; the message says why."""


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


PAPER_PROTOCOL = "paper protocol: classifier trained on the generator's training subjects"
JUDGE_PROTOCOL = ("disjoint-subject judge: 2-fold cross-fitting over the held-out subjects "
                  "(trained on one half's real images, judging the other half's real and "
                  "generated images, then swapped; pooled)")


def cross_fit_judge(images, labels, groups, judged, num_classes, generator_subjects=None,
                    arch="alexnet", epochs=30, seed=0, flip=True, width=None, learning_rate=None):
    """Expression judge by 2-fold cross-fitting over subjects.

    The subjects of ``groups`` are halved (``realism.subject_split``); a fresh
    classifier trained on one half's real ``images`` / ``labels`` predicts
    every ``judged`` image of the other half's subjects, then the halves swap.
    Each half is checked against ``generator_subjects`` (when known) with
    ``realism.disjoint_subjects``, which raises on overlap.

    Args:
      images: uint8 [N, R, R, 3] real labelled images; labels, groups: [N].
      judged: {name: (images [M, R, R, 3], subject ids [M])}, every subject
        among ``groups``' subjects.

    Returns:
      (predictions {name: int32 [M]}, folds: [{"train_subjects",
      "judged_subjects", "train_images", "train_accuracy"}]).
    """
    from mlc_keras.evaluation import classifier as clf_lib
    from mlc_keras.evaluation import realism

    groups = realism._ids(groups)
    halves = realism.subject_split(groups, seed)
    labels = np.asarray(labels, np.int32).reshape(-1)
    predictions = {name: np.full([len(g)], -1, np.int32) for name, (_, g) in judged.items()}
    folds = []
    if arch == "features":  # face features computed once, per image
        from mlc_keras.evaluation.feature_judge import FeatureJudge, face_features

        train_features = face_features(images)
        judged_features = {name: face_features(x) for name, (x, _) in judged.items()}
    for train_half, judged_half in (halves, halves[::-1]):
        if generator_subjects is not None:
            realism.disjoint_subjects(train_half, generator_subjects)
        train_set, judged_set = set(train_half), set(judged_half)
        chosen = np.asarray([g in train_set for g in groups])
        if arch == "features":
            model = FeatureJudge(num_classes, seed=seed).fit(train_features[chosen], labels[chosen])
        else:
            model = clf_lib.train_classifier(np.asarray(images)[chosen], labels[chosen],
                                             num_classes, arch, epochs, seed, flip, width,
                                             learning_rate=learning_rate)
        for name, (x, g) in judged.items():
            rows = np.flatnonzero([v in judged_set for v in realism._ids(g)])
            if not rows.size:
                continue
            if arch == "features":
                predictions[name][rows] = model.predict_features(judged_features[name][rows])
            else:
                predictions[name][rows] = clf_lib.predict_labels(model, np.asarray(x)[rows])
        folds.append({"train_subjects": list(train_half), "judged_subjects": list(judged_half),
                      "train_images": int(chosen.sum()), "train_accuracy": model.train_accuracy})
    return predictions, folds


def _unavailable(error):
    return {"available": False, "reason": str(error)}


# ----------------------------------------------------------------- data


def _load(workdir):
    """(generator, config, checkpoint path) of the run in ``workdir``, newest checkpoint."""
    from mlc_keras.inference.loading import load_run

    try:
        return load_run(workdir)
    except UserError as e:
        raise EvaluationError(str(e)) from None


def _prepare(config, workdir):
    from mlc_keras.data.prepare import prepare_data
    from mlc_keras.data.sources import manifest_for

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


def _face_sections(gen_grid, grid_src, changed_rows, pair_rows, real_images, test_pairs,
                   kid_subsets, kid_subset_size, seed):
    """Identity and realism on dlib descriptors, or 'unavailable' sections."""
    from mlc_keras.errors import MissingDependencyError
    from mlc_keras.evaluation import metrics, realism

    try:
        embedder = metrics.FaceEmbedder(detect=False)
        real_emb = embedder.embed(real_images)  # every held-out real image, once
        gen_emb = embedder.embed(to_uint8(gen_grid))
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
    changed = test_pairs.labels[src] != test_pairs.labels[tgt]
    identity["verification"] = realism.identity_summary(
        metrics.identity_distances(gen_emb[np.asarray(changed_rows, np.int64)],
                                   real_emb[np.asarray(grid_src)[changed_rows]]),
        metrics.identity_distances(real_emb[src[changed]], real_emb[tgt[changed]]))
    identity["verification"]["pairs"] = ("generated (expression-changing rows) vs source; "
                                         "real: source vs real target of another expression")
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
    from mlc_keras.evaluation import metrics

    if generated.shape[0] == 0:
        return {"available": False, "reason": "no test pair with a real target image"}
    return {
        "available": True,
        "ssim": metrics.summarize(metrics.ssim(generated, real)),
        "psnr": metrics.summarize(metrics.psnr(generated, real, max_db=PSNR_CAP_DB)),
        "l1": metrics.summarize(metrics.l1(generated, real)),
        "psnr_cap_db": PSNR_CAP_DB,
    }


# ----------------------------------------------------------------- main entry


def evaluate_run(workdir, output=None, classifier="alexnet", classifier_epochs=30,
                 classifier_width=None, classifier_cache=None, kid_subsets=100,
                 kid_subset_size=1000, seed=0, write_tensorboard=True, classifier_lr=None,
                 two_sample_arch="small", two_sample_epochs=15):
    """Evaluates the run in ``workdir`` on its held-out subjects.

    Args:
      workdir: training run folder (options.json, split.json, checkpoints/).
      output: report folder (default ``workdir/eval``).
      classifier: "alexnet" or "small"; classifier_epochs / classifier_width /
        classifier_lr: its training (see mlc_keras.evaluation.classifier),
        for the paper-protocol classifier and the disjoint-subject judge alike.
      classifier_cache: where the classifier is cached (default the run's
        data cache: ``--data_cache`` or ``workdir/data``).
      kid_subsets, kid_subset_size: KID estimator settings.
      seed: classifier training, halves of the subjects and KID subset draws.
      two_sample_arch, two_sample_epochs: the real-vs-generated classifier.

    Returns:
      the results dict also written to ``results.json`` (floats; nan/inf as
      None), with "paths" naming the files written.
    """
    from mlc_keras.data.manifest import cache_dir_for
    from mlc_keras.evaluation import classifier as clf_lib
    from mlc_keras.evaluation import realism, report
    from mlc_keras.inference.loading import generate

    from mlc_keras.training.checkpoints import final_stage, step_of

    workdir = final_stage(workdir)  # a staged run is evaluated on its last stage
    generator, config, checkpoint = _load(workdir)
    step = step_of(checkpoint)
    data, manifest = _prepare(config, workdir)
    expressions = tuple(config.expressions)
    num_classes = len(expressions)
    output = output or os.path.join(workdir, "eval")

    # Classifier: real images of the TRAIN subjects only.
    cache = classifier_cache or cache_dir_for(config)
    model, clf_info = clf_lib.load_or_train_classifier(
        cache, clf_lib.dataset_key(config, manifest), data.train_subjects, data.train_images,
        data.train_pairs.labels, num_classes, arch=classifier, epochs=classifier_epochs,
        seed=seed, flip=config.flip, width=classifier_width, learning_rate=classifier_lr)

    test = data.test_pairs
    real = data.test_images
    real_float = to_float(real)

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
    generated = generate(generator, real_float[grid_src], grid_lab, batch_size=64)
    gen_pred = clf_lib.predict_labels(model, generated)
    gen_cls = classification_errors(gen_pred, grid_lab, expressions)

    # The grid row of each test pair (its source, its target's expression).
    row_of = {(int(s), int(k)): i for i, (s, k) in enumerate(zip(grid_src, grid_lab))}
    pair_rows = [row_of[(int(s), int(test.labels[t]))] for s, t in zip(test.src, test.tgt)]

    # Rows that change the expression (target expression != the source's own).
    changed_rows = np.flatnonzero(grid_lab != test.labels[grid_src])
    identity, kid = _face_sections(generated, grid_src, changed_rows, pair_rows, real, test,
                                   kid_subsets, kid_subset_size, seed)
    gen_u8 = to_uint8(generated)
    real_targets = np.array(sorted({int(t) for s, t in zip(test.src, test.tgt)
                                    if test.labels[s] != test.labels[t]}), np.int64)
    subjects = np.asarray(test.subjects)
    try:
        two_sample = realism.two_sample_test(
            real[real_targets], gen_u8[changed_rows], subjects[real_targets],
            subjects[grid_src[changed_rows]], arch=two_sample_arch, epochs=two_sample_epochs,
            seed=seed)
        two_sample["available"] = True
    except realism.RealismError as e:
        two_sample = _unavailable(e)
    two_sample["rows"] = "real held-out target photos vs generated faces of another expression"
    sharp = realism.sharpness_ratio(gen_u8[changed_rows], real[grid_src[changed_rows]])
    sharp["where"] = f"whole image at {config.resolution} px, generated vs its source"

    judge = {"protocol": JUDGE_PROTOCOL, "arch": classifier, "epochs": int(classifier_epochs)}
    try:
        preds, judge["folds"] = cross_fit_judge(
            real, test.labels, test.subjects,
            {"real": (real[targets], subjects[targets]),
             "generated": (gen_u8, subjects[grid_src])},
            num_classes, data.train_subjects, classifier, classifier_epochs, seed, config.flip,
            classifier_width, classifier_lr)
        judge["real"] = classification_errors(preds["real"], test.labels[targets], expressions)
        judge["generated"] = classification_errors(preds["generated"], grid_lab, expressions)
        judge["rate_ratio"] = {expressions[k]: realism.expression_rate_ratio(
            preds["generated"][grid_lab == k], preds["real"][test.labels[targets] == k], k)
            for k in target_ids}
        judge["suspect"] = realism.suspect_note(judge["generated"]["overall"],
                                                judge["real"]["overall"])
        judge["warning"] = classifier_warning(preds["real"], test.labels[targets], num_classes)
        judge["available"] = True
    except realism.SubjectOverlapError:
        raise
    except realism.RealismError as e:
        judge.update(_unavailable(e))

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
        "classification": {"protocol": PAPER_PROTOCOL,
                           "classifier": {k: v for k, v in clf_info.items()},
                           "real": real_cls, "generated": gen_cls,
                           "suspect": realism.suspect_note(gen_cls["overall"],
                                                           real_cls["overall"])},
        "expression_judge": judge,
        "two_sample": two_sample,
        "sharpness": sharp,
        "identity": identity,
        "realism": kid,
        "fidelity": fidelity,
        "fid_note": kid["fid_note"],
        "features": kid["features"],
        "attribution": data.attribution,
    }
    split = {"train": list(data.train_subjects), "test": list(data.test_subjects)}
    return report.write_reports(report.clean(results), output, split,
                                os.path.join(workdir, "events") if write_tensorboard else None,
                                step)
