"""The breadth gate in the DOCL protocol: breadths on the reference inputs, the adversary's model
named apart, and a gated Guard blocking at least what the ungated one blocks."""

from __future__ import annotations

from types import SimpleNamespace

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

CONFIG = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=3)
CLASSES = [0, 1, 2]


def three_users(seed: int = 0) -> SimpleNamespace:
    """Three users of three clustered classes in 16-d: the data (train/test split 3:1), their
    models and the test images' scores."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 16, generator=generator)
    labels = np.repeat(np.arange(3), 40)
    x = (centres[labels] + 0.05 * torch.randn(120, 16, generator=generator)).clamp(0, 1)
    train, test = np.arange(120) % 4 != 0, np.arange(120) % 4 == 0
    models = train_class_models(x[train], labels[train], CLASSES, config=CONFIG)
    return SimpleNamespace(
        train_x=x[train], train_y=labels[train], test_x=x[test], test_y=labels[test],
        negatives_x=None, scores=bank_of(models, CLASSES).score(x[test]),
    )  # fmt: skip


def attacks(users: SimpleNamespace, guards: dict[str, Guard]):
    return adversary_matrix(
        train_features=users.train_x,
        train_labels=users.train_y,
        test_scores=users.scores,
        test_features=users.test_x,
        test_labels=users.test_y,
        classes=CLASSES,
        config=CONFIG,
        guards=guards,
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
    users = three_users()
    guards = {
        "off": Guard(policy="margin", alpha=1.0, margin=1.0),
        "gated": Guard(policy="margin", alpha=1.0, margin=1.0, breadth_ratio=1.0),
    }
    seen = []  # every breadth mapping the gated Guard was given
    set_breadth = guards["gated"].set_breadth
    guards["gated"].set_breadth = lambda breadth: (seen.append(dict(breadth)), set_breadth(breadth))
    result = attacks(users, guards)
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
    result = attacks(three_users(), {"any-other": Guard(policy="any-other", alpha=1.0)})
    shared = result.victim_shared["any-other"]
    honest = np.diag(shared)  # each victim's share with honest models only
    attacked = ~np.eye(3, dtype=bool)
    assert (shared <= honest[None, :] + 1e-12)[attacked].all()
    assert (shared < honest[None, :])[attacked].sum() >= 4


def test_the_strong_adversary_script_decides_as_the_adversary_matrix():
    """One pair through ``docl_strong_adversaries.attack_pair`` gives the adversary experiment's
    figures for that pair (same seeded training, same Guards)."""
    from imgprivacy.reproduce.docl_strong_adversaries import attack_pair

    users = three_users(seed=1)

    def guards():
        return {
            "gated": Guard(policy="margin", alpha=2.0, margin=1.0, breadth_ratio=1.0),
            "off": Guard(policy="margin", alpha=2.0, margin=1.0),
        }

    pair = attack_pair(users, users.scores, CONFIG, 2, 0, guards())
    matrices = attacks(users, guards())
    for name, (blocked, shared) in pair.items():
        assert blocked == pytest.approx(matrices.blocked[name][2, 0])
        assert shared == pytest.approx(matrices.victim_shared[name][2, 0])


def test_the_strong_adversary_report_summarises_and_draws_its_pairs(tmp_path):
    from imgprivacy.reports import docl_figures
    from imgprivacy.reproduce.docl_strong_adversaries import (
        StrongAdversariesResult,
        matrices_of,
        summarise,
        summary_tables,
    )

    rows = [
        dict(epochs=30, adversary=a, victim=v, guard=g, adversary_blocked=b, victim_shared=s)
        for a, v, g, b, s in [
            (7, 1, "seniority", 0.99, 0.97),
            (4, 9, "seniority", 0.06, 0.935),
            (7, 1, "plain", 0.99, 0.005),
            (4, 9, "plain", 0.06, 0.05),
        ]
    ]
    summary = summarise(rows)
    assert [(s["guard"], s["pairs"]) for s in summary] == [("seniority", 2), ("plain", 2)]
    assert summary[0]["blocked_worst"] == 0.06 and summary[0]["shared_worst"] == 0.935
    assert summary[1]["shared_mean"] == pytest.approx(0.0275)
    matrices = matrices_of(rows, epochs=30, key="victim_shared")
    assert matrices["plain"][7, 1] == 0.005 and np.isnan(matrices["plain"][1, 7])
    png = docl_figures.adversary_matrices(
        tmp_path / "m.png", matrices=matrices, alpha=2.7, what="victim's own shared"
    )
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = StrongAdversariesResult(
        guard={}, variants={}, user_epochs=30, rows=rows, summary=summary,
        paper_blocked=0.7, seconds=1.0, figures=[],
    )  # fmt: skip
    (table,) = summary_tables(result)
    assert table.row_count == 2
