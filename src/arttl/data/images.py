"""Robust image decoding: every image file becomes 8-bit RGB, or a rejection with a reason.

Written by hand because Pillow decodes but does not classify failures: a zero-byte file, an
HTML page saved as ``.jpg``, a download cut in half, a 400-megapixel scan and a file we may
not read all surface as some ``OSError`` (or a warning), and several odd-but-valid files
(CMYK, 16-bit grayscale, palette with transparency, EXIF-rotated photos) decode "fine" into
something a network must not see as-is (clipped to white, composited on black, sideways).
``prepare`` needs one short reason per broken file for ``rejected.csv``; ``predict`` and
``saliency`` need the same pixels that training saw.

Pillow keeps its safety switches in module globals (``Image.MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``). We never change them for good: the pixel limit is our
own ``MAX_PIXELS``, and the rare moment we must flip a global (see ``_pil_globals``) is
short, under a lock, and restored in ``finally``.

Which files of a folder count as images is decided here too (``list_image_files``), once for
prepare's folder readers, ``predict`` and ``saliency``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

__all__ = [
    "MAX_PIXELS",
    "NON_IMAGE_EXTENSIONS",
    "ImageRejected",
    "encode_jpeg",
    "list_image_files",
    "load_rgb",
    "to_rgb",
]

log = logging.getLogger(__name__)

#: Pillow's own hard limit (2 x its warning threshold, ~179 megapixels). Large museum scans
#: (e.g. 10000 x 14000) pass; crafted bombs and absurd scans do not.
MAX_PIXELS: int = 2 * 89_478_485

#: Extensions that are certainly not images; every other file of an image folder is kept so
#: that a corrupt or misnamed file is rejected later *with a reason* by the decoder.
NON_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".txt", ".csv", ".tsv", ".json", ".xml", ".md", ".rst", ".html", ".htm", ".yaml",
        ".yml", ".ini", ".cfg", ".log", ".py", ".ipynb", ".mat", ".h5", ".hdf5", ".npy",
        ".npz", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".safetensors", ".zip", ".tar",
        ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".pdf", ".doc", ".docx", ".db", ".ds_store",
    }
)  # fmt: skip

#: Transparent pixels are composited on white: museum and shop images with an alpha channel
#: are meant to be shown on a white page; black would add a dark frame nobody ever saw.
_BACKGROUND = (255, 255, 255)

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees

# Serialises our short flips of Pillow's module globals (see _pil_globals).
_PIL_GLOBALS_LOCK = threading.Lock()


class ImageRejected(Exception):
    """An input that is not a usable image; ``reason`` is a short phrase for ``rejected.csv``.

    ``source`` (the path, when there is one) is only added to the message, so that ``reason``
    stays comparable across files (count rejections by reason).
    """

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {reason}" if source else reason)

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str | None]]:
        # Survive pickling across process pools with ``reason`` intact (the default would
        # rebuild it from the combined message).
        return type(self), (self.reason, self.source)


Source = str | os.PathLike[str] | bytes | bytearray | memoryview


def load_rgb(src: Source, *, shorter_side: int | None = None) -> Image.Image:
    """Decode ``src`` (a path, or the file's bytes) to a fully loaded 8-bit RGB image.

    - EXIF orientation is applied, so the pixels are the way a person sees the photo.
    - Every Pillow mode becomes RGB (see ``to_rgb``): alpha on white, 16-bit scaled not
      clipped, CMYK/YCbCr/LAB converted.
    - ``shorter_side`` only ever shrinks (aspect ratio kept; the shorter side gets exactly
      the requested length). Smaller images are kept as they are: upscaling
      adds no information, costs store space, and timm's transforms resize at train time
      anyway. JPEGs are decoded at a reduced DCT scale first (``Image.draft``: the largest
      power of two that keeps both sides >= the target), which is several times faster and
      lighter than decoding a full museum scan and throwing most of it away.
    - Rejections raise ``ImageRejected``: zero-byte, not an image, truncated or corrupt data,
      more than ``MAX_PIXELS`` pixels (checked on the header, before any decoding),
      missing or unreadable file.

    The returned image owns its pixels: no file handle stays open.
    """
    if shorter_side is not None and shorter_side < 1:
        raise ValueError(
            f"shorter_side must be a positive number of pixels or None, got {shorter_side}"
        )

    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        if not data:
            raise ImageRejected("zero-byte file")
        return _decode(io.BytesIO(data), None, shorter_side)

    path = os.fspath(src)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with block right below
    except FileNotFoundError:
        raise ImageRejected("file not found", path) from None
    except OSError as e:
        raise ImageRejected(f"unreadable: {_strerror(e)}", path) from None
    with fh:
        try:
            empty = os.fstat(fh.fileno()).st_size == 0
        except OSError as e:
            raise ImageRejected(f"unreadable: {_strerror(e)}", path) from None
        if empty:
            raise ImageRejected("zero-byte file", path)
        return _decode(fh, path, shorter_side)


def _decode(
    fh: io.BufferedIOBase | io.BytesIO, path: str | None, shorter_side: int | None
) -> Image.Image:
    fmt = None
    try:
        with _pil_globals(max_image_pixels=None):  # our own limit below, with a better message
            im = Image.open(fh)
        with im:
            fmt = im.format
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageRejected(
                    f"decompression bomb: {w}x{h} pixels exceeds limit {MAX_PIXELS}", path
                )
            orientation = _orientation(im)
            target = _target_size((w, h), shorter_side)
            if target is not None and isinstance(im, JpegImagePlugin.JpegImageFile):
                # Size is in stored (pre-rotation) axes, like the file's own size.
                im.draft("RGB", target)
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                # Someone else switched truncation tolerance on; we must still see it.
                with _pil_globals(load_truncated_images=False):
                    im.load()
            else:
                im.load()
            out, transposed = _exif_transpose(im, path)
            out = to_rgb(out)
            if target is not None:
                if transposed and orientation in _SWAPS_AXES:
                    target = (target[1], target[0])
                if out.size != target:
                    out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if out is im:  # leaving the with block closes im
                out = im.copy()
            return out
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Raised by Pillow's own check on frames/sizes it learns only while loading.
        raise ImageRejected(f"decompression bomb: {e}", path) from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image (cannot identify image file)", path) from None
    except MemoryError:
        raise ImageRejected(f"out of memory decoding {fmt or 'image'}", path) from None
    except OSError as e:
        if e.errno is not None:  # a real I/O error from the OS, not a decoder complaint
            raise ImageRejected(f"unreadable: {_strerror(e)}", path) from None
        msg = _clean(str(e))
        kind = "truncated" if "truncated" in msg.lower() else "corrupt"
        raise ImageRejected(f"{kind} {fmt or 'image'} ({msg})", path) from None
    except Exception as e:
        # Plugins signal broken structure with SyntaxError, ValueError, struct.error, EOFError,
        # zlib.error ...: a broken file must become a listed rejection, never a crashed job.
        msg = _clean(str(e)) or "no detail"
        raise ImageRejected(f"corrupt {fmt or 'image'} ({type(e).__name__}: {msg})", path) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB the way a person would expect to see it.

    Pillow's plain ``convert("RGB")`` is right for most modes but wrong for some that real
    collections contain: it clips 16-bit grayscale (every value above 255 turns white) and
    drops alpha (transparent pixels show their hidden colour, often black). Returns ``img``
    itself when it is already RGB (without a PNG colour key).
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:  # every JPEG: the fast path
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _high_depth_to_uint8(np.asarray(img), mode)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "La":  # premultiplied; Pillow converts it to nothing else
        arr = np.asarray(img).astype(np.float32)
        alpha = arr[..., 1:2] / 255.0
        rgb = arr[..., :1] + (1.0 - alpha) * 255.0  # premultiplied "over" white
        return Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8)[..., 0]).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, _BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's conversion is the right one.
    return img.convert("RGB")


def _high_depth_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit integer or float gray to 0..255 without clipping the bright half.

    ``I;16*`` is 16-bit by definition: keep the high byte. ``I`` (32-bit int) is how some
    files and older Pillows carry 16-bit data, so its range decides: <= 255 is already 8-bit,
    <= 65535 is 16-bit, anything else is stretched. ``F`` in [0, 1] is scaled by 255,
    within [0, 255] kept, anything else stretched.
    """
    if mode.startswith("I;16"):
        return (arr.astype(np.uint16) >> 8).astype(np.uint8)
    if mode == "I":
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return (arr >> 8).astype(np.uint8)
        return _stretch(arr.astype(np.float64))
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.round(arr * 255.0).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.round(arr).astype(np.uint8)
    return _stretch(arr)


def _stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _target_size(size: tuple[int, int], shorter_side: int | None) -> tuple[int, int] | None:
    """Size after shrinking the shorter side to ``shorter_side``; None = keep as it is."""
    w, h = size
    if shorter_side is None or min(w, h) <= shorter_side:
        return None
    scale = shorter_side / min(w, h)
    # The shorter side is set exactly: float rounding must not cost it a pixel.
    if w <= h:
        return shorter_side, max(1, round(h * scale))
    return max(1, round(w * scale)), shorter_side


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # broken EXIF only costs us the orientation
        return 1


def _exif_transpose(im: Image.Image, path: str | None) -> tuple[Image.Image, bool]:
    """(upright image, whether EXIF orientation was applied)."""
    try:
        return ImageOps.exif_transpose(im), True
    except Exception as e:
        # A broken EXIF block is metadata damage, not image damage: keep the pixels.
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", path or "<bytes>", e)
        return im, False


@contextlib.contextmanager
def _pil_globals(**values: object) -> Iterator[None]:
    """Briefly set Pillow globals (``max_image_pixels``, ``load_truncated_images``), then restore.

    Only used around ``Image.open`` (header parsing, microseconds) and, if another library
    switched truncation tolerance on globally, around ``load``. The lock serialises our own
    threads; another thread decoding outside this module during that window would see the
    flipped value - an accepted, documented trade-off for our own exact limits.
    """
    targets = {
        "max_image_pixels": (Image, "MAX_IMAGE_PIXELS"),
        "load_truncated_images": (ImageFile, "LOAD_TRUNCATED_IMAGES"),
    }
    with _PIL_GLOBALS_LOCK:
        saved = {key: getattr(*targets[key]) for key in values}
        try:
            for key, value in values.items():
                setattr(*targets[key], value)
            yield
        finally:
            for key, value in saved.items():
                setattr(*targets[key], value)


def _strerror(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).lower()


def _clean(msg: str) -> str:
    """Drop byte counts from Pillow messages so that reasons group across files."""
    msg = re.sub(r"\s*\(\d+ bytes not processed\)", "", msg)
    return msg.strip()


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    """JPEG bytes of ``img`` (converted with ``to_rgb`` if needed), for the HDF5 store.

    No EXIF/ICC is written: the pixels are already upright, and nothing downstream reads
    colour profiles. Quality 95 keeps compression artefacts below what a network notices.
    """
    buf = io.BytesIO()
    to_rgb(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _is_listed(name: str, extensions: Iterable[str] | None = None) -> bool:
    """Whether a file called ``name`` is listed as an image (see ``list_image_files``)."""
    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    if extensions is not None:
        return suffix in {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return suffix not in NON_IMAGE_EXTENSIONS


def list_image_files(
    folder: str | os.PathLike[str], extensions: Iterable[str] | None = None
) -> list[Path]:
    """The image files of ``folder``: arttl's one listing policy (prepare's folder readers,
    ``predict input=<folder>``, ``saliency images=<folder>``).

    - recursive (symbolic links followed), sorted by name within each folder, a folder's files
      before its sub-folders;
    - hidden files and folders (a name starting with ``.``) are skipped;
    - every extension is kept except certain non-images (``NON_IMAGE_EXTENSIONS``: text,
      tables, archives, checkpoints, ...), so a file that does not decode is reported with
      its reason instead of being passed over silently;
    - ``extensions`` (e.g. ``[".jpg", ".png"]``, case-insensitive) keeps only those.
    """
    exts = None if extensions is None else tuple(extensions)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        found += [
            base / name
            for name in sorted(filenames)
            if _is_listed(name, exts) and (base / name).is_file()
        ]
    return found
