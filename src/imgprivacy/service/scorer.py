"""Micro-batching: concurrent ``/v1/check`` requests share one bank pass.

Requests queue their payload; a dedicated scorer thread takes everything queued (up to
``max_batch``, optionally waiting ``max_wait`` seconds for more) and prepares and scores it in a
single :meth:`FilterBank.score` call, so the event loop keeps accepting requests while a batch is
scored. Under load the queue fills while the previous batch runs, so batches grow with load and
the per-request cost of the bank pass shrinks; an idle service scores a lone request at once.
``max_batch=1`` turns batching off (one bank pass per request), for comparison.

With ``overlap=True`` (the default) a preparing thread decodes and extracts the features of checks
as they arrive, while the running pass scores the previous ones, and the scorer thread collects the
next batch itself the moment a pass ends and hands the answers back to the event loop without
waiting for it: a check that arrived while a pass ran is in the next pass (the cap allowing), even
while the event loop is busy sending the last pass's answers. (Profiled at N = 100 and 32 clients,
decoding and feature extraction took a fifth of the scorer thread's time, with the bank kernel's
second thread idle.) ``overlap=False`` is the earlier path, kept for comparison: the event loop
collects each batch once it has handled the previous pass's answers, and the scorer thread
prepares it before the pass.

The first batcher started in a process also freezes the objects alive at that point (everything
start-up loaded) out of the garbage collector's reach (:func:`freeze_startup_objects`): a full
collection traverses every tracked object, and with the ~270,000 a service holds after start-up
each one paused every check in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from imgprivacy.docl import Decision, FilterBank, Guard

logger = logging.getLogger(__name__)

ScoreFn = Callable[[torch.Tensor, Sequence[str]], list[Decision]]


def unclaimed(guard: Guard, uploaders: Sequence[str]) -> list[Decision]:
    """The decisions while the bank holds no model: every image is shared (no one claims it)."""
    reason = "no user has registered a model yet, so no one claims this image"
    return [
        Decision(share=True, policy=guard.policy, alpha=guard.alpha, reason=reason)
        for _ in uploaders
    ]


def bank_scorer(bank: FilterBank, guard: Guard) -> ScoreFn:
    """Score a batch against the bank's current snapshot and apply the Guard."""

    def score(features: torch.Tensor, uploaders: Sequence[str]) -> list[Decision]:
        if len(bank) == 0:
            return unclaimed(guard, uploaders)
        return guard.decide(bank.score(features), list(uploaders))

    return score


_frozen = threading.Event()


def freeze_startup_objects() -> bool:
    """Move every object alive now to the collector's permanent generation, once a process.

    Full (generation-2) collections of a loaded service (~267,000 tracked objects) took up to
    half a second each, one every few seconds while checks poured in (timed with
    ``gc.callbacks``, docs/performance.md), and every check in flight waited; with start-up's
    objects frozen they took 2-20 ms. Frozen objects are still freed by
    reference counting, never as cycles: right for what a service loads once and keeps. Returns
    whether this call froze (later calls in the same process, e.g. a second app in tests, do not).
    """
    if _frozen.is_set():
        return False
    _frozen.set()
    gc.collect()
    gc.freeze()
    logger.debug("froze %d start-up objects out of the collector's reach", gc.get_freeze_count())
    return True


Payload = torch.Tensor | bytes  # a (1, D) feature row, or an encoded image
PrepareFn = Callable[[list[Payload]], tuple[torch.Tensor | None, list[Exception | None]]]


def stack_features(payloads: list[Payload]) -> tuple[torch.Tensor, list[None]]:
    """The default preparation: every payload is already a (1, D) feature row."""
    return torch.cat(payloads), [None] * len(payloads)


@dataclass
class _Pending:
    payload: Payload
    uploader: str
    future: asyncio.Future


@dataclass
class _Prepared:
    pending: _Pending
    row: torch.Tensor | None  # its (1, D) features, or None when preparing it failed
    error: Exception | None


class MicroBatcher:
    """Queue single requests, score them in batches (see the module docstring)."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        prepare: PrepareFn = stack_features,
        max_batch: int = 64,
        max_wait: float = 0.0,
        observe: Callable[[int, float], None] | None = None,
        overlap: bool = True,
    ):
        self.score = score
        self.prepare = prepare  # payloads -> features, on the scorer thread (decoding included)
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.observe = observe  # observe(batch_size, seconds) after each bank pass
        self.overlap = overlap  # the scorer thread collects the next batch (module docstring)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: collections.deque[_Pending] = collections.deque()  # not yet prepared
        self._ready: collections.deque[_Prepared] = collections.deque()  # prepared, not scored
        self._preparing = False  # the preparing thread holds a group it has taken
        self._arrived = threading.Condition()  # guards the three above
        self._threads: list[threading.Thread] = []
        self._stopping = False

    async def start(self) -> None:
        """Start the worker; a service starts its batcher last, once start-up has loaded
        everything, so the first start freezes those objects (:func:`freeze_startup_objects`)."""
        freeze_startup_objects()
        self._loop = asyncio.get_running_loop()
        if self.overlap:
            self._stopping = False
            self._threads = [
                threading.Thread(target=self._serve, name="bank-scorer", daemon=True),
                threading.Thread(target=self._prepare_ahead, name="check-prepare", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bank-scorer")
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._threads:
            with self._arrived:
                self._stopping = True
                self._arrived.notify_all()
            for thread in self._threads:
                await asyncio.to_thread(thread.join)
            self._threads = []
            never_scored = [*self._waiting, *(item.pending for item in self._ready)]
            for pending in never_scored:  # their requests end with the service
                pending.future.cancel()
            self._waiting.clear()
            self._ready.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, payload: Payload, uploader: str) -> Decision:
        """The Guard's decision for one payload (see ``prepare``) uploaded by ``uploader``."""
        if self._loop is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future = self._loop.create_future()
        pending = _Pending(payload, uploader, future)
        if self.overlap:
            with self._arrived:
                self._waiting.append(pending)
                self._arrived.notify_all()
        else:
            self._queue.put_nowait(pending)
        return await future

    # -- overlap=True: checks are prepared as they arrive; the scorer thread collects, scores
    # and hands answers back
    def _prepare_ahead(self) -> None:
        """Decode and extract features of waiting checks while a pass runs (preparing thread)."""
        while True:
            with self._arrived:
                while not self._waiting and not self._stopping:
                    self._arrived.wait()
                if self._stopping:
                    return
                group = [self._waiting.popleft() for _ in range(len(self._waiting))]
                self._preparing = True
            prepared = self._prepare_group(group)  # never raises: errors are per check
            with self._arrived:
                self._ready.extend(prepared)
                self._preparing = False
                self._arrived.notify_all()

    def _prepare_group(self, group: list[_Pending]) -> list[_Prepared]:
        """Each check of ``group`` with its feature row or the error that stopped it."""
        try:
            features, errors = self.prepare([p.payload for p in group])
        except Exception as exc:  # a broken preparation fails its checks, not the batcher
            logger.exception("preparing %d checks failed", len(group))
            return [_Prepared(p, None, exc) for p in group]
        rows = iter(features if features is not None else [])
        return [
            _Prepared(p, next(rows)[None] if error is None else None, error)
            for p, error in zip(group, errors, strict=True)
        ]

    def _take(self) -> list[_Prepared] | None:
        """The next batch (scorer thread): waits for a first check, then up to ``max_wait`` for
        more, up to ``max_batch``; every check that arrived before it is taken (prepared or
        not, the cap allowing) is in it. ``None`` once the batcher stops."""
        with self._arrived:
            while not (self._ready or self._waiting) and not self._stopping:
                self._arrived.wait()
            deadline = time.monotonic() + self.max_wait
            while len(self._ready) + len(self._waiting) < self.max_batch and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            while self._preparing and not self._stopping:  # a group in preparation joins
                self._arrived.wait()
            if self._stopping:
                return None
            count = min(len(self._ready), self.max_batch)
            batch = [self._ready.popleft() for _ in range(count)]
            count = min(len(self._waiting), self.max_batch - count)
            raw = [self._waiting.popleft() for _ in range(count)]
        batch += self._prepare_group(raw) if raw else []
        # A check whose request was cancelled (client gone) is not scored; reading done() off
        # the loop's thread is a plain read, and one cancelled just after is skipped on delivery.
        return [item for item in batch if not item.pending.future.done()]

    def _serve(self) -> None:
        while (items := self._take()) is not None:
            if not items:
                continue
            batch = [item.pending for item in items]
            started = time.perf_counter()
            try:
                outcomes: list | Exception = self._score_prepared(items)
            except Exception as exc:  # every waiter gets the error, the worker goes on
                logger.exception("bank pass failed for a batch of %d", len(batch))
                outcomes = exc
            seconds = time.perf_counter() - started
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch, outcomes, seconds)
            except RuntimeError:  # the event loop has closed: nobody is waiting any more
                return

    def _score_prepared(self, items: list[_Prepared]) -> list[Decision | Exception]:
        ok = [item for item in items if item.error is None]
        features = torch.cat([item.row for item in ok]) if ok else None
        decisions = iter(self.score(features, [item.pending.uploader for item in ok]) if ok else [])
        return [item.error if item.error is not None else next(decisions) for item in items]

    def _deliver(self, batch: list[_Pending], outcomes: list | Exception, seconds: float) -> None:
        """Set the answers of one pass (event loop)."""
        if isinstance(outcomes, Exception):
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(outcomes)
            return
        if self.observe is not None:
            self.observe(len(batch), seconds)
        _set_outcomes(batch, outcomes)

    # -- overlap=False: the event loop collects each batch -------------------------------------

    async def _collect(self) -> list[_Pending]:
        queue = self._queue
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self._executor, self._process, batch)
            except Exception as exc:  # every waiter gets the error, the worker goes on
                logger.exception("bank pass failed for a batch of %d", len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            if self.observe is not None:
                self.observe(len(batch), time.perf_counter() - started)
            _set_outcomes(batch, outcomes)

    def _process(self, batch: list[_Pending]) -> list[Decision | Exception]:
        """Prepare and score one batch (scorer thread); a bad payload fails only itself."""
        features, errors = self.prepare([p.payload for p in batch])
        ok = [p.uploader for p, error in zip(batch, errors) if error is None]
        decisions = iter(self.score(features, ok) if ok else [])
        return [error if error is not None else next(decisions) for error in errors]


def _set_outcomes(batch: list[_Pending], outcomes: list[Decision | Exception]) -> None:
    for pending, outcome in zip(batch, outcomes, strict=True):
        if pending.future.done():
            continue
        if isinstance(outcome, Exception):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)
