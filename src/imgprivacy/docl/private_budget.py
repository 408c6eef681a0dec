"""The privacy budget of a differentially private guard, and the report its model file carries.

Kept apart from :mod:`imgprivacy.docl.private_training` (which needs Opacus) so that reading a
model file never imports Opacus.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from imgprivacy.errors import InvalidInputError

DEFAULT_DELTA = 1e-5  # below 1/n for every user with fewer than 100,000 images
DP_OPTIMIZERS = ("adam", "adadelta", "sgd")  # "sgd" has momentum 0.9
DP_BATCH_SIZE = 512
DP_EPOCHS = 20
DP_LEARNING_RATE = 1e-2
DP_OPTIMIZER = "adam"  # the learning rate above is Adam's (Adadelta's textbook rate is 1.0)


@dataclass(frozen=True)
class PrivacyBudget:
    """How private a guard's training is: the (epsilon, delta) of its weights and statistics."""

    epsilon: float  # total privacy loss of the weights and mu/sigma together
    delta: float = DEFAULT_DELTA  # failure probability; keep it well below 1/(number of images)
    max_grad_norm: float = 1.0  # per-image gradient clipping bound of DP-SGD
    # Part of epsilon the statistics alone would cost; under Renyi composition 0.3 raises the
    # DP-SGD noise by only ~5% (the two add up sub-linearly).
    statistics_share: float = 0.3
    # Distances are clipped to this before mu and sigma are computed; None = input_dim / 8, which
    # holds the training distances of a useful model on MNIST-sized pixel features (the squared
    # norm of a typical digit is ~100 of 784).
    distance_clip: float | None = None
    # DP-SGD's own training settings (None = the model config's). DP-SGD wants far larger batches
    # than non-private training: the noise added to a batch's summed gradient does not grow with
    # the batch while the signal does; few passes keep the noise per step low. Chosen on a
    # validation split of MNIST users' training images (docs/threat-model.md).
    batch_size: int | None = DP_BATCH_SIZE  # expected size of a Poisson-sampled batch
    epochs: int | None = DP_EPOCHS  # passes over the images (every pass is paid for in epsilon)
    learning_rate: float | None = DP_LEARNING_RATE
    optimizer: str | None = DP_OPTIMIZER  # one of DP_OPTIMIZERS
    # A guard of the same architecture trained (without privacy) on PUBLIC images only, e.g.
    # Fashion-MNIST for digits: its layers ``public_layers`` are copied into the user's model and
    # frozen, so DP-SGD trains (and adds noise to) fewer parameters. Never a model trained on
    # anyone's private images: the guarantee does not cover what it was trained on.
    public_model: str | os.PathLike | None = None
    public_layers: tuple[int, ...] = field(default=(0,))  # layer indices; 0 = first (encoder)

    def __post_init__(self) -> None:
        problems = []
        object.__setattr__(self, "public_layers", tuple(self.public_layers))
        if not (isinstance(self.epsilon, int | float) and 0 < self.epsilon < math.inf):
            problems.append(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        if not (isinstance(self.delta, int | float) and 0 < self.delta < 1):
            problems.append(f"delta must be in (0, 1), got {self.delta!r}")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}")
        if not 0 < self.statistics_share < 1:
            problems.append(f"statistics_share must be in (0, 1), got {self.statistics_share!r}")
        if self.distance_clip is not None and not self.distance_clip > 0:
            problems.append(f"distance_clip must be > 0, got {self.distance_clip!r}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                problems.append(f"{name} must be a positive integer or None, got {value!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0 or None, got {self.learning_rate!r}")
        if self.optimizer is not None and self.optimizer not in DP_OPTIMIZERS:
            problems.append(
                f"optimizer must be one of {DP_OPTIMIZERS} or None, got {self.optimizer!r}"
            )
        if not all(isinstance(i, int) and i >= 0 for i in self.public_layers):
            problems.append(f"public_layers must be layer indices >= 0, got {self.public_layers!r}")
        if self.public_model is not None and not self.public_layers:
            problems.append("public_layers must name at least one layer when public_model is set")
        if problems:
            raise InvalidInputError(
                [
                    f"Invalid PrivacyBudget: {p}. Example: PrivacyBudget(epsilon=4.0)"
                    for p in problems
                ]
            )


@dataclass(frozen=True)
class PrivacyReport:
    """What a DP training spent; stored in the model file's metadata under ``privacy``."""

    mechanism: str  # "dp-sgd+gaussian-statistics"
    accountant: str  # "rdp" (Renyi DP, Opacus' analysis)
    epsilon: float  # the budget asked for
    epsilon_spent: float  # what the accountant computes for the run (<= epsilon)
    delta: float
    noise_multiplier: float  # DP-SGD noise, in units of max_grad_norm
    max_grad_norm: float
    statistics_noise: float  # noise of the statistics' release, in units of its sensitivity
    distance_clip: float
    # Recorded since DP training has its own settings (absent from older files: None / ()).
    steps: int | None = None  # DP-SGD steps taken
    batch_size: int | None = None  # expected Poisson batch
    frozen_layers: tuple[int, ...] = ()  # layers copied from a public model and not trained

    def to_dict(self) -> dict:
        values = asdict(self)
        values["frozen_layers"] = list(self.frozen_layers)
        return values

    @classmethod
    def from_dict(cls, values: object) -> PrivacyReport:
        """Parse the ``privacy`` metadata of a model file.

        Raises
        ------
        InvalidInputError
            When a field is missing, unknown, or a number is not finite and >= 0.
        """
        fields = set(cls.__dataclass_fields__)
        required = fields - _OPTIONAL_FIELDS
        if not isinstance(values, dict) or not required <= set(values) or not set(values) <= fields:
            raise InvalidInputError(
                f"privacy metadata must be an object with the fields {sorted(required)} (and "
                f"optionally {sorted(_OPTIONAL_FIELDS)}), got {values!r}"
            )
        values = dict(values)
        frozen = values.pop("frozen_layers", [])
        if not isinstance(frozen, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in frozen
        ):
            raise InvalidInputError(
                f"privacy.frozen_layers must be a list of layer indices >= 0, got {frozen!r}"
            )
        problems = [
            _number_problem(name, values[name])
            for name in sorted(set(values) - {"mechanism", "accountant"})
        ]
        problems = [p for p in problems if p]
        if problems:
            raise InvalidInputError(problems)
        return cls(**values, frozen_layers=tuple(frozen))


_OPTIONAL_FIELDS = {"steps", "batch_size", "frozen_layers"}


def _number_problem(name: str, value: object) -> str | None:
    """Why ``privacy.<name>`` is invalid (None if it is valid): counts are integers >= 1 or
    absent (None), everything else a finite number >= 0."""
    if name in _OPTIONAL_FIELDS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return None
        return f"privacy.{name} must be an integer >= 1 or null, got {value!r}"
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        return None
    return f"privacy.{name} must be a finite number >= 0, got {value!r}"
