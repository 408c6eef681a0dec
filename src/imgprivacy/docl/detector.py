"""A scikit-learn / PyOD-style outlier detector around :class:`OneClassAutoencoder`.

:class:`OneClassAutoencoderDetector` takes the autoencoder's hyper-parameters as flat keyword
arguments (so ``get_params``, ``set_params``, ``clone``, ``Pipeline`` and ``GridSearchCV`` work),
learns the input dimension from ``X``, and decides with the upper bound of the paper's privacy
interval, ``threshold_ = mu + alpha * sigma`` (sec. 2.2, with mu and sigma of eq. 6).

Score conventions
-----------------
``distances(X)``
    imgprivacy's convention everywhere: the squared reconstruction distance, lower = closer to
    the owner's data.
``score_samples(X)``
    scikit-learn's convention for outlier detectors: higher = more normal, so ``-distances(X)``.
``decision_function(X)``
    ``threshold_ - distances(X)`` (= ``score_samples(X) - offset_``): >= 0 inside the interval's
    upper bound. The lower bound ``mu - alpha * sigma`` is not used: an input reconstructed even
    better than the owner's typical training image is no less like their data.
``predict(X)``
    +1 (inlier) where ``decision_function(X) >= 0``, else -1 (outlier).

Every method takes numpy arrays (or torch tensors, or lists) and returns numpy arrays.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from imgprivacy import errors
from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.errors import InvalidInputError, check_problems
from imgprivacy.progress import ProgressFactory

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6 validates through a private method

    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)


# The detector's defaults are the library's default model (imgprivacy.docl.defaults).
_DEFAULT = AutoencoderConfig()

# The AutoencoderConfig fields the detector takes as hyper-parameters; input_dim comes from X.
CONFIG_PARAMS = (
    "hidden_dim",
    "layer_widths",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "weight_decay",
    "input_noise",
    "seed",
    "feature_extractor",
    "calibration_fraction",
    "negative_weight",
    "negative_margin",
)


class NotFittedError(errors.NotFittedError, SklearnNotFittedError):
    """imgprivacy's :class:`~imgprivacy.errors.NotFittedError` that scikit-learn recognises too."""


class OneClassAutoencoderDetector(OutlierMixin, BaseEstimator):
    """One-class autoencoder outlier detector (scikit-learn / PyOD conventions).

    Parameters
    ----------
    hidden_dim, layer_widths, epochs, batch_size, optimizer, learning_rate, weight_decay, \
input_noise, seed, feature_extractor, calibration_fraction, negative_weight, negative_margin
        The :class:`~imgprivacy.docl.config.AutoencoderConfig` fields of the same names, with the
        same defaults; they are validated by ``fit``.
    alpha
        Width of the privacy interval in standard deviations: ``threshold_ = mu + alpha * sigma``
        (the paper uses 1 to 2). A finite number >= 0.
    rescale
        False (default): features must already be in [0, 1], as the binary cross-entropy of
        eq. 4 needs (pixels / 255; the paper's setting). True: ``fit`` learns each feature's
        minimum and range and maps the training features onto [0, 1] (like ``MinMaxScaler``);
        scoring applies the same map without clipping, so inputs beyond the training range score
        as far.
    device
        Torch device for training and scoring.

    Attributes
    ----------
    model_ : OneClassAutoencoder
        The fitted autoencoder (save it with ``model_.save(path)`` when ``rescale=False``).
    n_features_in_ : int
        D, the number of features seen by ``fit``.
    error_mean_, error_std_ : float
        mu and sigma of the training distances (eq. 6), or of the held-out images' distances
        with ``calibration_fraction > 0``.
    threshold_ : float
        ``error_mean_ + alpha * error_std_``, the largest distance predicted as an inlier.
    offset_ : float
        ``-threshold_``, so that ``decision_function = score_samples - offset_`` (scikit-learn).
    feature_min_, feature_range_ : ndarray of shape (n_features_in_,) or None
        The learned map ``(X - feature_min_) / feature_range_`` when ``rescale=True``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(0.4, 0.6, size=(64, 8))
    >>> detector = OneClassAutoencoderDetector(hidden_dim=2, layer_widths=(), epochs=3)
    >>> detector.fit(x).predict(np.ones((2, 8)))
    array([-1, -1])
    >>> bool((detector.predict(x) == 1).mean() > 0.5)  # most training rows are within mu + sigma
    True
    >>> bool((detector.score_samples(x) == -detector.distances(x)).all())
    True
    """

    def __init__(
        self,
        *,
        hidden_dim: int = _DEFAULT.hidden_dim,
        layer_widths: tuple[int, ...] = _DEFAULT.layer_widths,
        epochs: int = _DEFAULT.epochs,
        batch_size: int = _DEFAULT.batch_size,
        optimizer: str = _DEFAULT.optimizer,
        learning_rate: float = _DEFAULT.learning_rate,
        weight_decay: float = _DEFAULT.weight_decay,
        input_noise: float = _DEFAULT.input_noise,
        seed: int = _DEFAULT.seed,
        feature_extractor: str = _DEFAULT.feature_extractor,
        calibration_fraction: float = _DEFAULT.calibration_fraction,
        negative_weight: float = _DEFAULT.negative_weight,
        negative_margin: float = _DEFAULT.negative_margin,
        alpha: float = 1.0,
        rescale: bool = False,
        device: str = "cpu",
    ):
        self.hidden_dim = hidden_dim
        self.layer_widths = layer_widths
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.input_noise = input_noise
        self.seed = seed
        self.feature_extractor = feature_extractor
        self.calibration_fraction = calibration_fraction
        self.negative_weight = negative_weight
        self.negative_margin = negative_margin
        self.alpha = alpha
        self.rescale = rescale
        self.device = device

    @classmethod
    def from_model(
        cls, model: OneClassAutoencoder, *, alpha: float = 1.0
    ) -> OneClassAutoencoderDetector:
        """Wrap a fitted (or loaded) model; its config becomes the detector's hyper-parameters.

        Raises
        ------
        NotFittedError
            When ``model`` is not fitted.
        """
        if not hasattr(model, "net_"):
            raise NotFittedError(
                "from_model needs a fitted OneClassAutoencoder: call model.fit(features) or "
                "OneClassAutoencoder.load(path) first."
            )
        config = model.config
        detector = cls(
            **{name: getattr(config, name) for name in CONFIG_PARAMS},
            alpha=alpha,
            device=model.device,
        )
        detector.feature_min_ = detector.feature_range_ = None
        detector._set_fitted(model, n_features=config.input_dim)
        return detector

    # -- fitting --------------------------------------------------------------------------
    def fit(
        self,
        X,
        y=None,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: ProgressFactory | None = None,
        negatives=None,
    ) -> OneClassAutoencoderDetector:
        """Train the autoencoder on ``X`` of shape (n_samples, n_features); ``y`` is ignored.

        ``checkpoint``, ``resume`` and ``progress`` are passed to :meth:`OneClassAutoencoder.fit`,
        and so are ``negatives`` (with ``negative_weight > 0``; mapped like ``X`` and clipped to
        [0, 1] with ``rescale``).

        Raises
        ------
        InvalidInputError
            For invalid hyper-parameters, fewer than 2 samples, NaN or infinite values, or
            (``rescale=False``) values outside [0, 1].
        """
        X = self._validate(X, reset=True, check_range=not self.rescale)
        config = self._config(n_features=X.shape[1])
        low = span = None
        if self.rescale:
            low = X.min(axis=0)
            span = X.max(axis=0) - low
            span = np.where(span > 0, span, 1.0)  # a constant feature maps to 0
        model = OneClassAutoencoder(config, device=self.device)
        if negatives is not None:
            negatives = _to_tensor(np.asarray(negatives, dtype=np.float64), low, span)
            negatives = negatives.clamp(0.0, 1.0) if self.rescale else negatives
        model.fit(
            _to_tensor(X, low, span),
            negatives=negatives,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
        )
        self.feature_min_, self.feature_range_ = low, span
        self._set_fitted(model, n_features=X.shape[1])
        return self

    def fit_predict(self, X, y=None, **fit_params) -> np.ndarray:
        """``fit(X, **fit_params).predict(X)``: +1 / -1 for each training sample."""
        return self.fit(X, y, **fit_params).predict(X)

    def _config(self, *, n_features: int) -> AutoencoderConfig:
        """The hyper-parameters as a validated AutoencoderConfig for ``n_features`` inputs."""
        problems = []
        try:
            alpha_ok = math.isfinite(self.alpha) and self.alpha >= 0
        except TypeError:
            alpha_ok = False
        if not alpha_ok:
            problems.append(
                f"alpha must be a finite number >= 0 (the paper uses 1 to 2), got {self.alpha!r}"
            )
        values = {name: _plain(getattr(self, name)) for name in CONFIG_PARAMS}
        try:
            config = AutoencoderConfig(input_dim=n_features, **values)
        except InvalidInputError as exc:
            problems = exc.problems + problems
        check_problems(problems)
        return config

    def _set_fitted(self, model: OneClassAutoencoder, *, n_features: int) -> None:
        self.model_ = model
        self.n_features_in_ = n_features
        self.error_mean_ = model.error_mean_
        self.error_std_ = model.error_std_
        self.threshold_ = float(model.error_mean_ + self.alpha * model.error_std_)
        self.offset_ = -self.threshold_

    # -- scoring --------------------------------------------------------------------------
    def distances(self, X) -> np.ndarray:
        """Squared reconstruction distance (eq. 6) per sample, shape (n_samples,), float64.

        imgprivacy's convention: lower = closer to the training data.
        """
        self._check_fitted()
        # The fitted map decides, not the current ``rescale`` (set_params takes effect at fit).
        X = self._validate(X, reset=False, check_range=self.feature_min_ is None)
        features = _to_tensor(X, self.feature_min_, self.feature_range_)
        distances = self.model_._distances(features)
        return distances.numpy().astype(np.float64)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's convention, higher = more normal: ``-distances(X)``, (n_samples,)."""
        return -self.distances(X)

    def decision_function(self, X) -> np.ndarray:
        """``threshold_ - distances(X)``, (n_samples,): >= 0 for inliers, < 0 for outliers."""
        distances = self.distances(X)
        return self.threshold_ - distances

    def predict(self, X) -> np.ndarray:
        """+1 for inliers (distance <= ``threshold_``), -1 for outliers, shape (n_samples,)."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # -- input checks ---------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call fit(X) first, or wrap a "
                "saved model with OneClassAutoencoderDetector.from_model("
                "OneClassAutoencoder.load(path))."
            )

    def _validate(self, X, *, reset: bool, check_range: bool) -> np.ndarray:
        """scikit-learn's checks (2-D, finite, dense, feature count) raised as InvalidInputError,
        and the [0, 1] range when ``check_range``."""
        if torch.is_tensor(X):
            X = X.detach().cpu().numpy()
        try:
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_min_samples=2 if reset else 1,
            )
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        if check_range:
            low, high = X.min(), X.max()
            if low < 0 or high > 1:
                raise InvalidInputError(
                    f"Expected features in [0, 1], got values in [{low:.3g}, {high:.3g}]. Scale "
                    "pixels by 1/255, put MinMaxScaler(clip=True) before the detector in a "
                    "Pipeline, or pass rescale=True."
                )
        return X


def _to_tensor(X: np.ndarray, low: np.ndarray | None, span: np.ndarray | None) -> torch.Tensor:
    """The validated array, mapped by ``(X - low) / span`` when rescaling, as the float32 tensor
    the network takes (a copy, never a view of a possibly read-only array)."""
    if low is not None:
        X = (X - low) / span
    return torch.tensor(X, dtype=torch.float32)


def _plain(value):
    """numpy scalars (e.g. from a GridSearchCV grid) as the Python numbers the config expects."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value
