"""Markdown tables of evaluated runs for RESULTS.md.

    python scripts/results_table.py synth_mlc synth_pix2pix ... [--runs_dir=runs]

Reads RUNS_DIR/NAME/eval/results.json and RUNS_DIR/results_times.tsv (written
by scripts/results.sh) and prints a summary table, then the per-expression
classification error of generated faces, then the honest realism metrics
(real-vs-generated two-sample test, sharpness, identity verification, the
disjoint-subject expression judge; "n/a" for results from before them).
"""

import argparse
import json
import os


def load_times(path):
    times = {}
    if os.path.isfile(path):
        for line in open(path):
            name, _, *fields = line.rstrip("\n").split("\t")
            times[name] = dict(f.split("=") for f in fields)  # the newest line wins
    return times


def pct(x):
    return f"{100 * x:.1f}"


def pct_se(block):
    """Error in % with its binomial standard error over the n images."""
    p, n = block["overall"], block["n"]
    return f"{100 * p:.1f} ± {100 * (p * (1 - p) / max(n, 1)) ** 0.5:.1f} (n={n})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+")
    parser.add_argument("--runs_dir", default="runs")
    args = parser.parse_args()
    times = load_times(os.path.join(args.runs_dir, "results_times.tsv"))
    results = {n: json.load(open(os.path.join(args.runs_dir, n, "eval", "results.json")))
               for n in args.names}
    print("| run | steps | train wall | real err % ± s.e. | generated err % ± s.e. | identity gen-src "
          "(same person / different) | KID x1e3 ± s.e. | SSIM | PSNR dB | L1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        c, i, k, f = r["classification"], r["identity"], r["realism"], r["fidelity"]
        t = times.get(name, {})
        wall = f"{int(t['train_s']) / 60:.1f} min" if "train_s" in t else "?"
        ident = (f"{i['generated_vs_source']['mean']:.3f} ({i['same_person']['mean']:.3f} / "
                 f"{i['different_people']['mean']:.3f})" if i.get("available") else "n/a")
        kid = (f"{1e3 * k['kid']:.3f} ± {1e3 * k['kid_stderr']:.3f}" if k.get("available")
               else "n/a")
        print(f"| {name} | {r['step']} | {wall} | {pct_se(c['real'])} | "
              f"{pct_se(c['generated'])} | {ident} | {kid} | "
              f"{f['ssim']['mean']:.3f} | {f['psnr']['mean']:.2f} | {f['l1']['mean']:.4f} |")
    expressions = next(iter(results.values()))["expressions"]
    print()
    print("| run | " + " | ".join(expressions) + " |")
    print("|---|" + "---|" * len(expressions))
    for name, r in results.items():
        per = r["classification"]["generated"]["per_expression"]
        print(f"| {name} | " + " | ".join(pct(per[e]["error"]) for e in expressions) + " |")
    print()
    print("| run | two-sample acc (95% CI; 0.5 = indistinguishable) | sharpness gen/src | "
          "identity gen-src (real) / verification @0.6 gen (real) | judge err real / gen % | "
          "paper-protocol note |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(honest_cells(r)) + " |")


def honest_cells(r):
    """The honest-metric cells of one results.json ("n/a" where absent)."""
    t, sh = r.get("two_sample", {}), r.get("sharpness", {})
    v, j = r.get("identity", {}).get("verification"), r.get("expression_judge", {})
    two = (f"{t['accuracy']:.2f} [{t['ci_low']:.2f}, {t['ci_high']:.2f}]"
           if t.get("available") else "n/a")
    sharp = f"{sh['mean']:.2f}" if sh.get("mean") is not None else "n/a"
    ident = (f"{v['generated_vs_source_mean']:.3f} ({v['real_same_person_mean']:.3f}) / "
             f"{v['generated_verification_rate']:.2f} ({v['real_verification_rate']:.2f})"
             if v and v.get("generated_vs_source_mean") is not None
             and v.get("real_same_person_mean") is not None else "n/a")
    judge = (f"{pct(j['real']['overall'])} / {pct(j['generated']['overall'])}"
             + (" (suspect)" if j.get("suspect") else "") if j.get("available") else "n/a")
    paper = "suspect" if r["classification"].get("suspect") else ""
    return [two, sharp, ident, judge, paper]


if __name__ == "__main__":
    main()
