"""The web demo (mlc_keras.demo, mlc_keras/web): the HTTP API through Flask's
test client (the PNG is the whole photo at its size and the synthesize
library's result, intensity 0 gives the photo back, each bad input its 4xx
JSON error naming it, 413 over the size limit), the TF Serving REST mode
against tests/serving_double.py, the command's errors, and the page itself in
headless Chromium driven by Selenium (upload, slider, result shown, download
link). Real faces come from the London set, written only under tmp_path;
the browser test skips with its reason where Chromium or chromedriver is
not installed."""

import base64
import io
import os
import select
import shutil
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, london_dir  # the aligner fixture is in conftest too
from mlc_keras.config import make_config
from mlc_keras.inference import loading
from mlc_keras.inference.synthesize import synthesize_photo
from mlc_keras.training.build import build_generator

flask = pytest.importorskip("flask", reason="the demo needs Flask: pip install -e '.[demo]'")

from mlc_keras.web import app as web  # noqa: E402
from mlc_keras.web import rest_model  # noqa: E402

TINY = dict(resolution=16, g_downsamples=1, critic_levels="8", g_channels=4, g_res_blocks=1,
            expressions="neutral,happy,surprised", import_resolution=64)
EXPRESSIONS = ["neutral", "happy", "surprised"]
PHOTO_SIZE = (480, 400)  # (width, height): not square, so a swapped size shows


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    generator = build_generator(make_config(**TINY)).build_for_inputs()
    path = str(tmp_path_factory.mktemp("demo_model") / "g.keras")
    generator.save(path)
    return path


@pytest.fixture(scope="module")
def model(keras_path):
    return loading.load_model_for_synthesis(keras_path)


@pytest.fixture(scope="module")
def client(model):
    # no aligner given: the shared one, loaded on the first photo
    return web.create_app(model, max_upload_bytes=2 * 1024 * 1024).test_client()


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory):
    """A London face cropped to PHOTO_SIZE, as JPEG bytes (kept under tmp only)."""
    path = os.path.join(london_dir(), "neutral_front", "001_03.jpg")
    w, h = PHOTO_SIZE
    with Image.open(path) as img:
        crop = img.convert("RGB").crop((16, 40, 16 + w, 40 + h))
    out = tmp_path_factory.mktemp("demo_photo") / "face.jpg"
    crop.save(out, "JPEG", quality=95)
    return out.read_bytes()


def post(client, image=None, name="face.jpg", **fields):
    data = dict(fields)
    if image is not None:
        data["image"] = (io.BytesIO(image), name)
    return client.post("/api/synthesize", data=data, content_type="multipart/form-data")


def png_array(data):
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def jpeg_bytes(size=(64, 48), seed=0, quality=75):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_declaring(width, height):
    """A PNG whose header declares width x height (a decompression bomb's header)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def assert_error(response, status, *words):
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    message = response.get_json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, (word, message)
    return message


# -- the page and the API ------------------------------------------------------


def test_page_expressions_and_nothing_external(client):
    assert client.get("/api/expressions").get_json() == EXPRESSIONS
    page = client.get("/").get_data(as_text=True)
    for needle in ('type="file"', 'id="expression"', 'type="range"', 'min="0"', 'max="1.25"',
                   'step="0.05"', 'value="1"', 'id="download"'):
        assert needle in page, needle
    texts = [page]
    for asset in ("demo.js", "demo.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200
        texts.append(response.get_data(as_text=True))
    for text in texts:  # nothing may come from the internet
        assert "http://" not in text and "https://" not in text and 'src="//' not in text
    assert_error(client.get("/api/nothing"), 404, "/api/nothing")


def test_synthesize_is_the_library_result_at_full_size(client, model, aligner, photo_jpeg):
    photo = np.asarray(Image.open(io.BytesIO(photo_jpeg)).convert("RGB"))
    response = post(client, photo_jpeg, expression="happy", intensity="0.5")
    assert response.status_code == 200, response.data[:300]
    assert response.mimetype == "image/png"
    assert "face_happy_0.5.png" in response.headers["Content-Disposition"]
    out = png_array(response.data)
    assert out.shape == (PHOTO_SIZE[1], PHOTO_SIZE[0], 3)
    expected = synthesize_photo(model, photo, "happy", paste_back=True, intensity=0.5,
                                aligner=aligner)
    np.testing.assert_array_equal(out, expected.pasted(expected.expressions[0]))
    assert np.abs(out.astype(int) - photo).mean() > 0.05  # the face changed

    unchanged = png_array(post(client, photo_jpeg, expression="happy", intensity="0").data)
    assert np.abs(unchanged.astype(float) - photo).mean() <= 2.0  # in 1/255

    # a photo stored sideways with an EXIF orientation comes back upright
    sideways = Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90)
    exif = sideways.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: upright again
    buf = io.BytesIO()
    sideways.save(buf, "PNG", exif=exif)
    upright = png_array(post(client, buf.getvalue(), "side.png", expression="happy",
                             intensity="0").data)
    assert upright.shape == photo.shape
    assert np.abs(upright.astype(float) - photo).mean() <= 2.0


def test_bad_inputs_name_the_input(client):
    good = jpeg_bytes()
    assert_error(post(client, expression="happy"), 400, "image", "missing")
    assert_error(post(client, b"", "empty.jpg", expression="happy"), 400, "image", "empty.jpg")
    assert_error(post(client, b"just text", "notes.txt", expression="happy"), 422,
                 "image 'notes.txt'", "not a readable image")
    assert_error(post(client, good[:len(good) // 2], "cut.jpg", expression="happy"), 422,
                 "image 'cut.jpg'")
    assert_error(post(client, png_declaring(20000, 20000), "bomb.png", expression="happy"), 422,
                 "image 'bomb.png'", "400000000 pixels", "decompression bomb")
    assert_error(post(client, good), 400, "expression", "missing", "neutral, happy, surprised")
    assert_error(post(client, good, expression="angry"), 400, "expression", "'angry'",
                 "neutral, happy, surprised")
    assert_error(post(client, good, expression="all"), 400, "expression", "one expression")
    assert_error(post(client, good, expression="happy", intensity="strong"), 400, "intensity",
                 "'strong' is not a number")
    for value in ("2.5", "-0.1", "nan", "inf"):
        assert_error(post(client, good, expression="happy", intensity=value), 400, "intensity",
                     "outside [0, 2]")
    too_big = np.random.default_rng(0).bytes(3 * 1024 * 1024)
    assert_error(post(client, too_big, "big.jpg", expression="happy"), 413, "image",
                 "larger than the limit of 2 MB")
    assert_error(client.get("/api/synthesize"), 405, "/api/synthesize")


def test_no_face_is_422(client, aligner):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 130, 140)).save(buf, "PNG")
    assert_error(post(client, buf.getvalue(), "wall.png", expression="happy"), 422,
                 "image:", "no face found in 'wall.png'", "300x200")


def test_uploads_stay_in_memory(client, aligner, monkeypatch):
    """Neither the request's file (werkzeug spools uploads over 500 kB to a
    temporary file by default) nor the decoding writes a file."""
    import tempfile

    from werkzeug import formparser

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was made")

    for module, names in ((tempfile, ("TemporaryFile", "NamedTemporaryFile", "mkstemp",
                                      "SpooledTemporaryFile", "mkdtemp", "TemporaryDirectory")),
                          (formparser, ("SpooledTemporaryFile", "TemporaryFile"))):
        for name in names:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    big = jpeg_bytes((900, 700), seed=3, quality=95)
    assert len(big) > 600_000
    assert_error(post(client, big, "noise.jpg", expression="happy"), 422, "no face")
    assert web.decode_upload(big, "noise.jpg").shape == (700, 900, 3)


# -- TF Serving REST mode ------------------------------------------------------


def test_serving_url_mode(tmp_path, keras_path, aligner, photo_jpeg):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    from mlc_keras.inference import export
    from serving_double import FakeModelServer

    config = make_config(**TINY)
    generator = loading.load_generator(keras_path)
    result = export.export_generator(generator, config, str(tmp_path / "export"), "mlc", 1)
    local = loading.load_model_for_synthesis(result["keras"])  # the same metadata
    with pytest.raises(web.DemoError, match="--serving_url=.* needs --model"):
        web.load_demo_model("", "http://127.0.0.1:1/v1/models/mlc")
    with pytest.raises(rest_model.ServingError, match="--serving_url=localhost:8501: expected"):
        web.load_demo_model(result["keras"], "localhost:8501")
    with FakeModelServer(tmp_path / "export") as server:
        with pytest.raises(rest_model.ServingError, match="HTTP 404"):
            web.load_demo_model(result["keras"], server.rest_url + "/v1/models/other")
        remote = web.load_demo_model(result["keras"], server.rest_url + "/v1/models/mlc/")
        assert remote.expressions == local.expressions and remote.can_composite
        assert remote.import_resolution == local.import_resolution == TINY["import_resolution"]
        assert "TF Serving" in remote.source
        app = web.create_app(remote).test_client()
        response = post(app, photo_jpeg, expression="happy", intensity="0.75")
        assert response.status_code == 200, response.data[:300]
        mine = synthesize_photo(local, np.asarray(Image.open(io.BytesIO(photo_jpeg))), "happy",
                                paste_back=True, intensity=0.75, aligner=aligner)
        expected = mine.pasted(mine.expressions[0]).astype(int)
        assert np.abs(png_array(response.data).astype(int) - expected).max() <= 1
    # the server is gone: the page's request gets a 502 naming the flag
    assert_error(post(app, photo_jpeg, expression="happy"), 502, "--serving_url=",
                 "cannot reach")


# -- the command and the page in a browser --------------------------------------


def _start_demo(keras_path, log_path):
    """`python -m mlc_keras.demo --port=0` -> (process, its URL)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    # the page's PNG is compared bit for bit with this process's API answer:
    # the same oneDNN kernels on both sides (demo sets frozen weights by
    # default, which moves batch-1 results by float32 round-off)
    env.setdefault("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "0")
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlc_keras.demo", f"--model={keras_path}",
                             "--port=0", "--max_upload_mb=5"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        line = proc.stdout.readline() if ready else ""
        if " on http://" in line:
            return proc, line.split(" on ", 1)[1].split()[0]
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    with open(log_path) as f:
        pytest.fail(f"the demo did not start; its stderr:\n{f.read()[-3000:]}")


def test_command_refuses_bad_flags():
    with pytest.raises(web.DemoError, match="--port=70000: must lie in"):
        web.serve("", port=70000)
    with pytest.raises(web.DemoError, match="--max_upload_mb=0: must lie in"):
        web.serve("", port=0, max_upload_mb=0)
    app = flask.Flask("busy")
    server = web._make_server(app, "127.0.0.1", 0)
    try:
        with pytest.raises(web.DemoError, match=f"--port={server.port}: cannot listen there"):
            web._make_server(app, "127.0.0.1", server.port)
    finally:
        server.server_close()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "mlc_keras.demo",
                           "--serving_url=http://127.0.0.1:1/v1/models/mlc"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --serving_url=") and "needs --model" in last
    assert "Traceback" not in done.stderr


def _browser():
    """A headless Chromium WebDriver, or skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium not installed: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("Chromium and chromedriver are needed for the browser test: apt-get install "
                    "chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--no-first-run"):
        options.add_argument(arg)
    # the installed chromedriver: Selenium Manager never downloads anything
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_page_in_a_browser(tmp_path, keras_path, client, aligner, photo_jpeg):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = _browser()
    proc = None
    try:
        photo = tmp_path / "face.jpg"
        photo.write_bytes(photo_jpeg)
        proc, url = _start_demo(keras_path, tmp_path / "demo.log")
        browser.get(url)
        wait = WebDriverWait(browser, 120)
        select = Select(browser.find_element(By.ID, "expression"))
        wait.until(lambda _: len(select.options) == len(EXPRESSIONS))
        assert [o.text for o in select.options] == EXPRESSIONS
        select.select_by_visible_text("surprised")
        browser.find_element(By.ID, "image").send_keys(str(photo))
        slider = browser.find_element(By.ID, "intensity")
        assert slider.get_attribute("value") == "1"
        slider.send_keys(Keys.ARROW_LEFT * 4)  # 4 steps of 0.05
        assert browser.find_element(By.ID, "intensity-value").text == "0.80"
        browser.find_element(By.ID, "submit").click()
        result = browser.find_element(By.ID, "result-image")
        wait.until(lambda _: browser.find_element(By.ID, "result").is_displayed())
        assert browser.execute_script("return arguments[0].naturalWidth", result) == PHOTO_SIZE[0]
        assert browser.execute_script("return arguments[0].naturalHeight", result) == PHOTO_SIZE[1]
        assert "surprised at intensity 0.80" in browser.find_element(By.ID, "caption").text
        link = browser.find_element(By.ID, "download")
        assert link.is_displayed() and link.get_attribute("href").startswith("blob:")
        assert link.get_attribute("download") == "face_surprised_0.80.png"
        # the PNG behind the link is what the API gives for intensity 0.8
        shown = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.blob()).then(b => {"
            "  const reader = new FileReader();"
            "  reader.onload = () => done(reader.result.split(',')[1]);"
            "  reader.readAsDataURL(b); });", link.get_attribute("href"))
        api = post(client, photo_jpeg, expression="surprised", intensity="0.8")
        np.testing.assert_array_equal(png_array(base64.b64decode(shown)), png_array(api.data))
        # every resource the page loaded came from the demo server
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(name.startswith(url) or name.startswith("blob:")
                              for name in loaded), loaded
        # a file that is not a photo: the server's one-line error is shown
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        browser.find_element(By.ID, "image").send_keys(str(notes))
        browser.find_element(By.ID, "submit").click()
        status = browser.find_element(By.ID, "status")
        wait.until(lambda _: "error" in status.get_attribute("class"))
        assert "image 'notes.txt' is not a readable image" in status.text
        assert not browser.find_element(By.ID, "result").is_displayed()
    finally:
        browser.quit()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
