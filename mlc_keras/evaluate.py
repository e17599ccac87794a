"""python -m mlc_keras.evaluate: evaluates a trained run on its held-out subjects (command only).

    python -m mlc_keras.evaluate --workdir=RUN [--output=DIR] [--classifier=alexnet]
        [--classifier_epochs=30] [--kid_subsets=100] [--kid_subset_size=1000]

Writes results.json, results.md and split.json (default RUN/eval) and the
scalars to TensorBoard; see ``mlc_keras.evaluation.run.evaluate_run``.
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("workdir", "", "Training run folder to evaluate."),
    ("output", "", "Report folder (default WORKDIR/eval)."),
    ("classifier", "alexnet", "Expression classifier architecture.", ("alexnet", "small")),
    ("classifier_epochs", 30, "Training epochs of the classifier."),
    ("classifier_width", 0.0, "Classifier width multiplier (0: the default)."),
    ("classifier_lr", 0.0, "Classifier Adam learning rate (0: 1e-3 for alexnet, 2e-3 for small). "
                           "AlexNet on a few hundred images may need 3e-4."),
    ("classifier_cache", "", "Folder of cached classifiers (default the run's data cache). Point "
                             "runs on one data set and split at one folder to judge them all "
                             "with the same classifier."),
    ("kid_subsets", 100, "KID: number of random subsets."),
    ("kid_subset_size", 1000, "KID: rows per subset (clipped to the data)."),
    ("seed", 0, "Seed of the classifier training and the KID subsets."),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    print(configure_cpu(), flush=True)  # before TensorFlow is imported
    from mlc_keras.evaluation import report, run

    f = flags.FLAGS
    results = run.evaluate_run(
        f.workdir, f.output or None, classifier=f.classifier,
        classifier_epochs=f.classifier_epochs, classifier_width=f.classifier_width or None,
        classifier_cache=f.classifier_cache or None, kid_subsets=f.kid_subsets,
        classifier_lr=f.classifier_lr or None, kid_subset_size=f.kid_subset_size, seed=f.seed)
    print(report.console_summary(results))
    return 0


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
