"""Figures of the DOCL reproductions, one function per paper figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgprivacy.docl.evaluate import GuardPoint
from imgprivacy.reports.plotting import new_figure, save


def per_class_accuracy(
    path: Path, *, series: dict[str, list[float]], paper_overall: float | None, title: str
) -> Path:
    """Paper Fig. 2: per-class accuracy bars, one bar group per class."""
    fig, ax = new_figure(7, 3.8)
    n = len(next(iter(series.values())))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(n) + k * width - 0.4 + width / 2, values, width, label=label)
    if paper_overall is not None:
        ax.axhline(
            paper_overall, color="k", ls="--", lw=1, label=f"paper overall {paper_overall:.0%}"
        )
    ax.set_xticks(range(n), [f"u{i}" for i in range(n)])
    low = min(min(v) for v in series.values())
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    return save(fig, path)


def accuracy_vs_acceptance(path: Path, *, guard: dict[str, list[GuardPoint]], title: str) -> Path:
    """Paper Fig. 3 (left panel) plus the owners' share rate against alpha (right panel)."""
    fig, (left, right) = new_figure(10, 4, ncols=2)
    for policy, points in guard.items():
        acc = [p.accuracy for p in points]
        accept = [p.acceptance_rate for p in points]
        left.plot(accept, acc, marker="o", ms=3, label=policy)
        alphas = [p.alpha for p in points]
        right.plot(alphas, [p.owner_share_rate for p in points], marker="o", ms=3, label=policy)
    left.set_xlabel("acceptance rate (non-sensitive images shared)")
    left.set_ylabel("accuracy (others' private images blocked)")
    left.set_title(title)
    right.set_xlabel("alpha")
    right.set_ylabel("owners' own images shared")
    right.set_ylim(0, 1.02)
    right.set_title("a guard that blocks its owner is useless")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def adversary_matrices(
    path: Path, *, matrices: dict[str, np.ndarray], alpha: float, what: str = "blocked"
) -> Path:
    """Paper Fig. 4: blocked fraction per (adversary row, victim column), one panel per policy
    (or ``what`` other fraction; NaN cells, pairs not measured, are left blank)."""
    n_pol = len(matrices)
    fig, axes = new_figure(4.2 * n_pol, 4.2, ncols=n_pol, squeeze=False)
    for ax, (policy, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        n = len(matrix)
        for a in range(n):
            for v in range(n):
                if np.isnan(matrix[a, v]):
                    continue
                ax.text(
                    v,
                    a,
                    f"{100 * matrix[a, v]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="w" if matrix[a, v] < 0.5 else "k",
                )
        ax.set_xticks(range(n), [f"u{i}" for i in range(n)], fontsize=7)
        ax.set_yticks(range(n), [f"u{i}" for i in range(n)], fontsize=7)
        ax.set_xlabel("victim")
        ax.set_ylabel("adversary")
        ax.set_title(f"{policy} (alpha={alpha:g}): % {what}", fontsize=9)
    return save(fig, path)


def scalability(path: Path, *, per_size: dict[str, list[float | None]], title: str) -> Path:
    """Paper Fig. 5: per-class accuracy against the number of registered users."""
    fig, ax = new_figure(6, 4)
    sizes = sorted(per_size, key=int)
    markers = "*xo.^s+vPD"
    n = len(per_size[sizes[0]])
    for cls in range(n):
        xs = [int(k) for k in sizes if per_size[k][cls] is not None]
        ys = [per_size[k][cls] for k in sizes if per_size[k][cls] is not None]
        ax.plot(xs, ys, marker=markers[cls % len(markers)], label=f"u{cls}")
    ax.set_xlabel("number of users (classes)")
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def auc_per_class(path: Path, *, series: dict[str, list[float]], title: str) -> Path:
    """One-class ROC-AUC of each user's autoencoder (Deep SVDD protocol)."""
    fig, ax = new_figure(7, 3.5)
    n = len(next(iter(series.values())))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        mean = float(np.mean(values))
        ax.bar(
            np.arange(n) + k * width - 0.4 + width / 2,
            values,
            width,
            label=f"{label} (mean {100 * mean:.1f})",
        )
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_ylim(0.8, 1.0)
    ax.set_xlabel("class")
    ax.set_ylabel("ROC-AUC")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    return save(fig, path)
