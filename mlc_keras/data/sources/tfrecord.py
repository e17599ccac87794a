"""The streamed source: TFRecord shards and their tfrecords.json in ``--data_dir``, written by ``python -m mlc_keras.data.to_tfrecord``.

Training reads them through ``mlc_keras.data.tfrecord.TFRecordSet`` without
decoding the set into memory; nothing is written to the data cache.
"""

from mlc_keras.data.sources import Source


def prepare(config, cache_dir):
    """``--dataset=tfrecord``: the path of the set's tfrecords.json, its
    manifest and shards checked (one line naming a missing or damaged file)."""
    from mlc_keras.data import tfrecord  # TensorFlow: only when this source is used

    return tfrecord.open_set(config.data_dir).path


SOURCE = Source("tfrecord", prepare, streaming=True)
