"""Differentially private training: the budget is met, recorded in the file and read back."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.persistence import METADATA_KEY, read_metadata
from imgprivacy.docl.private_budget import PrivacyBudget, PrivacyReport
from imgprivacy.docl.private_training import composed_epsilon, plan_noise, private_statistics
from imgprivacy.errors import InvalidInputError
from tests.conftest import blobs

CONFIG = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(8,), epochs=3, batch_size=16)


@pytest.fixture(scope="module")
def features():
    return blobs(n_per_class=64)[0]


@pytest.fixture(scope="module")
def private_model(features):
    return OneClassAutoencoder(CONFIG).fit(features, privacy=PrivacyBudget(epsilon=4.0))


def test_the_report_meets_the_budget(private_model):
    report = private_model.privacy_
    assert report.epsilon == 4.0
    assert 3.99 <= report.epsilon_spent <= 4.0
    assert report.delta == 1e-5
    assert report.noise_multiplier > 0 and report.statistics_noise > 0
    assert report.distance_clip == CONFIG.input_dim / 8
    assert private_model.error_mean_ > 0 and private_model.error_std_ > 0


def test_non_private_models_have_no_report(features):
    model = OneClassAutoencoder(CONFIG.replace(epochs=1)).fit(features)
    assert model.privacy_ is None
    assert "privacy" not in read_metadata(model.to_bytes())
    assert OneClassAutoencoder.from_bytes(model.to_bytes()).privacy_ is None


def test_the_file_records_epsilon_and_delta_and_loads(private_model, features):
    data = private_model.to_bytes()
    assert read_metadata(data)["privacy"]["epsilon"] == 4.0
    assert read_metadata(data)["privacy"]["delta"] == 1e-5
    loaded = OneClassAutoencoder.from_bytes(data)
    assert loaded.privacy_ == private_model.privacy_
    assert torch.equal(loaded.distances(features), private_model.distances(features))


def test_private_training_is_seeded(private_model, features):
    again = OneClassAutoencoder(CONFIG).fit(features, privacy=PrivacyBudget(epsilon=4.0))
    assert torch.equal(again.distances(features), private_model.distances(features))
    assert again.error_mean_ == private_model.error_mean_
    other = OneClassAutoencoder(CONFIG.replace(seed=1)).fit(
        features, privacy=PrivacyBudget(epsilon=4.0)
    )
    assert not torch.equal(other.distances(features), private_model.distances(features))


def test_a_smaller_epsilon_needs_more_noise():
    plans = [plan_noise(PrivacyBudget(epsilon=e), sample_rate=0.1, steps=100) for e in (1.0, 8.0)]
    (noise_small, statistics_small, _), (noise_large, statistics_large, _) = plans
    assert noise_small > noise_large
    assert statistics_small > statistics_large


def test_the_plan_composes_both_mechanisms_within_the_budget():
    budget = PrivacyBudget(epsilon=2.0, delta=1e-6)
    noise, statistics_noise, spent = plan_noise(budget, sample_rate=0.05, steps=600)
    assert spent <= 2.0
    both = composed_epsilon(
        noise_multiplier=noise,
        sample_rate=0.05,
        steps=600,
        statistics_noise=statistics_noise,
        delta=1e-6,
    )
    assert both == pytest.approx(spent)
    # A little less noise would overspend: the plan is the smallest noise that fits.
    assert (
        composed_epsilon(
            noise_multiplier=noise * 0.97,
            sample_rate=0.05,
            steps=600,
            statistics_noise=statistics_noise,
            delta=1e-6,
        )
        > 2.0
    )
    statistics_alone = composed_epsilon(
        noise_multiplier=noise,
        sample_rate=0.05,
        steps=0,
        statistics_noise=statistics_noise,
        delta=1e-6,
    )
    assert statistics_alone == pytest.approx(budget.statistics_share * 2.0, rel=1e-3)


def test_private_statistics_are_close_with_many_images():
    distances = 10.0 + 2.0 * torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    mu, sigma = private_statistics(
        distances.abs(), clip=40.0, noise=5.0, generator=torch.Generator().manual_seed(1)
    )
    assert mu == pytest.approx(10.0, abs=0.05)
    assert sigma == pytest.approx(2.0, abs=0.1)


def test_distances_beyond_the_clip_are_clipped():
    distances = torch.full((10_000,), 100.0)
    mu, _ = private_statistics(
        distances, clip=20.0, noise=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert mu == pytest.approx(20.0, rel=0.01)


def test_checkpoints_are_refused_with_privacy(features, tmp_path):
    with pytest.raises(InvalidInputError, match="cannot be checkpointed or resumed"):
        OneClassAutoencoder(CONFIG).fit(
            features, checkpoint=tmp_path / "run.ckpt", privacy=PrivacyBudget(epsilon=1.0)
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(epsilon=0.0), "epsilon must be a finite number > 0"),
        (dict(epsilon=math.inf), "epsilon must be a finite number > 0"),
        (dict(epsilon=1.0, delta=1.0), r"delta must be in \(0, 1\)"),
        (dict(epsilon=1.0, max_grad_norm=0), "max_grad_norm must be > 0"),
        (dict(epsilon=1.0, distance_clip=-1.0), "distance_clip must be > 0"),
    ],
)
def test_invalid_budgets_are_refused(values, message):
    with pytest.raises(InvalidInputError, match=message):
        PrivacyBudget(**values)


def test_a_file_with_broken_privacy_metadata_is_refused(private_model):
    data = private_model.to_bytes()
    meta = read_metadata(data)
    meta["privacy"]["epsilon"] = "a lot"
    broken = save_tensors(load_tensors(data), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(InvalidInputError, match="privacy.epsilon must be a finite number"):
        OneClassAutoencoder.from_bytes(broken)
    with pytest.raises(InvalidInputError, match="privacy metadata must be an object"):
        PrivacyReport.from_dict({"epsilon": 1.0})


def test_private_training_takes_its_statistics_from_held_out_rows(features, monkeypatch):
    from imgprivacy.docl import private_training

    seen = []

    def recording(distances, **kwargs):
        seen.append(len(distances))
        return private_statistics(distances, **kwargs)

    monkeypatch.setattr(private_training, "private_statistics", recording)
    config = CONFIG.replace(calibration_fraction=0.25)
    model = OneClassAutoencoder(config).fit(features, privacy=PrivacyBudget(epsilon=4.0))
    held_out = math.ceil(0.25 * len(features))
    assert seen == [held_out] and model.calibration_size_ == held_out
    assert model.privacy_ is not None and model.error_std_ > 0
    loaded = OneClassAutoencoder.from_bytes(model.to_bytes())
    assert loaded.config.calibration_fraction == 0.25 and loaded.privacy_ == model.privacy_


@pytest.fixture(scope="module")
def public_file(tmp_path_factory):
    """A non-private guard of CONFIG's architecture trained on other (public) images."""
    public = blobs(n_per_class=32, seed=5)[0]
    path = tmp_path_factory.mktemp("public") / "public.safetensors"
    OneClassAutoencoder(CONFIG).fit(public).save(path)
    return path


def test_public_layers_are_copied_frozen_and_recorded(features, public_file):
    budget = PrivacyBudget(epsilon=4.0, public_model=public_file, public_layers=(0, 3))
    model = OneClassAutoencoder(CONFIG).fit(features, privacy=budget)
    public = OneClassAutoencoder.load(public_file).weights()
    weights = model.weights()
    for name in ("layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"):
        assert torch.equal(weights[name], public[name]), name
    # The layers in between were trained (and started from the guard's own seeded init).
    assert not torch.equal(weights["layers.1.weight"], public["layers.1.weight"])
    without = OneClassAutoencoder(CONFIG).fit(features, privacy=PrivacyBudget(epsilon=4.0))
    assert not torch.equal(weights["layers.1.weight"], without.weights()["layers.1.weight"])
    assert model.privacy_.frozen_layers == (0, 3)
    assert 3.99 <= model.privacy_.epsilon_spent <= 4.0
    loaded = OneClassAutoencoder.from_bytes(model.to_bytes())
    assert loaded.privacy_ == model.privacy_
    assert read_metadata(model.to_bytes())["privacy"]["frozen_layers"] == [0, 3]


def test_a_public_model_of_another_architecture_is_refused(features, tmp_path):
    other = tmp_path / "other.safetensors"
    OneClassAutoencoder(CONFIG.replace(layer_widths=(), epochs=1)).fit(features).save(other)
    with pytest.raises(InvalidInputError, match=r"has layers \[16, 4, 16\].*same config"):
        OneClassAutoencoder(CONFIG).fit(
            features, privacy=PrivacyBudget(epsilon=4.0, public_model=other)
        )


def test_public_layers_beyond_the_network_are_refused(features, public_file):
    budget = PrivacyBudget(epsilon=4.0, public_model=public_file, public_layers=(0, 4))
    with pytest.raises(InvalidInputError, match=r"public_layers \[4\] are beyond .* 4 layers"):
        OneClassAutoencoder(CONFIG).fit(features, privacy=budget)


def test_the_budget_sets_the_dp_training_run(features):
    budget = PrivacyBudget(epsilon=4.0, batch_size=16, epochs=2, learning_rate=3e-3)
    model = OneClassAutoencoder(CONFIG).fit(features, privacy=budget)
    n = len(features)  # 192 images, expected batch 16: 12 steps per epoch
    assert model.privacy_.batch_size == 16
    assert model.privacy_.steps == 2 * math.ceil(n / 16)
    assert len(model.history_.epoch_loss) == 2
    sgd = OneClassAutoencoder(CONFIG).fit(
        features, privacy=PrivacyBudget(epsilon=4.0, batch_size=16, epochs=2, optimizer="sgd")
    )
    assert not torch.equal(sgd.distances(features), model.distances(features))


def test_few_images_get_at_least_ten_dp_steps_per_pass(features):
    """The default batch (512) is capped at n / 10 for 192 images: 20, so 10 steps per epoch
    (and never below 16)."""
    model = OneClassAutoencoder(CONFIG).fit(features, privacy=PrivacyBudget(epsilon=4.0, epochs=1))
    assert model.privacy_.batch_size == math.ceil(len(features) / 10) == 20
    assert model.privacy_.steps == math.ceil(len(features) / 20)
    few = OneClassAutoencoder(CONFIG).fit(
        features[:40], privacy=PrivacyBudget(epsilon=4.0, epochs=1)
    )
    assert few.privacy_.batch_size == 16


def test_reports_of_older_files_without_the_run_settings_load(private_model):
    values = private_model.privacy_.to_dict()
    for name in ("steps", "batch_size", "frozen_layers"):
        del values[name]
    report = PrivacyReport.from_dict(values)
    assert report.steps is None and report.frozen_layers == ()
    values["steps"] = 0
    with pytest.raises(InvalidInputError, match="privacy.steps must be an integer >= 1"):
        PrivacyReport.from_dict(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(batch_size=0), "batch_size must be a positive integer or None"),
        (dict(epochs=2.5), "epochs must be a positive integer or None"),
        (dict(learning_rate=-1.0), "learning_rate must be > 0 or None"),
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(public_layers=(-1,)), "public_layers must be layer indices >= 0"),
        (dict(public_model="p.safetensors", public_layers=()), "must name at least one layer"),
    ],
)
def test_invalid_dp_settings_are_refused(values, message):
    with pytest.raises(InvalidInputError, match=message):
        PrivacyBudget(epsilon=1.0, **values)


def test_an_explicit_batch_of_one_image_trains(features):
    """An expected batch of one image draws many empty Poisson samples (about 37% of the steps):
    each is a step of pure noise, and the next step trains as usual."""
    budget = PrivacyBudget(epsilon=4.0, batch_size=1, epochs=1)
    model = OneClassAutoencoder(CONFIG).fit(features, privacy=budget)
    report = model.privacy_
    assert report.batch_size == 1 and report.steps == len(features)
    assert 3.99 <= report.epsilon_spent <= 4.0
    assert math.isfinite(model.error_mean_) and model.error_std_ > 0
    assert torch.isfinite(model.distances(features)).all()
