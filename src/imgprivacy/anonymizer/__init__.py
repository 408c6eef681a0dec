"""The mutual-information anonymizer of Feutry, Piantanida & Duhamel (ICASSP 2020).

An autoencoder is trained against a discriminator (its outputs must pass for originals) and a
private-label classifier (eq. 12-15), so that its outputs keep their content while the private
label can no longer be recovered. Each output is then replaced as the config's ``substitution``
names (:mod:`~imgprivacy.anonymizer.substitution`): by the nearest of a few label-free prototypes
or, in the paper's intertwined method (whose discriminator sees only a target identity's images,
:mod:`~imgprivacy.anonymizer.target_identity`), by the nearest training image of that identity.
:class:`Anonymizer` is the facade (``fit`` / ``transform`` / ``save`` / ``load``);
:mod:`~imgprivacy.anonymizer.evaluate` holds the assessment attackers. Measurements behind the
design choices: ``docs/anonymizer.md``.
"""

from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.evaluate import (
    ATTACKERS,
    Assessment,
    AttackConfig,
    assess,
    assess_tasks,
    task_summary,
)
from imgprivacy.anonymizer.model import Anonymizer
from imgprivacy.anonymizer.substitution import SUBSTITUTIONS, get_substitution
from imgprivacy.anonymizer.trainer import AdversarialHistory, AnonymizerTrainer, phase_schedule

__all__ = [
    "ATTACKERS",
    "SUBSTITUTIONS",
    "AdversarialHistory",
    "Anonymizer",
    "AnonymizerConfig",
    "AnonymizerTrainer",
    "Assessment",
    "AttackConfig",
    "assess",
    "assess_tasks",
    "get_substitution",
    "phase_schedule",
    "task_summary",
]
