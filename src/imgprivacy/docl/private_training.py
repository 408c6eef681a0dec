"""Differentially private training of a user's one-class autoencoder (DP-SGD with Opacus).

Everything a DP guard reveals about its owner's images goes through two mechanisms, composed by
one Renyi-DP accountant into the budget ``(epsilon, delta)``:

1. **the weights**: DP-SGD (Abadi et al. 2016). Each step samples images independently with
   probability ``q = batch_size / n`` (Poisson sampling), clips every image's gradient to
   ``max_grad_norm`` and adds Gaussian noise of ``noise_multiplier * max_grad_norm``
   (Opacus' ``GradSampleModule`` and ``DPOptimizer``);
2. **mu and sigma**: the Gaussian mechanism on the training distances clipped to
   ``distance_clip`` (:func:`private_statistics`: a noisy count, sum and sum of absolute
   deviations, each image's contribution of L2 norm at most 1, noise ``statistics_noise``);
   mu and sigma are computed from the noisy sums (post-processing, free).

The statistics' noise is set so that they alone would cost ``statistics_share`` of epsilon; the
DP-SGD noise multiplier is then the smallest whose composition with them stays within epsilon.
The adjacency is add/remove one image. The number of images n is treated as public, as is usual
for DP-SGD (it sets the sample rate); the model file records neither n nor the sample rate.

Score convention as everywhere: distance = squared reconstruction error, lower = closer.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import torch
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
from torch import nn

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.private_budget import PrivacyBudget, PrivacyReport
from imgprivacy.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Renyi orders: mostly integers, where the sampled Gaussian's RDP is a finite sum (fractional
# orders need a slow series); three below 2 for large noise (small epsilon).
RDP_ORDERS = [1.25, 1.5, 1.75, *range(2, 33), 40, 48, 64, 96, 128, 256]
# Weights of (count, sum of clipped distances, sum of absolute deviations) in the statistics'
# release (unit L2 norm): the count needs little precision, n being in the thousands.
_STAT_WEIGHTS = np.array([0.2, 0.7, 0.7]) / np.linalg.norm([0.2, 0.7, 0.7])


def composed_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    statistics_noise: float,
    delta: float,
) -> float:
    """Epsilon of ``steps`` DP-SGD steps plus one Gaussian release of the statistics (RDP)."""
    rdp = np.zeros(len(RDP_ORDERS))
    if steps > 0:
        rdp += compute_rdp(
            q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=RDP_ORDERS
        )
    rdp += compute_rdp(q=1.0, noise_multiplier=statistics_noise, steps=1, orders=RDP_ORDERS)
    with warnings.catch_warnings():
        # The noise search tries extreme noises whose best order is at the end of the range.
        warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
        epsilon, _ = get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=delta)
    return float(epsilon)


def _smallest_noise(epsilon_of, target: float) -> float:
    """The smallest noise multiplier whose epsilon (decreasing in the noise) is <= target."""
    low, high = 0.0, 1.0
    while epsilon_of(high) > target:
        low, high = high, 2 * high
        if high > 1e6:
            raise InvalidInputError(
                f"epsilon {target:g} cannot be reached with this many training steps; use "
                "fewer epochs or a larger epsilon."
            )
    for _ in range(30):  # relative precision ~1e-9
        middle = (low + high) / 2
        if epsilon_of(middle) > target:
            low = middle
        else:
            high = middle
    return high


def plan_noise(
    budget: PrivacyBudget, *, sample_rate: float, steps: int
) -> tuple[float, float, float]:
    """``(noise_multiplier, statistics_noise, epsilon_spent)`` meeting ``budget``."""
    no_sgd = dict(noise_multiplier=1.0, sample_rate=sample_rate, steps=0, delta=budget.delta)
    statistics_noise = _smallest_noise(
        lambda z: composed_epsilon(**no_sgd, statistics_noise=z),
        budget.statistics_share * budget.epsilon,
    )

    def total(z: float) -> float:
        return composed_epsilon(
            noise_multiplier=z,
            sample_rate=sample_rate,
            steps=steps,
            statistics_noise=statistics_noise,
            delta=budget.delta,
        )

    noise = _smallest_noise(total, budget.epsilon)
    return noise, statistics_noise, total(noise)


def fit_private_net(
    net: nn.Module,
    data: torch.Tensor,
    *,
    config: AutoencoderConfig,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: torch.Generator,
    optimizer: str | None = None,
    advance=None,
) -> list[float]:
    """Train ``net`` in place with DP-SGD on ``data`` (K, D); the mean BCE of each epoch.

    Each of the ``ceil(K / batch_size)`` steps of an epoch draws a Poisson sample of expected size
    ``batch_size``; ``generator`` seeds the sampling, the input noise and the DP noise.
    """
    n = len(data)
    sample_rate = min(1.0, config.batch_size / n)
    expected = max(1, round(sample_rate * n))
    # Ghost clipping: per-image gradient norms without materialising per-image gradients (for a
    # linear layer the norm factorises into the input's and the output gradient's norms).
    module = GradSampleModuleFastGradientClipping(
        net, loss_reduction="mean", max_grad_norm=max_grad_norm, use_ghost_clipping=True
    )
    dp_optimizer = DPOptimizerFastGradientClipping(
        _optimizer(module, config, optimizer),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected,
        loss_reduction="mean",
        generator=generator,
    )
    losses = []
    module.train()
    with warnings.catch_warnings():
        # Opacus' hooks warn that the first layer's input needs no gradient, which is expected.
        warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
        for epoch in range(config.epochs):
            losses.append(_dp_epoch(module, dp_optimizer, data, config, sample_rate, generator))
            logger.debug("DP epoch %d/%d loss %.4f", epoch + 1, config.epochs, losses[-1])
            if advance is not None:
                advance(f"loss {losses[-1]:.3f}")
    module.eval()
    module._close()
    return losses


def _dp_epoch(
    module: nn.Module,
    optimizer: DPOptimizerFastGradientClipping,
    data: torch.Tensor,
    config: AutoencoderConfig,
    sample_rate: float,
    generator: torch.Generator,
) -> float:
    """One epoch of ``ceil(1 / sample_rate)`` DP-SGD steps; the mean BCE per image seen.

    An empty Poisson sample (frequent when the expected batch is a few images) still takes a
    step of pure noise, without a forward pass: ghost clipping counts the forward passes of each
    layer and refuses a second one before a backward pass (it reads that as tied parameters).
    """
    n = len(data)
    total, seen = 0.0, 0
    for _ in range(math.ceil(1 / sample_rate)):
        rows = torch.rand(n, generator=generator) < sample_rate
        batch = data[rows.to(data.device)]
        optimizer.zero_grad(set_to_none=True)
        if len(batch):
            inputs = batch
            if config.input_noise > 0:
                noise = torch.randn(batch.shape, generator=generator).to(data.device)
                inputs = (batch + config.input_noise * noise).clamp(0.0, 1.0)
            per_image = nn.functional.binary_cross_entropy_with_logits(
                module(inputs), batch, reduction="none"
            ).sum(dim=1)
            DPTensorFastGradientClipping(module, optimizer, per_image, "mean").backward()
            total += float(per_image.detach().sum())
        else:
            for p in module.parameters():
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)
        optimizer.step()
        seen += len(batch)
    return total / max(seen, 1)


def private_statistics(
    distances: torch.Tensor, *, clip: float, noise: float, generator: torch.Generator
) -> tuple[float, float]:
    """``(mu, sigma)`` of ``distances`` (K,) by the Gaussian mechanism on clipped distances.

    Two adaptive releases, each image contributing at most 1 in L2 norm over both: first the
    count and the sum of the clipped distances ``c`` (giving mu), then the sum of ``|c - mu|``
    (the mean absolute deviation; sigma = MAD * sqrt(pi / 2), exact for a normal distribution).
    The deviation needs sensitivity C where a sum of squares would need C^2, so its noise is a
    far smaller part of sigma. Together they are one Gaussian mechanism of noise multiplier
    ``noise`` (Renyi DP composes adaptive Gaussian releases by their squared sensitivities).
    """
    c = distances.to(torch.float64).clamp(0.0, clip) / clip
    w_count, w_sum, w_dev = _STAT_WEIGHTS
    gauss = lambda k: noise * torch.randn(k, generator=generator, dtype=torch.float64)  # noqa: E731
    first = torch.stack([w_count * len(c) * torch.ones((), dtype=torch.float64), w_sum * c.sum()])
    first = first + gauss(2)
    count = max(float(first[0] / w_count), 2.0)
    floor = 1e-3  # sigma / mu must stay above float rounding for the service to accept the model
    mean = min(max(float(first[1] / w_sum) / count, floor), 1.0)
    deviation = float(w_dev * (c - mean).abs().sum() + gauss(1)[0]) / w_dev / count
    sigma = max(deviation * math.sqrt(math.pi / 2), floor * mean)
    return mean * clip, sigma * clip


# Fewest expected DP-SGD steps per pass over the images (caps the batch of small data sets), but
# the cap never goes below MIN_DP_BATCH: the noise of a step does not shrink with its batch, so
# steps of a few images are mostly noise. A batch size asked for explicitly is kept even below it.
MIN_DP_STEPS_PER_EPOCH = 10
MIN_DP_BATCH = 16


def dp_config(config: AutoencoderConfig, budget: PrivacyBudget, *, n: int) -> AutoencoderConfig:
    """``config`` with the budget's own DP-SGD settings (batch size, epochs, learning rate).

    The batch is capped at ``n / MIN_DP_STEPS_PER_EPOCH`` (but not below ``MIN_DP_BATCH``) so that an owner with few images (a
    few hundred, against the thousands the defaults were chosen on) still gets that many noisy
    steps per pass instead of a handful of full-batch ones."""
    changes = {
        name: getattr(budget, name)
        for name in ("batch_size", "epochs", "learning_rate")
        if getattr(budget, name) is not None
    }
    batch = changes.get("batch_size", config.batch_size)
    cap = max(MIN_DP_BATCH, math.ceil(n / MIN_DP_STEPS_PER_EPOCH))
    changes["batch_size"] = min(batch, cap)
    return config.replace(**changes)


def freeze_public_layers(net: nn.Module, budget: PrivacyBudget, config: AutoencoderConfig):
    """Copy ``budget.public_layers`` of ``budget.public_model`` into ``net`` and freeze them.

    Raises
    ------
    InvalidInputError
        When the public model's architecture or features differ from ``config``'s, or a layer
        index is beyond the network.
    """
    from imgprivacy.docl.autoencoder import OneClassAutoencoder

    public = OneClassAutoencoder.load(budget.public_model)
    theirs, ours = public.config, config
    if theirs.layer_dims != ours.layer_dims or theirs.feature_extractor != ours.feature_extractor:
        raise InvalidInputError(
            f"The public model {budget.public_model} has layers {theirs.layer_dims} on "
            f"{theirs.feature_extractor!r} features, but the guard being trained has "
            f"{ours.layer_dims} on {ours.feature_extractor!r}: train the public model with the "
            "same config (on public images only)."
        )
    layers = net.layers
    beyond = [i for i in budget.public_layers if i >= len(layers)]
    if beyond:
        raise InvalidInputError(
            f"public_layers {list(beyond)} are beyond the network's {len(layers)} layers "
            f"(indices 0 to {len(layers) - 1})."
        )
    weights = public.weights()
    with torch.no_grad():
        for i in budget.public_layers:
            for name in ("weight", "bias"):
                parameter = getattr(layers[i], name)
                parameter.copy_(weights[f"layers.{i}.{name}"])
                parameter.requires_grad_(False)


def train_private(
    net: nn.Module,
    x: torch.Tensor,
    *,
    config: AutoencoderConfig,
    budget: PrivacyBudget,
    advance=None,
    calibration: torch.Tensor | None = None,
) -> tuple[list[float], float, float, PrivacyReport]:
    """DP-SGD on ``x`` (K, D) then the private statistics: ``(losses, mu, sigma, report)``.

    The statistics are those of the distances of ``calibration`` (held-out images of the same
    owner, ``config.calibration_fraction``) when given, else of ``x``. Either way they go through
    the same Gaussian mechanism and the same accounting (conservative for held-out rows, which
    DP-SGD never sees). ``config`` is the guard's; the budget's DP settings override its batch
    size, epochs and learning rate for the DP-SGD run (:func:`dp_config`).
    """
    n = len(x)
    if budget.delta >= 1 / n:
        logger.warning(
            "delta %.3g is not below 1/n = %.3g: a guarantee this weak allows releasing an image "
            "outright; pass a smaller delta",
            budget.delta,
            1 / n,
        )
    config = dp_config(config, budget, n=n)
    frozen: tuple[int, ...] = ()
    if budget.public_model is not None:
        freeze_public_layers(net, budget, config)
        frozen = tuple(sorted(set(budget.public_layers)))
    sample_rate = min(1.0, config.batch_size / n)
    steps = config.epochs * math.ceil(1 / sample_rate)
    noise, statistics_noise, spent = plan_noise(budget, sample_rate=sample_rate, steps=steps)
    logger.info(
        "DP-SGD: epsilon %.3g delta %.3g -> noise multiplier %.3f over %d steps",
        budget.epsilon,
        budget.delta,
        noise,
        steps,
    )
    generator = torch.Generator().manual_seed(config.seed)
    losses = fit_private_net(
        net,
        x,
        config=config,
        noise_multiplier=noise,
        max_grad_norm=budget.max_grad_norm,
        generator=generator,
        optimizer=budget.optimizer,
        advance=advance,
    )
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    clip = budget.distance_clip or config.input_dim / 8
    rows = x if calibration is None else calibration
    with torch.inference_mode():
        distances = (rows - torch.sigmoid(net(rows))).square().sum(dim=1).cpu()
    mu, sigma = private_statistics(
        distances, clip=clip, noise=statistics_noise, generator=generator
    )
    report = PrivacyReport(
        mechanism="dp-sgd+gaussian-statistics",
        accountant="rdp",
        epsilon=float(budget.epsilon),
        epsilon_spent=spent,
        delta=float(budget.delta),
        noise_multiplier=noise,
        max_grad_norm=float(budget.max_grad_norm),
        statistics_noise=statistics_noise,
        distance_clip=float(clip),
        steps=steps,
        batch_size=config.batch_size,
        frozen_layers=frozen,
    )
    return losses, mu, sigma, report


def _optimizer(
    module: nn.Module, config: AutoencoderConfig, name: str | None = None
) -> torch.optim.Optimizer:
    from imgprivacy.docl.autoencoder import OPTIMIZERS

    params = [p for p in module.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay
        )
    return OPTIMIZERS[name or config.optimizer](
        params, lr=config.learning_rate, weight_decay=config.weight_decay
    )
