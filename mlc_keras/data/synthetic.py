"""Temporary alias of sources/synthetic.py for training/loop.py; delete once loop.py uses data.prepare."""

from mlc_keras.data.sources.synthetic import write_synthetic_dataset  # noqa: F401
