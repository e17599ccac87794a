"""The bad-input corpus (issue 11) for the serving edges, one parametrised
test per surface: the exported signatures (loaded SavedModel), the REST/gRPC
test double (tests/serving_double.py) with serving/client.py, and the
synthesize command (subprocess). Each case: the error kind (exit code 2 /
INVALID_ARGUMENT / ExpressionError), a one-line message naming the input,
and nothing written. A tiny untrained 16 px model keeps it fast."""

import io
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO_ROOT
from mlc_keras.config import make_config
from mlc_keras.inference import export
from mlc_keras.training.build import build_generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad")
R = 16
LIMIT = "more than the limit of 80000000 (possible decompression bomb); downscale it first"


def png_declaring(width, height):
    """A tiny PNG whose IHDR declares width x height (nothing to decode)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def encoded(fmt, size=(20, 20)):
    buf = io.BytesIO()
    Image.fromarray(np.full(size[::-1] + (3,), 120, np.uint8)).save(buf, fmt)
    return buf.getvalue()


def jpeg_declaring(width, height):
    """A real small JPEG whose SOF0 segment is patched to declare width x height."""
    raw = bytearray(encoded("JPEG"))
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def gif_declaring(width, height):
    raw = bytearray(encoded("GIF"))
    raw[6:10] = struct.pack("<HH", width, height)
    return bytes(raw)


def bmp_declaring(width, height):
    raw = bytearray(encoded("BMP"))
    raw[18:26] = struct.pack("<ii", width, height)
    return bytes(raw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs_export")
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    result = export.export_generator(generator, config, str(root), "mlc", 1)
    return root, result


@pytest.fixture(scope="module")
def signatures(exported):
    return tf.saved_model.load(exported[1]["saved_model"]).signatures


def _one_line(message, pattern):
    """The line of a (multi-line) TensorFlow error that carries the check's message."""
    lines = [ln for ln in str(message).splitlines() if pattern in ln]
    assert lines, message
    return lines[0]


# ---------------------------------------------------------------- signatures

ZERO_IDS = np.zeros([0], np.int32)

SIGNATURE_CASES = {
    # name: (signature, inputs, None for "empty output" or the text the error must carry)
    "png_bomb": ("synthesize_bytes", dict(image_bytes=[png_declaring(20000, 20000)], expressions=[0]),
                 "image_bytes[0] declares 20000x20000 = 400000000 pixels, " + LIMIT),
    "second_image_bomb": ("synthesize_bytes",
                          dict(image_bytes=[encoded("PNG"), png_declaring(9500, 9500)],
                               expressions=[0, 1]),
                          "image_bytes[1] declares 9500x9500 = 90250000 pixels, " + LIMIT),
    "jpeg_bomb": ("synthesize_bytes", dict(image_bytes=[jpeg_declaring(12000, 9000)], expressions=[1]),
                  "image_bytes[0] declares 12000x9000 = 108000000 pixels, " + LIMIT),
    "gif_bomb": ("synthesize_bytes", dict(image_bytes=[gif_declaring(65535, 65535)], expressions=[1]),
                 "image_bytes[0] declares 65535x65535"),
    "bmp_bomb": ("synthesize_bytes", dict(image_bytes=[bmp_declaring(10000, -10000)], expressions=[1]),
                 "image_bytes[0] declares 10000x10000"),
    "png_empty_size": ("synthesize_bytes", dict(image_bytes=[png_declaring(0, 5)], expressions=[0]),
                       "image_bytes[0] declares an empty size 0x5"),
    "not_an_image": ("synthesize_bytes", dict(image_bytes=[b"not an image"], expressions=[0]),
                     "image_bytes[0]: undecodable bytes"),
    "empty_bytes": ("synthesize_bytes", dict(image_bytes=[encoded("PNG"), b""], expressions=[0, 0]),
                    "image_bytes[1]: undecodable bytes"),
    "bytes_batch_0": ("synthesize_bytes", dict(image_bytes=np.array([], object), expressions=ZERO_IDS),
                      None),
    "default_batch_0": ("serving_default", dict(images=np.zeros([0, R, R, 3], np.float32),
                                                expressions=ZERO_IDS), None),
    "all_batch_0": ("all_expressions", dict(images=np.zeros([0, R, R, 3], np.float32)), None),
    "composite_batch_0": ("composite", dict(images=np.zeros([0, 2 * R, 2 * R, 3], np.float32),
                                            expressions=ZERO_IDS), None),
    "batch_0_with_an_id": ("serving_default", dict(images=np.zeros([0, R, R, 3], np.float32),
                                                   expressions=[1]), "expressions: one id per image"),
}

EMPTY_SHAPES = {"serving_default": {"images": (0, R, R, 3)},
                "all_expressions": {"images": (0, 3, R, R, 3)},
                "composite": {"images": (0, 2 * R, 2 * R, 3), "change": (0, 2 * R, 2 * R, 1)},
                "synthesize_bytes": {"image_bytes": (0,)}}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
def test_signatures(signatures, case):
    name, inputs, message = SIGNATURE_CASES[case]
    dtypes = {"images": tf.float32, "expressions": tf.int32, "image_bytes": tf.string}
    tensors = {k: tf.constant(v, dtypes[k]) for k, v in inputs.items()}
    if message is None:
        out = signatures[name](**tensors)
        assert {k: tuple(v.shape) for k, v in out.items()} == EMPTY_SHAPES[name]
        return
    start = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        signatures[name](**tensors)
    assert time.perf_counter() - start < 5  # refused from the header, never decoded
    line = _one_line(info.value.message, message)
    assert "Incompatible shapes" not in str(info.value)
    assert line.split(message)[0].strip(" [") in ("", "assertion failed:"), line


# ---------------------------------------------------------------- REST/gRPC double


@pytest.fixture(scope="module")
def server(exported):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    pytest.importorskip("requests")
    from serving_double import FakeModelServer

    with FakeModelServer(exported[0]) as s:
        yield s


DOUBLE_CASES = {
    "bomb": ("predict_bytes", ([png_declaring(20000, 20000)], [0]),
             "image_bytes[0] declares 20000x20000 = 400000000 pixels"),
    "undecodable": ("predict_bytes", ([b"GIF? no"], [0]), "image_bytes[0]: undecodable bytes"),
    "batch_0": ("predict", (np.zeros([0, R, R, 3], np.float32), np.zeros([0], np.int32)), None),
    "id_out_of_range": ("predict", (np.zeros([1, R, R, 3], np.float32), [3]),
                        "expressions: ids must lie in [0, 2]"),
    "expressions_list_too_short": ("predict", (np.zeros([1, R, R, 3], np.float32), ["happy"]),
                                   "--expressions_list"),
}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("case", sorted(DOUBLE_CASES))
def test_serving_double(server, transport, case):
    from serving.client import ExpressionError, GrpcClient, RestClient, ServingError

    method, args, message = DOUBLE_CASES[case]
    names = "neutral,happy" if case == "expressions_list_too_short" else None
    if transport == "rest":
        client = RestClient(server.rest_url, "mlc", timeout=30, expressions_list=names)
    else:
        client = GrpcClient(server.grpc_target, "mlc", timeout=30, expressions_list=names)
    with client:
        if message is None and transport == "grpc":
            out = getattr(client, method)(*args)
            assert np.asarray(out).shape == (0, R, R, 3)
            return
        if message is None:  # JSON cannot carry the shape of an empty batch: [] is rank 1
            client.request_format = "columnar"
            message = "images: expected rank 4"
        expected = ExpressionError if case == "expressions_list_too_short" else ServingError
        with pytest.raises(expected) as info:
            getattr(client, method)(*args)
    if expected is ServingError:
        assert info.value.code == "INVALID_ARGUMENT"
        _one_line(info.value.message, message)
    else:
        assert "\n" not in str(info.value) and message in str(info.value)
        assert "2 names" in str(info.value) and "3 expressions" in str(info.value)


# ---------------------------------------------------------------- synthesize CLI


@pytest.fixture(scope="module")
def cli_runs(exported, tmp_path_factory):
    """Every case in parallel (a TensorFlow start each); each in its own folder."""
    base_dir = tmp_path_factory.mktemp("bad_cli")
    keras_file = exported[1]["keras"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    gray = np.full((90, 120, 3), 128, np.uint8)
    cases = {
        "missing_input": ([], "--input=", None),
        "unknown_expression": (["--expressions=grumpy"], "--expressions", "photo.png"),
        "unwritable_output": (["--output=/sys/mlc_no_such/out.png"], "--output=", "photo.png"),
        "output_under_a_file": (["--output={dir}/photo.png/out.png"], "--output=", "photo.png"),
        "bomb_image": ([], "bomb.png", "bomb.png"),
        "no_face": ([], "no face found", "photo.png"),
    }
    procs = {}
    for case, (extra, _, photo) in cases.items():
        folder = base_dir / case
        folder.mkdir()
        if photo == "photo.png":
            Image.fromarray(gray).save(folder / "photo.png")
        elif photo == "bomb.png":
            (folder / "bomb.png").write_bytes(png_declaring(20000, 20000))
        inp = folder / (photo or "missing.jpg")
        args = [a.format(dir=folder) for a in extra]
        cmd = [sys.executable, "-m", "mlc_keras.synthesize", f"--model={keras_file}",
               f"--input={inp}", "--expressions=happy"]
        cmd = [c for c in cmd if not (args and c == "--expressions=happy"
                                      and any(a.startswith("--expressions") for a in args))]
        procs[case] = (subprocess.Popen(cmd + args, cwd=folder, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True),
                       folder, sorted(os.listdir(folder)))
    results = {}
    for case, (proc, folder, before) in procs.items():
        out, err = proc.communicate(timeout=300)
        results[case] = (proc.returncode, out, err, before, sorted(os.listdir(folder)))
    return cases, results


@pytest.mark.parametrize("case", ["missing_input", "unknown_expression", "unwritable_output",
                                  "output_under_a_file", "bomb_image", "no_face"])
def test_synthesize_cli(cli_runs, case):
    if case == "no_face":
        pytest.importorskip("dlib")
    cases, results = cli_runs
    code, out, err, before, after = results[case]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert cases[case][1] in lines[0], lines[0]
    assert after == before  # nothing written
    if case == "bomb_image":
        assert LIMIT in lines[0] and "DOS attack" not in lines[0]
