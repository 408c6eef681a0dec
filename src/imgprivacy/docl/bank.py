"""The DOCL global filter: every user's autoencoder, scored for a whole batch in one pass.

Eq. (7)-(8): each uploaded feature vector is reconstructed by all N autoencoders and its squared
distance to each reconstruction is measured. The bank stacks the models' weights layer by layer
into (N, out, in) tensors and evaluates all of them with one matrix product per layer per chunk of
models (the first layer of a whole chunk is a single (B, D) @ (D, chunk*M) product); chunking
bounds the (chunk, B, D) intermediate so memory stays flat as N grows.

Models with different widths live together: narrower layers are zero-padded to the widest, which
changes nothing (a zero row gives ReLU(0) = 0, and a zero column adds nothing). Models with
different numbers of layers are stacked in separate groups.

Changes (add, remove, replace) build a new immutable snapshot; a scoring call keeps the snapshot
it started with, so changes never disturb a batch in flight.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError, NotFittedError, UnknownNameError

# Budget for the (chunk, B, D) decoder intermediate (8 MiB measured best of 0.25-32 MiB at
# N=1000, B=256 on 2 idle cores: 49% of the matmul roofline against 46% at 4 MiB).
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BankEntry:
    """What the bank knows about one autoencoder besides its weights."""

    model_id: str
    owner: str
    layer_dims: tuple[int, ...]  # sizes from input to output, e.g. (784, 32, 784)
    error_mean: float  # mu of eq. (6) statistics
    error_std: float  # sigma of eq. (6) statistics


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

    @property
    def nearest(self) -> torch.Tensor:
        """Eq. (8): index of the closest model for each input, shape (B,)."""
        return self.distances.argmin(dim=1)

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
        )


@dataclass(frozen=True)
class _LayerStack:
    """Models with the same number of layers, zero-padded to common widths."""

    columns: torch.Tensor  # (n,) positions of these models in the bank's model order
    first_weight: torch.Tensor  # (n, h1, D)
    first_bias: torch.Tensor  # (n, h1)
    weights_t: tuple[torch.Tensor, ...]  # later layers, (n, in, out) for bmm
    biases: tuple[torch.Tensor, ...]  # later layers, (n, out)


@dataclass(frozen=True)
class _Snapshot:
    entries: tuple[BankEntry, ...]
    groups: tuple[_LayerStack, ...]
    error_mean: torch.Tensor  # (N,)
    error_std: torch.Tensor  # (N,)


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
        Memory budget of the decoder intermediate per chunk of models.

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
        feature_extractor: str = "pixels",
        device: str = "cpu",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ):
        self.input_dim = input_dim
        self.feature_extractor = feature_extractor
        self.device = device
        self.chunk_bytes = chunk_bytes
        self._models: dict[str, tuple[BankEntry, dict[str, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

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
    ) -> list[str]:
        """Add several (owner, model) pairs at once (one rebuild); all or nothing.

        ``items`` may be a generator: models are copied one at a time, so a caller that does not
        keep them can add 10,000 models holding a single extra copy of the weights.
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
                staged[entry.model_id] = (entry, weights)
                added.append(entry.model_id)
            if ids is not None and len(ids) != len(added):
                raise InvalidInputError(
                    f"Expected one model id per item, got {len(ids)} ids for {len(added)} items."
                )
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
        entry = BankEntry(
            model_id=model_id,
            owner=owner,
            layer_dims=tuple(cfg.layer_dims),
            error_mean=float(model.error_mean_),
            error_std=float(model.error_std_),
        )
        return entry, weights

    # -- scoring --------------------------------------------------------------------------
    def snapshot(self) -> _Snapshot:
        """The stacked weights for the current membership (built once per change)."""
        snap = self._snapshot
        if snap is not None:
            return snap
        with self._lock:
            if self._snapshot is None:
                snap = _stack(list(self._models.values()), self.input_dim, self.device)
                # Keep each model's weights as views into the stacked tensors so the bank holds
                # one copy of every weight, not two (matters at N = 10,000).
                views = _model_views(snap)
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
        distances = stacked_distances(snap, x.to(self.device), chunk_bytes=self.chunk_bytes)
        return BankScores(
            distances=distances.cpu(),
            error_mean=snap.error_mean.cpu(),
            error_std=snap.error_std.cpu(),
            model_ids=tuple(e.model_id for e in snap.entries),
            owners=tuple(e.owner for e in snap.entries),
        )

    def distances(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The (B, N) distance matrix only."""
        return self.score(x).distances


def stacked_distances(snap: _Snapshot, x: torch.Tensor, *, chunk_bytes: int) -> torch.Tensor:
    """(B, N) squared reconstruction distances of ``x`` to every model of ``snap``."""
    out = torch.empty(x.shape[0], len(snap.entries), dtype=x.dtype, device=x.device)
    with torch.inference_mode():
        for group in snap.groups:
            out[:, group.columns] = _group_distances(group, x, chunk_bytes=chunk_bytes)
    return out


def _group_distances(group: _LayerStack, x: torch.Tensor, *, chunk_bytes: int) -> torch.Tensor:
    """(B, n) distances for one layer stack, models processed in bounded chunks."""
    n_models, first_width, dim = group.first_weight.shape
    batch = x.shape[0]
    widest = max([dim, first_width, *(w.shape[2] for w in group.weights_t)])
    chunk = max(1, min(n_models, chunk_bytes // max(batch * widest * x.element_size(), 1)))
    out = torch.empty(n_models, batch, dtype=x.dtype, device=x.device)
    for start in range(0, n_models, chunk):
        stop = min(start + chunk, n_models)
        count = stop - start
        # First layer of every model in the chunk at once: (B, D) @ (D, C*h1) -> (B, C*h1).
        weight = group.first_weight[start:stop].reshape(count * first_width, dim)
        act = torch.addmm(group.first_bias[start:stop].reshape(-1), x, weight.t())
        act = act.relu_().view(batch, count, first_width).transpose(0, 1)
        # Later layers: (C, B, in) @ (C, in, out) + bias; ReLU between, logits at the end.
        last = len(group.weights_t) - 1
        for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases)):
            act = torch.baddbmm(bias[start:stop].unsqueeze(1), act, weight_t[start:stop])
            if k < last:
                act.relu_()
        act.sigmoid_().sub_(x)  # eq. (6), in place: reconstruction - input
        out[start:stop] = act.square_().sum(dim=2)
    return out.t()


def _stack(items: list, dim: int, device: str) -> _Snapshot:
    entries = tuple(entry for entry, _ in items)
    by_depth: dict[int, list[int]] = {}
    for position, entry in enumerate(entries):
        by_depth.setdefault(len(entry.layer_dims), []).append(position)
    groups = tuple(
        _stack_group([items[p] for p in positions], positions, device)
        for _, positions in sorted(by_depth.items())
    )
    return _Snapshot(
        entries=entries,
        groups=groups,
        error_mean=torch.tensor([e.error_mean for e in entries], dtype=torch.float64),
        error_std=torch.tensor([e.error_std for e in entries], dtype=torch.float64),
    )


def _stack_group(items: list, positions: list[int], device: str) -> _LayerStack:
    n_models = len(items)
    n_layers = len(items[0][0].layer_dims) - 1
    widths = [max(entry.layer_dims[k] for entry, _ in items) for k in range(n_layers + 1)]
    # Layer 0 is stored (n, out, in) for the chunk-wide addmm, later layers (n, in, out) for bmm;
    # both are filled in place, so building costs no transposed copy (peak memory at N=10,000).
    first_weight = torch.zeros(n_models, widths[1], widths[0], device=device)
    weights_t = [
        torch.zeros(n_models, widths[k], widths[k + 1], device=device) for k in range(1, n_layers)
    ]
    stacked_b = [torch.zeros(n_models, widths[k + 1], device=device) for k in range(n_layers)]
    for i, (_, weights) in enumerate(items):
        w = weights["layers.0.weight"]
        first_weight[i, : w.shape[0], : w.shape[1]] = w
        for k in range(1, n_layers):
            w = weights[f"layers.{k}.weight"]
            weights_t[k - 1][i, : w.shape[1], : w.shape[0]] = w.t()
        for k in range(n_layers):
            bias = weights[f"layers.{k}.bias"]
            stacked_b[k][i, : bias.shape[0]] = bias
    return _LayerStack(
        columns=torch.tensor(positions, dtype=torch.long, device=device),
        first_weight=first_weight,
        first_bias=stacked_b[0],
        weights_t=tuple(weights_t),
        biases=tuple(stacked_b[1:]),
    )


def _model_views(snap: _Snapshot) -> list[dict[str, torch.Tensor]]:
    """Each model's weights as un-padded views into ``snap``'s stacked tensors."""
    views: list[dict[str, torch.Tensor]] = [{} for _ in snap.entries]
    for group in snap.groups:
        for row, position in enumerate(group.columns.tolist()):
            dims = snap.entries[position].layer_dims
            named = views[position]
            named["layers.0.weight"] = group.first_weight[row, : dims[1], : dims[0]]
            named["layers.0.bias"] = group.first_bias[row, : dims[1]]
            for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases), start=1):
                named[f"layers.{k}.weight"] = weight_t[row, : dims[k], : dims[k + 1]].t()
                named[f"layers.{k}.bias"] = bias[row, : dims[k + 1]]
    return views


def _next_id(owner: str, staged: dict) -> str:
    k = 0
    while f"{owner}/{k}" in staged:
        k += 1
    return f"{owner}/{k}"
