"""The Guard: share or block an upload given its distances to every user's autoencoder.

Each model n has the privacy interval ``[mu_n - alpha*sigma_n, mu_n + alpha*sigma_n]`` of the
paper (sec. 2.2); an input whose distance to model n falls inside it "looks like" that model
owner's private data. Policies differ in which models may claim an input:

``paper``
    The paper's rule: only the nearest model overall (eq. 8) is considered; block when it belongs
    to someone other than the uploader and the distance is inside its interval. An adversary who
    trains their own model on a victim's images becomes the nearest model for those images and
    shares them (paper Fig. 4).
``any-other``
    Block when the input is inside the interval of ANY model not owned by the uploader. Robust to
    that attack (the uploader's models never exempt anything) but it blocks owners whose images
    happen to fall inside unrelated intervals.
``exclude-uploader``
    The paper's rule with the uploader's own models removed from the argmin: the nearest model
    among *other* users decides. The uploader's models can no longer shadow a victim's model, and
    only the one best-matching other model can claim the image, which keeps owners' own uploads
    flowing.
``margin``
    The nearest model among other users' models claims the image when its distance is at most
    ``mu + alpha*sigma`` (one-sided: an image reconstructed even better than the owner's typical
    training image is no less theirs), unless the uploader's own model vouches for it by
    reconstructing it ``margin`` times better (distance ``margin`` times smaller) than the
    claimant. Honest owners' images are usually explained far better by their own model; an
    adversary who adds a victim's images to their training set rarely beats the victim's own,
    specialised model by that factor. A huge margin approaches ``exclude-uploader``.

(A "normalised" rule, blocking when ``|d - mu| / sigma <= alpha`` for the best other model, is the
same set as ``any-other``: an input is inside some interval exactly when its smallest ``|z|`` is.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from imgprivacy.docl.bank import BankScores
from imgprivacy.errors import InvalidInputError, UnknownNameError

ALPHA_RANGE = (0.5, 4.0)  # the paper uses [1, 2]; a wider range is allowed for exploration


@dataclass(frozen=True)
class Decision:
    """The Guard's verdict on one upload.

    ``matched_model`` and ``matched_owner`` name the model whose interval caused a block; they are
    for the operator's logs and must not be shown to the uploader.
    """

    share: bool
    policy: str
    alpha: float
    reason: str
    matched_model: str | None = None
    matched_owner: str | None = None
    distance: float | None = None

    @property
    def action(self) -> str:
        return "share" if self.share else "block"


def _intervals(scores: BankScores, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    d = scores.distances.to(torch.float64)
    lower = scores.error_mean - alpha * scores.error_std
    upper = scores.error_mean + alpha * scores.error_std
    return (d >= lower) & (d <= upper), d


def _nearest_inside(
    inside: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block where the allowed model minimising ``key`` is inside its interval."""
    masked = key.masked_fill(~allowed, float("inf"))
    culprit = masked.argmin(dim=1)
    has_candidate = allowed.any(dim=1)
    blocked = inside.gather(1, culprit[:, None]).squeeze(1) & has_candidate
    return blocked, culprit


def _paper(scores: BankScores, own: torch.Tensor, alpha: float, margin: float):
    inside, d = _intervals(scores, alpha)
    nearest = d.argmin(dim=1)
    rows = torch.arange(len(d))
    blocked = inside[rows, nearest] & ~own[rows, nearest]
    return blocked, nearest


def _any_other(scores: BankScores, own: torch.Tensor, alpha: float, margin: float):
    inside, d = _intervals(scores, alpha)
    claims = inside & ~own
    # Report the closest claiming model as the culprit.
    culprit = d.masked_fill(~claims, float("inf")).argmin(dim=1)
    return claims.any(dim=1), culprit


def _exclude_uploader(scores: BankScores, own: torch.Tensor, alpha: float, margin: float):
    inside, d = _intervals(scores, alpha)
    return _nearest_inside(inside, d, ~own)


def _margin(scores: BankScores, own: torch.Tensor, alpha: float, margin: float):
    d = scores.distances.to(torch.float64)
    below_upper = d <= scores.error_mean + alpha * scores.error_std
    claimed, culprit = _nearest_inside(below_upper, d, ~own)
    own_best = d.masked_fill(~own, float("inf")).min(dim=1).values
    claimant = d.gather(1, culprit[:, None]).squeeze(1)
    vouched = own_best * margin < claimant
    return claimed & ~vouched, culprit


POLICIES: dict[str, Callable] = {
    "paper": _paper,
    "any-other": _any_other,
    "exclude-uploader": _exclude_uploader,
    "margin": _margin,
}
DEFAULT_MARGIN = 1.5  # chosen on MNIST: see the README's Guard table


class Guard:
    """Share/block decisions for uploads scored by a :class:`~imgprivacy.docl.FilterBank`.

    Parameters
    ----------
    policy
        A name in :data:`POLICIES` (see the module docstring).
    alpha
        Width of the privacy interval in standard deviations; the paper uses [1, 2].
    margin
        For the ``margin`` policy: how many times closer the uploader's own model must be than
        the claiming model to vouch for an image (>= 1).
    """

    def __init__(
        self, *, policy: str = "paper", alpha: float = 1.0, margin: float = DEFAULT_MARGIN
    ):
        if policy not in POLICIES:
            raise UnknownNameError(
                f"Unknown guard policy {policy!r}. Valid policies: {', '.join(POLICIES)}."
            )
        low, high = ALPHA_RANGE
        if not isinstance(alpha, (int, float)) or not low <= alpha <= high:
            raise InvalidInputError(
                f"Expected alpha in [{low}, {high}] (the paper uses [1, 2]), got {alpha!r}."
            )
        if not isinstance(margin, (int, float)) or not margin >= 1:
            raise InvalidInputError(f"Expected margin >= 1, got {margin!r}.")
        self.policy = policy
        self.alpha = float(alpha)
        self.margin = float(margin)

    def block_mask(
        self, scores: BankScores, uploaders: str | Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised decisions: (blocked (B,) bool, culprit model index (B,))."""
        batch = scores.distances.shape[0]
        if isinstance(uploaders, str):
            uploaders = [uploaders] * batch
        if len(uploaders) != batch:
            raise InvalidInputError(
                f"Expected one uploader per scored input ({batch}), got {len(uploaders)}."
            )
        own = _ownership(scores.owners, uploaders)
        return POLICIES[self.policy](scores, own, self.alpha, self.margin)

    def decide(self, scores: BankScores, uploaders: str | Sequence[str]) -> list[Decision]:
        """One :class:`Decision` per scored input, with the reason."""
        blocked, culprit = self.block_mask(scores, uploaders)
        decisions = []
        for row, (is_blocked, index) in enumerate(zip(blocked.tolist(), culprit.tolist())):
            distance = float(scores.distances[row, index])
            if is_blocked:
                mu = float(scores.error_mean[index])
                sigma = float(scores.error_std[index])
                low, high = mu - self.alpha * sigma, mu + self.alpha * sigma
                reason = (
                    f"distance {distance:.4g} lies inside the privacy interval "
                    f"[{low:.4g}, {high:.4g}] of a model owned by another user"
                    if self.policy != "margin"
                    else f"distance {distance:.4g} is within mu + alpha*sigma = {high:.4g} of a "
                    "model owned by another user, and the uploader's own models do not explain "
                    f"it {self.margin:g} times better"
                )
                decisions.append(
                    Decision(
                        False,
                        self.policy,
                        self.alpha,
                        reason,
                        scores.model_ids[index],
                        scores.owners[index],
                        distance,
                    )
                )
            else:
                reason = (
                    "no other user's model claims this image inside its privacy interval"
                    if self.policy != "margin"
                    else "no other user's model claims this image, or the uploader's own model "
                    f"explains it more than {self.margin:g} times better"
                )
                decisions.append(Decision(True, self.policy, self.alpha, reason))
        return decisions


def _ownership(owners: Sequence[str], uploaders: Sequence[str]) -> torch.Tensor:
    """(B, N) bool: True where model n belongs to the uploader of input b."""
    names = {name: i for i, name in enumerate(dict.fromkeys([*owners, *uploaders]))}
    owner_codes = torch.tensor([names[o] for o in owners])
    uploader_codes = torch.tensor([names[u] for u in uploaders])
    return uploader_codes[:, None] == owner_codes[None, :]
