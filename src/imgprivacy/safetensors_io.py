"""One check for every set of stored tensors: names, shapes, dtypes and finiteness.

Used wherever weights are read from a file or an upload (DOCL autoencoders, the anonymizer, the
ResNet-20 port), so all of them report mismatches the same way and all at once.
"""

from __future__ import annotations

import torch


def _listed(names: list[str], limit: int) -> str:
    shown = names[:limit]
    return f"{shown}{' ...' if len(names) > limit else ''}"


def tensor_problems(
    tensors: dict[str, torch.Tensor],
    expected: dict[str, tuple[int, ...]],
    *,
    dtype: torch.dtype | None = torch.float32,
    check_finite: bool = True,
    list_limit: int = 10,
) -> list[str]:
    """Every mismatch between ``tensors`` and the ``expected`` names and shapes.

    ``dtype=None`` skips the dtype check; finiteness is checked only for tensors of the right
    dtype (a wrong dtype is already reported).

    >>> tensor_problems({"w": torch.zeros(2, 3), "x": torch.zeros(1)}, {"w": (3, 2), "b": (3,)})
    ["missing tensors ['b']", "unexpected tensors ['x']", 'w has shape (2, 3), expected (3, 2)']
    """
    problems = []
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors {_listed(missing, list_limit)}")
    if extra:
        problems.append(f"unexpected tensors {_listed(extra, list_limit)}")
    for name, shape in expected.items():
        tensor = tensors.get(name)
        if tensor is None:
            continue
        if tuple(tensor.shape) != shape:
            problems.append(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if dtype is not None and tensor.dtype != dtype:
            problems.append(f"{name} has dtype {tensor.dtype}, expected {dtype}")
        elif check_finite and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            problems.append(f"{name} contains NaN or infinite values")
    return problems
