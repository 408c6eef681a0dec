"""The one progress protocol: library code reports progress without printing.

Library functions take ``progress: ProgressFactory | None``. They call it once per task with a
description and the number of steps, and call the returned ``advance(status)`` once per finished
step (``status`` is free text such as ``"loss 0.123"``; a resumed run advances its finished steps
with ``"resumed"``). The CLI passes a factory backed by a rich progress bar; tests and API users
pass nothing.

>>> seen = []
>>> def record(description, total):
...     return lambda status="": seen.append((description, total, status))
>>> advance = resolve(record)("training", 2)
>>> advance("loss 0.5")
>>> seen
[('training', 2, 'loss 0.5')]
>>> resolve(None)("training", 2)("ignored")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Advance = Callable[[str], None]


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int) -> Advance:
        """Start a task of ``total`` steps; the returned callable advances it by one."""
        ...


def no_progress(description: str, total: int) -> Advance:
    """A factory that reports nothing."""
    return lambda status="": None


def resolve(progress: ProgressFactory | None) -> ProgressFactory:
    """``progress`` itself, or :func:`no_progress` when it is None."""
    return progress or no_progress
