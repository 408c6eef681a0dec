import threading

import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, FilterBank, OneClassAutoencoder
from imgprivacy.docl.bank import DEFAULT_CHUNK_BYTES
from imgprivacy.docl.bank_stack import stacked_distances
from imgprivacy.errors import InvalidInputError, UnknownNameError
from tests.conftest import blobs

CFG = AutoencoderConfig(input_dim=16, hidden_dim=4, epochs=20, batch_size=16, learning_rate=1e-2)


@pytest.fixture(scope="module")
def models():
    """Three users' models of different depths and widths (shallow, deep, deep and wider)."""
    x, y = blobs(dim=16, classes=3)
    shapes = [
        dict(hidden_dim=3, layer_widths=()),
        dict(hidden_dim=4, layer_widths=(8,)),
        dict(hidden_dim=5, layer_widths=(12,)),
    ]
    return [OneClassAutoencoder(CFG.replace(seed=c, **shapes[c])).fit(x[y == c]) for c in range(3)]


@pytest.fixture()
def bank(models):
    bank = FilterBank(input_dim=16)
    for c, model in enumerate(models):
        bank.add(model, owner=f"u{c}")
    return bank


@pytest.mark.parametrize("chunk_bytes", [1, 200, 10**9])
def test_batched_scores_equal_per_model_computation(models, chunk_bytes):
    bank = FilterBank(input_dim=16, chunk_bytes=chunk_bytes)
    bank.add_many([(f"u{c}", m) for c, m in enumerate(models)])
    x = torch.rand(9, 16)
    expected = torch.stack([m.distances(x) for m in models], dim=1)
    torch.testing.assert_close(bank.distances(x), expected, rtol=1e-5, atol=1e-5)


def test_argmin_finds_the_owner_class(bank):
    x, y = blobs(dim=16, classes=3, seed=9)
    scores = bank.score(x)
    assert scores.distances.shape == (len(x), 3)
    assert torch.equal(scores.nearest, y)
    assert scores.nearest_owner[0] == "u0"


def test_user_with_several_models(models):
    bank = FilterBank(input_dim=16)
    ids = bank.add_many([("alice", models[0]), ("alice", models[1]), ("bob", models[2])])
    assert ids == ["alice/0", "alice/1", "bob/0"]
    assert bank.models_of("alice") == ["alice/0", "alice/1"]
    assert bank.remove_user("alice") == ["alice/0", "alice/1"]
    assert bank.owners == ("bob",)


def test_add_many_takes_a_generator_and_checks_id_count(models):
    bank = FilterBank(input_dim=16)
    assert bank.add_many((f"u{c}", m) for c, m in enumerate(models)) == ["u0/0", "u1/0", "u2/0"]
    with pytest.raises(InvalidInputError, match="one model id per item, got 1 ids for 2 items"):
        FilterBank(input_dim=16).add_many([("a", models[0]), ("b", models[1])], model_ids=["a/x"])


def test_remove_and_replace(bank, models):
    x = torch.rand(4, 16)
    bank.remove("u1/0")
    assert bank.model_ids == ("u0/0", "u2/0")
    torch.testing.assert_close(bank.distances(x)[:, 1], models[2].distances(x))
    bank.add(models[1], owner="u0", model_id="u0/0", replace=True)
    torch.testing.assert_close(bank.distances(x)[:, 0], models[1].distances(x))


def test_failed_add_leaves_bank_untouched(bank, models):
    wrong_dim = OneClassAutoencoder(CFG.replace(input_dim=8)).fit(torch.rand(10, 8))
    before = bank.model_ids
    x = torch.rand(3, 16)
    scores_before = bank.distances(x)
    with pytest.raises(InvalidInputError, match="input dimension 8.*16"):
        bank.add_many([("u3", models[0]), ("u4", wrong_dim)])
    assert bank.model_ids == before
    torch.testing.assert_close(bank.distances(x), scores_before)


def test_add_errors(bank, models):
    with pytest.raises(InvalidInputError, match="already exists; pass replace=True"):
        bank.add(models[0], owner="u0", model_id="u0/0")
    with pytest.raises(InvalidInputError, match="belongs to another user"):
        bank.add(models[0], owner="u1", model_id="u0/0", replace=True)
    with pytest.raises(InvalidInputError, match="unfitted"):
        bank.add(OneClassAutoencoder(CFG), owner="u9")
    with pytest.raises(InvalidInputError, match="owner must be a non-empty string"):
        bank.add(models[0], owner="")
    other_features = OneClassAutoencoder(CFG.replace(feature_extractor="resnet"))
    other_features.__dict__.update({k: v for k, v in models[0].__dict__.items() if k.endswith("_")})
    with pytest.raises(InvalidInputError, match="trained on 'resnet' features"):
        bank.add(other_features, owner="u9")


def test_nan_statistics_are_refused(bank, models):
    broken = OneClassAutoencoder(CFG)
    broken.__dict__.update({k: v for k, v in models[0].__dict__.items() if k.endswith("_")})
    broken.error_std_ = float("nan")
    with pytest.raises(InvalidInputError, match="error_std_ must be finite"):
        bank.add(broken, owner="u9")


def test_unknown_ids_and_users(bank):
    with pytest.raises(UnknownNameError, match="Unknown model id 'zz/0'. Known ids: u0/0"):
        bank.remove("zz/0")
    with pytest.raises(UnknownNameError, match="Unknown user 'zz'"):
        bank.remove_user("zz")


def test_scoring_errors(bank):
    with pytest.raises(InvalidInputError, match=r"\(N, 16\), got \(2, 3\)"):
        bank.score(torch.rand(2, 3))
    with pytest.raises(InvalidInputError, match="holds no model"):
        FilterBank(input_dim=16).score(torch.rand(2, 16))


def test_changes_during_scoring_do_not_disturb_it(bank):
    """A scoring call keeps the snapshot it started with while another thread edits the bank."""
    x = torch.rand(20, 16)
    before = bank.distances(x)
    snapshot = bank.snapshot()
    thread = threading.Thread(target=bank.remove, args=("u2/0",))
    thread.start()
    thread.join()
    in_flight = stacked_distances(snapshot, x, chunk_bytes=DEFAULT_CHUNK_BYTES)
    torch.testing.assert_close(in_flight, before)
    assert bank.distances(x).shape == (20, 2)


def test_a_wide_model_never_widens_anyone_elses_computation(models):
    """Models are stacked by exact layer sizes: the narrower deep model keeps its own widths."""
    bank = FilterBank(input_dim=16)
    bank.add_many([(f"u{c}", m) for c, m in enumerate(models)])
    groups = bank.snapshot().groups
    assert len(groups) == 3
    widths = sorted(tuple(g.first_weight.shape[1:]) for g in groups)
    assert widths == [(3, 16), (8, 16), (12, 16)]
