"""Config: every preset parses and validates; bad values are refused with a
message naming the flag; the tiny preset is what the tests use."""

import glob
import os

import pytest
from absl import flags

from mlc_keras import config as config_lib
from mlc_keras.config import ConfigError, make_config
from tiny import CONFIGS, REPO_ROOT, TINY, tiny_overrides

PRESETS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.flags")))


def parse_flagfile(name, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # presets include configs/base.flags relative to the repo
    fv = flags.FlagValues()
    config_lib.define_flags(fv)
    fv(["prog"] + fv.read_flags_from_files([f"--flagfile=configs/{name}"], force_gnu=False))
    return config_lib.config_from_flags(fv)


def test_presets_found():
    assert {"base.flags", "tiny.flags", "london.flags", "pnas.flags"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_parses_and_validates(name, monkeypatch):
    config = parse_flagfile(name, monkeypatch)
    assert config.resolution in (16, 32, 64, 128, 256)
    assert len(config.expressions) >= 2


def test_tiny_preset_is_the_tests_setting(tmp_path, monkeypatch):
    from_file = parse_flagfile("tiny.flags", monkeypatch)
    overrides = tiny_overrides(tmp_path)
    from_tests = make_config(**overrides)
    differing = {f for f in overrides if getattr(from_file, f) != getattr(from_tests, f)}
    assert differing == {"workdir", "data_cache", "verbose"}
    assert from_tests.resolution == int(TINY["resolution"])


@pytest.mark.parametrize("overrides,message", [
    (dict(model="gan"), "--model=gan: expected one of"),
    (dict(gan_loss="softmax"), "--gan_loss=softmax: expected one of"),
    (dict(batch_size=0), "--batch_size=0: must be positive"),
    (dict(g_lr=-1.0), "--g_lr=-1.0: must be positive"),
    (dict(l1_weight=-0.5), "--l1_weight=-0.5: must not be negative"),
    (dict(test_fraction=1.0), "--test_fraction=1.0: must be in [0, 1)"),
    (dict(resolution=48), "--resolution=48: must be a power of two"),
    (dict(resolution=64, g_downsamples=5), "--g_downsamples=5: a 64 px decoder supports 1..4"),
    (dict(resolution=64, critic_levels="128"), "128 is not one of them"),
    (dict(critic_levels="x"), "--critic_levels=x: expected integers"),
    (dict(dataset="london"), "--dataset=london needs --data_dir"),
    (dict(model="pix2pix"), "--model=pix2pix has no critic networks"),
    (dict(model="stargan"), "--model=stargan has no critic networks"),
    (dict(photo_critic=False, variation_critic=False), "both --photo_critic and --variation_critic"),
    (dict(expressions="happy"), "need at least two classes"),
    (dict(expressions="happy,smiling"), "repeated class"),
    (dict(expressions="neutral,grumpy"), "unknown expression 'grumpy'"),
    (dict(source_expression="sad", expressions="neutral,happy"), "not among --expressions"),
    (dict(strategy="mirrored", jit_compile=True), "--jit_compile fails under MirroredStrategy"),
    (dict(no_such_option=1), "unknown option(s): no_such_option"),
    (dict(g_lr=float("nan")), "--g_lr=nan: must be a finite number"),
    (dict(l1_weight=float("inf")), "--l1_weight=inf: must be a finite number"),
    (dict(beta1=float("nan")), "--beta1=nan: must be a finite number"),
])
def test_bad_values_are_refused_naming_the_flag(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config(**overrides)
    assert message in str(error.value)


def test_names_are_canonicalised():
    config = make_config(expressions="Neutral,smiling", source_expression="NEUTRAL")
    assert config.expressions == ("neutral", "happy")
    assert config.source_expression == "neutral"


def test_options_round_trip_and_differences():
    a = make_config(g_channels=8)
    b = config_lib.from_dict(__import__("json").loads(config_lib.to_json(a)))
    assert a == b
    c = make_config(g_channels=16, train_steps=7, workdir="elsewhere", remat=True)
    # run-control fields (train_steps, workdir, remat) may change on resume; model fields may not
    assert config_lib.model_differences(a, c) == ["g_channels"]
    with pytest.raises(ConfigError, match="unknown field"):
        config_lib.from_dict({"g_channels": 8, "bogus": 1})


def test_config_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, mlc_keras.config, mlc_keras.errors, mlc_keras.images; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
