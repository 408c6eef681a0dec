"""Named anonymizer configurations per kind of data (measured choices: docs/anonymizer.md)."""

from __future__ import annotations

from imgprivacy.anonymizer.config import AnonymizerConfig


def faces_anonymizer_config(seed: int = 0, **overrides) -> AnonymizerConfig:
    """The anonymizer used on 50x50 faces.

    Chosen on FERG-like "studio" faces (per_cell=100, target 0, random forest on the released
    images; identity / expression, originals 100% / 97%, chance 17% / 14%):

    * a conv autoencoder: the MLP one reconstructed only a blurred average face;
    * 30 pre-training epochs and a 128-d code: with 10 epochs and 64 dims the autoencoder's own
      outputs kept the expression at 24% (lambda 0), with 30 / 128 at 85%;
    * lambda 0.1: at lambda 1 (anchor weight 1, 5 or 20) phase 3 collapsed every output to one
      blank image within two epochs (the private gap cannot close on six very distinct
      characters, so the autoencoder escapes to images the classifier cannot read); lambda 0
      keeps the identity (99% before, 76% after substitution); lambda 0.1 / 0.3: 30% / 27%
      identity and 22% / 21% expression after substitution.
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
