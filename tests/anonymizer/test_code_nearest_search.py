"""The code-nearest substitution searches with the paper protocol's nearest-neighbour search."""

from __future__ import annotations

import numpy as np
import torch

from imgprivacy.anonymizer.substitution import code_nearest
from imgprivacy.anonymizer.substitution.code_nearest import CodeNearestSubstitution


def fitted_on(codes: torch.Tensor) -> CodeNearestSubstitution:
    images = torch.rand(len(codes), 4, generator=torch.Generator().manual_seed(1))
    method = CodeNearestSubstitution(target_identity=0)
    return method.fit(images, np.zeros(len(codes), int), autoencode=lambda _: codes)


def exact_nearest(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """The float64 brute force (first minimum on ties) the search must agree with."""
    distances = ((queries.double()[:, None, :] - references.double()[None]) ** 2).sum(-1)
    return distances.argmin(1)


def test_nearest_agrees_with_the_exact_search_in_any_chunking(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    references = 3.0 * torch.randn(300, 16, generator=gen)
    references[200:] = references[:100]  # exact duplicates: the lower index wins
    queries = torch.cat([3.0 * torch.randn(500, 16, generator=gen), references[150:250]])
    method = fitted_on(references)
    calls = []
    original = code_nearest.nearest_neighbours
    monkeypatch.setattr(
        code_nearest,
        "nearest_neighbours",
        lambda *a, **k: calls.append(k["config"].chunk_size) or original(*a, **k),
    )
    expected = exact_nearest(queries, references)
    assert torch.equal(method.nearest(queries), expected)
    assert torch.equal(method.nearest(queries, batch_size=7), expected)
    assert calls == [2048, 7]  # the shared search ran, chunked as asked
    assert (expected[500:] < 200).all()  # duplicated references resolve to their first copy
