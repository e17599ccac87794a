"""Export: every signature through TF2's loader AND the session-based loader
(saved_model_cli, the loader family of TF Serving's C++ server), the .keras
file equal to the live model, validation errors, atomicity, warm-up records."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mlc_keras.inference import export, loading
from mlc_keras.training.build import build_generator
from mlc_keras.config import make_config

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    result = export.export_generator(generator, config, str(out), "mlc", 3)
    return generator, result, out


def faces(n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def test_layout_and_metadata(exported):
    _, result, out = exported
    assert result["saved_model"] == str(out / "mlc" / "3")
    assert os.path.isfile(out / "mlc" / "3" / "saved_model.pb")
    assert os.path.isfile(out / "mlc-3.keras")
    meta = json.loads((out / "mlc" / "3" / "assets.extra" / "mlc_keras.json").read_text())
    assert meta["expressions"] == ["neutral", "happy", "sad"] and meta["resolution"] == 16
    assert not [p for p in os.listdir(out / "mlc") if p.startswith(".tmp")]


def test_tf2_loader_signatures_match_live_model(exported):
    generator, result, _ = exported
    loaded = tf.saved_model.load(result["saved_model"])
    assert set(export.SIGNATURES) <= set(loaded.signatures)
    x = faces()
    ids = np.array([1, 2], np.int32)
    live = generator((x, tf.one_hot(ids, 3)))[0].numpy()
    out = loaded.signatures["serving_default"](images=tf.constant(x), expressions=tf.constant(ids))
    np.testing.assert_allclose(out["images"].numpy(), live, atol=1e-5)
    every = loaded.signatures["all_expressions"](images=tf.constant(x))["images"].numpy()
    assert every.shape == (2, 3, 16, 16, 3)
    np.testing.assert_allclose(every[[0, 1], [1, 2]], live, atol=1e-5)


def test_bytes_signature_matches_the_python_path(exported):
    generator, result, _ = exported
    loaded = tf.saved_model.load(result["saved_model"])
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)  # any size: crop + resize
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    out = loaded.signatures["synthesize_bytes"](
        image_bytes=tf.constant([buf.getvalue()]), expressions=tf.constant([2], tf.int32))
    png = Image.open(io.BytesIO(out["image_bytes"].numpy()[0]))
    assert png.format == "PNG" and png.size == (16, 16)
    # Python path: PIL decode -> the same crop/resize -> the live model
    from mlc_keras.data.pipeline import square_resize

    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    pixels = square_resize(tf.constant(decoded), 16).numpy().astype(np.float32) / 127.5 - 1
    live = generator((pixels[None], tf.one_hot([2], 3)))[0].numpy()[0]
    expected = np.clip(np.round((live + 1) * 127.5), 0, 255)
    assert np.abs(np.asarray(png, np.float32) - expected).max() <= 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(images=faces()[:, :8], expressions=[0, 1]), "expected \\[batch, 16, 16, 3\\]"),
    (dict(images=faces(), expressions=[0, 3]), "ids must lie in \\[0, 2\\]"),
    (dict(images=faces(), expressions=[0, -1]), "ids must lie in \\[0, 2\\]"),
    (dict(images=faces() * 3, expressions=[0, 1]), "values must lie in \\[-1, 1\\]"),
    (dict(images=faces(), expressions=[0]), "batch sizes differ"),
    (dict(images=faces()[0], expressions=[0]), "expected rank 4"),
])
def test_bad_inputs_are_invalid_argument(exported, kwargs, message):
    loaded = tf.saved_model.load(exported[1]["saved_model"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](
            images=tf.constant(kwargs["images"], tf.float32),
            expressions=tf.constant(kwargs["expressions"], tf.int32))


def test_undecodable_bytes_are_invalid_argument(exported):
    loaded = tf.saved_model.load(exported[1]["saved_model"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["synthesize_bytes"](image_bytes=tf.constant([b"not an image"]),
                                              expressions=tf.constant([0], tf.int32))


def test_session_based_loader_runs_every_signature(exported, tmp_path):
    _, result, _ = exported
    np.save(tmp_path / "x.npy", faces(1))
    np.save(tmp_path / "ids.npy", np.array([1], np.int32))
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(buf, "PNG")
    runs = {
        "serving_default": ["--inputs", f"images={tmp_path}/x.npy;expressions={tmp_path}/ids.npy"],
        "all_expressions": ["--inputs", f"images={tmp_path}/x.npy"],
        "synthesize_bytes": ["--input_exprs",
                             f"image_bytes=[{buf.getvalue()!r}];expressions=[1]"],
    }
    cli = [sys.executable, "-c",
           "import sys; from tensorflow.python.tools import saved_model_cli as c; "
           "sys.argv = ['saved_model_cli'] + sys.argv[1:]; c.main()"]
    for signature, args in runs.items():
        proc = subprocess.run(
            cli + ["run", "--dir", result["saved_model"], "--tag_set", "serve",
                   "--signature_def", signature, *args, "--outdir", str(tmp_path / signature)],
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = os.listdir(tmp_path / signature)
        assert files, signature


def test_keras_file_predicts_like_the_live_model(exported):
    import mlc_keras

    generator, result, out = exported
    model = mlc_keras.load_generator(result["keras"])
    x = faces(3, seed=5)
    onehot = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    np.testing.assert_allclose(model.predict([x, onehot], verbose=0)[0],
                               generator((x, onehot))[0].numpy(), atol=1e-5)
    assert model.expressions == ("neutral", "happy", "sad")
    assert mlc_keras.load_generator(str(out)).count_params() == generator.count_params()


def test_warmup_records_cover_every_signature(exported):
    pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported[1]["saved_model"], "assets.extra", export.WARMUP_FILE)
    names = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        names.append(log.predict_log.request.model_spec.signature_name)
    assert sorted(names) == sorted(export.SIGNATURES)


def test_failed_export_leaves_no_version_folder(tmp_path, monkeypatch):
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(generator, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.export_generator(generator, config, str(tmp_path), "mlc", 1)
    assert os.listdir(tmp_path / "mlc") == []
    assert not os.path.exists(tmp_path / "mlc-1.keras")
    with pytest.raises(loading.ExportError, match="already exists"):
        os.makedirs(tmp_path / "mlc" / "2")
        export.export_generator(generator, config, str(tmp_path), "mlc", 2)


def test_killed_export_leftovers_are_never_loaded_and_are_cleaned(exported, tmp_path):
    """A kill during the Keras save leaves EXPORT/.tmp-mlc-<v>.keras (and a
    .tmp-* version folder): no loader takes them, the next export removes them."""
    import shutil

    generator, result, _ = exported
    root = tmp_path / "exp"
    (root / "mlc").mkdir(parents=True)
    shutil.copy(result["keras"], root / "mlc-1.keras")
    (root / ".tmp-mlc-2.keras").write_bytes(b"half a zip")
    (root / "mlc" / ".tmp-2-abc").mkdir()
    (root / ".tmp-mlc-9.keras-xyz.png").write_bytes(b"")
    assert loading.newest_keras_file(str(root)) == str(root / "mlc-1.keras")
    assert loading.version_numbers(str(root / "mlc")) == []
    assert loading.load_generator(str(root)).count_params() == generator.count_params()
    config = make_config(**TINY)
    out = export.export_generator(generator, config, str(root), "mlc")
    assert out["saved_model"] == str(root / "mlc" / "1")
    assert sorted(os.listdir(root)) == ["mlc", "mlc-1.keras"]
    assert os.listdir(root / "mlc") == ["1"]


def test_export_output_that_is_a_file_is_one_user_error(exported, tmp_path):
    from mlc_keras.errors import UserError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="--output=.*afile: a file, not a folder"):
        export.export_generator(exported[0], make_config(**TINY), str(tmp_path / "afile"), "mlc", 1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "mlc_keras.export", "--workdir=/nonexistent_run",
                           f"--output={tmp_path / 'afile'}"], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "--output=" in line and "a file, not a folder" in line


def test_corrupt_keras_file_is_reported_as_corrupt(tmp_path):
    from mlc_keras.errors import UserError

    bad = tmp_path / "mlc-1.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="corrupt or unreadable .keras file") as info:
        loading.load_generator(str(bad))
    assert "File not found" not in str(info.value)
    with pytest.raises(UserError, match="--model=.*corrupt or unreadable"):
        loading.load_model_for_synthesis(str(bad))


def test_edit_signatures_take_targets_and_intensity(exported):
    generator, result, _ = exported
    loaded = tf.saved_model.load(result["saved_model"])
    x = faces()
    targets = np.array([[0, 1, 0], [0, 0.6, 0.4]], np.float32)
    out = loaded.signatures["edit"](images=tf.constant(x), targets=tf.constant(targets),
                                    intensity=tf.constant([0.0, 1.0]))["images"].numpy()
    np.testing.assert_allclose(out[0], x[0], atol=1e-6)
    live = np.asarray(generator((x, tf.constant(targets)))[0])
    np.testing.assert_allclose(out[1], live[1], atol=1e-5)
    crops = np.random.default_rng(3).uniform(-1, 1, (1, 40, 40, 3)).astype(np.float32)
    edited = loaded.signatures["composite_edit"](
        images=tf.constant(crops), targets=tf.constant(targets[:1]),
        intensity=tf.constant([0.0]))
    np.testing.assert_array_equal(edited["images"].numpy(), crops)
    for targets_in, intensity, message in [
            (targets, [0.0, 2.5], "intensity: values must lie in"),
            (-targets, [1.0, 1.0], "non-negative weights"),
            (targets[:, :2], [1.0, 1.0], r"targets: expected float \[batch, 3\]")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures["edit"](images=tf.constant(x), targets=tf.constant(targets_in),
                                      intensity=tf.constant(intensity))
    # the synthesis loader serves intensities through the new signature
    model = loading.load_model_for_synthesis(result["saved_model"])
    np.testing.assert_allclose(model.generate(x, [1, 2], intensity=0.0), x, atol=1e-6)
