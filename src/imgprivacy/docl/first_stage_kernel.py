"""Exact distances of (input, model) pairs only: the first stage's gather kernel.

A first stage keeps a few models per input, and the models differ between the inputs of a
batch. Scoring the union of the batch's survivors for every input costs about the full bank at
B = 64 (the union covers most of it); this kernel scores each input under its own survivors
only, so its multiply-adds are those of the pairs.

The pairs of a layer stack are grouped by model; models are bucketed by how many inputs kept
them (1, 2, 3-4, 5-8, ...), each bucket runs as one batched product per layer over its models'
weights (gathered once) and its inputs zero-padded to the bucket's width. Padding at most
doubles a bucket's work; every weight is read once per bucket it falls in. The arithmetic is the
bank's torch kernel (:func:`imgprivacy.docl.bank_stack.group_distances`): ReLU between layers, a
sigmoid at the end, the squared distance of the reconstruction to the input.
"""

from __future__ import annotations

import math
import threading

import torch

from imgprivacy.docl.bank_stack import LayerStack
from imgprivacy.errors import InvalidInputError

# The distance of a pair that is not scored: finite (so the Guard does not count the model as
# broken) and beyond every interval, so such a model claims and vouches for nothing.
UNSCORED = float(torch.finfo(torch.float32).max)


class PairKernel:
    """Scores (input, model) pairs of a bank snapshot; keeps its gather buffers between calls
    (a fresh allocation per call costs more than the copy), one set per thread, so that
    concurrent checks through one first stage do not write into each other's buffers."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def _buffers(self) -> dict[str, torch.Tensor]:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        return buffers

    def __call__(self, snap, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) distances of ``x`` (B, D) to the models where ``mask`` (B, N) is True;
        :data:`UNSCORED` elsewhere. ``snap`` is a bank snapshot (``bank.snapshot()``)."""
        n_models = len(snap.entries)
        if mask.shape != (x.shape[0], n_models) or mask.dtype != torch.bool:
            raise InvalidInputError(
                f"Expected a boolean mask of shape ({x.shape[0]}, {n_models}) (inputs, models), "
                f"got {tuple(mask.shape)} of {mask.dtype}."
            )
        out = torch.full((x.shape[0], n_models), UNSCORED, dtype=torch.float32)
        x = x.float()
        with torch.inference_mode():
            for group in snap.groups:
                columns = group.columns.cpu()
                rows, local = torch.nonzero(mask[:, columns], as_tuple=True)
                if len(rows):
                    out[rows, columns[local]] = self._group_pairs(group, x, rows, local)
        return out

    def _gather(self, name: str, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``source[index]`` written into a reused buffer, widened to fp32."""
        shape = (len(index), *source.shape[1:])
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.device != source.device:
            buffer = self._buffers[name] = torch.empty(size, device=source.device)
        out = buffer[:size].view(shape)
        if source.dtype == torch.float32:
            return torch.index_select(source, 0, index, out=out)
        return out.copy_(source[index])

    def _group_pairs(
        self, group: LayerStack, x: torch.Tensor, rows: torch.Tensor, local: torch.Tensor
    ) -> torch.Tensor:
        """Distances of the pairs (x[rows[p]], model local[p] of ``group``), in their order."""
        order = torch.argsort(local, stable=True)
        rows, local = rows[order], local[order]
        models, counts = torch.unique_consecutive(local, return_counts=True)
        # each pair's model (index into `models`) and slot among that model's pairs
        which = torch.repeat_interleave(torch.arange(len(models)), counts)
        slot = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[which]
        width = counts.float().log2().ceil().long()  # bucket: up to 2**width pairs per model
        result = torch.empty(len(rows), dtype=torch.float32)
        device = group.first_weight.device
        for level in torch.unique(width).tolist():
            in_bucket = torch.nonzero(width == level).flatten()
            picked = models[in_bucket].to(device)
            pairs = torch.nonzero(width[which] == level).flatten()
            position = torch.searchsorted(in_bucket, which[pairs])
            inputs = x.new_zeros(len(in_bucket), 2**level, x.shape[1])
            inputs[position, slot[pairs]] = x[rows[pairs]]
            inputs = inputs.to(device)
            weight = self._gather("first", group.first_weight, picked)
            act = torch.baddbmm(group.first_bias[picked, None, :].float(), inputs, weight.mT)
            for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases)):
                weight = self._gather(f"layer{k}", weight_t, picked)
                act = torch.baddbmm(bias[picked, None, :].float(), act.relu_(), weight)
            error = act.sigmoid_().sub_(inputs).square_().sum(dim=2).cpu()
            result[order[pairs]] = error[position, slot[pairs]]
        return result
