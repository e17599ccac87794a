"""How the expression grows with --intensity on real photos: the full-photo
evaluation (sharpness, identity, two-sample test, disjoint-subject happy
judge) at each intensity, one table.

    python scripts/intensity_curve.py --model=mlc_keras/weights/london_neutral_happy_128.keras \
        --photos_dir=../shared/data/london --subjects=124,125,... --output=/tmp/intensity \
        [--intensities=0,0.25,0.5,0.75,1,1.25]

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
    parser.add_argument("--photos_dir", required=True)
    parser.add_argument("--subjects", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--intensities", default="0,0.25,0.5,0.75,1,1.25")
    args = parser.parse_args()

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
            rows.append({
                "intensity": value,
                "happy_rate": judge.get("generated_rate"),
                "real_happy_rate": judge.get("real_rate"),
                "happy_rate_ratio": judge.get("ratio"),
                "identity_distance": result["identity"].get("generated_vs_source_mean"),
                "sharpness_ratio": result["sharpness"].get("mean"),
                "two_sample_accuracy": result["two_sample"].get("accuracy"),
                "seconds": round(time.time() - start, 1),
            })
            print(json.dumps(rows[-1]), flush=True)
        write_json_atomic(os.path.join(args.output, "intensity.json"),
                          {"model": args.model, "subjects": subjects, "rows": rows})
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines = ["| intensity | happy rate (judge) | ratio to real | identity distance | "
                 "sharpness ratio | two-sample acc. |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['intensity']:g} | {fmt(r['happy_rate'])} | {fmt(r['happy_rate_ratio'])} | "
                  f"{fmt(r['identity_distance'])} | {fmt(r['sharpness_ratio'])} | "
                  f"{fmt(r['two_sample_accuracy'])} |" for r in rows]
        write_text_atomic(os.path.join(args.output, "intensity.md"), "\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
