"""Every anonymizer file kind is written and read by the same functions, and a file of one kind
given to another class's ``load`` is refused with a message naming what it is and what reads it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save

from imgprivacy.anonymizer import Anonymizer
from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer
from imgprivacy.anonymizer.persistence import (
    CODE_MATCH_FILE,
    FILE_FORMATS,
    MODEL_FILE,
    SWAP_FILE,
    WARP_FILE,
    load_model_file,
    model_file_bytes,
    read_model_bytes,
    save_model_file,
)
from imgprivacy.anonymizer.swap_model import SwapAnonymizer
from imgprivacy.anonymizer.warp_model import WarpAnonymizer
from imgprivacy.errors import CorruptFileError, DataNotFoundError
from imgprivacy.safetensors_io import read_safetensors

READERS = {
    MODEL_FILE: Anonymizer,
    CODE_MATCH_FILE: CodeMatchAnonymizer,
    SWAP_FILE: SwapAnonymizer,
    WARP_FILE: WarpAnonymizer,
}


def test_a_file_keeps_its_tensors_and_metadata_after_the_format_fields(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t()}  # not contiguous
    path = save_model_file(
        tmp_path / "m.safetensors", format=SWAP_FILE, tensors=tensors, metadata={"config": {}}
    )
    loaded, metadata = load_model_file(path, format=SWAP_FILE)
    assert torch.equal(loaded["w"], tensors["w"])
    assert list(metadata)[:3] == ["format", "format_version", "imgprivacy_version"]
    assert metadata["format"] == "imgprivacy.anonymizer.swap_model" and metadata["config"] == {}
    # the same bytes whether written to a file or kept in memory
    in_memory = model_file_bytes(format=SWAP_FILE, tensors=tensors, metadata={"config": {}})
    assert path.read_bytes() == in_memory


@pytest.mark.parametrize(
    ("written", "reader"),
    [(w, r) for w in READERS for r in READERS if w is not r],
    ids=lambda f: f.name,
)
def test_a_file_of_another_kind_is_refused_naming_its_reader(written, reader, tmp_path):
    path = save_model_file(
        tmp_path / "other.safetensors", format=written, tensors={"x": torch.zeros(1)}, metadata={}
    )
    expected = (
        f"expected a file of format {reader.name!r}, got {written.name!r} "
        f"({written.what}; read it with {written.reader}). {reader.origin}"
    )
    with pytest.raises(CorruptFileError, match=re.escape(expected)):
        READERS[reader].load(path)


def test_a_real_warp_file_is_refused_by_the_swap_model_with_the_fix(tmp_path):
    from imgprivacy.anonymizer.warp_game import WarpGameConfig

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 8, 8), dtype=np.uint8)
    config = WarpGameConfig(image_size=8, hidden=8, private_hidden=8, epochs=1, n_prototypes=2)
    model = WarpAnonymizer(config).fit(images, np.repeat([0, 1, 2], 8))
    path = model.save(tmp_path / "w.safetensors")
    with pytest.raises(CorruptFileError, match=r"read it with WarpAnonymizer\.load"):
        SwapAnonymizer.load(path)
    assert WarpAnonymizer.load(path).config == model.config


def test_an_unknown_format_or_version_and_a_missing_file_are_clear(tmp_path):
    data = model_file_bytes(format=WARP_FILE, tensors={"x": torch.zeros(1)}, metadata={})
    tensors, metadata = read_safetensors(data, source="x", expected="a file")
    future = save(tensors, metadata={"imgprivacy": json.dumps({**metadata, "format_version": 2})})
    with pytest.raises(CorruptFileError, match="format version 2 is not supported"):
        read_model_bytes(future, format=WARP_FILE, source="future")
    other = save(tensors, metadata={"imgprivacy": json.dumps({**metadata, "format": "mystery"})})
    with pytest.raises(CorruptFileError, match=r"got 'mystery'\. Warp anonymizer files come"):
        read_model_bytes(other, format=WARP_FILE, source="other")
    with pytest.raises(DataNotFoundError, match="Expected an imgprivacy code-match model at"):
        CodeMatchAnonymizer.load(tmp_path / "missing.safetensors")
    assert set(FILE_FORMATS) >= {f.name for f in READERS}
