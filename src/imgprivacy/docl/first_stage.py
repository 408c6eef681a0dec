"""A cheap first stage for a check: keep the few models that could decide it, score only those.

The Guard (:mod:`imgprivacy.docl.guard`) decides an input from the *nearest claimant* (another
user's model whose interval holds it) and the uploader's own models (which may vouch). Every
other model is irrelevant. Removing models from a check can only remove claims and push the
nearest claimant farther, so a check restricted to a subset of the models can turn a "block" of
the full bank into a "share", never the reverse: a first stage is judged by its *recall*, the
fraction of the full bank's blocks it keeps.

The stage here is a **sketch** of each model, computed from its weights alone plus a public
reference set the operator chooses (for instance the service's probe images): the model's
reconstructions of the reference images, summarised by their mean ``c_n`` and their ``rank``
principal directions ``U_n`` (rows orthonormal). The sketch distance of an input ``x`` is its
squared distance to the affine subspace ``c_n + span(U_n)``, a proxy for the model's
reconstruction distance (exact for a linear autoencoder whose outputs span that subspace). It
needs ``(rank + 1) * D`` multiply-adds per model and input, a few percent of a model's own cost.

Ranking (``ranking="decision"``): the uploader's own models are scored exactly first; they give,
per input, the window of distances ``[lo_n, hi_n]`` at which model n's claim would decide it
(``lo_n = mu_n - alpha*sigma_n`` under the two-sided policies, ``hi_n`` the interval's top capped
at ``margin`` (or 1) times the voucher's distance under the policies whose own models vouch).
Models are ranked by how far, in log-distance, their sketch distance lies outside that window.
``ranking="ratio"`` ranks by sketch distance over ``mu_n + alpha*sigma_n`` alone. The ``keep``
fraction ranked first, plus every model of the uploader, are scored exactly with the bank's
kernel (:func:`score_models`) and the Guard decides on those.

What the sketch stores about a user is a function of their uploaded weights and public images, so
it reveals nothing that the weights do not. The ranking is a proxy, not a bound: a first stage
can miss the claimant that the full bank would find. ``docs/scaling.md`` gives the measured
recall, which is below 99.9% at 5% of the models for most policies; nothing uses this module
unless called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.bank import BankEntry, BankScores, FilterBank
from imgprivacy.docl.bank_stack import LayerStack
from imgprivacy.docl.guard import POLICIES, Decision, Guard, uploaders_per_input
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError, NotFittedError

RANKINGS = ("decision", "ratio")
_TINY = 1e-12  # floor of distances before taking logs
# Models reconstructed at once while sketching: bounds the (chunk, R, D) reconstructions.
SKETCH_CHUNK = 16


@dataclass(frozen=True)
class Sketches:
    """Every model's affine subspace ``offsets[n] + span(bases[n])`` in feature space."""

    entries: tuple[BankEntry, ...]  # the bank entries sketched, in the bank's model order
    owners: np.ndarray  # (N,) each model's owner
    offsets: torch.Tensor  # (N, D) mean reconstruction of the reference set
    bases: torch.Tensor  # (N, r, D) principal directions, orthonormal rows
    offset_norms: torch.Tensor  # (N,) squared norm of each offset
    offset_coords: torch.Tensor  # (N, r) each offset's coordinates in its own basis

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) squared distance of each input to each model's subspace."""
        n_models, rank, dim = self.bases.shape
        d = (x * x).sum(dim=1, keepdim=True) - 2 * x @ self.offsets.t() + self.offset_norms
        if rank:
            coords = (x @ self.bases.reshape(n_models * rank, dim).t()).view(-1, n_models, rank)
            d = d - (coords - self.offset_coords).square().sum(dim=2)
        return d.clamp_min_(0)


def reconstructions(bank: FilterBank, inputs: torch.Tensor, models: Sequence[int]) -> torch.Tensor:
    """(len(models), R, D): each listed model's reconstruction of ``inputs``.

    ``inputs`` is one (R, D) set for every model, or (len(models), R, D), a set per model.
    """
    snap = bank.snapshot()
    shared = inputs.dim() == 2
    out = torch.empty(len(models), *inputs.shape[-2:])
    wanted = {position: k for k, position in enumerate(models)}
    with torch.inference_mode():
        for group in snap.groups:
            rows = [r for r, p in enumerate(group.columns.tolist()) if p in wanted]
            for start in range(0, len(rows), SKETCH_CHUNK):
                chunk = torch.tensor(rows[start : start + SKETCH_CHUNK])
                slots = [wanted[p] for p in group.columns[chunk].tolist()]
                x = inputs.expand(len(chunk), *inputs.shape) if shared else inputs[slots]
                weight = group.first_weight[chunk].float()
                act = torch.baddbmm(group.first_bias[chunk, None, :], x, weight.mT)
                for weight_t, bias in zip(group.weights_t, group.biases):
                    act = torch.baddbmm(bias[chunk, None, :], act.relu_(), weight_t[chunk].float())
                out[slots] = act.sigmoid_()[:, :, : inputs.shape[-1]]
    return out


def sketch(reconstructed: torch.Tensor, *, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (n, D) and top-``rank`` principal directions (n, rank, D) of (n, R, D) samples."""
    offsets = reconstructed.mean(dim=1)
    if rank == 0:
        return offsets, reconstructed.new_zeros(len(offsets), 0, reconstructed.shape[2])
    _, _, vh = torch.linalg.svd(reconstructed - offsets[:, None, :], full_matrices=False)
    return offsets, vh[:, :rank, :].contiguous()


@dataclass(frozen=True)
class _Subset:
    """A bank snapshot restricted to some models (what the scoring kernels read)."""

    entries: tuple[BankEntry, ...]
    groups: tuple[LayerStack, ...]
    error_mean: torch.Tensor  # (n,)
    error_std: torch.Tensor  # (n,)


def _select(snap, models: list[int]) -> _Subset:
    index = torch.tensor(models, dtype=torch.long)
    slot = torch.full((len(snap.entries),), -1, dtype=torch.long)
    slot[index] = torch.arange(len(models))
    groups = []
    for group in snap.groups:
        new = slot[group.columns.cpu()]
        rows = torch.nonzero(new >= 0).flatten()
        if len(rows):
            here = rows.to(group.first_weight.device)
            groups.append(
                LayerStack(
                    columns=new[rows].to(group.columns.device),
                    first_weight=group.first_weight[here],
                    first_bias=group.first_bias[here],
                    weights_t=tuple(w[here] for w in group.weights_t),
                    biases=tuple(b[here] for b in group.biases),
                )
            )
    return _Subset(
        entries=tuple(snap.entries[n] for n in models),
        groups=tuple(groups),
        error_mean=snap.error_mean[index],
        error_std=snap.error_std[index],
    )


def score_models(bank: FilterBank, x: torch.Tensor, models: Sequence[int]) -> BankScores:
    """Exact scores of features ``x`` (B, D) under the models at positions ``models`` of
    ``bank`` only (columns in the order of ``models``), with the bank's own kernel."""
    snap = bank.snapshot()
    picked = [int(n) for n in models]
    if not picked or not all(0 <= n < len(snap.entries) for n in picked):
        raise InvalidInputError(
            f"Expected a non-empty list of model positions in [0, {len(snap.entries)}), "
            f"got {picked[:10]}."
        )
    x = as_feature_matrix(x, input_dim=bank.input_dim, what="features")
    return bank.score_stack(_select(snap, picked), x)


class FirstStage:
    """Keep a fraction of the models per check by a sketch of each model (module docstring).

    Parameters
    ----------
    rank
        Principal directions per model sketch (0: the mean reconstruction only).
    keep
        Fraction of the bank's models scored exactly per input (at least one), in (0, 1]; the
        uploader's own models are scored in addition. ``keep=1`` scores every model.
    ranking
        ``"decision"`` (where the model's claim would decide the check, module docstring) or
        ``"ratio"`` (sketch distance over ``mu + alpha*sigma``).
    iterations
        Times the reference set is passed through each model before it is summarised (each pass
        moves the samples closer to what the model reconstructs well).

    Examples
    --------
    >>> import torch
    >>> from imgprivacy.docl import AutoencoderConfig, FilterBank, Guard, OneClassAutoencoder
    >>> cfg = AutoencoderConfig(input_dim=16, hidden_dim=4, epochs=1)
    >>> bank = FilterBank(input_dim=16)
    >>> _ = bank.add_many([(f"u{k}", OneClassAutoencoder(cfg.replace(seed=k)).fit(torch.rand(32, 16)))
    ...                    for k in range(4)])
    >>> stage = FirstStage(rank=2, keep=0.5).fit(bank, reference=torch.rand(20, 16))
    >>> len(stage.decide(bank, Guard(), torch.rand(3, 16), uploaders="u0"))
    3
    """

    def __init__(
        self, *, rank: int = 0, keep: float = 0.05, ranking: str = "decision", iterations: int = 1
    ):
        self.rank = rank
        self.keep = keep
        self.ranking = ranking
        self.iterations = iterations

    def _check_params(self) -> None:
        problems = []
        if not isinstance(self.rank, int) or self.rank < 0:
            problems.append(f"rank must be an integer >= 0, got {self.rank!r}")
        if not isinstance(self.keep, (int, float)) or not 0 < self.keep <= 1:
            problems.append(f"keep must be a fraction in (0, 1], got {self.keep!r}")
        if self.ranking not in RANKINGS:
            problems.append(f"ranking must be one of {', '.join(RANKINGS)}, got {self.ranking!r}")
        if not isinstance(self.iterations, int) or self.iterations < 1:
            problems.append(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if problems:
            raise InvalidInputError(problems)

    def fit(self, bank: FilterBank, *, reference: np.ndarray | torch.Tensor) -> FirstStage:
        """Sketch every model of ``bank`` from its weights and the public ``reference`` (R, D)."""
        self._check_params()
        reference = as_feature_matrix(reference, input_dim=bank.input_dim, what="reference")
        if len(reference) <= self.rank:
            raise InvalidInputError(
                f"Expected more reference images than the sketch rank {self.rank}, got "
                f"{len(reference)}; pass a larger public reference set."
            )
        self.reference_ = reference
        self.sketches_: Sketches | None = None
        self.update(bank)
        return self

    def update(self, bank: FilterBank) -> Sketches:
        """Sketch the models added or replaced since the last call; drop removed ones."""
        if not hasattr(self, "reference_"):
            raise NotFittedError(
                "This FirstStage is not fitted yet: call fit(bank, reference=...)."
            )
        entries = bank.snapshot().entries
        old = self.sketches_
        known = {} if old is None else {id(e): n for n, e in enumerate(old.entries)}
        unchanged = old is not None and len(old.entries) == len(entries)
        if unchanged and all(known.get(id(e)) == n for n, e in enumerate(entries)):
            return old
        missing = [n for n, e in enumerate(entries) if id(e) not in known]
        new_offsets, new_bases = self._sketch(bank, missing)
        dim, rank = bank.input_dim, self.rank
        offsets = torch.empty(len(entries), dim)
        bases = torch.empty(len(entries), rank, dim)
        kept = [(n, known[id(e)]) for n, e in enumerate(entries) if id(e) in known]
        if kept:
            to, source = (torch.tensor(v) for v in zip(*kept))
            offsets[to], bases[to] = old.offsets[source], old.bases[source]
        if missing:
            offsets[missing], bases[missing] = new_offsets, new_bases
        self.sketches_ = Sketches(
            entries=entries,
            owners=np.array([e.owner for e in entries], dtype=object),
            offsets=offsets,
            bases=bases,
            offset_norms=offsets.square().sum(dim=1),
            offset_coords=torch.einsum("nrd,nd->nr", bases, offsets),
        )
        return self.sketches_

    def _sketch(self, bank: FilterBank, models: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if not models:
            return torch.empty(0), torch.empty(0)
        samples = reconstructions(bank, self.reference_, models)
        for _ in range(self.iterations - 1):
            samples = reconstructions(bank, samples, models)
        return sketch(samples, rank=self.rank)

    # -- checks ---------------------------------------------------------------------------
    def ranks(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: str | Sequence[str]
    ) -> tuple[torch.Tensor, list[int]]:
        """(B, N) ranking key of every model for every input (lower = kept first), and the
        positions of the uploaders' own models (one uploader per input, or one for all)."""
        uploaders = uploaders_per_input(uploaders, len(x))
        sketches = self.update(bank)
        proxy = sketches.distances(x).to(torch.float64).clamp_min(_TINY)
        own = np.flatnonzero(np.isin(sketches.owners, list(set(uploaders)))).tolist()
        snap = bank.snapshot()
        mu, sigma = snap.error_mean[None, :], snap.error_std[None, :]
        high = (mu + guard.alpha * sigma).expand_as(proxy)
        rule = POLICIES[guard.policy]
        if self.ranking == "ratio":
            return proxy / high, own
        # "decision": the distances at which model n's claim would decide the input
        low = torch.full_like(proxy, _TINY) if rule.one_sided else mu - guard.alpha * sigma
        if rule.vouch != "never" and guard.breadth_ratio is None and own:
            high = torch.minimum(high, self._voucher_limit(bank, guard, x, uploaders, own))
        log_p, log_low, log_high = proxy.log(), low.clamp_min(_TINY).log(), high.log()
        outside = torch.maximum(log_low - log_p, log_p - log_high).clamp_min(0)
        return outside + 1e-3 * (log_p - log_high), own

    @staticmethod
    def _voucher_limit(
        bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: Sequence[str], own: list[int]
    ) -> torch.Tensor:
        """(B, 1): a claimant farther than this cannot outweigh the uploader's own models."""
        scores = score_models(bank, x, own)
        rule = POLICIES[guard.policy]
        d = scores.distances.to(torch.float64)
        owned = torch.tensor(np.array(scores.owners)[None, :] == np.array(uploaders)[:, None])
        voucher = owned & torch.isfinite(d)
        if rule.vouch_needs_claim:
            voucher &= d <= scores.error_mean + guard.alpha * scores.error_std
        best = torch.where(voucher, d, torch.tensor(math.inf, dtype=torch.float64))
        factor = guard.margin if rule.vouch == "margin" else 1.0
        return (best.min(dim=1, keepdim=True).values * factor).clamp_min(_TINY)

    def candidates(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: str | Sequence[str]
    ) -> list[int]:
        """Positions of the models to score exactly for the batch: the union over its inputs of
        the ``keep`` fraction ranked first, plus the uploaders' own models, in bank order."""
        keys, own = self.ranks(bank, guard, x, uploaders)
        n_models = keys.shape[1]
        count = max(1, min(n_models, math.ceil(self.keep * n_models)))
        kept = keys.topk(count, dim=1, largest=False).indices.flatten().numpy()
        return np.union1d(kept, np.array(own, dtype=np.int64)).tolist()

    def score(
        self,
        bank: FilterBank,
        guard: Guard,
        x: np.ndarray | torch.Tensor,
        uploaders: str | Sequence[str],
    ) -> BankScores:
        """Exact scores of ``x`` under the first stage's survivors only (a :class:`BankScores`
        over those columns; pass it to ``guard.decide`` with the same uploaders)."""
        x = as_feature_matrix(x, input_dim=bank.input_dim, what="features")
        if not len(bank):
            raise InvalidInputError(
                "The bank holds no model yet; add users' autoencoders with bank.add(...)."
            )
        return score_models(bank, x, self.candidates(bank, guard, x, uploaders))

    def decide(
        self,
        bank: FilterBank,
        guard: Guard,
        x: np.ndarray | torch.Tensor,
        uploaders: str | Sequence[str],
    ) -> list[Decision]:
        """``guard``'s decisions on ``x`` scored by the first stage's survivors only."""
        return guard.decide(self.score(bank, guard, x, uploaders), uploaders)
