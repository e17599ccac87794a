"""Full-photo neutral -> happy (or happy -> neutral) evaluation (imports images, errors, data/, inference/, evaluation/*).

``evaluate_photos(model, photos_dir, subjects, output, ...) -> dict``, behind
``python -m mlc_keras.evaluate --photos_dir=DIR`` (with ``--workdir=RUN``:
the run's model and held-out subjects; with ``--model=PATH``: any model
``load_model_for_synthesis`` takes, and ``--photo_subjects`` is required).

For each subject, ``synthesize_photo(model, neutral photo, ["happy"],
paste_back=True)`` makes the pasted photo at the photo's own resolution
(``direction="happy_to_neutral"``: the smiling photo toward ``["neutral"]``,
judged against the real neutral photo; every figure below swaps its two
expressions); then

  sharpness     ``realism.sharpness_ratio`` inside the source photo's detected
                face box, pasted photo vs source photo, at full resolution.
  identity      dlib distance (``FaceEmbedder``, whole-crop path) between the
                aligned crops of the pasted and the source photo (same eyes,
                same framing), beside the real same-person distance (real
                smiling photo <-> neutral photo); verification rates at 0.6.
  two_sample    ``realism.two_sample_test`` on aligned crops (``crop`` px) of
                the pasted photos vs the real smiling photos, split by subject.
  judge         2-fold cross-fitting over the evaluated subjects: a
                neutral/happy classifier trained on one half's real crops
                judges the other half's real smiling and generated crops;
                happy rate generated / real with its subject-bootstrap
                interval, and the suspect note.
  external_judge  a second opinion on the smile from the FER2013 judge this
                project never trains (``evaluation.external_judge``): happy
                rates and mean p(happy) of source, generated and real, and
                (neutral -> happy) the mean p(happy) ratio over the subjects
                whose real smile keeps its lips closed (``closed_lip``); not a
                target.
  mouth_open    how often the lips are apart (dlib's inner-lip gap over the
                mouth's width >= 0.05, ``pipeline.mouth_openness``) in source,
                generated and real: London smiles with teeth are apart, a
                generated pale band where teeth would be is not.
  targets       sharpness ratio >= 0.8, identity distance <= 0.25, two-sample
                accuracy <= 0.70, happy-rate ratio >= 0.9 (happy -> neutral:
                the neutral-rate ratio): "met" / "not met".

Written to ``output``: photos.json, photos.md and contact_sheet.png (source |
generated | real target, one row per subject, ``cell`` px per cell) with
contact_sheet.png.txt (rows and the London attribution), and
mouth_sheet.png (+ .txt): the same three columns cut to the mouth at the
photos' own pixels, enlarged about 2x by nearest-neighbour (``mouth_tile``),
for the look at 100 % zoom. Pictures of London
faces are never written inside a git checkout (``PhotoEvaluationError``).
"""

import os

import numpy as np

from mlc_keras.errors import UserError
from mlc_keras.evaluation.report import _fmt, clean, two_sample_cell, verification_cell
from mlc_keras.images import clip_crop, read_json, write_json_atomic, write_png_atomic, write_text_atomic

__all__ = ["DIRECTIONS", "PHOTO_TARGETS", "PhotoEvaluationError", "console_summary", "evaluate_photos",
           "evaluate_photos_for", "mouth_tile", "render_markdown"]

# (key, label, comparison, threshold)
PHOTO_TARGETS = (
    ("sharpness_ratio", "sharpness ratio (pasted / source, face box)", ">=", 0.8),
    ("identity_distance", "identity distance pasted <-> source (dlib)", "<=", 0.25),
    ("two_sample_accuracy", "two-sample accuracy (real vs generated crops)", "<=", 0.70),
    ("happy_rate_ratio", "happy-rate ratio generated / real", ">=", 0.9),
)
SHEET = "contact_sheet.png"
# direction -> (source expression, target expression); the London folders hold both
DIRECTIONS = {"neutral_to_happy": ("neutral", "happy"), "happy_to_neutral": ("happy", "neutral")}
DEFAULT_DIRECTION = "neutral_to_happy"
CLASSES = ("neutral", "happy")  # the judge's class ids


def direction_pair(direction):
    """(source, target) expression of ``direction``; a clear error otherwise."""
    if direction not in DIRECTIONS:
        raise PhotoEvaluationError(f"--photo_direction={direction}: must be one of "
                                   + ", ".join(DIRECTIONS))
    return DIRECTIONS[direction]


def _expressions(results):
    """(source, target) expression of a results dict."""
    return DIRECTIONS[results.get("direction", DEFAULT_DIRECTION)]


def _arrow(results):
    return " -> ".join(_expressions(results))


class PhotoEvaluationError(UserError, ValueError):
    """The photos, subjects, model or output cannot be used; the message says why."""


def evaluate_photos_for(workdir, model, photos_dir, subjects, output, **settings):
    """The command's entry: resolves the model, the subjects and the output
    folder from --workdir / --model, then ``evaluate_photos``."""
    if bool(workdir) == bool(model):
        raise PhotoEvaluationError("give --workdir=RUN (its model and held-out subjects) or "
                                   "--model=PATH with --photo_subjects, not both or neither")
    if not photos_dir:
        raise PhotoEvaluationError("--model needs --photos_dir (a London-layout folder)")
    train = None
    if workdir:
        split_file = os.path.join(workdir, "split.json")
        if not os.path.isfile(split_file):
            raise PhotoEvaluationError(f"{split_file}: missing; the run's held-out subjects are "
                                       "unknown (pass --model and --photo_subjects instead)")
        split = read_json(split_file)
        train, subjects = split.get("train", []), list(subjects) or split.get("test", [])
        model, output = workdir, output or os.path.join(workdir, "eval")
    if not subjects:
        raise PhotoEvaluationError("--photo_subjects: give the held-out subjects to evaluate on "
                                   "(comma list, e.g. 001,002)")
    if not output:
        raise PhotoEvaluationError("--output is required with --model")
    return evaluate_photos(model, photos_dir, subjects, output, generator_subjects=train,
                           **settings)


def _crop(photo, face, size):
    from mlc_keras.data import align

    return align.align_face(photo, face.left_eye, face.right_eye, size)[0]


MOUTH_SHEET = "mouth_sheet.png"
MOUTH_OPEN_THRESHOLD = 0.05  # the default of --mouth_open_threshold (train)
MOUTH_TILE = (240, 160)  # (width, height) of a mouth tile: about 2x the native mouth box


def mouth_tile(image, face, size=MOUTH_TILE):
    """The mouth of ``face`` in ``image`` at the photo's own pixels, enlarged
    by nearest-neighbour to ``size`` (width, height), for a look at 100 % and
    beyond: no resampling blur is added, so any blur is the image's own.
    The box is centred on the mean of dlib's 20 mouth landmarks (48-67), 1.8x
    the corner-to-corner width, 2:3 high, clipped to the image (padded with
    grey past its border). Without 68 landmarks, the lower middle of the box."""
    from PIL import Image

    image = np.asarray(image)
    h, w = image.shape[:2]
    pts = np.asarray(face.landmarks, np.float64).reshape(-1, 2)
    if len(pts) >= 68:
        cx, cy = pts[48:68].mean(axis=0)
        width = 1.8 * max(np.linalg.norm(pts[54] - pts[48]), 4.0)
    else:
        x0, y0, x1, y1 = face.box
        cx, cy, width = (x0 + x1) / 2, y0 + 0.8 * (y1 - y0), 0.6 * (x1 - x0)
    height = width * size[1] / size[0]
    bx0, by0 = int(round(cx - width / 2)), int(round(cy - height / 2))
    bw, bh = max(1, int(round(width))), max(1, int(round(height)))
    tile = np.full((bh, bw, 3), 128, np.uint8)
    sx0, sy0, sx1, sy1 = max(0, bx0), max(0, by0), min(w, bx0 + bw), min(h, by0 + bh)
    if sx1 > sx0 and sy1 > sy0:
        tile[sy0 - by0:sy1 - by0, sx0 - bx0:sx1 - bx0] = image[sy0:sy1, sx0:sx1, :3]
    return np.asarray(Image.fromarray(tile).resize(size, Image.NEAREST))


def _check_output(output):
    from mlc_keras.inference.compare import _inside_git_checkout

    sheet = os.path.join(os.path.abspath(output), SHEET)
    if _inside_git_checkout(sheet):
        raise PhotoEvaluationError(f"--output={output}: inside a git checkout; pictures made from "
                                   "London faces must not be committed: write them elsewhere "
                                   "(e.g. a run folder or /tmp)")
    return sheet


def _collect(model, photos_dir, subjects, crop, cell, aligner, intensity=1.0, editor=None,
             direction=DEFAULT_DIRECTION):
    """Per subject: full-resolution face-box regions, aligned crops, sheet cells.
    ``editor``: None (the model through ``synthesize_photo``) or a callable
    source photo path -> (photo, detected face, edited photo). ``direction``:
    a key of ``DIRECTIONS`` (which photo is the source, which the real target)."""
    from mlc_keras.data import align
    from mlc_keras.data.sources import london
    from mlc_keras.evaluation.external_judge import face_patch
    from mlc_keras.inference.synthesize import synthesize_photo

    neutral, smiling = london.scan_london(photos_dir)
    target_expression = direction_pair(direction)[1]
    sources, targets = (neutral, smiling) if target_expression == "happy" else (smiling, neutral)
    missing = [s for s in subjects if s not in neutral or s not in smiling]
    if missing:
        raise PhotoEvaluationError(
            f"--photo_subjects: {', '.join(missing)} lack(s) {london.NEUTRAL_DIR}/NNN_03.jpg or "
            f"{london.SMILING_DIR}/NNN_08.jpg in {photos_dir}")
    aligner = aligner or align.get_default_aligner()
    out = {k: [] for k in ("subjects", "gen_region", "src_region", "src", "gen", "real", "rows",
                           "mouths", "fer_src", "fer_gen", "fer_real", "lips")}
    skipped = []
    for subject in subjects:
        try:
            if editor is None:
                result = synthesize_photo(model, sources[subject], [target_expression],
                                          paste_back=True, aligner=aligner, intensity=intensity)
                face, photo = result.faces[0].face, result.photo
                pasted = result.pasted(result.expressions[0])
            else:
                photo, face, pasted = editor(sources[subject])
            target = align.load_image(targets[subject])
            real_face = aligner.detect_largest(target, targets[subject])
        except align.ImageError as e:  # includes NoFaceError
            skipped.append({"subject": subject, "reason": str(e)})
            continue
        out["subjects"].append(subject)
        out["gen_region"].append(clip_crop(pasted, face.box))
        out["src_region"].append(clip_crop(photo, face.box))
        out["src"].append(_crop(photo, face, crop))
        out["gen"].append(_crop(pasted, face, crop))
        out["real"].append(_crop(target, real_face, crop))
        out["rows"].append([_crop(photo, face, cell), _crop(pasted, face, cell),
                            _crop(target, real_face, cell)])
        out["mouths"].append([mouth_tile(photo, face), mouth_tile(pasted, face),
                              mouth_tile(target, real_face)])
        # the external judge sees each photo's detector box (the pasted photo
        # through its source's box: the face has not moved)
        out["fer_src"].append(face_patch(photo, face.box))
        out["fer_gen"].append(face_patch(pasted, face.box))
        out["fer_real"].append(face_patch(target, real_face.box))
        # lips apart? dlib's points fitted again inside the source's box on the
        # pasted photo (the detector's own points for the two photos)
        out["lips"].append([face.landmarks, aligner.landmarks_in_box(pasted, face.box),
                            real_face.landmarks])
    if not out["subjects"]:
        raise PhotoEvaluationError(f"no usable subject among {', '.join(subjects)}: "
                                   + "; ".join(s["reason"] for s in skipped))
    return out, skipped


def _identity(src, gen, real):
    from mlc_keras.data.identity import FaceEmbedder, identity_distances
    from mlc_keras.evaluation import realism
    from mlc_keras.errors import MissingDependencyError

    try:
        embedder = FaceEmbedder(detect=False)
        s, g, r = (embedder.embed(np.stack(x)) for x in (src, gen, real))
    except (MissingDependencyError, ImportError) as e:
        return {"available": False, "reason": str(e) or "dlib is not installed"}
    d_gen, d_real = identity_distances(g, s), identity_distances(r, s)
    out = realism.identity_summary(d_gen, d_real)
    out.update(available=True, generated_vs_source=d_gen.tolist(),
               real_same_person=d_real.tolist(),
               face_path="aligned crops, same eyes for pasted and source; whole-crop path")
    return out


def _judge(src, gen, real, subjects, generator_subjects, classifier, classifier_epochs, seed,
           classifier_width, classifier_lr, target="happy"):
    """neutral (0) / happy (1) judge, 2-fold over the subjects; the rate of
    ``target`` among the generated faces beside the real targets, under the
    key "<target>_rate"."""
    from mlc_keras.evaluation import realism
    from mlc_keras.evaluation.run import JUDGE_PROTOCOL, _unavailable, cross_fit_judge

    judge = {"protocol": JUDGE_PROTOCOL, "classes": list(CLASSES), "arch": classifier,
             "epochs": int(classifier_epochs), "target": target}
    t = CLASSES.index(target)
    try:
        preds, judge["folds"] = cross_fit_judge(
            np.concatenate([np.stack(src), np.stack(real)]),
            [1 - t] * len(src) + [t] * len(real), list(subjects) * 2,
            {"real": (np.stack(real), subjects), "generated": (np.stack(gen), subjects)},
            2, generator_subjects, classifier, classifier_epochs, seed, True, classifier_width,
            classifier_lr)
    except realism.SubjectOverlapError:
        raise
    except realism.RealismError as e:
        return {**judge, **_unavailable(e)}
    rate = realism.expression_rate_ratio(preds["generated"], preds["real"], t, paired=True,
                                         seed=seed)
    errors = {"real_error": 1.0 - rate["real_rate"], "generated_error": 1.0 - rate["generated_rate"]}
    judge.update({f"{target}_rate": rate}, available=True, **errors,
                 suspect=realism.suspect_note(errors["generated_error"], errors["real_error"]))
    return judge


def _external(data, external_judge, seed):
    """The FER2013 judge's happy rates and ratios (``external_judge``), or
    {"available": False, "reason"} when it is off or, under "auto", not installed."""
    from mlc_keras.errors import MissingDependencyError
    from mlc_keras.evaluation import external_judge as ext

    if external_judge == "off":
        return {"available": False, "reason": "--external_judge=off"}
    try:
        judge = ext.ExternalJudge(None if external_judge == "auto" else external_judge)
    except (MissingDependencyError, ext.ExternalJudgeError) as e:
        if external_judge != "auto":
            raise
        return {"available": False, "reason": str(e)}
    out = ext.compare(*(judge.happy_probabilities(np.stack(data[k]))
                        for k in ("fer_src", "fer_gen", "fer_real")), seed=seed)
    return {"available": True, "sha256": judge.sha256, **out}


def _mouth_open(lips, threshold=MOUTH_OPEN_THRESHOLD):
    """Per kind (source, generated, real): each face's inner-lip gap over its
    mouth width (``pipeline.mouth_openness``), their mean, and the share at or
    above ``threshold`` (lips apart; London's smiles with teeth)."""
    from mlc_keras.data.pipeline import mouth_openness

    if any(len(p) != 68 for row in lips for p in row):
        return {"available": False, "reason": "needs dlib's 68 landmarks"}
    out = {"available": True, "threshold": threshold}
    for i, kind in enumerate(("source", "generated", "real")):
        values = mouth_openness(np.stack([row[i] for row in lips]))
        out[kind] = {"openness": values.round(4).tolist(), "mean": float(values.mean()),
                     "open_rate": float(np.mean(values >= threshold))}
    return out


def closed_lip_external(external, mouth_open):
    """The external judge's mean p(happy), generated / real, over only the
    subjects whose real target keeps its lips closed (inner-lip gap below the
    threshold): a model that never shows teeth measured against the smiles
    that show none. None when a figure is missing or no real target is closed."""
    if not (external.get("available") and mouth_open.get("available")):
        return None
    closed = np.asarray(mouth_open["real"]["openness"]) < mouth_open["threshold"]
    real = np.asarray(external["real"]["p_happy"], np.float64)
    if not closed.any() or len(closed) != len(real):
        return None
    real = float(real[closed].mean())
    generated = float(np.asarray(external["generated"]["p_happy"], np.float64)[closed].mean())
    if real <= 0:
        return None
    return {"n": int(closed.sum()), "real_mean_p_happy": real,
            "generated_mean_p_happy": generated, "mean_p_ratio": generated / real}


def mouth_line(results):
    """One line on how often the lips are apart, generated beside real."""
    m = results.get("mouth_open") or {}
    if not m.get("available"):
        return f"lips apart: unavailable ({m.get('reason', 'not run')})"
    g, r, s = m["generated"], m["real"], m["source"]
    return (f"lips apart (inner-lip gap >= {m['threshold']:g} of the mouth's width): generated "
            f"{g['open_rate']:.3f} / real {r['open_rate']:.3f} (source {s['open_rate']:.3f}); "
            f"mean gap generated {g['mean']:.3f} / real {r['mean']:.3f} (source {s['mean']:.3f})")


def _targets(results):
    target = _expressions(results)[1]
    rate, rate_key = results["judge"].get(f"{target}_rate", {}), f"{target}_rate_ratio"
    figures = {
        "sharpness_ratio": results["sharpness"].get("mean"),
        "identity_distance": results["identity"].get("generated_vs_source_mean"),
        "two_sample_accuracy": results["two_sample"].get("accuracy"),
        rate_key: rate.get("ratio"),
    }
    ts = results["two_sample"]
    intervals = {"two_sample_accuracy": [ts["ci_low"], ts["ci_high"]] if "ci_low" in ts else None,
                 rate_key: rate.get("ratio_ci")}
    out = []
    for key, label, op, threshold in PHOTO_TARGETS:
        if key == "happy_rate_ratio":  # the judge's rate of the direction's target expression
            key, label = rate_key, label.replace("happy", target)
        value = figures[key]
        known = value is not None and np.isfinite(value)
        met = known and (value >= threshold if op == ">=" else value <= threshold)
        out.append({"key": key, "label": label, "target": f"{op} {threshold:g}",
                    "value": value if known else None, "met": bool(met),
                    "ci": intervals.get(key),
                    "note": results["judge"].get("suspect", "") if key == rate_key else ""})
    return out


def evaluate_photos(model, photos_dir, subjects, output, generator_subjects=None, crop=128,
                    cell=256, classifier="features", classifier_epochs=30, classifier_width=None,
                    classifier_lr=None, two_sample_arch="small", two_sample_epochs=15, seed=0,
                    aligner=None, intensity=1.0, external_judge="auto", detail=None,
                    editor=None, direction=DEFAULT_DIRECTION):
    """Full-photo neutral -> happy evaluation (see the module docstring).

    Args:
      model: a ``SynthesisModel`` or anything ``load_model_for_synthesis``
        takes; with ``editor``, only the name the results give the edit.
      photos_dir: London-layout folder (neutral_front/NNN_03.jpg,
        smiling_front/NNN_08.jpg).
      subjects: subject ids ("001", ...), held out from the generator's training.
      output: folder of photos.json, photos.md and the contact sheet (never
        inside a git checkout).
      generator_subjects: the generator's training subjects when known; the
        evaluated subjects (and so the judge's) must be disjoint from them.
      crop: side of the aligned crops of the identity, two-sample and judge
        metrics; cell: side of a contact-sheet cell.
      classifier, classifier_epochs, classifier_width, classifier_lr: the judge.
      two_sample_arch, two_sample_epochs: the real-vs-generated classifier.
      intensity: the expression's intensity (``synthesize --intensity``).
      external_judge: "auto" (the FER2013 judge of ``external_judge`` when its
        model file is installed), "off", or the path of that model file
        (missing: an error). Reported beside the targets, not as one.
      detail: the fine-detail gate of the compositing (``inference.composite``;
        None: the default, 0: off).
      editor: None, or a callable neutral photo path -> (photo, detected
        ``align.Face``, edited photo), all uint8 at the photo's size, judged
        instead of a model (e.g. ``template_smile.photo_editor``); raises
        ``align.ImageError`` to skip a photo.
      direction: "neutral_to_happy" or "happy_to_neutral" (``DIRECTIONS``).

    Returns:
      the results dict written to photos.json (nan as None).
    """
    from mlc_keras.data.sources.london import LONDON_ATTRIBUTION
    from mlc_keras.evaluation import realism
    from mlc_keras.evaluation.run import _unavailable
    from mlc_keras.inference.loading import SynthesisModel, load_model_for_synthesis
    from mlc_keras.inference.synthesize import make_grid

    sheet = _check_output(output)
    source_expression, target_expression = direction_pair(direction)
    if external_judge not in ("auto", "off"):  # a named model file: fail before the work
        from mlc_keras.evaluation.external_judge import find_model

        find_model(external_judge)
    subjects = [str(s).strip() for s in subjects if str(s).strip()]
    if generator_subjects is not None:
        realism.disjoint_subjects(subjects, generator_subjects)
    if editor is None and not isinstance(model, SynthesisModel):
        model = load_model_for_synthesis(model, detail)
    data, skipped = _collect(model, photos_dir, subjects, int(crop), int(cell), aligner,
                             float(intensity), editor, direction)
    used = data["subjects"]
    results = {"model": str(model) if editor is not None else model.source,
               "photos_dir": os.path.abspath(photos_dir),
               "subjects": used, "skipped": skipped, "crop": int(crop),
               "intensity": float(intensity), "fine_detail": detail, "direction": direction,
               "generator_subjects_known": generator_subjects is not None}
    results["sharpness"] = realism.sharpness_ratio(data["gen_region"], data["src_region"])
    results["sharpness"]["where"] = "inside the source photo's detected face box, full resolution"
    results["identity"] = _identity(data["src"], data["gen"], data["real"])
    try:
        results["two_sample"] = {**realism.two_sample_test(
            np.stack(data["real"]), np.stack(data["gen"]), used, used, arch=two_sample_arch,
            epochs=two_sample_epochs, seed=seed, resolution=crop), "available": True}
    except realism.RealismError as e:
        results["two_sample"] = _unavailable(e)
    results["judge"] = _judge(data["src"], data["gen"], data["real"], used, generator_subjects,
                              classifier, classifier_epochs, seed, classifier_width,
                              classifier_lr, target_expression)
    results["external_judge"] = _external(data, external_judge, seed)
    results["mouth_open"] = _mouth_open(data["lips"])
    if target_expression == "happy":
        closed = closed_lip_external(results["external_judge"], results["mouth_open"])
        if closed:
            results["external_judge"]["closed_lip"] = closed
    results["targets"] = _targets(results)
    os.makedirs(output, exist_ok=True)
    write_png_atomic(sheet, make_grid(data["rows"]))
    columns = (f"source ({source_expression}) | generated ({target_expression}, pasted) | "
               f"real target ({target_expression})")
    write_text_atomic(sheet + ".txt", f"columns: {columns}\nrows: " + ", ".join(used) + "\n\n"
                      + LONDON_ATTRIBUTION + "\n")
    mouths = os.path.join(os.path.dirname(sheet), MOUTH_SHEET)
    write_png_atomic(mouths, make_grid(data["mouths"]))
    write_text_atomic(mouths + ".txt", "the mouths at the photos' own pixels, enlarged about 2x "
                      f"by nearest-neighbour (no added blur): {columns}\nrows: " + ", ".join(used) + "\n\n"
                      + LONDON_ATTRIBUTION + "\n")
    results = clean(results)
    results["paths"] = {"json": os.path.join(output, "photos.json"),
                        "markdown": os.path.join(output, "photos.md"), "sheet": sheet,
                        "mouth_sheet": mouths}
    write_text_atomic(results["paths"]["markdown"], render_markdown(results))
    write_json_atomic(results["paths"]["json"], results, indent=1, sort_keys=False,
                      allow_nan=False)
    return results


def target_lines(results):
    """'met' / 'not met' per target, with the figure."""
    return [f"{'met' if t['met'] else 'not met'}: {t['label']} = {_fmt(t['value'], 3)} "
            + (f"[95% CI {t['ci'][0]:.2f}, {t['ci'][1]:.2f}] " if t.get("ci") else "")
            + f"(target {t['target']})" + (f" - {t['note']}, not a win" if t.get("note") else "")
            for t in results["targets"]]


def external_line(results):
    """One line on the external FER2013 judge: its happy rates and ratios."""
    e = results.get("external_judge") or {}
    if not e.get("available"):
        return f"external judge: unavailable ({e.get('reason', 'not run')})"

    def ci(key):
        return f" [95% CI {e[key][0]:.2f}, {e[key][1]:.2f}]" if e.get(key) else ""

    g, r, s = e["generated"], e["real"], e["source"]
    if _expressions(results)[1] != "happy":
        return (f"external judge (FER2013, never trained here): mean p(happy) source (smiling) "
                f"{s['mean_p_happy']:.3f} -> generated {g['mean_p_happy']:.3f}, real neutral "
                f"{r['mean_p_happy']:.3f}: {_fmt(e.get('change_share'), 3)} of the real change; "
                f"happy rate source {s['happy_rate']:.3f} -> generated {g['happy_rate']:.3f} "
                f"(real neutral {r['happy_rate']:.3f})")
    return (f"external judge (FER2013, never trained here): happy rate generated "
            f"{g['happy_rate']:.3f} / real {r['happy_rate']:.3f} (source {s['happy_rate']:.3f}), "
            f"ratio {_fmt(e['rate_ratio'], 3)}{ci('rate_ratio_ci')}; mean p(happy) generated "
            f"{g['mean_p_happy']:.3f} / real {r['mean_p_happy']:.3f} (source "
            f"{s['mean_p_happy']:.3f}), ratio {_fmt(e['mean_p_ratio'], 3)}{ci('mean_p_ratio_ci')}"
            + (f"; against the {c['n']} real smiles with closed lips only: mean p(happy) "
               f"generated {c['generated_mean_p_happy']:.3f} / real {c['real_mean_p_happy']:.3f}, "
               f"ratio {c['mean_p_ratio']:.3f}" if (c := e.get("closed_lip")) else ""))


def render_markdown(results):
    from mlc_keras.data.sources.london import LONDON_ATTRIBUTION

    r, j = results, results["judge"]
    sh, ident = r["sharpness"], r["identity"]
    lines = [f"# Full-photo evaluation ({_arrow(r)}) of `{r['model']}`", "",
             f"{len(r['subjects'])} subject(s) of `{r['photos_dir']}`: {', '.join(r['subjects'])}."
             + (f" Skipped: {', '.join(s['subject'] for s in r['skipped'])}." if r["skipped"]
                else ""), ""]
    if not r["generator_subjects_known"]:
        lines += ["The generator's training subjects are unknown (--model): make sure these "
                  "subjects were held out.", ""]
    lines += ["| metric | value |", "|---|---|",
              f"| sharpness: Laplacian variance pasted / source ({sh['where']}) | mean "
              f"{_fmt(sh['mean'])}, median {_fmt(sh['median'])} (n={sh['n_finite']}) |",
              "| identity: dlib distance pasted vs source | "
              + (verification_cell(ident) if ident.get("available")
                 else f"unavailable: {ident.get('reason')}") + " |",
              f"| two-sample test: real vs generated crops ({r['crop']} px), accuracy, 95% CI | "
              f"{two_sample_cell(r['two_sample'])} |"]
    if j.get("available"):
        target = j.get("target", "happy")
        h = j[f"{target}_rate"]
        ci = h.get("ratio_ci")
        ci = f", 95% subject-bootstrap CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        lines += [f"| judge: {target} rate generated / real | {_fmt(h['ratio'])} "
                  f"({_fmt(h['generated_rate'])} / {_fmt(h['real_rate'])}{ci}, "
                  f"n={h['n_generated']}) |",
                  f"| judge: error real / generated | {_fmt(j['real_error'])} / "
                  f"{_fmt(j['generated_error'])} |"]
    else:
        lines.append(f"| judge | unavailable: {j.get('reason')} |")
    lines += ["", f"Judge: {j['protocol']}.", ""]
    if j.get("suspect"):
        lines += [f"**{j['suspect']}**", ""]
    lines += ["## Targets", ""] + [f"- {line}" for line in target_lines(r)]
    lines += ["", "## A judge this project never trains", "", external_line(r)]
    if r.get("external_judge", {}).get("available"):
        lines += ["", f"Protocol: {r['external_judge']['protocol']}. Not an issue target: a check "
                  "on the disjoint-subject judge above, which is trained on 11 people per fold."]
    lines += ["", "## The mouth", "", mouth_line(r)]
    lines += ["", f"Contact sheet (outside the repository): `{r['paths']['sheet']}`; the mouths "
              f"at the photos' own pixels, about 2x: `{r['paths'].get('mouth_sheet')}`.", "",
              LONDON_ATTRIBUTION, ""]
    return "\n".join(lines)


def console_summary(results):
    """The lines the evaluate command prints for the photos."""
    return "\n".join([f"full photos ({_arrow(results)}):"] + [f"  {x}" for x in target_lines(results)]
                     + [f"  {external_line(results)}", f"  {mouth_line(results)}", f"report: {results['paths']['markdown']}",
                        f"contact sheet: {results['paths']['sheet']}",
                        f"mouths (photo pixels, about 2x): {results['paths'].get('mouth_sheet')}"])
