"""The privacy audit on real MNIST users, and the docl-audit reproduction end to end (slow)."""

from __future__ import annotations

import json

import pytest
import torch

import imgprivacy.reproduce.docl_audit as docl_audit
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.audit import AuditSettings, audit_guard
from imgprivacy.docl.private_budget import PrivacyBudget
from imgprivacy.reproduce.docl_data import mnist_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digit_three(data_dir):
    data = mnist_experiment(
        data_dir=data_dir, train_per_class=600, test_per_class=150, public_count=10
    )
    return (
        data.train_x[torch.as_tensor(data.train_y == 3)],
        data.test_x[torch.as_tensor(data.test_y == 3)],
    )


@pytest.mark.parametrize("epsilon", [None, 8.0])
def test_the_audit_of_one_mnist_user_is_computed(digit_three, epsilon):
    train, test = digit_three
    config = AutoencoderConfig.paper(input_dim=784, epochs=20)
    privacy = None if epsilon is None else PrivacyBudget(epsilon=epsilon)
    model = OneClassAutoencoder(config).fit(train, privacy=privacy)
    settings = AuditSettings(restarts=2, codes_per_restart=32, steps=100, calibration_images=200)
    result = audit_guard(model, train, held_out=test, settings=settings)
    assert result.recovered == 128 and 0 <= result.below_mu <= 128
    assert result.training_images == 600 and result.held_out_images == 150
    # The decoder draws digit-like images: clearly similar to some training three, not copies.
    assert 0.2 < result.best_ssim <= 1 and 0.5 < result.best_correlation <= 1
    assert result.mean_ssim <= result.best_ssim
    assert result.near_copy_threshold >= 0.9
    assert 0 <= result.near_copy_fraction <= 1
    assert 0.3 < result.membership_auc < 0.8
    if epsilon is not None:
        assert model.privacy_.epsilon == epsilon


def test_the_reproduction_writes_its_table(tmp_path, data_dir, monkeypatch):
    """The whole pipeline on a very reduced run: its numbers are computed, not its quality."""
    monkeypatch.setattr(
        docl_audit, "QUICK", dict(train_per_class=80, test_per_class=20, public_count=50)
    )
    monkeypatch.setattr(
        docl_audit,
        "QUICK_AUDIT",
        AuditSettings(
            restarts=1, codes_per_restart=8, steps=5, iterations=3, calibration_images=20
        ),
    )
    monkeypatch.setattr(docl_audit, "MODELS", {"paper-exact": AutoencoderConfig.paper(epochs=2)})
    monkeypatch.setattr(docl_audit, "PUBLIC_IMAGES", 200)
    monkeypatch.setattr(docl_audit, "PUBLIC_EPOCHS", 2)
    results = docl_audit.reproduce_docl_audit(
        out=tmp_path,
        quick=True,
        models=("paper-exact",),
        epsilons=(None, 4.0),
        data_dir=data_dir,
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["epsilon"] for r in saved["runs"]] == [None, 4.0]
    private = saved["runs"][1]
    assert private["delta"] == 1e-5 and isinstance(private["meets_goal"], bool)
    assert [u["user"] for u in private["users"]] == ["u0", "u3", "u8"]
    assert len(private["admitted"]) + len(private["refusals"]) == 10
    assert 0 <= private["max_membership_auc"] <= 1
    assert len(list((tmp_path / "guards" / "paper-exact-epsilon-4.0").glob("u*.safetensors"))) == 10
    loaded = OneClassAutoencoder.load(
        tmp_path / "guards" / "paper-exact-epsilon-4.0" / "u3.safetensors"
    )
    assert loaded.privacy_.epsilon == 4.0
    # The DP guards keep the first layer of the guard trained on public (Fashion-MNIST) images.
    assert saved["dp_public_first_layer"] is True and loaded.privacy_.frozen_layers == (0,)
    public = OneClassAutoencoder.load(tmp_path / "public-paper-exact.safetensors")
    assert torch.equal(loaded.weights()["layers.0.weight"], public.weights()["layers.0.weight"])
    (table,) = docl_audit.summary_tables(results)
    assert table.row_count == 2
