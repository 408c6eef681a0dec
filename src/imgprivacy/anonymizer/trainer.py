"""The three-phase training of the anonymizer (paper sec. 2, "Training procedure").

Each adversarial update is a named method returning a ``dict[str, float]`` of losses:

* :meth:`AnonymizerTrainer.pretrain_step` - phase 1, the autoencoder alone with a pixel loss;
* :meth:`AnonymizerTrainer.discriminator_step` - eq. (13) on v = S(x, x_hat, y), autoencoder frozen;
* :meth:`AnonymizerTrainer.private_step` - eq. (14) on x_hat, autoencoder frozen;
* :meth:`AnonymizerTrainer.fidelity_step` - phase 2, the autoencoder against the frozen discriminator;
* :meth:`AnonymizerTrainer.autoencoder_step` - phase 3, eq. (12) against both frozen branches.

With a target identity (the intertwined method, paper sec. 3) the discriminator's real samples are
drawn from that identity's training images only (a
:class:`~imgprivacy.anonymizer.target_identity.TargetIdentitySampler` given to
:meth:`AnonymizerTrainer.fit`), so fooling it means looking like the target. Its batches are a pure
function of the update's index (epoch, batch, discriminator step), so a resumed run sees the same
ones.

Phase 2 also pre-trains the private classifier, so that phase 3 starts against a good estimate of
the best private classifier (eq. 10 assumes one). In phases 2-3 the autoencoder's objective gets
``recon_weight`` times a reconstruction anchor (:func:`reconstruction_anchor`): without it the eq. (12) game is free to map
every input to the same realistic digit (zero mutual information, zero utility), which is what a
plain implementation did at lambda >= 1. The anchor is the distortion term of the
distortion-equivocation trade-off the paper cites [11]: the output must stay near its input
except where the private branch pays for moving it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import count

import torch
from torch import nn
from torch.nn import functional as F

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.epoch_loop import AdversarialHistory, run_shuffled_epoch
from imgprivacy.anonymizer.losses import (
    anonymizer_loss,
    discriminator_loss,
    private_loss,
)
from imgprivacy.anonymizer.networks import build_networks, select
from imgprivacy.anonymizer.target_identity import TargetIdentitySampler
from imgprivacy.errors import InvalidInputError

PHASES = ("pretrain", "disc_pretrain", "adversarial")


def phase_schedule(config: AnonymizerConfig) -> list[str]:
    """The phase of every epoch, in order.

    Examples
    --------
    >>> cfg = AnonymizerConfig(pretrain_epochs=2, disc_pretrain_epochs=1, adversarial_epochs=3)
    >>> phase_schedule(cfg)
    ['pretrain', 'pretrain', 'disc_pretrain', 'adversarial', 'adversarial', 'adversarial']
    """
    lengths = (config.pretrain_epochs, config.disc_pretrain_epochs, config.adversarial_epochs)
    return [phase for phase, n in zip(PHASES, lengths) for _ in range(n)]


def reconstruction_anchor(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE of the autoencoder's logits against its input (the phase-1 pixel loss).

    Taken on the logits, not on sigmoid outputs: its gradient sigmoid(logit) - x stays large
    where an output pixel has saturated away from its input, so the autoencoder cannot escape
    it by driving every pixel to black (an L1 anchor on x_hat has a vanishing gradient there, and
    a run with it collapsed to an almost black image).
    """
    return F.binary_cross_entropy_with_logits(logits, x)


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Evaluate ``modules`` deterministically and without parameter gradients."""
    saved = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for module in modules:
        module.eval()
        module.requires_grad_(False)
    try:
        yield
    finally:
        for module, training, flags in saved:
            module.train(training)
            for param, flag in zip(module.parameters(), flags):
                param.requires_grad_(flag)


class AnonymizerTrainer:
    """Owns the networks, optimisers, RNG and history of one training run.

    Parameters
    ----------
    config
        Hyper-parameters (``n_private`` must match the labels given to :meth:`run_epoch`).
    prior
        p_Z, the empirical distribution of the private labels, shape (n_private,).
    device
        Torch device.
    """

    def __init__(self, config: AnonymizerConfig, *, prior: torch.Tensor, device: str = "cpu"):
        self.config = config
        self.device = device
        self.prior = prior.to(device)
        self.nets = build_networks(config).to(device)
        ae, disc, priv = self.nets.autoencoder, self.nets.discriminator, self.nets.private
        self.optimizers = {
            "pretrain": torch.optim.Adam(ae.parameters(), lr=config.ae_lr),
            "autoencoder": torch.optim.Adam(
                ae.parameters(), lr=config.adversarial_ae_lr, betas=(0.5, 0.999)
            ),
            "discriminator": torch.optim.Adam(
                disc.parameters(), lr=config.disc_lr, betas=(0.5, 0.999)
            ),
            "private": torch.optim.Adam(priv.parameters(), lr=config.private_lr),
        }
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0  # finished epochs
        self.history = AdversarialHistory()

    # -- the named updates -----------------------------------------------------------------
    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def _anonymize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.nets.autoencoder(x))

    def pretrain_step(self, x: torch.Tensor) -> dict[str, float]:
        """Phase 1: the autoencoder reproduces its input (BCE per pixel)."""
        loss = F.binary_cross_entropy_with_logits(self.nets.autoencoder(x), x)
        self._update("pretrain", loss)
        return {"reconstruction_bce": loss.item()}

    def discriminator_step(
        self, x: torch.Tensor, real: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Eq. (13): the discriminator sees S(real, x_hat, y) with y ~ Bernoulli(1/2) per image.

        ``real`` defaults to ``x`` itself (the standard method); the intertwined method passes a
        batch of the target identity's images of the same size.
        """
        with torch.no_grad(), frozen(self.nets.autoencoder):
            x_hat = self._anonymize(x)
        real = x if real is None else real
        if real.shape != x.shape:
            raise InvalidInputError(
                f"Expected a real batch of the shape of x {tuple(x.shape)}, got {tuple(real.shape)}."
            )
        y = torch.randint(0, 2, (len(x),), generator=self.generator).to(self.device)
        logits = self.nets.discriminator(select(real, x_hat, y))
        loss = discriminator_loss(logits, y)
        self._update("discriminator", loss)
        accuracy = ((logits.view(-1) > 0).long() == y).float().mean()
        return {"discriminator_bce": loss.item(), "discriminator_accuracy": accuracy.item()}

    def private_step(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """Eq. (14): the private classifier learns the private label from x_hat."""
        with torch.no_grad(), frozen(self.nets.autoencoder):
            x_hat = self._anonymize(x)
        logits = self.nets.private(x_hat)
        loss = private_loss(logits, z)
        self._update("private", loss)
        accuracy = (logits.argmax(dim=1) == z).float().mean()
        return {"private_ce": loss.item(), "private_accuracy": accuracy.item()}

    def fidelity_step(self, x: torch.Tensor) -> dict[str, float]:
        """Phase 2: the autoencoder fools the frozen discriminator (eq. 13 with y = 1 on x_hat)."""
        with frozen(self.nets.discriminator):
            logits = self.nets.autoencoder(x)
            x_hat = torch.sigmoid(logits)
            fidelity = discriminator_loss(
                self.nets.discriminator(x_hat), torch.ones(len(x), device=self.device)
            )
            anchor = reconstruction_anchor(logits, x)
            self._update("autoencoder", fidelity + self.config.recon_weight * anchor)
        return {
            "ae_fidelity": fidelity.item(),
            "ae_anchor": anchor.item(),
            "ae_l1": (x_hat - x).abs().mean().item(),
        }

    def autoencoder_step(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """Phase 3: eq. (12) + the anchor, against the frozen discriminator and private branch."""
        with frozen(self.nets.discriminator, self.nets.private):
            logits = self.nets.autoencoder(x)
            x_hat = torch.sigmoid(logits)
            parts = anonymizer_loss(
                fool_logits=self.nets.discriminator(x_hat),
                private_logits=self.nets.private(x_hat),
                z=z,
                prior=self.prior,
                lam=self.config.lam,
            )
            anchor = reconstruction_anchor(logits, x)
            self._update("autoencoder", parts["total"] + self.config.recon_weight * anchor)
        return {
            "ae_total": parts["total"].item(),
            "ae_fidelity": parts["fidelity"].item(),
            "ae_private": parts["private"].item(),
            "ae_objective": parts["objective"].item(),
            "ae_gap": parts["gap"].item(),
            "ae_anchor": anchor.item(),
            "ae_l1": (x_hat - x).abs().mean().item(),
        }

    def refresh_private(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """Re-initialise the private classifier and train it on the current x_hat.

        A co-trained classifier can be fooled by outputs that keep the private label for any
        other learner (the autoencoder follows its gradient); a fresh one, trained like the
        assessment attackers, sees what a new attacker would find.
        """
        cfg = self.config
        fresh = build_networks(cfg.replace(seed=cfg.seed + 7919 * (self.epoch + 1))).private
        self.nets.private.load_state_dict(fresh.state_dict())
        self.optimizers["private"] = torch.optim.Adam(
            self.nets.private.parameters(), lr=cfg.private_lr
        )
        with torch.no_grad(), frozen(self.nets.autoencoder):
            x_hat = torch.cat([self._anonymize(x[i : i + 4096]) for i in range(0, len(x), 4096)])
        losses: dict[str, float] = {}
        for _ in range(cfg.private_refresh_epochs):
            order = torch.randperm(len(x), generator=self.generator).to(self.device)
            for start in range(0, len(x), cfg.batch_size):
                index = order[start : start + cfg.batch_size]
                logits = self.nets.private(x_hat[index])
                loss = private_loss(logits, z[index])
                self._update("private", loss)
                accuracy = (logits.argmax(dim=1) == z[index]).float().mean()
                losses = {"refresh_ce": loss.item(), "refresh_accuracy": accuracy.item()}
        return losses

    # -- epochs ----------------------------------------------------------------------------
    def _random_batch(self, x: torch.Tensor, z: torch.Tensor):
        index = torch.randint(0, len(x), (self.config.batch_size,), generator=self.generator)
        index = index.to(self.device)
        return x[index], z[index]

    def run_epoch(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        *,
        real_sampler: TargetIdentitySampler | None = None,
    ) -> dict:
        """Train one epoch of the phase the schedule gives for ``self.epoch``; log its losses.

        ``x`` is (N, D) float in [0, 1], ``z`` (N,) int64 private labels in [0, n_private);
        ``real_sampler`` serves the discriminator's real samples (target identity), if any.
        """
        schedule = phase_schedule(self.config)
        if self.epoch >= len(schedule):
            raise InvalidInputError(
                f"Training already finished ({self.epoch} epochs); raise the epochs to continue."
            )
        phase = schedule[self.epoch]
        cfg = self.config
        refresh = None
        if phase == "adversarial" and cfg.private_refresh_epochs > 0:
            refresh = partial(self.refresh_private, x, z)
        # The discriminator's real batches are indexed by the update (epoch, batch, step).
        n_batches = (len(x) + cfg.batch_size - 1) // cfg.batch_size
        batch_index = count(self.epoch * n_batches)

        def step(xb: torch.Tensor, zb: torch.Tensor) -> dict[str, float]:
            first_update = next(batch_index) * cfg.disc_steps
            return self._phase_step(
                phase, xb, zb, pool=(x, z), real_sampler=real_sampler, first_update=first_update
            )

        return run_shuffled_epoch(
            self,
            x,
            z,
            step=step,
            name="anonymizer",
            fields={"phase": phase},
            before=refresh,
            epochs=len(schedule),
        )

    def _phase_step(
        self,
        phase: str,
        xb: torch.Tensor,
        zb: torch.Tensor,
        *,
        pool: tuple[torch.Tensor, torch.Tensor],
        real_sampler: TargetIdentitySampler | None,
        first_update: int,
    ) -> dict[str, float]:
        """The named updates of ``phase`` on one batch; ``pool`` (all images, labels) feeds the
        private branch's extra steps, ``first_update`` indexes the real samples' batches."""
        if phase == "pretrain":
            return self.pretrain_step(xb)
        cfg = self.config
        losses: dict[str, float] = {}
        for k in range(cfg.disc_steps):
            real = None
            if real_sampler is not None:
                real = real_sampler.batch(first_update + k, size=len(xb)).to(self.device)
            losses.update(self.discriminator_step(xb, real))
        losses.update(self.private_step(xb, zb))
        if phase == "adversarial":
            for _ in range(cfg.private_steps - 1):
                self.private_step(*self._random_batch(*pool))
        if phase == "disc_pretrain":
            losses.update(self.fidelity_step(xb))
        else:
            losses.update(self.autoencoder_step(xb, zb))
        return losses

    def fit(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        *,
        real_sampler: TargetIdentitySampler | None = None,
        on_epoch: Callable[[AnonymizerTrainer, dict], None] | None = None,
    ) -> AdversarialHistory:
        """Run the remaining epochs; ``on_epoch(trainer, record)`` after each (checkpoints)."""
        x, z = x.to(self.device), z.to(self.device)
        while self.epoch < self.config.total_epochs:
            record = self.run_epoch(x, z, real_sampler=real_sampler)
            if on_epoch is not None:
                on_epoch(self, record)
        return self.history
