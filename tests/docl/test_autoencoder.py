import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.errors import InvalidInputError, NotFittedError
from tests.conftest import blobs

CFG = AutoencoderConfig(
    input_dim=16, hidden_dim=4, epochs=30, batch_size=16, learning_rate=1e-2, seed=3
)


@pytest.fixture(scope="module")
def data():
    return blobs(dim=16)


@pytest.fixture(scope="module")
def fitted(data):
    x, y = data
    return OneClassAutoencoder(CFG).fit(x[y == 0])


def test_fit_returns_self_and_learns_statistics(data, fitted):
    x, y = data
    d = fitted.distances(x[y == 0])
    assert fitted.error_mean_ == pytest.approx(float(d.mean()), rel=1e-5)
    assert fitted.error_std_ == pytest.approx(float(d.std()), rel=1e-5)
    assert len(fitted.history_.epoch_loss) == CFG.epochs
    assert fitted.history_.epoch_loss[-1] < fitted.history_.epoch_loss[0]


def test_own_class_is_closer_than_other_classes(data, fitted):
    x, y = data
    assert fitted.distances(x[y == 0]).max() < fitted.distances(x[y != 0]).min()


def test_distance_is_squared_reconstruction_error(data, fitted):
    x, _ = data
    expected = ((x - fitted.reconstruct(x)) ** 2).sum(1)
    torch.testing.assert_close(fitted.distances(x), expected)


def test_same_seed_same_model_and_no_global_rng_change(data):
    x, y = data
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = OneClassAutoencoder(CFG).fit(x[y == 1])
    after = torch.rand(1)
    b = OneClassAutoencoder(CFG).fit(x[y == 1])
    assert torch.equal(before, after)
    for name, tensor in a.weights().items():
        assert torch.equal(tensor, b.weights()[name])


def test_layer_dims_mirror_the_widths():
    assert CFG.replace(layer_widths=(8, 6)).layer_dims == [16, 8, 6, 4, 6, 8, 16]
    assert AutoencoderConfig.paper().layer_dims == [784, 32, 784]


def test_other_seed_other_model(data):
    x, y = data
    a = OneClassAutoencoder(CFG).fit(x[y == 1])
    b = OneClassAutoencoder(CFG.replace(seed=4)).fit(x[y == 1])
    assert not torch.equal(a.weights()["layers.0.weight"], b.weights()["layers.0.weight"])


def test_adam_and_denoising_options_train(data):
    x, y = data
    cfg = CFG.replace(optimizer="adam", learning_rate=1e-2, input_noise=0.1)
    model = OneClassAutoencoder(cfg).fit(x[y == 2])
    assert model.history_.epoch_loss[-1] < model.history_.epoch_loss[0]


def test_unfitted_model_says_how_to_fix():
    with pytest.raises(NotFittedError, match="fit"):
        OneClassAutoencoder(CFG).distances(torch.rand(2, 16))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(16), r"x\[None\]"),
        (torch.rand(4, 15), r"\(N, 16\), got \(4, 15\)"),
        (torch.rand(0, 16), "at least one row"),
        (torch.rand(1, 16), "at least 2"),
        (torch.full((3, 16), float("nan")), "finite"),
        (torch.full((3, 16), 3.0), r"in \[0, 1\]"),
        (torch.ones(3, 16, dtype=torch.uint8), "dtype"),
    ],
)
def test_fit_rejects_bad_training_sets(x, match):
    with pytest.raises(InvalidInputError, match=match):
        OneClassAutoencoder(CFG).fit(x)


def test_config_collects_every_problem():
    with pytest.raises(InvalidInputError) as info:
        AutoencoderConfig(hidden_dim=0, optimizer="sgd", learning_rate=-1)
    assert len(info.value.problems) == 3
    assert "optimizer must be one of" in str(info.value)


def test_paper_config_is_the_papers_model():
    cfg = AutoencoderConfig.paper()
    assert (cfg.input_dim, cfg.hidden_dim, cfg.layer_widths, cfg.optimizer, cfg.input_noise) == (
        784,
        32,
        (),
        "adadelta",
        0.0,
    )
