"""Temporary alias of sources/london.py for training/loop.py; delete once loop.py uses data.prepare."""

from mlc_keras.data.sources.london import import_london  # noqa: F401
