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
    lines += ["## Expression classification error (paper protocol)", "",
              f"{_protocol(c)} (real images only): classifier `{clf['arch']}` "
              f"({clf['train_images']} images, {clf['epochs']} epochs; "
              f"{'reloaded from cache' if clf['cached'] else 'trained now'}: `{clf['path']}`). "
              "It may have learned the generator's own training faces; see the disjoint-subject "
              "judge below.", ""]
    lines += _error_table(c, clf.get("warning"), r["expressions"])
    lines += _judge_lines(r)
    lines += ["", "## Identity, realism and fidelity", "",
              "| metric | value |", "|---|---|"]
    lines += _honest_rows(r)
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


def _protocol(section):
    text = section.get("protocol") or "paper protocol"
    return text[0].upper() + text[1:]


def _error_table(c, warning, expressions, ratios=None):
    """Warning, suspect note and the real / generated error table of a
    classification section; with ``ratios`` a target-rate column."""
    lines = [f"**Warning: {warning}**", ""] if warning else []
    if c.get("suspect"):
        lines += [f"**{c['suspect']}**", ""]
    extra = " target rate generated / real |" if ratios is not None else ""
    lines += ["| expression | real held-out error | n | generated error | n |" + extra,
              "|---|---|---|---|---|" + ("---|" if extra else "")]
    names = sorted(set(c["real"]["per_expression"]) | set(c["generated"]["per_expression"]),
                   key=expressions.index)
    for name in names:
        a = c["real"]["per_expression"].get(name, {})
        b = c["generated"]["per_expression"].get(name, {})
        q = (ratios or {}).get(name, {})
        cell = (f" {_fmt(q.get('ratio'))} ({_fmt(q.get('generated_rate'))} / "
                f"{_fmt(q.get('real_rate'))}) |" if extra else "")
        lines.append(f"| {name} | {_fmt(a.get('error'))} | {a.get('n', 0)} | "
                     f"{_fmt(b.get('error'))} | {b.get('n', 0)} |" + cell)
    lines.append(f"| **overall** | {_fmt(c['real']['overall'])} | {c['real']['n']} | "
                 f"{_fmt(c['generated']['overall'])} | {c['generated']['n']} |"
                 + (" |" if extra else ""))
    return lines


def _judge_lines(r):
    """The disjoint-subject expression judge's table (results["expression_judge"])."""
    j = r.get("expression_judge")
    if not j:
        return []
    lines = ["", "## Expression judge on subjects disjoint from the generator's", "",
             f"{_protocol(j)}; classifier `{j.get('arch')}`, {j.get('epochs')} epochs.", ""]
    if not j.get("available"):
        return lines + [f"Unavailable: {j.get('reason')}"]
    return lines + _error_table(j, j.get("warning"), r["expressions"], j.get("rate_ratio", {}))


def two_sample_cell(t):
    """'0.6250 [0.40, 0.81] (n=16 test images)' or 'unavailable: ...'."""
    if not t or not t.get("available"):
        return f"unavailable: {(t or {}).get('reason')}"
    return (f"{_fmt(t['accuracy'])} [{_fmt(t['ci_low'], 2)}, {_fmt(t['ci_high'], 2)}] "
            f"(n={t['n_test']} test images, {len(t['test_subjects'])} test subjects)")


def verification_cell(v):
    """Mean distances and verification rates, generated vs real."""
    return (f"{_fmt(v['generated_vs_source_mean'])} (real same person "
            f"{_fmt(v['real_same_person_mean'])}); verification rate at {v['threshold']:g}: "
            f"{_fmt(v['generated_verification_rate'], 3)} "
            f"(real {_fmt(v['real_verification_rate'], 3)})")


def _honest_rows(r):
    rows = []
    if "two_sample" in r:
        rows.append("| two-sample test: real vs generated accuracy (0.5 = indistinguishable), "
                    f"95% CI | {two_sample_cell(r['two_sample'])} |")
    if "sharpness" in r:
        sh = r["sharpness"]
        rows.append(f"| sharpness: Laplacian variance generated / source ({sh.get('where')}) | "
                    f"mean {_fmt(sh['mean'])}, median {_fmt(sh['median'])} (n={sh['n_finite']}) |")
    v = r["identity"].get("verification")
    if v:
        rows.append(f"| identity: dlib distance generated vs source, expression-changing pairs | "
                    f"{verification_cell(v)} |")
    return rows


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
        v = ident.get("verification", {})
        walk("eval/identity/verification", {k: v.get(f"{k}_verification_rate")
                                            for k in ("generated", "real")})
    j = results.get("expression_judge", {})
    if j.get("available"):
        walk("eval/judge", {"real_error": j["real"]["overall"],
                            "generated_error": j["generated"]["overall"]})
    if results.get("two_sample", {}).get("available"):
        walk("eval/two_sample_accuracy", results["two_sample"]["accuracy"])
    if "sharpness" in results:
        walk("eval/sharpness_ratio", results["sharpness"]["mean"])
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
    lines = [f"classification error ({c.get('protocol', 'paper protocol')}): real "
             f"{_fmt(c['real']['overall'])}, generated {_fmt(c['generated']['overall'])}"
             + (f"  [{c['suspect']}]" if c.get("suspect") else "")]
    j = results.get("expression_judge", {})
    if j.get("available"):
        lines.append(f"disjoint-subject judge error: real {_fmt(j['real']['overall'])}, generated "
                     f"{_fmt(j['generated']['overall'])}"
                     + (f"  [{j['suspect']}]" if j.get("suspect") else ""))
    elif j:
        lines.append(f"disjoint-subject judge: unavailable: {j.get('reason')}")
    if "two_sample" in results:
        lines.append(f"two-sample test accuracy (0.5 = indistinguishable): "
                     f"{two_sample_cell(results['two_sample'])}")
    if "sharpness" in results:
        lines.append(f"sharpness generated / source: {_fmt(results['sharpness']['mean'])}")
    v = results["identity"].get("verification")
    if v:
        lines.append(f"identity distance generated vs source: {verification_cell(v)}")
    lines += [f"report: {results['paths']['markdown']}", f"results: {results['paths']['json']}"]
    return "\n".join(lines)
