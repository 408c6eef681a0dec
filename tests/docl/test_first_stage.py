import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, FilterBank, Guard, OneClassAutoencoder
from imgprivacy.docl.first_stage import FirstStage, Sketches, score_models, sketch
from imgprivacy.docl.first_stage_kernel import UNSCORED, PairKernel
from imgprivacy.docl.first_stage_sketch import fit_calibration
from imgprivacy.errors import InvalidInputError, NotFittedError
from tests.conftest import blobs

CFG = AutoencoderConfig(input_dim=16, hidden_dim=4, epochs=20, batch_size=16, learning_rate=1e-2)
CLASSES = 6


@pytest.fixture(scope="module")
def models():
    """Two users per class, one of them with a deeper model (two layer groups in the bank)."""
    x, y = blobs(dim=16, classes=CLASSES)
    out = []
    for c in range(CLASSES):
        for k, widths in enumerate([(), (8,)]):
            model = OneClassAutoencoder(CFG.replace(seed=10 * c + k, layer_widths=widths))
            out.append((f"c{c}u{k}", model.fit(x[y == c][k::2])))
    return out


@pytest.fixture()
def bank(models):
    bank = FilterBank(input_dim=16, kernel="torch")
    bank.add_many(models)
    return bank


def reference():
    """Public images that cover the data: held-out points of every class."""
    return blobs(dim=16, classes=CLASSES, seed=5, n_per_class=12)[0]


@pytest.mark.parametrize("policy", ["paper", "any-other", "margin"])
@pytest.mark.parametrize("ranking", ["probability", "decision", "ratio"])
def test_keeping_every_model_gives_the_full_banks_decisions(bank, policy, ranking):
    x, y = blobs(dim=16, classes=CLASSES, seed=3, n_per_class=6)
    x = torch.cat([x, torch.rand(12, 16, generator=torch.Generator().manual_seed(2))])
    uploaders = [f"c{(c + 1) % CLASSES}u0" for c in y.tolist()] + ["c0u1"] * 12
    guard = Guard(policy=policy, alpha=2.0)
    stage = FirstStage(rank=2, keep=1.0, ranking=ranking).fit(bank, reference=reference())
    full = guard.decide(bank.score(x), uploaders)
    staged = stage.decide(bank, guard, x, uploaders)
    # same decisions and culprits; distances equal up to the kernels' summation order
    assert [(d.share, d.matched_model) for d in staged] == [
        (d.share, d.matched_model) for d in full
    ]
    blocked = [(s.distance, f.distance) for s, f in zip(staged, full) if not f.share]
    assert [s for s, _ in blocked] == pytest.approx([f for _, f in blocked], rel=1e-5)
    assert any(not d.share for d in full) and any(d.share for d in full)


@pytest.mark.parametrize(
    ("ranking", "calibration"),
    [("probability", "affine"), ("decision", "affine"), ("ratio", "affine"), ("decision", "none")],
)
def test_a_small_stage_keeps_the_claiming_model_and_blocks(bank, ranking, calibration):
    x, y = blobs(dim=16, classes=CLASSES, seed=4, n_per_class=5)
    uploaders = [f"c{(c + 1) % CLASSES}u0" for c in y.tolist()]
    guard = Guard(policy="any-other", alpha=2.0)
    stage = FirstStage(rank=2, keep=1 / len(bank), ranking=ranking, calibration=calibration)
    # the calibrated stage learns its map on public points of every class; the raw sketch
    # only needs reconstructions, here of uniform noise
    noise = torch.rand(64, 16, generator=torch.Generator().manual_seed(5))
    stage.fit(bank, reference=reference() if calibration == "affine" else noise)
    for row, c in enumerate(y.tolist()):
        kept = stage.candidates(bank, guard, x[row : row + 1], [uploaders[row]])
        owners = {bank.owners[n] for n in kept}
        # one model kept by the sketch (a user of the image's class) plus the uploader's own
        assert len(kept) == 2 and uploaders[row] in owners
        assert owners & {f"c{c}u0", f"c{c}u1"}
    full = guard.decide(bank.score(x), uploaders)
    assert sum(not d.share for d in full) >= len(full) // 2
    # keeping two models (both of the image's class): the full bank's share/block decisions
    stage.keep = 2 / len(bank)
    assert [d.share for d in stage.decide(bank, guard, x, uploaders)] == [d.share for d in full]


def test_survivors_are_scored_exactly(bank):
    x = torch.rand(5, 16, generator=torch.Generator().manual_seed(3))
    scores = score_models(bank, x, [7, 0, 3])
    full = bank.score(x)
    assert scores.model_ids == tuple(full.model_ids[n] for n in [7, 0, 3])
    torch.testing.assert_close(scores.distances, full.distances[:, [7, 0, 3]])
    torch.testing.assert_close(scores.error_std, full.error_std[[7, 0, 3]])
    with pytest.raises(InvalidInputError, match=r"model positions in \[0, 12\)"):
        score_models(bank, x, [12])


def test_sketch_distance_is_the_distance_to_the_affine_subspace():
    samples = torch.rand(3, 40, 16, generator=torch.Generator().manual_seed(1))
    offsets, bases = sketch(samples, rank=3)
    torch.testing.assert_close(bases @ bases.mT, torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    sketches = Sketches(
        entries=(),
        owners=np.array([], dtype=object),
        offsets=offsets,
        bases=bases,
        offset_norms=offsets.square().sum(dim=1),
        offset_coords=torch.einsum("nrd,nd->nr", bases, offsets),
    )
    x = torch.rand(4, 16)
    centred = x[:, None, :] - offsets[None]  # (B, N, D)
    projected = torch.einsum("bnd,nrd->bnr", centred, bases)
    expected = centred.square().sum(2) - projected.square().sum(2)
    torch.testing.assert_close(sketches.distances(x), expected, atol=1e-4, rtol=1e-4)


def test_sketches_follow_the_bank(bank, models):
    stage = FirstStage(rank=2, keep=0.5).fit(bank, reference=reference())
    before = stage.sketches_
    assert stage.update(bank) is before  # no change, no work
    bank.remove("c0u0/0")
    bank.add(models[3][1], owner="c0u0", model_id="c0u0/0")  # re-added with other weights
    after = stage.update(bank)
    assert len(after.entries) == len(bank)
    moved = bank.model_ids.index("c0u0/0")
    old_of = before.entries.index(next(e for e in before.entries if e.model_id == "c1u1/0"))
    new_of = bank.model_ids.index("c1u1/0")
    torch.testing.assert_close(after.offsets[new_of], before.offsets[old_of])
    torch.testing.assert_close(after.offsets[moved], before.offsets[3])
    torch.testing.assert_close(after.slope[new_of], before.slope[old_of])
    torch.testing.assert_close(after.spread[moved], before.spread[3], rtol=1e-4, atol=1e-6)


def test_the_gather_equals_the_full_banks_scores_on_the_survivors(bank):
    """Two layer groups, models kept by 0, 1, 2, 3 and 5 inputs (every bucket width)."""
    x = torch.rand(6, 16, generator=torch.Generator().manual_seed(8))
    mask = torch.zeros(6, len(bank), dtype=torch.bool)
    for model, inputs in {
        0: [0],
        1: [1, 4],
        2: [0, 2, 5],
        3: [0, 1, 2, 3, 4],
        7: [3],
        11: [5],
    }.items():
        mask[inputs, model] = True
    kernel = PairKernel()
    full = bank.score(x).distances
    for _ in range(2):  # the second call reuses the gather buffers
        d = kernel(bank.snapshot(), x, mask)
        torch.testing.assert_close(d[mask], full[mask], rtol=1e-5, atol=1e-6)
        assert (d[~mask] == UNSCORED).all()
    with pytest.raises(InvalidInputError, match=r"boolean mask of shape \(6, 12\)"):
        kernel(bank.snapshot(), x, mask[:, :5])


def test_survivors_are_the_keep_fraction_plus_the_uploaders_models(bank):
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(9))
    uploaders = ["c0u0", "c1u1", "c2u0", "c0u0"]
    guard = Guard(policy="paper", alpha=1.0)
    stage = FirstStage(keep=3 / len(bank)).fit(bank, reference=reference())
    mask = stage.survivors(bank, guard, x, uploaders)
    own = torch.tensor([[o == u for o in bank.owners] for u in uploaders])
    assert (mask & own).sum().item() == 4 and (mask | ~own).all()
    assert ((mask & ~own).sum(dim=1) >= 2).all() and (mask.sum(dim=1) <= 4).all()
    scores = stage.score(bank, guard, x, uploaders)
    full = bank.score(x).distances
    torch.testing.assert_close(scores.distances[mask], full[mask], rtol=1e-5, atol=1e-6)
    assert (scores.distances[~mask] == UNSCORED).all()
    assert (
        stage.candidates(bank, guard, x, uploaders) == torch.nonzero(mask.any(0)).flatten().tolist()
    )


def test_calibration_recovers_a_known_log_affine_map():
    sketch_d = torch.rand(50, 3, generator=torch.Generator().manual_seed(4)) + 0.1
    slope, intercept = torch.tensor([1.0, 0.5, 2.0]), torch.tensor([0.0, -1.0, 0.3])
    exact = torch.exp(intercept + slope * sketch_d.log())
    got_intercept, got_slope, spread = fit_calibration(sketch_d, exact)
    torch.testing.assert_close(got_slope, slope.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(got_intercept, intercept.double(), atol=1e-6, rtol=0)
    assert (spread == 0.02).all()  # an exact fit: the floor of the spread
    # the 20 nearest rows (lowest exact distance) follow another map: `nearest` fits that one
    near_exact = exact.clone()
    near_exact[:20] = torch.exp(-5.0 + 0.7 * sketch_d[:20].log())
    near_intercept, near_slope, _ = fit_calibration(sketch_d, near_exact, nearest=20)
    torch.testing.assert_close(near_slope, torch.full((3,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(near_intercept, torch.full((3,), -5.0, dtype=torch.float64))


def test_parameters_and_use_before_fit_are_checked(bank):
    with pytest.raises(InvalidInputError, match="keep must be a fraction in") as info:
        FirstStage(keep=0, rank=-1, ranking="best").fit(bank, reference=reference())
    assert len(info.value.problems) == 3
    with pytest.raises(InvalidInputError, match="more reference images than the sketch rank"):
        FirstStage(rank=4).fit(bank, reference=torch.rand(4, 16))
    with pytest.raises(NotFittedError, match="call fit"):
        FirstStage().update(bank)
    with pytest.raises(InvalidInputError, match="calibration_size must be None or an integer"):
        FirstStage(calibration_size=2).fit(bank, reference=reference())
    with pytest.raises(InvalidInputError, match="ranking='probability' needs calibration"):
        FirstStage(calibration="none").fit(bank, reference=reference())


def test_uploaders_are_checked_and_read_as_the_guard_reads_them(bank):
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(6))
    guard = Guard(policy="margin", alpha=2.0)
    stage = FirstStage(rank=2, keep=1 / len(bank)).fit(bank, reference=reference())
    # one name stands for every input, in every entry point (not its letters)
    kept = stage.candidates(bank, guard, x, "c2u0")
    assert kept == stage.candidates(bank, guard, x, ["c2u0"] * 3)
    assert bank.model_ids.index("c2u0/0") in kept  # the uploader's own model is always kept
    # the Guard's message, from the first stage's entry points too
    for call in (stage.score, stage.candidates, stage.ranks):
        with pytest.raises(InvalidInputError, match=r"one uploader per scored input \(3\), got 2"):
            call(bank, guard, x, ["c2u0", "c3u0"])


def test_a_check_reads_one_snapshot_while_the_bank_changes(bank, models, monkeypatch):
    """A model removed and another added while a check runs (as a service's upload would):
    the check decides on the membership it started with, at the right positions."""
    x, y = blobs(dim=16, classes=CLASSES, seed=3, n_per_class=4)
    uploaders = [f"c{(c + 1) % CLASSES}u0" for c in y.tolist()]
    guard = Guard(policy="margin", alpha=2.0)
    stage = FirstStage(rank=2, keep=1.0).fit(bank, reference=reference())
    before = bank.snapshot()
    full = guard.decide(bank.score(x), uploaders)
    real = bank.snapshot
    calls = []

    def changing_snapshot():
        snap = real()
        if not calls:  # right after the check's first read: c0u0 leaves, its model returns
            bank.remove(before.entries[0].model_id)
            bank.add(models[0][1], owner="late")
        calls.append(1)
        return snap

    monkeypatch.setattr(bank, "snapshot", changing_snapshot)
    staged = stage.decide(bank, guard, x, uploaders)
    assert [(d.share, d.matched_model) for d in staged] == [
        (d.share, d.matched_model) for d in full
    ]
    assert "late" in bank.owners and "c0u0" not in bank.owners


def test_the_gather_buffers_are_per_thread(bank):
    import threading

    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, len(bank), dtype=torch.bool)
    kernel, snap = PairKernel(), bank.snapshot()
    here = kernel(snap, x, mask)
    seen = []
    thread = threading.Thread(target=lambda: seen.append((kernel(snap, x, mask), kernel._buffers)))
    thread.start()
    thread.join()
    ((there, buffers),) = seen
    assert torch.equal(there, here)
    assert buffers is not kernel._buffers and buffers.keys() == kernel._buffers.keys()
