"""The breadth gate in the DOCL protocol: breadths on the reference inputs, the adversary's model
named apart, and a gated Guard blocking at least what the ungated one blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, BankScores, Guard
from imgprivacy.reproduce.docl_experiments import (
    adversary_matrix,
    bank_of,
    breadths,
    train_class_models,
)


def test_breadths_are_the_share_of_reference_inputs_claimed():
    scores = BankScores(
        distances=torch.tensor([[1.0, 5.0], [2.0, 5.0], [9.0, 1.0], [3.5, 0.5]]),
        error_mean=torch.tensor([2.0, 1.0]),
        error_std=torch.tensor([1.0, 0.5]),
        model_ids=("u0/0", "u1/0"),
        owners=("u0", "u1"),
    )
    assert breadths(scores, alpha=1.0) == {"u0/0": 0.5, "u1/0": 0.5}
    assert breadths(scores, alpha=1.5) == {"u0/0": 0.75, "u1/0": 0.5}


def test_gated_adversary_matrix_blocks_at_least_the_ungated_one():
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 16, generator=generator)
    labels = np.repeat(np.arange(3), 40)
    x = (centres[labels] + 0.05 * torch.randn(120, 16, generator=generator)).clamp(0, 1)
    train, test = np.arange(120) % 4 != 0, np.arange(120) % 4 == 0
    config = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=3)
    classes = [0, 1, 2]
    models = train_class_models(x[train], labels[train], classes, config=config)
    test_scores = bank_of(models, classes).score(x[test])
    guards = {
        "off": Guard(policy="margin", alpha=1.0, margin=1.0),
        "gated": Guard(policy="margin", alpha=1.0, margin=1.0, breadth_ratio=1.0),
    }
    seen = []  # every breadth mapping the gated Guard was given
    set_breadth = guards["gated"].set_breadth
    guards["gated"].set_breadth = lambda breadth: (seen.append(dict(breadth)), set_breadth(breadth))
    result = adversary_matrix(
        train_features=x[train],
        train_labels=labels[train],
        test_scores=test_scores,
        test_features=x[test],
        test_labels=labels[test],
        classes=classes,
        config=config,
        guards=guards,
    )
    matrices = result.blocked
    assert (matrices["gated"] >= matrices["off"]).all()
    assert (matrices["gated"] > matrices["off"]).any()  # the gate took some vouching away
    # The diagonal uploads are the owners' own, so both matrices agree there.
    for name in guards:
        diagonal = np.diag(result.victim_shared[name]) + np.diag(matrices[name])
        np.testing.assert_allclose(diagonal, 1.0)
    # One mapping per (adversary, victim) pair; off the diagonal the adversary's model has its
    # own entry beside the honest models it does not replace.
    assert len(seen) == 9
    attacked = [m for m in seen if any(k.endswith("/adversary") for k in m)]
    assert len(attacked) == 6
    assert all(len(m) == 3 and all(0.0 <= b <= 1.0 for b in m.values()) for m in seen)


def test_the_victims_own_uploads_are_scored_with_the_adversarys_model_in_the_bank():
    """Under ``any-other`` a victim's upload is blocked by any model of another user that claims
    it, and the adversary's model (trained on the victim's class too) claims more of the
    victim's images than the honest model it replaces: the victim shares less under attack."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 16, generator=generator)
    labels = np.repeat(np.arange(3), 40)
    x = (centres[labels] + 0.05 * torch.randn(120, 16, generator=generator)).clamp(0, 1)
    train, test = np.arange(120) % 4 != 0, np.arange(120) % 4 == 0
    config = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=3)
    classes = [0, 1, 2]
    models = train_class_models(x[train], labels[train], classes, config=config)
    result = adversary_matrix(
        train_features=x[train],
        train_labels=labels[train],
        test_scores=bank_of(models, classes).score(x[test]),
        test_features=x[test],
        test_labels=labels[test],
        classes=classes,
        config=config,
        guards={"any-other": Guard(policy="any-other", alpha=1.0)},
    )
    shared = result.victim_shared["any-other"]
    honest = np.diag(shared)  # each victim's share with honest models only
    attacked = ~np.eye(3, dtype=bool)
    assert (shared <= honest[None, :] + 1e-12)[attacked].all()
    assert (shared < honest[None, :])[attacked].sum() >= 4


def test_the_strong_adversary_script_decides_as_the_adversary_matrix():
    """One pair through ``docl_strong_adversaries.attack_pair`` gives the adversary experiment's
    figures for that pair (same seeded training, same Guards)."""
    from types import SimpleNamespace

    from imgprivacy.reproduce.docl_strong_adversaries import attack_pair

    generator = torch.Generator().manual_seed(1)
    centres = torch.rand(3, 16, generator=generator)
    labels = np.repeat(np.arange(3), 40)
    x = (centres[labels] + 0.05 * torch.randn(120, 16, generator=generator)).clamp(0, 1)
    train, test = np.arange(120) % 4 != 0, np.arange(120) % 4 == 0
    config = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=3)
    classes = [0, 1, 2]
    models = train_class_models(x[train], labels[train], classes, config=config)
    scores = bank_of(models, classes).score(x[test])

    def guards():
        return {
            "gated": Guard(policy="margin", alpha=2.0, margin=1.0, breadth_ratio=1.0),
            "off": Guard(policy="margin", alpha=2.0, margin=1.0),
        }

    data = SimpleNamespace(
        train_x=x[train], train_y=labels[train], test_x=x[test], test_y=labels[test],
        negatives_x=None,
    )  # fmt: skip
    pair = attack_pair(data, scores, config, 2, 0, guards())
    matrices = adversary_matrix(
        train_features=x[train],
        train_labels=labels[train],
        test_scores=scores,
        test_features=x[test],
        test_labels=labels[test],
        classes=classes,
        config=config,
        guards=guards(),
    )
    for name, (blocked, shared) in pair.items():
        assert blocked == pytest.approx(matrices.blocked[name][2, 0])
        assert shared == pytest.approx(matrices.victim_shared[name][2, 0])
