"""Storage precisions of the bank's stacked weights (``FilterBank(precision=...)``).

Compact precisions halve the memory per user and the bytes every check reads; scoring still
accumulates in fp32 (the native kernel widens each weight in registers, the torch path each chunk)
and biases stay fp32. A precision is refused for a model shape whose Guard decisions it changed
on more than 0.1% of the MNIST reproduction's checks (see ``benchmarks/bench_precision.py``), and
fp16 for any model with a weight beyond its range.

Measured on MNIST's 10 users (2,000 training images each, the configurations' own epochs; 200,000
decisions: 25,000 uploads under 4 policies and alpha 1 and 2), decisions equal to the fp32
bank's: fp16 99.999% (default model) and 99.998% (paper-exact), bf16 99.969% and 99.965%. Both
hold for both shapes, so no shape is refused today; distances moved by at most 0.13% (fp16) and
0.9% (bf16) relative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from imgprivacy.errors import UnknownNameError


@dataclass(frozen=True)
class Precision:
    """How one precision stores weights and which model shapes it must not hold."""

    name: str
    dtype: torch.dtype
    # Largest finite magnitude the dtype can hold (beyond it a weight would become infinite).
    max_abs: float
    # Layer sizes -> why this precision is refused for models of that shape.
    refused_shapes: dict[tuple[int, ...], str] = field(default_factory=dict)

    @property
    def bytes_per_weight(self) -> int:
        return torch.finfo(self.dtype).bits // 8


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", torch.float32, torch.finfo(torch.float32).max),
    "fp16": Precision("fp16", torch.float16, torch.finfo(torch.float16).max),
    "bf16": Precision("bf16", torch.bfloat16, torch.finfo(torch.bfloat16).max),
}


def get_precision(name: str) -> Precision:
    """The :class:`Precision` called ``name``; :class:`UnknownNameError` lists the valid ones."""
    if name not in PRECISIONS:
        raise UnknownNameError(
            f"Unknown bank precision {name!r}. Valid precisions: {', '.join(PRECISIONS)}."
        )
    return PRECISIONS[name]


def precision_problems(
    precision: Precision, layer_dims: tuple[int, ...], weights: dict[str, torch.Tensor]
) -> list[str]:
    """Why ``precision`` cannot hold a model of ``layer_dims`` with ``weights`` (empty if it can)."""
    problems = []
    shape = "-".join(map(str, layer_dims))
    if layer_dims in precision.refused_shapes:
        problems.append(
            f"{precision.name} weights are refused for {shape} models: "
            f"{precision.refused_shapes[layer_dims]}; use a bank with precision='fp32'"
        )
    largest = max((float(w.abs().max()) for w in weights.values() if w.numel()), default=0.0)
    if largest > precision.max_abs:
        problems.append(
            f"the model has a weight of magnitude {largest:.3g}, beyond {precision.name}'s "
            f"largest value {precision.max_abs:.5g}; use precision='bf16' or 'fp32'"
        )
    return problems
