"""Plain Keras loading (issue 11): ``import mlc_keras`` is enough for
``keras.saving.load_model`` on a generator's ``.keras`` file, in a FRESH
process (in the test process the classes are registered already), without
``import mlc_keras`` importing TensorFlow itself."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")

CHECK = """
import sys
{first}
assert "tensorflow" not in sys.modules or "keras" in sys.modules, "mlc_keras imported TensorFlow"
{second}
model = keras.saving.load_model(sys.argv[1])
print(type(model).__name__, model.expressions, model.resolution)
"""


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    from mlc_keras.config import make_config
    from mlc_keras.training.build import build_generator

    path = str(tmp_path_factory.mktemp("keras_loading") / "mlc-1.keras")
    build_generator(make_config(**TINY)).build_for_inputs().save(path)
    return path


@pytest.mark.parametrize("order", ["mlc_keras_first", "keras_first"])
def test_import_mlc_keras_is_enough_in_a_fresh_process(keras_file, order):
    lines = ("import mlc_keras", "import keras")
    first, second = lines if order == "mlc_keras_first" else lines[::-1]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", CHECK.format(first=first, second=second),
                           keras_file], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "Generator"
    assert "('neutral', 'happy', 'sad') 16" in proc.stdout


def test_package_import_does_not_import_tensorflow():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import sys, mlc_keras; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
