"""The target-identity discriminator's real samples (Feutry et al., ICASSP 2020, sec. 3).

The intertwined method "restricts to one chosen identity the discriminator's train samples": the
discriminator learns to tell the autoencoder's outputs from real images *of that identity*, so the
autoencoder is pushed to render every face as the target. :class:`TargetIdentitySampler` serves
those real batches. It is stateless in the step: batch ``s`` is the same whether it is the first
call or a resumed run's thousandth, so a trainer that checkpoints its step count resumes exactly.

The stream of images is the concatenation of seeded random permutations of the target's images
(cycle 0, cycle 1, ...): every image appears once per cycle, and batch ``s`` takes positions
``s * batch_size`` to ``(s + 1) * batch_size`` of that stream.

Examples
--------
>>> import numpy as np
>>> images = np.arange(6 * 4, dtype=np.float32).reshape(6, 4) / 24
>>> identity = np.array([0, 1, 1, 2, 1, 0])
>>> sampler = TargetIdentitySampler(images, identity, target_identity=1, batch_size=2, seed=0)
>>> sampler.n_images, sampler.batch(0).shape
(3, torch.Size([2, 4]))
>>> sorted(sampler.indices(0, size=3).tolist())  # a full cycle holds each target image once
[1, 2, 4]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from imgprivacy.errors import InvalidInputError


class TargetIdentitySampler:
    """Seeded "real" batches drawn from the images of one identity only.

    Parameters
    ----------
    images
        (N, ...) training images, uint8 in [0, 255] or float in [0, 1] (numpy or torch); the
        trainer's flat (N, D) pixels work as they are.
    identity
        (N,) identity label of every image.
    target_identity
        The identity whose images are served.
    batch_size
        Images per batch (a batch may be shorter when asked with ``size=``).
    seed
        Seeds the permutations.
    device
        Where the batches are returned.

    Raises
    ------
    InvalidInputError
        For an identity with no images (the identities present and their counts are listed),
        mismatched labels or a batch size below 1.
    """

    def __init__(
        self,
        images,
        identity,
        *,
        target_identity: int,
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
    ):
        labels = np.asarray(identity.cpu() if isinstance(identity, torch.Tensor) else identity)
        if labels.shape != (len(images),):
            raise InvalidInputError(
                f"Expected one identity per image, shape ({len(images)},), got {labels.shape}."
            )
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise InvalidInputError(
                f"Expected batch_size to be an integer >= 1, got {batch_size!r}."
            )
        rows = np.flatnonzero(labels == target_identity)
        if len(rows) == 0:
            present, counts = np.unique(labels, return_counts=True)
            listing = ", ".join(f"{p}: {c}" for p, c in zip(present.tolist(), counts.tolist()))
            raise InvalidInputError(
                f"Expected training images of the target identity {target_identity!r}, got none "
                f"(images per identity: {listing}). Choose an identity that has images."
            )
        pixels = torch.as_tensor(
            np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)[rows]
        )
        if pixels.dtype == torch.uint8:
            pixels = pixels.float() / 255.0
        self.pool = pixels.float().to(device)  # (M, ...) the target's images
        self.rows = rows  # (M,) their indices in the images given
        self.target_identity = target_identity
        self.batch_size = batch_size
        self.seed = seed
        self._cache: dict[int, torch.Tensor] = {}

    @property
    def n_images(self) -> int:
        """How many images the target identity has."""
        return len(self.rows)

    def _cycle(self, cycle: int) -> torch.Tensor:
        if cycle not in self._cache:
            if len(self._cache) > 4:  # a batch spans at most two cycles; keep a few
                self._cache.clear()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + cycle)
            self._cache[cycle] = torch.randperm(self.n_images, generator=generator)
        return self._cache[cycle]

    def positions(self, step: int, size: int | None = None) -> torch.Tensor:
        """Indices into the target's images (0..M-1) of batch ``step``, shape (size,)."""
        size = self.batch_size if size is None else size
        if step < 0 or size < 1:
            raise InvalidInputError(
                f"Expected step >= 0 and size >= 1, got step={step}, size={size}."
            )
        stream = torch.arange(step * self.batch_size, step * self.batch_size + size)
        cycles, offsets = stream // self.n_images, stream % self.n_images
        first, last = int(cycles[0]), int(cycles[-1])
        perms = torch.stack([self._cycle(c) for c in range(first, last + 1)])  # (1 or 2, M)
        return perms[cycles - first, offsets]

    def indices(self, step: int, size: int | None = None) -> np.ndarray:
        """Indices into the images given to the constructor of batch ``step`` (numpy, (size,))."""
        return self.rows[self.positions(step, size).numpy()]

    def batch(self, step: int, size: int | None = None) -> torch.Tensor:
        """Batch ``step`` of real target images, float in [0, 1], shape (size, ...)."""
        return self.pool[self.positions(step, size).to(self.pool.device)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches 0, 1, 2, ... without end."""
        step = 0
        while True:
            yield self.batch(step)
            step += 1
