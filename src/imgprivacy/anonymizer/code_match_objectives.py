"""Extra terms of the code-match encoder's objective (:mod:`~imgprivacy.anonymizer.code_match_trainer`).

* :func:`smooth_warp` - a smooth random displacement field, an augmentation that makes small
  local changes of a face's shape a nuisance like pose and light;
* :func:`swapped_prototype_loss` - a SwAV-like clustering term (Caron et al. 2020): each view's
  code must predict the prototype the *other* view was assigned to. The codes are centred on
  their identity's batch mean and every identity's codes are spread evenly over the prototypes
  (Sinkhorn, per identity), so the prototypes, shared by all identities, can only sort what
  varies *within* an identity - the same way for every identity.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def smooth_warp(
    x: torch.Tensor, *, image_size: int, amplitude: float, generator: torch.Generator
) -> torch.Tensor:
    """Flat grey images (B, S*S) moved by a smooth random displacement field.

    Displacements drawn on a 4 x 4 grid, uniform in [-amplitude, amplitude] pixels, interpolated
    bicubically over the image: local stretches of a few pixels (a face's features a little
    larger, smaller or shifted), unlike the global affine changes of ``NuisanceAugment``.

    Examples
    --------
    >>> x = torch.rand(2, 64)
    >>> g = torch.Generator().manual_seed(0)
    >>> bool(torch.allclose(smooth_warp(x, image_size=8, amplitude=0.0, generator=g), x, atol=1e-5))
    True
    """
    n, s = len(x), image_size
    coarse = (torch.rand(n, 2, 4, 4, generator=generator) * 2 - 1).to(x.device)
    field = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=True)
    line = torch.linspace(-1, 1, s, device=x.device)
    grid = torch.stack(torch.meshgrid(line, line, indexing="xy"), -1)  # (S, S, 2) as (x, y)
    grid = grid[None] + field.permute(0, 2, 3, 1) * (2 * amplitude / s)
    image = x.view(n, 1, s, s)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, s * s)


def group_centred(codes: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each row (B, C) minus the mean of its group's rows (groups (B,) non-negative ints).

    Examples
    --------
    >>> group_centred(torch.tensor([[1.0], [3.0], [10.0]]), torch.tensor([0, 0, 1])).tolist()
    [[-1.0], [1.0], [0.0]]
    """
    n = int(groups.max()) + 1
    sums = torch.zeros(n, codes.shape[1], dtype=codes.dtype, device=codes.device)
    sums = sums.index_add(0, groups, codes)
    counts = torch.bincount(groups, minlength=n).clamp_min(1).to(codes.dtype)
    return codes - (sums / counts[:, None])[groups]


def balanced_assignments(
    scores: torch.Tensor, groups: torch.Tensor, *, epsilon: float = 0.05, iterations: int = 3
) -> torch.Tensor:
    """Soft assignments (B, P) of rows to prototypes, each group spread evenly (Sinkhorn-Knopp).

    Within every group the prototypes get equal total mass and every row sums to one.

    Examples
    --------
    >>> scores = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> q = balanced_assignments(scores, torch.tensor([0, 0, 1, 1]))
    >>> q.sum(1).tolist(), q.argmax(1).tolist()  # one group has only prototype-0-like rows
    ([1.0, 1.0, 1.0, 1.0], [0, 1, 1, 0])
    """
    q = torch.exp((scores - scores.max()) / epsilon)
    out = torch.empty_like(q)
    for g in torch.unique(groups):
        rows = groups == g
        block = q[rows]
        block = block / block.sum()
        n, p = block.shape
        for _ in range(iterations):
            block = block / block.sum(0, keepdim=True) / p
            block = block / block.sum(1, keepdim=True) / n
        out[rows] = block * n
    return out


def swapped_prototype_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    groups: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """SwAV's swapped prediction between two views' codes (B, C) on prototypes (P, C).

    The codes are centred per group (identity) first and the targets balanced per group
    (:func:`balanced_assignments`); the targets carry no gradient.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(8, 4, generator=g)
    >>> p = torch.randn(3, 4, generator=g)
    >>> groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    >>> bool(swapped_prototype_loss(z, z, p, groups=groups) > 0)
    True
    """
    centred = [F.normalize(group_centred(v, groups), dim=1) for v in (first, second)]
    weights = F.normalize(prototypes, dim=1)
    scores = [c @ weights.T for c in centred]
    with torch.no_grad():
        targets = [balanced_assignments(s.detach(), groups) for s in scores]
    log_p = [F.log_softmax(s / temperature, dim=1) for s in scores]
    return -0.5 * ((targets[1] * log_p[0]).sum(1).mean() + (targets[0] * log_p[1]).sum(1).mean())
