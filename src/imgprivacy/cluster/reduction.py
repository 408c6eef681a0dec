"""The exact reduction of a sharded bank: each shard keeps the few columns that can decide.

The Guard (:mod:`imgprivacy.docl.guard`) decides input b from three minima over the models:

- the nearest *claimant* (another user's model whose interval holds the input, not broken):
  its distance, and which model it is (the operator's log names it);
- the nearest *voucher* among the uploader's own models (any own model with a finite distance
  under ``nearer``; only an own model whose interval holds the input under ``margin``);
- whether any claimant exists at all (true exactly when the nearest claimant exists).

A minimum over all models equals the minimum over any subset that holds the argmin. So each
shard scores its own models and keeps, for every input, the columns that reach those minima in
that shard (plus the nearest model, so a non-empty shard always answers with a column). The
union of the shards' columns, with their true distances for every input, holds every global
argmin; :meth:`Guard.decide` on that union gives the decisions of the whole bank, bit for bit
(a tie between two shards' claimants, at exactly equal distances, may name the other model).
A shard sends at most four columns per input, however many models it holds.

With the Guard's breadth gate an own model may vouch only when it is at most ``breadth_ratio``
times broader than the *narrowest* claimant of the whole bank, which no shard knows alone. So a
gated shard also keeps, for every input, its narrowest claimant (by breadth; unknown counts as 0,
as in the Guard) and every own model that could vouch (inside its interval where the policy
needs it, finite, of known breadth): the union then holds the bank's narrowest claimant and the
nearest own model that passes the gate, whatever it is. That is at most the uploader's own model
count more columns per input.

With the Guard's seniority an own model vouches against every claimant admitted after it, so
what decides is the nearest claimant among those admitted no later than the uploader's oldest own
model that holds the input, for a threshold no shard knows alone. A shard with seniority keeps,
for every input, its oldest own model whose interval holds the input, and its claimants that are
nearer than every claimant admitted before them (the "staircase" of claimants by admission and
distance): the nearest claimant admitted up to any threshold is on it. The staircase is as long
as the input has claimants of distinct admissions that keep getting nearer; usually a few.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from imgprivacy.docl import BankScores, Guard
from imgprivacy.docl.claims import POLICIES, intervals
from imgprivacy.errors import InvalidInputError


def ownership(owners: Sequence[str], uploaders: Sequence[str]) -> torch.Tensor:
    """(B, N) bool: True where model n belongs to the uploader of input b."""
    codes = {name: i for i, name in enumerate(dict.fromkeys([*owners, *uploaders]))}
    owner_codes = torch.tensor([codes[o] for o in owners], dtype=torch.long)
    uploader_codes = torch.tensor([codes[u] for u in uploaders], dtype=torch.long)
    return uploader_codes[:, None] == owner_codes[None, :]


def deciding_columns(scores: BankScores, uploaders: Sequence[str], guard: Guard) -> BankScores:
    """The columns of one shard's ``scores`` that can decide an input (see the module docstring).

    ``guard.claims`` runs on the whole shard, so the shard's Guard counts broken models exactly.
    Returns ``scores`` restricted to those columns, in model-id order.
    """
    if not scores.model_ids:
        return scores
    claims = guard.claims(scores, list(uploaders))
    own = ownership(scores.owners, list(uploaders))
    rule = POLICIES[guard.policy]
    d, inside, _ = intervals(scores, alpha=guard.alpha, one_sided=rule.one_sided)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    # The nearest own model whose interval holds the input (the voucher of a policy that needs a
    # claim to vouch), and the nearest own model of all.
    own_inside, own_inside_index = torch.where(own & inside, d, inf).min(dim=1)
    own_best, own_index = torch.where(own, d, inf).min(dim=1)
    picked = [
        scores.nearest,
        claims.culprit[torch.isfinite(claims.claimant_distance)],
        own_inside_index[torch.isfinite(own_inside)],
        own_index[torch.isfinite(own_best)],
    ]
    if guard.breadth_ratio is not None:
        picked += _gate_columns(scores, d, inside, own, guard)
    if guard.seniority and scores.admitted is not None:
        picked += _seniority_columns(d, inside, own, scores.admitted)
    columns = torch.unique(torch.cat(picked)).tolist()
    columns.sort(key=lambda n: scores.model_ids[n])
    return scores.select(models=columns)


def _gate_columns(
    scores: BankScores, d: torch.Tensor, inside: torch.Tensor, own: torch.Tensor, guard: Guard
) -> list[torch.Tensor]:
    """The narrowest claimant of each input, and every own model that could vouch for it
    (``d`` and ``inside`` as :func:`~imgprivacy.docl.claims.intervals` gives them)."""
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    finite = torch.isfinite(d)  # a broken model's distance is +inf there
    breadth = guard.breadth_of(scores.model_ids)
    known = torch.isfinite(breadth)
    key = torch.where(known, breadth, 0.0)[None, :]
    narrowest, narrow_index = torch.where(inside & ~own, key, inf).min(dim=1)
    could_vouch = own & finite & known[None, :]
    if POLICIES[guard.policy].vouch_needs_claim:
        could_vouch &= inside
    return [narrow_index[torch.isfinite(narrowest)], could_vouch.nonzero()[:, 1]]


def _seniority_columns(
    d: torch.Tensor, inside: torch.Tensor, own: torch.Tensor, admitted: torch.Tensor
) -> list[torch.Tensor]:
    """The oldest own model holding each input, and each input's staircase of claimants."""
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    admitted = admitted.to(torch.float64)
    oldest, oldest_index = torch.where(own & inside, admitted[None, :], inf).min(dim=1)
    order = torch.argsort(admitted, stable=True)
    claimant = torch.where(inside & ~own, d, inf)[:, order]
    before = torch.cummin(claimant, dim=1).values  # nearest claimant up to each position
    before = torch.cat([torch.full_like(before[:, :1], float("inf")), before[:, :-1]], dim=1)
    step = (claimant < before).nonzero()[:, 1]  # nearer than every claimant sorted before it
    return [oldest_index[torch.isfinite(oldest)], order[step]]


def merge_columns(parts: Sequence[BankScores]) -> BankScores:
    """One :class:`BankScores` holding every shard's deciding columns, in model-id order."""
    parts = [p for p in parts if p.model_ids]
    if not parts:
        raise InvalidInputError(
            "The sharded bank holds no model yet; add users' autoencoders before checking."
        )
    merged = BankScores(
        distances=torch.cat([p.distances for p in parts], dim=1),
        error_mean=torch.cat([p.error_mean for p in parts]),
        error_std=torch.cat([p.error_std for p in parts]),
        model_ids=tuple(m for p in parts for m in p.model_ids),
        owners=tuple(o for p in parts for o in p.owners),
        admitted=(
            torch.cat([p.admitted for p in parts])
            if all(p.admitted is not None for p in parts)
            else None
        ),
    )
    order = sorted(range(len(merged.model_ids)), key=lambda n: merged.model_ids[n])
    return merged.select(models=order)
