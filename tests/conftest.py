"""Shared fixtures: tiny seeded data and the real data folder (slow tests only)."""

from __future__ import annotations

import pytest
import torch

from imgprivacy.data.paths import resolve_data_dir


@pytest.fixture(scope="session")
def data_dir():
    path = resolve_data_dir()
    if not (path / "mnist.npz").is_file():
        pytest.fail(f"real-data tests need the shared data at {path} (set IMGPRIVACY_DATA)")
    return path


def blobs(n_per_class: int = 48, dim: int = 16, classes: int = 3, seed: int = 0):
    """Features in [0, 1] around ``classes`` fixed prototypes, labels 0..classes-1."""
    prototypes = torch.rand(classes, dim, generator=torch.Generator().manual_seed(0)) > 0.5
    prototypes = prototypes.float() * 0.8 + 0.1
    gen = torch.Generator().manual_seed(seed)  # the noise differs per seed, the classes do not
    x = prototypes.repeat_interleave(n_per_class, 0)
    x = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return x, y
