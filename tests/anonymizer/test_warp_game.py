"""The warp game, its facade and the release measures, on tiny seeded data."""

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer.evaluate import AttackConfig, cluster_majority
from imgprivacy.anonymizer.release_quality import realism, transfer_accuracy
from imgprivacy.anonymizer.warp_game import ShearWarp, WarpGameConfig, WarpGameTrainer
from imgprivacy.anonymizer.warp_model import WarpAnonymizer
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError

TINY = dict(
    image_size=8, hidden=8, private_hidden=16, epochs=2, n_prototypes=3, batch_size=16, pool_size=1
)


def _slanted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 vertical bars; writer 0 leans left, writer 1 right (the writer is the slant)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 8, 8), dtype=np.uint8)
    writers = np.arange(n) % 2
    for i in range(n):
        column = rng.integers(3, 5)
        for row in range(8):
            lean = (row - 4) // 3 * (1 if writers[i] else -1)
            images[i, row, np.clip(column + lean, 0, 7)] = 255
    return images, writers


def test_an_untrained_warp_is_the_identity():
    warp = ShearWarp(8, 4, 1.0)
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    out, shear = warp(x)
    assert torch.equal(shear, torch.zeros(5))
    assert torch.allclose(out, x, atol=1e-6)


def test_a_shear_moves_ink_sideways_by_row():
    warp = ShearWarp(8, 4, 1.0)
    torch.nn.init.constant_(warp.net[-1].bias, 10.0)  # tanh -> 1: the largest shear
    x = torch.zeros(1, 8, 8)
    x[0, :, 4] = 1.0  # a vertical bar
    out, shear = warp(x.view(1, 64))
    columns = out.view(8, 8).argmax(dim=1)
    assert shear.item() == pytest.approx(1.0, abs=1e-4)
    assert columns[0] != columns[7]  # top and bottom rows are shifted apart


def test_lambda_zero_leaves_the_warp_at_the_identity_and_lambda_one_moves_it():
    images, writers = _slanted(64)
    x = torch.as_tensor(images.reshape(64, -1) / 255.0, dtype=torch.float32)
    z = torch.as_tensor(writers)
    prior = torch.tensor([0.5, 0.5])
    still = WarpGameTrainer(WarpGameConfig(**TINY, n_private=2, lam=0.0), prior=prior)
    still.fit(x, z)
    assert max(r["warp_shear_rms"] for r in still.history) < 1e-3
    moved = WarpGameTrainer(WarpGameConfig(**TINY, n_private=2, lam=1.0, lr=1e-2), prior=prior)
    moved.fit(x, z)
    assert moved.history[-1]["warp_shear_rms"] > 1e-2
    assert set(moved.history[-1]) >= {"warp_gap", "warp_private", "refresh_accuracy"}


def test_average_epochs_releases_the_mean_of_the_last_epochs_warps():
    images, writers = _slanted(64)
    x = torch.as_tensor(images.reshape(64, -1) / 255.0, dtype=torch.float32)
    z = torch.as_tensor(writers)
    config = WarpGameConfig(**{**TINY, "epochs": 3}, n_private=2, lam=1.0, lr=1e-2)
    prior = torch.tensor([0.5, 0.5])
    stepped = WarpGameTrainer(config, prior=prior)
    states = []
    for _ in range(3):
        stepped.run_epoch(x, z)
        states.append({k: v.clone() for k, v in stepped.warp.state_dict().items()})
    averaged = WarpGameTrainer(config.replace(average_epochs=2), prior=prior)
    averaged.fit(x, z)
    for key, value in averaged.warp.state_dict().items():
        assert torch.allclose(value, (states[1][key] + states[2][key]) / 2, atol=1e-6), key
    assert not torch.allclose(states[1]["net.2.bias"], states[2]["net.2.bias"])
    last = WarpGameTrainer(config.replace(average_epochs=1), prior=prior)
    last.fit(x, z)
    assert torch.equal(last.warp.state_dict()["net.2.bias"], states[2]["net.2.bias"])
    with pytest.raises(InvalidInputError, match="average_epochs must be an integer >= 0"):
        config.replace(average_epochs=-1)


def test_config_lists_every_problem():
    with pytest.raises(InvalidInputError, match="epochs must be an integer >= 0.*lam must be"):
        WarpGameConfig(epochs=-1, lam=float("nan"))


def test_facade_releases_cluster_medoids_and_round_trips(tmp_path):
    images, writers = _slanted(48)
    model = WarpAnonymizer(WarpGameConfig(**TINY)).fit(images, writers)
    released = model.transform(images)
    ids = model.cluster_ids(images)
    assert released.dtype == np.uint8 and released.shape == images.shape
    assert len(np.unique(released.reshape(48, -1), axis=0)) <= 3
    # every released image is one training original (the cluster's medoid)
    originals = {im.tobytes() for im in images}
    assert all(im.tobytes() in originals for im in released)
    assert np.array_equal(
        released[ids == ids[0]], np.repeat(released[:1], (ids == ids[0]).sum(), 0)
    )
    path = model.save(tmp_path / "warp.safetensors")
    again = WarpAnonymizer.load(path)
    assert np.array_equal(again.transform(images), released)
    assert again.config == model.config


def test_pool_release_draws_central_originals_by_position_not_by_content(tmp_path):
    images, writers = _slanted(48)
    noise = np.random.default_rng(1).integers(0, 40, size=images.shape, dtype=np.uint8)
    images = np.maximum(images, noise)  # every image distinct
    model = WarpAnonymizer(WarpGameConfig(**{**TINY, "pool_size": 4})).fit(images, writers)
    released = model.transform(images)
    ids = model.cluster_ids(images)
    method = model.substitution_
    assert method.pool_.shape == (3, 4, 64)
    assert torch.equal(method.pool_[:, 0], method.prototypes_)  # the medoid comes first
    draws = method.draws(48)
    expected = np.rint(method.pool_[ids, draws].numpy() * 255).astype(np.uint8)
    assert np.array_equal(released.reshape(48, -1), expected)
    # more distinct images than clusters, every one a training original of its cluster's pool
    assert len(np.unique(released.reshape(48, -1), axis=0)) > 3
    originals = {im.tobytes() for im in images}
    assert all(im.tobytes() in originals for im in released)
    # the i-th draw does not depend on the pixels: reversed inputs get the same draw sequence
    flipped = model.transform(images[::-1].copy())
    again_ids = ids[::-1].copy()
    expected = np.rint(method.pool_[again_ids, draws].numpy() * 255).astype(np.uint8)
    assert np.array_equal(flipped.reshape(48, -1), expected)
    again = WarpAnonymizer.load(model.save(tmp_path / "pool.safetensors"))
    assert again.config.pool_size == 4
    assert np.array_equal(again.transform(images), released)


def test_a_config_without_pool_size_releases_medoids():
    values = WarpGameConfig(pool_size=7).to_dict()
    del values["pool_size"]  # as in files written before pools existed
    assert WarpGameConfig.from_dict(values).pool_size == 1
    with pytest.raises(InvalidInputError, match="pool_size must be a positive integer"):
        WarpGameConfig(pool_size=0)


def test_facade_errors():
    with pytest.raises(NotFittedError, match="WarpAnonymizer.load"):
        WarpAnonymizer().transform(np.zeros((1, 20, 20), dtype=np.uint8))
    with pytest.raises(CorruptFileError, match="not an imgprivacy warp anonymizer file"):
        WarpAnonymizer.from_bytes(b"garbage", source="x")


def test_cluster_majority_is_the_per_cluster_vote():
    ids = np.array([0, 0, 1, 1, 1])
    labels = np.array([3, 3, 4, 5, 5])
    assert cluster_majority(ids, labels, np.array([1, 0, 1])).tolist() == [5, 3, 5]


def test_realism_tells_black_images_apart_but_not_copies():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(160, 6, 6), dtype=np.uint8)
    split = np.full(160, 2)
    split[:40] = 0
    attack = AttackConfig(families=("random_forest",), trees=20, n_jobs=1)
    copies = realism(images, images.copy(), split=split, config=attack)
    black = realism(images, np.zeros_like(images), split=split, config=attack)
    assert copies.best <= 0.6
    assert black.best == 1.0


def test_transfer_accuracy_trains_on_originals():
    images, writers = _slanted(120, seed=1)
    split = np.repeat([0, 1, 2], 40)
    attack = AttackConfig(families=("knn",), n_jobs=1)
    same = transfer_accuracy(images, images, labels=writers, split=split, config=attack)
    flipped = transfer_accuracy(
        images, images[:, :, ::-1].copy(), labels=writers, split=split, config=attack
    )
    assert same.best == 1.0
    assert flipped.best <= 0.1  # a mirrored slant reads as the other writer


def test_spectral_clusters_also_follow_the_papers_autoencoder(tmp_path):
    from imgprivacy.anonymizer import Anonymizer
    from tests.conftest import tiny_config, tiny_images

    images, writers = tiny_images()
    config = tiny_config(substitution="spectral-clusters", n_prototypes=3)
    model = Anonymizer(config).fit(images, writers)
    released = model.transform(images)
    assert len(np.unique(released.reshape(len(released), -1), axis=0)) <= 3
    again = Anonymizer.load(model.save(tmp_path / "a.safetensors"))
    assert np.array_equal(again.transform(images), released)


def test_cluster_series_releases_what_the_fitted_clusters_transform():
    from types import SimpleNamespace

    from imgprivacy.reproduce.anonymizer_pendigits_frontier import cluster_series

    images, writers = _slanted(60, seed=2)
    noise = np.random.default_rng(3).integers(0, 40, size=images.shape, dtype=np.uint8)
    images = np.maximum(images, noise)
    data = SimpleNamespace(
        images=images, writer=writers, digit=writers[::-1].copy(), split=np.arange(60) % 3
    )
    rows, fitted = cluster_series(
        lambda x: x, data, label="pixels", counts=(3, 4), seed=0, pool_size=4
    )
    assert [row["n_prototypes"] for row in rows] == [3, 4]
    x = torch.as_tensor(images.reshape(60, -1) / 255.0, dtype=torch.float32)
    for row in rows:
        released = fitted[row["n_prototypes"]].transform(x).numpy().astype(np.float32)
        expected = np.abs(released - images.reshape(60, -1)).mean() / 255.0
        assert row["distortion"] == pytest.approx(expected, rel=1e-6)
        assert 0.0 <= row["val_writer"] <= 1.0 and 0.0 <= row["test_digit"] <= 1.0
