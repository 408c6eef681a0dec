"""A shard with the Guard's breadth gate reads every model's breadth from its source whenever it
follows it (so a restarted shard has them again), or takes them from the driver (no source),
and its Guards, including those a check asks for, use them. No Ray here."""

from __future__ import annotations

import math

from imgprivacy.cluster.shard import BankShard
from tests.cluster.helpers import DIM, random_models


class Source:
    """An in-memory model source with breadths, as the service's database provides them."""

    def __init__(self, models, breadth):
        self.models = {key: (1, owner, model) for key, owner, model in models}
        self.breadth = breadth
        self.asked = []

    def revision(self) -> int:
        return 1

    def listing(self):
        return 1, {key: 1 for key in self.models}

    def load(self, model_ids):
        return {key: self.models[key] for key in model_ids if key in self.models}

    def breadths(self, *, alpha):
        self.asked.append(alpha)
        return dict(self.breadth)


GATED = {"policy": "margin", "alpha": 2.0, "margin": 1.0, "breadth_ratio": 1.5}


def shard(source, guard=GATED):
    return BankShard(
        index=0,
        shards=1,
        bank={"input_dim": DIM},
        guard=guard,
        source=source,
    )


def test_a_gated_shard_reads_breadths_from_its_source_when_it_starts_and_follows():
    models = random_models(6, seed=2)
    breadth = {key: 0.1 * (k + 1) for k, (key, _, _) in enumerate(models)}
    source = Source(models, breadth)
    started = shard(source)  # as a restarted actor: loads its models and their breadths
    keys = [key for key, _, _ in models]
    assert source.asked == [2.0]
    assert started.guard.breadth_of(keys).tolist() == [breadth[k] for k in keys]
    source.breadth = {keys[0]: 0.9}  # a model replaced: its new breadth
    started.follow(*source.listing())
    assert started.guard.breadth_of(keys[:1]).tolist() == [0.9]
    assert all(math.isnan(b) for b in started.guard.breadth_of(keys[1:]).tolist())
    other = dict(GATED, alpha=1.0)  # a Guard a check asks for gets them too
    started.check(random_x(), ["user0"], other)
    asked = started._guards[tuple(sorted(other.items()))]
    assert asked.breadth_of(keys[:1]).tolist() == [0.9]


def test_an_ungated_shard_does_not_read_breadths():
    source = Source(random_models(3, seed=2), {})
    shard(source, guard={"policy": "margin", "alpha": 2.0, "margin": 1.0})
    assert source.asked == []


def test_without_a_source_the_driver_sets_them():
    pushed = shard(None)
    pushed.set_breadth({"a/m": 0.25})
    assert pushed.guard.breadth_of(["a/m", "b/m"]).tolist()[0] == 0.25


def random_x():
    import torch

    return torch.rand(1, DIM, generator=torch.Generator().manual_seed(0))
