"""The synthetic source: renders the procedural faces (``synthetic_faces``) into a paired data set on disk.

API:
  * ``write_synthetic_dataset(out_dir, num_subjects, resolution, seed=0,
    expressions=EXPRESSIONS) -> str`` (path of ``manifest.csv``)
  * the faces API, for callers of this source: ``Identity``,
    ``sample_identity``, ``identity_for``, ``render_face``, ``preview_grid``.
"""

import os
import re
from concurrent.futures import ThreadPoolExecutor

from mlc_keras.data.manifest import MANIFEST_NAME, Record, write_manifest
from mlc_keras.data.sources import Source
from mlc_keras.data.synthetic_faces import (GENERATOR_VERSION, Identity, identity_for, preview_grid,
                                            render_face, sample_identity)
from mlc_keras.expressions import EXPRESSIONS, canonical_expression
from mlc_keras.images import read_json, write_json_atomic, write_png_atomic

__all__ = ["SOURCE", "Identity", "identity_for", "preview_grid", "render_face", "sample_identity",
           "subject_id", "write_synthetic_dataset"]

PARAMS_NAME = "synthetic.json"
IMAGES_DIR = "images"


def subject_id(index: int) -> str:
    """``"s0007"`` for subject 7."""
    return f"s{int(index):04d}"


_IMAGE_RE = re.compile(r"^s\d{4,}_[a-z]+\.png$")


def _params(num_subjects, resolution, seed, expressions):
    return {
        "generator": "mlc_keras.data.synthetic",  # the name when the format was fixed: a cache key
        "version": GENERATOR_VERSION,
        "num_subjects": int(num_subjects),
        "resolution": int(resolution),
        "seed": int(seed),
        "expressions": list(expressions),
    }


def _cached(out_dir, params, names):
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    meta = os.path.join(out_dir, PARAMS_NAME)
    if not (os.path.isfile(manifest) and os.path.isfile(meta)):
        return False
    try:
        stored = read_json(meta)
    except (OSError, ValueError):
        return False
    if stored != params:
        return False
    images = os.path.join(out_dir, IMAGES_DIR)
    return all(os.path.isfile(os.path.join(images, n)) for n in names)


def write_synthetic_dataset(out_dir, num_subjects, resolution, seed=0, expressions=EXPRESSIONS) -> str:
    """Renders every subject x expression and writes the manifest.

    Layout: ``out_dir/images/s0007_happy.png`` (uint8 RGB PNGs of side
    ``resolution``), ``out_dir/synthetic.json`` (the parameters) and
    ``out_dir/manifest.csv`` (written last, so a run cut short leaves no
    manifest and is re-rendered next time). If the manifest exists, the
    stored parameters match and every image is present, nothing is
    re-rendered. Stale ``sNNNN_<expression>.png`` files from earlier
    parameters are removed.

    Returns:
      The path of ``manifest.csv`` (str).
    """
    out_dir = os.fspath(out_dir)
    num_subjects = int(num_subjects)
    resolution = int(resolution)
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be >= 1, got {num_subjects}")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    names = [canonical_expression(e) for e in expressions]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"expressions must be a non-empty list without repeats, got {list(expressions)}")
    params = _params(num_subjects, resolution, seed, names)
    files = {(i, e): f"{subject_id(i)}_{e}.png" for i in range(num_subjects) for e in names}
    manifest = os.path.join(out_dir, MANIFEST_NAME)
    if _cached(out_dir, params, files.values()):
        return manifest

    meta = os.path.join(out_dir, PARAMS_NAME)
    for stale in (manifest, meta):
        if os.path.exists(stale):
            os.remove(stale)
    images = os.path.join(out_dir, IMAGES_DIR)
    os.makedirs(images, exist_ok=True)

    def render_subject(i):
        idn = identity_for(i, seed)
        for e in names:
            write_png_atomic(os.path.join(images, files[(i, e)]), render_face(idn, e, resolution))

    workers = max(1, min(8, os.cpu_count() or 1))
    if workers == 1 or num_subjects == 1:
        for i in range(num_subjects):
            render_subject(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(render_subject, range(num_subjects)))

    wanted = set(files.values())
    for name in os.listdir(images):
        if _IMAGE_RE.match(name) and name not in wanted:
            os.remove(os.path.join(images, name))

    write_json_atomic(meta, params)
    records = [
        Record(os.path.join(images, files[(i, e)]), subject_id(i), e, "")
        for i in range(num_subjects)
        for e in names
    ]
    write_manifest(manifest, records)
    return manifest


def prepare(config, cache_dir):
    """``--dataset=synthetic``: the set rendered for this config, cached in ``cache_dir``."""
    size = config.synthetic_resolution or config.resolution
    seed = render_seed(config)
    out = os.path.join(cache_dir, f"synthetic_{config.synthetic_subjects}x{size}_seed{seed}")
    return write_synthetic_dataset(out, config.synthetic_subjects, size, seed=seed)


def render_seed(config):
    """The seed that draws the faces: ``--synthetic_seed``, or ``--seed`` where it is -1."""
    return config.synthetic_seed if config.synthetic_seed >= 0 else config.seed


SOURCE = Source("synthetic", prepare)
