"""Read a user's own folder (or list) of images, converted to the model's input size."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgprivacy.errors import CorruptFileError, DataNotFoundError, InvalidInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
COLOR_MODES = {"L": 1, "RGB": 3}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (sorted), or a clear error."""
    root = Path(folder)
    if not root.is_dir():
        raise DataNotFoundError(f"Expected a folder of images at {root}, but it is not a folder.")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(
            f"Found no images ({', '.join(IMAGE_SUFFIXES)}) in {root}. "
            "Put PNG or JPEG files directly inside it."
        )
    return files


def load_image(path: str | os.PathLike, *, size: tuple[int, int], mode: str = "L") -> np.ndarray:
    """One image as uint8, resized to ``size`` = (height, width).

    Returns shape (H, W) for ``mode="L"`` and (H, W, 3) for ``mode="RGB"``.

    Raises
    ------
    CorruptFileError
        When the file cannot be decoded as an image; the message names the file.
    """
    if mode not in COLOR_MODES:
        raise InvalidInputError(f"Expected mode to be one of {sorted(COLOR_MODES)}, got {mode!r}.")
    try:
        with Image.open(path) as image:
            image.load()
            converted = image.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptFileError(
            f"Could not read {path} as an image ({exc}). Remove or replace the file."
        ) from exc
    height, width = size
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8)


def load_images(
    paths: Iterable[str | os.PathLike], *, size: tuple[int, int], mode: str = "L"
) -> np.ndarray:
    """Several images stacked to (N, H, W) or (N, H, W, 3) uint8."""
    arrays = [load_image(p, size=size, mode=mode) for p in paths]
    if not arrays:
        raise InvalidInputError("Expected at least one image path, got none.")
    return np.stack(arrays)


def load_image_folder(
    folder: str | os.PathLike, *, size: tuple[int, int], mode: str = "L"
) -> np.ndarray:
    """Every image in ``folder``, stacked (see :func:`load_images`)."""
    return load_images(list_images(folder), size=size, mode=mode)
