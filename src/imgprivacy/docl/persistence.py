"""Save and load one-class autoencoders as safetensors with JSON metadata (never pickle).

A file alone rebuilds the model: the safetensors header's metadata holds ``imgprivacy`` = JSON with
the format version, the config, the error statistics, the feature extractor and the input dimension;
a differentially private model adds ``privacy`` (:class:`~imgprivacy.docl.private_budget.PrivacyReport`:
epsilon, delta and the mechanisms' noise). Files without it are non-private models.

The public API is the model's own methods, the style the anonymizer uses too:
``model.save(path)`` / ``OneClassAutoencoder.load(path)`` and ``model.to_bytes()`` /
``OneClassAutoencoder.from_bytes(data)``. This module holds the format they use; the free
functions ``save_autoencoder``, ``load_autoencoder`` and ``autoencoder_to_bytes`` are kept as thin
wrappers of those methods, and ``autoencoder_from_bytes`` is the parser ``from_bytes`` calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save as save_bytes

from imgprivacy import __version__, safetensors_io
from imgprivacy.docl.autoencoder import OneClassAutoencoder
from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.private_budget import PrivacyReport
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.safetensors_io import tensor_problems

FORMAT = "imgprivacy.docl.autoencoder"
FORMAT_VERSION = 1
METADATA_KEY = "imgprivacy"
_EXPECTED = "an imgprivacy autoencoder file"
_HINT = "Save models with save_autoencoder()."


def expected_shapes(config: AutoencoderConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the architecture ``config`` declares."""
    dims = config.layer_dims
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
        shapes[f"layers.{i}.weight"] = (n_out, n_in)
        shapes[f"layers.{i}.bias"] = (n_out,)
    return shapes


def autoencoder_to_bytes(model: OneClassAutoencoder) -> bytes:
    """Serialise a fitted model to safetensors bytes; the same as ``model.to_bytes()``."""
    return model.to_bytes()


def encode(model: OneClassAutoencoder) -> bytes:
    """The safetensors bytes of a fitted model (:meth:`OneClassAutoencoder.to_bytes` checks it is
    fitted, then calls this)."""
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "imgprivacy_version": __version__,
        "config": model.config.to_dict(),
        "error_mean": model.error_mean_,
        "error_std": model.error_std_,
        "feature_extractor": model.config.feature_extractor,
        "input_dim": model.config.input_dim,
    }
    if getattr(model, "privacy_", None) is not None:
        metadata["privacy"] = model.privacy_.to_dict()
    return save_bytes(model.weights(), metadata={METADATA_KEY: json.dumps(metadata)})


def autoencoder_from_bytes(
    data: bytes, *, source: str = "upload", device: str = "cpu"
) -> OneClassAutoencoder:
    """Parse and validate safetensors bytes into a fitted model.

    Every problem found (names, shapes, dtypes, finiteness, statistics) is reported at once.

    Raises
    ------
    CorruptFileError
        When the bytes are not a safetensors file written by imgprivacy.
    InvalidInputError
        When the tensors or statistics do not match the declared architecture.
    """
    tensors, metadata = safetensors_io.read_safetensors(
        data, source=source, expected=_EXPECTED, hint=_HINT
    )
    _check_format(metadata, source)
    try:
        config = AutoencoderConfig.from_dict(_with_format_defaults(metadata["config"]))
    except (InvalidInputError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"{source}: invalid config in metadata: {exc}") from exc
    problems = check_tensors(tensors, config)
    stats = {k: metadata.get(k) for k in ("error_mean", "error_std")}
    for name, value in stats.items():
        if not safetensors_io.finite_number(value) or value <= 0:
            problems.append(f"{name} must be a finite number > 0, got {value!r}")
    privacy = None
    if metadata.get("privacy") is not None:
        try:
            privacy = PrivacyReport.from_dict(metadata["privacy"])
        except InvalidInputError as exc:
            problems += exc.problems
    if problems:
        raise InvalidInputError([f"{source}: {p}" for p in problems])
    return OneClassAutoencoder.from_weights(
        config,
        tensors,
        error_mean=stats["error_mean"],
        error_std=stats["error_std"],
        privacy=privacy,
        device=device,
    )


def _with_format_defaults(values: object) -> object:
    """Config fields that older files lack, at the value those files were trained with (not
    today's default): files written before held-out calibration computed mu and sigma from the
    training images, and before outlier exposure without negatives."""
    if isinstance(values, dict):
        return {"calibration_fraction": 0.0, "negative_weight": 0.0, **values}
    return values


def read_metadata(data: bytes, *, source: str = "upload") -> dict:
    """The imgprivacy metadata of a safetensors blob, or :class:`CorruptFileError`."""
    metadata = safetensors_io.read_metadata(data, source=source, expected=_EXPECTED, hint=_HINT)
    return _check_format(metadata, source)


def _check_format(metadata: dict, source: str) -> dict:
    if metadata.get("format") != FORMAT:
        raise CorruptFileError(f"{source}: expected format {FORMAT!r} in metadata.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(
            f"{source}: format version {metadata.get('format_version')!r} is not supported "
            f"(this imgprivacy reads version {FORMAT_VERSION}); retrain or upgrade imgprivacy."
        )
    return metadata


def check_tensors(tensors: dict[str, torch.Tensor], config: AutoencoderConfig) -> list[str]:
    """Every mismatch between ``tensors`` and the architecture ``config`` declares."""
    return tensor_problems(tensors, expected_shapes(config))


def save_autoencoder(model: OneClassAutoencoder, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; the same as ``model.save(path)``."""
    return model.save(path)


def load_autoencoder(path: str | os.PathLike, *, device: str = "cpu") -> OneClassAutoencoder:
    """Read a model written by :func:`save_autoencoder`; the same as
    ``OneClassAutoencoder.load(path)``."""
    return OneClassAutoencoder.load(path, device=device)
