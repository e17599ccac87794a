"""python -m mlc_keras.launch --workers=2 -- --flagfile=configs/tiny.flags --workdir=runs/tiny2

Multi-worker training on this machine: starts --workers processes of
``python -m mlc_keras.train`` with the arguments after ``--`` and
--strategy=multi_worker, each with its TF_CONFIG (free 127.0.0.1 ports;
worker 0 is the chief and alone writes the run folder). Their output is
prefixed ``[worker N]``; when one fails the others are stopped and its exit
code is returned. Rerun the same command to resume. On a cluster, set
TF_CONFIG per host and run ``python -m mlc_keras.train`` (README "Scale out").
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("workers", 2, "Worker processes to start (one TF_CONFIG task each)."),
)


def main(argv):
    from absl import app, flags

    if len(argv) < 2:
        raise app.UsageError("give the training flags after --, e.g. -- "
                             "--flagfile=configs/tiny.flags --workdir=runs/tiny2")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()  # the workers inherit its settings
    from mlc_keras.training.launcher import launch

    return launch(flags.FLAGS.workers, argv[1:])


if __name__ == "__main__":
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
