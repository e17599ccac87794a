"""Test setup: two logical CPU devices (for the MirroredStrategy tests), set
before any TensorFlow op runs, and the location of the real London set."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tiny import CONFIGS, REPO_ROOT  # noqa: E402,F401  (re-exported for tests)

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


def london_dir():
    """The London Set folder (MLC_LONDON_DIR, default ../shared/data/london
    beside the repository), or skip the calling test with a visible reason."""
    path = os.environ.get("MLC_LONDON_DIR") or os.path.join(REPO_ROOT, "..", "shared", "data",
                                                            "london")
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "neutral_front")):
        pytest.skip(f"London set not found at {path}; set MLC_LONDON_DIR to run this test")
    return path


@pytest.fixture(scope="module")
def aligner():
    """The shared dlib face aligner, or skip when dlib-bin / its models are absent."""
    pytest.importorskip("dlib", reason="dlib not importable: pip install dlib-bin "
                                       "face_recognition_models")
    from mlc_keras.data import align

    try:
        align._predictor_path(68)
    except align.MissingDependencyError as e:
        pytest.skip(str(e))
    return align.get_default_aligner()
