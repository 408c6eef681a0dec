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

The network and its distance are :mod:`imgprivacy.docl.autoencoder_net`, the epochs
:mod:`imgprivacy.docl.autoencoder_training`; this module is the model that holds them with its
statistics.

Score convention (everywhere in imgprivacy): the *distance* of an input to a model is its squared
Euclidean reconstruction error, lower = closer to the owner's data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from imgprivacy.docl.autoencoder_net import AutoencoderNet, seeded_net, squared_distances
from imgprivacy.docl.autoencoder_training import OPTIMIZERS, TrainHistory, train_autoencoder
from imgprivacy.docl.calibration import calibration_split, complement
from imgprivacy.docl.checkpoint import fingerprint
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.outlier_exposure import check_negatives
from imgprivacy.docl.private_budget import PrivacyBudget, PrivacyReport
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import DataNotFoundError, InvalidInputError, NotFittedError
from imgprivacy.fileio import write_atomic
from imgprivacy.progress import ProgressFactory, resolve

# AutoencoderNet, squared_distances, OPTIMIZERS and TrainHistory have their homes beside this
# module; they stay importable from here.
__all__ = [
    "OPTIMIZERS",
    "AutoencoderNet",
    "OneClassAutoencoder",
    "TrainHistory",
    "squared_distances",
]


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
        state = train_autoencoder(
            x[train_rows],
            config=cfg,
            device=self.device,
            negatives=negatives,
            checkpoint=checkpoint,
            run=run,
            resume=resume,
            progress=progress,
        )
        self.net_ = state.net
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
        net = seeded_net(self.config).to(self.device)
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
