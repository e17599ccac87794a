"""Evaluation reports: JSON-safe results, Markdown, TensorBoard scalars (imports images only).

``write_reports(results, output, split, events_dir, step)`` writes results.json,
results.md and split.json into ``output`` (each never half-written) and, with
``events_dir``, the scalars to TensorBoard under ``eval/...`` at ``step``.
"""

import math
import os

import numpy as np

from mlc_keras.images import write_json_atomic, write_text_atomic


def clean(value):
    """JSON-safe: numpy -> Python, nan/inf -> None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


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


def write_reports(results, output, split, events_dir=None, step=0):
    """Writes split.json, results.md and results.json (with "paths" naming
    them) into ``output``; with ``events_dir`` also the TensorBoard scalars.
    ``results`` must already be JSON-safe (see ``clean``). Returns it."""
    os.makedirs(output, exist_ok=True)
    paths = {"json": os.path.join(output, "results.json"),
             "markdown": os.path.join(output, "results.md"),
             "split": os.path.join(output, "split.json")}
    results["paths"] = paths
    write_json_atomic(paths["split"], split, indent=1, sort_keys=False)
    write_text_atomic(paths["markdown"], render_markdown(results))
    write_json_atomic(paths["json"], results, indent=1, sort_keys=False, allow_nan=False)
    if events_dir:
        _write_summaries(events_dir, step, _scalars(results))
    return results


def console_summary(results):
    """The lines the evaluate command prints when it is done."""
    c = results["classification"]
    return (f"classification error: real {_fmt(c['real']['overall'])}, generated "
            f"{_fmt(c['generated']['overall'])}\n"
            f"report: {results['paths']['markdown']}\nresults: {results['paths']['json']}")
