"""Training curves of a run as a PNG (no plotting library needed).

    python scripts/plot_curves.py --workdir=runs/london128 --output=docs/london128_curves.png \
        [--tags=G/l1/128,G/adv,D/loss,critic/loss]

Each panel is one TensorBoard scalar of the run's events (all sittings of a
resumed run), step on x; the values are the window means the trainer writes.
"""

import argparse
import glob
import os

import numpy as np
from PIL import Image, ImageDraw

PANEL_W, PANEL_H, MARGIN = 420, 220, 46


def read_scalars(workdir, tags=None, prefixes=None):
    """{tag: [(step, value)]} of the run's scalar events: the named ``tags``
    (in that order), or with ``tags=None`` every scalar tag that starts with
    one of ``prefixes`` (every scalar when None), sorted by name."""
    import tensorflow as tf

    series = {t: {} for t in tags} if tags is not None else {}
    for path in sorted(glob.glob(os.path.join(workdir, "events", "*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                wanted = (value.tag in series if tags is not None else
                          prefixes is None or value.tag.startswith(tuple(prefixes)))
                if not wanted:
                    continue
                if value.HasField("simple_value"):
                    number = value.simple_value
                else:
                    array = tf.make_ndarray(value.tensor)
                    if array.size != 1:  # an image or text summary, not a scalar
                        continue
                    number = float(array.reshape(()))
                series.setdefault(value.tag, {})[event.step] = number  # a later sitting wins
    order = tags if tags is not None else sorted(series)
    return {t: sorted(series[t].items()) for t in order if series.get(t)}


def write_sheet(series, output, cols=2):
    """One panel per series, ``cols`` panels a row, saved as a PNG at ``output``."""
    panels = [panel(t, p) for t, p in series.items()]
    rows = (len(panels) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * PANEL_W, rows * PANEL_H), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, ((i % cols) * PANEL_W, (i // cols) * PANEL_H))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    sheet.save(output)
    return output


def panel(tag, points):
    img = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    steps = np.array([p[0] for p in points], float)
    values = np.array([p[1] for p in points], float)
    lo, hi = float(np.min(values)), float(np.max(values))
    hi = hi if hi > lo else lo + 1.0
    x0, y0, x1, y1 = MARGIN, 24, PANEL_W - 10, PANEL_H - 30
    draw.rectangle([x0, y0, x1, y1], outline=(160, 160, 160))
    xs = x0 + (steps - steps.min()) / max(steps.max() - steps.min(), 1.0) * (x1 - x0)
    ys = y1 - (values - lo) / (hi - lo) * (y1 - y0)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(30, 90, 180), width=2)
    draw.text((x0, 6), tag, fill="black")
    draw.text((4, y0), f"{hi:.3g}", fill=(90, 90, 90))
    draw.text((4, y1 - 10), f"{lo:.3g}", fill=(90, 90, 90))
    draw.text((x0, y1 + 6), f"step {int(steps.min())}", fill=(90, 90, 90))
    draw.text((x1 - 70, y1 + 6), f"step {int(steps.max())}", fill=(90, 90, 90))
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--tags", default="G/l1/128,G/adv,G/critic/64/photo,G/critic/64/variation,"
                                          "D/loss,critic/loss")
    args = parser.parse_args()
    series = read_scalars(args.workdir, args.tags.split(","))
    if not series:
        raise SystemExit(f"error: no scalars {args.tags} in {args.workdir}/events")
    write_sheet(series, args.output)
    print(f"wrote {args.output} ({', '.join(series)})")


if __name__ == "__main__":
    main()
