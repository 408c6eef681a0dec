"""Shared fixtures: tiny seeded data (DOCL blobs, pen-digit-like strokes, a fitted anonymizer)
and the real data folder (slow tests only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
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


def tiny_images(n_per_writer: int = 16, writers: int = 4, size: int = 8, seed: int = 0):
    """(N, size, size) uint8 strokes whose thickness depends on the writer; labels 0..writers-1."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for w in range(writers):
        for _ in range(n_per_writer):
            image = np.zeros((size, size), np.float32)
            col = rng.integers(1, size - 2)
            image[1:-1, col : col + 1 + w % 2] = 1.0
            image += 0.1 * rng.random((size, size))
            images.append(np.clip(image, 0, 1))
            labels.append(w)
    return (np.stack(images) * 255).astype(np.uint8), np.array(labels)


def tiny_config(**overrides) -> AnonymizerConfig:
    values = dict(
        image_size=8,
        ae_hidden=16,
        code_dim=4,
        disc_hidden=8,
        private_hidden=8,
        pretrain_epochs=2,
        disc_pretrain_epochs=1,
        adversarial_epochs=2,
        batch_size=16,
        n_prototypes=6,
    )
    values.update(overrides)
    return AnonymizerConfig(**values)


@pytest.fixture(scope="module")
def tiny_data():
    return tiny_images()


@pytest.fixture(scope="module")
def fitted(tiny_data):
    images, writers = tiny_data
    return Anonymizer(tiny_config()).fit(images, writers)
