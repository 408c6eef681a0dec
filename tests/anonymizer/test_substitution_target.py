"""The substitution step: nearest real image of the target identity, exact on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer.substitution.target_nearest import (
    SubstitutionConfig,
    nearest_neighbours,
    substitute,
    substitute_with_identity,
)
from imgprivacy.errors import InvalidInputError


def _brute_force(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    q = queries.reshape(len(queries), -1).astype(np.float64)
    r = references.reshape(len(references), -1).astype(np.float64)
    return ((q[:, None] - r[None]) ** 2).sum(-1).argmin(1)


def test_tiny_case_is_exact():
    references = np.array(
        [[[0, 0], [0, 0]], [[255, 255], [255, 255]], [[255, 0], [0, 0]]], np.uint8
    )
    images = np.array([[[10, 5], [0, 3]], [[200, 250], [240, 255]], [[180, 20], [10, 0]]], np.uint8)
    out = substitute(images, references=references)
    assert out.indices.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(out.images, references[[0, 1, 2]])
    expected = np.sqrt(((images[0] / 255.0) ** 2).sum())
    assert out.distances[0] == pytest.approx(expected, rel=1e-12)


def test_ties_go_to_the_lowest_index():
    references = np.array([[[100]], [[50]], [[150]]], np.uint8)  # 100 is 50 away from both
    indices, _ = nearest_neighbours(np.array([[[100]]], np.uint8) - 0, references[1:])
    assert indices.tolist() == [0]


def test_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    references = rng.random((37, 6, 5))
    queries = rng.random((101, 6, 5))
    config = SubstitutionConfig(chunk_size=16, candidates=3)
    indices, distances = nearest_neighbours(queries, references, config=config)
    np.testing.assert_array_equal(indices, _brute_force(queries, references))
    np.testing.assert_allclose(
        distances, np.linalg.norm((queries - references[indices]).reshape(101, -1), axis=1)
    )


def test_near_duplicates_are_told_apart():
    # float32 |q|^2 - 2qr + |r|^2 cannot separate these; the float64 re-ranking does
    rng = np.random.default_rng(1)
    base = rng.random((1, 50 * 50))
    references = np.repeat(base, 5, axis=0)
    references[3, 7] += 1e-4
    query = references[3:4].copy()
    indices, distances = nearest_neighbours(query, references)
    assert indices.tolist() == [3] and distances[0] == 0.0


def test_with_identity_indexes_the_training_set():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    identity = np.repeat(np.arange(3), 10)
    queries = np.clip(train[[3, 15, 27]].astype(int) + 2, 0, 255).astype(np.uint8)
    out = substitute_with_identity(
        queries, train_images=train, train_identity=identity, target_identity=1
    )
    assert (identity[out.indices] == 1).all()
    assert out.indices[1] == 15  # the query made from image 15 finds it again
    np.testing.assert_array_equal(out.images, train[out.indices])
    target = train[identity == 1]
    np.testing.assert_array_equal(out.indices, 10 + _brute_force(queries, target))


def test_accepts_torch_tensors():
    references = torch.rand(5, 3, 3)
    out = substitute(references[[4, 1]] * 0.999, references=references)
    assert out.indices.tolist() == [4, 1] and out.images.shape == (2, 3, 3)


def test_errors_say_what_to_fix():
    with pytest.raises(InvalidInputError, match="same image shape"):
        substitute(np.zeros((2, 4, 4)), references=np.zeros((3, 5, 5)))
    with pytest.raises(InvalidInputError, match=r"identities present: \[0, 1\]"):
        substitute_with_identity(
            np.zeros((1, 2, 2)),
            train_images=np.zeros((4, 2, 2)),
            train_identity=np.array([0, 0, 1, 1]),
            target_identity=5,
        )
    with pytest.raises(InvalidInputError, match="non-empty batch"):
        substitute(np.zeros((0, 2, 2)), references=np.zeros((3, 2, 2)))
    with pytest.raises(InvalidInputError, match="chunk_size must be a positive integer"):
        SubstitutionConfig(chunk_size=0)
