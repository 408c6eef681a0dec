"""Training of the identity-swap anonymizer: the eq. (12) game played on the code.

Each update is a named method returning a ``dict[str, float]``:

* :meth:`SwapTrainer.adversary_step` - eq. (14) on z: the adversary learns the identity from the
  (frozen) encoder's code;
* :meth:`SwapTrainer.autoencoder_step` - the encoder and decoder against the frozen adversary:
  reconstruction of x from (z, identity(x)) + lambda * |L_obj - L_priv| on z (eq. 12 with the
  adversary as the private branch) + optionally the cycle term.

The reconstruction anchors z to everything the decoder cannot get from the identity label
(expression, pose, lighting), and the adversary's term removes the identity from it, so the
anchor does not pull the identity back into what is released. Only identity labels are used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from imgprivacy.anonymizer.epoch_loop import run_shuffled_epoch, train_remaining_epochs
from imgprivacy.anonymizer.losses import anonymizer_loss, private_loss
from imgprivacy.anonymizer.swap_config import SwapConfig
from imgprivacy.anonymizer.swap_networks import SwapNetworks
from imgprivacy.anonymizer.trainer import AdversarialHistory, frozen


def build_swap_networks(config: SwapConfig) -> SwapNetworks:
    """Initialise the networks from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return SwapNetworks(
            image_size=config.image_size,
            channels=config.channels,
            code_dim=config.code_dim,
            n_identities=config.n_private,
            adversary_hidden=config.adversary_hidden,
            dropout=config.dropout,
        )


class SwapTrainer:
    """Owns the networks, optimisers, RNG and history of one identity-swap training run.

    Parameters
    ----------
    config
        Hyper-parameters (``n_private`` must match the labels).
    prior
        p_Z, the empirical distribution of the identities, shape (n_private,).
    device
        Torch device.
    """

    def __init__(self, config: SwapConfig, *, prior: torch.Tensor, device: str = "cpu"):
        self.config = config
        self.device = device
        self.prior = prior.to(device)
        self.nets = build_swap_networks(config).to(device)
        coder = [*self.nets.encoder.parameters(), *self.nets.decoder.parameters()]
        self.optimizers = {
            "autoencoder": torch.optim.Adam(coder, lr=config.lr),
            "adversary": torch.optim.Adam(self.nets.adversary.parameters(), lr=config.adversary_lr),
        }
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history = AdversarialHistory()

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def adversary_step(self, x: torch.Tensor, identity: torch.Tensor) -> dict[str, float]:
        """Eq. (14) on the code: the adversary learns the identity from z (encoder frozen)."""
        with torch.no_grad(), frozen(self.nets.encoder):
            z = self.nets.encoder(x)
        logits = self.nets.adversary(z)
        loss = private_loss(logits, identity)
        self._update("adversary", loss)
        accuracy = (logits.argmax(1) == identity).float().mean()
        return {"adversary_ce": loss.item(), "adversary_accuracy": accuracy.item()}

    def autoencoder_step(
        self, x: torch.Tensor, identity: torch.Tensor, *, lam: float
    ) -> dict[str, float]:
        """Reconstruction from (z, identity) + lam * eq. (12)'s gap on z (+ the cycle term)."""
        nets, cfg = self.nets, self.config
        with frozen(nets.adversary):
            z = nets.encoder(x)
            reconstruction = F.binary_cross_entropy_with_logits(nets.decoder(z, identity), x)
            parts = anonymizer_loss(
                fool_logits=torch.zeros(len(x), device=self.device),  # no pixel discriminator
                private_logits=nets.adversary(z),
                z=identity,
                prior=self.prior,
                lam=lam,
            )
            total = reconstruction + lam * parts["gap"]
            losses = {"reconstruction_bce": reconstruction.item(), "code_gap": parts["gap"].item()}
            if cfg.cycle_weight > 0:
                other = torch.randint(0, cfg.n_private, (len(x),), generator=self.generator)
                swapped = torch.sigmoid(nets.decoder(z, other.to(self.device)))
                back = nets.decoder(nets.encoder(swapped), identity)
                cycle = F.binary_cross_entropy_with_logits(back, x)
                total = total + cfg.cycle_weight * cycle
                losses["cycle_bce"] = cycle.item()
            self._update("autoencoder", total)
        return losses

    def run_epoch(self, x: torch.Tensor, identity: torch.Tensor) -> dict:
        """One epoch of alternating updates; returns (and logs) its record."""
        cfg = self.config
        lam = cfg.lam_at(self.epoch)

        def step(xb: torch.Tensor, yb: torch.Tensor) -> dict[str, float]:
            losses: dict[str, float] = {}
            for _ in range(cfg.adversary_steps):
                losses.update(self.adversary_step(xb, yb))
            return losses | self.autoencoder_step(xb, yb, lam=lam)

        return run_shuffled_epoch(self, x, identity, step=step, name="swap", fields={"lam": lam})

    def fit(
        self,
        x: torch.Tensor,
        identity: torch.Tensor,
        *,
        on_epoch: Callable[[SwapTrainer, dict], None] | None = None,
    ) -> SwapTrainer:
        """Train the remaining epochs on (N, D) pixels in [0, 1] and (N,) int64 identities."""
        return train_remaining_epochs(self, x, identity, on_epoch=on_epoch)
