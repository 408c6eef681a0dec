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


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("concurrent", [1, 8, 32])
def test_concurrent_checks_are_served_by_fewer_bank_passes(concurrent, overlap):
    scorer = CountingScorer()
    values, results = run_checks(scorer, concurrent, max_batch=64, overlap=overlap)
    assert [r.share for r in results] == [v > 0.5 for v in values]
    assert [r.reason for r in results] == [f"u{k}" for k in range(concurrent)]  # its own answer
    assert sum(scorer.passes) == concurrent
    assert len(scorer.passes) <= min(2, concurrent)  # the first pass, then everything queued


@pytest.mark.parametrize("overlap", [True, False])
def test_batch_cap_bounds_every_pass_and_one_disables_batching(overlap):
    scorer = CountingScorer()
    run_checks(scorer, 32, max_batch=8, overlap=overlap)
    assert sum(scorer.passes) == 32 and max(scorer.passes) == 8 and len(scorer.passes) <= 5
    scorer = CountingScorer()
    run_checks(scorer, 32, max_batch=1, overlap=overlap)
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


class SteppedScorer:
    """A score function whose passes run one at a time on the test's word: pass k starts (its
    uploaders recorded, ``started[k]`` set) and then waits for ``finish[k]``."""

    def __init__(self, passes: int, *, fail_first: bool = False):
        self.batches: list[list[str]] = []
        self.started = [threading.Event() for _ in range(passes)]
        self.finish = [threading.Event() for _ in range(passes)]
        self.fail_first = fail_first

    def __call__(self, features, uploaders):
        k = len(self.batches)
        self.batches.append(list(uploaders))
        self.started[k].set()
        self.finish[k].wait(timeout=10)
        if self.fail_first and k == 0:
            raise RuntimeError("the bank pass broke")
        return [Decision(share=True, policy="p", alpha=1.0, reason=u) for u in uploaders]


async def _started(scorer: SteppedScorer, k: int) -> None:
    assert await asyncio.to_thread(scorer.started[k].wait, 10), f"pass {k + 1} never started"


def _submit(batcher: MicroBatcher, name: str) -> asyncio.Future:
    return asyncio.ensure_future(batcher.submit(torch.tensor([[0.0, 0.0]]), name))


@pytest.mark.parametrize("overlap", [True, False])
def test_checks_arriving_while_a_pass_runs_are_served_by_the_next_pass(overlap):
    """A stream of checks, three arriving during each pass: every check is in the pass after the
    one running when it arrived, never later (passes counted, not seconds)."""
    rounds, per_round = 4, 3
    scorer = SteppedScorer(rounds + 1)

    async def main():
        batcher = MicroBatcher(scorer, max_batch=per_round, overlap=overlap)
        await batcher.start()
        try:
            tasks = {"first": _submit(batcher, "first")}
            arrived_during = {"first": 0}  # passes started when the check arrived
            for k in range(rounds):
                await _started(scorer, k)
                for j in range(per_round):
                    name = f"r{k}c{j}"
                    tasks[name] = _submit(batcher, name)
                    arrived_during[name] = k + 1
                await asyncio.sleep(0)  # every one of them queued before the pass ends
                scorer.finish[k].set()
            scorer.finish[rounds].set()
            answers = {name: (await task).reason for name, task in tasks.items()}
        finally:
            await batcher.stop()
        return answers, arrived_during

    answers, arrived_during = asyncio.run(main())
    assert answers == {name: name for name in arrived_during}  # each check its own answer
    served_in = {name: k + 1 for k, batch in enumerate(scorer.batches) for name in batch}
    assert scorer.batches[0] == ["first"]
    assert {name: served_in[name] - arrived_during[name] for name in served_in} == {
        name: 1 for name in arrived_during
    }


def test_the_next_pass_starts_while_the_event_loop_is_busy():
    """With overlap the scorer thread collects the next batch itself: a check queued during pass
    1 is scored in pass 2 while the event loop has not yet run since pass 1 ended."""
    scorer = SteppedScorer(2)

    async def main():
        batcher = MicroBatcher(scorer, overlap=True)
        await batcher.start()
        try:
            first = _submit(batcher, "first")
            await _started(scorer, 0)
            second = _submit(batcher, "second")
            await asyncio.sleep(0)
            scorer.finish[0].set()
            # Blocks the event loop: pass 2 can only start from the scorer thread.
            started_with_loop_blocked = scorer.started[1].wait(timeout=10)
            scorer.finish[1].set()
            return started_with_loop_blocked, (await first).reason, (await second).reason
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == (True, "first", "second")
    assert scorer.batches == [["first"], ["second"]]


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failed_pass_fails_its_checks_and_the_next_pass_runs(overlap):
    scorer = SteppedScorer(2, fail_first=True)

    async def main():
        batcher = MicroBatcher(scorer, overlap=overlap)
        await batcher.start()
        try:
            first = _submit(batcher, "first")
            await _started(scorer, 0)
            second = _submit(batcher, "second")
            await asyncio.sleep(0)
            scorer.finish[0].set()
            scorer.finish[1].set()
            with pytest.raises(RuntimeError, match="the bank pass broke"):
                await first
            return (await second).reason
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == "second"
    assert scorer.batches == [["first"], ["second"]]


def test_checks_arriving_during_a_pass_are_prepared_before_it_ends():
    """With overlap, decoding and feature extraction of the next checks run beside the pass."""
    scorer = SteppedScorer(2)
    prepared = []
    second_prepared = threading.Event()

    def prepare(payloads):
        prepared.append(len(payloads))
        if sum(prepared) >= 2:
            second_prepared.set()
        return torch.cat(payloads), [None] * len(payloads)

    async def main():
        batcher = MicroBatcher(scorer, prepare=prepare, overlap=True)
        await batcher.start()
        try:
            first = _submit(batcher, "first")
            await _started(scorer, 0)
            second = _submit(batcher, "second")
            during_pass = await asyncio.to_thread(second_prepared.wait, 10)
            scorer.finish[0].set()
            scorer.finish[1].set()
            return during_pass, (await first).reason, (await second).reason
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == (True, "first", "second")
    assert scorer.batches == [["first"], ["second"]]
