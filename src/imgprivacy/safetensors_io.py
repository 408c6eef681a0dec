"""Reading safetensors files and checking their tensors, the same way for every file kind.

imgprivacy stores weights as safetensors with its JSON metadata under one key of the header's
``__metadata__`` (DOCL autoencoders, the anonymizer, the face extractor, the ResNet-20 port).
:func:`read_safetensors` reads such a file - header length, header JSON, metadata JSON, tensors -
and turns every way it can be malformed into one :class:`~imgprivacy.errors.CorruptFileError`;
:func:`tensor_problems` then lists every mismatch between the tensors and an architecture at once.

Examples
--------
>>> import json
>>> import torch
>>> from safetensors.torch import save
>>> data = save({"w": torch.zeros(2)}, metadata={"imgprivacy": json.dumps({"format": "demo"})})
>>> tensors, metadata = read_safetensors(data, source="demo", expected="a demo file")
>>> sorted(tensors), metadata
(['w'], {'format': 'demo'})
>>> read_safetensors(data[:12], source="demo", expected="a demo file")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
imgprivacy.errors.CorruptFileError: demo is not a demo file (safetensors with 'imgprivacy' metadata): the header declares ... bytes but only 4 follow its length.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from imgprivacy.errors import CorruptFileError

if TYPE_CHECKING:  # torch is imported where tensors are read: the metadata alone needs no torch
    import torch

METADATA_KEY = "imgprivacy"  # the entry of the header's __metadata__ that holds our JSON
LENGTH_BYTES = 8  # a safetensors file starts with the header length, little-endian uint64


def _fail(source: str, expected: str, key: str, reason: str, hint: str) -> CorruptFileError:
    return CorruptFileError(
        f"{source} is not {expected} (safetensors with {key!r} metadata): {reason}."
        + (f" {hint}" if hint else "")
    )


def _parse_json(text: bytes | str, what: str) -> object:
    """JSON of ``text``, or ValueError naming ``what`` (RecursionError included)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"the {what} is nested too deeply to be a JSON object") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the {what} is not valid JSON ({exc})") from None


def _metadata(data: bytes, key: str) -> dict:
    """The JSON object stored under ``key``, or ValueError saying what is wrong."""
    if len(data) < LENGTH_BYTES:
        raise ValueError(
            f"expected at least {LENGTH_BYTES} bytes (the header length), got {len(data)}"
        )
    length = int.from_bytes(data[:LENGTH_BYTES], "little")
    available = len(data) - LENGTH_BYTES
    if length == 0 or length > available:
        raise ValueError(
            f"the header declares {length} bytes but only {available} follow its length"
        )
    header = _parse_json(data[LENGTH_BYTES : LENGTH_BYTES + length], "header")
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, expected an object")
    entries = header.get("__metadata__")
    value = entries.get(key) if isinstance(entries, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"the header's __metadata__ has no {key!r} text entry")
    metadata = _parse_json(value, f"{key!r} metadata")
    if not isinstance(metadata, dict):
        raise ValueError(
            f"the {key!r} metadata is a JSON {type(metadata).__name__}, expected an object"
        )
    return metadata


def read_metadata(
    data: bytes, *, source: str, expected: str, hint: str = "", key: str = METADATA_KEY
) -> dict:
    """The JSON metadata object of safetensors ``data``, without reading the tensors.

    Parameters
    ----------
    data
        The whole file.
    source
        What to call the file in messages (its path, ``"upload"``, ...).
    expected
        What the file should be, for messages ("an imgprivacy autoencoder file").
    hint
        How to get a good file, appended to messages.
    key
        The ``__metadata__`` entry that holds the JSON.

    Raises
    ------
    CorruptFileError
        For a truncated file, a header length beyond the file, a header or metadata that is not a
        JSON object (bad JSON, another JSON type, nesting too deep) or a missing metadata entry.
    """
    try:
        return _metadata(data, key)
    except ValueError as exc:
        raise _fail(source, expected, key, str(exc), hint) from None


def read_safetensors(
    data: bytes, *, source: str, expected: str, hint: str = "", key: str = METADATA_KEY
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of safetensors ``data``; arguments as in :func:`read_metadata`.

    The tensors are not checked against any architecture: pass them to :func:`tensor_problems`.

    Raises
    ------
    CorruptFileError
        As :func:`read_metadata`, and for tensor entries safetensors cannot read (an unknown
        dtype, offsets outside the data, data the entries do not cover exactly).
    """
    from safetensors.torch import load as load_bytes

    metadata = read_metadata(data, source=source, expected=expected, hint=hint, key=key)
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise _fail(source, expected, key, f"unreadable tensors ({exc})", hint) from None
    return tensors, metadata


def finite_number(value: object) -> bool:
    """Whether a metadata value is a finite int or float (a 400-digit integer overflows: no).

    >>> finite_number(2.5), finite_number(True), finite_number(float("nan")), finite_number(10**400)
    (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _listed(names: list[str], limit: int) -> str:
    shown = names[:limit]
    return f"{shown}{' ...' if len(names) > limit else ''}"


def tensor_problems(
    tensors: dict[str, torch.Tensor],
    expected: dict[str, tuple[int, ...]],
    *,
    dtype: torch.dtype | None | str = "float32",
    check_finite: bool = True,
    list_limit: int = 10,
) -> list[str]:
    """Every mismatch between ``tensors`` and the ``expected`` names and shapes.

    ``dtype`` is a torch dtype or its name; ``None`` skips the dtype check. Finiteness is checked
    only for tensors of the right dtype (a wrong dtype is already reported).

    >>> import torch
    >>> tensor_problems({"w": torch.zeros(2, 3), "x": torch.zeros(1)}, {"w": (3, 2), "b": (3,)})
    ["missing tensors ['b']", "unexpected tensors ['x']", 'w has shape (2, 3), expected (3, 2)']
    """
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    problems = []
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {_listed(missing, list_limit)}")
    if extra:
        problems.append(f"unexpected tensors {_listed(extra, list_limit)}")
    for name, shape in expected.items():
        tensor = tensors.get(name)
        if tensor is None:
            continue
        if tuple(tensor.shape) != shape:
            problems.append(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if dtype is not None and tensor.dtype != dtype:
            problems.append(f"{name} has dtype {tensor.dtype}, expected {dtype}")
        elif check_finite and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            problems.append(f"{name} contains NaN or infinite values")
    return problems
