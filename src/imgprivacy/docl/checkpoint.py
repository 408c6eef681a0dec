"""Training checkpoints of a one-class autoencoder: everything an exact resume needs.

A checkpoint holds the network, the optimizer's state, the state of the generator that shuffles
and draws the input noise, the finished epochs and their losses, as safetensors plus JSON metadata
(never pickle), written atomically after every epoch. Its ``fingerprint`` hashes the training
features and every config field but ``epochs``, so a checkpoint is only applied to the run it was
written for (a finished run may be continued to more epochs).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from imgprivacy import __version__
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.fileio import write_atomic
from imgprivacy.safetensors_io import tensor_problems

# The edge client wrote this format before the loop moved into OneClassAutoencoder.fit; files
# from then (without a format_version) are read as version 1.
CHECKPOINT_FORMAT = "imgprivacy.edge.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "imgprivacy"


@dataclass
class TrainingState:
    """The objects a training run mutates, and how far it got."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # shuffling and input noise
    epoch: int = 0  # finished epochs
    epoch_loss: list[float] = field(default_factory=list)  # mean BCE per sample of each epoch


def fingerprint(
    x: torch.Tensor, config: AutoencoderConfig, *, negatives: torch.Tensor | None = None
) -> str:
    """SHA-256 of the training features (and negatives), and of every config field except
    ``epochs``.

    ``calibration_fraction`` and the outlier-exposure fields enter only when set, so checkpoints
    written before those fields existed (paper statistics, no negatives) still resume."""
    digest = hashlib.sha256(x.detach().cpu().numpy().tobytes())
    if negatives is not None:
        digest.update(negatives.detach().cpu().numpy().tobytes())
    fields = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    if not fields.get("calibration_fraction"):
        fields.pop("calibration_fraction", None)
    if not fields.get("negative_weight"):
        fields.pop("negative_weight", None)
        fields.pop("negative_margin", None)
    digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: TrainingState, *, run: str) -> Path:
    """Write ``state`` atomically; ``run`` is the :func:`fingerprint` of the training run."""
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in state.net.state_dict().items()}
    scalars = {}
    for index, values in state.optimizer.state_dict()["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    tensors["rng_state"] = state.generator.get_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "imgprivacy_version": __version__,
        "epoch": state.epoch,
        "epoch_loss": state.epoch_loss,
        "fingerprint": run,
        "optimizer_scalars": scalars,
    }
    return write_atomic(path, save_bytes(tensors, metadata={METADATA_KEY: json.dumps(metadata)}))


def restore_checkpoint(
    path: str | os.PathLike, state: TrainingState, *, run: str, epochs: int
) -> None:
    """Load the checkpoint at ``path`` into ``state`` (network, optimizer, generator, epochs).

    Raises
    ------
    CorruptFileError
        When the file is not a readable checkpoint of this format and version.
    InvalidInputError
        When it was written for other training features or another config (``run`` differs),
        or holds more finished epochs than ``epochs``.
    """
    source = str(path)
    start_over = f"Delete {source} or fit with resume=False to start over."
    metadata, tensors = _read(Path(path), start_over=start_over)
    if metadata.get("fingerprint") != run:
        raise InvalidInputError(
            f"{source} was written while training on other features or with another config "
            f"(only epochs may change when resuming). Resume with the same features and config. "
            f"{start_over}"
        )
    done, losses = metadata.get("epoch"), metadata.get("epoch_loss")
    if not isinstance(done, int) or not isinstance(losses, list) or len(losses) != done:
        raise CorruptFileError(
            f"{source}: expected the finished epochs and one loss per epoch in its metadata, "
            f"got epoch={done!r} and {losses!r}. {start_over}"
        )
    if done > epochs:
        raise InvalidInputError(
            f"{source} holds {done} finished epochs but the config asks for {epochs}. "
            f"Set epochs to at least {done} to continue it. {start_over}"
        )
    net = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
    expected = {k: tuple(v.shape) for k, v in state.net.state_dict().items()}
    problems = tensor_problems(net, expected)
    if problems:
        raise CorruptFileError(f"{source}: {'; '.join(problems)}. {start_over}")
    restored: dict[int, dict] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                restored.setdefault(int(index), {})[name] = value
        for key, value in metadata.get("optimizer_scalars", {}).items():
            index, name = key.split(".", 1)
            restored.setdefault(int(index), {})[name] = value
        param_groups = state.optimizer.state_dict()["param_groups"]
        state.net.load_state_dict(net)
        state.optimizer.load_state_dict({"state": restored, "param_groups": param_groups})
        state.generator.set_state(tensors["rng_state"])
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise CorruptFileError(
            f"{source}: cannot restore the optimizer or generator state ({exc}). {start_over}"
        ) from exc
    state.epoch = done
    state.epoch_loss = [float(v) for v in losses]


def _read(path: Path, *, start_over: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a checkpoint file, or a clear :class:`CorruptFileError`."""
    try:
        data = path.read_bytes()
        header_len = int.from_bytes(data[:8], "little")
        if len(data) < 8 or header_len <= 0 or 8 + header_len > len(data):
            raise ValueError("truncated header")
        header = json.loads(data[8 : 8 + header_len])
        metadata = json.loads(header["__metadata__"][METADATA_KEY])
        tensors = load_bytes(data)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise CorruptFileError(
            f"{path} is not a readable training checkpoint (safetensors with "
            f"'{METADATA_KEY}' metadata): {exc}. {start_over}"
        ) from exc
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CorruptFileError(
            f"{path}: expected a training checkpoint of format {CHECKPOINT_FORMAT!r}, got "
            f"{found!r}. Checkpoints come from OneClassAutoencoder.fit(checkpoint=PATH). "
            f"{start_over}"
        )
    version = metadata.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CorruptFileError(
            f"{path}: checkpoint format version {version!r} is not supported (this imgprivacy "
            f"reads version {FORMAT_VERSION}). {start_over}"
        )
    return metadata, tensors
