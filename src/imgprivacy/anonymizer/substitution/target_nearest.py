"""The substitution protocol of the intertwined method (Feutry et al., ICASSP 2020, sec. 3).

"Once all images are transformed into the chosen identity, each is compared to the chosen
identity's real samples. Using pixel to pixel euclidean distance images are substituted by the
closest chosen identity's training set image." :func:`substitute` does exactly that for all images
at once: the squared distances come from one matrix product per chunk of queries
(``|q|^2 - 2 q.r + |r|^2`` in float32), and the few best candidates of each query are re-ranked with
exact float64 distances, so the float32 shortcut cannot change the winner unless it misorders
more than ``candidates`` references. Ties go to the lowest reference index.

Examples
--------
>>> import numpy as np
>>> refs = np.array([[[0, 0]], [[255, 255]]], dtype=np.uint8)   # two 1x2 images
>>> out = substitute(np.array([[[200, 250]]], dtype=np.uint8), references=refs)
>>> out.indices.tolist(), out.images[0].tolist()
([1], [[255, 255]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgprivacy.anonymizer.substitution.base import SubstitutionMethod
from imgprivacy.errors import InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

if TYPE_CHECKING:
    from imgprivacy.anonymizer.config import AnonymizerConfig

REFERENCES_KEY = "target_references"  # (M, D) uint8 training images of the target identity


@dataclass(frozen=True)
class SubstitutionConfig:
    """Cost knobs of the nearest-neighbour search (the result does not depend on them)."""

    chunk_size: int = 512  # queries per matrix product; memory ~ chunk * (M + 8 D) * 8 bytes
    candidates: int = 8  # float32 nearest candidates re-ranked with exact float64 distances

    def __post_init__(self) -> None:
        problems = [
            f"SubstitutionConfig.{name} must be a positive integer, got {value!r}"
            for name, value in (("chunk_size", self.chunk_size), ("candidates", self.candidates))
            if not (isinstance(value, int) and value >= 1)
        ]
        if problems:
            raise InvalidInputError(problems)


@dataclass(frozen=True)
class Substitution:
    """The substituted images and where they came from.

    ``images`` (N, ...) are copies of the chosen references (their dtype); ``indices`` (N,) int64
    index the references given (or the training set, for :func:`substitute_with_identity`);
    ``distances`` (N,) float64 are the Euclidean pixel distances with pixels scaled to [0, 1].
    """

    images: np.ndarray
    indices: np.ndarray
    distances: np.ndarray


def _pixels(images, what: str) -> torch.Tensor:
    """(N, D) float64 pixels in [0, 1] from uint8 or float images of any trailing shape."""
    array = (
        images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    )
    if array.ndim < 2 or len(array) == 0:
        raise InvalidInputError(
            f"Expected {what} as a non-empty batch (N, H, W) or (N, D), got shape {array.shape}. "
            "Add the batch axis with x[None] for a single image."
        )
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return torch.from_numpy(array.reshape(len(array), -1).astype(np.float64) / scale)


def nearest_neighbours(
    queries, references, *, config: SubstitutionConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index (N,) and Euclidean distance (N,) of each query's nearest reference.

    Parameters
    ----------
    queries
        (N, ...) images, uint8 in [0, 255] or float in [0, 1].
    references
        (M, ...) images with the same trailing shape and the same convention.
    config
        Chunk size and number of exactly re-ranked candidates.

    Raises
    ------
    InvalidInputError
        For empty inputs or mismatched image shapes.
    """
    cfg = config or SubstitutionConfig()
    q_shape, r_shape = np.shape(queries)[1:], np.shape(references)[1:]
    if q_shape != r_shape:
        raise InvalidInputError(
            f"Expected queries and references of the same image shape, got {q_shape} and "
            f"{r_shape}. Resize the references to the anonymizer's output size."
        )
    q64, r64 = _pixels(queries, "queries"), _pixels(references, "references")
    r32 = r64.float()
    r_norm = (r32 * r32).sum(1)
    k = min(cfg.candidates, len(r64))
    indices = np.empty(len(q64), dtype=np.int64)
    distances = np.empty(len(q64), dtype=np.float64)
    for start in range(0, len(q64), cfg.chunk_size):  # chunks bound memory; no loop over images
        q = q64[start : start + cfg.chunk_size]
        q32 = q.float()
        approx = (q32 * q32).sum(1, keepdim=True) - 2.0 * q32 @ r32.T + r_norm
        candidates = approx.topk(k, dim=1, largest=False).indices.sort(dim=1).values
        exact = ((q[:, None, :] - r64[candidates]) ** 2).sum(-1)  # (c, k) float64
        best = exact.argmin(dim=1)  # the first minimum: the lowest index among ties
        rows = torch.arange(len(q))
        indices[start : start + len(q)] = candidates[rows, best].numpy()
        distances[start : start + len(q)] = exact[rows, best].sqrt().numpy()
    return indices, distances


def substitute(images, *, references, config: SubstitutionConfig | None = None) -> Substitution:
    """Replace every image by its nearest reference image (pixel Euclidean distance).

    ``images`` (N, ...) and ``references`` (M, ...) as in :func:`nearest_neighbours`; the returned
    images are ``references[indices]``.
    """
    indices, distances = nearest_neighbours(images, references, config=config)
    chosen = (
        references[torch.as_tensor(indices)]
        if isinstance(references, torch.Tensor)
        else (np.asarray(references)[indices])
    )
    return Substitution(images=np.asarray(chosen), indices=indices, distances=distances)


def substitute_with_identity(
    images,
    *,
    train_images,
    train_identity,
    target_identity: int,
    config: SubstitutionConfig | None = None,
) -> Substitution:
    """The paper's step: the nearest *training* image of ``target_identity`` for every image.

    ``indices`` index ``train_images`` (not the subset), so a caller can look up any label of the
    chosen images.

    Raises
    ------
    InvalidInputError
        When no training image has ``target_identity`` (the identities present are listed), or
        when the labels do not match the images.
    """
    identity = np.asarray(train_identity)
    if identity.shape != (len(train_images),):
        raise InvalidInputError(
            f"Expected one identity per training image, shape ({len(train_images)},), "
            f"got {identity.shape}."
        )
    pool = np.flatnonzero(identity == target_identity)
    if len(pool) == 0:
        raise InvalidInputError(
            f"Expected training images of the target identity {target_identity!r}, got none; "
            f"identities present: {np.unique(identity).tolist()}. Choose one of those."
        )
    found = substitute(images, references=np.asarray(train_images)[pool], config=config)
    return Substitution(images=found.images, indices=pool[found.indices], distances=found.distances)


class TargetSubstitution(SubstitutionMethod):
    """The nearest training image of the target identity (config value ``"target"``).

    The paper's protocol (intertwined method): every output is replaced by the pixel-nearest of
    the target identity's training images, kept as uint8 (a quarter of float32's size).

    Parameters
    ----------
    target_identity
        The private label whose training images are released.
    search
        Cost knobs of the nearest-neighbour search (the result does not depend on them).

    Attributes
    ----------
    references_ : torch.Tensor
        (M, D) uint8 training images of the target identity, in training-set order.
    """

    name = "target"
    tensor_names = (REFERENCES_KEY,)

    def __init__(self, *, target_identity: int, search: SubstitutionConfig | None = None):
        self.target_identity = target_identity
        self.search = search

    @classmethod
    def config_problems(cls, config: AnonymizerConfig) -> list[str]:
        if config.target_identity is None:
            return [
                "substitution='target' needs a target_identity (the identity whose training "
                "images replace the outputs)"
            ]
        return []

    @classmethod
    def from_config(cls, config: AnonymizerConfig) -> TargetSubstitution:
        return cls(target_identity=config.target_identity)

    def fit(
        self,
        images: torch.Tensor,
        private_labels: np.ndarray,
        *,
        autoencode: Callable[[torch.Tensor], torch.Tensor],
    ) -> TargetSubstitution:
        """Keep the training images whose private label is ``target_identity``."""
        del autoencode  # the references are training images, not outputs
        labels = np.asarray(private_labels)
        rows = np.flatnonzero(labels == self.target_identity)
        if len(rows) == 0:
            raise InvalidInputError(
                f"Expected training images of the target identity {self.target_identity!r}, got "
                f"none; private labels present: {np.unique(labels).tolist()}. Choose one of those."
            )
        pool = images.detach().cpu()[torch.as_tensor(rows)]
        self.references_ = torch.round(pool.float() * 255).to(torch.uint8)
        return self

    def transform(self, outputs: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
        self._check_fitted("references_")
        del batch_size  # the search chunks by its own SubstitutionConfig
        found = substitute(outputs, references=self.references_, config=self.search)
        return torch.as_tensor(found.images)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._check_fitted("references_")
        return {REFERENCES_KEY: self.references_}, {}

    @classmethod
    def state_problems(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> list[str]:
        """Any number M >= 1 of references, uint8 (M, D)."""
        references = tensors.get(REFERENCES_KEY)
        rows = references.shape[0] if references is not None and references.dim() == 2 else 0
        return tensor_problems(
            tensors, {REFERENCES_KEY: (max(rows, 1), config.input_dim)}, dtype=torch.uint8
        )

    @classmethod
    def _restore(
        cls, tensors: dict[str, torch.Tensor], metadata: dict, *, config: AnonymizerConfig
    ) -> TargetSubstitution:
        method = cls.from_config(config)
        method.references_ = tensors[REFERENCES_KEY].cpu()
        return method
