"""Where a step's time goes: a TensorFlow profiler trace reduced to a table by
kind of work (imports tensorflow; the callers bring the networks).

``profile_calls(fn, logdir, calls)`` traces ``calls`` calls of ``fn`` (after
one untraced call) with ``tf.profiler`` (the trace can be opened in
TensorBoard's profile plugin); ``op_time_table(logdir)`` reads the XSpace it
wrote and sums the executed ops' time per category:

  conv forward / conv backprop input / conv backprop filter   by op type
  normalisation      ops under a "norm" name scope (GroupNorm = instance norm)
  spectral norm      non-convolution ops inside an SN conv ("conv" scope of a
                     critic, D or f: the power iteration and the division)
  blend              ops under the generator's image heads ("to_image")
  optimizer          Adam updates and ops under an optimizer's name scope
  copies/layout/casts  Cast, Transpose, Identity, Reshape, oneDNN layout
                     conversions (_MklToTf, ...)
  other              everything else, by op type in the detail table

Times are summed over every executor thread (on 2 cores, up to 2x wall
time), so shares are comparable; absolute figures are thread-seconds.
"""

import collections
import glob
import os
import re

CATEGORIES = ("conv forward", "conv backprop input", "conv backprop filter", "normalisation",
              "spectral norm", "blend", "optimizer", "copies/layout/casts", "other")
_COPIES = re.compile(r"^(Cast|Transpose|Identity|IdentityN|Reshape|Squeeze|ExpandDims|"
                     r"_MklToTf|_MklInputConversion|Copy|Pack|Unpack|ConcatV2|Slice|StridedSlice|"
                     r"Tile|Pad|MirrorPad)$")


def _plain_type(op_type):
    """'_MklNativeConv2DBackpropFilter' -> 'Conv2DBackpropFilter'."""
    return re.sub(r"^_(MklNativeFused|MklNative|MklFused|Mkl|Fused)", "", op_type)


def categorise(name, op_type):
    """The kind of work of one executed op (its graph name and kernel type)."""
    t = _plain_type(op_type)
    lower = name.lower()
    backward = "gradient_tape" in lower
    if "Conv2DBackpropFilter" in t:
        return "conv backprop filter"
    if "Conv2DBackpropInput" in t:  # a transposed conv's forward pass runs this kernel too
        return "conv backprop input" if backward else "conv forward"
    if "Conv2D" in t:
        return "conv forward"
    if _COPIES.match(t):
        return "copies/layout/casts"
    if "optimizer" in lower or t.startswith("ResourceApply") or t.startswith("ApplyAdam"):
        return "optimizer"
    if "/norm" in lower or "batchnorm" in t.lower():
        return "normalisation"
    if "to_image" in lower:
        return "blend"
    if re.search(r"/conv(_\d+)?/", lower) and "generator" not in lower:
        return "spectral norm"
    return "other"


def profile_calls(fn, logdir, calls=2):
    """One untraced call of ``fn()``, then ``calls`` traced calls."""
    import tensorflow as tf

    fn()
    tf.profiler.experimental.start(logdir)
    try:
        for _ in range(calls):
            fn()
    finally:
        tf.profiler.experimental.stop()


def _newest_xspace(logdir):
    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}/plugins/profile")
    return paths[-1]


def op_time_table(logdir, calls=1):
    """{"categories": {category: seconds per call}, "by_type": [[category,
    op type, seconds per call], ...] (largest first), "total": seconds per call} from the newest
    trace in ``logdir``. ``calls``: how many calls the trace holds."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(_newest_xspace(logdir), "rb") as f:
        space.ParseFromString(f.read())
    categories = collections.Counter()
    by_type = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device:"):
            continue
        for line in plane.lines:
            if not (line.name.startswith("tf_Compute") or line.name.startswith("tf_inter_op")
                    or "Compute" in line.name):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label or "::" in label:  # executor bookkeeping, not an op
                    continue
                name, op_type = label.rsplit(":", 1)
                category = categorise(name, op_type)
                seconds = event.duration_ps / 1e12 / max(1, calls)
                categories[category] += seconds
                by_type[(category, _plain_type(op_type))] += seconds
    total = sum(categories.values())
    return {"categories": {c: categories.get(c, 0.0) for c in CATEGORIES},
            "by_type": [[c, t, sec] for (c, t), sec in by_type.most_common()], "total": total}


def format_table(table, top=12):
    """Markdown: the categories with their share, then the top op types."""
    total = table["total"] or float("nan")
    lines = ["| kind of work | ms per call (thread time) | share |", "|---|---|---|"]
    lines += [f"| {c} | {1000 * s:.1f} | {s / total:.1%} |"
              for c, s in table["categories"].items()]
    lines += [f"| **total** | {1000 * table['total']:.1f} | 100 % |", "",
              "| op type (kind) | ms per call | share |", "|---|---|---|"]
    for category, op_type, s in table["by_type"][:top]:
        lines.append(f"| {op_type} ({category}) | {1000 * s:.1f} | {s / total:.1%} |")
    return "\n".join(lines)
