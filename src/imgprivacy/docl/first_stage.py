"""A cheap first stage for a check: keep the few models that could decide it, score only those.

The Guard (:mod:`imgprivacy.docl.guard`) decides an input from the *nearest claimant* (another
user's model whose interval holds it) and the uploader's own models (which may vouch). Every
other model is irrelevant. Removing models from a check can only remove claims and push the
nearest claimant farther, so a check restricted to a subset of the models can turn a "block" of
the full bank into a "share", never the reverse: a first stage is judged by its *recall*, the
fraction of the full bank's blocks it keeps.

The stage here is a **sketch** of each model (:mod:`imgprivacy.docl.first_stage_sketch`),
computed from its weights alone plus a public reference set the operator chooses (images of the
domain the users' data comes from, held out of it): the mean ``c_n`` of the model's
reconstructions of the reference images and, with ``rank=r``, their principal directions. The
sketch distance of an input is its squared distance to that affine subspace: ``(r + 1) * D``
multiply-adds per model and input. With ``calibration="affine"`` (the default) each model's exact
distances to the reference images give a per-model map from sketch to exact distance in log
space and the spread of its residuals.

Ranking: the uploader's own models are scored exactly first; they give, per input, the window of
distances ``[lo_n, hi_n]`` at which model n's claim would decide it (``lo_n = mu_n -
alpha*sigma_n`` under the two-sided policies, ``hi_n`` the interval's top capped at ``margin``
(or 1) times the voucher's distance under the policies whose own models vouch).
``ranking="probability"`` (the default) ranks models by the probability that their exact
distance falls in that window, the calibrated estimate taken as Gaussian in log-distance with
the model's spread; ``"decision"`` by how far the estimate lies outside the window (in units of
the spread when calibrated); ``"ratio"`` by the estimate over ``mu_n + alpha*sigma_n`` alone.
The ``keep`` fraction ranked first for each input, plus the uploader's models, are its
*survivors*; each input is scored exactly under its own survivors only, by a gather over the
(input, model) pairs (:mod:`imgprivacy.docl.first_stage_kernel`), and the Guard decides on those.

What the sketch and its calibration store about a user is a function of their uploaded weights
and public images, so it reveals nothing that the weights do not. The ranking is a proxy, not a
bound: a first stage can miss the claimant that the full bank would find. ``docs/scaling.md``
gives the measured recall (below 99.9% at 5% of the models); nothing uses this module unless
called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.bank import BankEntry, BankScores, FilterBank, snapshot_scores
from imgprivacy.docl.bank_stack import LayerStack
from imgprivacy.docl.claims import POLICIES
from imgprivacy.docl.first_stage_kernel import UNSCORED, PairKernel
from imgprivacy.docl.first_stage_sketch import (
    Sketches,
    build_sketches,
    claim_log_probability,
    fit_calibration,
    reconstructions,
    sketch,
)
from imgprivacy.docl.guard import Decision, Guard, uploaders_per_input
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError, NotFittedError

RANKINGS = ("probability", "decision", "ratio")
CALIBRATIONS = ("affine", "none")
_TINY = 1e-12  # floor of distances before taking logs


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


def score_models(
    bank: FilterBank, x: torch.Tensor, models: Sequence[int], *, snap=None
) -> BankScores:
    """Exact scores of features ``x`` (B, D) under the models at positions ``models`` of
    ``bank`` only (columns in the order of ``models``), with the bank's own kernel; positions
    of ``snap`` when given (a ``bank.snapshot()``), else of the bank's current snapshot."""
    snap = bank.snapshot() if snap is None else snap
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
        ``"probability"`` (that the model's claim decides the check), ``"decision"`` (how far
        outside the window where it would decide) or ``"ratio"``; module docstring.
    iterations
        Times the reference set is passed through each model before it is summarised (each pass
        moves the samples closer to what the model reconstructs well).
    calibration
        ``"affine"``: map each model's sketch distance onto its exact distance by a per-model
        affine map in log space fitted on the reference set, with the spread of its residuals
        (``"probability"`` needs it); ``"none"``: raw sketch distances.
    calibration_size
        Fit each model's map on the ``calibration_size`` reference images it reconstructs best
        only (None: on all of them); 400 of 1,000 was the best single value on validation.

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
        self,
        *,
        rank: int = 0,
        keep: float = 0.05,
        ranking: str = "probability",
        iterations: int = 1,
        calibration: str = "affine",
        calibration_size: int | None = 400,
    ):
        self.rank = rank
        self.keep = keep
        self.ranking = ranking
        self.iterations = iterations
        self.calibration = calibration
        self.calibration_size = calibration_size

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
        if self.calibration not in CALIBRATIONS:
            problems.append(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}"
            )
        size = self.calibration_size
        if size is not None and (not isinstance(size, int) or size < 3):
            problems.append(f"calibration_size must be None or an integer >= 3, got {size!r}")
        if self.ranking == "probability" and self.calibration == "none":
            problems.append(
                "ranking='probability' needs calibration='affine' (the calibration's spread "
                "gives the probabilities); pass calibration='affine' or another ranking"
            )
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
        self.kernel_ = PairKernel()
        self.update(bank)
        return self

    def update(self, bank: FilterBank, snap=None) -> Sketches:
        """Sketch the models added or replaced since the last call; drop removed ones (those of
        ``snap`` when given, a ``bank.snapshot()``: every step of a check reads one snapshot)."""
        if not hasattr(self, "reference_"):
            raise NotFittedError(
                "This FirstStage is not fitted yet: call fit(bank, reference=...)."
            )
        snap = bank.snapshot() if snap is None else snap
        entries = snap.entries
        old = self.sketches_
        known = {} if old is None else {id(e): n for n, e in enumerate(old.entries)}
        unchanged = old is not None and len(old.entries) == len(entries)
        if unchanged and all(known.get(id(e)) == n for n, e in enumerate(entries)):
            return old
        missing = [n for n, e in enumerate(entries) if id(e) not in known]
        new = self._sketch(bank, missing, snap)
        kept = [(n, known[id(e)]) for n, e in enumerate(entries) if id(e) in known]
        old_parts = () if old is None else (old.offsets, old.bases)
        if old is not None and old.slope is not None:
            old_parts += (old.intercept, old.slope, old.spread)
        parts = []
        for k, fresh in enumerate(new):
            merged = torch.empty(len(entries), *fresh.shape[1:], dtype=fresh.dtype)
            if kept:
                to, source = (torch.tensor(v) for v in zip(*kept))
                merged[to] = old_parts[k][source]
            if missing:
                merged[missing] = fresh
            parts.append(merged)
        calibration = tuple(parts[2:]) if len(parts) == 5 else None
        self.sketches_ = build_sketches(entries, parts[0], parts[1], calibration)
        return self.sketches_

    def _sketch(self, bank: FilterBank, models: list[int], snap) -> tuple[torch.Tensor, ...]:
        """(offsets, bases) and, when calibrated, (intercept, slope, spread) of ``models``."""
        dim, rank = bank.input_dim, self.rank
        if not models:
            empty = (torch.empty(0, dim), torch.empty(0, rank, dim))
            extra = (torch.empty(0, dtype=torch.float64),) * 3
            return empty + (extra if self.calibration == "affine" else ())
        samples = reconstructions(snap, self.reference_, models)
        for _ in range(self.iterations - 1):
            samples = reconstructions(snap, samples, models)
        offsets, bases = sketch(samples, rank=rank)
        if self.calibration == "none":
            return offsets, bases
        own = build_sketches(tuple(snap.entries[n] for n in models), offsets, bases)
        exact = score_models(bank, self.reference_, models, snap=snap).distances
        fitted = fit_calibration(
            own.distances(self.reference_), exact, nearest=self.calibration_size
        )
        return (offsets, bases, *fitted)

    # -- checks ---------------------------------------------------------------------------
    def ranks(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: str | Sequence[str]
    ) -> tuple[torch.Tensor, list[int]]:
        """(B, N) ranking key of every model for every input (lower = kept first), and the
        positions of the uploaders' own models (one uploader per input, or one for all)."""
        x = as_feature_matrix(x, input_dim=bank.input_dim, what="features")
        keys, own, _ = self._ranks(bank, guard, x, uploaders, bank.snapshot())
        return keys, own

    def _ranks(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders, snap
    ) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """Keys, own positions, and the (B, N) exact distances of each input's own models
        (:data:`UNSCORED` elsewhere) when the ranking scored them, else None."""
        uploaders = uploaders_per_input(uploaders, len(x))
        sketches = self.update(bank, snap)
        log_estimate = sketches.log_estimates(x)
        own = np.flatnonzero(np.isin(sketches.owners, list(set(uploaders)))).tolist()
        mu, sigma = snap.error_mean[None, :], snap.error_std[None, :]
        high = (mu + guard.alpha * sigma).expand_as(log_estimate).to(torch.float64)
        rule = POLICIES[guard.policy]
        if self.ranking == "ratio":
            return log_estimate - high.clamp_min(_TINY).log(), own, None
        # "decision": the distances at which model n's claim would decide the input
        low = torch.full_like(high, _TINY) if rule.one_sided else mu - guard.alpha * sigma
        own_distances = None
        if rule.vouch != "never" and guard.breadth_ratio is None and own:
            limit, own_distances = self._voucher_limit(snap, guard, x, uploaders, own)
            high = torch.minimum(high, limit)
        log_low, log_high = low.clamp_min(_TINY).log(), high.clamp_min(_TINY).log()
        if self.ranking == "probability":
            return (
                -claim_log_probability(log_estimate, log_low, log_high, sketches.spread),
                own,
                own_distances,
            )
        outside = torch.maximum(log_low - log_estimate, log_estimate - log_high).clamp_min(0)
        if sketches.spread is not None:
            outside = outside / sketches.spread
        return outside + 1e-3 * (log_estimate - log_high), own, own_distances

    def _voucher_limit(
        self, snap, guard: Guard, x: torch.Tensor, uploaders: Sequence[str], own: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1): a claimant farther than this cannot outweigh the uploader's own models; and
        the (B, N) exact distances of each input's own models (:data:`UNSCORED` elsewhere)."""
        owned = torch.zeros(len(x), len(snap.entries), dtype=torch.bool)
        owners = np.array([e.owner for e in snap.entries], dtype=object)
        owned[:, own] = torch.tensor(owners[own][None, :] == np.array(uploaders)[:, None])
        d = self.kernel_(snap, x, owned)
        rule = POLICIES[guard.policy]
        d64 = d.to(torch.float64)
        voucher = owned & torch.isfinite(d64)
        if rule.vouch_needs_claim:
            voucher &= d64 <= snap.error_mean + guard.alpha * snap.error_std
        best = torch.where(voucher, d64, torch.tensor(math.inf, dtype=torch.float64))
        factor = guard.margin if rule.vouch == "margin" else 1.0
        return (best.min(dim=1, keepdim=True).values * factor).clamp_min(_TINY), d

    def survivors(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: str | Sequence[str]
    ) -> torch.Tensor:
        """(B, N) bool: the models scored exactly for each input (the ``keep`` fraction ranked
        first for it, plus its uploader's own models)."""
        return self._survivors(bank, guard, x, uploaders, bank.snapshot())[0]

    def _survivors(
        self, bank, guard, x, uploaders, snap
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = as_feature_matrix(x, input_dim=bank.input_dim, what="features")
        if not len(snap.entries):
            raise InvalidInputError(
                "The bank holds no model yet; add users' autoencoders with bank.add(...)."
            )
        keys, own, own_distances = self._ranks(bank, guard, x, uploaders, snap)
        n_models = keys.shape[1]
        count = max(1, min(n_models, math.ceil(self.keep * n_models)))
        mask = torch.zeros(keys.shape, dtype=torch.bool)
        mask.scatter_(1, keys.topk(count, dim=1, largest=False).indices, True)
        owners = np.array([e.owner for e in snap.entries], dtype=object)
        mask |= torch.tensor(
            owners[None, :] == np.array(uploaders_per_input(uploaders, len(x)))[:, None]
        )
        return mask, own_distances

    def candidates(
        self, bank: FilterBank, guard: Guard, x: torch.Tensor, uploaders: str | Sequence[str]
    ) -> list[int]:
        """Positions of the models scored for at least one input of the batch (the union of
        :meth:`survivors` over its inputs), in bank order."""
        return (
            torch.nonzero(self.survivors(bank, guard, x, uploaders).any(dim=0)).flatten().tolist()
        )

    def score(
        self,
        bank: FilterBank,
        guard: Guard,
        x: np.ndarray | torch.Tensor,
        uploaders: str | Sequence[str],
    ) -> BankScores:
        """Scores of ``x`` over every model of ``bank``: exact for each input's survivors
        (:meth:`survivors`, each input scored under its own survivors only), and
        :data:`~imgprivacy.docl.first_stage_kernel.UNSCORED` (beyond every interval: no claim,
        no vouching) for the others. Pass it to ``guard.decide`` with the same uploaders."""
        snap = bank.snapshot()  # one membership for the whole check
        mask, own_distances = self._survivors(bank, guard, x, uploaders, snap)
        x = as_feature_matrix(x, input_dim=bank.input_dim, what="features")
        if own_distances is None:
            distances = self.kernel_(snap, x, mask)
        else:  # the own models were scored by the ranking: score only the rest
            scored = own_distances < UNSCORED
            distances = self.kernel_(snap, x, mask & ~scored)
            distances = torch.where(scored, own_distances, distances)
        return snapshot_scores(snap, distances)

    def decide(
        self,
        bank: FilterBank,
        guard: Guard,
        x: np.ndarray | torch.Tensor,
        uploaders: str | Sequence[str],
    ) -> list[Decision]:
        """``guard``'s decisions on ``x`` scored by the first stage's survivors only."""
        return guard.decide(self.score(bank, guard, x, uploaders), uploaders)
