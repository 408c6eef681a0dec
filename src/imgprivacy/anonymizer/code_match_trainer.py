"""Configuration and training of the code-match anonymizer's encoder.

The encoder learns, without any label, to give two nuisance-augmented views of the same image the
same code and different images different codes (instance discrimination with the NT-Xent loss of
SimCLR, Chen et al. 2020). With pose, light and noise drawn away by the augmentations
(:class:`~imgprivacy.anonymizer.augment.NuisanceAugment`), what tells faces apart is the identity
and the expression. With ``negatives="identity"`` an image competes only with images of its own
identity (the identity label, never the expression), so the code must tell apart what varies
within an identity. Optional terms (:mod:`~imgprivacy.anonymizer.code_match_objectives`): smooth
warps among the augmentations (``warp``) and SwAV-like prototypes shared by the identities
(``prototypes``). Optionally (``lam`` > 0) the eq. (12) game against an identity adversary on
the code removes the identity during training as well; the model then standardises codes per
identity (:mod:`~imgprivacy.anonymizer.code_match`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from imgprivacy.anonymizer.augment import NuisanceAugment
from imgprivacy.anonymizer.code_match_objectives import smooth_warp, swapped_prototype_loss
from imgprivacy.anonymizer.epoch_loop import run_shuffled_epoch, train_remaining_epochs
from imgprivacy.anonymizer.losses import anonymizer_loss, private_loss
from imgprivacy.anonymizer.networks import classifier
from imgprivacy.anonymizer.swap_networks import SwapEncoder
from imgprivacy.anonymizer.trainer import AdversarialHistory, frozen
from imgprivacy.errors import InvalidInputError

NEGATIVES = ("all", "identity")  # CodeMatchConfig.negatives


@dataclass(frozen=True)
class CodeMatchConfig:
    """Hyper-parameters of the code-match anonymizer (a comment per field)."""

    image_size: int = 50  # images are image_size x image_size, grey
    n_private: int = 6  # number of identities; set from the labels by fit()
    channels: int = 16  # channels of the encoder's first convolution (then 2x, 4x)
    code_dim: int = 64  # size of the code the nearest neighbour is searched in
    projection_dim: int = 64  # output of the projection head the contrastive loss sees
    temperature: float = 0.2  # NT-Xent temperature
    negatives: str = "all"  # NT-Xent negatives: "all" other images of the batch, or only those
    # of the anchor's own "identity" (the code must then tell apart what differs within one)
    prototypes: int = 0  # > 0: also a swapped-prediction loss (SwAV-like) on that many
    # prototypes shared by every identity, each code centred on its identity's batch mean and
    # every identity's batch spread evenly over the prototypes; 0: none
    prototype_weight: float = 1.0  # weight of that loss beside NT-Xent
    warp: float = 0.0  # amplitude in pixels of a smooth random displacement field added to
    # the augmentations (small face-shape changes then count as nuisance too); 0: none
    target_identity: int = 0  # identity index whose training images are released
    whiten: bool = False  # remove each identity's full code covariance (ZCA whitening per
    # identity) instead of its per-dimension spread before the nearest-image search
    whiten_ridge: float = 0.01  # added to every identity's covariance diagonal before whitening
    # (the codes are batch-normalised, unit variance over all identities): larger values
    # whiten the weak directions less
    lam: float = 0.0  # weight of eq. (12)'s gap against an identity adversary on the code
    epochs: int = 15  # training epochs
    batch_size: int = 128  # images per update (each gives two views)
    lr: float = 1e-3  # Adam learning rate of the encoder and head (and the adversary)
    seed: int = 0  # seeds initialisation, shuffling and augmentations

    def __post_init__(self) -> None:
        problems = []
        for name in ("image_size", "channels", "code_dim", "projection_dim", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            problems.append(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if not isinstance(self.n_private, int) or self.n_private < 2:
            problems.append(f"n_private must be an integer >= 2, got {self.n_private!r}")
        for name, low in (("temperature", 0.0), ("lr", 0.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            problems.append(f"lam must be a finite number >= 0, got {self.lam!r}")
        ridge = self.whiten_ridge
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge > 0):
            problems.append(f"whiten_ridge must be a finite number > 0, got {ridge!r}")
        if self.negatives not in NEGATIVES:
            problems.append(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if not isinstance(self.prototypes, int) or self.prototypes < 0:
            problems.append(f"prototypes must be an integer >= 0, got {self.prototypes!r}")
        weight = self.prototype_weight
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            problems.append(f"prototype_weight must be a finite number >= 0, got {weight!r}")
        if not (
            isinstance(self.warp, (int, float)) and math.isfinite(self.warp) and self.warp >= 0
        ):
            problems.append(f"warp must be a finite number >= 0 (pixels), got {self.warp!r}")
        if not isinstance(self.whiten, bool):
            problems.append(f"whiten must be True or False, got {self.whiten!r}")
        if not isinstance(self.target_identity, int) or isinstance(self.target_identity, bool):
            problems.append(f"target_identity must be an integer, got {self.target_identity!r}")
        if problems:
            raise InvalidInputError([f"Invalid CodeMatchConfig: {p}" for p in problems])

    @property
    def input_dim(self) -> int:
        return self.image_size * self.image_size

    def replace(self, **changes) -> CodeMatchConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> CodeMatchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown CodeMatchConfig fields {unknown}; known fields: {sorted(known)}."
            )
        return cls(**values)


def nt_xent(
    first: torch.Tensor,
    second: torch.Tensor,
    temperature: float,
    *,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The NT-Xent loss: row i of ``first`` must pick row i of ``second`` among all 2B - 1 rows.

    With ``groups`` (B,), only the rows of row i's own group compete (negatives drawn within a
    group, e.g. one identity).

    Examples
    --------
    >>> a = torch.eye(3)
    >>> float(nt_xent(a, a, 0.1)) < 1e-3  # matching views are found with certainty
    True
    >>> b = torch.tensor([[1.0, 0], [1, 0], [0, 1]])  # rows 0 and 1 cannot be told apart
    >>> groups = torch.tensor([0, 1, 1])  # ... unless they are kept apart
    >>> float(nt_xent(b, b, 0.1)) > 0.6, float(nt_xent(b, b, 0.1, groups=groups)) < 1e-3
    (True, True)
    """
    views = F.normalize(torch.cat([first, second]), dim=1)
    similarity = views @ views.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    if groups is not None:
        both = torch.cat([groups, groups]).to(views.device)
        similarity = similarity.masked_fill(both[:, None] != both[None, :], float("-inf"))
    n = len(first)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(views.device)
    return F.cross_entropy(similarity, partner)


class CodeMatchNetworks(nn.Module):
    """The encoder, its projection head (training only) and the identity adversary."""

    def __init__(self, config: CodeMatchConfig):
        super().__init__()
        c = config
        self.encoder = SwapEncoder(c.image_size, c.channels, c.code_dim)
        self.head = nn.Sequential(
            nn.Linear(c.code_dim, 2 * c.projection_dim),
            nn.ReLU(),
            nn.Linear(2 * c.projection_dim, c.projection_dim),
        )
        self.adversary = classifier(c.code_dim, 256, c.n_private, 0.2)
        if c.prototypes > 0:  # created last: the other networks start as without prototypes
            self.prototypes = nn.Parameter(torch.randn(c.prototypes, c.code_dim))


def build_code_match_networks(config: CodeMatchConfig) -> CodeMatchNetworks:
    """Initialise the networks from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return CodeMatchNetworks(config)


class CodeMatchTrainer:
    """Owns the networks, optimisers, RNG and history of one encoder training."""

    def __init__(self, config: CodeMatchConfig, *, prior: torch.Tensor, device: str = "cpu"):
        self.config = config
        self.device = device
        self.prior = prior.to(device)
        self.nets = build_code_match_networks(config).to(device)
        coder = [*self.nets.encoder.parameters(), *self.nets.head.parameters()]
        if config.prototypes > 0:
            coder.append(self.nets.prototypes)
        self.optimizers = {
            "encoder": torch.optim.Adam(coder, lr=config.lr),
            "adversary": torch.optim.Adam(self.nets.adversary.parameters(), lr=config.lr),
        }
        self.augment = NuisanceAugment(image_size=config.image_size)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history = AdversarialHistory()

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        view = self.augment(x, generator=self.generator)
        if self.config.warp > 0:
            view = smooth_warp(
                view,
                image_size=self.config.image_size,
                amplitude=self.config.warp,
                generator=self.generator,
            )
        return view

    def adversary_step(self, x: torch.Tensor, identity: torch.Tensor) -> dict[str, float]:
        """Eq. (14) on the code of one augmented view (encoder frozen)."""
        with torch.no_grad(), frozen(self.nets.encoder):
            z = self.nets.encoder(self.augment(x, generator=self.generator))
        loss = private_loss(self.nets.adversary(z), identity)
        self._update("adversary", loss)
        return {"adversary_ce": loss.item()}

    def encoder_step(
        self, x: torch.Tensor, identity: torch.Tensor, *, lam: float
    ) -> dict[str, float]:
        """NT-Xent between two augmented views (+ lam * eq. (12)'s gap on their codes)."""
        nets, cfg = self.nets, self.config
        first = nets.encoder(self._view(x))
        second = nets.encoder(self._view(x))
        groups = identity if cfg.negatives == "identity" else None
        loss = nt_xent(nets.head(first), nets.head(second), cfg.temperature, groups=groups)
        losses = {"nt_xent": loss.item()}
        if cfg.prototypes > 0:
            swapped = swapped_prototype_loss(first, second, nets.prototypes, groups=identity)
            loss = loss + cfg.prototype_weight * swapped
            losses["prototypes"] = swapped.item()
        if lam > 0:
            with frozen(nets.adversary):
                parts = anonymizer_loss(
                    fool_logits=torch.zeros(2 * len(x), device=self.device),
                    private_logits=nets.adversary(torch.cat([first, second])),
                    z=torch.cat([identity, identity]),
                    prior=self.prior,
                    lam=lam,
                )
            loss = loss + lam * parts["gap"]
            losses["code_gap"] = parts["gap"].item()
        self._update("encoder", loss)
        return losses

    def run_epoch(self, x: torch.Tensor, identity: torch.Tensor) -> dict:
        """One epoch (the adversary's update first when ``lam`` > 0); returns its record."""
        lam = self.config.lam

        def step(xb: torch.Tensor, yb: torch.Tensor) -> dict[str, float]:
            losses = self.adversary_step(xb, yb) if lam > 0 else {}
            return losses | self.encoder_step(xb, yb, lam=lam)

        # the last short batch is dropped: two images make a poor contrastive batch
        return run_shuffled_epoch(
            self,
            x,
            identity,
            step=step,
            name="code-match",
            drop_last=self.config.batch_size // 4,
            min_batch=2,
        )

    def fit(
        self,
        x: torch.Tensor,
        identity: torch.Tensor,
        *,
        on_epoch: Callable[[CodeMatchTrainer, dict], None] | None = None,
    ) -> CodeMatchTrainer:
        """Train the remaining epochs on (N, D) pixels in [0, 1] and (N,) int64 identities."""
        return train_remaining_epochs(self, x, identity, on_epoch=on_epoch)
