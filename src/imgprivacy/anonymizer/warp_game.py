"""The eq. (12) game played by a normalising warp instead of a free autoencoder.

The generator q(x_hat|x) is a spatial transformer restricted to one degree of freedom: a small
network reads the image and returns a horizontal shear s in [-max_shear, max_shear]; the output
is the image sheared by s (bilinear resampling, ink kept inside the frame by a penalty). A warp
of that family cannot change which digit is drawn, only how it leans, so the fidelity term of
eq. (12) reduces to staying close to the identity (``warp_penalty`` on s^2) and keeping the ink
(``ink_weight``). The private branch q(z|x_hat) is a classifier of the writer on the warped image
(per-image standardised input, as in :mod:`~imgprivacy.anonymizer.networks`), re-initialised and
trained afresh at the start of every epoch (``private_refresh_epochs``) and co-trained in between,
so that eq. (10)'s "well-selected classifier" stays close to what a new attacker would learn.
The warp minimises ``lam * |L_obj - L_priv|`` (eq. 12, 14, 15) plus the two fidelity terms.

At ``lam = 0`` nothing pulls the shear away from 0: the last layer starts at zero, so the warp
stays the identity (the ablation of the game). Why this family: the writer's slant is the style
cue that splits a digit's clusters by writer (``docs/anonymizer.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from imgprivacy.anonymizer.losses import objective_loss, private_loss
from imgprivacy.anonymizer.networks import classifier
from imgprivacy.anonymizer.substitution import canonical_substitution
from imgprivacy.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarpGameConfig:
    """Hyper-parameters of the warp game and of the clusters released after it."""

    image_size: int = 20  # images are image_size x image_size, grey, white ink on black
    n_private: int = 30  # number of private classes (writers); set from the labels by fit()
    lam: float = 1.0  # lambda of eq. (12): weight of |L_obj - L_priv|
    max_shear: float = 1.0  # the warp's shear lies in [-max_shear, max_shear]
    warp_penalty: float = 1.0  # weight of the squared shear (fidelity: stay near the input;
    # 0.1 let the shear swing between +-0.2 and +-0.9 from epoch to epoch)
    ink_weight: float = 1.0  # weight of the relative ink the warp pushes out of the frame
    hidden: int = 128  # width of the warp's hidden layer
    private_hidden: int = 256  # width of the private classifier's hidden layers
    dropout: float = 0.2  # dropout of the private classifier
    epochs: int = 12  # epochs of the game
    private_refresh_epochs: int = 2  # each epoch starts with a fresh private classifier
    # trained this many epochs on the current warped images
    private_steps: int = 2  # private-classifier updates per warp update
    average_epochs: int = 0  # the released warp is the average of the warp's weights at the end
    # of the last this-many epochs (0 or 1 = the last epoch's warp): the game oscillates, and
    # the average damps the swing that the clusters would otherwise inherit from one epoch
    batch_size: int = 128  # images per update
    lr: float = 3e-4  # Adam learning rate of the warp
    private_lr: float = 1e-3  # Adam learning rate of the private classifier
    substitution: str = "spectral-clusters"  # what is released (a SUBSTITUTIONS name)
    n_prototypes: int = 20  # number of released clusters
    pool_size: int = 100  # central training images per cluster a released image is drawn from
    # (1 = the cluster's medoid; files written before this field existed released medoids).
    # 100 on validation (seeds 0-2): a pool of 250 is most of a cluster, outer members included,
    # and an impure cluster's outer members show another digit; with 100, 0.4-1.3 points more
    # of a validation image's pool shows its digit, at realism (forest) 74.6% against 60.8%
    # (aim <= 80%); on test +0.1-0.4 digit points (docs/results.md, pen-digits)
    seed: int = 0  # seeds initialisation, shuffling, dropout and the clustering

    def __post_init__(self) -> None:
        # an earlier name of the substitution (from a stored config) is kept as its current name
        object.__setattr__(self, "substitution", canonical_substitution(self.substitution))
        problems = []
        for name in ("image_size", "hidden", "private_hidden", "private_steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("epochs", "private_refresh_epochs", "average_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.n_private, int) or self.n_private < 2:
            problems.append(f"n_private must be an integer >= 2, got {self.n_private!r}")
        if not isinstance(self.pool_size, int) or self.pool_size < 1:
            problems.append(f"pool_size must be a positive integer, got {self.pool_size!r}")
        if not isinstance(self.n_prototypes, int) or self.n_prototypes < 2:
            problems.append(f"n_prototypes must be an integer >= 2, got {self.n_prototypes!r}")
        for name in ("lam", "warp_penalty", "ink_weight", "max_shear"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("lr", "private_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if problems:
            raise InvalidInputError([f"Invalid WarpGameConfig: {p}" for p in problems])

    @property
    def input_dim(self) -> int:
        return self.image_size * self.image_size

    def replace(self, **changes) -> WarpGameConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> WarpGameConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown WarpGameConfig fields {unknown}; known fields: {sorted(known)}."
            )
        # a model file written before pool_size existed released each cluster's medoid
        return cls(**{"pool_size": 1, **values})


class ShearWarp(nn.Module):
    """q(x_hat|x): flattened (B, S*S) images -> the same images sheared horizontally.

    ``forward`` returns ``(warped, shear)``; the shear (B,) is ``max_shear * tanh(net(x))`` and
    the net's last layer starts at zero, so an untrained warp is exactly the identity.
    """

    def __init__(self, image_size: int, hidden: int, max_shear: float):
        super().__init__()
        self.image_size = image_size
        self.max_shear = max_shear
        self.net = nn.Sequential(
            nn.Linear(image_size * image_size, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shear = self.max_shear * torch.tanh(self.net(x)).view(-1)
        theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        theta[:, 0, 1] = shear
        s = self.image_size
        images = x.view(-1, 1, s, s)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        warped = F.grid_sample(images, grid, align_corners=False)
        return warped.reshape(len(x), s * s), shear


class WarpGameTrainer:
    """Owns the warp, the private classifier, their optimisers, RNG and per-epoch history.

    Each update is a named method returning a ``dict[str, float]``: :meth:`private_step`
    (eq. 14 on the warped images, warp frozen), :meth:`warp_step` (eq. 12 plus fidelity, private
    branch frozen) and :meth:`refresh_private` (a fresh private classifier trained on the
    current warped images).
    """

    def __init__(self, config: WarpGameConfig, *, prior: torch.Tensor, device: str = "cpu"):
        self.config = config
        self.device = device
        self.prior = prior.to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.warp = ShearWarp(config.image_size, config.hidden, config.max_shear).to(device)
        self.warp_optimizer = torch.optim.Adam(self.warp.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[dict] = []
        self._new_private()

    def _new_private(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 7919 * (self.epoch + 1))
            self.private = classifier(
                cfg.input_dim, cfg.private_hidden, cfg.n_private, cfg.dropout, normalize_input=True
            ).to(self.device)
        self.private_optimizer = torch.optim.Adam(self.private.parameters(), lr=cfg.private_lr)

    def warped(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """The warp's outputs for (N, D) images, in evaluation mode, without gradients."""
        with torch.no_grad():
            return torch.cat(
                [self.warp(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]
            )

    def private_step(self, x_hat: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """Eq. (14): the private classifier learns the writer from warped images."""
        self.private.train()
        logits = self.private(x_hat)
        loss = private_loss(logits, z)
        self.private_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.private_optimizer.step()
        accuracy = (logits.argmax(dim=1) == z).float().mean()
        return {"private_ce": loss.item(), "private_accuracy": accuracy.item()}

    def warp_step(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """Eq. (12) against the frozen private branch, plus the fidelity terms."""
        self.private.eval()
        self.private.requires_grad_(False)
        try:
            x_hat, shear = self.warp(x)
            logits = self.private(x_hat)
            priv, obj = private_loss(logits, z), objective_loss(logits, self.prior)
            gap = (obj - priv).abs()  # eq. (11)
            ink = x.sum(dim=1).clamp(min=1e-6)
            lost = ((x_hat.sum(dim=1) - ink).abs() / ink).mean()
            penalty = (shear**2).mean()
            cfg = self.config
            loss = cfg.lam * gap + cfg.warp_penalty * penalty + cfg.ink_weight * lost
            self.warp_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.warp_optimizer.step()
        finally:
            self.private.requires_grad_(True)
        return {
            "warp_private": priv.item(),
            "warp_objective": obj.item(),
            "warp_gap": gap.item(),
            "warp_ink_lost": lost.item(),
            "warp_shear_rms": penalty.sqrt().item(),
        }

    def refresh_private(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """A fresh private classifier trained ``private_refresh_epochs`` on the warped ``x``."""
        self._new_private()
        x_hat = self.warped(x)
        losses: dict[str, float] = {}
        for _ in range(self.config.private_refresh_epochs):
            for index in self._batches(len(x)):
                step = self.private_step(x_hat[index], z[index])
                losses = {
                    "refresh_ce": step["private_ce"],
                    "refresh_accuracy": step["private_accuracy"],
                }
        return losses

    def _batches(self, n: int):
        order = torch.randperm(n, generator=self.generator).to(self.device)
        for start in range(0, n, self.config.batch_size):
            yield order[start : start + self.config.batch_size]

    def run_epoch(self, x: torch.Tensor, z: torch.Tensor) -> dict:
        """One epoch of the game: refresh the private branch, then alternate the updates."""
        cfg = self.config
        started = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 1_000_003 + self.epoch)  # dropout
            record = self.refresh_private(x, z) if cfg.private_refresh_epochs else {}
            for index in self._batches(len(x)):
                xb, zb = x[index], z[index]
                x_hat = self.warped(xb)
                for _ in range(cfg.private_steps):
                    losses = self.private_step(x_hat, zb)
                losses.update(self.warp_step(xb, zb))
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                batches += 1
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "seconds": time.perf_counter() - started,
            **record,
            **{k: v / max(batches, 1) for k, v in sums.items()},
        }
        self.history.append(record)
        logger.info(
            "warp game epoch %d/%d %s",
            self.epoch,
            cfg.epochs,
            " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"),
        )
        return record

    def fit(self, x: torch.Tensor, z: torch.Tensor) -> list[dict]:
        """Run the remaining epochs on (N, D) images ``x`` and (N,) private labels ``z``; with
        ``average_epochs`` > 1 the warp ends as the mean of its weights after each of the last
        ``average_epochs`` epochs."""
        x, z = x.to(self.device), z.to(self.device)
        first_averaged = self.config.epochs - self.config.average_epochs + 1
        total: dict[str, torch.Tensor] = {}
        count = 0
        while self.epoch < self.config.epochs:
            self.run_epoch(x, z)
            if self.config.average_epochs > 1 and self.epoch >= first_averaged:
                for key, value in self.warp.state_dict().items():
                    total[key] = total.get(key, 0) + value.detach().double()
                count += 1
        if count > 1:
            self.warp.load_state_dict(
                {key: (value / count).to(torch.float32) for key, value in total.items()}
            )
        return self.history
