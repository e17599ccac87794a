"""TensorBoard scalars are window means, not Keras's whole-run running means."""

import types

import numpy as np
import pytest
import tensorflow as tf

from mlc_keras.training.callbacks import ScalarSummaries


class FakeOptimizer:
    def __init__(self, name):
        self.name = name
        self.iterations = tf.Variable(0, dtype=tf.int64)
        self.learning_rate = 1e-3


@pytest.mark.parametrize("start", [0, 6])  # a fresh run, and a resumed one
def test_each_scalar_is_the_mean_since_the_previous_write(tmp_path, start):
    g = FakeOptimizer("g_optimizer")
    g.iterations.assign(start)
    model = types.SimpleNamespace(g_optimizer=g, d_optimizer=FakeOptimizer("d"), c_optimizer=None)
    writer = tf.summary.create_file_writer(str(tmp_path))
    callback = ScalarSummaries(writer, every=2)
    callback.set_model(model)
    callback.on_train_begin()
    losses = [1.0, 2.0, 3.0, 7.0, 5.0, 5.0]
    for i, _ in enumerate(losses):
        g.iterations.assign_add(1)
        running = np.mean(losses[:i + 1])  # what Keras logs
        callback.on_train_batch_end(i, {"G/loss": running})
    writer.close()
    written = {}
    for name in tf.io.gfile.listdir(str(tmp_path)):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / name)):
            for value in event.summary.value:
                if value.tag == "G/loss":
                    written[event.step] = float(tf.make_ndarray(value.tensor))
    assert written == pytest.approx({start + 2: 1.5, start + 4: 5.0, start + 6: 5.0})
