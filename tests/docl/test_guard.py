import pytest
import torch

from imgprivacy.docl import POLICIES, BankScores, Guard
from imgprivacy.errors import InvalidInputError, UnknownNameError


def scores(rows, owners=("a", "b", "c")):
    """Three models with mu=10, sigma=2: interval [8, 12] at alpha=1."""
    n = len(owners)
    return BankScores(
        distances=torch.tensor(rows, dtype=torch.float32),
        error_mean=torch.full((n,), 10.0, dtype=torch.float64),
        error_std=torch.full((n,), 2.0, dtype=torch.float64),
        model_ids=tuple(f"{o}/0" for o in owners),
        owners=tuple(owners),
    )


def decide(policy, rows, uploader, alpha=1.0):
    return [d.share for d in Guard(policy=policy, alpha=alpha).decide(scores(rows), uploader)]


def test_paper_rule_blocks_only_when_nearest_is_someone_elses_and_inside():
    assert decide("paper", [[30, 9, 40]], "a") == [False]  # b's interval claims it
    assert decide("paper", [[9, 11, 40]], "a") == [True]  # nearest is the uploader's own
    assert decide("paper", [[30, 5, 40]], "a") == [True]  # nearest b, but below its interval
    assert decide("paper", [[30, 13, 40]], "a") == [True]  # outside at alpha=1...
    assert decide("paper", [[30, 13, 40]], "a", alpha=2) == [False]  # ...inside at alpha=2


def test_paper_rule_falls_to_the_attack_stricter_rules_do_not():
    # The adversary "a" trained on b's images too: a's model is nearest, b's still claims it.
    attack = [[8.5, 9.5, 40]]
    assert decide("paper", attack, "a") == [True]
    assert decide("any-other", attack, "a") == [False]
    assert decide("exclude-uploader", attack, "a") == [False]


def test_any_other_versus_exclude_uploader():
    # c's interval claims it too, but b is the nearest other model and is outside its interval.
    row = [[1, 5, 11]]
    assert decide("any-other", row, "a") == [False]
    assert decide("exclude-uploader", row, "a") == [True]


def test_margin_lets_a_much_better_own_model_vouch():
    # b's interval claims the image; the uploader a's own model is 4x closer: a vouches.
    assert decide("margin", [[2.25, 9, 40]], "a") == [True]
    # Only 1.2x closer (what an adversary's two-class model achieves): still blocked.
    assert decide("margin", [[7.5, 9, 40]], "a") == [False]
    # One-sided claims: reconstructed better than b's typical image is still b's.
    assert decide("margin", [[30, 5, 40]], "a") == [False]
    assert decide("paper", [[30, 5, 40]], "a") == [True]
    guard = Guard(policy="margin", alpha=1.0, margin=5.0)
    assert [d.share for d in guard.decide(scores([[2.25, 9, 40]]), "a")] == [False]


def test_unregistered_uploader_is_judged_by_everyone():
    assert decide("exclude-uploader", [[9, 30, 40]], "newcomer") == [False]
    assert decide("paper", [[9, 30, 40]], "newcomer") == [False]


def test_decision_explains_and_names_model_for_operator():
    decision = Guard(policy="paper").decide(scores([[30, 9, 40]]), "a")[0]
    assert decision.action == "block" and decision.matched_owner == "b"
    assert "inside the privacy interval [8, 12]" in decision.reason
    shared = Guard(policy="paper").decide(scores([[30, 50, 40]]), "a")[0]
    assert shared.action == "share" and shared.matched_model is None


def test_vectorised_mask_matches_decisions():
    rows = [[30, 9, 40], [9, 11, 40], [30, 5, 40], [8.5, 9.5, 40]]
    assert set(POLICIES) == {"paper", "any-other", "exclude-uploader", "margin"}
    for policy in POLICIES:
        guard = Guard(policy=policy)
        blocked, _ = guard.block_mask(scores(rows), ["a", "a", "b", "a"])
        assert blocked.tolist() == [
            not d.share for d in guard.decide(scores(rows), ["a", "a", "b", "a"])
        ]


def test_bad_guard_arguments():
    with pytest.raises(UnknownNameError, match="Valid policies: paper, any-other"):
        Guard(policy="lenient")
    with pytest.raises(InvalidInputError, match=r"alpha in \[0.5, 4.0\]"):
        Guard(alpha=7)
    with pytest.raises(InvalidInputError, match="margin >= 1"):
        Guard(policy="margin", margin=0.5)
    with pytest.raises(InvalidInputError, match="one uploader per scored input"):
        Guard().decide(scores([[1, 2, 3]]), ["a", "b"])
