"""The shipped generator: checksum verified on load, used when no model is given."""

import json
import os

import pytest

from mlc_keras import weights
from mlc_keras.config import make_config
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy")


@pytest.fixture()
def folder(tmp_path):
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    options = json.loads(__import__("mlc_keras.config", fromlist=["to_json"]).to_json(config))
    weights.write(generator, options, "tiny", {"note": "test"}, folder=str(tmp_path))
    return tmp_path


def test_write_then_verified_path(folder):
    assert weights.names(str(folder)) == ["tiny"]
    path = weights.path("tiny", str(folder))
    assert path.endswith("tiny.keras") and os.path.getsize(path) > 0
    meta = weights.info("tiny", str(folder))
    assert meta["options"]["resolution"] == 16 and len(meta["sha256"]) == 64
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp")]


def test_damaged_or_missing_file_is_refused(folder):
    path = os.path.join(folder, "tiny.keras")
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(weights.WeightsError, match="damaged or was replaced"):
        weights.path("tiny", str(folder))
    os.remove(path)
    with pytest.raises(weights.WeightsError, match="missing"):
        weights.path("tiny", str(folder))
    with pytest.raises(weights.WeightsError, match="no shipped model 'other'"):
        weights.path("other", str(folder))


def test_no_model_means_the_shipped_one(folder, monkeypatch):
    from mlc_keras.inference import loading

    monkeypatch.setattr(weights, "FOLDER", str(folder))
    monkeypatch.setattr(weights, "DEFAULT_MODEL", "tiny")
    monkeypatch.setattr(weights.path, "__defaults__", ("tiny", str(folder)))
    monkeypatch.setattr(weights.info, "__defaults__", ("tiny", str(folder)))
    model = loading.load_model_for_synthesis("")
    assert model.resolution == 16 and model.expressions == ("neutral", "happy")
    assert model.can_composite and "shipped model" in model.source
    assert loading.load_generator(None).resolution == 16


def test_the_package_ships_a_verified_model():
    if not weights.names():
        pytest.skip("no shipped model in this checkout yet")
    meta = weights.info()
    path = weights.path()
    assert os.path.getsize(path) <= 30 * 2 ** 20
    assert meta["options"]["expressions"] == ["neutral", "happy"]
    assert set(meta["options"]["test_subjects"]) >= {"124", "144", "172", "173"}
