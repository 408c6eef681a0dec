"""The one-class autoencoder a DOCL user trains on their own device (paper eq. 2-6).

Architecture D -> M (ReLU) -> D (sigmoid), trained with binary cross-entropy summed over features;
optionally with extra ReLU layers on both sides of the representation (``layer_widths``).
After ``fit`` it holds ``error_mean_`` and ``error_std_``: the mean and standard deviation of the
squared reconstruction distances of its training data (eq. 6), which the Guard turns into the
user's privacy interval. With ``config.calibration_fraction > 0`` that share of the user's images
is held out of training (a seeded split, :func:`~imgprivacy.docl.calibration.calibration_split`) and mu and sigma are those of
the held-out images' distances: the training images' distances understate those of the owner's
new images, so their interval misses some of them.

``fit`` is imgprivacy's one training loop (the edge client calls it too): with ``checkpoint=`` it
saves its whole state after every epoch, and ``resume=True`` continues a run exactly
(:mod:`imgprivacy.docl.checkpoint`). ``save`` / ``load`` (and ``to_bytes`` / ``from_bytes``) store
a fitted model as safetensors with its config and statistics (:mod:`imgprivacy.docl.persistence`).
The scikit-learn / PyOD outlier-detector interface (``predict``, ``score_samples``, ...) is
:class:`imgprivacy.docl.detector.OneClassAutoencoderDetector`, a thin estimator around this model.

Score convention (everywhere in imgprivacy): the *distance* of an input to a model is its squared
Euclidean reconstruction error, lower = closer to the owner's data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgprivacy.docl.calibration import calibration_split, complement
from imgprivacy.docl.checkpoint import (
    TrainingState,
    fingerprint,
    restore_checkpoint,
    save_checkpoint,
)
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.outlier_exposure import check_negatives, negative_hinge
from imgprivacy.docl.private_budget import PrivacyBudget, PrivacyReport
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import DataNotFoundError, InvalidInputError, NotFittedError
from imgprivacy.fileio import write_atomic
from imgprivacy.progress import ProgressFactory, resolve

logger = logging.getLogger(__name__)

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adadelta": torch.optim.Adadelta,
    "adam": torch.optim.Adam,
}


class AutoencoderNet(nn.Module):
    """Linear layers of sizes ``layer_dims`` with ReLU between them and none after the last.

    ``forward`` returns the decoder's logits (callers apply the sigmoid). Parameters are named
    ``layers.{i}.weight`` / ``layers.{i}.bias``; the paper's D -> M -> D has layers 0 and 1.
    """

    def __init__(self, layer_dims: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(layer_dims[:-1], layer_dims[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


@dataclass
class TrainHistory:
    """Mean BCE per sample (eq. 4) after each epoch."""

    epoch_loss: list[float] = field(default_factory=list)


def squared_distances(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Eq. (6): sum over features of the squared difference, one value per row."""
    return (x - reconstruction).square().sum(dim=1)


class OneClassAutoencoder:
    """One user's one-class model (scikit-learn style: ``fit`` returns ``self``).

    Parameters
    ----------
    config
        Hyper-parameters; ``AutoencoderConfig()`` gives imgprivacy's default,
        ``AutoencoderConfig.paper()`` the paper's exact training.
    device
        Torch device for training and scoring.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(64, 16)
    >>> config = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(8,), epochs=2)
    >>> model = OneClassAutoencoder(config).fit(x)
    >>> model.distances(x).shape
    torch.Size([64])
    >>> model.error_std_ > 0
    True
    >>> OneClassAutoencoder.from_bytes(model.to_bytes()).error_mean_ == model.error_mean_
    True
    """

    def __init__(self, config: AutoencoderConfig | None = None, *, device: str = "cpu"):
        self.config = config or AutoencoderConfig()
        self.device = device

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray | torch.Tensor,
        *,
        negatives: np.ndarray | torch.Tensor | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: ProgressFactory | None = None,
        privacy: PrivacyBudget | None = None,
    ) -> OneClassAutoencoder:
        """Train on features ``x`` of shape (K, D) in [0, 1], then record the error statistics.

        Parameters
        ----------
        x
            The owner's features, (K, D) with K >= 2 (K >= 4 with ``calibration_fraction``);
            ``config.calibration_fraction`` of them are held out of training to compute mu and
            sigma (:func:`~imgprivacy.docl.calibration.calibration_split`).
        negatives
            Public images that are nobody's private data, as features (N, D); required with
            ``config.negative_weight > 0`` (outlier exposure,
            :mod:`imgprivacy.docl.outlier_exposure`), refused without it.
        checkpoint
            When given, the whole training state (network, optimizer, shuffling and noise
            generator, losses) is written to this file atomically after every epoch.
        resume
            Continue from ``checkpoint`` if that file exists (else start from the first epoch).
            The resumed run ends with exactly the weights, statistics and losses of an
            uninterrupted one. Only ``epochs`` may differ from the checkpointed run's config.
        progress
            Reports one step per epoch, its status the epoch's loss.
        privacy
            Train with differential privacy within this budget (DP-SGD, and mu and sigma by the
            Gaussian mechanism; :mod:`imgprivacy.docl.private_training`, needs Opacus, the
            ``dp`` extra). ``privacy_`` then reports what was spent and the model file records
            it. Not resumable: ``checkpoint`` must be None.

        Raises
        ------
        InvalidInputError
            For a wrong shape, non-finite values, values outside [0, 1] or fewer than 2 rows
            (fewer than 2 left to train on after the calibration split);
            for ``resume`` without ``checkpoint``; for a checkpoint of other features, another
            config or more epochs than ``config.epochs``; for ``privacy`` with ``checkpoint``;
            for ``negatives`` without ``negative_weight`` or the reverse.
        CorruptFileError
            When ``resume`` finds a file at ``checkpoint`` that is not a readable checkpoint.
        """
        cfg = self.config
        x = as_feature_matrix(x, input_dim=cfg.input_dim, what="training features")
        if len(x) < 2:
            raise InvalidInputError(
                f"Expected at least 2 training images to estimate the error statistics, got {len(x)}."
            )
        if resume and checkpoint is None:
            raise InvalidInputError(
                "resume=True needs the checkpoint file to resume from: pass checkpoint=PATH."
            )
        negatives = check_negatives(negatives, config=cfg, private=privacy is not None)
        train_rows, held_out = calibration_split(len(x), config=cfg)
        if privacy is not None:
            return self._fit_private(
                x, privacy, held_out=held_out, checkpoint=checkpoint, progress=progress
            )
        run = fingerprint(x, cfg, negatives=negatives) if checkpoint is not None else ""
        # eq. (6) statistics from the held-out rows when there are any, else the training rows
        calibration = x[held_out] if len(held_out) else x
        x = x[train_rows]
        net = _seeded_net(cfg).to(self.device)
        state = TrainingState(
            net=net,
            optimizer=OPTIMIZERS[cfg.optimizer](
                net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
            ),
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        if resume and Path(checkpoint).is_file():
            restore_checkpoint(checkpoint, state, run=run, epochs=cfg.epochs)
            logger.info("resuming from %s after epoch %d/%d", checkpoint, state.epoch, cfg.epochs)
        advance = resolve(progress)("training autoencoder", cfg.epochs)
        for _ in range(state.epoch):
            advance("resumed")
        data = x.to(self.device)
        if negatives is not None:
            negatives = negatives.to(self.device)
        net.train()
        for epoch in range(state.epoch, cfg.epochs):
            state.epoch_loss.append(_train_epoch(state, data, cfg, negatives))
            state.epoch = epoch + 1
            logger.debug("epoch %d/%d loss %.4f", state.epoch, cfg.epochs, state.epoch_loss[-1])
            if checkpoint is not None:
                save_checkpoint(checkpoint, state, run=run)
            advance(f"loss {state.epoch_loss[-1]:.3f}")
        net.eval()
        self.net_ = net
        self.history_ = TrainHistory(state.epoch_loss)
        statistics_distances = self.distances(calibration)
        self.error_mean_ = float(statistics_distances.mean())
        self.error_std_ = float(statistics_distances.std())
        self.calibration_size_ = len(held_out)
        self.privacy_ = None
        return self

    def _fit_private(
        self,
        x: torch.Tensor,
        budget: PrivacyBudget,
        *,
        held_out: torch.Tensor,
        checkpoint: str | os.PathLike | None,
        progress: ProgressFactory | None,
    ) -> OneClassAutoencoder:
        from imgprivacy.docl.private_training import train_private

        if checkpoint is not None:
            raise InvalidInputError(
                "Differentially private training cannot be checkpointed or resumed (a resumed "
                "run would spend its privacy budget twice): pass checkpoint=None."
            )
        net = _seeded_net(self.config).to(self.device)
        advance = resolve(progress)("training autoencoder (DP)", self.config.epochs)
        train_rows = complement(held_out, len(x))
        calibration = x[held_out].to(self.device) if len(held_out) else None
        losses, mu, sigma, report = train_private(
            net,
            x[train_rows].to(self.device),
            config=self.config,
            budget=budget,
            advance=advance,
            calibration=calibration,
        )
        self.calibration_size_ = len(held_out)
        self.net_ = net.eval()
        self.history_ = TrainHistory(losses)
        self.error_mean_, self.error_std_ = mu, sigma
        self.privacy_ = report
        return self

    # -- scoring --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(
                "This OneClassAutoencoder is not fitted yet. Call fit(features) first, or "
                "load a saved model with OneClassAutoencoder.load(path)."
            )

    def reconstruct(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Reconstructions (eq. 3) of features of shape (B, D), on the CPU."""
        self._check_fitted()
        x = as_feature_matrix(x, input_dim=self.config.input_dim, what="features")
        with torch.inference_mode():
            return torch.sigmoid(self.net_(x.to(self.device))).cpu()

    def distances(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Squared reconstruction distance (eq. 6) of each row of ``x``; lower = closer.

        Returns a float32 tensor of shape (B,) on the CPU.
        """
        self._check_fitted()
        x = as_feature_matrix(x, input_dim=self.config.input_dim, what="features")
        return self._distances(x)

    def _distances(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`distances` of an already validated float32 (B, D) tensor, without the [0, 1]
        check (the detector's ``rescale`` scores inputs beyond the training range)."""
        with torch.inference_mode():
            reconstruction = torch.sigmoid(self.net_(x.to(self.device))).cpu()
        return squared_distances(x, reconstruction)

    def weights(self) -> dict[str, torch.Tensor]:
        """The parameter tensors by name: ``layers.{i}.weight`` is (out_i, in_i)."""
        self._check_fitted()
        return {name: p.detach().cpu().contiguous() for name, p in self.net_.state_dict().items()}

    @classmethod
    def from_weights(
        cls,
        config: AutoencoderConfig,
        weights: dict[str, torch.Tensor],
        *,
        error_mean: float,
        error_std: float,
        privacy: PrivacyReport | None = None,
        device: str = "cpu",
    ) -> OneClassAutoencoder:
        """Rebuild a fitted model from validated weights and statistics (and, for a DP model,
        the report of its privacy budget)."""
        model = cls(config, device=device)
        net = AutoencoderNet(config.layer_dims)
        net.load_state_dict(weights)
        model.net_ = net.to(device).eval()
        model.history_ = TrainHistory()
        model.error_mean_ = float(error_mean)
        model.error_std_ = float(error_std)
        model.calibration_size_ = None  # not recorded in model files: only the fraction is
        model.privacy_ = privacy
        return model

    # -- persistence ----------------------------------------------------------------------
    # The file format lives in imgprivacy.docl.persistence, which imports this module; hence the
    # imports inside the methods.
    def to_bytes(self) -> bytes:
        """The fitted model as safetensors bytes: weights plus JSON metadata (config, mu, sigma).

        Raises
        ------
        NotFittedError
            When the model has not been fitted or loaded.
        """
        from imgprivacy.docl.persistence import encode

        self._check_fitted()
        return encode(self)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, source: str = "upload", device: str = "cpu"
    ) -> OneClassAutoencoder:
        """Parse and validate bytes written by :meth:`to_bytes` (``source`` names them in errors).

        Raises
        ------
        CorruptFileError
            When the bytes are not a safetensors file written by imgprivacy.
        InvalidInputError
            Listing every tensor or statistic that does not match the declared architecture.
        """
        from imgprivacy.docl.persistence import autoencoder_from_bytes

        return autoencoder_from_bytes(data, source=source, device=device)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to ``path`` atomically (temporary file, then rename).

        Raises
        ------
        NotFittedError
            When the model has not been fitted or loaded.
        """
        return write_atomic(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> OneClassAutoencoder:
        """Read a model written by :meth:`save`, validating everything in it.

        Raises
        ------
        DataNotFoundError
            When there is no file at ``path``.
        CorruptFileError, InvalidInputError
            As :meth:`from_bytes`.
        """
        path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(f"Expected an autoencoder file at {path}, but there is none.")
        return cls.from_bytes(path.read_bytes(), source=str(path), device=device)


def _train_epoch(
    state: TrainingState,
    data: torch.Tensor,
    cfg: AutoencoderConfig,
    negatives: torch.Tensor | None = None,
) -> float:
    """One pass over ``data`` in a shuffled order; the mean BCE per sample (eq. 4), without the
    hinge on ``negatives`` (outlier exposure) when there are any."""
    device = data.device
    order = torch.randperm(len(data), generator=state.generator).to(device)
    total = 0.0
    for start in range(0, len(data), cfg.batch_size):
        batch = data[order[start : start + cfg.batch_size]]
        inputs = batch
        if cfg.input_noise > 0:
            noise = torch.randn(batch.shape, generator=state.generator).to(device)
            inputs = (batch + cfg.input_noise * noise).clamp(0.0, 1.0)
        logits = state.net(inputs)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch, reduction="sum")
        objective = loss / len(batch)
        if negatives is not None:
            objective = objective + negative_hinge(
                state.net, batch, logits, negatives, config=cfg, generator=state.generator
            )
        state.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        state.optimizer.step()
        total += loss.item()
    return total / len(data)


def _seeded_net(cfg: AutoencoderConfig) -> AutoencoderNet:
    """Initialise with a private generator so fitting never touches the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return AutoencoderNet(cfg.layer_dims)
