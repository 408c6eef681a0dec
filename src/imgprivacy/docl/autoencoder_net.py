"""The one-class autoencoder's network and its distance (paper eq. 2, 3 and 6).

:class:`AutoencoderNet` is the bare ``torch`` module (no statistics, no training);
:func:`squared_distances` is imgprivacy's one score: the squared Euclidean reconstruction error,
lower = closer to the owner's data.
"""

from __future__ import annotations

import torch
from torch import nn

from imgprivacy.docl.config import AutoencoderConfig


class AutoencoderNet(nn.Module):
    """Linear layers of sizes ``layer_dims`` with ReLU between them and none after the last.

    ``forward`` returns the decoder's logits (callers apply the sigmoid). Parameters are named
    ``layers.{i}.weight`` / ``layers.{i}.bias``; the paper's D -> M -> D has layers 0 and 1.
    """

    def __init__(self, layer_dims: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(layer_dims[:-1], layer_dims[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def squared_distances(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Eq. (6): sum over features of the squared difference, one value per row."""
    return (x - reconstruction).square().sum(dim=1)


def seeded_net(config: AutoencoderConfig) -> AutoencoderNet:
    """A network initialised from ``config.seed`` with a private generator, so fitting never
    touches the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AutoencoderNet(config.layer_dims)
