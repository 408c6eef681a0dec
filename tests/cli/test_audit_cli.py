"""``imgprivacy audit guard``, ``guard train --dp-epsilon`` and ``reproduce docl-audit``: results
and user errors with the CLI's exit codes (0 ok, 2 usage, 3 input)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from imgprivacy.client import train_guard
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.persistence import read_metadata
from tests.cli.test_user_errors import INPUT, USAGE, assert_error, run

GUARD = AutoencoderConfig(hidden_dim=4, layer_widths=(8,), epochs=3, batch_size=8)


def write_folder(path, count: int, seed: int):
    """``count`` grey 28x28 PNGs of a bright square that moves."""
    path.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(count):
        pixels = (rng.random((28, 28)) * 60).astype(np.uint8)
        pixels[4 + k % 12 : 14 + k % 12, 6:18] = 230
        Image.fromarray(pixels).save(path / f"{k:03d}.png")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    mine = write_folder(root / "mine", 16, seed=0)
    held_out = write_folder(root / "held-out", 8, seed=1)
    (root / "empty").mkdir()
    guard = root / "guard.safetensors"
    train_guard(mine, out=guard, config=GUARD)
    return {"mine": mine, "held_out": held_out, "empty": root / "empty", "guard": guard}


def test_audit_guard_prints_the_figures(folders):
    args = ["audit", "guard", folders["guard"], "--images", folders["mine"]]
    args += ["--held-out", folders["held_out"], "--restarts", 1, "--steps", 5]
    result = run(*args)
    assert result.exit_code == 0, result.output
    for row in ("best SSIM", "near-copy", "membership AUC", "no differential privacy"):
        assert row in result.output
    assert "of 16" in result.output and "8 held-out images" in result.output


def test_audit_guard_without_held_out_images_has_no_membership_auc(folders):
    result = run(
        "audit", "guard", folders["guard"], "--images", folders["mine"], "--restarts", 1,
        "--steps", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pass --held-out" in result.output


def test_audit_guard_user_errors(folders, tmp_path):
    assert_error(
        run("audit", "guard", tmp_path / "missing.safetensors", "--images", folders["mine"]),
        USAGE,
        "does not exist",
    )
    assert_error(run("audit", "guard", folders["guard"]), USAGE, "--images")
    not_a_guard = tmp_path / "notes.safetensors"
    not_a_guard.write_text("hello")
    assert_error(run("audit", "guard", not_a_guard, "--images", folders["mine"]), INPUT, "error:")
    assert_error(
        run("audit", "guard", folders["guard"], "--images", folders["empty"]), INPUT, "error:"
    )
    assert_error(
        run("audit", "guard", folders["guard"], "--images", folders["mine"], "--restarts", 0),
        USAGE,
    )


def test_guard_train_with_dp_records_epsilon_and_delta(folders, tmp_path):
    out = tmp_path / "dp.safetensors"
    args = ["guard", "train", "--images", folders["mine"], "--out", out, "--epochs", 2]
    result = run(*args, "--dp-epsilon", 8, "--dp-delta", 1e-6)
    assert result.exit_code == 0, result.output
    assert "epsilon=8 delta=1e-06" in result.output
    privacy = read_metadata(out.read_bytes())["privacy"]
    assert privacy["epsilon"] == 8.0 and privacy["delta"] == 1e-6
    assert not out.with_name(out.name + ".ckpt").exists()
    audited = run("audit", "guard", out, "--images", folders["mine"], "--restarts", 1, "--steps", 2)
    assert "DP-SGD, epsilon 8" in audited.output


@pytest.mark.parametrize(
    ("option", "value"), [("--dp-epsilon", "0"), ("--dp-epsilon", "x"), ("--dp-delta", "0.5")]
)
def test_guard_train_refuses_bad_privacy_options(folders, tmp_path, option, value):
    result = run(
        "guard", "train", "--images", folders["mine"], "--out", tmp_path / "g.safetensors",
        "--dp-epsilon", "4", option, value,
    )  # fmt: skip
    assert_error(result, USAGE, option)


def test_reproduce_docl_audit_refuses_bad_epsilons(tmp_path):
    result = run("reproduce", "docl-audit", "--out", tmp_path, "--epsilons", "inf,-1")
    assert_error(result, USAGE, "epsilon must be > 0")


def test_guard_train_with_a_public_model_freezes_its_first_layer(folders, tmp_path):
    public_images = write_folder(tmp_path / "public", 12, seed=7)
    public = tmp_path / "public.safetensors"
    base = ["guard", "train", "--epochs", 1, "--hidden-dim", 4, "--negative-weight", 0]
    assert run(*base, "--images", public_images, "--out", public).exit_code == 0
    out = tmp_path / "dp.safetensors"
    result = run(
        *base, "--images", folders["mine"], "--out", out, "--dp-epsilon", 8,
        "--dp-public-model", public,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    privacy = read_metadata(out.read_bytes())["privacy"]
    assert privacy["frozen_layers"] == [0]
    assert privacy["steps"] == math.ceil(16 / privacy["batch_size"])  # --epochs 1 holds for DP
    mine, theirs = OneClassAutoencoder.load(out), OneClassAutoencoder.load(public)
    assert torch.equal(mine.weights()["layers.0.weight"], theirs.weights()["layers.0.weight"])
    assert not torch.equal(mine.weights()["layers.1.weight"], theirs.weights()["layers.1.weight"])


def test_guard_train_refuses_a_public_model_without_dp(folders, tmp_path):
    result = run(
        "guard", "train", "--images", folders["mine"], "--out", tmp_path / "g.safetensors",
        "--dp-public-model", folders["guard"],
    )  # fmt: skip
    assert_error(result, USAGE, "needs --dp-epsilon")
