"""Turn the body of ``POST /v1/check`` into one feature vector.

Accepted: a PNG or JPEG as the raw body (``Content-Type: image/png`` or ``image/jpeg``) or as
the ``image`` field of a multipart form, or ``application/json`` ``{"features": [D floats]}``.
Images are decoded with the exact conversion the edge client trains with
(:func:`imgprivacy.data.load_image`), so the same file gives the same features on both sides.
"""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from imgprivacy.data import load_image
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.features import FeatureExtractor
from imgprivacy.service.errors import (
    PayloadTooLarge,
    ServiceError,
    Unprocessable,
    UnsupportedMediaType,
)

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
MAGIC = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}


def check_image_bytes(data: bytes, *, max_bytes: int) -> None:
    """The cheap checks done on the event loop: size and PNG/JPEG signature."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"Expected an image of at most {max_bytes} bytes, got {len(data)}.")
    if not any(data.startswith(magic) for magic in MAGIC.values()):
        raise Unprocessable(
            "The body is neither a PNG nor a JPEG file (checked by its first bytes).",
            detail="invalid image",
        )


def decode_image(data: bytes, *, extractor: FeatureExtractor, max_pixels: int) -> np.ndarray:
    """uint8 pixels at the extractor's input size and mode, or a 4xx naming the problem."""
    kind = next((k for k, magic in MAGIC.items() if data.startswith(magic)), "image")
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError as exc:  # Pillow refuses far above max_pixels itself
        raise PayloadTooLarge(
            f"Expected at most {max_pixels} pixels: {exc} Downscale the image."
        ) from exc
    except UnidentifiedImageError as exc:
        raise Unprocessable(
            f"Could not read the {kind} header: not a complete {kind} file.",
            detail="invalid image",
        ) from exc
    except (OSError, ValueError) as exc:
        raise Unprocessable(
            f"Could not read the {kind} header: {exc}.", detail="invalid image"
        ) from exc
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"Expected at most {max_pixels} pixels, got {width}x{height}; downscale the image."
        )
    try:
        return load_image(io.BytesIO(data), size=extractor.input_size, mode=extractor.mode)
    except CorruptFileError as exc:
        raise Unprocessable(f"Could not decode the {kind} image.", detail="invalid image") from exc


def prepare_batch(
    payloads: list[torch.Tensor | bytes], *, extractor: FeatureExtractor, max_pixels: int
) -> tuple[torch.Tensor | None, list[Exception | None]]:
    """Features of a micro-batch: feature rows as given, images decoded and extracted together.

    Runs on the scorer thread, off the event loop. Returns the (k, D) features of the payloads
    that worked, in order, and per payload the error that stopped it (or None).
    """
    rows: list[torch.Tensor | None] = [None] * len(payloads)
    errors: list[Exception | None] = [None] * len(payloads)
    pixels, where = [], []
    for i, payload in enumerate(payloads):
        if torch.is_tensor(payload):
            rows[i] = payload
            continue
        try:
            pixels.append(decode_image(payload, extractor=extractor, max_pixels=max_pixels))
            where.append(i)
        except ServiceError as exc:
            errors[i] = exc
    if pixels:
        features = extractor.transform(np.stack(pixels))  # one call for every image
        for k, i in enumerate(where):
            rows[i] = features[k : k + 1]
    ok = [row for row in rows if row is not None]
    return (torch.cat(ok) if ok else None), errors


def json_features(data: bytes, *, dim: int) -> torch.Tensor:
    """(1, D) features from ``{"features": [...]}``."""
    try:
        body = json.loads(data.decode("utf-8"))  # strict: the depth limit scans UTF-8 bytes
        values = body["features"]
        array = np.asarray(values, dtype=np.float32)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise Unprocessable(
            f'Expected a JSON object {{"features": [{dim} numbers in [0, 1]]}}: {exc}.',
            detail="invalid features",
        ) from exc
    if array.ndim == 1:
        array = array[None]
    try:
        features = as_feature_matrix(array, input_dim=dim, what="features")
    except InvalidInputError as exc:
        raise Unprocessable(exc.problems, detail="invalid features") from exc
    if len(features) != 1:
        raise Unprocessable(
            f"Expected one feature vector, got {len(features)}.", detail="invalid features"
        )
    return features


def unsupported(content_type: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"Got Content-Type {content_type or '(none)'!r}; send image/png, image/jpeg, "
        "multipart/form-data with an 'image' field, or application/json {\"features\": [...]}."
    )
