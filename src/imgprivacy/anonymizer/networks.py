"""The three networks of Fig. 1 and the selector S.

All take and return flattened images in [0, 1] of shape (B, D) with D = image_size**2; the
autoencoder returns logits (``torch.sigmoid`` gives the image x_hat), the discriminator the logit
of q(y=1|v) ("v is an original"), the private classifier the logits of q(z|x_hat).
"""

from __future__ import annotations

import torch
from torch import nn

from imgprivacy.anonymizer.config import AnonymizerConfig


class Autoencoder(nn.Module):
    """q(x_hat|x): D -> h -> code -> h -> D, ReLU inside, logits out (no skip connection, so all
    of x_hat has to pass the ``code_dim`` bottleneck)."""

    def __init__(self, input_dim: int, hidden: int, code_dim: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, code_dim)
        )
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Linear(code_dim, hidden), nn.ReLU(), nn.Linear(hidden, input_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ConvAutoencoder(nn.Module):
    """A convolutional q(x_hat|x) for larger images (faces): two stride-2 convolutions down to a
    ``code_dim`` bottleneck and two transposed convolutions back, logits out.

    The image is zero-padded to a multiple of 4 on the bottom/right and the output cropped back,
    so any ``image_size`` works. Takes and returns flat (B, S*S) like :class:`Autoencoder`. An
    MLP autoencoder on 50x50 faces learned only a blurred average face from ~9k images (mouth and
    brows, the expression, were lost); convolutions share their weights across the face.
    """

    def __init__(self, image_size: int, channels: int, code_dim: int):
        super().__init__()
        self.image_size = image_size
        self.padded = -(-image_size // 4) * 4
        c, side = channels, self.padded // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * c * side * side, code_dim),
        )
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.Linear(code_dim, 2 * c * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (2 * c, side, side)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, pad = self.image_size, self.padded - self.image_size
        image = nn.functional.pad(x.view(-1, 1, s, s), (0, pad, 0, pad))
        return self.decoder(self.encoder(image))[:, :, :s, :s].reshape(len(x), s * s)


def build_autoencoder(config: AnonymizerConfig) -> nn.Module:
    """The autoencoder ``config.ae_arch`` names (``"mlp"`` or ``"conv"``), uninitialised seed."""
    if config.ae_arch == "conv":
        return ConvAutoencoder(config.image_size, config.ae_channels, config.code_dim)
    return Autoencoder(config.input_dim, config.ae_hidden, config.code_dim)


def classifier(
    input_dim: int, hidden: int, outputs: int, dropout: float, *, normalize_input: bool = False
) -> nn.Sequential:
    """D -> h -> h -> outputs with LeakyReLU and dropout (used for both q(y|v) and q(z|x_hat)).

    ``normalize_input`` standardises each image (zero mean, unit variance over its pixels, no
    learned parameters) before the first layer. The private classifier needs it: without it the
    autoencoder hid the writer from it by dimming its outputs (small inputs make an MLP learn
    slowly), while a random forest, blind to intensity scale, still read the writer at ~40%.
    """
    layers: list[nn.Module] = []
    if normalize_input:
        layers.append(nn.LayerNorm(input_dim, elementwise_affine=False))
    return nn.Sequential(
        *layers,
        nn.Linear(input_dim, hidden),
        nn.LeakyReLU(0.2),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Dropout(dropout),
        nn.Linear(hidden, outputs),
    )


class Networks(nn.Module):
    """The autoencoder, the discriminator and the private classifier, built from one config."""

    def __init__(self, config: AnonymizerConfig):
        super().__init__()
        d = config.input_dim
        self.autoencoder = build_autoencoder(config)
        self.discriminator = classifier(d, config.disc_hidden, 1, config.dropout)
        self.private = classifier(
            d, config.private_hidden, config.n_private, config.dropout, normalize_input=True
        )


def build_networks(config: AnonymizerConfig) -> Networks:
    """Initialise the three networks from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Networks(config)


def expected_shapes(config: AnonymizerConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter name of :class:`Networks` and its shape under ``config``."""
    with torch.device("meta"):
        nets = Networks(config)
    return {name: tuple(t.shape) for name, t in nets.state_dict().items()}


def select(x: torch.Tensor, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The selector S of Fig. 1: row i of v is x[i] where y[i] = 1, else x_hat[i].

    Examples
    --------
    >>> x, x_hat = torch.ones(3, 2), torch.zeros(3, 2)
    >>> select(x, x_hat, torch.tensor([1, 0, 1])).tolist()
    [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    """
    keep = y.to(torch.bool).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, x, x_hat)
