"""Properties of the Guard that no uploaded model may break, checked on random score matrices.

* Adding another user's model never turns a block into a share (a claim can only be added, and a
  nearer claimant only makes vouching harder); in particular a model that claims nothing changes
  no decision at all, however near it is (the "shadow" model).
* A model with non-finite distances (a hidden layer that overflows: 0 * inf = NaN) changes no
  decision, whoever owns it.
* All of this with the breadth gate and seniority on or off, whatever the models' breadths (known
  or not) and admissions (known or not).
* With seniority, a model admitted after all the others never blocks an image that one of the
  uploader's own models holds in its interval (the victim keeps their own uploads).
* Every image the earlier nearest-model rules blocked is still blocked (a reference copy of those
  rules is below), so adversary figures cannot get worse; what owners can lose is exactly the
  images a nearer model that claimed nothing used to exempt.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from imgprivacy.docl import POLICIES, BankScores, Guard

USERS = ("a", "b", "c")
UPLOADERS = (*USERS, "newcomer")
distances = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@st.composite
def situations(draw):
    """A Guard, a (B, N) score matrix and one uploader per row."""
    batch = draw(st.integers(1, 6))
    n_models = draw(st.integers(1, 5))
    rows = [[draw(distances) for _ in range(n_models)] for _ in range(batch)]
    scores = BankScores(
        distances=torch.tensor(rows, dtype=torch.float32),
        error_mean=torch.tensor(
            [draw(st.floats(1.0, 60.0)) for _ in range(n_models)], dtype=torch.float64
        ),
        error_std=torch.tensor(
            [draw(st.floats(0.01, 20.0)) for _ in range(n_models)], dtype=torch.float64
        ),
        model_ids=tuple(f"m{i}" for i in range(n_models)),
        owners=tuple(draw(st.sampled_from(USERS)) for _ in range(n_models)),
        admitted=draw(
            st.one_of(
                st.none(),
                st.lists(st.integers(0, 4), min_size=n_models, max_size=n_models).map(
                    lambda a: torch.tensor(a, dtype=torch.int64)
                ),
            )
        ),
    )
    # The breadth gate, on or off; some models (the added ones too) of known breadth, some not.
    known = draw(st.lists(st.sampled_from([*scores.model_ids, "added", "nan"]), unique=True))
    policy = draw(st.sampled_from(sorted(POLICIES)))
    guard = Guard(
        policy=policy,
        seniority=POLICIES[policy].vouch != "never" and draw(st.booleans()),
        alpha=draw(st.floats(0.5, 4.0)),
        margin=draw(st.floats(1.0, 5.0)),
        breadth_ratio=draw(st.one_of(st.none(), st.floats(1.0, 3.0))),
        breadth={m: draw(st.floats(0.0, 1.0)) for m in known},
    )
    uploaders = [draw(st.sampled_from(UPLOADERS)) for _ in range(batch)]
    return guard, scores, uploaders


def with_model(scores, *, position, column, mean, std, owner, model_id="added", admitted=5):
    """``scores`` with one more model inserted at ``position`` (admitted at ``admitted``: by
    default after every other)."""
    column = torch.as_tensor(column, dtype=scores.distances.dtype)[:, None]
    d = scores.distances
    admissions = None
    if scores.admitted is not None:
        admissions = _insert(scores.admitted, position, admitted)
    return BankScores(
        distances=torch.cat([d[:, :position], column, d[:, position:]], dim=1),
        error_mean=_insert(scores.error_mean, position, mean),
        error_std=_insert(scores.error_std, position, std),
        model_ids=(*scores.model_ids[:position], model_id, *scores.model_ids[position:]),
        owners=(*scores.owners[:position], owner, *scores.owners[position:]),
        admitted=admissions,
    )


def _insert(values, position, value):
    extra = torch.tensor([value], dtype=values.dtype)
    return torch.cat([values[:position], extra, values[position:]])


def verdicts(guard, scores, uploaders):
    return [(d.share, d.matched_model) for d in guard.decide(scores, uploaders)]


@settings(max_examples=150, deadline=None)
@given(situations(), st.data())
def test_another_users_model_never_turns_a_block_into_a_share(situation, data):
    guard, scores, uploaders = situation
    owner = data.draw(st.sampled_from((*USERS, "stranger")))
    batch, n_models = scores.distances.shape
    column = [data.draw(distances) for _ in range(batch)]
    mean, std = data.draw(st.floats(0.001, 60.0)), data.draw(st.floats(0.001, 20.0))
    position = data.draw(st.integers(0, n_models))
    admitted = data.draw(st.integers(0, 5))
    added = with_model(
        scores, position=position, column=column, mean=mean, std=std, owner=owner,
        admitted=admitted,
    )  # fmt: skip
    before = guard.block_mask(scores, uploaders)[0].tolist()
    after = guard.block_mask(added, uploaders)[0].tolist()
    for row, uploader in enumerate(uploaders):
        if uploader != owner and before[row]:
            assert after[row], (row, column[row], mean, std)


@settings(max_examples=150, deadline=None)
@given(situations(), st.data())
def test_with_seniority_a_newer_model_never_blocks_what_an_own_model_holds(situation, data):
    guard, scores, uploaders = situation
    if not guard.seniority or guard.breadth_ratio is not None or scores.admitted is None:
        guard = Guard(policy="margin", alpha=guard.alpha, margin=guard.margin, seniority=True)
        scores = BankScores(
            scores.distances, scores.error_mean, scores.error_std, scores.model_ids,
            scores.owners, torch.zeros(len(scores.model_ids), dtype=torch.int64),
        )  # fmt: skip
    owner = data.draw(st.sampled_from((*USERS, "stranger")))
    batch, n_models = scores.distances.shape
    column = [data.draw(distances) for _ in range(batch)]
    mean, std = data.draw(st.floats(0.001, 60.0)), data.draw(st.floats(0.001, 20.0))
    position = data.draw(st.integers(0, n_models))
    added = with_model(scores, position=position, column=column, mean=mean, std=std, owner=owner)
    before = guard.block_mask(scores, uploaders)[0].tolist()
    after = guard.block_mask(added, uploaders)[0].tolist()
    d = scores.distances.double()
    bound = scores.error_mean + guard.alpha * scores.error_std
    lower = scores.error_mean - guard.alpha * scores.error_std
    two_sided = not POLICIES[guard.policy].one_sided
    for row, uploader in enumerate(uploaders):
        holds = [
            scores.owners[n] == uploader
            and bool(d[row, n] <= bound[n])
            and (not two_sided or bool(d[row, n] >= lower[n]))
            for n in range(n_models)
        ]
        if uploader != owner and any(holds):
            assert after[row] == before[row], (row, column[row], mean, std)


@settings(max_examples=150, deadline=None)
@given(situations(), st.data())
def test_a_model_that_claims_nothing_changes_no_decision_of_others(situation, data):
    guard, scores, uploaders = situation
    owner = data.draw(st.sampled_from((*USERS, "stranger")))
    # The shadow: tiny statistics, nearest to everything, every distance above its interval.
    mean = data.draw(st.floats(1e-6, 1.0))
    std = data.draw(st.floats(1e-6, 1.0))
    upper = mean + guard.alpha * std
    column = [upper * (1.0 + data.draw(st.floats(1e-3, 10.0))) for _ in range(len(uploaders))]
    position = data.draw(st.integers(0, scores.distances.shape[1]))
    added = with_model(scores, position=position, column=column, mean=mean, std=std, owner=owner)
    before = verdicts(guard, scores, uploaders)
    after = verdicts(guard, added, uploaders)
    for row, uploader in enumerate(uploaders):
        if uploader != owner:
            assert after[row] == before[row], row


@settings(max_examples=150, deadline=None)
@given(situations(), st.data())
def test_a_model_with_non_finite_distances_changes_no_decision(situation, data):
    guard, scores, uploaders = situation
    owner = data.draw(st.sampled_from((*USERS, "stranger")))
    batch = len(uploaders)
    bad = st.sampled_from([math.nan, math.inf, -math.inf])
    # Broken on every input, or on some (the rest finite and possibly claiming: only the
    # non-finite entries are ignored, so those rows are left out of the comparison).
    column = [data.draw(bad) for _ in range(batch)]
    position = data.draw(st.integers(0, scores.distances.shape[1]))
    added = with_model(
        scores, position=position, column=column, mean=20.0, std=5.0, owner=owner, model_id="nan"
    )
    assert verdicts(guard, added, uploaders) == verdicts(guard, scores, uploaders)
    assert guard.broken_models == {"nan": batch}


@settings(max_examples=100, deadline=None)
@given(situations())
def test_block_mask_and_decisions_agree(situation):
    guard, scores, uploaders = situation
    blocked, culprit = guard.block_mask(scores, uploaders)
    decisions = guard.decide(scores, uploaders)
    assert blocked.tolist() == [not d.share for d in decisions]
    for d, index, uploader in zip(decisions, culprit.tolist(), uploaders):
        if not d.share:
            assert d.matched_model == scores.model_ids[index]
            assert d.matched_owner != uploader


def nearest_model_rule(policy, scores, uploaders, *, alpha, margin):
    """The rules before claims decided: the nearest (other) model alone could claim an image."""
    d = scores.distances.to(torch.float64)
    mu, sigma = scores.error_mean, scores.error_std
    own = torch.tensor([[o == u for o in scores.owners] for u in uploaders])
    inside = (d >= mu - alpha * sigma) & (d <= mu + alpha * sigma)
    if policy == "margin":
        inside = d <= mu + alpha * sigma
    if policy == "any-other":
        return (inside & ~own).any(dim=1)
    candidates = d if policy == "paper" else d.masked_fill(own, math.inf)
    nearest = candidates.argmin(dim=1, keepdim=True)
    blocked = inside.gather(1, nearest).squeeze(1) & ~own.gather(1, nearest).squeeze(1)
    if policy == "margin":
        own_best = d.masked_fill(~own, math.inf).min(dim=1).values
        blocked &= ~(own_best * margin < d.gather(1, nearest).squeeze(1))
    return blocked


@settings(max_examples=150, deadline=None)
@given(situations())
def test_claims_block_everything_the_nearest_model_rules_blocked(situation):
    """So no attack the old rules stopped (paper Fig. 4 adversaries included) gets through now;
    owners lose only images that a nearer model, claiming nothing, used to exempt. Seniority
    (which the old rules did not have) lets through only images that one of the uploader's own
    models holds in its interval while admitted before some claimant."""
    guard, scores, uploaders = situation
    before = nearest_model_rule(
        guard.policy, scores, uploaders, alpha=guard.alpha, margin=guard.margin
    )
    plain = Guard(
        policy=guard.policy, alpha=guard.alpha, margin=guard.margin,
        breadth_ratio=guard.breadth_ratio, breadth=guard._breadth,
    )  # fmt: skip
    without_seniority = plain.block_mask(scores, uploaders)[0]
    assert not (before & ~without_seniority).any()
    after = guard.block_mask(scores, uploaders)[0]
    assert not (after & ~without_seniority).any()  # seniority never blocks more
    d = scores.distances.double()
    inside = d <= scores.error_mean + guard.alpha * scores.error_std
    if not POLICIES[guard.policy].one_sided:
        inside &= d >= scores.error_mean - guard.alpha * scores.error_std
    for row in (without_seniority & ~after).nonzero()[:, 0].tolist():
        own = [n for n, o in enumerate(scores.owners) if o == uploaders[row]]
        others = [n for n, o in enumerate(scores.owners) if o != uploaders[row]]
        assert any(
            inside[row, n] and inside[row, c] and scores.admitted[n] < scores.admitted[c]
            for n in own
            for c in others
        ), row
