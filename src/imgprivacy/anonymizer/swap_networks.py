"""The networks of the identity-swap anonymizer: an encoder, an identity-conditioned decoder and
an identity adversary on the code (a Fader-network-style conditional autoencoder).

The encoder maps a grey image to a code z; the decoder renders z *as a given identity*
(the one-hot identity is concatenated to z and to the input of every transposed convolution, so
the decoder cannot lose it); the adversary reads the identity from z. Trained as in eq. (12) with
the adversary as the private branch, z keeps what the decoder needs beyond the identity -
expression, pose, lighting - and ``decoder(encoder(x), target)`` is x's expression on the
target's face.

All take and return (B, S*S) flat images in [0, 1] like :mod:`~imgprivacy.anonymizer.networks`;
the decoder returns logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from imgprivacy.anonymizer.networks import classifier

DOWNSAMPLING = 8  # three stride-2 convolutions


class SwapEncoder(nn.Module):
    """x (B, S*S) -> z (B, code_dim): three stride-2 convolutions, a linear layer, standardised.

    The image is zero-padded evenly to a multiple of 8, so any ``image_size`` works.
    """

    def __init__(self, image_size: int, channels: int, code_dim: int):
        super().__init__()
        self.image_size = image_size
        padded = -(-image_size // DOWNSAMPLING) * DOWNSAMPLING
        self.pad = ((padded - image_size) // 2, padded - image_size - (padded - image_size) // 2)
        c, side = channels, padded // DOWNSAMPLING
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(4 * c * side * side, code_dim),
            # a standardised code: unnormalised, the encoder hid the identity from the
            # co-trained adversary by shrinking z (std 0.09), while a fresh forest read it at 96%
            nn.BatchNorm1d(code_dim, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, (a, b) = self.image_size, self.pad
        return self.net(F.pad(x.view(-1, 1, s, s), (a, b, a, b)))


class SwapDecoder(nn.Module):
    """(z, identity) -> logits (B, S*S): the identity one-hot enters every layer."""

    def __init__(self, image_size: int, channels: int, code_dim: int, n_identities: int):
        super().__init__()
        self.image_size = image_size
        self.n_identities = n_identities
        padded = -(-image_size // DOWNSAMPLING) * DOWNSAMPLING
        self.crop = (padded - image_size) // 2
        c, self.side = channels, padded // DOWNSAMPLING
        k = n_identities
        self.fc = nn.Linear(code_dim + k, 4 * c * self.side * self.side)
        self.ups = nn.ModuleList(
            [
                nn.ConvTranspose2d(4 * c + k, 2 * c, 4, stride=2, padding=1),
                nn.ConvTranspose2d(2 * c + k, c, 4, stride=2, padding=1),
                nn.ConvTranspose2d(c + k, 1, 4, stride=2, padding=1),
            ]
        )

    def forward(self, z: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(identity.long(), self.n_identities).to(z.dtype)
        h = self.fc(torch.cat([z, onehot], dim=1)).view(len(z), -1, self.side, self.side)
        for up in self.ups:
            h = F.relu(h)
            planes = onehot[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
            h = up(torch.cat([h, planes], dim=1))
        s, c = self.image_size, self.crop
        return h[:, :, c : c + s, c : c + s].reshape(len(z), s * s)


class SwapNetworks(nn.Module):
    """The encoder, the conditional decoder and the identity adversary on the code."""

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        code_dim: int,
        n_identities: int,
        adversary_hidden: int,
        dropout: float,
    ):
        super().__init__()
        self.encoder = SwapEncoder(image_size, channels, code_dim)
        self.decoder = SwapDecoder(image_size, channels, code_dim, n_identities)
        self.adversary = classifier(code_dim, adversary_hidden, n_identities, dropout)
