"""Configuration of the identity-swap anonymizer (one frozen dataclass, a comment per field)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imgprivacy.anonymizer.substitution import canonical_substitution
from imgprivacy.errors import InvalidInputError

SWAP_SUBSTITUTIONS = ("none", "code-nearest")  # names in SUBSTITUTIONS this model can release

# Fields that fix the tensors' shapes: a saved model only loads under the same ones.
SWAP_ARCHITECTURE_FIELDS = ("image_size", "n_private", "channels", "code_dim", "adversary_hidden")


@dataclass(frozen=True)
class SwapConfig:
    """Hyper-parameters of the identity-swap anonymizer and of its training.

    Training runs ``epochs`` epochs of alternating updates: the adversary learns the identity
    from the code (eq. 14 on z), then the encoder and decoder minimise the reconstruction of x
    *rendered as its own identity* plus ``lam`` times eq. (12)'s gap |L_obj - L_priv| on the code
    (``lam`` rises linearly from 0 over ``lam_ramp_epochs``), plus ``cycle_weight`` times the
    round trip x -> random identity -> x's identity.
    """

    # -- data and architecture ------------------------------------------------------------------
    image_size: int = 50  # images are image_size x image_size, grey
    n_private: int = 6  # number of identities (private classes); set from the labels by fit()
    channels: int = 16  # channels of the first convolution (then 2x, 4x)
    code_dim: int = 32  # size of the identity-free code z
    adversary_hidden: int = 256  # width of the identity adversary's hidden layers (on z)
    dropout: float = 0.2  # dropout in the adversary
    # -- release ----------------------------------------------------------------------------
    target_identity: int = 0  # the identity every image is rendered as by transform()
    substitution: str = "none"  # "none": release decoder(z, target); "code-nearest": the
    # target's training image whose code is nearest to z (a real image of the target)
    # -- objective ------------------------------------------------------------------------------
    lam: float = 1.0  # weight of eq. (12)'s gap on the code against the reconstruction
    lam_ramp_epochs: int = 10  # lam grows linearly from 0 over these first epochs
    cycle_weight: float = 0.0  # weight of the round-trip (cycle) reconstruction, 0 = off
    # -- schedule and optimisation -------------------------------------------------------------
    epochs: int = 25  # training epochs
    adversary_steps: int = 1  # adversary updates per encoder-decoder update
    batch_size: int = 64  # images per update
    lr: float = 1e-3  # Adam learning rate of the encoder and decoder
    adversary_lr: float = 1e-3  # Adam learning rate of the adversary
    seed: int = 0  # seeds initialisation, shuffling, dropout and the cycle's identities

    def __post_init__(self) -> None:
        # an earlier name of the substitution (from a stored config) is kept as its current name
        object.__setattr__(self, "substitution", canonical_substitution(self.substitution))
        problems = []
        for name in ("image_size", "channels", "code_dim", "adversary_hidden", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("epochs", "lam_ramp_epochs", "adversary_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.n_private, int) or self.n_private < 2:
            problems.append(f"n_private must be an integer >= 2, got {self.n_private!r}")
        for name in ("lam", "cycle_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("lr", "adversary_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.substitution not in SWAP_SUBSTITUTIONS:
            problems.append(
                f"substitution must be one of {list(SWAP_SUBSTITUTIONS)}, got {self.substitution!r}"
            )
        if not isinstance(self.target_identity, int) or isinstance(self.target_identity, bool):
            problems.append(
                f"target_identity must be an integer private label, got {self.target_identity!r}"
            )
        if problems:
            raise InvalidInputError([f"Invalid SwapConfig: {p}" for p in problems])

    @property
    def input_dim(self) -> int:
        return self.image_size * self.image_size

    def lam_at(self, epoch: int) -> float:
        """Lambda during epoch ``epoch`` (0-based): the linear ramp, then ``lam``.

        Examples
        --------
        >>> [SwapConfig(lam=2.0, lam_ramp_epochs=4).lam_at(e) for e in (0, 2, 4, 9)]
        [0.0, 1.0, 2.0, 2.0]
        """
        if self.lam_ramp_epochs == 0:
            return float(self.lam)
        return float(self.lam) * min(1.0, epoch / self.lam_ramp_epochs)

    def replace(self, **changes) -> SwapConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SwapConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown SwapConfig fields {unknown}; known fields: {sorted(known)}."
            )
        return cls(**values)

    def architecture(self) -> dict:
        return {name: getattr(self, name) for name in SWAP_ARCHITECTURE_FIELDS}
