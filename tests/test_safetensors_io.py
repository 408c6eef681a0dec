"""The one safetensors reader: every malformed file is one clear CorruptFileError."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save as save_bytes

from imgprivacy.anonymizer.persistence import model_from_bytes
from imgprivacy.docl.persistence import autoencoder_from_bytes
from imgprivacy.errors import CorruptFileError
from imgprivacy.features.faces import face_extractor_from_bytes
from imgprivacy.safetensors_io import read_metadata, read_safetensors, tensor_problems

READ = dict(source="m.safetensors", expected="a test file", hint="Write it with save().")


def raw(header: bytes, body: bytes = b"", *, length: int | None = None) -> bytes:
    """Safetensors bytes with a hand-written header (and a chosen declared length)."""
    return struct.pack("<Q", len(header) if length is None else length) + header + body


def meta_header(metadata: object, tensors: dict | None = None) -> bytes:
    return json.dumps({"__metadata__": {"imgprivacy": json.dumps(metadata)}, **(tensors or {})})


@pytest.fixture
def good() -> bytes:
    return save_bytes(
        {"w": torch.arange(6.0).reshape(2, 3)},
        metadata={"imgprivacy": json.dumps({"format": "test", "n": 1})},
    )


def test_reads_tensors_and_metadata(good):
    tensors, metadata = read_safetensors(good, **READ)
    assert metadata == {"format": "test", "n": 1}
    assert torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert read_metadata(good, **READ) == metadata


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", r"expected at least 8 bytes \(the header length\), got 0"),
        (b"\x10\x00\x00", r"got 3"),
        (raw(b""), "declares 0 bytes"),
    ],
)
def test_truncated_header(data, reason):
    with pytest.raises(CorruptFileError, match=reason):
        read_safetensors(data, **READ)


def test_truncated_file_cuts_the_header(good):
    with pytest.raises(CorruptFileError, match=r"declares \d+ bytes but only 12 follow"):
        read_safetensors(good[:20], **READ)


def test_header_length_beyond_the_file():
    data = raw(b'{"__metadata__": {}}', length=2**63)
    with pytest.raises(
        CorruptFileError, match=f"declares {2**63} bytes but only 20 follow its length"
    ):
        read_metadata(data, **READ)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"__metadata__": ', "the header is not valid JSON"),
        (b"\xff\xfe{}", "the header is not valid JSON"),
        (b"[1, 2]", "the header is a JSON list, expected an object"),
        (b'{"w": {"dtype": "F32"}}', "__metadata__ has no 'imgprivacy' text entry"),
        (b'{"__metadata__": {"imgprivacy": 5}}', "no 'imgprivacy' text entry"),
        (meta_header("x").encode(), "'imgprivacy' metadata is a JSON str, expected an object"),
        (
            json.dumps({"__metadata__": {"imgprivacy": "{oops"}}).encode(),
            "'imgprivacy' metadata is not valid JSON",
        ),
        (meta_header([1]).encode(), "'imgprivacy' metadata is a JSON list, expected an object"),
    ],
)
def test_bad_json(header, reason):
    with pytest.raises(CorruptFileError, match=reason) as info:
        read_safetensors(raw(header), **READ)
    message = str(info.value)
    assert message.startswith("m.safetensors is not a test file (safetensors with 'imgprivacy'")
    assert message.endswith("Write it with save().")


def test_deeply_nested_json_is_a_corrupt_file_not_a_recursion_error():
    with pytest.raises(CorruptFileError, match="the header is nested too deeply"):
        read_safetensors(raw(b"[" * 200000), **READ)
    nested = json.dumps({"__metadata__": {"imgprivacy": "[" * 200000}}).encode()
    with pytest.raises(CorruptFileError, match="'imgprivacy' metadata is nested too deeply"):
        read_metadata(raw(nested), **READ)


def test_tensor_entries_safetensors_cannot_read():
    unknown_dtype = {"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}
    with pytest.raises(CorruptFileError, match=r"unreadable tensors .*F99"):
        read_safetensors(raw(meta_header({}, unknown_dtype).encode(), b"\0" * 4), **READ)
    beyond = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    with pytest.raises(CorruptFileError, match="unreadable tensors"):
        read_safetensors(raw(meta_header({}, beyond).encode(), b"\0" * 4), **READ)


def test_wrong_dtypes_are_reported_with_names():
    data = save_bytes(
        {"w": torch.zeros(2, 3, dtype=torch.float64), "b": torch.zeros(3, dtype=torch.int32)},
        metadata={"imgprivacy": "{}"},
    )
    tensors, _ = read_safetensors(data, **READ)
    assert tensor_problems(tensors, {"w": (2, 3), "b": (3,)}) == [
        "w has dtype torch.float64, expected torch.float32",
        "b has dtype torch.int32, expected torch.float32",
    ]


@pytest.mark.parametrize(
    ("loader", "kind"),
    [
        (autoencoder_from_bytes, "not an imgprivacy autoencoder file"),
        (model_from_bytes, "not an imgprivacy anonymizer file"),
        (face_extractor_from_bytes, "not an imgprivacy face extractor"),
    ],
)
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw(b"{}", length=99), "declares 99 bytes but only 2 follow"),
        (raw(b"[" * 200000), "nested too deeply"),
        (raw(b"{oops"), "not valid JSON"),
    ],
)
def test_every_file_kind_reads_through_the_shared_reader(loader, kind, data, reason):
    with pytest.raises(CorruptFileError, match=f"{kind}.*{reason}"):
        loader(data, source="f")
