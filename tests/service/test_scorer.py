"""The micro-batcher: concurrent checks share bank passes, each gets its own answer."""

import asyncio
import threading

import pytest
import torch

from imgprivacy.docl import Decision, FilterBank, Guard
from imgprivacy.service import scorer
from imgprivacy.service.scorer import MicroBatcher


class CountingScorer:
    """A score function that records the size of every bank pass; the first pass waits until
    ``release`` is set, as a real pass is still running when more checks arrive."""

    def __init__(self):
        self.passes: list[int] = []
        self.release = threading.Event()

    def __call__(self, features, uploaders):
        self.passes.append(len(uploaders))
        self.release.wait(timeout=5)
        return [
            Decision(share=bool(f[0] > 0.5), policy="p", alpha=1.0, reason=u)
            for f, u in zip(features, uploaders)
        ]


def run_checks(scorer, count, **batcher_args):
    """``count`` concurrent checks; the first pass is held until all of them are queued."""

    async def main():
        batcher = MicroBatcher(scorer, **batcher_args)
        await batcher.start()
        try:
            values = [k / count for k in range(count)]
            tasks = [
                asyncio.ensure_future(batcher.submit(torch.tensor([[v, 0.0]]), f"u{k}"))
                for k, v in enumerate(values)
            ]
            await asyncio.sleep(0.05)  # every check queued (the first pass may be running)
            scorer.release.set()
            return values, await asyncio.gather(*tasks)
        finally:
            await batcher.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("concurrent", [1, 8, 32])
def test_concurrent_checks_are_served_by_fewer_bank_passes(concurrent):
    scorer = CountingScorer()
    values, results = run_checks(scorer, concurrent, max_batch=64)
    assert [r.share for r in results] == [v > 0.5 for v in values]
    assert [r.reason for r in results] == [f"u{k}" for k in range(concurrent)]  # its own answer
    assert sum(scorer.passes) == concurrent
    assert len(scorer.passes) <= min(2, concurrent)  # the first pass, then everything queued


def test_batch_cap_bounds_every_pass_and_one_disables_batching():
    scorer = CountingScorer()
    run_checks(scorer, 32, max_batch=8)
    assert sum(scorer.passes) == 32 and max(scorer.passes) == 8 and len(scorer.passes) <= 5
    scorer = CountingScorer()
    run_checks(scorer, 32, max_batch=1)
    assert scorer.passes == [1] * 32


def test_the_first_batcher_started_freezes_start_up_objects_once(monkeypatch):
    """A loaded service's objects leave the collector's reach when its batcher starts; a second
    batcher in the same process (a second app, tests) does not freeze again."""
    freezes = []
    monkeypatch.setattr(scorer.gc, "freeze", lambda: freezes.append(scorer.gc.get_count()))
    monkeypatch.setattr(scorer, "_frozen", threading.Event())  # as in a fresh process

    async def start_and_stop():
        batcher = MicroBatcher(CountingScorer())
        await batcher.start()
        await batcher.stop()

    asyncio.run(start_and_stop())
    assert len(freezes) == 1
    asyncio.run(start_and_stop())
    assert len(freezes) == 1
    assert scorer.freeze_startup_objects() is False


def test_an_empty_bank_shares_every_image_and_says_why():
    from imgprivacy.service.ray_bank import sharded_scorer

    guard = Guard(policy="margin", alpha=2.0)
    expected = Decision(
        share=True,
        policy="margin",
        alpha=2.0,
        reason="no user has registered a model yet, so no one claims this image",
    )
    in_process = scorer.bank_scorer(FilterBank(input_dim=4), guard)
    assert in_process(torch.zeros(3, 4), ["a", "b", "a"]) == [expected] * 3
    sharded = sharded_scorer([], guard)  # only its length is read while it is empty
    assert sharded(torch.zeros(2, 4), ["a", "b"]) == [expected] * 2
