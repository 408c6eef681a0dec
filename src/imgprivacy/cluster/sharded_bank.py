"""The bank split over S Ray actors: every check visits each shard once, the Guard decides once.

Each shard (:class:`~imgprivacy.cluster.shard.BankShard` in a Ray actor) holds the models whose
id hashes to it. A check puts the (B, D) features in Ray's object store once, asks every shard
for its deciding columns (:mod:`.reduction`: at most 4B columns per shard, whatever its size) and
runs the driver's :class:`~imgprivacy.docl.Guard` on their union: the same decisions as one
:class:`~imgprivacy.docl.FilterBank` holding every model.

Consistency. Ray runs the calls one caller makes to one actor in the order they were made, and
the driver submits a check to all shards, or a change to all shards, under one lock. So every
shard sees the same sequence of changes and checks, and a check in flight sees the same
membership on every shard. Each answer carries the shard's revision; a check whose shards
disagree with the revision the driver expects (a shard that restarted and reloaded) is not
decided: with a :class:`~imgprivacy.cluster.shard.ModelSource` the driver brings every shard to
the source's current revision and asks once more, otherwise it fails.

Failure. A dead, restarting or slow shard makes the check raise
:class:`ShardUnavailableError`: the caller fails closed (the service answers 503), never "share"
from the shards that did answer. Actors restart on their own (``max_restarts``); with a source,
a restarted shard reloads its models when it starts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from imgprivacy.cluster.reduction import merge_columns
from imgprivacy.cluster.shard import BankShard, ModelSource, ShardReply, ShardState, shard_of
from imgprivacy.docl import Decision, FilterBank, Guard, OneClassAutoencoder
from imgprivacy.docl.bank_precision import get_precision
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR
from imgprivacy.docl.guard import uploaders_per_input
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import ImgPrivacyError, InvalidInputError, UnknownNameError

logger = logging.getLogger(__name__)


class ShardUnavailableError(ImgPrivacyError, RuntimeError):
    """A shard did not answer (dead, restarting, slow) or answered from another revision.

    ``retry_after`` is a hint in seconds; decisions must not be made without every shard.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0):
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True)
class ShardedBankConfig:
    """How the shards run."""

    shards: int = 2  # S actors; a model id always hashes to the same one
    num_cpus: float = 1.0  # CPUs Ray reserves per shard actor (0 packs them anywhere)
    torch_threads: int = 1  # threads of each shard's bank pass
    max_restarts: int = -1  # Ray restarts a dead shard this often (-1: always)
    check_timeout: float = 5.0  # seconds a check waits for every shard before failing closed
    load_timeout: float = 600.0  # seconds a change (models loaded from the source) may take
    retry_after: float = 2.0  # the hint given to callers while a shard is missing
    actor_options: dict = field(default_factory=dict)  # more ray.remote options (resources...)


class ShardedBank:
    """A :class:`~imgprivacy.docl.FilterBank` + :class:`~imgprivacy.docl.Guard` over Ray actors.

    Parameters
    ----------
    guard
        The policy; every shard gets one like it, the driver decides with this one.
    input_dim, feature_extractor, precision
        As for :class:`~imgprivacy.docl.FilterBank`: every shard stores its models' weights in
        ``precision`` (scores still accumulate in fp32), and a model shape the precision refuses
        is refused here, before any shard sees it.
    source
        Where the shards load their models (then call :meth:`sync`); None = :meth:`add` and
        :meth:`remove` push models through the driver.
    config
        :class:`ShardedBankConfig`.

    Ray must be initialised (``ray.init(...)``) before the bank is built.
    """

    def __init__(
        self,
        *,
        guard: Guard,
        input_dim: int = 784,
        feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR,
        precision: str = "fp32",
        source: ModelSource | None = None,
        config: ShardedBankConfig | None = None,
    ):
        import ray

        get_precision(precision)  # an unknown name fails here, listing the valid ones

        self.config = config if config is not None else ShardedBankConfig()
        if self.config.shards < 1:
            raise InvalidInputError(f"Expected at least one shard, got {self.config.shards}.")
        self.guard = guard
        self.input_dim = input_dim
        self.feature_extractor = feature_extractor
        self.source = source
        self._submit = threading.Lock()  # orders checks and changes identically on every shard
        self._changes = threading.Lock()  # one change at a time
        self._revision = -1 if source is not None else 0  # what every shard must answer with
        self._owners: dict[str, str] = {}  # model id -> owner, as the shards last reported
        self._states: list[ShardState | None] = [None] * self.config.shards
        remote = ray.remote(
            num_cpus=self.config.num_cpus,
            max_restarts=self.config.max_restarts,
            max_task_retries=0,  # a failed call fails the check; the caller retries
            **self.config.actor_options,
        )(BankShard)
        guard_args = _guard_args(guard)
        # every shard's FilterBank, and the driver's scratch bank that validates changes
        self._bank_args = dict(
            input_dim=input_dim, feature_extractor=feature_extractor, precision=precision
        )
        self._shards = [
            remote.remote(
                index=k,
                shards=self.config.shards,
                bank=self._bank_args,
                guard=guard_args,
                source=source,
                torch_threads=self.config.torch_threads,
            )
            for k in range(self.config.shards)
        ]
        if source is None:
            self._push_all({})  # every shard at revision 0, empty

    # -- membership -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._owners)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._owners)

    @property
    def revision(self) -> int:
        """The revision every shard answers with (the source's, or the count of changes)."""
        return self._revision

    @property
    def shard_states(self) -> list[ShardState | None]:
        """What each shard reported after the last change (models, memory, process id)."""
        return list(self._states)

    def shard_of(self, model_id: str) -> int:
        return shard_of(model_id, self.config.shards)

    @property
    def actors(self) -> list:
        """The shards' Ray actor handles (for operators and fault-injection tests)."""
        return list(self._shards)

    def add(
        self,
        model: OneClassAutoencoder,
        *,
        owner: str,
        model_id: str | None = None,
        replace: bool = False,
    ) -> str:
        """Add ``model`` for ``owner`` on its shard; as :meth:`FilterBank.add`."""
        return self.add_many([(owner, model)], model_ids=[model_id], replace=replace)[0]

    def add_many(
        self,
        items: Iterable[tuple[str, OneClassAutoencoder]],
        *,
        model_ids: Iterable[str | None] | None = None,
        replace: bool = False,
    ) -> list[str]:
        """Add (owner, model) pairs, each on the shard its id hashes to; all or nothing.

        Every model is validated first (by a :class:`FilterBank`'s own checks), so no shard
        changes when one model is refused.
        """
        self._require_push()
        items = list(items)
        ids = [None] * len(items) if model_ids is None else list(model_ids)
        if len(ids) != len(items):
            raise InvalidInputError(
                f"Expected one model id per item, got {len(ids)} ids for {len(items)} items."
            )
        with self._changes:
            staged = dict(self._owners)
            for k, ((owner, _), model_id) in enumerate(zip(items, ids)):
                ids[k] = self._check_id(owner, model_id, staged, replace=replace)
                staged[ids[k]] = owner
            scratch = FilterBank(**self._bank_args)
            scratch.add_many(items, model_ids=ids)  # validation only (raises, changes nothing)
            del scratch
            changes: dict[int, dict] = {}
            for key, (owner, model) in zip(ids, items):
                changes.setdefault(self.shard_of(key), {"add": []})["add"].append(
                    (key, owner, model)
                )
            self._push_all(changes)
        return ids

    def remove(self, model_id: str) -> None:
        """Remove one model from its shard; :class:`UnknownNameError` if there is no such id."""
        self._require_push()
        with self._changes:
            if model_id not in self._owners:
                known = ", ".join(list(self._owners)[:20]) or "(none)"
                raise UnknownNameError(f"Unknown model id {model_id!r}. Known ids: {known}.")
            self._push_all({self.shard_of(model_id): {"remove": [model_id]}})

    def remove_user(self, owner: str) -> list[str]:
        """Remove every model of ``owner``; :class:`UnknownNameError` if they own none."""
        self._require_push()
        with self._changes:
            ids = [key for key, who in self._owners.items() if who == owner]
            if not ids:
                raise UnknownNameError(
                    f"Unknown user {owner!r}: the bank holds no model of theirs."
                )
            changes: dict[int, dict] = {}
            for key in ids:
                changes.setdefault(self.shard_of(key), {"remove": []})["remove"].append(key)
            self._push_all(changes)
        return ids

    def set_breadth(self, breadth: dict[str, float]) -> None:
        """Every model's breadth for the Guard's breadth gate: the driver's Guard and, without a
        source, every shard's (a shard following a source reads them from it)."""
        import ray

        self.guard.set_breadth(breadth)
        if self.source is None:
            with self._submit:
                refs = [shard.set_breadth.remote(dict(breadth)) for shard in self._shards]
            ray.get(refs, timeout=self.config.load_timeout)

    def _require_push(self) -> None:
        if self.source is not None:
            raise InvalidInputError(
                "This sharded bank follows a model source; change the source and call sync()."
            )

    def _check_id(self, owner: str, model_id: str | None, staged: dict, *, replace: bool) -> str:
        if model_id is None:
            k = 0
            while f"{owner}/{k}" in staged:
                k += 1
            return f"{owner}/{k}"
        if model_id in staged:
            if not replace:
                raise InvalidInputError(
                    f"model id {model_id!r} already exists; pass replace=True to overwrite it"
                )
            if staged[model_id] != owner:
                raise InvalidInputError(f"model id {model_id!r} belongs to another user")
        return model_id

    def _push_all(self, changes: dict[int, dict]) -> None:
        """One change, at a new revision, on every shard (the others only move their revision)."""
        import ray

        with self._submit:
            revision = self._revision + 1
            refs = [
                shard.push.remote(revision, **changes.get(k, {}))
                for k, shard in enumerate(self._shards)
            ]
            self._revision = revision
        self._collect_states(ray, refs)

    # -- following a source -----------------------------------------------------------------
    def sync(self, *, force: bool = False, timeout: float | None = None) -> bool:
        """Bring every shard to the source's current revision; True when something changed.

        ``timeout`` bounds the wait (default: ``config.load_timeout``); past it the shards go on
        loading and checks fail closed until a later sync finds them in step.
        """
        import ray

        if self.source is None:
            return False
        if not self._changes.acquire(timeout=-1 if timeout is None else timeout):
            raise self._unavailable("another change is still loading models")
        try:
            if not force and self.source.revision() == self._revision:
                return False
            revision, listing = self.source.listing()
            with self._submit:
                refs = [shard.follow.remote(revision, listing) for shard in self._shards]
                self._revision = revision
            try:
                self._collect_states(ray, refs, timeout=timeout)
            except BaseException:
                self._revision = -1  # the next sync lists again; checks fail until then
                raise
            logger.info("sharded bank synced to revision %d: %d models", revision, len(self))
            return True
        finally:
            self._changes.release()

    def _collect_states(self, ray, refs: list, *, timeout: float | None = None) -> None:
        try:
            states = ray.get(refs, timeout=timeout or self.config.load_timeout)
        except ray.exceptions.RayTaskError as exc:  # the shard refused: the library's error
            raise exc.as_instanceof_cause() from None
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise self._unavailable(f"a shard did not apply the change: {exc}") from exc
        self._states = states
        self._owners = dict(sorted(pair for state in states for pair in state.models))

    # -- checks -----------------------------------------------------------------------------
    def decide(
        self,
        features: np.ndarray | torch.Tensor,
        uploaders: str | Sequence[str],
        *,
        guard: Guard | None = None,
    ) -> list[Decision]:
        """The Guard's decisions for (B, D) ``features``, exactly as one bank would decide.

        ``guard`` decides under another policy than the bank's own (None: the bank's).

        Raises
        ------
        ShardUnavailableError
            When a shard is missing, slow, or out of step (fail closed: no decision at all).
        InvalidInputError
            For a bad feature matrix or an empty bank.
        """
        x = as_feature_matrix(features, input_dim=self.input_dim, what="features")
        uploaders = uploaders_per_input(uploaders, len(x))
        guard = self.guard if guard is None else guard
        args = None if guard is self.guard else _guard_args(guard)
        expected, replies = self._ask(x, uploaders, args)
        if self.source is not None and not _in_step(replies, expected):
            logger.warning("shards out of step with revision %d: syncing them", expected)
            self.sync(force=True, timeout=self.config.check_timeout)
            expected, replies = self._ask(x, uploaders, args)
        if not _in_step(replies, expected):
            raise self._unavailable(
                f"shards answered from revisions {sorted({r.revision for r in replies})}, "
                f"expected {expected}: a shard restarted without its models"
            )
        return guard.decide(merge_columns([r.columns for r in replies]), uploaders)

    def _ask(
        self, x: torch.Tensor, uploaders: list[str], guard: dict | None
    ) -> tuple[int, list[ShardReply]]:
        """(the revision the shards must answer with, their replies) for one batch."""
        import ray

        with self._submit:
            expected = self._revision
            features = ray.put(x)  # one copy in the object store, read by every shard
            refs = [shard.check.remote(features, uploaders, guard) for shard in self._shards]
        try:
            return expected, ray.get(refs, timeout=self.config.check_timeout)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise self._unavailable(f"a shard did not answer: {type(exc).__name__}") from exc

    def _unavailable(self, message: str) -> ShardUnavailableError:
        return ShardUnavailableError(
            f"The sharded bank cannot decide now ({message}); retry in a few seconds.",
            retry_after=self.config.retry_after,
        )

    def shutdown(self) -> None:
        """Stop the shard actors (the bank is unusable afterwards)."""
        import ray

        for shard in self._shards:
            ray.kill(shard, no_restart=True)
        self._shards = []


def _guard_args(guard: Guard) -> dict:
    return {
        "policy": guard.policy,
        "alpha": guard.alpha,
        "margin": guard.margin,
        "breadth_ratio": guard.breadth_ratio,
        "seniority": guard.seniority,
    }


def _in_step(replies: list[ShardReply], expected: int) -> bool:
    return all(reply.revision == expected for reply in replies)
