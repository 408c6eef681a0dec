import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, save_autoencoder
from imgprivacy.errors import CorruptFileError, InvalidInputError, NotFittedError
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


# -- progress, checkpoints and resuming ----------------------------------------------------------
SHORT = CFG.replace(layer_widths=(8,), epochs=5)
NOISY_ADAM = SHORT.replace(optimizer="adam", learning_rate=1e-2, input_noise=0.1)


class Recorder:
    """A ProgressFactory that records its tasks and can interrupt at a given step."""

    def __init__(self, stop_at: int | None = None):
        self.tasks, self.statuses, self.stop_at = [], [], stop_at

    def __call__(self, description, total):
        self.tasks.append((description, total))

        def advance(status=""):
            self.statuses.append(status)
            if len(self.statuses) == self.stop_at:
                raise KeyboardInterrupt

        return advance


def assert_same_model(a: OneClassAutoencoder, b: OneClassAutoencoder) -> None:
    wa, wb = a.weights(), b.weights()
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a.error_mean_, a.error_std_) == (b.error_mean_, b.error_std_)
    assert a.history_.epoch_loss == b.history_.epoch_loss


@pytest.fixture(scope="module")
def owner(data):
    x, y = data
    return x[y == 0]


def interrupted(x, config, path, *, after: int) -> None:
    with pytest.raises(KeyboardInterrupt):
        OneClassAutoencoder(config).fit(x, checkpoint=path, progress=Recorder(stop_at=after))
    assert path.is_file()


def test_fit_reports_one_step_per_epoch_with_its_loss(owner):
    recorder = Recorder()
    model = OneClassAutoencoder(SHORT).fit(owner, progress=recorder)
    assert recorder.tasks == [("training autoencoder", 5)]
    assert recorder.statuses == [f"loss {loss:.3f}" for loss in model.history_.epoch_loss]


@pytest.mark.parametrize("config", [SHORT, NOISY_ADAM], ids=["adadelta", "adam-noise"])
def test_interrupted_fit_resumes_to_the_same_model(owner, tmp_path, config):
    path = tmp_path / "run.ckpt"
    interrupted(owner, config, path, after=2)
    recorder = Recorder()
    resumed = OneClassAutoencoder(config).fit(
        owner, checkpoint=path, resume=True, progress=recorder
    )
    assert recorder.statuses[:2] == ["resumed", "resumed"]  # epochs 1-2 were not repeated
    assert recorder.statuses[2:] == [f"loss {v:.3f}" for v in resumed.history_.epoch_loss[2:]]
    assert_same_model(resumed, OneClassAutoencoder(config).fit(owner))


def test_checkpointing_does_not_change_the_model(owner, tmp_path):
    path = tmp_path / "run.ckpt"
    assert_same_model(
        OneClassAutoencoder(NOISY_ADAM).fit(owner, checkpoint=path),
        OneClassAutoencoder(NOISY_ADAM).fit(owner),
    )
    assert path.is_file()


def test_finished_run_continues_to_more_epochs(owner, tmp_path):
    path = tmp_path / "run.ckpt"
    OneClassAutoencoder(SHORT.replace(epochs=3)).fit(owner, checkpoint=path)
    longer = OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)
    assert_same_model(longer, OneClassAutoencoder(SHORT).fit(owner))


def test_resume_without_a_checkpoint_file_starts_from_the_first_epoch(owner, tmp_path):
    path = tmp_path / "new" / "run.ckpt"
    model = OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)
    assert_same_model(model, OneClassAutoencoder(SHORT).fit(owner))
    assert path.is_file()


def test_without_resume_an_existing_checkpoint_is_overwritten(owner, tmp_path):
    path = tmp_path / "run.ckpt"
    interrupted(torch.rand(20, 16), SHORT, path, after=2)
    model = OneClassAutoencoder(SHORT).fit(owner, checkpoint=path)
    assert_same_model(model, OneClassAutoencoder(SHORT).fit(owner))
    again = OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)
    assert_same_model(again, model)  # the overwritten checkpoint is the finished run


def test_resume_needs_a_checkpoint_path(owner):
    with pytest.raises(InvalidInputError, match="checkpoint=PATH"):
        OneClassAutoencoder(SHORT).fit(owner, resume=True)


@pytest.mark.parametrize(
    ("other_data", "config", "match"),
    [
        (True, SHORT, "other features or with another config"),
        (False, SHORT.replace(seed=4), "other features or with another config"),
        (False, SHORT.replace(learning_rate=0.5), "other features or with another config"),
        (False, SHORT.replace(epochs=1), "holds 2 finished epochs but the config asks for 1"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_and_kept(
    owner, tmp_path, other_data, config, match
):
    path = tmp_path / "run.ckpt"
    interrupted(owner, SHORT, path, after=2)
    before = path.read_bytes()
    x = torch.rand(len(owner), 16) if other_data else owner
    with pytest.raises(InvalidInputError, match=match) as info:
        OneClassAutoencoder(config).fit(x, checkpoint=path, resume=True)
    assert "resume=False to start over" in str(info.value)
    assert path.read_bytes() == before


def _rewrite(path, *, metadata=None, tensors=None):
    """Change a checkpoint's metadata fields and tensors in place."""
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    meta = json.loads(header["__metadata__"]["imgprivacy"])
    meta.update(metadata or {})
    values = load_file(path)
    values.update(tensors or {})
    save_file(values, path, metadata={"imgprivacy": json.dumps(meta)})


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(b"\x10\x00\x00\x00not a checkpoint"), "not a readable"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "not a readable"),
        (lambda p: _rewrite(p, metadata={"format": "other"}), "expected a training checkpoint"),
        (lambda p: _rewrite(p, metadata={"format_version": 2}), "format version 2"),
        (lambda p: _rewrite(p, metadata={"epoch": 3}), "one loss per epoch"),
        (
            lambda p: _rewrite(p, tensors={"net.layers.0.weight": torch.zeros(8, 15)}),
            r"layers.0.weight has shape \(8, 15\), expected \(8, 16\)",
        ),
        (lambda p: _rewrite(p, tensors={"rng_state": torch.zeros(3)}), "generator state"),
    ],
    ids=["garbage", "truncated", "format", "version", "epochs", "shape", "rng"],
)
def test_a_corrupt_checkpoint_gives_a_clear_error(owner, tmp_path, damage, match):
    path = tmp_path / "run.ckpt"
    interrupted(owner, SHORT, path, after=2)
    damage(path)
    with pytest.raises(CorruptFileError, match=match) as info:
        OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)
    assert "resume=False to start over" in str(info.value)


def test_a_saved_model_is_not_a_checkpoint(owner, tmp_path):
    path = save_autoencoder(OneClassAutoencoder(SHORT).fit(owner), tmp_path / "model.safetensors")
    with pytest.raises(CorruptFileError, match="imgprivacy.docl.autoencoder"):
        OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)


def test_a_checkpoint_without_format_version_is_read(owner, tmp_path):
    # Checkpoints written by the edge client before fit() took them over had no format_version.
    path = tmp_path / "run.ckpt"
    interrupted(owner, SHORT, path, after=2)
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    meta = json.loads(header["__metadata__"]["imgprivacy"])
    del meta["format_version"], meta["imgprivacy_version"]
    save_file(load_file(path), path, metadata={"imgprivacy": json.dumps(meta)})
    resumed = OneClassAutoencoder(SHORT).fit(owner, checkpoint=path, resume=True)
    assert_same_model(resumed, OneClassAutoencoder(SHORT).fit(owner))
