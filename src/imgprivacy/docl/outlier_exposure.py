"""Outlier exposure: a user's autoencoder learns to reconstruct a public negative set badly.

The provider publishes images that are nobody's private data (another data set's images, noise);
the device trains its autoencoder on the owner's images (eq. 4) plus a hinge on the negatives'
distances (eq. 6)::

    loss = BCE(owner batch) / B + lambda * mean(relu(m - d(negative batch)))
    m    = mean(d(owner batch)) + negative_margin * std(d(owner batch))   (no gradient)

so the negatives end up farther than the owner's own images by a margin set in the units of the
owner's spread: the interval ``mu + alpha * sigma`` (mu and sigma still those of the owner's
training images, so the upload is unchanged) holds fewer images that are not the owner's. lambda
is ``AutoencoderConfig.negative_weight`` and 0 turns it off (the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError


def check_negatives(
    negatives: object | None, *, config: AutoencoderConfig, private: bool = False
) -> torch.Tensor | None:
    """The validated negative features for ``config``, or None when it trains without them.

    Raises
    ------
    InvalidInputError
        For negatives without ``negative_weight`` (or the reverse), with differentially private
        training, or negatives of the wrong shape or outside [0, 1].
    """
    weight = config.negative_weight
    if negatives is None:
        if weight > 0:
            raise InvalidInputError(
                f"negative_weight={weight:g} trains against a public negative set, but none was "
                "given: pass negatives=FEATURES (e.g. imgprivacy.client.negative_features(), the "
                "features of imgprivacy.data.public_negative_images()), or set negative_weight=0 "
                "(config.replace(negative_weight=0)) to train on the owner's images only."
            )
        return None
    if weight == 0:
        raise InvalidInputError(
            "negatives were given but negative_weight is 0, so they would be ignored: set "
            "negative_weight > 0 (e.g. 1.0) to train against them, or pass negatives=None."
        )
    if private:
        raise InvalidInputError(
            "Differentially private training does not support a negative set: pass "
            "negatives=None and negative_weight=0 with privacy=."
        )
    return as_feature_matrix(negatives, input_dim=config.input_dim, what="negative features")


def negative_hinge(
    net: nn.Module,
    batch: torch.Tensor,
    logits: torch.Tensor,
    negatives: torch.Tensor,
    *,
    config: AutoencoderConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """``lambda * mean(relu(m - d_neg))`` on as many negatives as ``batch`` has rows, drawn with
    ``generator`` (``logits`` are the net's outputs for ``batch``)."""
    picks = torch.randint(len(negatives), (len(batch),), generator=generator)
    drawn = negatives[picks.to(negatives.device)]
    negative_distance = (drawn - torch.sigmoid(net(drawn))).square().sum(dim=1)
    with torch.no_grad():
        own = (batch - torch.sigmoid(logits)).square().sum(dim=1)
        bound = own.mean() + config.negative_margin * own.std(correction=0)
    return config.negative_weight * torch.relu(bound - negative_distance).mean()
