"""Validation of an uploaded model before anything is stored.

Checked, in order, and every problem of a step reported at once (a 4xx; storage untouched):

1. size: the body is at most ``max_upload_bytes`` (413 ``upload too large``);
2. format: a safetensors file with imgprivacy metadata of a supported version
   (422 ``invalid model file``);
3. architecture: tensor names, shapes (D -> M -> D) and dtype float32 as the embedded config
   declares; every value finite; mu and sigma finite and > 0 (422 ``invalid model file``);
4. fit with this service: the model's feature extractor is the service's, its input dimension
   is the extractor's D, 1 <= M <= ``max_hidden_dim`` and M < D (the paper's bottleneck), mu and
   sigma plausible: at most D, the largest squared distance of features in [0, 1]
   (422 ``model does not match this service``);
5. probe: the model claims at most ``probe_max_claim`` of the public probe set
   (422 ``model claims public probe images``; see :mod:`imgprivacy.service.probe`).
"""

from __future__ import annotations

import hashlib

import torch

from imgprivacy.docl import OneClassAutoencoder, autoencoder_from_bytes
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.service.errors import PayloadTooLarge, Unprocessable
from imgprivacy.service.probe import probe_claim
from imgprivacy.service.storage import NewModel


def check_size(size: int, *, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"Expected a model file of at most {limit} bytes, got {size} bytes. "
            "Use a smaller representation layer (hidden_dim)."
        )


def parse_model(data: bytes) -> OneClassAutoencoder:
    """Steps 2-3: the model in ``data``, or 422 ``invalid model file`` listing every problem."""
    if not data:
        raise Unprocessable(
            "The request body is empty; send the .safetensors file.", detail="invalid model file"
        )
    try:
        return autoencoder_from_bytes(data, source="upload")
    except InvalidInputError as exc:
        raise Unprocessable(exc.problems, detail="invalid model file") from exc
    except CorruptFileError as exc:
        raise Unprocessable(str(exc), detail="invalid model file") from exc


def service_fit_problems(
    model: OneClassAutoencoder, *, feature_extractor: str, input_dim: int, max_hidden_dim: int
) -> list[str]:
    """Step 4: everything that makes a valid model unusable by this service."""
    cfg = model.config
    problems = []
    if cfg.feature_extractor != feature_extractor:
        problems.append(
            f"the model was trained on {cfg.feature_extractor!r} features, this service uses "
            f"{feature_extractor!r}; retrain with --features {feature_extractor}"
        )
    if cfg.input_dim != input_dim:
        problems.append(
            f"input_dim is {cfg.input_dim}, this service's features have D = {input_dim}"
        )
    if not 1 <= cfg.hidden_dim <= max_hidden_dim or cfg.hidden_dim >= input_dim:
        problems.append(
            f"hidden_dim is {cfg.hidden_dim}, expected 1 <= M <= {max_hidden_dim} and M < D = {input_dim}"
        )
    for name, value in (
        ("error_mean (mu)", model.error_mean_),
        ("error_std (sigma)", model.error_std_),
    ):
        if value > input_dim:
            problems.append(
                f"{name} is {value:.4g}, above {input_dim}, the largest possible squared distance "
                "of features in [0, 1]; recompute the statistics on your training images"
            )
    return problems


def validate_upload(
    data: bytes,
    *,
    max_bytes: int,
    feature_extractor: str,
    input_dim: int,
    max_hidden_dim: int,
    probes: torch.Tensor,
    probe_alpha: float,
    probe_max_claim: float,
) -> tuple[OneClassAutoencoder, NewModel]:
    """Run steps 1-5 and return the parsed model and what to store."""
    check_size(len(data), limit=max_bytes)
    model = parse_model(data)
    problems = service_fit_problems(
        model,
        feature_extractor=feature_extractor,
        input_dim=input_dim,
        max_hidden_dim=max_hidden_dim,
    )
    if problems:
        raise Unprocessable(problems, detail="model does not match this service")
    claim = probe_claim(model, probes, alpha=probe_alpha)
    if claim > probe_max_claim:
        raise Unprocessable(
            f"The model claims {claim:.1%} of the service's public probe images (at most "
            f"{probe_max_claim:.0%} allowed): its privacy interval [mu - {probe_alpha:g} sigma, "
            f"mu + {probe_alpha:g} sigma] or its reconstructions cover images that are not "
            "yours. Train only on your own private images and upload the statistics fit() computed.",
            detail="model claims public probe images",
        )
    new = NewModel(
        blob=data,
        sha256=hashlib.sha256(data).hexdigest(),
        hidden_dim=model.config.hidden_dim,
        error_mean=float(model.error_mean_),
        error_std=float(model.error_std_),
        probe_claim=claim,
    )
    return model, new
