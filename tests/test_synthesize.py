"""Synthesis of users' photos: model loading (every accepted form agrees),
training-like alignment, the grid layout, paste-back locality, the folder
batch with bad files skipped, and the command's one-line errors.

Real faces come from the London set (skipped with a reason when absent);
everything written goes under tmp_path."""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO_ROOT, london_dir  # the aligner fixture is in conftest too
from mlc_keras import images
from mlc_keras.inference import export, loading, synthesize
from mlc_keras.training.build import build_generator
from mlc_keras.config import make_config
from mlc_keras.data import align
from mlc_keras.data.pipeline import square_resize
from mlc_keras.expressions import EXPRESSIONS, UnknownExpressionError
from mlc_keras.models import Generator

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,sad", import_resolution=64)
R = 16
GAP = synthesize.GRID_GAP


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny untrained generator exported (SavedModel + .keras, import
    resolution 64), and the same generator saved alone as a .keras file."""
    out = tmp_path_factory.mktemp("export")
    config = make_config(**TINY)
    generator = build_generator(config).build_for_inputs()
    result = export.export_generator(generator, config, str(out), "mlc", 2)
    alone = str(out / "alone.keras")
    generator.save(alone)
    return {"root": str(out), "saved_model": result["saved_model"], "keras": result["keras"],
            "alone": alone}


@pytest.fixture(scope="module")
def model(exported):
    return loading.load_model_for_synthesis(exported["keras"])


def london_photo(name="001_03.jpg"):
    return os.path.join(london_dir(), "neutral_front", name)


def write_gray(path, size=(120, 90)):
    Image.new("RGB", size, (128, 128, 128)).save(path)
    return str(path)


def write_bomb_png(path, side=20000):
    """A PNG whose header declares side x side pixels (400 MP > the 80 MP limit)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                + chunk(b"IEND", b""))
    return str(path)


def tiles_of(grid, rows, cols):
    return [[grid[i * (R + GAP):i * (R + GAP) + R, j * (R + GAP):j * (R + GAP) + R]
             for j in range(cols)] for i in range(rows)]


# ------------------------------------------------------------ no face needed


def test_make_grid_layout():
    tiles = [[np.full((4, 5, 3), 10 * (3 * i + j), np.uint8) for j in range(3)] for i in range(2)]
    grid = synthesize.make_grid(tiles, gap=2, background=255)
    assert grid.shape == (2 * 4 + 2, 3 * 5 + 2 * 2, 3) and grid.dtype == np.uint8
    for i in range(2):
        for j in range(3):
            assert (grid[i * 6:i * 6 + 4, j * 7:j * 7 + 5] == 10 * (3 * i + j)).all()
    assert (grid[4:6] == 255).all() and (grid[:, 5:7] == 255).all() and (grid[:, 12:14] == 255).all()
    with pytest.raises(ValueError, match="differ in shape"):
        synthesize.make_grid([[tiles[0][0], np.zeros((3, 3, 3), np.uint8)]])


def test_resolve_expressions():
    vocab = ("neutral", "happy", "sad")
    assert synthesize.resolve_expressions("all", vocab) == list(vocab)
    assert synthesize.resolve_expressions("Sad, smiling,happy", vocab) == ["sad", "happy"]
    assert synthesize.resolve_expressions(["neutral"], vocab) == ["neutral"]
    for bad in ("angry", "grumpy", ""):
        with pytest.raises(UnknownExpressionError, match="neutral, happy, sad"):
            synthesize.resolve_expressions(bad, vocab)


def test_output_stems_stay_distinct():
    paths = ["/x/a.jpg", "/x/a.png", "/x/b.jpeg", "/x/c"]
    assert synthesize._stems(paths) == ["a_jpg", "a_png", "b", "c"]


def test_every_model_form_loads_with_its_metadata(exported, tmp_path):
    forms = {
        "keras beside export": exported["keras"],
        "export root": exported["root"],
        "saved model version": exported["saved_model"],
        "saved model folder": os.path.dirname(exported["saved_model"]),
    }
    x = np.random.default_rng(0).uniform(-1, 1, (3, R, R, 3)).astype(np.float32)
    ids = np.array([0, 1, 2], np.int32)
    outs = {}
    for what, path in forms.items():
        m = loading.load_model_for_synthesis(path)
        assert (m.resolution, m.expressions, m.import_resolution) == (R, ("neutral", "happy", "sad"),
                                                                      64), what
        outs[what] = m.generate(x, ids, batch_size=2)
        assert outs[what].shape == (3, R, R, 3) and outs[what].dtype == np.float32
    for what, out in outs.items():
        np.testing.assert_allclose(out, outs["keras beside export"], atol=1e-5, err_msg=what)
    # a lone .keras file: expressions from the model, the default import resolution
    alone = loading.load_model_for_synthesis(exported["alone"])
    assert alone.expressions == ("neutral", "happy", "sad") and alone.import_resolution == 256
    # an old file without expression names: the default vocabulary's first N
    old = Generator(resolution=R, num_classes=3, base_channels=4, downsamples=1, res_blocks=1)
    old.build_for_inputs().save(str(tmp_path / "old.keras"))
    assert loading.load_model_for_synthesis(str(tmp_path / "old.keras")).expressions == EXPRESSIONS[:3]
    with pytest.raises(loading.SynthesisError, match="does not exist"):
        loading.load_model_for_synthesis(str(tmp_path / "missing.keras"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(loading.ExportError, match="not a .keras file"):
        loading.load_model_for_synthesis(str(tmp_path / "empty"))


# ------------------------------------------------------------ real faces


def test_grid_one_face_two_expressions(aligner, model):
    photo_path = london_photo()
    result = synthesize.synthesize_photo(model, photo_path, "happy,sad", aligner=aligner)
    assert result.expressions == ["happy", "sad"] and len(result.faces) == 1
    assert result.ignored_faces == 0
    grid = result.grid()
    assert grid.shape == (R, 3 * R + 2 * GAP, 3) and grid.dtype == np.uint8
    assert (grid[:, R:R + GAP] == 255).all() and (grid[:, 2 * R + GAP:2 * R + 2 * GAP] == 255).all()
    face = result.faces[0]
    [[first, happy, sad]] = tiles_of(grid, 1, 3)
    np.testing.assert_array_equal(first, face.aligned)
    np.testing.assert_array_equal(happy, face.outputs["happy"])
    np.testing.assert_array_equal(sad, face.outputs["sad"])
    # framed like a training crop: the importer's crop at the import resolution,
    # area-resized by the training pipeline
    photo = align.load_image(photo_path)
    crop = aligner.align(photo, 64, source=photo_path).image
    np.testing.assert_array_equal(face.aligned, square_resize(tf.constant(crop), R).numpy())
    assert face.crop_size == 64
    # and the columns are the model's output for that input
    x = face.aligned[None].astype(np.float32) / 127.5 - 1
    expected = model.generate(np.repeat(x, 2, 0), [1, 2])
    np.testing.assert_array_equal(happy, images.to_uint8(expected[0]))
    np.testing.assert_array_equal(sad, images.to_uint8(expected[1]))
    assert not np.array_equal(happy, sad)


def test_paste_back_changes_only_the_face_region(aligner, model, tmp_path):
    photo_path = london_photo()
    result = synthesize.synthesize_photo(model, photo_path, ["happy", "sad"], paste_back=True,
                                         aligner=aligner)
    written = synthesize.save_result(result, str(tmp_path / "out"), "001_03")
    assert sorted(os.path.basename(p) for p in written) == ["001_03_happy.png", "001_03_sad.png"]
    original = align.load_image(photo_path)
    face = result.faces[0]
    # the blend ellipse of faces.paste_back, in photo pixels
    h, w = original.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    inv = np.linalg.inv(face.matrix)
    cx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    cy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    u, v = (cx + 0.5) / face.crop_size, (cy + 0.5) / face.crop_size
    r = np.sqrt(((u - 0.5) / 0.40) ** 2 + ((v - 0.56) / 0.48) ** 2)
    for path in written:
        pasted = np.asarray(Image.open(path).convert("RGB"))
        assert pasted.shape == original.shape
        changed = np.any(pasted != original, axis=-1)
        assert not changed[r > 1.0 + 1e-6].any(), "pixels changed outside the face region"
        assert changed[r < 0.8].mean() > 0.5, "the face itself was not replaced"
    assert not np.array_equal(result.pasted("happy"), result.pasted("sad"))


def test_faces_largest_or_all(aligner, model, tmp_path):
    big = Image.open(london_photo("001_03.jpg")).convert("RGB")
    small = Image.open(london_photo("002_03.jpg")).convert("RGB").resize((300, 300), Image.LANCZOS)
    canvas = Image.new("RGB", (big.width + small.width, big.height), (200, 200, 200))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (big.width, 100))
    path = str(tmp_path / "two.png")
    canvas.save(path)
    largest = synthesize.synthesize_photo(model, path, "happy", aligner=aligner)
    assert len(largest.faces) == 1 and largest.ignored_faces == 1
    assert largest.faces[0].face.box[2] <= big.width  # the big face, on the left
    every = synthesize.synthesize_photo(model, path, "happy", faces="all", aligner=aligner)
    assert len(every.faces) == 2 and every.ignored_faces == 0
    assert every.grid().shape == (2 * R + GAP, 2 * R + GAP, 3)
    np.testing.assert_array_equal(every.faces[0].aligned, largest.faces[0].aligned)
    assert every.pasted("happy").shape == np.asarray(canvas).shape


def test_saved_model_and_keras_give_the_same_result(aligner, exported):
    photo_path = london_photo()
    results = {}
    for what in ("saved_model", "keras"):
        m = loading.load_model_for_synthesis(exported[what])
        results[what] = synthesize.synthesize_photo(m, photo_path, "all", aligner=aligner)
    a, b = results["saved_model"].faces[0], results["keras"].faces[0]
    np.testing.assert_array_equal(a.aligned, b.aligned)
    np.testing.assert_allclose(a.synthesized, b.synthesized, atol=1e-5)
    assert np.abs(results["saved_model"].grid().astype(int) - results["keras"].grid()).max() <= 1


def test_folder_skips_bad_files_and_reports_them(aligner, model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = photos / "good.jpg"
    data = open(london_photo(), "rb").read()
    good.write_bytes(data)
    (photos / "broken.jpg").write_bytes(data[:len(data) // 3])  # truncated JPEG
    write_gray(photos / "gray.png")
    (photos / "notes.txt").write_text("not an image\n")
    write_bomb_png(photos / "bomb.png")
    code = synthesize.run_synthesis(model, str(photos), "happy,sad", aligner=aligner)
    assert code == 0
    out = tmp_path / "photos_synth"
    assert sorted(os.listdir(out)) == ["good_grid.png"]
    assert Image.open(out / "good_grid.png").size == (3 * R + 2 * GAP, R)
    captured = capsys.readouterr()
    for name in ("broken.jpg", "gray.png", "notes.txt", "bomb.png"):
        assert f"skipped {name}:" in captured.err
    assert "5/5" in captured.err
    summary = captured.out.strip().splitlines()[-1]
    assert summary.startswith("processed 1 photo(s)") and "skipped 4" in summary
    for reason in ("broken.jpg (corrupt)", "gray.png (no face)", "notes.txt (not an image)",
                   "bomb.png (too large)"):
        assert reason in summary

    # paste back into a chosen folder: <stem>_<expression>.png
    code = synthesize.run_synthesis(model, str(photos), "sad", output=str(tmp_path / "pb"),
                                    paste_back=True, aligner=aligner)
    assert code == 0 and os.listdir(tmp_path / "pb") == ["good_sad.png"]


def test_folder_without_any_usable_photo_exits_2(aligner, model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_gray(photos / "a.png")
    write_gray(photos / "b.png")
    assert synthesize.run_synthesis(model, str(photos), "happy", aligner=aligner) == 2
    err = capsys.readouterr().err
    assert "skipped 2: a.png (no face), b.png (no face)" in err and "error:" in err


def test_single_photo_problems_raise(aligner, model, tmp_path):
    gray = write_gray(tmp_path / "gray.png")
    with pytest.raises(align.NoFaceError, match="gray.png"):
        synthesize.run_synthesis(model, gray, "happy", aligner=aligner)
    with pytest.raises(UnknownExpressionError, match="neutral, happy, sad"):
        synthesize.run_synthesis(model, gray, "grumpy", aligner=aligner)
    assert not [n for n in os.listdir(tmp_path) if n != "gray.png"]


# ------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def cli_runs(exported, tmp_path_factory):
    """Runs the command in parallel on a no-face photo and on a folder (a
    TensorFlow start each, ~10 s)."""
    root = tmp_path_factory.mktemp("cli")
    gray = write_gray(root / "gray.png")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    base = [sys.executable, "-m", "mlc_keras.synthesize", f"--model={exported['saved_model']}"]
    runs = {"no_face": base + [f"--input={gray}", "--expressions=happy"]}
    try:
        photos = root / "photos"
        photos.mkdir()
        photos.joinpath("good.jpg").write_bytes(open(london_photo(), "rb").read())
        write_gray(photos / "gray.png")
        runs["folder"] = base + [f"--input={photos}", "--expressions=sad", "--paste_back",
                                 f"--output={root / 'out'}"]
    except pytest.skip.Exception:
        pass
    procs = {k: subprocess.Popen(v, cwd=root, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, v in runs.items()}
    results = {k: (p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for k, p in procs.items()}
    return root, results


def _error_lines(stderr):
    assert "Traceback" not in stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_cli_single_photo_without_face(aligner, cli_runs):
    root, results = cli_runs
    code, _, err = results["no_face"]
    assert code == 2, err
    [line] = _error_lines(err)
    assert "no face found" in line and "gray.png" in line
    assert not [n for n in os.listdir(root) if n.startswith("gray_")]  # nothing written


def test_cli_folder_exit_code_and_outputs(aligner, cli_runs):
    root, results = cli_runs
    if "folder" not in results:
        london_dir()  # skips with its reason
    code, out, err = results["folder"]
    assert code == 0, err
    assert os.listdir(root / "out") == ["good_sad.png"]
    assert "skipped gray.png:" in err and "processed 1 photo(s)" in out
    assert Image.open(root / "out" / "good_sad.png").size == Image.open(london_photo()).size


class FarEmbedder:
    """Stands in for dlib: the source (first image of each call) at 0, every
    output at ``distance`` from it."""

    def __init__(self, distance):
        self.distance = distance

    def embed(self, images_uint8):
        out = np.zeros((len(images_uint8), 128), np.float32)
        out[1:, 0] = self.distance
        return out


def test_identity_check_records_and_flags_distances(aligner, model):
    result = synthesize.synthesize_photo(model, london_photo(), ["happy", "sad"], paste_back=True,
                                         aligner=aligner)
    assert synthesize.identity_check(result, FarEmbedder(0.3)) == []
    assert result.faces[0].identity == {"happy": pytest.approx(0.3), "sad": pytest.approx(0.3)}
    failures = synthesize.identity_check(result, FarEmbedder(0.9))
    assert [(i, n) for i, n, _ in failures] == [(0, "happy"), (0, "sad")]


def test_identity_guard_warns_or_refuses_with_strict(aligner, model, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(synthesize, "FaceEmbedder", lambda detect=False: FarEmbedder(0.9))
    photo = tmp_path / "me.jpg"
    photo.write_bytes(open(london_photo(), "rb").read())
    out = tmp_path / "warned"
    code = synthesize.run_synthesis(model, str(photo), "happy", output=str(out), paste_back=True,
                                    aligner=aligner)
    assert code == 0 and os.listdir(out) == ["me_happy.png"]
    err = capsys.readouterr().err
    assert "warning:" in err and "me.jpg" in err and "happy: 0.900" in err
    strict_out = tmp_path / "strict"
    with pytest.raises(synthesize.IdentityError, match=r"me\.jpg.*nothing written \(--strict\)"):
        synthesize.run_synthesis(model, str(photo), "happy", output=str(strict_out),
                                 paste_back=True, aligner=aligner, strict=True)
    assert not strict_out.exists() or not os.listdir(strict_out)
    # in a folder the photo is skipped, with the reason in the summary
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "me.jpg").write_bytes(photo.read_bytes())
    code = synthesize.run_synthesis(model, str(folder), "happy", output=str(tmp_path / "f_out"),
                                    aligner=aligner, strict=True)
    assert code == 2 and not os.listdir(tmp_path / "f_out")
    assert "me.jpg (identity)" in capsys.readouterr().err


def test_unwritable_output_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    photo = write_gray(tmp_path / "photo.png")
    (tmp_path / "afile").write_text("x")

    def no_model(path):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(synthesize, "load_model_for_synthesis", no_model)
    for output, message in [("/sys/mlc_no_such/out.png", "cannot be written"),
                            (str(tmp_path / "afile" / "out.png"), "is a file, not a folder")]:
        with pytest.raises(loading.SynthesisError, match=f"--output=.*{message}"):
            synthesize.run_synthesis("unused", photo, "happy", output=output)
    with pytest.raises(loading.SynthesisError, match="--output=.*afile"):
        synthesize.run_synthesis("unused", photo, "happy", output=str(tmp_path / "afile"),
                                 paste_back=True)
    assert sorted(os.listdir(tmp_path)) == ["afile", "photo.png"]


def test_load_image_bomb_message_is_the_projects(tmp_path):
    path = write_bomb_png(tmp_path / "bomb.png", side=15000)  # past Pillow's own 179 MP error
    with pytest.raises(align.ImageError) as info:
        align.load_image(path)
    message = str(info.value)
    assert "declares 15000x15000 = 225000000 pixels, more than the limit of 80000000" in message
    assert "DOS attack" not in message
