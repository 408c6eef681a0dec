"""The losses of eq. (12)-(15), written exactly as in the paper, averaged over the batch.

Conventions: ``disc_logits`` are logits of q(y=1|v) (v is an original), ``private_logits`` are
logits of q(z|x_hat) over the private classes, ``prior`` is the empirical distribution p_Z of the
private labels on the training set (a probability vector).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from imgprivacy.errors import InvalidInputError


def discriminator_loss(disc_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (13): -1/n sum_i [y_i log q(y|v_i) + (1 - y_i) log(1 - q(y|v_i))].

    Examples
    --------
    >>> round(float(discriminator_loss(torch.zeros(4), torch.tensor([1, 0, 1, 0]))), 4)  # log 2
    0.6931
    """
    return F.binary_cross_entropy_with_logits(disc_logits.view(-1), y.float().view(-1))


def private_loss(private_logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Eq. (14): 1/n sum_i <e(z_i), -log q(.|x_hat_i)>, the private branch's cross-entropy."""
    return F.cross_entropy(private_logits, z)


def objective_loss(private_logits: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Eq. (15): 1/n sum_i <p_Z, -log q(.|x_hat_i)>, the loss of guessing from the prior.

    Examples
    --------
    >>> prior = torch.tensor([0.5, 0.25, 0.25])
    >>> logits = prior.log().expand(2, 3)  # a classifier that outputs the prior
    >>> round(float(objective_loss(logits, prior)), 4)  # = H(p_Z) = 1.5 log 2
    1.0397
    """
    log_q = F.log_softmax(private_logits, dim=1)
    return -(log_q * prior.to(log_q.dtype)).sum(dim=1).mean()


def anonymizer_loss(
    *,
    fool_logits: torch.Tensor,
    private_logits: torch.Tensor,
    z: torch.Tensor,
    prior: torch.Tensor,
    lam: float,
) -> dict[str, torch.Tensor]:
    """Eq. (12) for the autoencoder: L_disc + lambda * |L_obj - L_priv|.

    ``fool_logits`` are the discriminator's logits on autoencoded images: the autoencoder wants
    them taken for originals, so its fidelity term is eq. (13) with y = 1 on x_hat.

    Returns a dict with ``total`` (to minimise) and its parts ``fidelity``, ``private``,
    ``objective`` and ``gap`` = |L_obj - L_priv|.
    """
    if lam < 0:
        raise InvalidInputError(f"Expected lambda >= 0, got {lam!r}.")
    fidelity = discriminator_loss(fool_logits, torch.ones_like(fool_logits.view(-1)))
    priv = private_loss(private_logits, z)
    obj = objective_loss(private_logits, prior)
    gap = (obj - priv).abs()
    return {
        "total": fidelity + lam * gap,
        "fidelity": fidelity,
        "private": priv,
        "objective": obj,
        "gap": gap,
    }


def empirical_prior(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """p_Z: the frequency of each private class among ``labels`` (shape (n_classes,))."""
    counts = torch.bincount(labels.long(), minlength=n_classes).double()
    return (counts / counts.sum()).float()
