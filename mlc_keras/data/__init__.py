"""Data: published layouts -> manifest -> pairs -> tf.data. May not import models or training."""
