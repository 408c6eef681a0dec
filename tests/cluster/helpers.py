"""Random and trained banks for the sharded-bank tests, and the one Ray runtime they share."""

from __future__ import annotations

import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, FilterBank, OneClassAutoencoder
from tests.conftest import blobs

DIM = 16
SHAPES = [dict(hidden_dim=3, layer_widths=()), dict(hidden_dim=4, layer_widths=(8,))]


def random_models(
    n: int, *, seed: int, users: int = 6
) -> list[tuple[str, str, OneClassAutoencoder]]:
    """(model id, owner, model): random weights, statistics set from the model's own distances
    to random inputs so that every interval holds a fair share of them (claims and vouches)."""
    gen = torch.Generator().manual_seed(seed)
    calibration = torch.rand(64, DIM, generator=gen)
    out = []
    for k in range(n):
        cfg = AutoencoderConfig(input_dim=DIM, **SHAPES[k % len(SHAPES)])
        dims = cfg.layer_dims
        weights = {}
        for i in range(len(dims) - 1):
            weights[f"layers.{i}.weight"] = torch.randn(dims[i + 1], dims[i], generator=gen)
            weights[f"layers.{i}.bias"] = 0.3 * torch.randn(dims[i + 1], generator=gen)
        probe = OneClassAutoencoder.from_weights(cfg, weights, error_mean=1.0, error_std=1.0)
        d = probe.distances(calibration)
        mu = float(d.quantile(torch.rand(1, generator=gen).item() * 0.6 + 0.2))
        sigma = float(d.std()) * (0.005 + 0.02 * torch.rand(1, generator=gen).item())
        model = OneClassAutoencoder.from_weights(cfg, weights, error_mean=mu, error_std=sigma)
        owner = f"user{k % users}"
        out.append((f"{owner}/m{k}", owner, model))
    return out


def trained_models() -> list[tuple[str, str, OneClassAutoencoder]]:
    """Three users' small autoencoders fitted on their own cluster of the seeded blobs."""
    x, y = blobs(dim=DIM, classes=3)
    cfg = AutoencoderConfig(
        input_dim=DIM, hidden_dim=4, epochs=8, batch_size=16, learning_rate=1e-2
    )
    out = []
    for c in range(3):
        widths = (8,) if c == 1 else ()
        model = OneClassAutoencoder(cfg.replace(seed=c, layer_widths=widths)).fit(x[y == c])
        out.append((f"u{c}/m0", f"u{c}", model))
    return out


def single_bank(models, *, precision: str = "fp32", admitted=None) -> FilterBank:
    """A bank of ``models``; ``admitted`` ({model id: admission}) sets when each joined."""
    bank = FilterBank(input_dim=DIM, precision=precision)
    bank.add_many(
        [(owner, m) for _, owner, m in models],
        model_ids=[k for k, _, _ in models],
        admitted=None if admitted is None else [admitted[k] for k, _, _ in models],
    )
    return bank


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime for the whole test session (2 CPUs, loopback, no dashboard)."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    yield ray
    if started:
        ray.shutdown()
