"""python -m mlc_keras.data.to_tfrecord --flagfile=configs/tiny.flags --output=/tmp/tiny_tfr --shards=4

Writes the data set that the training flags name (--dataset, --data_dir, its
split and pairing, --resolution, --expressions) as sharded TFRecords, one
record per training pair, and a tfrecords.json manifest; train from it with
--dataset=tfrecord --data_dir=OUTPUT. Format: mlc_keras/data/tfrecord.py.
"""

from mlc_keras import config as config_lib
from mlc_keras import errors

FLAGS_SPEC = (
    ("output", "", "Folder to write the shards and tfrecords.json to (must not hold a set yet)."),
    ("shards", 16, "Training shards (pairs are dealt round-robin; at least as many as the "
                   "workers that will read them, e.g. 8-16 per worker)."),
    ("test_shards", 1, "Shards of the held-out pairs."),
    ("image_format", "png", "How the images are stored: png (lossless) or jpeg (quality 95).",
     ("png", "jpeg")),
)


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from mlc_keras.training.runtime import configure_cpu

    configure_cpu()  # before TensorFlow is imported
    from mlc_keras.data import tfrecord

    f = flags.FLAGS
    records = tfrecord.convert(config_lib.config_from_flags(), f.output, f.shards, f.test_shards,
                               f.image_format)
    print(f"wrote {records.path}: {tfrecord.describe(records)}", flush=True)


if __name__ == "__main__":
    config_lib.define_flags()
    config_lib.define_spec(FLAGS_SPEC)
    errors.run(main)
