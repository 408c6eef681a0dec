"""Model sketches for the first stage: a cheap proxy of each model's distance, and its calibration.

A sketch summarises a model by its reconstructions of a public reference set: their mean ``c_n``
and, with ``rank=r``, their top-r principal directions ``U_n`` (rows orthonormal). The sketch
distance of an input ``x`` is its squared distance to the affine subspace ``c_n + span(U_n)``:
``(r + 1) * D`` multiply-adds per model and input.

**Calibration.** The sketch distance is a biased proxy whose bias differs between models. Each
model's exact distances to the same reference images give a per-model map in log space,
``log d ~ intercept_n + slope_n * log(sketch)`` (least squares), and the residuals' spread
``spread_n``: three numbers per model, computed from its weights and public images only, so they
reveal nothing the weights do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgprivacy.docl.bank import BankEntry, FilterBank

_TINY = 1e-12  # floor of distances before taking logs
# Models reconstructed at once while sketching: bounds the (chunk, R, D) reconstructions.
SKETCH_CHUNK = 16
# Floor of a model's calibration spread (log-distance units): no model is trusted more.
MIN_SPREAD = 0.02


@dataclass(frozen=True)
class Sketches:
    """Every model's affine subspace ``offsets[n] + span(bases[n])`` in feature space, and the
    calibration of its distance (identity when not calibrated)."""

    entries: tuple[BankEntry, ...]  # the bank entries sketched, in the bank's model order
    owners: np.ndarray  # (N,) each model's owner
    offsets: torch.Tensor  # (N, D) mean reconstruction of the reference set
    bases: torch.Tensor  # (N, r, D) principal directions, orthonormal rows
    offset_norms: torch.Tensor  # (N,) squared norm of each offset
    offset_coords: torch.Tensor  # (N, r) each offset's coordinates in its own basis
    intercept: torch.Tensor | None = None  # (N,) log-distance map, float64
    slope: torch.Tensor | None = None  # (N,)
    spread: torch.Tensor | None = None  # (N,) residual standard deviation of the map

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) squared distance of each input to each model's subspace."""
        n_models, rank, dim = self.bases.shape
        d = (x * x).sum(dim=1, keepdim=True) - 2 * x @ self.offsets.t() + self.offset_norms
        if rank:
            coords = (x @ self.bases.reshape(n_models * rank, dim).t()).view(-1, n_models, rank)
            d = d - (coords - self.offset_coords).square().sum(dim=2)
        return d.clamp_min_(0)

    def log_estimates(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N) float64 estimate of the log of each model's exact distance to each input."""
        log_sketch = self.distances(x).to(torch.float64).clamp_min(_TINY).log()
        if self.slope is None:
            return log_sketch
        return self.intercept + self.slope * log_sketch


def build_sketches(
    entries: Sequence[BankEntry],
    offsets: torch.Tensor,
    bases: torch.Tensor,
    calibration: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> Sketches:
    """A :class:`Sketches` from the per-model tensors (``calibration``: intercept, slope, spread)."""
    intercept, slope, spread = (None, None, None) if calibration is None else calibration
    return Sketches(
        entries=tuple(entries),
        owners=np.array([e.owner for e in entries], dtype=object),
        offsets=offsets,
        bases=bases,
        offset_norms=offsets.square().sum(dim=1),
        offset_coords=torch.einsum("nrd,nd->nr", bases, offsets),
        intercept=intercept,
        slope=slope,
        spread=spread,
    )


def reconstructions(bank, inputs: torch.Tensor, models: Sequence[int]) -> torch.Tensor:
    """(len(models), R, D): each listed model's reconstruction of ``inputs``.

    ``bank`` is a :class:`FilterBank` or one of its snapshots (``bank.snapshot()``), whose
    positions ``models`` are. ``inputs`` is one (R, D) set for every model, or
    (len(models), R, D), a set per model.
    """
    snap = bank.snapshot() if isinstance(bank, FilterBank) else bank
    shared = inputs.dim() == 2
    out = torch.empty(len(models), *inputs.shape[-2:])
    wanted = {position: k for k, position in enumerate(models)}
    with torch.inference_mode():
        for group in snap.groups:
            rows = [r for r, p in enumerate(group.columns.tolist()) if p in wanted]
            for start in range(0, len(rows), SKETCH_CHUNK):
                chunk = torch.tensor(rows[start : start + SKETCH_CHUNK])
                slots = [wanted[p] for p in group.columns[chunk].tolist()]
                x = inputs.expand(len(chunk), *inputs.shape) if shared else inputs[slots]
                weight = group.first_weight[chunk].float()
                act = torch.baddbmm(group.first_bias[chunk, None, :], x, weight.mT)
                for weight_t, bias in zip(group.weights_t, group.biases):
                    act = torch.baddbmm(bias[chunk, None, :], act.relu_(), weight_t[chunk].float())
                out[slots] = act.sigmoid_()[:, :, : inputs.shape[-1]]
    return out


def sketch(reconstructed: torch.Tensor, *, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (n, D) and top-``rank`` principal directions (n, rank, D) of (n, R, D) samples."""
    offsets = reconstructed.mean(dim=1)
    if rank == 0:
        return offsets, reconstructed.new_zeros(len(offsets), 0, reconstructed.shape[2])
    _, _, vh = torch.linalg.svd(reconstructed - offsets[:, None, :], full_matrices=False)
    return offsets, vh[:, :rank, :].contiguous()


def fit_calibration(
    sketch_distances: torch.Tensor, exact_distances: torch.Tensor, *, nearest: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-model least-squares map ``log exact ~ intercept + slope * log sketch`` from (R, n)
    distances of the same reference images; returns (intercept, slope, spread), each (n,).

    With ``nearest``, each model's map is fitted on the ``nearest`` reference images it
    reconstructs best (lowest exact distance) only: the region where its claims decide."""
    s = sketch_distances.to(torch.float64).clamp_min(_TINY).log()
    t = exact_distances.to(torch.float64).clamp_min(_TINY).log()
    if nearest is not None and nearest < len(t):
        rows = t.argsort(dim=0)[:nearest]
        s, t = s.gather(0, rows), t.gather(0, rows)
    s_mean, t_mean = s.mean(dim=0), t.mean(dim=0)
    s_var = (s - s_mean).square().mean(dim=0)
    slope = ((s - s_mean) * (t - t_mean)).mean(dim=0) / s_var.clamp_min(_TINY)
    slope = torch.where(s_var > _TINY, slope, torch.ones_like(slope))
    intercept = t_mean - slope * s_mean
    spread = (t - intercept - slope * s).square().mean(dim=0).sqrt().clamp_min(MIN_SPREAD)
    return intercept, slope, spread


def claim_log_probability(
    log_estimate: torch.Tensor, log_low: torch.Tensor, log_high: torch.Tensor, spread: torch.Tensor
) -> torch.Tensor:
    """(B, N) log-probability that a model's exact log-distance, Gaussian around
    ``log_estimate`` with standard deviation ``spread`` (N,), lies in ``[log_low, log_high]``."""
    below_high = torch.special.log_ndtr((log_high - log_estimate) / spread)
    below_low = torch.special.log_ndtr((log_low - log_estimate) / spread)
    return below_high + torch.log1p(-torch.exp((below_low - below_high).clamp_max(-1e-12)))
