"""What a guard's weights reveal about its owner's images: a reconstruction and membership audit.

Whoever holds a guard file (the service operator, anyone with the database) can attempt two
attacks with the weights alone; this module runs both and measures them against the owner's
images.

**Decoder inversion.** Starting from ``restarts`` batches of random codes, the codes are optimised
(Adam, codes kept >= 0 as the encoder's ReLU makes them) so that the decoder's output is
reconstructed by the whole model as well as possible, i.e. its distance is low; an output below
mu is one the Guard would take for the owner's own image. The outputs are then fed through the
model ``iterations`` times (x <- AE(x)): training images that an autoencoder memorised are
attractors of that map (Radhakrishnan et al., 2018), so iterating pulls the outputs onto them.
Both the optimised and the iterated images are the recovered images, each compared with the
owner's training images: its SSIM and pixel correlation with the nearest one.

A training image has a **near-copy** when some recovered image has an SSIM with it of at least
``near_copy_ssim`` (0.9 by default). The threshold is calibrated on the data it is compared with:
it is raised to the 99th percentile of the SSIM between a training image and its nearest *other*
training image, so a near-copy is closer to a training image than almost any of the owner's own
distinct images are to each other (a generic digit does not count, a copy does).

**Membership inference.** Training images are reconstructed better than unseen images of the same
kind; the ROC-AUC of ``-distance`` separating the owner's training images (members) from their
held-out images (non-members) is 0.5 when the weights reveal nothing about membership.

Only models on image features (``pixels``, ``pixels-smooth``) can be audited: SSIM compares images.
Score convention as everywhere: distance = squared reconstruction error, lower = closer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from imgprivacy.docl.autoencoder import OneClassAutoencoder, squared_distances
from imgprivacy.docl.validation import as_feature_matrix
from imgprivacy.errors import InvalidInputError

logger = logging.getLogger(__name__)

IMAGE_FEATURES = {"pixels": (28, 28), "pixels-smooth": (28, 28)}  # extractor -> (H, W), grey
SSIM_WINDOW = 7  # side of the uniform SSIM window (scikit-image's default)
CANDIDATES = 16  # training images nearest in L2 to a recovered image that SSIM is computed with


@dataclass(frozen=True)
class AuditSettings:
    """How hard the auditor tries."""

    restarts: int = 8  # independent batches of random starting codes
    codes_per_restart: int = 64  # codes optimised together in one batch
    steps: int = 300  # Adam steps on the codes
    iterations: int = 100  # then x <- AE(x) this many times (memorised images attract)
    learning_rate: float = 0.05  # Adam's step size on the codes
    near_copy_ssim: float = 0.9  # SSIM that makes a near-copy (raised by the calibration)
    calibration_images: int = 500  # training images used to calibrate the near-copy threshold
    seed: int = 0  # seeds the starting codes

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be a positive integer, got {getattr(self, name)!r}"
            for name in ("restarts", "codes_per_restart", "steps", "calibration_images")
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1
        ]
        if not isinstance(self.iterations, int) or self.iterations < 0:
            problems.append(f"iterations must be an integer >= 0, got {self.iterations!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 < self.near_copy_ssim <= 1:
            problems.append(f"near_copy_ssim must be in (0, 1], got {self.near_copy_ssim!r}")
        if problems:
            raise InvalidInputError([f"Invalid AuditSettings: {p}" for p in problems])


@dataclass(frozen=True)
class AuditResult:
    """One guard's audit. SSIM and correlation lie in [-1, 1]; fractions and AUC in [0, 1]."""

    recovered: int  # images the attack produced (2 * restarts * codes_per_restart)
    below_mu: int  # of them, reconstructed by the model with distance below mu
    best_ssim: float  # highest SSIM of a recovered image with its nearest training image
    best_correlation: float  # highest pixel correlation of a recovered image with a training image
    mean_ssim: float  # mean over recovered images of the SSIM with their nearest training image
    near_copy_threshold: float  # the SSIM a near-copy needs (after calibration)
    near_copy_fraction: float  # training images with a near-copy among the recovered images
    training_images: int
    membership_auc: float | None  # None without held-out images
    held_out_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = SSIM_WINDOW) -> torch.Tensor:
    """Mean structural similarity of image pairs ``a[i]``, ``b[i]`` of shape (N, H, W) in [0, 1].

    Wang et al. (2004) with a uniform ``window`` x ``window`` window over the valid region, the
    sample covariance and data range 1, as scikit-image's ``structural_similarity`` computes it.

    >>> x = torch.rand(2, 16, 16)
    >>> ssim(x, x).tolist()
    [1.0, 1.0]
    """
    a = a.to(torch.float64).unsqueeze(1)
    b = b.to(torch.float64).unsqueeze(1)
    c1, c2 = 0.01**2, 0.03**2
    n = window * window
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=1)

    mu_a, mu_b = mean(a), mean(b)
    var_a = cov_norm * (mean(a * a) - mu_a * mu_a)
    var_b = cov_norm * (mean(b * b) - mu_b * mu_b)
    cov = cov_norm * (mean(a * b) - mu_a * mu_b)
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return index.mean(dim=(1, 2, 3)).to(torch.float32)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows ``a[i]`` and ``b[i]`` (N, D); 0 for a constant row."""
    a = a.to(torch.float64) - a.to(torch.float64).mean(dim=1, keepdim=True)
    b = b.to(torch.float64) - b.to(torch.float64).mean(dim=1, keepdim=True)
    denominator = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return ((a * b).sum(dim=1) / denominator).to(torch.float32)


def membership_auc(model: OneClassAutoencoder, members, non_members) -> float:
    """ROC-AUC of ``-distance`` separating training images (members) from held-out ones."""
    inside = model.distances(members).numpy()
    outside = model.distances(non_members).numpy()
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(labels, -np.r_[inside, outside]))


def invert_decoder(model: OneClassAutoencoder, settings: AuditSettings) -> torch.Tensor:
    """Recovered images (2R, D): R decoder outputs whose codes were optimised to lower their
    distance to ``model``, then the same R after ``iterations`` passes through the model.

    Codes start where the encoder maps random sparse images (the attacker has the encoder too),
    so they begin in the region the decoder was trained on.
    """
    model._check_fitted()
    net = model.net_
    layers = list(net.layers)
    bottleneck = len(model.config.layer_widths) + 1  # encoder layers, ending in the code
    generator = torch.Generator().manual_seed(settings.seed)
    count = settings.restarts * settings.codes_per_restart
    dim = model.config.input_dim
    density = torch.rand(count, 1, generator=generator) * 0.45 + 0.05
    starts = torch.rand(count, dim, generator=generator) * (
        torch.rand(count, dim, generator=generator) < density
    )

    def encode(x: torch.Tensor) -> torch.Tensor:
        for layer in layers[:bottleneck]:
            x = torch.relu(layer(x))
        return x

    def decode(z: torch.Tensor) -> torch.Tensor:
        for layer in layers[bottleneck:-1]:
            z = torch.relu(layer(z))
        return torch.sigmoid(layers[-1](z))

    for p in net.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            codes = encode(starts.to(model.device))
        codes = codes.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([codes], lr=settings.learning_rate)
        for _ in range(settings.steps):
            images = decode(codes)
            loss = squared_distances(images, torch.sigmoid(net(images))).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                codes.clamp_(min=0.0)
        with torch.no_grad():
            optimised = decode(codes)
            iterated = optimised
            for _ in range(settings.iterations):
                iterated = torch.sigmoid(net(iterated))
            return torch.cat([optimised, iterated]).cpu()
    finally:
        for p in net.parameters():
            p.requires_grad_(True)


def near_copy_threshold(
    training: torch.Tensor, *, size: tuple[int, int], settings: AuditSettings
) -> float:
    """``near_copy_ssim``, raised to the 99th percentile of training images' SSIM with their
    nearest other training image (on up to ``calibration_images`` of them)."""
    if len(training) < 2:
        return settings.near_copy_ssim
    generator = torch.Generator().manual_seed(settings.seed)
    rows = torch.randperm(len(training), generator=generator)[: settings.calibration_images]
    sample = training[rows]
    best = _best_ssim(sample, training, size=size, exclude=rows)[0]
    return float(max(settings.near_copy_ssim, np.quantile(best.numpy(), 0.99)))


def _best_ssim(
    queries: torch.Tensor,
    training: torch.Tensor,
    *,
    size: tuple[int, int],
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each query, over its ``CANDIDATES`` L2-nearest training images: (best SSIM, index of
    that image, best correlation). ``exclude[i]`` is a training row query i may not match."""
    distances = torch.cdist(queries.to(torch.float64), training.to(torch.float64))
    if exclude is not None:
        distances[torch.arange(len(queries)), exclude] = torch.inf
    k = min(CANDIDATES, len(training) - (exclude is not None))
    nearest = distances.topk(k, dim=1, largest=False).indices  # (Q, k)
    pairs_q = queries.repeat_interleave(k, dim=0)
    pairs_t = training[nearest.reshape(-1)]
    scores = ssim(pairs_q.view(-1, *size), pairs_t.view(-1, *size)).view(-1, k)
    corr = correlation(pairs_q, pairs_t).view(-1, k)
    best, at = scores.max(dim=1)
    return best, nearest.gather(1, at[:, None])[:, 0], corr.max(dim=1).values


def audit_guard(
    model: OneClassAutoencoder,
    training,
    *,
    held_out=None,
    settings: AuditSettings | None = None,
) -> AuditResult:
    """Attack ``model`` from its weights, measured against the owner's ``training`` features.

    Parameters
    ----------
    model
        A fitted guard on image features (``pixels`` or ``pixels-smooth``).
    training
        The owner's training features, (K, D) in [0, 1], K >= 1.
    held_out
        The owner's images not used in training, (L, D); the membership AUC needs them.
    settings
        The attack's effort; ``AuditSettings()`` by default.

    Raises
    ------
    InvalidInputError
        For a model on features that are not images, or features of the wrong shape or range.
    NotFittedError
        For an unfitted model.
    """
    settings = settings or AuditSettings()
    model._check_fitted()
    extractor = model.config.feature_extractor
    if extractor not in IMAGE_FEATURES:
        raise InvalidInputError(
            f"The audit compares images, so it needs a model on image features "
            f"({', '.join(sorted(IMAGE_FEATURES))}); this model uses {extractor!r} features."
        )
    size = IMAGE_FEATURES[extractor]
    dim = model.config.input_dim
    if size[0] * size[1] != dim:
        raise InvalidInputError(
            f"The model's input_dim is {dim}, but {extractor!r} images of {size[0]}x{size[1]} "
            f"have {size[0] * size[1]} features; was the model trained on resized images?"
        )
    training = as_feature_matrix(training, input_dim=dim, what="training images")
    if len(training) < 1:
        raise InvalidInputError("Expected at least 1 training image to compare with, got 0.")
    auc = None
    if held_out is not None:
        held_out = as_feature_matrix(held_out, input_dim=dim, what="held-out images")
        if len(held_out) < 1:
            raise InvalidInputError("Expected at least 1 held-out image, got 0.")
        auc = membership_auc(model, training, held_out)
    recovered = invert_decoder(model, settings)
    below = int((model.distances(recovered) < model.error_mean_).sum())
    best, matched, corr = _best_ssim(recovered, training, size=size)
    threshold = near_copy_threshold(training, size=size, settings=settings)
    copied = torch.unique(matched[best >= threshold])
    logger.info(
        "audit: %d/%d recovered images below mu, best SSIM %.3f, %d near-copies",
        below,
        len(recovered),
        float(best.max()),
        len(copied),
    )
    return AuditResult(
        recovered=len(recovered),
        below_mu=below,
        best_ssim=float(best.max()),
        best_correlation=float(corr.max()),
        mean_ssim=float(best.mean()),
        near_copy_threshold=threshold,
        near_copy_fraction=len(copied) / len(training),
        training_images=len(training),
        membership_auc=auc,
        held_out_images=0 if held_out is None else len(held_out),
    )
