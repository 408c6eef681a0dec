"""Configuration of the one-class autoencoder (one frozen dataclass, a comment per field)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imgprivacy.docl.defaults import (
    DEFAULT_FEATURE_EXTRACTOR,
    edge_negative_weight,
    model_defaults,
)
from imgprivacy.errors import InvalidInputError

OPTIMIZER_NAMES = ("adadelta", "adam")
# Held-out share of a user's images for mu and sigma: more than half would leave the model fewer
# images to learn from than to be judged on.
CALIBRATION_RANGE = (0.0, 0.5)
# Outlier exposure (``negative_weight``): the hinge margin in standard deviations of the batch's
# own distances; below 0 it would ask nothing of the negatives that the owner's images meet.
NEGATIVE_MARGIN_RANGE = (0.0, 20.0)
_DEFAULT = model_defaults(DEFAULT_FEATURE_EXTRACTOR)  # the field defaults below


@dataclass(frozen=True)
class AutoencoderConfig:
    """Hyper-parameters of a user's one-class autoencoder.

    The defaults are imgprivacy's model for the default feature extractor
    (:mod:`imgprivacy.docl.defaults`), trained on the owner's images only; :meth:`for_features`
    gives the default model of any extractor, :meth:`for_edge` the one a device trains by
    default (with the public negative set) and :meth:`paper` the paper's exact training.
    """

    input_dim: int = _DEFAULT["input_dim"]  # D, the feature dimension (784 = 28x28 pixels)
    hidden_dim: int = _DEFAULT["hidden_dim"]  # M, the representation size (paper: 32)
    # Widths of extra ReLU layers on each side of the representation: () is the paper's
    # D -> M -> D; (256,) is D -> 256 -> M -> 256 -> D (mirrored in the decoder).
    layer_widths: tuple[int, ...] = _DEFAULT["layer_widths"]
    epochs: int = _DEFAULT["epochs"]  # passes over the user's images
    batch_size: int = _DEFAULT["batch_size"]  # images per gradient step
    optimizer: str = _DEFAULT["optimizer"]  # "adam" or "adadelta" (the paper's)
    learning_rate: float = _DEFAULT["learning_rate"]  # Adam's step (Adadelta's textbook: 1.0)
    weight_decay: float = 0.0  # L2 penalty on all parameters
    input_noise: float = 0.0  # std of Gaussian noise added to inputs (denoising AE); 0 = paper
    seed: int = 0  # seeds initialisation, shuffling, noise and the calibration split
    # Fraction of the user's images held out of training to compute mu and sigma (eq. 6) from
    # their distances; 0 = the paper: mu and sigma from the training images' distances, which
    # the model fits better than new images of the same owner.
    calibration_fraction: float = _DEFAULT.get("calibration_fraction", 0.0)
    # Outlier exposure: weight lambda of a hinge that pushes a public negative set (images that
    # are nobody's private data, passed to ``fit(negatives=...)``) out of the owner's interval:
    # lambda * mean(relu(m - d_neg)) with m = mean + negative_margin * std of the batch's own
    # distances. 0 = the paper: the owner's images only. mu and sigma stay the owner's.
    negative_weight: float = _DEFAULT.get("negative_weight", 0.0)
    negative_margin: float = _DEFAULT.get("negative_margin", 3.0)  # m in the owner's stds
    feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR  # name in imgprivacy.features.FEATURES

    def __post_init__(self) -> None:
        problems = []
        for name in ("input_dim", "hidden_dim", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "layer_widths", tuple(self.layer_widths))
        if not all(isinstance(w, int) and w >= 1 for w in self.layer_widths):
            problems.append(f"layer_widths must be positive integers, got {self.layer_widths!r}")
        if self.optimizer not in OPTIMIZER_NAMES:
            problems.append(f"optimizer must be one of {OPTIMIZER_NAMES}, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.input_noise >= 0:
            problems.append(f"input_noise must be >= 0, got {self.input_noise!r}")
        low, high = CALIBRATION_RANGE
        if not (
            isinstance(self.calibration_fraction, (int, float))
            and not isinstance(self.calibration_fraction, bool)
            and low <= self.calibration_fraction <= high
        ):
            problems.append(
                f"calibration_fraction must be a number in [{low}, {high}] (0 = the paper's "
                f"statistics from the training images, e.g. 0.2 holds out a fifth of the images "
                f"to compute them), got {self.calibration_fraction!r}"
            )
        if not (_is_number(self.negative_weight) and self.negative_weight >= 0):
            problems.append(
                f"negative_weight must be a number >= 0 (0 = train on the owner's images only, "
                f"e.g. 1.0 pushes the public negatives out of the interval), got "
                f"{self.negative_weight!r}"
            )
        low, high = NEGATIVE_MARGIN_RANGE
        if not (_is_number(self.negative_margin) and low <= self.negative_margin <= high):
            problems.append(
                f"negative_margin must be a number in [{low}, {high}] (standard deviations of "
                f"the owner's distances, e.g. 3.0), got {self.negative_margin!r}"
            )
        if problems:
            raise InvalidInputError([f"Invalid AutoencoderConfig: {p}" for p in problems])

    @classmethod
    def for_features(cls, feature_extractor: str, **overrides) -> AutoencoderConfig:
        """The default model of ``feature_extractor`` (:mod:`imgprivacy.docl.defaults`), with
        ``overrides`` (e.g. ``epochs=10``) applied.

        Raises
        ------
        UnknownNameError
            When ``feature_extractor`` has no default model (the message lists those that do).
        """
        values = dict(model_defaults(feature_extractor), feature_extractor=feature_extractor)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_edge(
        cls, feature_extractor: str = DEFAULT_FEATURE_EXTRACTOR, **overrides
    ) -> AutoencoderConfig:
        """The model a device trains by default: :meth:`for_features` plus the public negative
        set where it was measured better (``negative_weight`` 1 for ``pixels-smooth``, the
        default extractor; :data:`~imgprivacy.docl.defaults.EDGE_NEGATIVE_WEIGHT`), with
        ``overrides`` applied (``negative_weight=0`` turns the negatives off).

        ``fit`` of such a config needs ``negatives=`` (the features of
        :func:`imgprivacy.data.public_negative_images`); :func:`imgprivacy.client.train_guard`
        loads them itself.
        """
        values = {"negative_weight": edge_negative_weight(feature_extractor), **overrides}
        return cls.for_features(feature_extractor, **values)

    @classmethod
    def paper(cls, **overrides) -> AutoencoderConfig:
        """The paper's exact model: 784-32-784 on raw pixels, BCE, Adadelta, no noise or penalty,
        mu and sigma from the training images."""
        values = dict(
            input_dim=784,
            feature_extractor="pixels",
            hidden_dim=32,
            layer_widths=(),
            optimizer="adadelta",
            learning_rate=1.0,
            weight_decay=0.0,
            input_noise=0.0,
            calibration_fraction=0.0,
            negative_weight=0.0,
            epochs=50,
            batch_size=128,
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> AutoencoderConfig:
        return dataclasses.replace(self, **changes)

    @property
    def layer_dims(self) -> list[int]:
        """Sizes of every layer from input to output, e.g. [784, 256, 32, 256, 784]."""
        widths = list(self.layer_widths)
        return [self.input_dim, *widths, self.hidden_dim, *reversed(widths), self.input_dim]

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["layer_widths"] = list(self.layer_widths)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> AutoencoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown AutoencoderConfig fields {unknown}; known fields: {sorted(known)}."
            )
        return cls(**values)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
