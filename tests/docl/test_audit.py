"""The privacy audit on tiny models: SSIM, correlation, inversion and membership."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.audit import (
    AuditSettings,
    audit_guard,
    correlation,
    membership_auc,
    ssim,
)
from imgprivacy.errors import InvalidInputError, NotFittedError

SETTINGS = AuditSettings(
    restarts=2, codes_per_restart=16, steps=60, iterations=50, calibration_images=16
)


def rectangles(n: int, seed: int) -> torch.Tensor:
    """(n, 784) images of three random white rectangles on black, 28x28."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 28, 28)
    for i in range(n):
        for _ in range(3):
            r, c = torch.randint(2, 20, (2,), generator=g).tolist()
            h, w = torch.randint(2, 8, (2,), generator=g).tolist()
            x[i, r : r + h, c : c + w] = 1.0
    return x.reshape(n, -1)


@pytest.fixture(scope="module")
def members():
    return rectangles(12, seed=0)


@pytest.fixture(scope="module")
def non_members():
    return rectangles(12, seed=1)


@pytest.fixture(scope="module")
def memorised(members):
    """A wide model trained far beyond need on 12 images: it memorises them."""
    config = AutoencoderConfig(
        hidden_dim=32, layer_widths=(128,), epochs=80, batch_size=12, learning_rate=3e-3
    )
    return OneClassAutoencoder(config).fit(members)


@pytest.fixture(scope="module")
def barely_trained(members):
    config = AutoencoderConfig(hidden_dim=32, layer_widths=(128,), epochs=1, batch_size=12)
    return OneClassAutoencoder(config).fit(members)


def test_ssim_of_an_image_with_itself_is_one_and_with_its_negative_below_zero():
    x = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(3))
    assert (ssim(x, 1 - x) < 0).all()
    assert torch.allclose(ssim(x, x.flip(0)), ssim(x.flip(0), x))


def test_ssim_matches_the_formula_on_one_window():
    """A 7x7 image has exactly one 7x7 window: SSIM is then the textbook formula."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 7, 7, generator=g), torch.rand(1, 7, 7, generator=g)
    x, y = a.double().flatten().numpy(), b.double().flatten().numpy()
    cov = np.cov(x, y)  # sample covariance (n - 1), as scikit-image uses
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * x.mean() * y.mean() + c1) * (2 * cov[0, 1] + c2)) / (
        (x.mean() ** 2 + y.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    )
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_correlation_of_affine_copies():
    x = torch.rand(2, 50, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(correlation(x, 2 * x + 1), torch.ones(2))
    assert torch.allclose(correlation(x, -x), -torch.ones(2))
    assert correlation(torch.ones(1, 5), x[:1, :5]).item() == 0.0  # a constant row


def test_a_memorised_model_reveals_membership(memorised, barely_trained, members, non_members):
    memorised_auc = membership_auc(memorised, members, non_members)
    barely_auc = membership_auc(barely_trained, members, non_members)
    assert memorised_auc > 0.9
    assert memorised_auc > barely_auc + 0.2


def test_the_inversion_recovers_memorised_images(memorised, members, non_members):
    result = audit_guard(memorised, members, held_out=non_members, settings=SETTINGS)
    assert result.recovered == 2 * SETTINGS.restarts * SETTINGS.codes_per_restart
    assert 0 <= result.below_mu <= result.recovered
    assert result.near_copy_threshold >= SETTINGS.near_copy_ssim
    assert result.best_ssim >= result.near_copy_threshold  # a recovered training image
    assert 0 < result.near_copy_fraction <= 1
    assert result.best_correlation > 0.9
    assert result.membership_auc > 0.9
    assert result.training_images == result.held_out_images == 12


def test_an_untrained_model_gives_no_near_copy(barely_trained, members):
    result = audit_guard(barely_trained, members, settings=SETTINGS)
    assert result.near_copy_fraction == 0.0
    assert -1 <= result.best_ssim < result.near_copy_threshold
    assert result.mean_ssim <= result.best_ssim
    assert result.membership_auc is None and result.held_out_images == 0


def test_the_audit_leaves_the_model_trainable(memorised):
    assert all(p.requires_grad for p in memorised.net_.parameters())


def test_the_audit_refuses_features_that_are_not_images(members):
    config = AutoencoderConfig(
        input_dim=16, hidden_dim=4, layer_widths=(), epochs=1, feature_extractor="resnet20-cifar"
    )
    model = OneClassAutoencoder(config).fit(torch.rand(8, 16))
    with pytest.raises(InvalidInputError, match="needs a model on image features"):
        audit_guard(model, torch.rand(8, 16), settings=SETTINGS)


def test_the_audit_checks_its_inputs(memorised):
    with pytest.raises(InvalidInputError, match="training images"):
        audit_guard(memorised, torch.rand(4, 100), settings=SETTINGS)
    with pytest.raises(InvalidInputError, match="held-out images"):
        audit_guard(memorised, torch.rand(4, 784), held_out=torch.full((2, 784), 2.0))
    with pytest.raises(NotFittedError):
        audit_guard(OneClassAutoencoder(), torch.rand(4, 784))
    with pytest.raises(InvalidInputError, match="near_copy_ssim must be in"):
        AuditSettings(near_copy_ssim=1.5)
    with pytest.raises(InvalidInputError, match="restarts must be a positive integer"):
        AuditSettings(restarts=0)
