"""The bank's tensors: models stacked layer by layer, and the batched distance kernel.

Models of one group (the bank groups them by exact layer sizes; the kernel also accepts
narrower models zero-padded to common widths) are stored as
(n, out, in) for the first layer (one chunk-wide ``addmm``) and (n, in, out) for later layers
(``baddbmm``). A snapshot is anything with ``entries`` (each with ``layer_dims``) and ``groups``
(:class:`LayerStack`); :class:`~imgprivacy.docl.bank.FilterBank` builds them.

Weights may be stored in fp16 or bf16 (biases stay fp32); this torch path widens each chunk to
fp32 before multiplying. It is the reference for, and the fallback of, the fused native kernel
(:mod:`imgprivacy.docl.bank_kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerStack:
    """Models with the same number of layers, zero-padded to common widths if they differ."""

    columns: torch.Tensor  # (n,) positions of these models in the bank's model order
    first_weight: torch.Tensor  # (n, h1, D)
    first_bias: torch.Tensor  # (n, h1)
    weights_t: tuple[torch.Tensor, ...]  # later layers, (n, in, out) for bmm
    biases: tuple[torch.Tensor, ...]  # later layers, (n, out)


def group_dims(group: LayerStack) -> tuple[int, ...]:
    """The (padded) layer sizes of a group's models, from input to output."""
    _, first_width, dim = group.first_weight.shape
    return (dim, first_width, *(w.shape[2] for w in group.weights_t))


def stacked_distances(snap, x: torch.Tensor, *, chunk_bytes: int) -> torch.Tensor:
    """(B, N) squared reconstruction distances of ``x`` to every model of ``snap``."""
    out = torch.empty(x.shape[0], len(snap.entries), dtype=x.dtype, device=x.device)
    with torch.inference_mode():
        for group in snap.groups:
            out[:, group.columns] = group_distances(group, x, chunk_bytes=chunk_bytes)
    return out


def group_distances(group: LayerStack, x: torch.Tensor, *, chunk_bytes: int) -> torch.Tensor:
    """(B, n) distances for one layer stack, models processed in bounded chunks."""
    n_models, first_width, dim = group.first_weight.shape
    batch = x.shape[0]
    widest = max([dim, first_width, *(w.shape[2] for w in group.weights_t)])
    chunk = max(1, min(n_models, chunk_bytes // max(batch * widest * x.element_size(), 1)))
    out = torch.empty(n_models, batch, dtype=x.dtype, device=x.device)
    for start in range(0, n_models, chunk):
        stop = min(start + chunk, n_models)
        count = stop - start
        # First layer of every model in the chunk at once: (B, D) @ (D, C*h1) -> (B, C*h1).
        weight = group.first_weight[start:stop].reshape(count * first_width, dim).to(x.dtype)
        act = torch.addmm(group.first_bias[start:stop].reshape(-1), x, weight.t())
        act = act.relu_().view(batch, count, first_width).transpose(0, 1)
        # Later layers: (C, B, in) @ (C, in, out) + bias; ReLU between, logits at the end.
        last = len(group.weights_t) - 1
        for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases)):
            weight = weight_t[start:stop].to(x.dtype)
            act = torch.baddbmm(bias[start:stop].unsqueeze(1), act, weight)
            if k < last:
                act.relu_()
        act.sigmoid_().sub_(x)  # eq. (6), in place: reconstruction - input
        out[start:stop] = act.square_().sum(dim=2)
    return out.t()


def stack_group(
    items: list, positions: list[int], device: str, dtype: torch.dtype = torch.float32
) -> LayerStack:
    """Stack ``items`` ((entry, weights) pairs); weights stored as ``dtype``, biases as fp32."""
    n_models = len(items)
    n_layers = len(items[0][0].layer_dims) - 1
    widths = [max(entry.layer_dims[k] for entry, _ in items) for k in range(n_layers + 1)]
    # Layer 0 is stored (n, out, in) for the chunk-wide addmm, later layers (n, in, out) for bmm;
    # both are filled in place, so building costs no transposed copy (peak memory at N=10,000).
    first_weight = torch.zeros(n_models, widths[1], widths[0], device=device, dtype=dtype)
    weights_t = [
        torch.zeros(n_models, widths[k], widths[k + 1], device=device, dtype=dtype)
        for k in range(1, n_layers)
    ]
    stacked_b = [torch.zeros(n_models, widths[k + 1], device=device) for k in range(n_layers)]
    for i, (_, weights) in enumerate(items):
        w = weights["layers.0.weight"]
        first_weight[i, : w.shape[0], : w.shape[1]] = w
        for k in range(1, n_layers):
            w = weights[f"layers.{k}.weight"]
            weights_t[k - 1][i, : w.shape[1], : w.shape[0]] = w.t()
        for k in range(n_layers):
            bias = weights[f"layers.{k}.bias"]
            stacked_b[k][i, : bias.shape[0]] = bias
    return LayerStack(
        columns=torch.tensor(positions, dtype=torch.long, device=device),
        first_weight=first_weight,
        first_bias=stacked_b[0],
        weights_t=tuple(weights_t),
        biases=tuple(stacked_b[1:]),
    )


@dataclass(frozen=True)
class Snapshot:
    """Every model of a bank stacked by shape: what a scoring call reads (immutable)."""

    entries: tuple  # the bank's BankEntry of each model, in the bank's order
    groups: tuple[LayerStack, ...]  # one per exact layer-size tuple
    error_mean: torch.Tensor  # (N,)
    error_std: torch.Tensor  # (N,)


def stack_snapshot(items: list, device: str, dtype: torch.dtype) -> Snapshot:
    """A :class:`Snapshot` of ``items`` ((entry, weights) pairs), one group per model shape."""
    entries = tuple(entry for entry, _ in items)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for position, entry in enumerate(entries):
        by_shape.setdefault(entry.layer_dims, []).append(position)
    groups = tuple(
        stack_group([items[p] for p in positions], positions, device, dtype)
        for _, positions in sorted(by_shape.items())
    )
    return Snapshot(
        entries=entries,
        groups=groups,
        error_mean=torch.tensor([e.error_mean for e in entries], dtype=torch.float64),
        error_std=torch.tensor([e.error_std for e in entries], dtype=torch.float64),
    )


def model_views(snap) -> list[dict[str, torch.Tensor]]:
    """Each model's weights as un-padded views into ``snap``'s stacked tensors."""
    views: list[dict[str, torch.Tensor]] = [{} for _ in snap.entries]
    for group in snap.groups:
        for row, position in enumerate(group.columns.tolist()):
            dims = snap.entries[position].layer_dims
            named = views[position]
            named["layers.0.weight"] = group.first_weight[row, : dims[1], : dims[0]]
            named["layers.0.bias"] = group.first_bias[row, : dims[1]]
            for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases), start=1):
                named[f"layers.{k}.weight"] = weight_t[row, : dims[k], : dims[k + 1]].t()
                named[f"layers.{k}.bias"] = bias[row, : dims[k + 1]]
    return views
