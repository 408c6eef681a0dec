"""Admission of an uploaded model: its format, its cost and its behaviour, before anything is stored.

Checked in order, every problem of a step reported at once (a 4xx; storage untouched):

1. size: the body is at most ``max_upload_bytes`` (413 ``upload too large``);
2. cost, from the embedded config alone, before any tensor is read (422
   ``model does not match this service``): at most ``max_model_layers`` linear layers, no layer
   but the input and output wider than ``max_layer_width``, at most ``max_model_flops``
   multiply-adds per image;
3. format: a safetensors file with imgprivacy metadata of a supported version
   (422 ``invalid model file``);
4. architecture: tensor names, shapes and dtype float32 as the embedded config declares; every
   value finite; mu and sigma finite and > 0 (422 ``invalid model file``);
5. fit with this service: the model's feature extractor is the service's, its input dimension
   is the extractor's D, 1 <= M <= ``max_hidden_dim`` and M < D (the paper's bottleneck), mu and
   sigma at most D, the largest squared distance of features in [0, 1]
   (422 ``model does not match this service``);
6. behaviour: the model's distance is finite on every probe image and on random inputs (finite
   weights can still overflow: a huge bias times a huge weight is inf, and 0 * inf is NaN)
   (422 ``model gives non-finite distances``);
7. statistics: mu and sigma agree with the distances the model itself gives the probe images:
   ``mu + a*sigma`` is not ``statistics_gap`` times below the 1st percentile of those distances
   (statistics claiming reconstructions far better than anything the model achieves: a "shadow"
   model, nearest to everything, whose interval holds nothing), and sigma is not
   ``statistics_gap`` times below the spread of the model's distances on its nearest 5% of probe
   images (422 ``model statistics do not match its distances``);
8. claims: the model claims at most ``probe_max_claim`` of EACH probe source (digits, clothes,
   noise; 422 ``model claims public probe images``; see :mod:`imgprivacy.service.probe`).

Admission also measures the model's breadth (the share of the probe digits it claims at the
Guard's alpha, :mod:`imgprivacy.service.breadth`), stored with it for the Guard's breadth gate.

Steps 6-8 need the probe set and are skipped without one (``probe_count`` 0), except the
finiteness check on random inputs. Their refusals are :class:`BehaviourRefused`, which carries
the parsed upload: with ``quarantine_refused`` the service keeps it for the admin's review
(:mod:`imgprivacy.service.quarantine`).
"""

from __future__ import annotations

import hashlib
import math

import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_from_bytes
from imgprivacy.docl.defaults import EDGE_NEGATIVE_WEIGHT
from imgprivacy.docl.persistence import read_metadata
from imgprivacy.errors import CorruptFileError, InvalidInputError
from imgprivacy.service.breadth import measured_breadth
from imgprivacy.service.errors import PayloadTooLarge, Unprocessable
from imgprivacy.service.probe import ProbeSet, probe_claims
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.storage import NewModel

NEAREST_FRACTION = 0.05  # the model's nearest probe images whose spread sigma is compared with
FLOOR_QUANTILE = 0.01  # the probe distance that mu + a*sigma is compared with


class BehaviourRefused(Unprocessable):
    """A refusal at steps 6-8 (behaviour): the model parsed, so it can be kept for review."""

    def __init__(self, problems: list[str], *, detail: str, new: NewModel):
        super().__init__(problems, detail=detail)
        self.new = new


def check_size(size: int, *, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"Expected a model file of at most {limit} bytes, got {size} bytes. "
            "Use a smaller representation layer (hidden_dim)."
        )


def model_flops(config: AutoencoderConfig) -> int:
    """Multiply-adds the model spends on one image (the linear layers; activations are free)."""
    dims = config.layer_dims
    return sum(n_in * n_out for n_in, n_out in zip(dims[:-1], dims[1:]))


def cost_problems(
    config: AutoencoderConfig, *, max_layers: int, max_layer_width: int, max_flops: int
) -> list[str]:
    """Step 2: what makes the model too expensive to score on every check."""
    problems = []
    layers = len(config.layer_dims) - 1
    if layers > max_layers:
        problems.append(
            f"the model has {layers} linear layers, at most {max_layers} allowed; use fewer "
            "layer_widths"
        )
    inner = config.layer_dims[1:-1]
    if inner and max(inner) > max_layer_width:
        problems.append(
            f"the model's widest hidden layer has {max(inner)} units, at most {max_layer_width} "
            "allowed; use narrower layer_widths"
        )
    flops = model_flops(config)
    if flops > max_flops:
        problems.append(
            f"the model costs {flops} multiply-adds per image, at most {max_flops} allowed; use "
            "fewer or narrower layers"
        )
    return problems


def declared_config(data: bytes) -> AutoencoderConfig | None:
    """The config the upload declares, or None when it has none readable (step 3 says why)."""
    try:
        return AutoencoderConfig.from_dict(read_metadata(data)["config"])
    except (CorruptFileError, InvalidInputError, KeyError, TypeError):
        return None


def parse_model(data: bytes) -> OneClassAutoencoder:
    """Steps 3-4: the model in ``data``, or 422 ``invalid model file`` listing every problem."""
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
    """Step 5: everything that makes a valid model unusable by this service."""
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


def finiteness_problems(distances: torch.Tensor, *, what: str) -> list[str]:
    """Step 6: one problem when any of ``distances`` is NaN or infinite."""
    bad = ~torch.isfinite(distances)
    if not bool(bad.any()):
        return []
    return [
        f"the model's distance is NaN or infinite on {int(bad.sum())} of {len(distances)} "
        f"{what}, although its weights are finite (a hidden layer overflows float32); "
        "retrain it: an honest model gives a finite distance to every input in [0, 1]"
    ]


def statistics_problems(
    model: OneClassAutoencoder, distances: torch.Tensor, *, alpha: float, gap: float
) -> list[str]:
    """Step 7: mu and sigma against the model's own (finite) distances on the probe images."""
    if len(distances) == 0:
        return []
    distances = distances.to(torch.float64).sort().values
    mu, sigma = model.error_mean_, model.error_std_
    problems = []
    floor = float(torch.quantile(distances, FLOOR_QUANTILE))
    if mu + alpha * sigma < floor / gap:
        problems.append(
            f"mu + {alpha:g} sigma is {mu + alpha * sigma:.4g}, but the model's own distances to "
            f"the service's probe images start at {floor:.4g} (1st percentile): statistics more "
            f"than {gap:g} times below anything the model reconstructs are not its training "
            "images' statistics; upload the error_mean and error_std that fit() computed"
        )
    nearest = distances[: max(5, math.ceil(NEAREST_FRACTION * len(distances)))]
    spread = float(nearest.std()) if len(nearest) > 1 else 0.0
    if sigma < spread / gap:
        problems.append(
            f"sigma is {sigma:.4g}, but the model's distances to its nearest probe images alone "
            f"spread by {spread:.4g} (standard deviation): a sigma more than {gap:g} times "
            "smaller is not what the model produces; upload the error_std that fit() computed"
        )
    return problems


def validate_upload(
    data: bytes, *, settings: ServiceSettings, input_dim: int, probes: ProbeSet
) -> tuple[OneClassAutoencoder, NewModel]:
    """Run steps 1-8 with the limits in ``settings``; return the parsed model and what to store."""
    check_size(len(data), limit=settings.max_upload_bytes)
    config = declared_config(data)
    if config is not None:
        problems = cost_problems(
            config,
            max_layers=settings.max_model_layers,
            max_layer_width=settings.max_layer_width,
            max_flops=settings.max_model_flops,
        )
        if problems:
            raise Unprocessable(problems, detail="model does not match this service")
    model = parse_model(data)
    problems = service_fit_problems(
        model,
        feature_extractor=settings.feature_extractor,
        input_dim=input_dim,
        max_hidden_dim=settings.max_hidden_dim,
    )
    if problems:
        raise Unprocessable(problems, detail="model does not match this service")
    alpha = max(settings.probe_alpha, settings.alpha)
    probe_distances = model.distances(probes.features) if len(probes) else torch.empty(0)
    claims = probe_claims(model, probes, alpha=alpha, distances=probe_distances)
    new = NewModel(
        blob=data,
        sha256=hashlib.sha256(data).hexdigest(),
        hidden_dim=model.config.hidden_dim,
        error_mean=float(model.error_mean_),
        error_std=float(model.error_std_),
        probe_claim=max(claims.values(), default=0.0),
        **measured_breadth(model, probes, alpha=settings.alpha, distances=probe_distances),
    )
    problems = finiteness_problems(probe_distances, what="probe images")
    problems += finiteness_problems(model.distances(probes.random_inputs), what="random inputs")
    if problems:
        raise BehaviourRefused(problems, detail="model gives non-finite distances", new=new)
    problems = statistics_problems(
        model,
        probe_distances[probes.from_images],
        alpha=alpha,
        gap=settings.statistics_gap,
    )
    if problems:
        raise BehaviourRefused(
            problems, detail="model statistics do not match its distances", new=new
        )
    over = {name: claim for name, claim in claims.items() if claim > settings.probe_max_claim}
    if over:
        hint = ""
        # only where a device trains with the set by default, and never for a DP model (DP
        # training does not support it)
        trains_with_set = EDGE_NEGATIVE_WEIGHT.get(model.config.feature_extractor, 0.0) > 0
        if model.config.negative_weight == 0 and trains_with_set and model.privacy_ is None:
            hint = (
                " It was trained without the public negative set; guards trained against it "
                "claim fewer probe images: train it with the public negative set (`imgprivacy "
                "guard train` does by default; leave out --negative-weight 0)."
            )
        raise BehaviourRefused(
            [
                f"The model claims {claim:.1%} of the service's {name} probe images (at most "
                f"{settings.probe_max_claim:.0%} of any one source allowed): its privacy interval "
                f"[mu - {alpha:g} sigma, mu + {alpha:g} sigma] or its reconstructions cover images "
                "that are not yours. Train only on your own private images and upload the "
                f"statistics fit() computed.{hint}"
                for name, claim in over.items()
            ],
            detail="model claims public probe images",
            new=new,
        )
    return model, new
