"""The two faces anonymizers trained once for every target: code match and identity swap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer.augment import NuisanceAugment
from imgprivacy.anonymizer.code_match import CodeMatchAnonymizer
from imgprivacy.anonymizer.code_match_trainer import CodeMatchConfig, nt_xent
from imgprivacy.anonymizer.swap_config import SwapConfig
from imgprivacy.anonymizer.swap_model import SwapAnonymizer
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(36, 12, 12), dtype=np.uint8)
IDENTITY = np.repeat([0, 1, 2], 12)


@pytest.fixture(scope="module")
def code_match():
    config = CodeMatchConfig(
        image_size=12, channels=2, code_dim=4, projection_dim=4, epochs=2, batch_size=12
    )
    return CodeMatchAnonymizer(config).fit(IMAGES, IDENTITY)


@pytest.fixture(scope="module")
def swap():
    config = SwapConfig(image_size=12, channels=2, code_dim=4, adversary_hidden=8, epochs=2)
    return SwapAnonymizer(config).fit(IMAGES, IDENTITY)


def is_image_of(released, identity):
    pool = IMAGES[identity == IDENTITY].reshape(1, -1, 144)
    return (released.reshape(len(released), 1, 144) == pool).all(-1).any(-1)


def test_code_match_releases_real_images_of_the_target(code_match):
    assert is_image_of(code_match.transform(IMAGES), 0).all()
    retargeted = code_match.retarget(2)
    assert is_image_of(retargeted.transform(IMAGES, identities=IDENTITY), 2).all()
    assert code_match.config.target_identity == 0  # retarget returns a copy


def test_code_match_standardises_codes_per_identity(code_match):
    codes = code_match._encode(torch.as_tensor(IMAGES.reshape(36, -1) / 255.0).float())
    standard = code_match._standardised(codes, torch.as_tensor(IDENTITY))
    for k in range(3):
        assert standard[k == IDENTITY].mean(0).abs().max() < 1e-4
    assert code_match.predict_identity(IMAGES).shape == (36,)


def test_code_match_round_trips_and_refuses_bad_input(code_match, tmp_path):
    path = code_match.save(tmp_path / "cm.safetensors")
    loaded = CodeMatchAnonymizer.load(path)
    assert np.array_equal(
        loaded.transform(IMAGES, identities=IDENTITY),
        code_match.transform(IMAGES, identities=IDENTITY),
    )
    with pytest.raises(InvalidInputError, match="Retargeting needs the training images"):
        loaded.retarget(1)
    with pytest.raises(InvalidInputError, match=r"36 indices in 0..2"):
        code_match.transform(IMAGES, identities=np.full(36, 3))
    with pytest.raises(NotFittedError, match="CodeMatchAnonymizer is not fitted"):
        CodeMatchAnonymizer().transform(IMAGES)
    with pytest.raises(CorruptFileError, match="got .imgprivacy.anonymizer.swap_model"):
        CodeMatchAnonymizer.load(_swap_file(tmp_path))
    with pytest.raises(InvalidInputError, match="target_identity among the identity indices"):
        CodeMatchAnonymizer(code_match.config.replace(target_identity=5)).fit(IMAGES, IDENTITY)


def _swap_file(tmp_path):
    config = SwapConfig(image_size=12, channels=2, code_dim=4, adversary_hidden=8, epochs=1)
    return SwapAnonymizer(config).fit(IMAGES, IDENTITY).save(tmp_path / "swap.safetensors")


def test_swap_renders_every_target_and_round_trips(swap, tmp_path):
    out = swap.transform(IMAGES)
    assert out.shape == (36, 12, 12) and out.dtype == np.uint8
    assert not np.array_equal(out, swap.retarget(1).transform(IMAGES))  # the identity matters
    loaded = SwapAnonymizer.load(swap.save(tmp_path / "s.safetensors"))
    assert np.array_equal(loaded.transform(IMAGES), out)
    nearest = SwapAnonymizer(swap.config.replace(substitution="code-nearest", epochs=1))
    assert is_image_of(nearest.fit(IMAGES, IDENTITY).transform(IMAGES), 0).all()
    with pytest.raises(InvalidInputError, match="substitution must be one of"):
        SwapConfig(substitution="target")


def test_nt_xent_prefers_matching_views_and_augment_is_seeded():
    a = torch.eye(4)
    assert nt_xent(a, a, 0.5) < nt_xent(a, a.roll(1, 0), 0.5)
    augment = NuisanceAugment(image_size=12)
    x = torch.rand(3, 144, generator=torch.Generator().manual_seed(1))
    first = augment(x, generator=torch.Generator().manual_seed(2))
    again = augment(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, x)
