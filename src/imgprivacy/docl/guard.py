"""The Guard: share or block an upload given its distances to every user's autoencoder.

Each model n has the privacy interval ``[mu_n - alpha*sigma_n, mu_n + alpha*sigma_n]`` of the
paper (sec. 2.2); an input whose distance to model n falls inside it "looks like" that model
owner's private data: model n *claims* the input. Every policy decides from the claims of other
users' models, never from the nearest model alone: a model that claims nothing cannot hide the
claim of another (an attacker's "shadow" model, nearest to everything with an interval that holds
nothing, used to turn every block into a share). The uploader's own models never claim against
their owner; depending on the policy they may *vouch* for an image, i.e. exempt it from the claims,
by reconstructing it better than every claimant:

``paper``
    The paper's rule (eq. 8) read through the claims: block when another user's model claims the
    input inside its interval, unless one of the uploader's own models is nearer than every
    claimant (the nearest model wins, as in the paper). An adversary who trains their own model on
    a victim's images becomes the nearest model for those images and shares them (paper Fig. 4).
``any-other``
    Block when the input is inside the interval of ANY model not owned by the uploader. Robust to
    that attack (the uploader's models never vouch) but it blocks owners whose images happen to
    fall inside unrelated intervals.
``exclude-uploader``
    The paper's rule with the uploader's own models left out: another user's claim blocks, the
    uploader's models never vouch. Once claims rather than the nearest model decide, this is the
    same decision as ``any-other`` (the nearest claimant is reported); the name is kept for
    configurations that use it.
``margin``
    Another user's model claims the input when its distance is at most ``mu + alpha*sigma``
    (one-sided: an image reconstructed even better than the owner's typical training image is no
    less theirs); the uploader's own model vouches for it when its own interval holds the image
    and it reconstructs it ``margin`` times better (distance ``margin`` times smaller) than every
    claimant. An own model whose interval holds nothing (a broad model with understated
    statistics) cannot vouch: admission bounds what a model claims, hence what it may vouch for.
    Honest owners' images are usually explained far better by their own model; an adversary who
    adds a victim's images to their training set rarely beats the victim's own, specialised model
    by that factor. A huge margin approaches ``any-other`` with one-sided intervals.

**Breadth gate** (optional, any policy whose own models vouch): each model's *breadth* is the
fraction of a public reference set it claims (the service measures it at admission on its probe
digits and stores it as ``probe_claim``). With ``breadth_ratio`` set, an own model may vouch only
when it is at most ``breadth_ratio`` times broader than the narrowest claimant. A user who trains
on their own images plus a victim's gets a model about twice as broad as the victim's, which then
cannot vouch against the victim's model; honest owners' models are about as broad as the models
that claim their images. A model of unknown breadth cannot vouch, and an unknown claimant counts
as the narrowest (breadth 0).

**Seniority** (optional, any policy whose own models vouch): a model admitted to the bank earlier
than a claimant vouches for its owner against that claimant whenever its own interval holds the
image, whatever the distances; against claimants admitted at the same time or earlier, the
policy's rule above applies. A user who replaces their model by one trained on a victim's images
too admits it after the victim's: it gains nothing against the victim, while the victim's older
model keeps vouching for the victim's own uploads against it, however much better the newer model
reconstructs them (distances cannot tell owner from adversary when both models fit the images;
the order of admission can). Admissions come from :attr:`BankScores.admitted` (the bank records
them; without them every model counts as admitted together and seniority changes nothing). With
the breadth gate, only an own model that passes the gate vouches by seniority, so a broad model
stored early cannot use its age against narrower claimants. The price: whoever first admits a model that claims some images is their senior owner, so an attacker
who holds a victim's images before the victim joins keeps sharing them; a replaced model starts
afresh.

A non-finite distance (NaN or infinite: a model whose hidden layer overflows) means that model is
broken for that input: it claims nothing, vouches for nothing and is never the nearest model.
The Guard logs each broken model once and counts the inputs it was broken on
(:attr:`Guard.broken_models`).

(A "normalised" rule, blocking when ``|d - mu| / sigma <= alpha`` for the best other model, is the
same set as ``any-other``: an input is inside some interval exactly when its smallest ``|z|`` is.)
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from imgprivacy.docl.bank import BankScores
from imgprivacy.docl.claims import POLICIES, Claims, read_claims
from imgprivacy.errors import InvalidInputError, UnknownNameError

logger = logging.getLogger(__name__)

ALPHA_RANGE = (0.5, 4.0)  # the paper uses [1, 2]; a wider range is allowed for exploration


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The Guard's verdict on one upload.

    ``matched_model`` and ``matched_owner`` name the nearest model whose claim caused a block; they
    are for the operator's logs and must not be shown to the uploader.
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


DEFAULT_MARGIN = 1.5  # chosen on MNIST: see the Guard tables in docs/results.md


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
        every claiming model to vouch for an image (>= 1).
    breadth_ratio
        The breadth gate (see the module docstring): an own model vouches only when its breadth
        is at most this many times the narrowest claimant's (>= 1); None turns the gate off.
    breadth
        ``{model id: breadth}``, the fraction of a public reference set each model claims; read
        only with ``breadth_ratio``. Replace it with :meth:`set_breadth` when models change.
    seniority
        Own models admitted before a claimant vouch against it whenever their interval holds
        the image (see the module docstring); needs a policy whose own models vouch.

    Attributes
    ----------
    broken_models
        ``{model id: number of scored inputs}`` for models that gave a non-finite distance.
    """

    def __init__(
        self,
        *,
        policy: str = "paper",
        alpha: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        breadth_ratio: float | None = None,
        breadth: Mapping[str, float] | None = None,
        seniority: bool = False,
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
        if breadth_ratio is not None and not (
            isinstance(breadth_ratio, (int, float)) and breadth_ratio >= 1
        ):
            raise InvalidInputError(
                f"Expected breadth_ratio >= 1 or None (gate off), got {breadth_ratio!r}."
            )
        if not isinstance(seniority, bool):
            raise InvalidInputError(f"Expected seniority True or False, got {seniority!r}.")
        if seniority and POLICIES[policy].vouch == "never":
            raise InvalidInputError(
                f"Seniority lets the uploader's older models vouch, but under policy {policy!r} "
                "the uploader's models never vouch; use policy 'margin' or 'paper', or "
                "seniority=False."
            )
        self.policy = policy
        self.seniority = seniority
        self.alpha = float(alpha)
        self.margin = float(margin)
        self.breadth_ratio = None if breadth_ratio is None else float(breadth_ratio)
        self._breadth: dict[str, float] = {}
        self.set_breadth(breadth or {})
        self._broken: Counter[str] = Counter()
        self._lock = threading.Lock()

    def set_breadth(self, breadth: Mapping[str, float]) -> None:
        """Replace the per-model breadths (fractions in [0, 1]; others are refused)."""
        bad = {
            k: v for k, v in breadth.items() if not (isinstance(v, (int, float)) and 0 <= v <= 1)
        }
        if bad:
            raise InvalidInputError(
                f"Expected each model's breadth to be a fraction in [0, 1], got {bad!r}."
            )
        self._breadth = {str(k): float(v) for k, v in breadth.items()}

    def breadth_of(self, model_ids: Sequence[str]) -> torch.Tensor:
        """(N,) float64 breadths of ``model_ids`` as :meth:`set_breadth` gave them (NaN: unknown)."""
        nan = float("nan")
        return torch.tensor([self._breadth.get(m, nan) for m in model_ids], dtype=torch.float64)

    @property
    def broken_models(self) -> dict[str, int]:
        with self._lock:
            return dict(self._broken)

    def claims(self, scores: BankScores, uploaders: str | Sequence[str]) -> Claims:
        """The full vectorised reading (what :meth:`block_mask` and :meth:`decide` use)."""
        uploaders = uploaders_per_input(uploaders, scores.distances.shape[0])
        own = _ownership(scores.owners, uploaders)
        gate = self.breadth_ratio is not None
        result = read_claims(
            scores,
            own,
            rule=POLICIES[self.policy],
            alpha=self.alpha,
            margin=self.margin,
            breadth=self.breadth_of(scores.model_ids) if gate else None,
            breadth_ratio=self.breadth_ratio,
            seniority=self.seniority,
        )
        self._count_broken(scores, result.broken)
        return result

    def block_mask(
        self, scores: BankScores, uploaders: str | Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised decisions: (blocked (B,) bool, nearest claiming model index (B,))."""
        result = self.claims(scores, uploaders)
        return result.blocked, result.culprit

    def decide(self, scores: BankScores, uploaders: str | Sequence[str]) -> list[Decision]:
        """One :class:`Decision` per scored input, with the reason."""
        result = self.claims(scores, uploaders)
        rows = zip(
            result.blocked.tolist(), result.culprit.tolist(), result.claimant_distance.tolist()
        )
        decisions = []
        for is_blocked, index, distance in rows:
            if not is_blocked:
                decisions.append(
                    Decision(
                        share=True,
                        policy=self.policy,
                        alpha=self.alpha,
                        reason=self._share_reason(),
                    )
                )
                continue
            mu = float(scores.error_mean[index])
            sigma = float(scores.error_std[index])
            decisions.append(
                Decision(
                    share=False,
                    policy=self.policy,
                    alpha=self.alpha,
                    reason=self._block_reason(distance, mu, sigma),
                    matched_model=scores.model_ids[index],
                    matched_owner=scores.owners[index],
                    distance=distance,
                )
            )
        return decisions

    # -- reasons and bookkeeping ------------------------------------------------------------
    def _block_reason(self, distance: float, mu: float, sigma: float) -> str:
        low, high = mu - self.alpha * sigma, mu + self.alpha * sigma
        vouch = POLICIES[self.policy].vouch
        if vouch == "margin":
            return (
                f"distance {distance:.4g} is within mu + alpha*sigma = {high:.4g} of a model owned "
                "by another user, and the uploader's own models do not explain it "
                f"{self.margin:g} times better"
            )
        reason = (
            f"distance {distance:.4g} lies inside the privacy interval [{low:.4g}, {high:.4g}] "
            "of a model owned by another user"
        )
        if vouch == "nearer":
            reason += ", and no model of the uploader is nearer"
        return reason

    def _share_reason(self) -> str:
        reason = self._vouch_reason()
        if self.seniority:  # only with a policy whose own models vouch (checked at __init__)
            reason += (
                " (counting only the claiming models admitted no later than the uploader's "
                "oldest model that claims it too)"
            )
        return reason

    def _vouch_reason(self) -> str:
        vouch = POLICIES[self.policy].vouch
        if vouch == "margin":
            return (
                "no other user's model claims this image, or the uploader's own model explains "
                f"it more than {self.margin:g} times better than every one that does"
            )
        if vouch == "nearer":
            return (
                "no other user's model claims this image inside its privacy interval, or the "
                "uploader's own model is nearer than every one that does"
            )
        return "no other user's model claims this image inside its privacy interval"

    def _count_broken(self, scores: BankScores, broken: torch.Tensor) -> None:
        if not bool(broken.any()):
            return
        per_model = broken.sum(dim=0).tolist()
        with self._lock:
            for index, count in enumerate(per_model):
                if not count:
                    continue
                model_id = scores.model_ids[index]
                if model_id not in self._broken:
                    logger.warning(
                        "model %s gives non-finite distances (or statistics); the Guard ignores "
                        "it: it claims nothing and vouches for nothing",
                        model_id,
                    )
                self._broken[model_id] += count


def uploaders_per_input(uploaders: str | Sequence[str], count: int) -> list[str]:
    """The uploader of each of ``count`` scored inputs: one name stands for all of them.

    Raises
    ------
    InvalidInputError
        When a sequence does not hold exactly one uploader per input.
    """
    if isinstance(uploaders, str):
        return [uploaders] * count
    uploaders = list(uploaders)
    if len(uploaders) != count:
        raise InvalidInputError(
            f"Expected one uploader per scored input ({count}), got {len(uploaders)}."
        )
    return uploaders


def _ownership(owners: Sequence[str], uploaders: Sequence[str]) -> torch.Tensor:
    """(B, N) bool: True where model n belongs to the uploader of input b."""
    names = {name: i for i, name in enumerate(dict.fromkeys([*owners, *uploaders]))}
    owner_codes = torch.tensor([names[o] for o in owners])
    uploader_codes = torch.tensor([names[u] for u in uploaders])
    return uploader_codes[:, None] == owner_codes[None, :]
