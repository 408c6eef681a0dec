"""Nuisance augmentations: what a face code should *not* depend on (pose, light, camera noise).

Two independently augmented views of an image must get the same code
(:mod:`~imgprivacy.anonymizer.code_match`), so the code cannot keep the small rotations, shifts,
scale changes, brightness, contrast, light ramps and noise these draw. None of them uses a label.

Examples
--------
>>> x = torch.full((4, 100), 0.5)
>>> out = NuisanceAugment(image_size=10)(x, generator=torch.Generator().manual_seed(0))
>>> out.shape, bool((out >= 0).all() and (out <= 1).all())
(torch.Size([4, 100]), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class NuisanceAugment:
    """Random geometric and photometric changes of flat grey images (B, S*S) in [0, 1]."""

    image_size: int
    rotation: float = 0.17  # radians, uniform in [-r, r] (~10 degrees)
    scale: float = 0.1  # zoom uniform in [1 - s/2, 1 + s/2]
    shift: float = 3.0  # pixels, uniform in [-t, t] on each axis
    gain: tuple[float, float] = (0.6, 1.3)  # contrast gain range
    offset: float = 0.2  # brightness offset uniform in [-o, o]
    ramp: float = 0.4  # strength of a linear light ramp in a random direction
    noise: float = 0.04  # Gaussian pixel noise

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        n, s = len(x), self.image_size

        def uniform(*shape) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(x.device)

        image = x.view(n, 1, s, s)
        angle = (uniform(n) - 0.5) * 2 * self.rotation
        zoom = 1 + (uniform(n) - 0.5) * self.scale
        shift = (uniform(n, 2) - 0.5) * 2 * self.shift / (s / 2)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        corner = image[:, :, :3, :3].mean((2, 3), keepdim=True)  # the background fills in
        image = F.grid_sample(image - corner, grid, align_corners=False) + corner
        low, high = self.gain
        gain = low + (high - low) * uniform(n, 1, 1, 1)
        offset = (uniform(n, 1, 1, 1) - 0.5) * 2 * self.offset
        direction = 2 * torch.pi * uniform(n)
        line = torch.linspace(-1, 1, s, device=x.device)
        ramp = (
            torch.cos(direction)[:, None, None, None] * line[None, None, None, :]
            + torch.sin(direction)[:, None, None, None] * line[None, None, :, None]
        )
        image = image * gain * (1 + self.ramp * uniform(n, 1, 1, 1) * ramp) + offset
        noise = torch.randn(image.shape, generator=generator).to(x.device)
        return (image + self.noise * noise).clamp(0, 1).view(n, s * s)
