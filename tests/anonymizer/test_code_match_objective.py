"""The code-match encoder's objective options: negatives within an identity, smooth warps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer, identity_whiteners
from imgprivacy.anonymizer.code_match_objectives import (
    balanced_assignments,
    smooth_warp,
    swapped_prototype_loss,
)
from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig, nt_xent
from imgprivacy.errors import InvalidInputError

RNG = np.random.default_rng(2)
IMAGES = RNG.integers(0, 256, size=(36, 12, 12), dtype=np.uint8)
IDENTITY = np.repeat([0, 1, 2], 12)
CONFIG = CodeMatchConfig(
    image_size=12, channels=2, code_dim=4, projection_dim=4, epochs=1, batch_size=12
)


def test_negatives_within_groups_compete_only_inside_their_group():
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.allclose(
        nt_xent(first, second, 0.3, groups=torch.zeros(6, dtype=torch.long)),
        nt_xent(first, second, 0.3),
    )
    # by hand: row i's softmax over the other five rows of its own group (2 x 3 - 1)
    views = F.normalize(torch.cat([first, second]), dim=1)
    sim = views @ views.T / 0.3
    both = torch.cat([groups, groups])
    losses = []
    for i in range(12):
        others = [j for j in range(12) if j != i and both[j] == both[i]]
        partner = (i + 6) % 12
        losses.append(torch.logsumexp(sim[i, others], 0) - sim[i, partner])
    expected = torch.stack(losses).mean()
    assert torch.allclose(nt_xent(first, second, 0.3, groups=groups), expected, atol=1e-5)
    assert not torch.allclose(expected, nt_xent(first, second, 0.3))
    # every row alone in its group: only the partner is left, nothing to learn
    assert nt_xent(first, second, 0.3, groups=torch.arange(6)).item() == pytest.approx(0.0)


def test_smooth_warp_moves_pixels_locally_and_is_seeded():
    x = torch.zeros(2, 144)
    x.view(2, 12, 12)[:, 4:8, 4:8] = 1.0  # a bright square
    warped = smooth_warp(
        x, image_size=12, amplitude=1.5, generator=torch.Generator().manual_seed(3)
    )
    again = smooth_warp(x, image_size=12, amplitude=1.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(warped, again) and not torch.allclose(warped, x)
    assert (warped[0] != warped[1]).any()  # a field per image
    assert warped.min() >= 0 and warped.max() <= 1
    # a displacement of at most 1.5 pixels keeps the square's centre of mass within 1.5 pixels
    grid = torch.arange(12.0)
    for image in warped.view(2, 12, 12):
        mass = image.sum()
        assert abs(float((image.sum(0) * grid).sum() / mass) - 5.5) <= 1.5
        assert abs(float((image.sum(1) * grid).sum() / mass) - 5.5) <= 1.5


def test_objective_options_are_validated_and_change_the_training():
    with pytest.raises(InvalidInputError, match=r"negatives must be one of \('all', 'identity'\)"):
        CONFIG.replace(negatives="cell")
    with pytest.raises(InvalidInputError, match="warp must be a finite number >= 0"):
        CONFIG.replace(warp=-1.0)
    with pytest.raises(InvalidInputError, match="prototypes must be an integer >= 0"):
        CONFIG.replace(prototypes=-2)
    x = torch.as_tensor(IMAGES.reshape(36, -1) / 255.0).float()
    codes = {}
    for name, config in {
        "all": CONFIG,
        "identity": CONFIG.replace(negatives="identity"),
        "warp": CONFIG.replace(warp=1.0),
        "prototypes": CONFIG.replace(prototypes=3),
    }.items():
        model = CodeMatchAnonymizer(config).fit(IMAGES, IDENTITY)
        codes[name] = model._encode(x)
    assert not torch.allclose(codes["all"], codes["identity"])
    assert not torch.allclose(codes["all"], codes["warp"])
    assert not torch.allclose(codes["all"], codes["prototypes"])


def test_prototype_targets_are_balanced_within_every_identity():
    g = torch.Generator().manual_seed(4)
    scores = torch.rand(12, 3, generator=g) + torch.tensor([2.0, 0, 0])  # prototype 0 favoured
    groups = torch.tensor([0] * 6 + [1] * 6)
    q = balanced_assignments(scores, groups, iterations=50)
    assert torch.allclose(q.sum(1), torch.ones(12), atol=1e-4)
    for k in (0, 1):  # each identity's six rows spread two per prototype
        assert torch.allclose(q[groups == k].sum(0), torch.full((3,), 2.0), atol=1e-2)
    # identities moved apart by a constant do not change the loss (codes centred per identity)
    z = torch.randn(12, 4, generator=g)
    protos = torch.randn(3, 4, generator=g)
    shifted = z + (groups[:, None] * torch.tensor([5.0, -3.0, 1.0, 2.0]))
    assert torch.allclose(
        swapped_prototype_loss(z, z, protos, groups=groups),
        swapped_prototype_loss(shifted, shifted, protos, groups=groups),
        atol=1e-5,
    )


def test_objective_options_round_trip(tmp_path):
    config = CONFIG.replace(negatives="identity", warp=0.5, whiten=True)
    model = CodeMatchAnonymizer(config).fit(IMAGES, IDENTITY)
    loaded = CodeMatchAnonymizer.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.config.negatives == "identity" and loaded.config.warp == 0.5
    assert np.array_equal(
        loaded.transform(IMAGES, identities=IDENTITY), model.transform(IMAGES, identities=IDENTITY)
    )


def test_whitening_ridge_is_the_configured_one():
    config = CONFIG.replace(whiten=True, whiten_ridge=2.0)
    model = CodeMatchAnonymizer(config).fit(IMAGES, IDENTITY)
    x = torch.as_tensor(IMAGES.reshape(36, -1) / 255.0).float()
    codes, ids = model._encode(x), torch.as_tensor(IDENTITY)
    maps = model.substitution_.query_maps_
    assert torch.allclose(maps, identity_whiteners(codes, ids, 3, ridge=2.0), atol=1e-5)
    assert not torch.allclose(maps, identity_whiteners(codes, ids, 3, ridge=0.01), atol=1e-3)
    with pytest.raises(InvalidInputError, match="whiten_ridge must be a finite number > 0"):
        CONFIG.replace(whiten_ridge=0.0)
