"""The mutual-information anonymizer of Feutry, Piantanida & Duhamel (ICASSP 2020).

An autoencoder is trained against a discriminator (its outputs must pass for originals) and a
private-label classifier (eq. 12-15), so that its outputs keep their content while the private
label can no longer be recovered; each output is then replaced by the nearest of a few
label-free prototypes (:mod:`~imgprivacy.anonymizer.substitution.prototypes`, which says why) or, in the
paper's intertwined method, by the nearest training image of a target identity whose images
alone the discriminator sees (:mod:`~imgprivacy.anonymizer_tools`).
:class:`Anonymizer` is the facade (``fit`` / ``transform`` / ``save`` / ``load``);
:mod:`~imgprivacy.anonymizer.evaluate` holds the assessment attackers.
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
from imgprivacy.anonymizer.trainer import AnonymizerTrainer, TrainHistory, phase_schedule

__all__ = [
    "ATTACKERS",
    "Anonymizer",
    "AnonymizerConfig",
    "AnonymizerTrainer",
    "Assessment",
    "AttackConfig",
    "TrainHistory",
    "assess",
    "assess_tasks",
    "phase_schedule",
    "task_summary",
]
