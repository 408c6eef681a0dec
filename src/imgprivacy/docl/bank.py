"""The DOCL global filter: every user's autoencoder, scored for a whole batch in one pass.

Eq. (7)-(8): each uploaded feature vector is reconstructed by all N autoencoders and its squared
distance to each reconstruction is measured. The bank stacks the models' weights layer by layer
into (N, out, in) tensors and evaluates all of them with one matrix product per layer per chunk of
models (the first layer of a whole chunk is a single (B, D) @ (D, chunk*M) product); chunking
bounds the (chunk, B, D) intermediate so memory stays flat as N grows.

Models of different sizes live together in separate groups, one per exact layer-size tuple: a
model never pays for another's width (zero-padding to the widest model of a depth would let one
wide upload slow every check for everyone).

Changes (add, remove, replace) build a new immutable snapshot; a scoring call keeps the snapshot
it started with, so changes never disturb a batch in flight.

Scoring runs the fused native kernel (:mod:`imgprivacy.docl.bank_kernels`: every layer and the
distance tail in one pass, no (chunk, B, D) intermediate) where it can be built, and the torch
path of :mod:`imgprivacy.docl.bank_stack` otherwise (the native kernel measured faster at every
batch size, see :mod:`imgprivacy.docl.bank_kernels`); both give the same distances to 1e-5
relative. Weights may be stored in fp16 or bf16 (:mod:`imgprivacy.docl.bank_precision`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.bank_kernels import (
    check_kernel,
    native_stacked_distances,
    resolve_kernel,
)
from imgprivacy.docl.bank_precision import Precision, get_precision, precision_problems
from imgprivacy.docl.bank_stack import Snapshot, model_views, stack_snapshot, stacked_distances
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError, NotFittedError, UnknownNameError

# Budget for the (chunk, B, D) decoder intermediate (8 MiB measured best of 0.25-32 MiB at
# N=1000, B=256: 49% of the matmul roofline against 46% at 4 MiB).
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BankEntry:
    """What the bank knows about one autoencoder besides its weights."""

    model_id: str
    owner: str
    layer_dims: tuple[int, ...]  # sizes from input to output, e.g. (784, 32, 784)
    error_mean: float  # mu of eq. (6) statistics
    error_std: float  # sigma of eq. (6) statistics
    # When the model (this version of it) joined the bank: a number that only grows, equal for
    # models added together (one add_many call, or the storage revision that wrote them). The
    # Guard's seniority reads it (imgprivacy.docl.guard).
    admitted: int = 0


@dataclass(frozen=True)
class BankScores:
    """Distances of B inputs to N models, with what the Guard needs to interpret them.

    ``distances[b, n]`` is the squared reconstruction distance of input b under model n
    (lower = closer). ``error_mean`` and ``error_std`` are the models' (N,) statistics.
    """

    distances: torch.Tensor  # (B, N)
    error_mean: torch.Tensor  # (N,)
    error_std: torch.Tensor  # (N,)
    model_ids: tuple[str, ...]
    owners: tuple[str, ...]
    # (N,) int64: when each model joined the bank (BankEntry.admitted); None when unknown (the
    # Guard's seniority then treats every model as admitted together).
    admitted: torch.Tensor | None = None

    @property
    def nearest(self) -> torch.Tensor:
        """Eq. (8): index of the closest model for each input, shape (B,).

        A non-finite distance (a broken model, e.g. one whose hidden layer overflows to NaN) is
        never the closest: ``argmin`` alone would pick a NaN.
        """
        finite = torch.isfinite(self.distances)
        return self.distances.masked_fill(~finite, float("inf")).argmin(dim=1)

    @property
    def nearest_owner(self) -> list[str]:
        return [self.owners[i] for i in self.nearest.tolist()]

    def select(self, *, models: Sequence[int] | None = None, rows=None) -> BankScores:
        """The scores restricted to some models (columns) and/or inputs (rows)."""
        cols = list(range(len(self.model_ids))) if models is None else list(models)
        distances = self.distances[:, cols]
        if rows is not None:
            distances = distances[rows]
        return BankScores(
            distances=distances,
            error_mean=self.error_mean[cols],
            error_std=self.error_std[cols],
            model_ids=tuple(self.model_ids[i] for i in cols),
            owners=tuple(self.owners[i] for i in cols),
            admitted=None if self.admitted is None else self.admitted[cols],
        )


class FilterBank:
    """All users' one-class autoencoders (a user may own several).

    Parameters
    ----------
    input_dim
        D, the feature dimension every model must accept.
    feature_extractor
        Name of the extractor the models were trained on; models declaring another are refused.
    device
        Torch device holding the stacked weights.
    chunk_bytes
        Memory budget of the decoder intermediate per chunk of models (torch path).
    precision
        How the stacked weights are stored: ``"fp32"``, or ``"fp16"`` / ``"bf16"`` for half the
        memory and bytes read per check (scores still accumulate in fp32). A compact precision
        refuses the model shapes listed in :data:`~imgprivacy.docl.bank_precision.PRECISIONS`.
    kernel
        ``"auto"`` (the fused native kernel, measured faster than torch at every batch size;
        torch where the native kernel cannot be built), ``"native"`` (an error if it cannot) or
        ``"torch"``.

    Examples
    --------
    >>> import torch
    >>> from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
    >>> cfg = AutoencoderConfig(input_dim=16, hidden_dim=4, epochs=1)
    >>> bank = FilterBank(input_dim=16)
    >>> bank.add(OneClassAutoencoder(cfg).fit(torch.rand(32, 16)), owner="alice")
    'alice/0'
    >>> bank.score(torch.rand(5, 16)).distances.shape
    torch.Size([5, 1])
    """

    def __init__(
        self,
        *,
        input_dim: int = 784,
        feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR,
        device: str = "cpu",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        precision: str = "fp32",
        kernel: str = "auto",
    ):
        self.input_dim = input_dim
        self.feature_extractor = feature_extractor
        self.device = device
        self.chunk_bytes = chunk_bytes
        self.precision = precision
        self.kernel = kernel
        self._precision: Precision = get_precision(precision)  # lists valid names if unknown
        # "native", "torch", or "auto": settled (the native kernel built) at the first score
        self._kernel = check_kernel(kernel, device=device)
        self._models: dict[str, tuple[BankEntry, dict[str, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._next_admission = 1  # BankEntry.admitted of the next add_many without one

    # -- membership -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._models)

    @property
    def entries(self) -> tuple[BankEntry, ...]:
        return tuple(entry for entry, _ in self._models.values())

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._models)

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(entry.owner for entry in self.entries)

    def models_of(self, owner: str) -> list[str]:
        """Model ids owned by ``owner`` (empty if the user has none)."""
        return [e.model_id for e in self.entries if e.owner == owner]

    def add(
        self,
        model: OneClassAutoencoder,
        *,
        owner: str,
        model_id: str | None = None,
        replace: bool = False,
    ) -> str:
        """Add ``model`` for ``owner`` and return its id; nothing changes if validation fails.

        With ``replace=True`` an existing ``model_id`` is overwritten (same owner required).
        """
        return self.add_many([(owner, model)], model_ids=[model_id], replace=replace)[0]

    def add_many(
        self,
        items: Iterable[tuple[str, OneClassAutoencoder]],
        *,
        model_ids: Iterable[str | None] | None = None,
        replace: bool = False,
        admitted: int | Sequence[int] | None = None,
    ) -> list[str]:
        """Add several (owner, model) pairs at once (one rebuild); all or nothing.

        ``items`` may be a generator: models are copied one at a time, so a caller that does not
        keep them can add 10,000 models holding a single extra copy of the weights.

        ``admitted`` is when the models joined (:attr:`BankEntry.admitted`): one number for all,
        one per item (e.g. the storage revision that wrote each), or None for the bank's own
        count (later than every model it holds: the models of one call are admitted together).
        A replaced model is a new admission.
        """
        ids = None if model_ids is None else list(model_ids)
        with self._lock:
            staged = dict(self._models)
            added = []
            for k, (owner, model) in enumerate(items):
                model_id = ids[k] if ids is not None and k < len(ids) else None
                entry, weights = self._validated(
                    model, owner=owner, model_id=model_id, staged=staged, replace=replace
                )
                entry = dataclasses.replace(entry, admitted=_admission(admitted, k, self))
                staged[entry.model_id] = (entry, weights)
                added.append(entry.model_id)
            if ids is not None and len(ids) != len(added):
                raise InvalidInputError(
                    f"Expected one model id per item, got {len(ids)} ids for {len(added)} items."
                )
            if isinstance(admitted, Sequence) and len(admitted) != len(added):
                raise InvalidInputError(
                    f"Expected one admission per item, got {len(admitted)} for {len(added)} "
                    "items (or pass one number for all)."
                )
            latest = max((staged[m][0].admitted for m in added), default=0)
            self._next_admission = max(self._next_admission, latest + 1)
            self._models = staged
            self._snapshot = None
        return added

    def remove(self, model_id: str) -> BankEntry:
        """Remove one model; :class:`UnknownNameError` if there is no such id."""
        with self._lock:
            if model_id not in self._models:
                raise UnknownNameError(self._unknown_model_message(model_id))
            staged = dict(self._models)
            entry, _ = staged.pop(model_id)
            self._models = staged
            self._snapshot = None
        return entry

    def remove_user(self, owner: str) -> list[str]:
        """Remove every model of ``owner``; :class:`UnknownNameError` if they own none."""
        with self._lock:
            ids = [mid for mid, (e, _) in self._models.items() if e.owner == owner]
            if not ids:
                raise UnknownNameError(
                    f"Unknown user {owner!r}: the bank holds no model of theirs. "
                    f"Known users: {', '.join(sorted(set(self.owners))) or '(none)'}."
                )
            self._models = {k: v for k, v in self._models.items() if k not in ids}
            self._snapshot = None
        return ids

    def _unknown_model_message(self, model_id: str) -> str:
        known = ", ".join(list(self._models)[:20]) or "(none)"
        return f"Unknown model id {model_id!r}. Known ids: {known}."

    def _validated(
        self,
        model: OneClassAutoencoder,
        *,
        owner: str,
        model_id: str | None,
        staged: dict,
        replace: bool,
    ) -> tuple[BankEntry, dict[str, torch.Tensor]]:
        problems = []
        if not isinstance(owner, str) or not owner.strip():
            problems.append(f"owner must be a non-empty string, got {owner!r}")
        if not isinstance(model, OneClassAutoencoder):
            raise InvalidInputError(f"Expected a OneClassAutoencoder, got {type(model).__name__}.")
        try:
            weights = {
                name: t.detach().to(self.device, copy=True) for name, t in model.weights().items()
            }
        except NotFittedError as exc:
            raise InvalidInputError(f"Cannot add an unfitted model: {exc}") from exc
        cfg = model.config
        if cfg.input_dim != self.input_dim:
            problems.append(
                f"the model takes input dimension {cfg.input_dim} but this bank scores "
                f"{self.input_dim}-dimensional features; train it on the bank's features"
            )
        if cfg.feature_extractor != self.feature_extractor:
            problems.append(
                f"the model was trained on {cfg.feature_extractor!r} features but this bank uses "
                f"{self.feature_extractor!r}; retrain it with that extractor"
            )
        for name in ("error_mean_", "error_std_"):
            value = getattr(model, name)
            if not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be finite and > 0, got {value!r}")
        if not all(torch.isfinite(t).all() for t in weights.values()):
            problems.append("the model's weights contain NaN or infinite values")
        problems.extend(precision_problems(self._precision, tuple(cfg.layer_dims), weights))
        if model_id is None:
            model_id = _next_id(owner, staged)
        elif model_id in staged:
            if not replace:
                problems.append(
                    f"model id {model_id!r} already exists; pass replace=True to overwrite it"
                )
            elif staged[model_id][0].owner != owner:
                problems.append(f"model id {model_id!r} belongs to another user")
        if problems:
            raise InvalidInputError(problems)
        # Held in the storage precision from now on: a compact bank never holds fp32 copies.
        dtype = self._precision.dtype
        weights = {k: w.to(dtype) if k.endswith("weight") else w for k, w in weights.items()}
        entry = BankEntry(
            model_id=model_id,
            owner=owner,
            layer_dims=tuple(cfg.layer_dims),
            error_mean=float(model.error_mean_),
            error_std=float(model.error_std_),
        )
        return entry, weights

    # -- scoring --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The stacked weights for the current membership (built once per change)."""
        snap = self._snapshot
        if snap is not None:
            return snap
        with self._lock:
            if self._snapshot is None:
                snap = stack_snapshot(
                    list(self._models.values()), self.device, self._precision.dtype
                )
                # Keep each model's weights as views into the stacked tensors so the bank holds
                # one copy of every weight, not two (matters at N = 10,000).
                views = model_views(snap)
                self._models = {
                    mid: (entry, views[i])
                    for i, (mid, (entry, _)) in enumerate(self._models.items())
                }
                self._snapshot = snap
            return self._snapshot

    def score(self, x: np.ndarray | torch.Tensor) -> BankScores:
        """Distances of features ``x`` (B, D) to every model, as :class:`BankScores`.

        Raises
        ------
        InvalidInputError
            For a bad feature matrix or an empty bank.
        """
        snap = self.snapshot()
        if not snap.entries:
            raise InvalidInputError(
                "The bank holds no model yet; add users' autoencoders with bank.add(...)."
            )
        x = as_feature_matrix(x, input_dim=self.input_dim, what="features")
        return self.score_stack(snap, x)

    def score_stack(self, stack: Snapshot, x: torch.Tensor) -> BankScores:
        """Distances of validated features ``x`` (B, D) to the models of ``stack`` (this bank's
        snapshot or a selection of it), with this bank's kernel."""
        kernels = self.kernels_for(x.shape[0], stack)
        if "native" in kernels:
            distances = native_stacked_distances(
                stack,
                x,
                threads=torch.get_num_threads(),
                kernels=kernels,
                chunk_bytes=self.chunk_bytes,
            )
        else:
            distances = stacked_distances(stack, x.to(self.device), chunk_bytes=self.chunk_bytes)
        return snapshot_scores(stack, distances)

    def kernels_for(self, batch: int, stack: Snapshot | None = None) -> tuple[str, ...]:
        """The kernel (``"native"`` or ``"torch"``) each group of ``stack`` (default: the current
        snapshot's, one group per model shape) runs for a batch of ``batch`` inputs (the same
        kernel at every batch size: ``batch`` is kept for callers that print it per batch)."""
        if self._kernel == "auto":  # the first score builds the native kernel (once a process)
            self._kernel = resolve_kernel("auto", device=self.device)
        stack = self.snapshot() if stack is None else stack
        return tuple(self._kernel for _ in stack.groups)

    def distances(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The (B, N) distance matrix only."""
        return self.score(x).distances


def snapshot_scores(stack: Snapshot, distances: torch.Tensor) -> BankScores:
    """:class:`BankScores` of ``distances`` (B, N) to the models of ``stack``, in its order."""
    return BankScores(
        distances=distances.cpu(),
        error_mean=stack.error_mean.cpu(),
        error_std=stack.error_std.cpu(),
        model_ids=tuple(e.model_id for e in stack.entries),
        owners=tuple(e.owner for e in stack.entries),
        admitted=torch.tensor([e.admitted for e in stack.entries], dtype=torch.int64),
    )


def _admission(admitted: int | Sequence[int] | None, k: int, bank: FilterBank) -> int:
    """The admission number of item ``k`` of an ``add_many`` call (see there)."""
    if admitted is None:
        return bank._next_admission
    value = admitted[k] if isinstance(admitted, Sequence) and k < len(admitted) else admitted
    if isinstance(value, Sequence):  # more items than admissions: reported after the loop
        value = bank._next_admission
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"Expected an integer admission number, got {value!r}.")
    return int(value)


def _next_id(owner: str, staged: dict) -> str:
    k = 0
    while f"{owner}/{k}" in staged:
        k += 1
    return f"{owner}/{k}"
