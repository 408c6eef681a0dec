"""The bank on Ray actors: same decisions as one bank, routing, consistent snapshots, failing
closed. One local Ray runtime for the session; shards reserve no CPU so banks coexist."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from imgprivacy.cluster import ShardedBank, ShardedBankConfig, ShardUnavailableError
from imgprivacy.docl import POLICIES, AutoencoderConfig, Guard, OneClassAutoencoder
from imgprivacy.errors import InvalidInputError, UnknownNameError
from tests.cluster.helpers import DIM, random_models, ray_runtime, single_bank, trained_models
from tests.cluster.test_reduction import assert_same, inputs
from tests.conftest import blobs

__all__ = ["ray_runtime"]  # the session fixture, imported for pytest

CONFIG = ShardedBankConfig(shards=2, num_cpus=0, check_timeout=30.0, max_restarts=2)


@pytest.fixture(scope="module")
def bank(ray_runtime):
    sharded = ShardedBank(guard=Guard(policy="margin"), input_dim=DIM, config=CONFIG)
    yield sharded
    sharded.shutdown()


def load(bank: ShardedBank, models) -> None:
    for key in list(bank.model_ids):
        bank.remove(key)
    bank.add_many([(owner, m) for _, owner, m in models], model_ids=[k for k, _, _ in models])


def test_decisions_equal_one_bank_for_every_policy(bank):
    random = random_models(30, seed=2)
    trained = trained_models()
    blob_x, blob_y = blobs(dim=DIM, classes=3, seed=5)
    cases = [
        (random, *inputs(2, random)),
        (trained, blob_x, [f"u{(c + i) % 3}" for i, c in enumerate(blob_y.tolist())]),
    ]
    for models, x, uploaders in cases:
        load(bank, models)
        scores = single_bank(models).score(x)
        blocked = 0
        for policy in POLICIES:
            guard = Guard(policy=policy, alpha=2.0, margin=1.2)
            expected = guard.decide(scores, uploaders)
            blocked += sum(not d.share for d in expected)
            assert_same(bank.decide(x, uploaders, guard=guard), expected)
        assert 0 < blocked < len(x) * len(POLICIES)  # not trivial: blocks and shares


def test_changes_route_to_the_owning_shard(bank):
    models = random_models(20, seed=5)
    load(bank, models)
    states = bank.shard_states
    for state in states:
        assert state.models and all(bank.shard_of(k) == state.shard for k, _ in state.models)
    assert sum(len(s.models) for s in states) == 20 == len(bank)
    x, uploaders = inputs(5, models)
    # Replace one model by another's weights, remove one, remove a user: same as one bank.
    key, owner, _ = models[3]
    replacement = random_models(20, seed=6)[3][2]
    before = {s.shard: s.revision for s in bank.shard_states}
    bank.add(replacement, owner=owner, model_id=key, replace=True)
    models[3] = (key, owner, replacement)
    bank.remove(models[4][0])
    del models[4]
    removed = bank.remove_user("user1")
    assert removed == sorted(k for k, o, _ in models if o == "user1")
    models = [m for m in models if m[1] != "user1"]
    after = bank.shard_states
    assert all(s.revision == before[s.shard] + 3 for s in after)  # every shard, in step
    assert dict(p for s in after for p in s.models) == {k: o for k, o, _ in models}
    guard = Guard(policy="paper", alpha=2.0)
    assert_same(
        bank.decide(x, uploaders, guard=guard),
        guard.decide(single_bank(models).score(x), uploaders),
    )


def test_a_refused_model_changes_no_shard(bank):
    models = random_models(6, seed=7)
    load(bank, models)
    revision = bank.revision
    wrong = random_models(1, seed=8)[0][2]
    wrong.error_std_ = float("nan")
    with pytest.raises(InvalidInputError, match="error_std_ must be finite"):
        bank.add_many([("new", models[0][2]), ("other", wrong)])
    with pytest.raises(InvalidInputError, match="already exists"):
        bank.add(models[0][2], owner=models[0][1], model_id=models[0][0])
    with pytest.raises(UnknownNameError, match="Unknown model id 'nobody/0'"):
        bank.remove("nobody/0")
    assert bank.revision == revision and len(bank) == 6


def test_a_check_in_flight_sees_one_membership(bank):
    """Checks racing with the arrival and removal of a user's models (one change each, over both
    shards) see all of them or none of them, never one shard's half."""
    base = random_models(12, seed=9)
    extra = [
        (f"intruder/m{k}", "intruder", m) for k, (_, _, m) in enumerate(random_models(12, seed=10))
    ]
    assert {bank.shard_of(k) for k, _, _ in extra} == {0, 1}
    load(bank, base)
    x, uploaders = inputs(9, base)
    guard = Guard(policy="paper")
    without = [d.share for d in guard.decide(single_bank(base).score(x), uploaders)]
    with_extra = [d.share for d in guard.decide(single_bank(base + extra).score(x), uploaders)]
    assert without != with_extra
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            bank.add_many([(o, m) for _, o, m in extra], model_ids=[k for k, _, _ in extra])
            bank.remove_user("intruder")

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(12):
            shares = [d.share for d in bank.decide(x, uploaders, guard=guard)]
            assert shares in (without, with_extra)
    finally:
        stop.set()
        writer.join()


def test_a_shard_restarted_without_its_models_fails_closed(ray_runtime):
    models = random_models(10, seed=11)
    sharded = ShardedBank(guard=Guard(policy="any-other"), input_dim=DIM, config=CONFIG)
    try:
        sharded.add_many([(o, m) for _, o, m in models], model_ids=[k for k, _, _ in models])
        x, uploaders = inputs(11, models)
        assert any(not d.share for d in sharded.decide(x, uploaders))
        ray_runtime.kill(sharded.actors[0], no_restart=False)  # Ray restarts it, empty
        with pytest.raises(ShardUnavailableError, match="retry in a few seconds") as error:
            for _ in range(20):  # the first check may still reach the dying actor
                sharded.decide(x, uploaders)
        assert error.value.retry_after == CONFIG.retry_after
    finally:
        sharded.shutdown()


def test_a_gated_bank_pushes_breadths_to_its_shards_and_decides_as_one_bank(ray_runtime):
    from tests.cluster.test_reduction import random_breadth

    models = random_models(40, seed=1)
    x, uploaders = inputs(1, models)
    breadth = random_breadth(models)
    scores = single_bank(models).score(x)
    for alpha in (1.0, 2.0):
        args = {"policy": "margin", "alpha": alpha, "margin": 1.0, "breadth_ratio": 1.5}
        expected = Guard(**args, breadth=breadth).decide(scores, uploaders)
        assert [d.share for d in expected] != [
            d.share for d in Guard(**{**args, "breadth_ratio": None}).decide(scores, uploaders)
        ]  # the gate matters here
        sharded = ShardedBank(
            guard=Guard(**args), input_dim=DIM, config=dataclasses.replace(CONFIG, shards=3)
        )
        try:
            load(sharded, models)
            sharded.set_breadth(breadth)
            assert_same(sharded.decide(x, uploaders), expected)
        finally:
            sharded.shutdown()


def test_a_compact_bank_decides_as_one_compact_bank_and_refuses_in_the_driver(ray_runtime):
    """Shards store fp16 weights like a single fp16 bank (same decisions); a model whose weights
    fp16 cannot hold is refused before any shard sees it, and an unknown precision at once."""
    with pytest.raises(UnknownNameError, match="Valid precisions: fp32, fp16, bf16"):
        ShardedBank(guard=Guard(policy="margin"), input_dim=DIM, precision="fp8", config=CONFIG)
    compact = ShardedBank(
        guard=Guard(policy="margin"), input_dim=DIM, precision="fp16", config=CONFIG
    )
    try:
        models = random_models(20, seed=3)
        load(compact, models)
        x, uploaders = inputs(2, models)
        guard = Guard(policy="margin", alpha=2.0, margin=1.2)
        expected = guard.decide(single_bank(models, precision="fp16").score(x), uploaders)
        assert_same(compact.decide(x, uploaders, guard=guard), expected)
        cfg = AutoencoderConfig(input_dim=DIM, hidden_dim=4, layer_widths=())
        wide = {
            "layers.0.weight": torch.full((4, DIM), 1e6),
            "layers.0.bias": torch.zeros(4),
            "layers.1.weight": torch.ones(DIM, 4),
            "layers.1.bias": torch.zeros(DIM),
        }
        too_wide = OneClassAutoencoder.from_weights(cfg, wide, error_mean=1.0, error_std=1.0)
        with pytest.raises(InvalidInputError, match="beyond fp16's largest value"):
            compact.add_many([("user0", too_wide)], model_ids=["user0/too-wide"])
        assert sorted(compact.model_ids) == sorted(k for k, _, _ in models)
        assert_same(compact.decide(x, uploaders, guard=guard), expected)  # nothing changed
    finally:
        compact.shutdown()
