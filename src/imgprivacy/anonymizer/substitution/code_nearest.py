"""Substitution by the nearest target image *in a learned representation* (``"code-nearest"``).

The paper's protocol (:mod:`~imgprivacy.anonymizer.substitution.target_nearest`) compares pixels,
which follow outline, tones and pose more than expression. Here every query is compared, by
Euclidean distance, to the *representations* of the target identity's training images, and the
nearest training image itself is released (a real image of the target, pixel for pixel).

The representation is what the model passes as ``autoencode`` to :meth:`CodeNearestSubstitution.fit`
and as ``outputs`` to :meth:`CodeNearestSubstitution.transform`: the identity-free code for the
identity-swap anonymizer (:mod:`~imgprivacy.anonymizer.swap_model`), the autoencoder's output for
:class:`~imgprivacy.anonymizer.model.Anonymizer` (there, matching against the autoencoded target
images).

Examples
--------
>>> import torch
>>> images = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.0]])
>>> method = CodeNearestSubstitution(target_identity=1)
>>> method = method.fit(images, np.array([1, 1, 0]), autoencode=lambda x: x[:, :1] * 10)
>>> method.transform(torch.tensor([[9.0], [2.0]])).tolist()  # codes in, target images out
[[255, 255], [0, 0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgprivacy.anonymizer.substitution.base import SubstitutionMethod
from imgprivacy.anonymizer.substitution.target_nearest import SubstitutionConfig, nearest_neighbours
from imgprivacy.errors import InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

if TYPE_CHECKING:
    from imgprivacy.anonymizer.config import AnonymizerConfig

IMAGES_KEY = "code_references"  # (M, D) uint8 training images of the target identity
CODES_KEY = "code_reference_codes"  # (M, C) float32 their representations
MAPS_KEY = "code_query_maps"  # optional (G, Q, C) float32: each query group's linear map


class CodeNearestSubstitution(SubstitutionMethod):
    """The target's training image whose representation is nearest (config ``"code-nearest"``).

    Parameters
    ----------
    target_identity
        The private label whose training images are released.

    Attributes
    ----------
    references_ : torch.Tensor
        (M, D) uint8 training images of the target identity, in training-set order.
    codes_ : torch.Tensor
        (M, C) float32 their representations (``autoencode`` of the references).
    query_maps_ : torch.Tensor or None
        (G, Q, C) float32 or None: when set, a query of group g (Q values) is mapped to
        ``query @ query_maps_[g]`` before the search (the code-match model's per-identity
        whitening); :meth:`transform` then needs every query's group.
    """

    name = "code-nearest"
    tensor_names = (IMAGES_KEY, CODES_KEY, MAPS_KEY)

    def __init__(self, *, target_identity: int):
        self.target_identity = target_identity

    @classmethod
    def config_problems(cls, config: AnonymizerConfig) -> list[str]:
        if config.target_identity is None:
            return [
                "substitution='code-nearest' needs a target_identity (the identity whose "
                "training images replace the outputs)"
            ]
        return []

    @classmethod
    def from_config(cls, config: AnonymizerConfig) -> CodeNearestSubstitution:
        return cls(target_identity=config.target_identity)

    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
        query_maps: torch.Tensor | None = None,
    ) -> CodeNearestSubstitution:
        """Keep the target's training images and their representations ``autoencode(images)``
        (and, optionally, one linear map (Q, C) per query group, stacked (G, Q, C))."""
        labels = np.asarray(private_labels)
        rows = np.flatnonzero(labels == self.target_identity)
        if len(rows) == 0:
            raise InvalidInputError(
                f"Expected training images of the target identity {self.target_identity!r}, got "
                f"none; private labels present: {np.unique(labels).tolist()}. Choose one of those."
            )
        pool = images.detach().cpu()[torch.as_tensor(rows)].float()
        self.references_ = torch.round(pool * 255).to(torch.uint8)
        codes = autoencode(pool).detach().cpu().float()
        self.codes_ = codes.reshape(len(rows), -1)
        self.query_maps_ = None
        if query_maps is not None:
            maps = torch.as_tensor(query_maps).detach().cpu().float()
            if maps.dim() != 3 or maps.shape[2] != self.codes_.shape[1]:
                raise InvalidInputError(
                    f"Expected query maps of shape (groups, query size, {self.codes_.shape[1]}), "
                    f"got {tuple(maps.shape)}. Map every group's queries onto the references' "
                    "representation."
                )
            self.query_maps_ = maps
        return self

    def map_queries(self, queries: torch.Tensor, groups=None) -> torch.Tensor:
        """Queries (N, Q) of the given groups (N,) mapped onto the references' representation
        (returned unchanged when no maps were fitted)."""
        self._check_fitted("references_", "codes_")
        maps = getattr(self, "query_maps_", None)
        if maps is None:
            return queries
        queries = queries.detach().cpu().float().reshape(len(queries), -1)
        groups = None if groups is None else torch.as_tensor(np.asarray(groups), dtype=torch.long)
        if (
            groups is None
            or groups.shape != (len(queries),)
            or (len(groups) and (groups.min() < 0 or groups.max() >= len(maps)))
            or queries.shape[1] != maps.shape[1]
        ):
            raise InvalidInputError(
                f"Expected {len(queries)} queries of size {maps.shape[1]} with a group in "
                f"0..{len(maps) - 1} each, got queries {tuple(queries.shape)} and groups "
                f"{None if groups is None else tuple(groups.shape)}. Pass groups=."
            )
        return torch.bmm(queries[:, None], maps[groups])[:, 0]

    def nearest(self, codes: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        """Index (N,) into ``references_`` of each code's nearest reference (ties: lowest)."""
        self._check_fitted("references_", "codes_")
        codes = codes.detach().cpu().float().reshape(len(codes), -1)
        if codes.shape[1] != self.codes_.shape[1]:
            raise InvalidInputError(
                f"Expected representations of size {self.codes_.shape[1]} (as at fit time), got "
                f"{codes.shape[1]}. Pass the same model's codes."
            )
        # the search of the paper's protocol, on codes instead of pixels (floats kept as they are)
        indices, _ = nearest_neighbours(
            codes, self.codes_, config=SubstitutionConfig(chunk_size=batch_size)
        )
        return torch.from_numpy(indices)

    def transform(
        self, outputs: torch.Tensor, *, groups=None, batch_size: int = 2048
    ) -> torch.Tensor:
        """Representations (N, C) -> (N, D) uint8: the nearest references' pixels.

        With query maps fitted, ``outputs`` are (N, Q) queries and ``groups`` (N,) their groups.
        """
        queries = self.map_queries(outputs, groups)
        return self.references_[self.nearest(queries, batch_size=batch_size)]

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted("references_", "codes_")
        tensors = {IMAGES_KEY: self.references_, CODES_KEY: self.codes_}
        if getattr(self, "query_maps_", None) is not None:
            tensors[MAPS_KEY] = self.query_maps_
        return tensors, {}

    @classmethod
    def state_problems(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> list[str]:
        """M >= 1 references, uint8 (M, D), float32 codes (M, C) for any C >= 1 and, optionally,
        float32 query maps (G, Q, C)."""
        images, codes = tensors.get(IMAGES_KEY), tensors.get(CODES_KEY)
        maps = tensors.get(MAPS_KEY)
        tensors = {k: v for k, v in tensors.items() if k != MAPS_KEY}
        rows = images.shape[0] if images is not None and images.dim() == 2 else 1
        width = codes.shape[1] if codes is not None and codes.dim() == 2 else 1
        problems = tensor_problems(
            {k: v for k, v in tensors.items() if k != CODES_KEY},
            {IMAGES_KEY: (max(rows, 1), config.input_dim)},
            dtype=torch.uint8,
        )
        problems += tensor_problems(
            {k: v for k, v in tensors.items() if k == CODES_KEY},
            {CODES_KEY: (max(rows, 1), max(width, 1))},
        )
        if maps is not None:
            shape = tuple(maps.shape) if maps.dim() == 3 else (1, 1, width)
            problems += tensor_problems({MAPS_KEY: maps}, {MAPS_KEY: (*shape[:2], width)})
        return problems

    @classmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> CodeNearestSubstitution:
        method = cls.from_config(config)
        method.references_ = tensors[IMAGES_KEY].cpu()
        method.codes_ = tensors[CODES_KEY].cpu()
        maps = tensors.get(MAPS_KEY)
        method.query_maps_ = None if maps is None else maps.cpu()
        return method
