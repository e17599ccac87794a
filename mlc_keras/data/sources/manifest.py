"""The user's own manifest CSV (``--data_dir`` is the CSV or the folder holding manifest.csv)."""

import os

from mlc_keras.data.manifest import MANIFEST_NAME, ManifestError
from mlc_keras.data.sources import Source


def prepare(config, cache_dir):
    """``--dataset=manifest``: the CSV itself; nothing is written to ``cache_dir``."""
    path = config.data_dir
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ManifestError(f"--data_dir={config.data_dir}: no manifest CSV found at {path!r} "
                            "(columns path,subject,expression[,split])")
    return path


SOURCE = Source("manifest", prepare)
