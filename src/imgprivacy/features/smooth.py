"""Smoothed pixels: a Gaussian blur before the one-class autoencoder.

Reconstruction distances on raw pixels punish a stroke drawn one pixel to the side as much as a
missing stroke; blurring first makes the distance measure shape rather than exact alignment. On
MNIST this raises the one-class ROC-AUC of every user's autoencoder (see the README's results).
Each blurred image is rescaled so its brightest pixel is 1, which keeps features in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from imgprivacy.features.pixels import PixelFeatures


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps covering +-3 sigma."""
    radius = max(1, int(round(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    return kernel / kernel.sum()


@dataclass(frozen=True)
class SmoothPixelFeatures:
    """Grey pixels blurred with a Gaussian of ``sigma`` pixels, then flattened.

    >>> extractor = SmoothPixelFeatures(input_size=(5, 5))
    >>> image = np.zeros((1, 5, 5), np.uint8)
    >>> image[0, 2, 2] = 255
    >>> features = extractor.transform(image)
    >>> features.shape, float(features.max()), float(features[0, 12])
    (torch.Size([1, 25]), 1.0, 1.0)
    """

    input_size: tuple[int, int] = (28, 28)  # (height, width)
    sigma: float = 1.0  # blur width in pixels
    name: str = "pixels-smooth"
    mode: str = "L"

    @property
    def dim(self) -> int:
        return self.input_size[0] * self.input_size[1]

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        pixels = PixelFeatures(input_size=self.input_size).transform(images)
        height, width = self.input_size
        kernel = gaussian_kernel(self.sigma)
        pad = len(kernel) // 2
        x = pixels.view(-1, 1, height, width)
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0)), kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, pad, pad)), kernel.view(1, 1, -1, 1))
        peak = x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return (x / peak).reshape(len(pixels), -1).clamp_(0.0, 1.0)
