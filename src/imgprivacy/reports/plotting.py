"""Matplotlib set-up shared by every figure: headless backend, one save function."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def new_figure(width: float = 6.0, height: float = 4.0, **kwargs):
    return plt.subplots(figsize=(width, height), **kwargs)


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
