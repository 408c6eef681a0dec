"""The shards' deciding columns reduce to exactly the single bank's decisions (no Ray here)."""

from __future__ import annotations

import pytest
import torch

from imgprivacy.cluster import deciding_columns, merge_columns, shard_of
from imgprivacy.docl import POLICIES, BankScores, Guard
from imgprivacy.errors import InvalidInputError
from tests.cluster.helpers import DIM, random_models, single_bank, trained_models
from tests.conftest import blobs


def sharded_decisions(models, x, uploaders, guards, shards: int, admitted=None):
    """For each Guard: the decisions from ``shards`` separate banks' deciding columns."""
    scores = []
    for k in range(shards):
        mine = [m for m in models if shard_of(m[0], shards) == k]
        if mine:
            scores.append(single_bank(mine, admitted=admitted).score(x))
    return [
        guard.decide(
            merge_columns([deciding_columns(s, uploaders, guard) for s in scores]), uploaders
        )
        for guard in guards
    ]


GUARDS = [Guard(policy=p, alpha=a, margin=1.2) for p in POLICIES for a in (1.0, 2.0)]


@pytest.fixture(scope="module")
def random_case():
    models = random_models(40, seed=1)
    x, uploaders = inputs(1, models)
    scores = single_bank(models).score(x)
    return models, x, uploaders, [guard.decide(scores, uploaders) for guard in GUARDS]


@pytest.fixture(scope="module")
def trained_case():
    models = trained_models()
    x, y = blobs(dim=DIM, classes=3, seed=5)
    uploaders = [f"u{(c + i) % 3}" for i, c in enumerate(y.tolist())]  # own and others' images
    guards = [Guard(policy=p, alpha=2.0) for p in POLICIES]
    scores = single_bank(models).score(x)
    return models, x, uploaders, guards, [guard.decide(scores, uploaders) for guard in guards]


def assert_same(got, expected):
    """Same verdicts and claiming models; distances equal up to float32 rounding.

    One model's distance can differ in its last bit between banks of different membership
    (BLAS blocks a (B, D) @ (D, n*M) product by its width), as it can between two sizes of one
    in-process bank; the reduction itself adds no error.
    """
    assert [d.share for d in got] == [d.share for d in expected]
    assert [(d.matched_model, d.matched_owner) for d in got] == [
        (d.matched_model, d.matched_owner) for d in expected
    ]
    distances = [(d.distance or 0.0, e.distance or 0.0) for d, e in zip(got, expected)]
    assert [a for a, _ in distances] == pytest.approx([b for _, b in distances], rel=1e-6)
    assert {(d.policy, d.alpha) for d in got} == {(d.policy, d.alpha) for d in expected}


def inputs(seed: int, models) -> tuple[torch.Tensor, list[str]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(48, DIM, generator=gen)
    owners = sorted({owner for _, owner, _ in models})
    uploaders = [owners[i % len(owners)] if i % 5 else "stranger" for i in range(len(x))]
    return x, uploaders


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_random_models_decide_as_one_bank(random_case, shards):
    models, x, uploaders, expected = random_case
    got = sharded_decisions(models, x, uploaders, GUARDS, shards)
    for guard, mine, theirs in zip(GUARDS, got, expected):
        blocked = sum(not d.share for d in theirs)
        assert 0 < blocked < len(x), guard.policy  # not trivial: some blocked, some shared
        assert_same(mine, theirs)


def test_trained_models_decide_as_one_bank(trained_case):
    models, x, uploaders, guards, expected = trained_case
    for mine, theirs in zip(sharded_decisions(models, x, uploaders, guards, 2), expected):
        assert 0 < sum(not d.share for d in theirs) < len(x)
        assert_same(mine, theirs)


def test_a_shard_sends_few_columns_however_many_models():
    models = random_models(60, seed=3)
    x, uploaders = inputs(3, models)
    scores = single_bank(models).score(x[:2])
    columns = deciding_columns(scores, uploaders[:2], Guard(policy="margin"))
    assert 1 <= len(columns.model_ids) <= 8  # at most four per input
    assert columns.model_ids == tuple(sorted(columns.model_ids))
    assert torch.equal(
        columns.distances,
        scores.select(models=[scores.model_ids.index(m) for m in columns.model_ids]).distances,
    )


def test_broken_model_claims_nothing_when_sharded():
    models = random_models(12, seed=4)
    _, owner, model = models[0]
    weights = model.weights()
    weights["layers.0.weight"] = weights["layers.0.weight"] * 1e30  # overflows to inf/NaN
    broken = type(model).from_weights(model.config, weights, error_mean=1.0, error_std=1.0)
    models[0] = ("broken/m", "broken", broken)
    x, uploaders = inputs(4, models)
    expected = Guard(policy="paper").decide(single_bank(models).score(x), uploaders)
    assert_same(sharded_decisions(models, x, uploaders, [Guard(policy="paper")], 3)[0], expected)


def test_no_columns_at_all_is_an_empty_bank():
    with pytest.raises(InvalidInputError, match="holds no model yet"):
        merge_columns([_empty(), _empty()])


def _empty():
    from imgprivacy.docl import BankScores

    return BankScores(
        distances=torch.empty(3, 0),
        error_mean=torch.empty(0, dtype=torch.float64),
        error_std=torch.empty(0, dtype=torch.float64),
        model_ids=(),
        owners=(),
    )


def test_model_ids_hash_to_stable_shards():
    assert [shard_of(f"alice/{k}", 4) for k in range(6)] == [
        shard_of(f"alice/{k}", 4) for k in range(6)
    ]
    counts = torch.bincount(torch.tensor([shard_of(f"u{k}/m", 4) for k in range(400)]))
    assert counts.min() > 60  # roughly even


def random_breadth(models) -> dict[str, float]:
    """Random breadths of ``models``, one model's left unknown."""
    gen = torch.Generator().manual_seed(7)
    values = (0.05 + 0.5 * torch.rand(len(models), generator=gen)).tolist()
    breadth = {key: value for (key, _, _), value in zip(models, values)}
    breadth.pop(models[0][0])  # unknown: never vouches, counts as the narrowest claimant
    return breadth


def gated_guards(models, *, ratio: float = 1.5) -> list[Guard]:
    """Guards with the breadth gate over random breadths (one model's unknown)."""
    breadth = random_breadth(models)
    return [
        Guard(policy=p, alpha=a, margin=1.0, breadth_ratio=ratio, breadth=breadth)
        for p in ("paper", "margin")
        for a in (1.0, 2.0)
    ]


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_the_breadth_gate_decides_as_one_bank(shards):
    models = random_models(40, seed=1)
    x, uploaders = inputs(1, models)
    guards = gated_guards(models)
    scores = single_bank(models).score(x)
    expected = [guard.decide(scores, uploaders) for guard in guards]
    ungated = [
        Guard(policy=g.policy, alpha=g.alpha, margin=g.margin).decide(scores, uploaders)
        for g in guards
    ]
    # Not trivial: the gate changes some decisions of every guard.
    for gated, plain in zip(expected, ungated):
        assert [d.share for d in gated] != [d.share for d in plain]
    for mine, theirs in zip(sharded_decisions(models, x, uploaders, guards, shards), expected):
        assert_same(mine, theirs)


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_seniority_decides_as_one_bank(shards):
    """Models admitted in a random order (ties included), Guards with seniority (and the gate):
    the shards' columns decide as the whole bank, which seniority changes."""
    models = random_models(40, seed=2)
    gen = torch.Generator().manual_seed(3)
    admitted = {key: int(torch.randint(0, 12, (1,), generator=gen)) for key, _, _ in models}
    x, uploaders = inputs(2, models)
    guards = [
        Guard(policy=p, alpha=a, margin=m, seniority=True)
        for p in ("paper", "margin")
        for a in (1.0, 2.0)
        for m in (1.0, 1.5)
    ]
    gated = gated_guards(models)
    guards += [
        Guard(policy=g.policy, alpha=g.alpha, margin=g.margin, breadth_ratio=g.breadth_ratio,
              breadth=g._breadth, seniority=True)
        for g in gated
    ]  # fmt: skip
    scores = single_bank(models, admitted=admitted).score(x)
    expected = [guard.decide(scores, uploaders) for guard in guards]
    changed = 0
    for guard, decided in zip(guards, expected):
        plain = Guard(policy=guard.policy, alpha=guard.alpha, margin=guard.margin,
                      breadth_ratio=guard.breadth_ratio, breadth=guard._breadth)  # fmt: skip
        before = [d.share for d in plain.decide(scores, uploaders)]
        after = [d.share for d in decided]
        assert all(a or not b for a, b in zip(after, before))  # seniority only adds shares
        changed += after != before
    print(f"seniority changed the decisions of {changed} of {len(guards)} guards")
    assert changed >= len(guards) // 2  # not trivial
    got = sharded_decisions(models, x, uploaders, guards, shards, admitted=admitted)
    for mine, theirs in zip(got, expected):
        assert_same(mine, theirs)


def _scores(rows: list[tuple[str, float]]) -> BankScores:
    """One input's BankScores: (model id, distance) per model, every mu 1 and sigma 1."""
    n = len(rows)
    return BankScores(
        distances=torch.tensor([[d for _, d in rows]], dtype=torch.float32),
        error_mean=torch.ones(n, dtype=torch.float64),
        error_std=torch.ones(n, dtype=torch.float64),
        model_ids=tuple(key for key, _ in rows),
        owners=tuple(key.split("/")[0] for key, _ in rows),
    )


@pytest.mark.parametrize(
    ("rows", "breadth", "share"),
    [
        # The narrowest claimant is not the nearest: without it the broad own model would vouch.
        (
            [("v/near", 1.0), ("c/far", 1.5), ("a/broad", 0.1)],
            {"v/near": 0.2, "c/far": 0.05, "a/broad": 0.3},
            False,
        ),
        # The own model that passes the gate is not the nearest own model.
        (
            [("v/near", 1.0), ("a/broad", 0.1), ("a/narrow", 0.5)],
            {"v/near": 0.2, "a/broad": 0.5, "a/narrow": 0.25},
            True,
        ),
    ],
)
def test_a_gated_shard_keeps_the_narrowest_claimant_and_every_voucher(rows, breadth, share):
    scores = _scores(rows)
    for policy in ("paper", "margin"):
        guard = Guard(policy=policy, alpha=1.0, margin=1.0, breadth_ratio=1.5, breadth=breadth)
        (whole,) = guard.decide(scores, "a")
        assert whole.share is share
        (sharded,) = guard.decide(merge_columns([deciding_columns(scores, ["a"], guard)]), "a")
        assert sharded.share is share
