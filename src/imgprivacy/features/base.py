"""The feature-extractor contract shared by the edge client, the service and the reproductions.

An extractor turns a batch of images into feature vectors in [0, 1] (the one-class autoencoder's
sigmoid output and BCE loss need that range).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class FeatureExtractor(Protocol):
    """Images in, (N, D) float32 features in [0, 1] out."""

    name: str
    input_size: tuple[int, int]  # (height, width) the images are resized to
    mode: str  # "L" (grey) or "RGB"
    dim: int  # D, the feature dimension

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Features of shape (N, D) for images of shape (N, H, W) or (N, H, W, 3)."""
        ...
