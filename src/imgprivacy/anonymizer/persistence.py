"""Anonymizer files: safetensors tensors plus JSON metadata in the header (never pickle).

Every kind of file is told apart by the metadata's ``format`` (one :class:`ModelFileFormat` each,
all listed in :data:`FILE_FORMATS`) and written and read by the same two functions,
:func:`save_model_file` and :func:`load_model_file` (:func:`model_file_bytes` /
:func:`read_model_bytes` for bytes):

* a **model** (``imgprivacy.anonymizer.model``): the autoencoder's weights, the fitted
  substitution's tensors (under their own names, e.g. ``prototypes``), the config, the private
  classes and the training history - all that :meth:`Anonymizer.load` needs to anonymize images;
* a **checkpoint** (``imgprivacy.anonymizer.checkpoint``): the three networks, the four optimisers'
  states, the shuffling RNG, the finished epochs and the history - all that resuming needs;
* the code-match, identity-swap and warp-game models
  (:class:`~imgprivacy.anonymizer.code_match.CodeMatchAnonymizer`,
  :class:`~imgprivacy.anonymizer.swap_model.SwapAnonymizer`,
  :class:`~imgprivacy.anonymizer.warp_model.WarpAnonymizer`).

Files are written atomically (temporary file, then rename), so an interruption leaves the previous
file intact. A file of another kind is refused with a message naming what it is and what reads it.
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

FORMAT_VERSION = 1
SUBSTITUTION_METADATA_KEY = "substitution_state"  # written only when the method has metadata


@dataclass(frozen=True)
class ModelFileFormat:
    """One kind of anonymizer file, as its metadata names it and as messages describe it."""

    name: str  # the metadata's "format" value
    what: str  # how messages call such a file ("an imgprivacy code-match model")
    reader: str  # what reads it, named when another reader is given such a file
    origin: str  # where good files come from, appended to a wrong-format message
    version: int = FORMAT_VERSION  # the metadata's "format_version" this imgprivacy reads


_ANONYMIZER_ORIGIN = (
    "Models come from `imgprivacy anonymize train` or Anonymizer.save(); checkpoints from "
    "training with checkpoint=PATH."
)
MODEL_FILE = ModelFileFormat(
    name="imgprivacy.anonymizer.model",
    what="an imgprivacy anonymizer file",
    reader="Anonymizer.load",
    origin=_ANONYMIZER_ORIGIN,
)
CHECKPOINT_FILE = ModelFileFormat(
    name="imgprivacy.anonymizer.checkpoint",
    what="an imgprivacy anonymizer checkpoint",
    reader="Anonymizer.fit(..., checkpoint=PATH, resume=True)",
    origin=_ANONYMIZER_ORIGIN,
)
CODE_MATCH_FILE = ModelFileFormat(
    name="imgprivacy.anonymizer.code_match_model",
    what="an imgprivacy code-match model",
    reader="CodeMatchAnonymizer.load",
    origin="Code-match models come from CodeMatchAnonymizer.save().",
)
SWAP_FILE = ModelFileFormat(
    name="imgprivacy.anonymizer.swap_model",
    what="an imgprivacy identity-swap model",
    reader="SwapAnonymizer.load",
    origin="Identity-swap models come from SwapAnonymizer.save().",
)
WARP_FILE = ModelFileFormat(
    name="imgprivacy-warp-anonymizer",
    what="an imgprivacy warp anonymizer file",
    reader="WarpAnonymizer.load",
    origin="Warp anonymizer files come from WarpAnonymizer.save().",
)
FILE_FORMATS = {
    f.name: f for f in (MODEL_FILE, CHECKPOINT_FILE, CODE_MATCH_FILE, SWAP_FILE, WARP_FILE)
}
MODEL_FORMAT = MODEL_FILE.name
CHECKPOINT_FORMAT = CHECKPOINT_FILE.name


def model_file_bytes(
    *, format: ModelFileFormat, tensors: dict[str, torch.Tensor], metadata: dict
) -> bytes:
    """The bytes of a file of ``format``: ``tensors`` and, after the format fields, ``metadata``."""
    header = {
        "format": format.name,
        "format_version": format.version,
        "imgprivacy_version": __version__,
        **metadata,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return save_bytes(tensors, metadata={METADATA_KEY: json.dumps(header)})


def save_model_file(
    path: str | os.PathLike,
    *,
    format: ModelFileFormat,
    tensors: dict[str, torch.Tensor],
    metadata: dict,
) -> Path:
    """Write a file of ``format`` atomically (see :func:`model_file_bytes`); returns its path."""
    return write_atomic(
        Path(path), model_file_bytes(format=format, tensors=tensors, metadata=metadata)
    )


def read_model_bytes(
    data: bytes, *, format: ModelFileFormat, source: str
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a file of ``format``; the tensors are not checked yet.

    Raises
    ------
    CorruptFileError
        When the bytes are not such a file: unreadable, of another format (named, with what
        reads it) or of an unsupported format version.
    """
    tensors, metadata = read_safetensors(data, source=source, expected=format.what)
    found = metadata.get("format")
    if found != format.name:
        other = FILE_FORMATS.get(found) if isinstance(found, str) else None
        described = f" ({other.what}; read it with {other.reader})" if other else ""
        raise CorruptFileError(
            f"{source}: expected a file of format {format.name!r}, got {found!r}{described}. "
            f"{format.origin}"
        )
    if metadata.get("format_version") != format.version:
        raise CorruptFileError(
            f"{source}: format version {metadata.get('format_version')!r} is not supported "
            f"(this imgprivacy reads version {format.version}); retrain or upgrade imgprivacy."
        )
    return tensors, metadata


def load_model_file(
    path: str | os.PathLike, *, format: ModelFileFormat
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of the file of ``format`` at ``path`` (see :func:`read_model_bytes`).

    Raises
    ------
    DataNotFoundError
        When there is no file at ``path``.
    CorruptFileError
        As :func:`read_model_bytes`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Expected {format.what} at {path}, but there is none.")
    return read_model_bytes(path.read_bytes(), format=format, source=str(path))


def config_from_metadata(config_type, metadata: dict, *, source: str):
    """``config_type.from_dict`` of the metadata's config, or a :class:`CorruptFileError`."""
    try:
        return config_type.from_dict(dict(metadata["config"]))
    except (InvalidInputError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{source}: invalid config in metadata: {exc}") from exc


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


def model_file_contents(
    *,
    config: AnonymizerConfig,
    autoencoder: dict[str, torch.Tensor],
    substitution: SubstitutionMethod,
    classes: list,
    history: list,
) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a trained anonymizer's model file (see :data:`MODEL_FILE`)."""
    state, state_metadata = substitution.state()
    clashes = sorted(set(state) & set(autoencoder))
    if clashes:
        raise InvalidInputError(
            f"Expected substitution tensor names distinct from the autoencoder's, got {clashes}."
        )
    metadata = {"config": config.to_dict(), "private_classes": list(classes), "history": history}
    if state_metadata:
        metadata[SUBSTITUTION_METADATA_KEY] = state_metadata
    return {**autoencoder, **state}, metadata


def model_to_bytes(**contents) -> bytes:
    """Serialise a trained anonymizer; keywords as :func:`model_file_contents`."""
    tensors, metadata = model_file_contents(**contents)
    return model_file_bytes(format=MODEL_FILE, tensors=tensors, metadata=metadata)


def model_from_bytes(data: bytes, *, source: str = "model") -> ModelContents:
    """The validated contents of a model file (see :func:`model_contents`).

    Raises
    ------
    CorruptFileError
        When the bytes are not an anonymizer model file.
    InvalidInputError
        When the config is invalid or the tensors do not match the architecture it declares.
    """
    tensors, metadata = read_model_bytes(data, format=MODEL_FILE, source=source)
    return model_contents(tensors, metadata, source=source)


def model_contents(
    tensors: dict[str, torch.Tensor], metadata: dict, *, source: str
) -> ModelContents:
    """Check a model file's tensors against its config; every mismatch is reported at once.

    Raises
    ------
    InvalidInputError
        When the config is invalid or the tensors do not match the architecture it declares.
    """
    config = _config_from(metadata, source)
    method = get_substitution(config.substitution)
    tensors = dict(tensors)
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


def _checkpoint_contents(trainer: AnonymizerTrainer) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {f"nets.{k}": v for k, v in trainer.nets.state_dict().items()}
    groups = {
        name: _flatten_optimizer(name, opt, tensors) for name, opt in trainer.optimizers.items()
    }
    tensors["rng.generator"] = trainer.generator.get_state()
    tensors["prior"] = trainer.prior
    metadata = {
        "config": trainer.config.to_dict(),
        "epoch": trainer.epoch,
        "history": trainer.history.epochs,
        "param_groups": groups,
    }
    return tensors, metadata


def checkpoint_to_bytes(trainer: AnonymizerTrainer) -> bytes:
    """Everything needed to continue ``trainer`` exactly where it stopped."""
    tensors, metadata = _checkpoint_contents(trainer)
    return model_file_bytes(format=CHECKPOINT_FILE, tensors=tensors, metadata=metadata)


def save_checkpoint(trainer: AnonymizerTrainer, path: str | os.PathLike) -> Path:
    tensors, metadata = _checkpoint_contents(trainer)
    return save_model_file(path, format=CHECKPOINT_FILE, tensors=tensors, metadata=metadata)


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
    source = str(path)
    tensors, metadata = load_model_file(path, format=CHECKPOINT_FILE)
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
