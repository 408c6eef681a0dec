"""How the Guard reads a score matrix: each policy's rule, the privacy intervals, the claims.

The policies, vouching, the breadth gate and seniority are described in
:mod:`imgprivacy.docl.guard`; this module is their vectorised reading, which the Guard and the
sharded reduction (:mod:`imgprivacy.cluster.reduction`) share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imgprivacy.docl.bank import BankScores
from imgprivacy.errors import UnknownNameError


@dataclass(frozen=True, kw_only=True)
class PolicyRule:
    """How a policy reads the claims (see the module docstring)."""

    one_sided: bool  # a claim is d <= mu + alpha*sigma (True) or mu - alpha*sigma <= d <= that
    vouch: str  # the uploader's own models: "never" vouch, vouch when "nearer", or by "margin"
    # Only an own model whose interval holds the image may vouch: admission bounds what a model
    # claims (the probe check), so it then bounds what it can vouch for too.
    vouch_needs_claim: bool = False

    def __post_init__(self) -> None:
        if self.vouch not in VOUCH_RULES:
            raise UnknownNameError(
                f"Unknown vouch rule {self.vouch!r}. Valid rules: {', '.join(VOUCH_RULES)}."
            )


VOUCH_RULES = ("never", "nearer", "margin")

POLICIES: dict[str, PolicyRule] = {
    "paper": PolicyRule(one_sided=False, vouch="nearer"),
    "any-other": PolicyRule(one_sided=False, vouch="never"),
    "exclude-uploader": PolicyRule(one_sided=False, vouch="never"),
    "margin": PolicyRule(one_sided=True, vouch="margin", vouch_needs_claim=True),
}


def intervals(
    scores: BankScores, *, alpha: float, one_sided: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(distances (B, N) in float64 with the broken ones at +inf, (B, N) True where model n's
    interval at ``alpha`` holds input b, (B, N) True where the distance or the model's
    statistics are not finite: that model is broken for that input and holds nothing)."""
    d = scores.distances.to(torch.float64)
    mu = scores.error_mean.to(torch.float64)
    sigma = scores.error_std.to(torch.float64)
    broken = ~torch.isfinite(d) | ~torch.isfinite(mu + sigma)[None, :]
    d = torch.where(broken, torch.tensor(float("inf"), dtype=torch.float64), d)
    inside = d <= mu + alpha * sigma
    if not one_sided:
        inside &= d >= mu - alpha * sigma
    return d, inside, broken


@dataclass(frozen=True, kw_only=True)
class Claims:
    """The vectorised reading of a batch: who claims what, and what the Guard concluded."""

    blocked: torch.Tensor  # (B,) bool
    culprit: torch.Tensor  # (B,) index of the nearest claiming model (meaningful where blocked)
    claimant_distance: torch.Tensor  # (B,) its distance, +inf where nothing claims
    broken: torch.Tensor  # (B, N) bool: non-finite distances


def read_claims(
    scores: BankScores,
    own: torch.Tensor,
    *,
    rule: PolicyRule,
    alpha: float,
    margin: float,
    breadth: torch.Tensor | None = None,
    breadth_ratio: float | None = None,
    seniority: bool = False,
) -> Claims:
    """Apply ``rule`` to ``scores``; ``own`` (B, N) is True where model n is the uploader's.

    ``breadth`` (N,) is each model's breadth (NaN where unknown), used with ``breadth_ratio``.
    With ``seniority`` the uploader's own models admitted before a claimant vouch against it
    (``scores.admitted``; see the module docstring).
    """
    d, inside, broken = intervals(scores, alpha=alpha, one_sided=rule.one_sided)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    claims = inside & ~own & ~broken
    factor = {"never": None, "nearer": 1.0, "margin": margin}[rule.vouch]
    if factor is not None:
        voucher = own & inside if rule.vouch_needs_claim else own
        if breadth_ratio is not None:
            voucher &= _passes_gate(claims, breadth, breadth_ratio)
        if seniority and scores.admitted is not None:
            claims &= ~_admitted_after_oldest(voucher & inside, scores.admitted)
        own_best = torch.where(voucher, d, inf).min(dim=1).values
    claimant_distance, culprit = torch.where(claims, d, inf).min(dim=1)
    blocked = claims.any(dim=1)
    if factor is not None:
        blocked &= ~(own_best * factor < claimant_distance)
    return Claims(
        blocked=blocked, culprit=culprit, claimant_distance=claimant_distance, broken=broken
    )


def _passes_gate(claims: torch.Tensor, breadth: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, N): model n is at most ``ratio`` times broader than input b's narrowest claimant."""
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    known = torch.isfinite(breadth)
    narrowest = torch.where(claims, torch.where(known, breadth, 0.0)[None, :], inf)
    voucher_breadth = torch.where(known, breadth, inf)[None, :]
    return voucher_breadth <= ratio * narrowest.min(dim=1, keepdim=True).values


def _admitted_after_oldest(senior_voucher: torch.Tensor, admitted: torch.Tensor) -> torch.Tensor:
    """(B, N): model n was admitted strictly after input b's oldest own model whose interval
    holds it (the claims that model's seniority answers)."""
    admitted = admitted.to(torch.float64)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    oldest = torch.where(senior_voucher, admitted[None, :], inf).min(dim=1, keepdim=True).values
    return admitted[None, :] > oldest
