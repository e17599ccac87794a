"""python -m mlc_keras.train --flagfile=configs/demo.flags [--workdir=...]

Trains the multi-level critic GAN, or resumes the run in --workdir. Every
flag is documented in mlc_keras/config.py (or: --helpfull).
"""

from absl import app

from mlc_keras import config as config_lib
from mlc_keras import errors


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    note = configure_cpu()  # before TensorFlow is imported
    config = config_lib.config_from_flags()
    print(note, flush=True)
    from mlc_keras.training.loop import train

    train(config)


if __name__ == "__main__":
    config_lib.define_flags()
    errors.run(main)
