"""The non-learned reference smile, judged like a model on real photos (issue 10).

Fits ``mlc_keras.evaluation.template_smile`` on the training subjects' London
pairs (the mean landmark motion of the closed-lip smiles, and with
--shading_sigma > 0 a smooth shading gain) and runs the full-photo
evaluation (``evaluation.photos``: sharpness, identity, two-sample test,
disjoint-subject judge, FER2013 judge, contact and mouth sheets) on the
held-out subjects with that edit in place of a generator:

    python scripts/template_smile.py --photos_dir=../shared/data/london \\
        --subjects=124,125,126,127,128,129,130,131,132,134,135,136,137,138,139,140,141,142,143,144,172,173 \\
        --output=/tmp/template_smile [--scale=1.5] [--shading_sigma=0.05] [--all_smiles]

--train_subjects defaults to every paired subject not in --subjects. OUTPUT
gets photos.json / photos.md / the sheets (outside a git checkout: they are
pictures of London faces) and template.json (the fitted motion and the
subjects it came from; the shading field is not written).
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos_dir", required=True, help="London-layout folder")
    parser.add_argument("--subjects", required=True, help="held-out subjects to evaluate, comma-separated")
    parser.add_argument("--train_subjects", default="",
                        help="subjects the template is fitted on (default: all the others)")
    parser.add_argument("--output", required=True, help="folder for the results (not in a checkout)")
    parser.add_argument("--scale", type=float, default=1.5, help="the mean motion's scale")
    parser.add_argument("--shading_sigma", type=float, default=0.05,
                        help="shading low-pass in eye distances (0: motion only)")
    parser.add_argument("--gain_scale", type=float, default=1.0, help="the shading gain's scale")
    parser.add_argument("--all_smiles", action="store_true",
                        help="average every smile's motion, not only the closed-lip ones")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from mlc_keras.data import align
    from mlc_keras.data.sources import london
    from mlc_keras.errors import UserError
    from mlc_keras.evaluation import photos, template_smile
    from mlc_keras.images import write_json_atomic

    try:
        subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
        neutral, smiling = london.scan_london(args.photos_dir)
        train = [s.strip() for s in args.train_subjects.split(",") if s.strip()] or \
            sorted(set(neutral) & set(smiling) - set(subjects))
        overlap = sorted(set(train) & set(subjects))
        if overlap:
            raise UserError(f"--train_subjects and --subjects share {', '.join(overlap)}")
        photos._check_output(args.output)
        aligner = align.get_default_aligner()
        start = time.time()
        template = template_smile.fit_template(
            template_smile.london_pairs(args.photos_dir, train, aligner),
            closed_only=not args.all_smiles, sigma=args.shading_sigma)
        fitted = time.time() - start
        label = (f"template smile (scale {args.scale:g}, shading sigma {args.shading_sigma:g}, "
                 f"{len(template.subjects)} {'all' if args.all_smiles else 'closed-lip'} smiles)")
        results = photos.evaluate_photos(
            label, args.photos_dir, subjects, args.output, generator_subjects=train,
            seed=args.seed, aligner=aligner,
            editor=template_smile.photo_editor(template, aligner, args.scale, args.gain_scale))
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json_atomic(os.path.join(args.output, "template.json"),
                      {"subjects": list(template.subjects), "closed_only": template.closed_only,
                       "scale": args.scale, "shading_sigma": args.shading_sigma,
                       "gain_scale": args.gain_scale, "fit_seconds": round(fitted, 1),
                       "motion": template.motion.round(5).tolist()}, indent=1, sort_keys=False)
    print(photos.console_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
