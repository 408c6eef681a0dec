import dataclasses
import logging

import pytest
import torch

from imgprivacy.docl import (
    POLICIES,
    AutoencoderConfig,
    BankScores,
    FilterBank,
    Guard,
    OneClassAutoencoder,
)
from imgprivacy.docl.persistence import expected_shapes
from imgprivacy.errors import InvalidInputError, UnknownNameError
from tests.conftest import blobs


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


def test_a_nearer_model_outside_its_interval_hides_no_claim():
    # c's interval claims it; b is the nearest other model but outside its interval. b claims
    # nothing, so it cannot hide c's claim (it used to, under all policies but any-other; under
    # margin's one-sided interval b claims the image itself).
    row = [[30, 5, 11]]
    for policy in POLICIES:
        assert decide(policy, row, "a") == [False], policy
    decision = Guard(policy="exclude-uploader").decide(scores(row), "a")[0]
    assert decision.matched_owner == "c" and decision.distance == 11


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


# -- hostile models, crafted through the public API, on tiny blob data ----------------------------
CFG = AutoencoderConfig(input_dim=16, hidden_dim=4, epochs=30, batch_size=16, learning_rate=1e-2)
POLICIES_HIDDEN_BEFORE = ("paper", "exclude-uploader", "margin")  # argmin rules a shadow defeated


@pytest.fixture(scope="module")
def honest():
    """Three honest users (one blob class each), their models and fresh private images."""
    x, y = blobs(dim=16, classes=3)
    models = [(f"u{c}", OneClassAutoencoder(CFG.replace(seed=c)).fit(x[y == c])) for c in range(3)]
    test_x, test_y = blobs(dim=16, classes=3, seed=5)
    return {"models": models, "train_x": x, "x": test_x, "y": test_y}


def bank_of(models) -> FilterBank:
    bank = FilterBank(input_dim=16)
    bank.add_many(models)
    return bank


def overflowing_model(input_dim: int = 16) -> OneClassAutoencoder:
    """Finite weights whose hidden layer overflows to inf: distances are NaN (0 * inf)."""
    config = AutoencoderConfig(input_dim=input_dim, hidden_dim=4, layer_widths=(8,))
    weights = {name: torch.zeros(shape) for name, shape in expected_shapes(config).items()}
    weights["layers.0.bias"].fill_(3e38)
    weights["layers.1.weight"].fill_(3e38)
    return OneClassAutoencoder.from_weights(config, weights, error_mean=20.0, error_std=5.0)


def shadow_model(x: torch.Tensor) -> OneClassAutoencoder:
    """Reconstructs everything well, with statistics whose interval holds nothing."""
    model = OneClassAutoencoder(CFG.replace(hidden_dim=12, epochs=60)).fit(x)
    model.error_mean_ = model.error_std_ = 1e-3
    return model


def others_blocked(guard, scores, labels) -> torch.Tensor:
    """Each private image uploaded by the next user (never its owner): blocked?"""
    uploaders = [f"u{(int(c) + 1) % 3}" for c in labels]
    return guard.block_mask(scores, uploaders)[0]


def test_overflowing_model_is_ignored_and_counted(honest, caplog):
    model = overflowing_model()
    assert torch.isnan(model.distances(honest["x"])).all()  # the attack works as crafted
    clean = bank_of(honest["models"]).score(honest["x"])
    attacked = bank_of([*honest["models"], ("mallory", model)]).score(honest["x"])
    assert attacked.nearest.tolist() == clean.nearest.tolist()  # NaN is never the nearest
    for policy in POLICIES:
        guard = Guard(policy=policy)
        before = others_blocked(guard, clean, honest["y"])
        with caplog.at_level(logging.WARNING, logger="imgprivacy.docl.guard"):
            after = others_blocked(guard, attacked, honest["y"])
        assert after.tolist() == before.tolist(), policy
        assert guard.broken_models == {"mallory/0": len(honest["y"])}
        assert "model mallory/0 gives non-finite distances" in caplog.text
    assert Guard(policy="margin").decide(attacked, "mallory")[0].share is False


def test_shadow_model_hides_no_claim(honest):
    shadow = shadow_model(honest["train_x"])
    clean = bank_of(honest["models"]).score(honest["x"])
    attacked = bank_of([*honest["models"], ("mallory", shadow)]).score(honest["x"])
    # The attack as crafted: nearest to (almost) every image, yet its interval holds none.
    assert (attacked.nearest == 3).double().mean() > 0.6
    assert Guard(policy="any-other").block_mask(attacked.select(models=[3]), "u0")[0].sum() == 0
    for policy in POLICIES_HIDDEN_BEFORE:
        guard = Guard(policy=policy)
        before = others_blocked(guard, clean, honest["y"])
        assert before.double().mean() > 0.5, policy  # the honest bank protects these images
        assert others_blocked(guard, attacked, honest["y"]).tolist() == before.tolist(), policy


def test_under_margin_only_an_own_model_that_claims_the_image_may_vouch():
    """A broad own model with understated statistics (its interval holds nothing) is 4x closer
    than the victim's claiming model, yet may not vouch: admission bounds what a model claims,
    so vouching must be bounded by the same interval."""
    understated = BankScores(
        distances=torch.tensor([[2.25, 9.0, 40.0]]),
        error_mean=torch.tensor([1.0, 10.0, 10.0], dtype=torch.float64),
        error_std=torch.tensor([0.1, 2.0, 2.0], dtype=torch.float64),
        model_ids=("a/0", "b/0", "c/0"),
        owners=("a", "b", "c"),
    )
    assert [d.share for d in Guard(policy="margin").decide(understated, "a")] == [False]
    # the paper's nearest-model rule lets it through, as the paper does
    assert [d.share for d in Guard(policy="paper").decide(understated, "a")] == [True]


def test_breadth_gate_stops_a_broad_own_model_vouching_against_a_narrow_claimant():
    # The victim's narrow model claims the image; the uploader's model, trained on the victim's
    # images too, explains it 2x better but claims twice as much of the reference set.
    scores = BankScores(
        distances=torch.tensor([[10.0, 5.0], [10.0, 5.0]]),
        error_mean=torch.tensor([10.0, 10.0]),
        error_std=torch.tensor([2.0, 2.0]),
        model_ids=("victim/0", "attacker/0"),
        owners=("victim", "attacker"),
    )
    breadth = {"victim/0": 0.10, "attacker/0": 0.22}
    off = Guard(policy="margin", alpha=1.0, margin=1.5, breadth=breadth)
    assert off.block_mask(scores, "attacker")[0].tolist() == [False, False]  # vouched
    gated = Guard(policy="margin", alpha=1.0, margin=1.5, breadth_ratio=2.0, breadth=breadth)
    blocked, culprit = gated.block_mask(scores, "attacker")
    assert blocked.tolist() == [True, True] and culprit.tolist() == [0, 0]
    # As broad as the claimant (an honest owner): the gate lets the margin decide.
    gated.set_breadth({"victim/0": 0.10, "attacker/0": 0.12})
    assert gated.block_mask(scores, "attacker")[0].tolist() == [False, False]
    # Unknown breadth: the own model cannot vouch; an unknown claimant counts as the narrowest.
    gated.set_breadth({"victim/0": 0.10})
    assert gated.block_mask(scores, "attacker")[0].tolist() == [True, True]
    gated.set_breadth({"attacker/0": 0.0})
    assert gated.block_mask(scores, "attacker")[0].tolist() == [False, False]


def test_breadth_gate_arguments_are_checked():
    with pytest.raises(InvalidInputError, match="breadth_ratio >= 1"):
        Guard(policy="margin", breadth_ratio=0.5)
    with pytest.raises(InvalidInputError, match=r"fraction in \[0, 1\], got \{'m': 1.5\}"):
        Guard(policy="margin", breadth_ratio=1.5, breadth={"m": 1.5})


def admitted(bank_scores: BankScores, order: list[int]) -> BankScores:
    return dataclasses.replace(bank_scores, admitted=torch.tensor(order))


def test_seniority_lets_an_older_own_model_vouch_against_a_newer_claimant():
    """a owns model a/0 (admitted 1); b replaced theirs later (admitted 5) by one that is much
    nearer on a's image. Both intervals [8, 12] hold it (alpha 1)."""
    rows = [[11.5, 8.5, 40]]
    older_a = admitted(scores(rows), [1, 5, 1])
    margin = dict(policy="margin", alpha=1.0, margin=1.0)
    assert [d.share for d in Guard(**margin).decide(older_a, "a")] == [False]  # b is nearer
    decided = Guard(**margin, seniority=True).decide(older_a, "a")
    assert [d.share for d in decided] == [True]
    assert "admitted no later than" in decided[0].reason
    # b uploading a's image: b's model is the newer one, seniority gives it nothing; a's claim
    # blocks unless b's model is margin times nearer (it is not at margin 1.5).
    strict = dict(policy="margin", alpha=1.0, margin=1.5)
    assert [d.share for d in Guard(**strict, seniority=True).decide(older_a, "b")] == [False]
    # The same bank with a's model the newer one: a must out-reconstruct b again.
    newer_a = admitted(scores(rows), [6, 5, 1])
    assert [d.share for d in Guard(**margin, seniority=True).decide(newer_a, "a")] == [False]
    # Admitted together (or admissions unknown): the policy's rule alone.
    together = admitted(scores(rows), [3, 3, 3])
    assert [d.share for d in Guard(**margin, seniority=True).decide(together, "a")] == [False]
    assert [d.share for d in Guard(**margin, seniority=True).decide(scores(rows), "a")] == [False]
    # Seniority needs the older model's own interval to hold the image.
    outside = admitted(scores([[13.0, 8.5, 40]]), [1, 5, 1])
    assert [d.share for d in Guard(**margin, seniority=True).decide(outside, "a")] == [False]


def test_seniority_arguments_are_checked():
    with pytest.raises(InvalidInputError, match="seniority True or False"):
        Guard(policy="margin", seniority="yes")
    with pytest.raises(InvalidInputError, match="never vouch; use policy 'margin' or 'paper'"):
        Guard(policy="any-other", seniority=True)


def test_the_bank_records_when_each_model_was_admitted():
    cfg = AutoencoderConfig(input_dim=8, hidden_dim=2, layer_widths=(), epochs=1)
    model = OneClassAutoencoder(cfg).fit(torch.rand(16, 8))
    bank = FilterBank(input_dim=8)
    bank.add_many([("a", model), ("b", model)])  # admitted together
    bank.add(model, owner="c")  # after them
    bank.add(model, owner="a", model_id="a/0", replace=True)  # a replacement is a new admission
    assert bank.score(torch.rand(2, 8)).admitted.tolist() == [3, 1, 2]
    bank.add_many([("d", model)], admitted=[100])  # e.g. the storage revision that stored it
    bank.add(model, owner="e")
    assert [e.admitted for e in bank.entries] == [3, 1, 2, 100, 101]
    with pytest.raises(InvalidInputError, match="integer admission number"):
        bank.add_many([("f", model)], admitted=[1.5])
    with pytest.raises(InvalidInputError, match="one admission per item"):
        bank.add_many([("f", model), ("g", model)], admitted=[1])
    assert len(bank) == 5  # nothing of the refused calls was added


def test_the_breadth_gate_also_holds_back_an_older_broad_model():
    """A squatter's early, broad model (admitted 1, claiming half the reference set) holds a
    later user's image; the later, narrow model claims it too. Seniority alone would let the
    squatter share it; the gate does not let a model that broad vouch at all."""
    rows = [[11.5, 8.5, 40]]
    bank_scores = admitted(scores(rows), [1, 5, 5])
    breadth = {"a/0": 0.5, "b/0": 0.05, "c/0": 0.05}
    senior = dict(policy="margin", alpha=1.0, margin=1.0, seniority=True)
    assert [d.share for d in Guard(**senior).decide(bank_scores, "a")] == [True]
    gated = Guard(**senior, breadth_ratio=2.0, breadth=breadth)
    assert [d.share for d in gated.decide(bank_scores, "a")] == [False]
