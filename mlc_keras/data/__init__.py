"""Data: published layouts -> manifest -> pairs -> tf.data."""
