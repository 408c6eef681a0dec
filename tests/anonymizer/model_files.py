"""Hand-built anonymizer model files: the on-disk layout spelled out, independent of the writer."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

# The config of a tiny model exactly as a file written at the package restructure stores it.
TINY_CONFIG = {
    "image_size": 8,
    "n_private": 4,
    "ae_arch": "mlp",
    "ae_hidden": 16,
    "ae_channels": 16,
    "code_dim": 4,
    "disc_hidden": 8,
    "private_hidden": 8,
    "dropout": 0.2,
    "target_identity": None,
    "substitution": "prototypes",
    "n_prototypes": 6,
    "prototype_blur": 1.5,
    "lam": 1.0,
    "recon_weight": 5.0,
    "pretrain_epochs": 2,
    "disc_pretrain_epochs": 1,
    "adversarial_epochs": 2,
    "private_refresh_epochs": 2,
    "disc_steps": 1,
    "private_steps": 2,
    "batch_size": 16,
    "ae_lr": 0.001,
    "adversarial_ae_lr": 0.0001,
    "disc_lr": 0.0001,
    "private_lr": 0.001,
    "seed": 0,
}
# The MLP autoencoder of TINY_CONFIG: 64 -> 16 -> 4 -> 16 -> 64 (names as nn.Sequential gives them)
AUTOENCODER_SHAPES = {
    "encoder.0.weight": (16, 64),
    "encoder.0.bias": (16,),
    "encoder.2.weight": (4, 16),
    "encoder.2.bias": (4,),
    "decoder.1.weight": (16, 4),
    "decoder.1.bias": (16,),
    "decoder.3.weight": (64, 16),
    "decoder.3.bias": (64,),
}


def model_file(
    *, config: dict, extra_tensors: dict[str, torch.Tensor], seed: int = 0
) -> tuple[bytes, dict[str, torch.Tensor]]:
    """(bytes of a model file in the original layout, its autoencoder weights)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {
        name: 0.3 * torch.randn(shape, generator=generator)
        for name, shape in AUTOENCODER_SHAPES.items()
    }
    metadata = {
        "format": "imgprivacy.anonymizer.model",
        "format_version": 1,
        "imgprivacy_version": "0.1.0",
        "config": config,
        "private_classes": [0, 1, 2, 3],
        "history": [{"epoch": 1, "phase": "pretrain", "seconds": 0.1, "reconstruction_bce": 0.7}],
    }
    data = save_bytes({**weights, **extra_tensors}, metadata={"imgprivacy": json.dumps(metadata)})
    return data, weights


def without_tensors(data: bytes, names: list[str]) -> bytes:
    """``data`` (a model file) with the tensors ``names`` removed and the metadata kept."""
    length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + length])["__metadata__"]
    tensors = {k: v for k, v in load_bytes(data).items() if k not in names}
    return save_bytes(tensors, metadata=metadata)
