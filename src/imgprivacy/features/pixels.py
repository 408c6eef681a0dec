"""Raw pixels as features (the DOCL paper's MNIST setting: no feature extractor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.errors import InvalidInputError


@dataclass(frozen=True)
class PixelFeatures:
    """Flatten grey (or RGB) pixels scaled to [0, 1].

    >>> extractor = PixelFeatures(input_size=(2, 2))
    >>> extractor.transform(np.array([[[0, 255], [51, 102]]], dtype=np.uint8)).tolist()
    [[0.0, 1.0, 0.20000000298023224, 0.4000000059604645]]
    """

    input_size: tuple[int, int] = (28, 28)  # (height, width)
    mode: str = "L"  # "L" grey, "RGB" colour
    name: str = "pixels"

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def dim(self) -> int:
        return self.input_size[0] * self.input_size[1] * self.channels

    def expected_shape(self) -> str:
        height, width = self.input_size
        return f"(N, {height}, {width})" if self.mode == "L" else f"(N, {height}, {width}, 3)"

    def transform(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images in [0, 255] or float images in [0, 1] -> (N, D) float32 in [0, 1]."""
        tensor = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        expected = (*self.input_size,) if self.mode == "L" else (*self.input_size, 3)
        if tensor.ndim == len(expected):
            hint = " Add the batch axis with images[None]."
        else:
            hint = " Resize the images (imgprivacy.data.load_images does it) or pick another extractor."
        if tuple(tensor.shape[1:]) != expected or tensor.ndim != len(expected) + 1:
            raise InvalidInputError(
                f"Expected images of shape {self.expected_shape()}, got {tuple(tensor.shape)}.{hint}"
            )
        if tensor.dtype == torch.uint8:
            features = tensor.reshape(len(tensor), -1).to(torch.float32) / 255.0
        elif tensor.is_floating_point():
            features = tensor.reshape(len(tensor), -1).to(torch.float32)
            if not torch.isfinite(features).all():
                raise InvalidInputError("Expected finite pixel values, got NaN or infinity.")
            if features.numel() and (features.min() < 0 or features.max() > 1):
                raise InvalidInputError(
                    "Expected float pixels in [0, 1], got values in "
                    f"[{features.min().item():.3g}, {features.max().item():.3g}]. "
                    "Pass uint8 images or divide by 255."
                )
        else:
            raise InvalidInputError(f"Expected uint8 or float images, got dtype {tensor.dtype}.")
        return features
