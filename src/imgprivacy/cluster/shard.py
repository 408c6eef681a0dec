"""One shard of the bank: the models of a stable subset of model ids, and what a check needs.

A :class:`BankShard` runs inside a Ray actor (:class:`~imgprivacy.cluster.ShardedBank` creates
them) but is a plain class, so it is tested and benchmarked without Ray as well. It holds a
:class:`~imgprivacy.docl.FilterBank` of its models and answers a check with the deciding columns
of :mod:`.reduction`. Every answer carries the shard's ``revision``: the driver compares it with
the revision it expects, so a shard that restarted and reloaded a different state is noticed.

With a :class:`ModelSource` (the service's database, say) a shard loads its own models when it
starts, which is how a restarted actor recovers; without one, the driver pushes models to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch

from imgprivacy.cluster.reduction import deciding_columns
from imgprivacy.docl import BankScores, FilterBank, Guard, OneClassAutoencoder
from imgprivacy.errors import ImgPrivacyError

logger = logging.getLogger(__name__)

LOAD_CHUNK = 256  # models loaded from the source at a time


def shard_of(model_id: str, shards: int) -> int:
    """The shard that owns ``model_id``: a stable hash, the same in every process and run."""
    digest = hashlib.blake2b(model_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


class ModelSource(Protocol):
    """Where shards load models from (picklable: it is sent to every shard actor)."""

    def revision(self) -> int:
        """The store's revision counter (cheap; bumped by every write)."""

    def listing(self) -> tuple[int, dict[str, int]]:
        """(revision, {model id: model revision}) read in one transaction; no weights."""

    def load(self, model_ids: list[str]) -> dict[str, tuple[int, str, OneClassAutoencoder]]:
        """{model id: (model revision, owner, model)} for the ids that still exist."""

    # Optional: ``breadths(*, alpha) -> {model id: breadth}``, the models' breadths measured at
    # ``alpha`` (the Guard's breadth gate); a shard whose Guard has the gate reads it on every
    # change, so a restarted shard gets them back with its models.


@dataclass(frozen=True)
class ShardReply:
    """A shard's answer to a check: its revision and its deciding columns."""

    shard: int
    revision: int
    columns: BankScores  # (B, c) with c <= 4B, see imgprivacy.cluster.reduction


@dataclass(frozen=True)
class ShardState:
    """What a shard holds after a change."""

    shard: int
    revision: int
    models: tuple[tuple[str, str], ...]  # (model id, owner)
    rss_bytes: int  # resident memory of the shard's process
    pid: int


class BankShard:
    """The models whose id hashes to ``index`` (out of ``shards``); see the module docstring.

    Parameters
    ----------
    index, shards
        This shard's number and how many there are (see :func:`shard_of`).
    bank
        Keyword arguments of the shard's :class:`~imgprivacy.docl.FilterBank`.
    guard
        Keyword arguments of the shard's :class:`~imgprivacy.docl.Guard` (the driver's policy).
    source
        Where to load this shard's models from at start; None = the driver pushes them.
    torch_threads
        Threads of the shard's bank pass.
    """

    def __init__(
        self,
        *,
        index: int,
        shards: int,
        bank: dict,
        guard: dict,
        source: ModelSource | None = None,
        torch_threads: int = 1,
    ):
        torch.set_num_threads(torch_threads)
        self.index = index
        self.shards = shards
        self.bank = FilterBank(**bank)
        self.guard = Guard(**guard)
        self._guards = {_guard_key(guard): self.guard}  # other policies asked for by checks
        self.breadth: dict[str, float] = {}  # every model's breadth (the Guard's breadth gate)
        self.source = source
        self.revision = -1  # nothing applied yet: never equal to what a driver expects
        self._known: dict[str, int] = {}  # model id -> model revision (with a source)
        if source is not None:
            try:  # a restarted shard reloads its models here
                self.follow(*source.listing())
            except Exception:  # a store not ready yet: stay at -1, the driver's sync follows
                logger.exception("shard %d could not load its models at start", index)

    def owns(self, model_id: str) -> bool:
        return shard_of(model_id, self.shards) == self.index

    # -- changes ----------------------------------------------------------------------------
    def follow(self, revision: int, listing: dict[str, int]) -> ShardState:
        """Bring the shard to the source's ``listing`` at ``revision`` (only its own ids)."""
        mine = {key: rev for key, rev in listing.items() if self.owns(key)}
        changed = [key for key, rev in mine.items() if self._known.get(key) != rev]
        removed = [key for key in self._known if key not in mine]
        # In chunks, so a shard (re)loading 10,000 models holds one chunk of loaded copies at a
        # time. No check runs inside this call (an actor runs one call at a time), so the
        # chunks need not be added as one step.
        for start in range(0, len(changed), LOAD_CHUNK):
            keys = changed[start : start + LOAD_CHUNK]
            loaded = self.source.load(keys)
            removed += [key for key in keys if key not in loaded]  # deleted since the listing
            if not loaded:
                continue
            items = [(owner, model) for _, owner, model in loaded.values()]
            admitted = [rev for rev, _, _ in loaded.values()]  # the revision that stored it
            try:
                self.bank.add_many(items, model_ids=list(loaded), replace=True, admitted=admitted)
                self._known.update({key: rev for key, (rev, _, _) in loaded.items()})
            except ImgPrivacyError as exc:  # stored before a settings change, say
                logger.error("shard %d could not add %d models: %s", self.index, len(items), exc)
            del loaded, items
        self._remove(removed)
        read = getattr(self.source, "breadths", None)
        if read is not None and self.guard.breadth_ratio is not None:
            self.set_breadth(read(alpha=self.guard.alpha))
        self.revision = revision
        return self.state()

    def set_breadth(self, breadth: dict[str, float]) -> None:
        """Every model's breadth, for the Guards with a breadth gate (the driver's, with no
        source; read from the source otherwise). Claimants of every shard need it: the
        narrowest one decides whether an own model may vouch."""
        self.breadth = dict(breadth)
        for guard in self._guards.values():
            guard.set_breadth(self.breadth)

    def push(
        self,
        revision: int,
        *,
        add: Iterable[tuple[str, str, OneClassAutoencoder]] = (),
        remove: Iterable[str] = (),
    ) -> ShardState:
        """Apply the driver's change (``add``: (model id, owner, model), replacing) at ``revision``."""
        add = list(add)
        if add:
            self.bank.add_many(
                [(owner, model) for _, owner, model in add],
                model_ids=[key for key, _, _ in add],
                replace=True,
                admitted=revision,
            )
        self._remove(list(remove))
        self.revision = revision
        return self.state()

    def _remove(self, keys: list[str]) -> None:
        present = set(self.bank.model_ids)
        for key in keys:
            self._known.pop(key, None)
            if key in present:
                self.bank.remove(key)
        self.bank.snapshot()  # stack the weights now, not in the next check
        release_free_memory()

    # -- checks -----------------------------------------------------------------------------
    def check(
        self, features: torch.Tensor, uploaders: list[str], guard: dict | None = None
    ) -> ShardReply:
        """The deciding columns of this shard for a batch of (B, D) features.

        ``guard`` (Guard keyword arguments) picks another policy than the shard's own.
        """
        if len(self.bank) == 0:
            empty = BankScores(
                distances=torch.empty(len(uploaders), 0),
                error_mean=torch.empty(0, dtype=torch.float64),
                error_std=torch.empty(0, dtype=torch.float64),
                model_ids=(),
                owners=(),
                admitted=torch.empty(0, dtype=torch.int64),
            )
            return ShardReply(shard=self.index, revision=self.revision, columns=empty)
        judge = self.guard
        if guard is not None:
            key = _guard_key(guard)
            if key not in self._guards:
                self._guards[key] = Guard(**guard, breadth=self.breadth)
            judge = self._guards[key]
        columns = deciding_columns(self.bank.score(features), uploaders, judge)
        return ShardReply(shard=self.index, revision=self.revision, columns=columns)

    def state(self) -> ShardState:
        return ShardState(
            shard=self.index,
            revision=self.revision,
            models=tuple(sorted((e.model_id, e.owner) for e in self.bank.entries)),
            rss_bytes=_rss_bytes(),
            pid=os.getpid(),
        )

    def broken_models(self) -> dict[str, int]:
        """The shard Guard's count of non-finite distances per model."""
        return self.guard.broken_models


def _guard_key(guard: dict) -> tuple:
    return tuple(sorted(guard.items()))


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc), so a shard's resident size
    after a rebuild is what it holds, not the peak of the rebuild."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux
        return 0
