"""Target-identity sampling: the discriminator's real batches come from one identity only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer.target_identity import TargetIdentitySampler
from imgprivacy.errors import InvalidInputError


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    identity = rng.integers(0, 4, 200)
    images = np.repeat(identity[:, None], 16, axis=1).astype(np.uint8) * 60  # pixels = 60 * id
    return images, identity


def test_batches_hold_only_the_target(data):
    images, identity = data
    sampler = TargetIdentitySampler(images, identity, target_identity=2, batch_size=32, seed=0)
    for step in range(10):
        batch = sampler.batch(step)
        assert batch.shape == (32, 16) and batch.dtype == torch.float32
        assert torch.allclose(batch, torch.full_like(batch, 120 / 255))
        assert (identity[sampler.indices(step)] == 2).all()


def test_every_image_once_per_cycle(data):
    images, identity = data
    sampler = TargetIdentitySampler(images, identity, target_identity=1, batch_size=7, seed=3)
    n = sampler.n_images
    steps = -(-2 * n // 7)
    stream = np.concatenate([sampler.indices(s) for s in range(steps)])[: 2 * n]
    target_rows = np.flatnonzero(identity == 1)
    assert sorted(stream[:n].tolist()) == target_rows.tolist()
    assert sorted(stream[n:].tolist()) == target_rows.tolist()
    assert stream[:n].tolist() != stream[n:].tolist()  # a new permutation each cycle


def test_seeded_and_stateless_in_the_step(data):
    images, identity = data
    a = TargetIdentitySampler(images, identity, target_identity=3, batch_size=16, seed=5)
    b = TargetIdentitySampler(images, identity, target_identity=3, batch_size=16, seed=5)
    c = TargetIdentitySampler(images, identity, target_identity=3, batch_size=16, seed=6)
    later = [b.indices(s).tolist() for s in (9, 2)]  # asked out of order (a resumed trainer)
    assert later == [a.indices(9).tolist(), a.indices(2).tolist()]
    assert a.indices(0).tolist() != c.indices(0).tolist()
    first_three = [batch for _, batch in zip(range(3), a)]
    assert torch.equal(first_three[2], a.batch(2))


def test_short_batch_and_torch_input(data):
    images, identity = data
    pixels = torch.as_tensor(images, dtype=torch.float32) / 255
    sampler = TargetIdentitySampler(
        pixels, torch.as_tensor(identity), target_identity=0, batch_size=8
    )
    assert sampler.batch(4, size=3).shape == (3, 16)
    assert sampler.indices(4, size=3).tolist() == sampler.indices(4)[:3].tolist()


def test_identity_without_images(data):
    images, identity = data
    with pytest.raises(
        InvalidInputError, match=r"target identity 9, got none \(images per identity: 0: "
    ):
        TargetIdentitySampler(images, identity, target_identity=9, batch_size=8)
    with pytest.raises(InvalidInputError, match="batch_size to be an integer >= 1"):
        TargetIdentitySampler(images, identity, target_identity=0, batch_size=0)
    with pytest.raises(InvalidInputError, match="one identity per image"):
        TargetIdentitySampler(images, identity[:5], target_identity=0, batch_size=8)
