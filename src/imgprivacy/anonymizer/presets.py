"""Named anonymizer configurations per kind of data (the measurements behind them:
``docs/anonymizer.md``)."""

from __future__ import annotations

from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig
from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.swap_config import SwapConfig


def faces_anonymizer_config(seed: int = 0, **overrides) -> AnonymizerConfig:
    """The anonymizer for 50x50 grey faces: a conv autoencoder with a 128-d code, lambda 0.1.

    30 pre-training epochs, 6 of discriminator pre-training, 6 adversarial; outputs released as
    they are (``substitution="none"``) unless ``overrides`` say otherwise, e.g.
    ``target_identity=0, substitution="target"`` for the paper's intertwined method.

    Examples
    --------
    >>> config = faces_anonymizer_config(target_identity=0, substitution="target")
    >>> config.image_size, config.ae_arch, config.lam, config.substitution
    (50, 'conv', 0.1, 'target')
    """
    values = dict(
        image_size=50,
        ae_arch="conv",
        ae_channels=16,
        code_dim=128,
        recon_weight=1.0,
        lam=0.1,
        substitution="none",
        pretrain_epochs=30,
        disc_pretrain_epochs=6,
        adversarial_epochs=6,
        seed=seed,
    )
    values.update(overrides)
    return AnonymizerConfig(**values)


def faces_swap_config(seed: int = 0, **overrides) -> SwapConfig:
    """The identity-swap anonymizer for 50x50 grey faces (measurements: ``docs/anonymizer.md``).

    Examples
    --------
    >>> config = faces_swap_config(target_identity=2, substitution="code-nearest")
    >>> config.image_size, config.target_identity, config.substitution
    (50, 2, 'code-nearest')
    """
    values = dict(image_size=50, seed=seed)
    values.update(overrides)
    return SwapConfig(**values)


def faces_code_match_config(seed: int = 0, **overrides) -> CodeMatchConfig:
    """The code-match anonymizer for 50x50 grey faces: a 64-d contrastive code, 100 epochs.

    The contrastive negatives are drawn within the anchor's identity (``negatives="identity"``),
    the encoder trains 100 epochs and, when the codes are whitened per identity, the whitening
    ridge is 0.1: all chosen on the validation images (``docs/results.md``, faces).
    ``epochs=60`` and ``epochs=25`` give the previous presets; ``negatives="all",
    whiten_ridge=0.01, epochs=15`` the earlier encoder and search.

    Examples
    --------
    >>> config = faces_code_match_config(target_identity=3)
    >>> config.target_identity, config.negatives, config.whiten_ridge, config.epochs
    (3, 'identity', 0.1, 100)
    """
    values = dict(
        image_size=50, code_dim=64, epochs=100, negatives="identity", whiten_ridge=0.1, seed=seed
    )
    values.update(overrides)
    return CodeMatchConfig(**values)
