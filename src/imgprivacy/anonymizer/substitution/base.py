"""The interface every substitution method implements (registered in ``SUBSTITUTIONS``).

A substitution decides what the anonymizer releases in place of each autoencoded image. Its life:
:meth:`~SubstitutionMethod.from_config` stores the hyper-parameters, :meth:`~SubstitutionMethod.fit`
learns its state from the training images (state attributes end in ``_``),
:meth:`~SubstitutionMethod.transform` turns autoencoder outputs into released uint8 pixels, and
:meth:`~SubstitutionMethod.state` / :meth:`~SubstitutionMethod.from_state` save and restore it as
tensors (stored in the model file beside the autoencoder's weights, under ``tensor_names``) plus
JSON metadata.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from imgprivacy.errors import InvalidInputError, NotFittedError

if TYPE_CHECKING:  # the config imports the registry, so only its type is imported here
    from imgprivacy.anonymizer.config import AnonymizerConfig


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] -> uint8 in [0, 255], rounding halves to even (as ``np.rint``)."""
    return torch.from_numpy(np.rint(pixels.detach().cpu().numpy() * 255.0).astype(np.uint8))


class SubstitutionMethod(ABC):
    """What replaces each autoencoded image before it is released."""

    name: ClassVar[str]  # the config's ``substitution`` value
    tensor_names: ClassVar[
        tuple[str, ...]
    ] = ()  # its tensors' names in a model file (some optional)

    @classmethod
    def config_problems(cls, config: AnonymizerConfig) -> list[str]:
        """What ``config`` lacks for this method (checked by the config itself)."""
        return []

    @classmethod
    @abstractmethod
    def from_config(cls, config: AnonymizerConfig) -> SubstitutionMethod:
        """An unfitted instance with the hyper-parameters ``config`` gives."""

    @abstractmethod
    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
    ) -> SubstitutionMethod:
        """Learn the state from the training images; returns ``self``.

        Parameters
        ----------
        images
            (N, D) float training pixels in [0, 1].
        private_labels
            (N,) their private labels, as given to the anonymizer.
        autoencode
            Maps (n, D) pixels to the trained autoencoder's (n, D) outputs in [0, 1].
        """

    @abstractmethod
    def transform(self, outputs: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        """(N, D) float autoencoder outputs in [0, 1] -> (N, D) uint8 released pixels."""

    @abstractmethod
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """``(tensors, metadata)`` to save; tensors named as in ``tensor_names``."""

    @classmethod
    def state_problems(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> list[str]:
        """Every mismatch between saved state and what ``config`` declares (none by default)."""
        return []

    @classmethod
    @abstractmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> SubstitutionMethod:
        """A fitted instance from state that :meth:`state_problems` accepted."""

    @classmethod
    def from_state(
        cls,
        tensors: dict[str, torch.Tensor],
        metadata: dict,
        *,
        config: AnonymizerConfig,
        source: str = "model",
    ) -> SubstitutionMethod:
        """A fitted instance from what :meth:`state` returned.

        Raises
        ------
        InvalidInputError
            Listing every problem of the state (names, shapes, dtypes, finiteness).
        """
        problems = cls.state_problems(tensors, metadata, config=config)
        if problems:
            raise InvalidInputError(
                [f"{source}: {cls.name!r} substitution state: {p}" for p in problems]
            )
        return cls._restore(tensors, metadata, config=config)

    def _check_fitted(self, *attributes: str) -> None:
        if any(getattr(self, a, None) is None for a in attributes):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet. Call fit(...) or restore it "
                "with from_state(...)."
            )
