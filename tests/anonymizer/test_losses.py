import math

import pytest
import torch

from imgprivacy.anonymizer.losses import (
    anonymizer_loss,
    discriminator_loss,
    empirical_prior,
    objective_loss,
    private_loss,
)
from imgprivacy.anonymizer.networks import select
from imgprivacy.errors import InvalidInputError


def test_discriminator_bce_matches_hand_computation():
    # q(y=1|v) = sigmoid(logit): 0.8 for a true original, 0.3 for an autoencoded image
    p = torch.tensor([0.8, 0.3])
    logits = torch.log(p / (1 - p))
    y = torch.tensor([1, 0])
    expected = -(math.log(0.8) + math.log(1 - 0.3)) / 2
    assert discriminator_loss(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_private_and_objective_losses_by_hand():
    q = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    logits = q.log()
    z = torch.tensor([0, 2])
    prior = torch.tensor([0.5, 0.25, 0.25])
    assert private_loss(logits, z).item() == pytest.approx(
        -(math.log(0.7) + math.log(0.8)) / 2, rel=1e-6
    )
    expected_obj = (
        -sum(sum(p * math.log(qi) for p, qi in zip(prior.tolist(), row)) for row in q.tolist()) / 2
    )
    assert objective_loss(logits, prior).item() == pytest.approx(expected_obj, rel=1e-6)


def test_objective_equals_private_when_classifier_outputs_the_prior():
    z = torch.tensor([0, 0, 1, 2])  # empirical prior (0.5, 0.25, 0.25)
    prior = empirical_prior(z, 3)
    assert prior.tolist() == [0.5, 0.25, 0.25]
    logits = prior.log().expand(len(z), 3)
    parts = anonymizer_loss(
        fool_logits=torch.zeros(4), private_logits=logits, z=z, prior=prior, lam=3.0
    )
    entropy = -(prior * prior.log()).sum().item()
    assert parts["objective"].item() == pytest.approx(entropy, rel=1e-6)
    assert parts["private"].item() == pytest.approx(entropy, rel=1e-6)
    assert parts["gap"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["total"].item() == pytest.approx(math.log(2), rel=1e-6)  # fidelity only


def test_eq12_combines_fidelity_and_absolute_gap():
    prior = torch.tensor([0.5, 0.5])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # a confident, correct private classifier
    z = torch.tensor([0, 1])
    fool = torch.tensor([1.0, -1.0])
    parts = anonymizer_loss(fool_logits=fool, private_logits=logits, z=z, prior=prior, lam=2.0)
    fidelity = discriminator_loss(fool, torch.ones(2))  # the autoencoder wants y = 1
    gap = abs(objective_loss(logits, prior) - private_loss(logits, z))
    assert parts["gap"].item() == pytest.approx(gap.item())
    assert parts["total"].item() == pytest.approx((fidelity + 2.0 * gap).item())
    assert parts["objective"] > parts["private"]  # a good classifier beats the prior


def test_negative_lambda_is_rejected():
    with pytest.raises(InvalidInputError, match="lambda >= 0"):
        anonymizer_loss(
            fool_logits=torch.zeros(2),
            private_logits=torch.zeros(2, 2),
            z=torch.tensor([0, 1]),
            prior=torch.tensor([0.5, 0.5]),
            lam=-1.0,
        )


def test_selector_picks_original_when_y_is_one():
    x = torch.arange(8.0).view(4, 2)
    x_hat = -x
    v = select(x, x_hat, torch.tensor([1, 0, 0, 1]))
    assert v.tolist() == [[0.0, 1.0], [-2.0, -3.0], [-4.0, -5.0], [6.0, 7.0]]
    images = torch.ones(2, 1, 3, 3)
    assert select(images, 0 * images, torch.tensor([0, 1]))[:, 0, 0, 0].tolist() == [0.0, 1.0]
