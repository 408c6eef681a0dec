"""Tiny seeded pen-digit-like data and a module-scoped fitted anonymizer."""

from __future__ import annotations

import numpy as np
import pytest

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig


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
