"""The privacy budget of a differentially private guard, and the report its model file carries.

Kept apart from :mod:`imgprivacy.docl.private_training` (which needs Opacus) so that reading a
model file never imports Opacus.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from imgprivacy.errors import InvalidInputError

DEFAULT_DELTA = 1e-5  # below 1/n for every user with fewer than 100,000 images


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

    def __post_init__(self) -> None:
        problems = []
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> PrivacyReport:
        """Parse the ``privacy`` metadata of a model file.

        Raises
        ------
        InvalidInputError
            When a field is missing, unknown, or a number is not finite and >= 0.
        """
        fields = set(cls.__dataclass_fields__)
        if not isinstance(values, dict) or set(values) != fields:
            raise InvalidInputError(
                f"privacy metadata must be an object with the fields {sorted(fields)}, got "
                f"{values!r}"
            )
        problems = [
            f"privacy.{name} must be a finite number >= 0, got {values[name]!r}"
            for name in sorted(fields - {"mechanism", "accountant"})
            if not isinstance(values[name], int | float)
            or isinstance(values[name], bool)
            or not math.isfinite(values[name])
            or values[name] < 0
        ]
        if problems:
            raise InvalidInputError(problems)
        return cls(**values)
