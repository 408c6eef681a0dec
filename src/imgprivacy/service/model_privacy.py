"""A stored model's differential-privacy budget, read from its own file's metadata.

A guard trained with ``--dp-epsilon`` records ``privacy`` (epsilon, delta, ...) in the JSON
metadata of its safetensors header, validated at upload. The model listing reads it from the
first bytes of the stored file (a safetensors header comes first: 8 bytes of length, then JSON),
so no column holds it and models uploaded before it existed simply have none.
"""

from __future__ import annotations

import json

from sqlalchemy import func

from imgprivacy.service.tables import GuardModel

# Enough for the header of any admitted model (a few tensors' offsets plus ~1 kB of metadata).
HEADER_PREFIX = 65536


def header_prefix():
    """A SQL expression: the first bytes of the stored file (SQLite and PostgreSQL ``substr``)."""
    return func.substr(GuardModel.blob, 1, HEADER_PREFIX)


def privacy_of(prefix: bytes | memoryview | None) -> tuple[float | None, float | None]:
    """``(epsilon, delta)`` of a DP model from the start of its file; ``(None, None)`` otherwise.

    >>> privacy_of(None)
    (None, None)
    """
    if prefix is None:
        return None, None
    prefix = bytes(prefix)
    if len(prefix) < 8:
        return None, None
    size = int.from_bytes(prefix[:8], "little")
    if 8 + size > len(prefix):
        return None, None
    try:
        metadata = json.loads(json.loads(prefix[8 : 8 + size])["__metadata__"]["imgprivacy"])
        privacy = metadata.get("privacy") or {}
        return float(privacy["epsilon"]), float(privacy["delta"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
