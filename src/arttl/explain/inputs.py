"""What a saliency comparison runs on: image files (listed like everywhere in arttl) or PIL
images, decoded like training decoded them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from arttl.data.images import list_image_files, load_rgb
from arttl.errors import ConfigError

__all__ = ["ImageInput", "as_inputs", "input_name", "list_images", "load_input"]

#: A path, a folder (``as_inputs``), a PIL image, or a (name, PIL image) pair.
ImageInput = str | Path | Image.Image | tuple[str, Image.Image]


def list_images(
    source: str | Path | Sequence[str | Path], max_images: int | None = None
) -> list[Path]:
    """Image files from a file, a folder or a list of either; the first ``max_images``.

    A folder is listed by ``arttl.data.images.list_image_files`` (recursive, hidden files and
    certain non-images left out): a file there that does not decode is reported with its
    reason instead of being passed over silently.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise ConfigError(
            "images is not set; give an image file or folder, e.g. "
            "images=data/demo/paintings/Baroque"
        )
    sources = [source] if isinstance(source, str | Path) else list(source)
    paths: list[Path] = []
    for s in sources:
        p = Path(str(s)).expanduser()
        if p.is_dir():
            paths.extend(list_image_files(p))
        elif p.is_file():
            paths.append(p)
        else:
            raise ConfigError(f"images={str(s)!r}: no such file or folder.")
    if not paths:
        raise ConfigError(f"images={source!s}: no files found.")
    if max_images is not None and max_images > 0:
        paths = paths[:max_images]
    return paths


def as_inputs(
    images: ImageInput | Sequence[ImageInput], max_images: int | None = None
) -> list[ImageInput]:
    """``compare_models``' ``images`` as a list: a folder is listed, one input becomes a list."""
    if isinstance(images, str | Path) and Path(images).is_dir():
        items: list[ImageInput] = list(list_images(images, max_images))
    elif isinstance(images, str | Path | Image.Image) or (
        isinstance(images, tuple) and len(images) == 2 and isinstance(images[1], Image.Image)
    ):
        items = [images]
    else:
        items = list(images)
    if max_images is not None and max_images > 0:
        items = items[:max_images]
    return items


def input_name(item: ImageInput, index: int) -> str:
    """The name an input is shown and listed under (its file name, or ``image_<index>``)."""
    if isinstance(item, tuple):
        return str(item[0])
    return Path(str(item)).name if isinstance(item, str | Path) else f"image_{index}"


def load_input(
    item: ImageInput, index: int, shorter_side: int | None
) -> tuple[str, str, Image.Image]:
    """(name, path or "", RGB image); a file is decoded by ``load_rgb`` (raises ImageRejected)."""
    if isinstance(item, tuple):
        return input_name(item, index), "", item[1].convert("RGB")
    if isinstance(item, Image.Image):
        return input_name(item, index), "", item.convert("RGB")
    path = Path(item)
    return path.name, str(path), load_rgb(path, shorter_side=shorter_side)
