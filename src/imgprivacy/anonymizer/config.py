"""Configuration of the anonymizer (one frozen dataclass, a comment per field).

The defaults fit pen-digits (20x20): the three networks are multi-layer perceptrons on the
flattened image, which train quickly on a CPU (why: ``docs/anonymizer.md``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imgprivacy.anonymizer.substitution import SUBSTITUTIONS, canonical_substitution
from imgprivacy.errors import InvalidInputError

AE_ARCHS = ("mlp", "conv")

# Fields that fix the tensors' shapes: a checkpoint can only be resumed by a config that agrees.
ARCHITECTURE_FIELDS = (
    "image_size",
    "n_private",
    "ae_arch",
    "ae_channels",
    "ae_hidden",
    "code_dim",
    "disc_hidden",
    "private_hidden",
)


@dataclass(frozen=True)
class AnonymizerConfig:
    """Hyper-parameters of the anonymizer and of its three-phase training (paper sec. 2).

    Phases (in epochs, run in this order): ``pretrain_epochs`` of autoencoder pre-training with a
    pixel loss; ``disc_pretrain_epochs`` of discriminator pre-training alternating with autoencoder
    updates (the private classifier is pre-trained on the autoencoder's outputs at the same time);
    ``adversarial_epochs`` of the eq. (12) game against the discriminator and the private branch.
    """

    # -- data and architecture ------------------------------------------------------------------
    image_size: int = 20  # images are image_size x image_size, grey, white ink on black
    n_private: int = 30  # number of private classes (writers); set from the labels by fit()
    ae_arch: str = "mlp"  # "mlp" (pen-digits) or "conv" (larger images such as 50x50 faces)
    ae_hidden: int = 256  # width of the MLP autoencoder's two hidden layers (encoder, decoder)
    ae_channels: int = 16  # channels of the conv autoencoder's first convolution (then 2x)
    code_dim: int = 32  # autoencoder bottleneck size
    disc_hidden: int = 128  # width of the discriminator's hidden layers q(y|v)
    private_hidden: int = 256  # width of the private classifier's hidden layers q(z|x_hat)
    dropout: float = 0.2  # dropout in the discriminator and the private classifier
    # -- target identity (the intertwined method, paper sec. 3) ------------------------------
    target_identity: int | None = None  # private label whose training images alone are the
    # discriminator's "real" samples (None = every training image, the standard method)
    # -- substitution (after the autoencoder) ---------------------------------------------------
    substitution: str = "prototypes"  # what replaces each autoencoded image, a name of
    # anonymizer.substitution.SUBSTITUTIONS: "none" - nothing (the autoencoder's output is
    # released); "prototypes" - the nearest of n_prototypes label-free k-means prototypes;
    # "target" - the nearest training image of target_identity (the paper's protocol)
    n_prototypes: int = 40  # number of prototypes when substitution == "prototypes"
    prototype_blur: float = 1.5  # Gaussian sigma (pixels) of the blur before clustering/matching
    # -- objective ------------------------------------------------------------------------------
    lam: float = 1.0  # lambda of eq. (12): weight of |L_obj - L_priv| against the fidelity BCE
    # weight of the BCE reconstruction anchor added to eq. (12) in phases 2-3 (sharper outputs
    # cluster by content better before substitution; measured: docs/anonymizer.md)
    recon_weight: float = 5.0
    # -- schedule -------------------------------------------------------------------------------
    pretrain_epochs: int = 8  # phase 1: autoencoder trained alone with the pixel loss (BCE)
    disc_pretrain_epochs: int = 4  # phase 2: discriminator (and private branch) pre-training
    adversarial_epochs: int = 6  # phase 3: the eq. (12) game
    private_refresh_epochs: int = 2  # phase 3: each epoch starts with a fresh private classifier
    # trained this many epochs on the current outputs (0 = keep co-training the same one)
    disc_steps: int = 1  # discriminator updates per autoencoder update (phases 2-3)
    private_steps: int = 2  # private-classifier updates per autoencoder update (phase 3)
    batch_size: int = 128  # images per update
    # -- optimisation ---------------------------------------------------------------------------
    ae_lr: float = 1e-3  # Adam learning rate of the autoencoder in phase 1
    adversarial_ae_lr: float = 1e-4  # Adam learning rate of the autoencoder in phases 2-3
    disc_lr: float = 1e-4  # Adam learning rate of the discriminator
    private_lr: float = 1e-3  # Adam learning rate of the private classifier
    seed: int = 0  # seeds initialisation, shuffling and dropout

    def __post_init__(self) -> None:
        # an earlier name of the substitution (from a stored config) is kept as its current name
        object.__setattr__(self, "substitution", canonical_substitution(self.substitution))
        problems = []
        positive_ints = (
            "image_size",
            "ae_hidden",
            "ae_channels",
            "code_dim",
            "disc_hidden",
            "private_hidden",
            "disc_steps",
            "private_steps",
            "batch_size",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_private, int) or self.n_private < 2:
            problems.append(
                f"n_private must be an integer >= 2 (a private label needs two classes), "
                f"got {self.n_private!r}"
            )
        for name in (
            "pretrain_epochs",
            "disc_pretrain_epochs",
            "adversarial_epochs",
            "private_refresh_epochs",
            "n_prototypes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("lam", "recon_weight", "prototype_blur"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("ae_lr", "adversarial_ae_lr", "disc_lr", "private_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.ae_arch not in AE_ARCHS:
            problems.append(f"ae_arch must be one of {list(AE_ARCHS)}, got {self.ae_arch!r}")
        method = (
            SUBSTITUTIONS.get(self.substitution) if isinstance(self.substitution, str) else None
        )
        if method is None:
            problems.append(
                f"substitution must be one of {list(SUBSTITUTIONS)}, got {self.substitution!r}"
            )
        else:
            problems += method.config_problems(self)
        if self.target_identity is not None and (
            not isinstance(self.target_identity, int) or isinstance(self.target_identity, bool)
        ):
            problems.append(
                f"target_identity must be an integer private label or None, got "
                f"{self.target_identity!r}"
            )
        if problems:
            raise InvalidInputError([f"Invalid AnonymizerConfig: {p}" for p in problems])

    @property
    def input_dim(self) -> int:
        return self.image_size * self.image_size

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.disc_pretrain_epochs + self.adversarial_epochs

    def replace(self, **changes) -> AnonymizerConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AnonymizerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"Unknown AnonymizerConfig fields {unknown}; known fields: {sorted(known)}."
            )
        return cls(**values)

    def architecture(self) -> dict:
        """The fields that fix tensor shapes (a checkpoint resumes only under the same ones)."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}
