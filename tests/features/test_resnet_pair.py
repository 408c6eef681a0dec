"""The 128-d ResNet pair: layout of the feature, the mirror average, the checkpoint's checks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.features import get_extractor
from imgprivacy.features.resnet20 import load_resnet20, load_scale, raw_features
from imgprivacy.features.resnet_pair import (
    RESNET56_SCALE_FILE,
    RESNET56_SHA256,
    load_resnet56,
    mirrored,
    read_legacy_checkpoint,
)


def test_pair_features_are_the_mirror_averaged_resnet20_beside_resnet56(data_dir):
    extractor = get_extractor("resnet-pair-cifar")
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    features = extractor.transform(images)
    assert features.shape == (5, 128) and features.dtype == torch.float32
    assert float(features.min()) >= 0.0 and float(features.max()) <= 1.0
    net20 = load_resnet20()
    mean20 = (raw_features(net20, images) + raw_features(net20, images[:, :, ::-1].copy())) / 2
    assert torch.allclose(features[:, :64], (mean20 / load_scale()).clamp(0, 1), atol=1e-6)
    raw56 = raw_features(load_resnet56(), images)
    assert torch.allclose(features[:, 64:], (raw56 / load_scale(RESNET56_SCALE_FILE)).clamp(0, 1))
    # the ResNet-20 half does not see the mirror; the ResNet-56 half does
    flipped = extractor.transform(mirrored(images))
    assert torch.allclose(flipped[:, :64], features[:, :64], atol=1e-5)
    assert not torch.allclose(flipped[:, 64:], features[:, 64:], atol=1e-3)
    as_array = mirrored(images)
    assert as_array.flags["C_CONTIGUOUS"] and np.array_equal(as_array, images[:, :, ::-1])
    assert torch.equal(mirrored(torch.as_tensor(images)), torch.as_tensor(as_array))
    with pytest.raises(InvalidInputError, match=r"\(N, 32, 32, 3\)"):
        extractor.transform(images[0])
    assert AutoencoderConfig.for_features("resnet-pair-cifar").input_dim == 128


def test_resnet56_port_classifies_cifar10(data_dir):
    from imgprivacy.data.cifar10 import load_cifar10
    from imgprivacy.features.resnet20 import predict

    test = load_cifar10("test", data_dir=data_dir).where(slice(0, 100))
    accuracy = float((predict(load_resnet56(data_dir), test.images) == test.labels).mean())
    assert accuracy >= 0.88  # 92.6% on all 1000 lossless test images (data README sec. 8)


def test_legacy_checkpoint_must_match_the_hash_in_its_name(tmp_path):
    bad = tmp_path / "resnet56-4bfd9763.th"
    bad.write_bytes(b"not the checkpoint")
    with pytest.raises(CorruptFileError, match="does not start with '4bfd9763'.*intact copy"):
        read_legacy_checkpoint(bad)
    payload = b"not a torch file"
    named = tmp_path / f"net-{hashlib.sha256(payload).hexdigest()[:8]}.th"
    named.write_bytes(payload)
    with pytest.raises(CorruptFileError, match="Could not read the ResNet-56 checkpoint"):
        read_legacy_checkpoint(named)
    # the pinned full hash: a file whose name carries its own hash prefix is still refused
    with pytest.raises(CorruptFileError, match=f"does not start with '{RESNET56_SHA256}'"):
        read_legacy_checkpoint(named, sha256=RESNET56_SHA256)
