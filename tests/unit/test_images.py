"""Decoding: broken files become reasons, odd files become correct RGB, big JPEGs decode small;
and which files of a folder are images at all."""

from __future__ import annotations

import io
import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from arttl.data import images
from arttl.data.images import (
    ImageRejected,
    encode_jpeg,
    list_image_files,
    load_rgb,
    to_rgb,
)
from tests.fixtures.bad_images import (
    BLUE,
    GRAY_L,
    RED,
    UNREADABLE_NAME,
    WHITE,
    make_bad_image_zoo,
    make_good_odd_images,
    png_1bit_blank,
)
from tests.fixtures.real_data import EXCERPTS

AHE = EXCERPTS / "ahe_excerpt"

BAD_NAMES = [
    "empty.jpg",
    "truncated.jpg",
    "truncated.png",
    "not_an_image.jpg",
    "bomb.png",
    "a_folder.jpg",
    UNREADABLE_NAME,
]
GOOD_NAMES = [
    "cmyk.jpg",
    "gray.jpg",
    "palette_transparent.png",
    "rgba.png",
    "la.png",
    "gray16.png",
    "exif_rot6.jpg",
    "bilevel.png",
    "png_named.jpg",
]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def bad_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, make_bad_image_zoo(folder)


@pytest.fixture(scope="module")
def good_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    folder = tmp_path_factory.mktemp("good")
    return folder, make_good_odd_images(folder)


def _smooth_rgb(w: int, h: int) -> Image.Image:
    """Low-frequency content, so different good downscalers must agree closely."""
    y, x = (a.astype(np.float32) for a in np.ogrid[0:h, 0:w])  # a column and a row: cheap
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = (127 + 120 * np.sin(x / w * 2 * np.pi)).round()
    rgb[..., 1] = (255 * y / h).round()
    rgb[..., 2] = (127 + 120 * np.cos((x + y) / (w + h) * 4 * np.pi)).round()
    return Image.fromarray(rgb)


def _jpeg_bytes(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    path.write_bytes(_jpeg_bytes(_smooth_rgb(4000, 3000)))
    return path


# --- rejections -------------------------------------------------------------------------


def test_bad_zoo_covers_the_listed_cases(bad_zoo: tuple[Path, dict[str, str]]) -> None:
    assert sorted(bad_zoo[1]) == sorted(BAD_NAMES)


def _deny_like_chmod_000(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Root reads a chmod-000 file anyway: make opening it fail as it does for anyone else."""

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(images, "open", guarded, raising=False)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_image_is_rejected_with_its_reason(
    name: str, bad_zoo: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, expected = bad_zoo
    if name == UNREADABLE_NAME and IS_ROOT:
        _deny_like_chmod_000(monkeypatch, folder / name)
    with pytest.raises(ImageRejected) as info:
        load_rgb(folder / name)
    assert expected[name] in info.value.reason
    assert str(folder / name) in str(info.value)  # the message names the file ...
    assert str(folder) not in info.value.reason  # ... the reason does not (it is grouped)


@pytest.mark.parametrize("name", ["empty.jpg", "truncated.jpg", "not_an_image.jpg", "bomb.png"])
def test_bytes_input_is_rejected_like_the_file(
    name: str, bad_zoo: tuple[Path, dict[str, str]]
) -> None:
    folder, expected = bad_zoo
    with pytest.raises(ImageRejected) as info:
        load_rgb((folder / name).read_bytes())
    assert expected[name] in info.value.reason


def test_rejection_pickles_with_its_reason() -> None:
    """prepare may decode in a process pool: the reason must cross the process boundary."""
    err = pickle.loads(pickle.dumps(ImageRejected("zero-byte file", "/x/a.jpg")))
    assert (err.reason, err.source, str(err)) == (
        "zero-byte file",
        "/x/a.jpg",
        "/x/a.jpg: zero-byte file",
    )


def _decodes(path: Path) -> bool:
    try:
        load_rgb(path)
    except ImageRejected:
        return False
    return True


def test_threads_share_the_globals_safely(
    bad_zoo: tuple[Path, dict[str, str]], good_zoo: tuple[Path, dict]
) -> None:
    """prepare may decode in threads (Pillow releases the GIL): every flip must be undone."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    names = ["bomb.png", "truncated.jpg", "not_an_image.jpg", "empty.jpg"]
    jobs = [bad_zoo[0] / n for n in names] + [good_zoo[0] / n for n in good_zoo[1]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_decodes, jobs * 10))
    assert results == [p.parent == good_zoo[0] for p in jobs] * 10
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageRejected) as info:
        load_rgb(tmp_path / "nope.jpg")
    assert info.value.reason == "file not found"


def test_permission_denied_even_as_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The chmod-000 zoo file is skipped under root; this covers the same branch anywhere."""
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg_bytes(Image.new("RGB", (8, 8))))

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", deny, raising=False)
    with pytest.raises(ImageRejected) as info:
        load_rgb(path)
    assert info.value.reason == "unreadable: permission denied"


def test_bomb_limit_is_local_and_pil_globals_are_untouched(
    bad_zoo: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = bad_zoo
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    small = io.BytesIO()
    Image.new("RGB", (100, 100)).save(small, format="PNG")

    with monkeypatch.context() as patch:
        patch.setattr(images, "MAX_PIXELS", 5000)
        with pytest.raises(ImageRejected, match=r"100x100 pixels exceeds limit 5000"):
            load_rgb(small.getvalue())
    for name in ("bomb.png", "truncated.jpg", "not_an_image.jpg"):
        with pytest.raises(ImageRejected):
            load_rgb(folder / name)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)

    # Someone else lowered Pillow's global limit: our own limit still decides, and
    # their setting survives the call.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_rgb(small.getvalue()).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_truncation_detected_even_if_someone_enabled_truncated_loading(
    bad_zoo: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = bad_zoo
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageRejected, match="truncated JPEG"):
        load_rgb(folder / "truncated.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_bomb_builder_writes_a_valid_png() -> None:
    img = load_rgb(png_1bit_blank(70, 9))
    assert img.size == (70, 9)
    assert not np.asarray(img).any()


def test_nonsense_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        load_rgb(b"\xff\xd8", shorter_side=0)


# --- odd but good -----------------------------------------------------------------------


def test_good_zoo_covers_the_listed_cases(good_zoo: tuple[Path, dict]) -> None:
    assert sorted(good_zoo[1]) == sorted(GOOD_NAMES)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_odd_image_loads_as_rgb_uint8(name: str, good_zoo: tuple[Path, dict]) -> None:
    folder, expected = good_zoo
    img = load_rgb(folder / name)
    assert img.mode == "RGB"
    assert img.size == expected[name]
    assert np.asarray(img).dtype == np.uint8
    assert getattr(img, "fp", None) is None  # nothing lazy left to read


def _px(img: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(img)[y, x].astype(int)


def test_odd_image_values(good_zoo: tuple[Path, dict]) -> None:
    folder, _ = good_zoo

    def load(name: str) -> Image.Image:
        return load_rgb(folder / name)

    np.testing.assert_allclose(_px(load("cmyk.jpg"), 5, 5), RED, atol=3)
    np.testing.assert_allclose(_px(load("gray.jpg"), 5, 5), (128, 128, 128), atol=2)

    pal = load("palette_transparent.png")
    assert tuple(_px(pal, 2, 2)) == WHITE
    assert tuple(_px(pal, 38, 2)) == BLUE

    rgba = load("rgba.png")
    assert tuple(_px(rgba, 2, 2)) == WHITE  # transparent black is shown on white
    np.testing.assert_allclose(_px(rgba, 38, 2), (255, 127, 127), atol=1)

    la = load("la.png")
    assert tuple(_px(la, 2, 2)) == WHITE
    assert tuple(_px(la, 38, 2)) == (GRAY_L,) * 3

    gray16 = np.asarray(load("gray16.png"))
    expected = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256))
    for channel in range(3):
        np.testing.assert_array_equal(gray16[..., channel], expected)  # >> 8, not clipped

    rot = load("exif_rot6.jpg")  # stored 40x20, red block at stored top-left
    assert rot.size == (20, 40)
    np.testing.assert_allclose(_px(rot, 16, 3), RED, atol=20)  # now at the top-right
    np.testing.assert_allclose(_px(rot, 3, 3), BLUE, atol=20)
    np.testing.assert_allclose(_px(rot, 16, 36), BLUE, atol=20)

    bilevel = load("bilevel.png")
    assert tuple(_px(bilevel, 2, 2)) == (0, 0, 0)
    assert tuple(_px(bilevel, 38, 2)) == WHITE


def _mode_cases() -> list[object]:
    u16 = np.full((2, 3), 0x1234, dtype=np.uint16)
    cases = [
        ("I;16B", Image.fromarray(u16.astype(">u2")), (0x12,) * 3),
        ("I 16-bit range", Image.fromarray(u16.astype(np.int32)), (0x12,) * 3),
        ("I 8-bit range", Image.fromarray(np.full((2, 3), 77, dtype=np.int32)), (77,) * 3),
        ("F in [0,1]", Image.fromarray(np.full((2, 3), 0.5, dtype=np.float32)), (128,) * 3),
        ("LAB", Image.new("LAB", (3, 2), (255, 128, 128)), WHITE),
        ("YCbCr", Image.new("YCbCr", (3, 2), (255, 128, 128)), WHITE),
        ("HSV", Image.new("HSV", (3, 2), (0, 255, 255)), RED),
        ("CMYK", Image.new("CMYK", (3, 2), (0, 255, 255, 0)), RED),
        ("RGBa transparent", Image.new("RGBa", (3, 2), (0, 0, 0, 0)), WHITE),
        ("La transparent", Image.new("La", (3, 2), (0, 0)), WHITE),
        ("PA transparent", Image.new("PA", (3, 2), (0, 0)), WHITE),
        ("P opaque", Image.new("P", (3, 2), 0), (0, 0, 0)),
    ]
    keyed = Image.new("RGB", (3, 2), (1, 2, 3))
    keyed.info["transparency"] = (1, 2, 3)  # PNG tRNS colour key
    cases.append(("RGB colour key", keyed, WHITE))
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize(("label", "img", "rgb"), _mode_cases())
def test_to_rgb_modes(label: str, img: Image.Image, rgb: tuple[int, int, int]) -> None:
    out = to_rgb(img)
    assert out.mode == "RGB"
    assert out.size == img.size
    np.testing.assert_allclose(_px(out, 0, 0), rgb, atol=1, err_msg=label)


def test_to_rgb_stretches_unknown_float_range() -> None:
    arr = np.array([[-5.0, 0.0, 1000.0]], dtype=np.float32)
    out = np.asarray(to_rgb(Image.fromarray(arr)))[0, :, 0]
    assert out[0] == 0 and out[-1] == 255 and 0 < out[1] < 5


# --- resizing and draft -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((1600, 1200), {"shorter_side": 320}, (427, 320)),
        ((1200, 1600), {"shorter_side": 320}, (320, 427)),
        ((64, 48), {"shorter_side": 224}, (64, 48)),  # never upscaled
        ((300, 200), {"shorter_side": 200}, (300, 200)),
    ],
)
def test_shrink_to_exact_size(
    size: tuple[int, int], kwargs: dict[str, int], expected: tuple[int, int]
) -> None:
    data = _jpeg_bytes(_smooth_rgb(*size))
    assert load_rgb(data, **kwargs).size == expected


def test_shrink_non_jpeg_too() -> None:
    buf = io.BytesIO()
    _smooth_rgb(900, 600).save(buf, format="PNG")
    assert load_rgb(buf.getvalue(), shorter_side=150).size == (225, 150)


def test_big_jpeg_is_decoded_via_draft(big_jpeg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str, size: tuple[int, int]) -> object:
        result = real_draft(self, mode, size)
        calls.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = load_rgb(big_jpeg, shorter_side=300)
    assert small.size == (400, 300)
    # asked for the target; libjpeg scaled by 1/8, the largest power of 2 keeping >= 300
    assert calls == [("RGB", (400, 300), (500, 375))]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", real_draft)
    with Image.open(big_jpeg) as full:
        reference = full.convert("RGB").resize((400, 300), Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(small, dtype=np.int16) - np.asarray(reference, dtype=np.int16))
    assert diff.mean() < 2.0, diff.mean()


def test_shrink_follows_exif_rotation() -> None:
    stored = _smooth_rgb(800, 400)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_rgb(_jpeg_bytes(stored, exif=exif.tobytes()), shorter_side=100)
    assert out.size == (100, 200)


# --- files, bytes, helpers --------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_no_file_handles_left_open(good_zoo: tuple[Path, dict], big_jpeg: Path) -> None:
    folder, expected = good_zoo
    before = len(os.listdir("/proc/self/fd"))
    kept = [load_rgb(folder / name) for name in expected]
    kept.append(load_rgb(big_jpeg, shorter_side=64))
    assert len(os.listdir("/proc/self/fd")) == before
    assert all(np.asarray(img).size for img in kept)  # and the pixels are still there


def test_jpeg_round_trip() -> None:
    img = _smooth_rgb(50, 40)
    data = encode_jpeg(img, quality=95)
    assert data[:2] == b"\xff\xd8"
    back = load_rgb(data)
    assert back.mode == "RGB" and back.size == (50, 40)
    assert np.abs(np.asarray(back, dtype=int) - np.asarray(img, dtype=int)).mean() < 2

    rgba = encode_jpeg(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))  # converted, on white
    assert tuple(_px(load_rgb(rgba), 1, 1)) == WHITE


def test_encode_jpeg_drops_orientation(good_zoo: tuple[Path, dict]) -> None:
    folder, _ = good_zoo
    upright = load_rgb(folder / "exif_rot6.jpg")
    again = load_rgb(encode_jpeg(upright))
    assert again.size == upright.size  # no stale EXIF tag rotates it a second time


# --- which files are images ------------------------------------------------------------


def test_one_listing_policy(tmp_path: Path) -> None:
    """Recursive, a folder's files before its sub-folders, hidden names and certain
    non-images left out, everything else kept (a broken file is reported, not ignored)."""
    for name in ("b.jpg", "a.PNG", "scan.tif", "no_suffix", "broken.jpg", "notes.txt",
                 "meta.json", ".hidden.jpg", "sub/c.jpg", "sub/deeper/d.webp", ".git/e.jpg",
                 "z_folder/f.jpeg"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert listed == ["a.PNG", "b.jpg", "broken.jpg", "no_suffix", "scan.tif", "sub/c.jpg",
                      "sub/deeper/d.webp", "z_folder/f.jpeg"]  # fmt: skip
    only = list_image_files(tmp_path, extensions=["JPG", ".jpeg"])
    assert [p.name for p in only] == ["b.jpg", "broken.jpg", "c.jpg", "f.jpeg"]


# --- real data --------------------------------------------------------------------------


def test_real_ahe_files() -> None:
    gray = AHE / "flying_buttress" / "Le_Mont_Saint-Michel_en_1948_(9).jpg"
    non_ascii = next(p for p in sorted((AHE / "apse").iterdir()) if not p.name.isascii())
    plain = next(p for p in sorted((AHE / "vault").iterdir()) if p.suffix == ".jpg")
    with Image.open(gray) as raw:
        assert raw.mode == "L"  # the one grayscale file of the set
    for path in (gray, non_ascii, plain):
        img = load_rgb(path)
        assert img.mode == "RGB" and img.size == (64, 64), path
    rgb = np.asarray(load_rgb(gray))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert load_rgb(non_ascii.read_bytes()).size == (64, 64)
    assert sys.getfilesystemencoding()  # names are passed through unchanged as str paths
