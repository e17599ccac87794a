"""python -m mlc_keras.train --flagfile=configs/demo.flags --workdir=runs/demo

Trains the multi-level critic GAN, or resumes the run in --workdir. Every
flag is documented in mlc_keras/config.py (or: --helpfull). --dry_run checks
the config and the data, prints both, and trains nothing.
"""

from absl import app, flags

from mlc_keras import config as config_lib
from mlc_keras import errors


DRY_RUN = (("dry_run", False, "Validate the config and the data, print the resolved config and a "
                               "data summary (subjects, pairs per expression, split), and exit "
                               "without training."),)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import check_precision_kernels, configure_cpu

    note = configure_cpu()  # before TensorFlow is imported
    config = config_lib.config_from_flags()
    check_precision_kernels(config.mixed_precision)
    print(note, flush=True)
    from mlc_keras.training.loop import dry_run, train

    (dry_run if flags.FLAGS.dry_run else train)(config)


if __name__ == "__main__":
    config_lib.define_flags()
    config_lib.define_spec(DRY_RUN)
    errors.run(main)
