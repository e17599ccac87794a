"""How the expression grows with --intensity, on real photos or on the synthetic set.

Real photos: the full-photo evaluation (sharpness, identity, two-sample
test, disjoint-subject happy judge) at each intensity, one table.

    python scripts/intensity_curve.py --model=mlc_keras/weights/london_neutral_happy_128.keras \
        --photos_dir=../shared/data/london --subjects=124,125,... --output=/tmp/intensity \
        [--intensities=0,0.25,0.5,0.75,1,1.25]

Synthetic set (a model trained with --dataset=synthetic; subjects are
indices, keep them out of the model's training split): the drawn intensity
read back from the renderer and p(target) of a judge trained on the real
renders of --judge_subjects (``mlc_keras.evaluation.intensity``), per
expression, with --method=scale (the library's intensity) or condition
(conditioning interpolation, for comparison).

    python scripts/intensity_curve.py --model=synthetic_demo_64 \
        --synthetic_seed=0 --subjects=1,30,46,55 --judge_subjects=120-179 --output=/tmp/curve

Writes OUTPUT/intensity.json and OUTPUT/intensity.md (and one evaluation
folder per intensity, contact sheets included: keep OUTPUT outside the git
checkout, the evaluation refuses it otherwise). The judge is the same at
every intensity (trained on the same real crops with the same seed), so its
happy rate is comparable across rows.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--photos_dir", help="real photos (London layout)")
    parser.add_argument("--synthetic_seed", type=int,
                        help="measure on the synthetic set rendered with this seed instead")
    parser.add_argument("--subjects", required=True,
                        help="photo subjects, or synthetic indices (a-b ranges allowed)")
    parser.add_argument("--judge_subjects", default="",
                        help="synthetic: indices whose real renders train the judge")
    parser.add_argument("--method", default="scale", choices=("scale", "condition"))
    parser.add_argument("--output", required=True)
    parser.add_argument("--intensities", default="0,0.25,0.5,0.75,1,1.25")
    args = parser.parse_args()
    if (args.photos_dir is None) == (args.synthetic_seed is None):
        parser.error("give exactly one of --photos_dir and --synthetic_seed")
    if args.synthetic_seed is not None:
        return synthetic(args)

    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()
    from mlc_keras import errors
    from mlc_keras.evaluation.photos import evaluate_photos
    from mlc_keras.inference.edits import parse_intensities
    from mlc_keras.inference.loading import load_model_for_synthesis
    from mlc_keras.images import write_json_atomic, write_text_atomic

    with errors.exit_on_user_error():
        intensities = parse_intensities(args.intensities)
        model = load_model_for_synthesis(args.model)
        subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
        rows = []
        for value in intensities:
            start = time.time()
            result = evaluate_photos(model, args.photos_dir, subjects,
                                     os.path.join(args.output, f"intensity_{value:g}"),
                                     intensity=value)
            judge = result["judge"].get("happy_rate", {})
            ext = result.get("external_judge", {})
            rows.append({
                "intensity": value,
                "happy_rate": judge.get("generated_rate"),
                "real_happy_rate": judge.get("real_rate"),
                "happy_rate_ratio": judge.get("ratio"),
                "external_happy_rate": ext.get("generated", {}).get("happy_rate"),
                "external_rate_ratio": ext.get("rate_ratio"),
                "external_mean_p_ratio": ext.get("mean_p_ratio"),
                "identity_distance": result["identity"].get("generated_vs_source_mean"),
                "sharpness_ratio": result["sharpness"].get("mean"),
                "two_sample_accuracy": result["two_sample"].get("accuracy"),
                "seconds": round(time.time() - start, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
        write_json_atomic(os.path.join(args.output, "intensity.json"),
                          {"model": args.model, "subjects": subjects, "rows": rows})
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines = ["| intensity | happy rate (judge) | ratio to real | external judge: rate ratio | "
                 "external judge: mean p(happy) ratio | identity distance | "
                 "sharpness ratio | two-sample acc. |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['intensity']:g} | {fmt(r['happy_rate'])} | {fmt(r['happy_rate_ratio'])} | "
                  f"{fmt(r['external_rate_ratio'])} | {fmt(r['external_mean_p_ratio'])} | "
                  f"{fmt(r['identity_distance'])} | {fmt(r['sharpness_ratio'])} | "
                  f"{fmt(r['two_sample_accuracy'])} |" for r in rows]
        write_text_atomic(os.path.join(args.output, "intensity.md"), "\n".join(lines) + "\n")
        print("\n".join(lines))


def indices(text, name):
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            sys.exit(f"--{name}={text}: {part!r} is not an index or a range a-b")
    return out


def synthetic(args):
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()
    from mlc_keras import errors
    from mlc_keras.evaluation import intensity
    from mlc_keras.images import write_json_atomic, write_text_atomic
    from mlc_keras.inference.edits import parse_intensities
    from mlc_keras.inference.loading import load_model_for_synthesis

    with errors.exit_on_user_error():
        values = parse_intensities(args.intensities)
        subjects = indices(args.subjects, "subjects")
        judge_subjects = indices(args.judge_subjects, "judge_subjects")
        overlap = sorted(set(subjects) & set(judge_subjects))
        if overlap:
            sys.exit(f"--judge_subjects: {overlap} are also measured subjects; keep them apart")
        model = load_model_for_synthesis(args.model)
        start = time.time()
        judge = None
        if judge_subjects:
            judge = intensity.train_judge(judge_subjects, args.synthetic_seed, model.resolution,
                                          tuple(model.expressions))
        result = intensity.intensity_curve(model, subjects, args.synthetic_seed, values,
                                           judge=judge, method=args.method)
        result.update(model=args.model, judge_subjects=judge_subjects,
                      seconds=round(time.time() - start, 1))
        os.makedirs(args.output, exist_ok=True)
        write_json_atomic(os.path.join(args.output, "intensity.json"), result)
        table = intensity.curve_markdown(result)
        write_text_atomic(os.path.join(args.output, "intensity.md"), table)
        print(table)


if __name__ == "__main__":
    main()
