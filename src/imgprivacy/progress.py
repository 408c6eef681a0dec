"""A tiny progress protocol so library code can report progress without printing.

Library functions take ``progress: ProgressFactory | None``; the CLI passes one backed by a rich
progress bar, tests and API users pass nothing.
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
    return lambda status="": None


def resolve(progress: ProgressFactory | None) -> ProgressFactory:
    return progress or no_progress
