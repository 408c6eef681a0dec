"""Input checks shared by the autoencoder and the bank."""

from __future__ import annotations

import numpy as np
import torch

from imgprivacy.errors import InvalidInputError


def as_feature_matrix(
    x: np.ndarray | torch.Tensor, *, input_dim: int, what: str = "features"
) -> torch.Tensor:
    """Validate and convert ``x`` to a float32 (N, D) tensor with finite values in [0, 1].

    Raises
    ------
    InvalidInputError
        Naming the expected shape and how to get it.
    """
    tensor = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    if not tensor.is_floating_point():
        raise InvalidInputError(
            f"Expected {what} as floats in [0, 1], got dtype {tensor.dtype}. "
            "Turn images into features with imgprivacy.features.get_extractor(name).transform()."
        )
    if tensor.ndim == 1 and tensor.shape[0] == input_dim:
        raise InvalidInputError(
            f"Expected {what} of shape (N, {input_dim}), got ({input_dim},). "
            "Add the batch axis with x[None]."
        )
    if tensor.ndim != 2 or tensor.shape[1] != input_dim:
        raise InvalidInputError(
            f"Expected {what} of shape (N, {input_dim}), got {tuple(tensor.shape)}. "
            "Flatten each image to one row and check the model's input dimension."
        )
    if len(tensor) == 0:
        raise InvalidInputError(f"Expected at least one row of {what}, got an empty array.")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise InvalidInputError(f"Expected finite {what}, got NaN or infinite values.")
    low, high = tensor.min().item(), tensor.max().item()
    if low < 0 or high > 1:
        raise InvalidInputError(
            f"Expected {what} in [0, 1], got values in [{low:.3g}, {high:.3g}]. "
            "Scale pixels by 1/255 (the pixels extractor does it)."
        )
    return tensor
