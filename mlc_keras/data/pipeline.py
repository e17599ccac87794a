"""Pairs per subject -> decoded image table -> deterministic tf.data stream.

Contract of every training element (a dict, batched with the GLOBAL batch):
  source        [B, R, R, 3] float32 in [-1, 1]
  target        [B, R, R, 3] float32 in [-1, 1]
  target_label  [B] int32, source_label [B] int32  (ids in the vocabulary)
  flow_target   [B, R, R, 2] float32, only when asked for: the landmark
                motion from source to target (``pair_flows``), flipped with
                the pair

The stream is a pure function of (seed, position): epoch e visits the pairs
in the permutation drawn from (seed, e), and the flips of the batch at
step k are drawn from (seed, k). Starting at ``start_step`` therefore
reproduces exactly the batches an uninterrupted run would have seen, which is
how a resumed run restores its data order.
"""

import concurrent.futures
import dataclasses
import hashlib

import numpy as np
import tensorflow as tf
from PIL import Image

from mlc_keras.data.manifest import ManifestError
from mlc_keras.images import tf_to_float


@dataclasses.dataclass(frozen=True)
class PairSet:
    """Pairs over a list of images; indices point into ``paths``.

    paths: image files; subjects / labels: per image.
    src, tgt: [P] int32 image indices; src_label, tgt_label: [P] int32.
    points: optional float32 [N, 68, 2] face landmarks per image, (x, y) in
      pixels of a ``crop_size`` crop (the importer's; see ``pair_flows``).
    """

    paths: tuple
    subjects: tuple
    labels: np.ndarray
    src: np.ndarray
    tgt: np.ndarray
    points: np.ndarray = None
    crop_size: int = 0

    @property
    def src_label(self):
        return self.labels[self.src]

    @property
    def tgt_label(self):
        return self.labels[self.tgt]

    def __len__(self):
        return int(self.src.shape[0])


class DataError(ManifestError):
    """The data cannot be used for training; the message says which input."""


def split_subjects(records, test_fraction, seed, test_subjects=()):
    """Subject-disjoint split: ``test_subjects`` when given (every listed id
    must exist), else the manifest's split column where given, else each
    subject goes to test when a seeded hash of its id falls below
    ``test_fraction`` (stable whatever the other subjects are). Returns
    (train_subjects, test_subjects) as sorted tuples."""
    if test_subjects:
        subjects = sorted({r.subject for r in records})
        missing = sorted(set(test_subjects) - set(subjects))
        if missing:
            raise DataError(f"--test_subjects: {', '.join(missing)} not in the data set "
                            f"(its subjects: {', '.join(subjects[:8])}{', ...' if len(subjects) > 8 else ''})")
        train = tuple(s for s in subjects if s not in set(test_subjects))
        if not train:
            raise DataError("--test_subjects: lists every subject; none is left for training")
        return train, tuple(sorted(set(test_subjects)))
    given = {}
    for r in records:
        if r.split:
            if given.setdefault(r.subject, r.split) != r.split:
                raise DataError(f"subject {r.subject!r} has images in both train and test splits")
    subjects = sorted({r.subject for r in records})
    test = set()
    for s in subjects:
        if s in given:
            if given[s] == "test":
                test.add(s)
            continue
        digest = hashlib.sha256(f"{seed}:{s}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2 ** 64 < test_fraction:
            test.add(s)
    if test_fraction > 0 and not test and len(subjects) > 1 and not given:
        test.add(subjects[-1])  # a tiny data set still gets a held-out subject
    train = tuple(s for s in subjects if s not in test)
    if not train:
        raise DataError("no training subjects left after the split; lower --test_fraction")
    return train, tuple(sorted(test))


def build_pairs(records, vocabulary, subjects, source_expression="neutral", identity_pairs=True,
                skip_bad=False):
    """Pairs (source -> target) within each subject of ``subjects``.

    Source: every image of ``source_expression`` ('any': every image); target:
    every image of the same subject with an expression in ``vocabulary``
    (the source itself for the identity pair when ``identity_pairs``).

    Returns (PairSet, skipped_subjects). Raises DataError for a subject with
    no source image unless ``skip_bad``.
    """
    wanted = set(subjects)
    images = [r for r in records if r.subject in wanted and r.expression in vocabulary]
    by_subject = {}
    for i, r in enumerate(images):
        by_subject.setdefault(r.subject, []).append(i)
    src, tgt, skipped = [], [], []
    for subject in sorted(by_subject):
        idx = by_subject[subject]
        sources = [i for i in idx if source_expression == "any"
                   or images[i].expression == source_expression]
        if not sources:
            if skip_bad:
                skipped.append(subject)
                continue
            raise DataError(
                f"subject {subject!r} has no {source_expression!r} image to use as the source "
                f"(it has: {', '.join(sorted({images[i].expression for i in idx}))}); "
                "pass --skip_bad_images to leave such subjects out")
        for s in sources:
            for t in idx:
                if t == s and not identity_pairs:
                    continue
                if t != s and images[t].expression == images[s].expression and source_expression != "any":
                    continue
                src.append(s)
                tgt.append(t)
    if not src:
        raise DataError("no training pairs: every subject needs a source image and a target")
    # Keep only the images some pair uses (skipped subjects are not decoded).
    used = sorted(set(src) | set(tgt))
    remap = {old: new for new, old in enumerate(used)}
    kept = [images[i] for i in used]
    return PairSet(
        paths=tuple(r.path for r in kept),
        subjects=tuple(r.subject for r in kept),
        labels=np.array([vocabulary.index(r.expression) for r in kept], np.int32),
        src=np.array([remap[i] for i in src], np.int32),
        tgt=np.array([remap[i] for i in tgt], np.int32),
    ), skipped


def mouth_openness(points):
    """Inner-lip gap over mouth width per face: float [N] from dlib's 68
    points [N, 68, 2] (``register.inner_lip_gap``)."""
    from mlc_keras.data.register import inner_lip_gap

    return inner_lip_gap(points)


def keep_mouth_targets(pairs, openness, threshold, open_ids=(), closed_ids=()):
    """``pairs`` less those whose target's mouth is of the wrong kind: a
    target with a label in ``open_ids`` must have lips apart (openness, per
    image from ``mouth_openness``, at or above ``threshold``), one with a
    label in ``closed_ids`` lips closed (below it). Images no kept pair uses
    are dropped. Returns (PairSet, {"open": dropped, "closed": dropped});
    raises DataError when a label is left with no target."""
    if set(open_ids) & set(closed_ids):
        raise ValueError(f"classes {sorted(set(open_ids) & set(closed_ids))} are in both "
                         "open_ids and closed_ids")
    is_open = np.asarray(openness, np.float64)[pairs.tgt] >= threshold
    drop = np.zeros(len(pairs.tgt), bool)
    dropped = {}
    for kind, ids, wrong_kind, fix in (("open", open_ids, ~is_open, "lower"),
                                       ("closed", closed_ids, is_open, "raise")):
        for label in ids:
            if not np.any((pairs.tgt_label == label) & ~wrong_kind):
                raise DataError(f"--{kind}_mouth_targets: no training target of class {label} has a "
                                f"mouth {kind} by --mouth_open_threshold={threshold}; {fix} the threshold")
        bad = np.isin(pairs.tgt_label, list(ids)) & wrong_kind
        dropped[kind] = int(bad.sum())
        drop |= bad
    src, tgt = pairs.src[~drop], pairs.tgt[~drop]
    used = np.unique(np.concatenate([src, tgt]))
    remap = np.full(len(pairs.paths), -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    kept = dataclasses.replace(
        pairs, paths=tuple(pairs.paths[i] for i in used),
        subjects=tuple(pairs.subjects[i] for i in used), labels=pairs.labels[used],
        src=remap[src], tgt=remap[tgt],
        points=None if pairs.points is None else pairs.points[used])
    return kept, dropped


def check_images(paths, skip_bad=False, workers=8):
    """Opens every image with PIL; returns the set of unreadable paths.

    Raises DataError naming the first bad file unless ``skip_bad``.
    """
    def bad(path):
        try:
            with Image.open(path) as im:
                im.verify()
            return None
        except Exception as e:  # PIL raises many kinds for corrupt files
            return path, f"{type(e).__name__}: {e}"

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        failures = [f for f in pool.map(bad, paths) if f]
    if failures and not skip_bad:
        path, why = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise DataError(f"unreadable image {path!r}: {why}{more}; pass --skip_bad_images to skip")
    return {p for p, _ in failures}


def decode_image_bytes(raw):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3].

    JPEGs use ``dct_method="INTEGER_ACCURATE"``: TensorFlow's default IDCT
    differs from PIL's by up to 8 grey levels, which would break parity
    between this graph path (training, the exported bytes signature) and the
    Python path (PIL)."""
    image = tf.cond(
        tf.io.is_jpeg(raw),
        lambda: tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8))
    image.set_shape([None, None, 3])
    return image


def square_resize(image, resolution):
    """uint8 [H, W, 3] -> uint8 [R, R, 3]: centre square crop, area resize."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(h, w)
    image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
    image = tf.image.resize(image, [resolution, resolution], method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _pil_decode(raw):
    import io

    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def _decode(path, resolution):
    """A file -> uint8 [R, R, 3]. Formats TensorFlow cannot decode (TIFF from
    JAFFE, PNM...) go through PIL; only this file path needs that, so the
    exported serving graph stays free of Python ops."""
    raw = tf.io.read_file(path)
    magic = tf.strings.substr(raw, 0, 4)
    tf_decodable = tf.reduce_any([
        tf.io.is_jpeg(raw), tf.equal(magic, b"\x89PNG"),
        tf.equal(tf.strings.substr(raw, 0, 3), b"GIF"), tf.equal(tf.strings.substr(raw, 0, 2), b"BM")])
    is_tiff = tf.logical_not(tf_decodable)

    def via_pil():
        image = tf.numpy_function(_pil_decode, [raw], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image

    image = tf.cond(is_tiff, via_pil, lambda: decode_image_bytes(raw))
    return square_resize(image, resolution)


def decode_images(paths, resolution):
    """All images -> uint8 [N, R, R, 3], centre-cropped square and area-resized,
    decoded in parallel by tf.data."""
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(lambda p: _decode(p, resolution), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True).batch(256)
    chunks = [c.numpy() for c in ds]
    return np.concatenate(chunks, 0) if chunks else np.zeros((0, resolution, resolution, 3), np.uint8)


def pair_flows(pairs, resolution, fold=False):
    """float32 [P, R, R, 2]: for each pair, the backward flow that moves the
    source's landmarks onto the target's (``register.landmark_flow``; (dy, dx)
    in fractions of the size; ``fold``: split along the lip line where the
    mouth closes). A pair of an image with itself has none.
    Raises DataError when the pairs carry no landmarks."""
    from mlc_keras.data.register import landmark_flow

    if pairs.points is None:
        raise DataError("the training pairs carry no face landmarks (needed for a flow target)")
    flows = np.zeros((len(pairs), resolution, resolution, 2), np.float32)
    for k, (s, t) in enumerate(zip(pairs.src, pairs.tgt)):
        if s != t:
            flows[k] = landmark_flow(pairs.points[s], pairs.points[t], pairs.crop_size, resolution,
                                     fold=fold)
    return flows


def count_closing(pairs):
    """How many of ``pairs`` (with landmarks) go from lips apart to closer
    lips (``register.mouth_closes``): those ``pair_flows(fold=True)`` folds."""
    from mlc_keras.data.register import mouth_closes

    return sum(bool(s != t and mouth_closes(pairs.points[s], pairs.points[t]))
               for s, t in zip(pairs.src, pairs.tgt))


def flip_flows(flows):
    """The flow of horizontally flipped images: mirrored, its dx negated."""
    mirrored = tf.reverse(flows, [2])
    return tf.concat([mirrored[..., :1], -mirrored[..., 1:]], axis=-1)


def training_dataset(pairs, images, global_batch, seed, start_step=0, flip=True, flows=None):
    """The infinite, deterministic, resumable training stream (see module doc).

    Args:
      pairs: PairSet; images: uint8 [N, R, R, 3] indexed like pairs.paths.
      global_batch: elements per batch (all replicas together).
      start_step: batches already consumed (a resumed run's step).
      flows: optional float32 [P, R, R, 2] per pair (``pair_flows``): each
        element then carries its pair's as ``flow_target``.
    """
    num_pairs = len(pairs)
    if num_pairs == 0:
        raise DataError("no training pairs")
    images = tf.constant(images)
    src = tf.constant(pairs.src)
    tgt = tf.constant(pairs.tgt)
    flow_table = None if flows is None else tf.constant(flows, tf.float32)
    labels = tf.constant(pairs.labels)
    start = int(start_step) * int(global_batch)
    start_epoch, offset = divmod(start, num_pairs)

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([num_pairs], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

    ds = tf.data.Dataset.range(start_epoch, 2 ** 62).flat_map(epoch_order).skip(offset)
    ds = ds.enumerate(start=start).batch(global_batch, drop_remainder=True)

    def gather(positions, pair_idx):
        s = tf.gather(src, pair_idx)
        t = tf.gather(tgt, pair_idx)
        source = tf_to_float(tf.gather(images, s))
        target = tf_to_float(tf.gather(images, t))
        flow = None if flow_table is None else tf.gather(flow_table, pair_idx)
        if flip:
            # Batches start at multiples of global_batch, so the first position
            # identifies the batch: its coins are a function of (seed, step).
            coins = tf.random.stateless_uniform(
                tf.shape(positions), seed=tf.stack([tf.constant(seed + 1, tf.int64), positions[0]]))
            do_flip = tf.reshape(coins < 0.5, [-1, 1, 1, 1])
            source = tf.where(do_flip, tf.reverse(source, [2]), source)
            target = tf.where(do_flip, tf.reverse(target, [2]), target)
            if flow is not None:
                flow = tf.where(do_flip, flip_flows(flow), flow)
        element = {
            "source": source,
            "target": target,
            "target_label": tf.gather(labels, t),
            "source_label": tf.gather(labels, s),
        }
        if flow is not None:
            element["flow_target"] = flow
        return element

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE)


def held_out_sources(pairs, images, count):
    """Up to ``count`` source images of distinct subjects, for sample grids:
    (float32 [K, R, R, 3] in [-1, 1], subject ids)."""
    chosen, seen = [], set()
    for s in pairs.src:
        subject = pairs.subjects[int(s)]
        if subject not in seen:
            seen.add(subject)
            chosen.append(int(s))
        if len(chosen) == count:
            break
    return tf_to_float(images[chosen]).numpy(), [pairs.subjects[i] for i in chosen]
