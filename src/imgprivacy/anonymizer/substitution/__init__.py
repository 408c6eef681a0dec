"""Substitution: what the anonymizer releases in place of its raw outputs, chosen by name.

``SUBSTITUTIONS`` maps the config's ``substitution`` value to its method
(:class:`~imgprivacy.anonymizer.substitution.base.SubstitutionMethod`):

* ``"none"`` - the autoencoder's outputs themselves (:class:`NoSubstitution`);
* ``"prototypes"`` - the nearest of a few label-free k-means prototypes
  (:class:`~imgprivacy.anonymizer.substitution.prototypes.PrototypeSubstitution`);
* ``"spectral-clusters"`` - the medoid training image of the output's label-free spectral
  cluster (:class:`~imgprivacy.anonymizer.substitution.spectral_clusters.SpectralClusterSubstitution`);
* ``"target"`` - the nearest training image of the target identity, the paper's protocol
  (:class:`~imgprivacy.anonymizer.substitution.target_nearest.TargetSubstitution`);
* ``"code-nearest"`` - the training image of the target identity whose learned representation
  is nearest (:class:`~imgprivacy.anonymizer.substitution.code_nearest.CodeNearestSubstitution`).

Names are kebab-case. A name an earlier version wrote into model files and configs stays readable:
:data:`SUBSTITUTION_ALIASES` maps it to its current name (``"code_nearest"`` is
``"code-nearest"``), and the configs store the current one.

Examples
--------
>>> sorted(SUBSTITUTIONS)
['code-nearest', 'none', 'prototypes', 'spectral-clusters', 'target']
>>> get_substitution("code_nearest").name  # an earlier name
'code-nearest'
>>> get_substitution("nearest")
Traceback (most recent call last):
...
imgprivacy.errors.UnknownNameError: Unknown substitution 'nearest'. Valid names: none, prototypes, target, code-nearest, spectral-clusters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgprivacy.anonymizer.substitution.base import SubstitutionMethod, to_uint8
from imgprivacy.anonymizer.substitution.code_nearest import CodeNearestSubstitution
from imgprivacy.anonymizer.substitution.prototypes import PrototypeSubstitution
from imgprivacy.anonymizer.substitution.spectral_clusters import SpectralClusterSubstitution
from imgprivacy.anonymizer.substitution.target_nearest import TargetSubstitution
from imgprivacy.errors import UnknownNameError

if TYPE_CHECKING:
    from imgprivacy.anonymizer.config import AnonymizerConfig


class NoSubstitution(SubstitutionMethod):
    """The autoencoder's outputs are released as they are (config value ``"none"``)."""

    name = "none"

    @classmethod
    def from_config(cls, config: AnonymizerConfig) -> NoSubstitution:
        return cls()

    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
    ) -> NoSubstitution:
        return self

    def transform(self, outputs: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        return to_uint8(outputs)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {}

    @classmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> NoSubstitution:
        return cls()


SUBSTITUTIONS: dict[str, type[SubstitutionMethod]] = {
    method.name: method
    for method in (
        NoSubstitution,
        PrototypeSubstitution,
        TargetSubstitution,
        CodeNearestSubstitution,
        SpectralClusterSubstitution,
    )
}

# Names earlier versions wrote into model files and configs -> their current (kebab-case) name.
SUBSTITUTION_ALIASES: dict[str, str] = {"code_nearest": "code-nearest"}


def canonical_substitution(name):
    """The current name of substitution ``name`` (an earlier name resolved; others unchanged).

    >>> canonical_substitution("code_nearest"), canonical_substitution("target")
    ('code-nearest', 'target')
    """
    return SUBSTITUTION_ALIASES.get(name, name) if isinstance(name, str) else name


def get_substitution(name: str) -> type[SubstitutionMethod]:
    """The registered substitution method called ``name`` (or an earlier name of it).

    Raises
    ------
    UnknownNameError
        Listing the registered names when ``name`` is not one of them.
    """
    try:
        return SUBSTITUTIONS[canonical_substitution(name)]
    except KeyError:
        raise UnknownNameError(
            f"Unknown substitution {name!r}. Valid names: {', '.join(SUBSTITUTIONS)}."
        ) from None


__all__ = [
    "SUBSTITUTIONS",
    "SUBSTITUTION_ALIASES",
    "CodeNearestSubstitution",
    "NoSubstitution",
    "PrototypeSubstitution",
    "SpectralClusterSubstitution",
    "SubstitutionMethod",
    "TargetSubstitution",
    "canonical_substitution",
    "get_substitution",
]
