"""Anonymizer files: safetensors tensors plus JSON metadata in the header (never pickle).

Two kinds, told apart by the metadata's ``format``:

* a **model** (``imgprivacy.anonymizer.model``): the autoencoder's weights, the fitted
  substitution's tensors (under their own names, e.g. ``prototypes``), the config, the private
  classes and the training history - all that :meth:`Anonymizer.load` needs to anonymize images;
* a **checkpoint** (``imgprivacy.anonymizer.checkpoint``): the three networks, the four optimisers'
  states, the shuffling RNG, the finished epochs and the history - all that resuming needs.

Both are written atomically (temporary file, then rename), so an interruption leaves the previous
file intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as save_bytes

from imgprivacy import __version__
from imgprivacy.anonymizer.config import AnonymizerConfig
from imgprivacy.anonymizer.networks import expected_shapes
from imgprivacy.anonymizer.substitution import SubstitutionMethod, get_substitution
from imgprivacy.anonymizer.trainer import AdversarialHistory, AnonymizerTrainer
from imgprivacy.errors import CorruptFileError, DataNotFoundError, InvalidInputError
from imgprivacy.fileio import write_atomic
from imgprivacy.safetensors_io import METADATA_KEY, read_safetensors, tensor_problems

MODEL_FORMAT = "imgprivacy.anonymizer.model"
CHECKPOINT_FORMAT = "imgprivacy.anonymizer.checkpoint"
FORMAT_VERSION = 1
SUBSTITUTION_METADATA_KEY = "substitution_state"  # written only when the method has metadata


def _encode(tensors: dict[str, torch.Tensor], metadata: dict) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return save_bytes(tensors, metadata={METADATA_KEY: json.dumps(metadata)})


def _decode(data: bytes, *, source: str, expected_format: str) -> tuple[dict, dict]:
    """(metadata, tensors) of a file, or a clear :class:`CorruptFileError`."""
    tensors, metadata = read_safetensors(
        data, source=source, expected="an imgprivacy anonymizer file"
    )
    found = metadata.get("format")
    if found != expected_format:
        raise CorruptFileError(
            f"{source}: expected a file of format {expected_format!r}, got {found!r}. "
            "Models come from `imgprivacy anonymize train` or Anonymizer.save(); checkpoints "
            "from training with checkpoint=PATH."
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(
            f"{source}: format version {metadata.get('format_version')!r} is not supported "
            f"(this imgprivacy reads version {FORMAT_VERSION}); retrain or upgrade imgprivacy."
        )
    return metadata, tensors


def _config_from(metadata: dict, source: str) -> AnonymizerConfig:
    try:
        values = dict(metadata["config"])
        values.setdefault("ae_arch", "mlp")  # files written before the conv autoencoder
        values.setdefault("ae_channels", 16)
        values.setdefault("n_prototypes", 0)  # files written before substitution existed
        if "substitution" not in values:  # files written before the substitution field
            values["substitution"] = "prototypes" if values["n_prototypes"] > 0 else "none"
        return AnonymizerConfig.from_dict(values)
    except (InvalidInputError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"{source}: invalid config in metadata: {exc}") from exc


def check_tensors(
    tensors: dict[str, torch.Tensor],
    expected: dict[str, tuple[int, ...]],
    *,
    source: str,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Raise once with every name / shape / dtype / finiteness mismatch."""
    _raise_mismatches(
        tensor_problems(tensors, expected, dtype=dtype, list_limit=len(expected) + len(tensors)),
        source=source,
    )


def _raise_mismatches(problems: list[str], *, source: str) -> None:
    if problems:
        raise InvalidInputError(
            [f"{source} does not match the architecture its config declares: {p}" for p in problems]
        )


# -- models -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelContents:
    """What a model file holds, validated against its config."""

    config: AnonymizerConfig
    autoencoder: dict[str, torch.Tensor]  # the autoencoder's state dict
    substitution: SubstitutionMethod  # fitted, of the method config.substitution names
    classes: list  # the private classes, in label-index order
    history: list[dict]  # AdversarialHistory.epochs of the training run


def model_to_bytes(
    *,
    config: AnonymizerConfig,
    autoencoder: dict[str, torch.Tensor],
    substitution: SubstitutionMethod,
    classes: list,
    history: list,
) -> bytes:
    """Serialise a trained anonymizer (autoencoder weights, substitution state, config, classes)."""
    state, state_metadata = substitution.state()
    clashes = sorted(set(state) & set(autoencoder))
    if clashes:
        raise InvalidInputError(
            f"Expected substitution tensor names distinct from the autoencoder's, got {clashes}."
        )
    metadata = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "imgprivacy_version": __version__,
        "config": config.to_dict(),
        "private_classes": list(classes),
        "history": history,
    }
    if state_metadata:
        metadata[SUBSTITUTION_METADATA_KEY] = state_metadata
    return _encode({**autoencoder, **state}, metadata)


def model_from_bytes(data: bytes, *, source: str = "model") -> ModelContents:
    """The validated contents of a model file; every tensor mismatch is reported at once.

    Raises
    ------
    CorruptFileError
        When the bytes are not an anonymizer model file.
    InvalidInputError
        When the config is invalid or the tensors do not match the architecture it declares.
    """
    metadata, tensors = _decode(data, source=source, expected_format=MODEL_FORMAT)
    config = _config_from(metadata, source)
    method = get_substitution(config.substitution)
    state = {name: tensors.pop(name) for name in method.tensor_names if name in tensors}
    state_metadata = metadata.get(SUBSTITUTION_METADATA_KEY, {})
    expected = {
        k.removeprefix("autoencoder."): v
        for k, v in expected_shapes(config).items()
        if k.startswith("autoencoder.")
    }
    problems = tensor_problems(tensors, expected, list_limit=len(expected) + len(tensors))
    problems += method.state_problems(state, state_metadata, config=config)
    _raise_mismatches(problems, source=source)
    return ModelContents(
        config=config,
        autoencoder=tensors,
        substitution=method.from_state(state, state_metadata, config=config, source=source),
        classes=list(metadata["private_classes"]),
        history=list(metadata.get("history", [])),
    )


# -- checkpoints --------------------------------------------------------------------------------
def _flatten_optimizer(name: str, optimizer: torch.optim.Optimizer, out: dict) -> dict:
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            out[f"optim.{name}.{index}.{key}"] = torch.as_tensor(value, dtype=torch.float32)
    return state["param_groups"]


def checkpoint_to_bytes(trainer: AnonymizerTrainer) -> bytes:
    """Everything needed to continue ``trainer`` exactly where it stopped."""
    tensors = {f"nets.{k}": v for k, v in trainer.nets.state_dict().items()}
    groups = {
        name: _flatten_optimizer(name, opt, tensors) for name, opt in trainer.optimizers.items()
    }
    tensors["rng.generator"] = trainer.generator.get_state()
    tensors["prior"] = trainer.prior
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "imgprivacy_version": __version__,
        "config": trainer.config.to_dict(),
        "epoch": trainer.epoch,
        "history": trainer.history.epochs,
        "param_groups": groups,
    }
    return _encode(tensors, metadata)


def save_checkpoint(trainer: AnonymizerTrainer, path: str | os.PathLike) -> Path:
    return write_atomic(Path(path), checkpoint_to_bytes(trainer))


def load_checkpoint(
    path: str | os.PathLike, *, config: AnonymizerConfig | None = None, device: str = "cpu"
) -> AnonymizerTrainer:
    """Rebuild a trainer from a checkpoint.

    ``config`` may change training fields (lambda, phase lengths, learning rates, ...) to continue
    differently, e.g. to branch several lambdas from one pre-trained checkpoint; the architecture
    fields must match. Learning rates of the new config replace the saved ones.

    Raises
    ------
    DataNotFoundError, CorruptFileError, InvalidInputError
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Expected a checkpoint at {path}, but there is none.")
    source = str(path)
    metadata, tensors = _decode(path.read_bytes(), source=source, expected_format=CHECKPOINT_FORMAT)
    saved = _config_from(metadata, source)
    config = config or saved
    if config.architecture() != saved.architecture():
        raise InvalidInputError(
            f"{source} was trained with architecture {saved.architecture()}, which differs from "
            f"{config.architecture()}. Resume with the same sizes or start a new run."
        )
    nets = {k.removeprefix("nets."): v for k, v in tensors.items() if k.startswith("nets.")}
    check_tensors(nets, expected_shapes(config), source=source)
    trainer = AnonymizerTrainer(config, prior=tensors["prior"], device=device)
    trainer.nets.load_state_dict(nets)
    for name, optimizer in trainer.optimizers.items():
        groups = metadata["param_groups"][name]
        fresh = optimizer.state_dict()
        for group, new in zip(groups, fresh["param_groups"]):
            group.update({k: new[k] for k in ("lr", "betas") if k in new})
        state: dict = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(index), {})[field] = value.to(device)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    trainer.generator.set_state(tensors["rng.generator"])
    trainer.epoch = int(metadata["epoch"])
    trainer.history = AdversarialHistory(list(metadata["history"]))
    return trainer
