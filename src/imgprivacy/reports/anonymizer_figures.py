"""Figures of the anonymizer reproduction: the paper's Fig. 2 and a grid of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgprivacy.reports.plotting import new_figure, save

FAMILY_STYLES = {"cnn": ":", "random_forest": "-.", "extra_trees": (0, (1, 3))}


def accuracy_vs_lambda(
    path: str | Path,
    *,
    sweep: list[dict],
    original: dict[str, float],
    chance_writer_accuracy: float,
) -> Path:
    """Fig. 2: writer and digit accuracy of the fresh attackers against lambda.

    ``sweep`` holds one row per lambda (``lambda``, ``<task>_accuracy`` and
    ``<task>_accuracy_by_family`` for the tasks ``writer`` and ``digit``); ``original`` the
    headline accuracy per task on the original images. Solid lines are the headline numbers
    (strongest writer attacker, best digit classifier), thin lines each attacker family, the black
    dashed line random guessing of the writer, and the dotted grey lines the accuracies on the
    original images.
    """
    lambdas = [row["lambda"] for row in sweep]
    fig, ax = new_figure(6.4, 4.2)
    for task, colour in (("writer", "tab:red"), ("digit", "tab:blue")):
        ax.plot(
            lambdas,
            [100 * row[f"{task}_accuracy"] for row in sweep],
            marker="o",
            color=colour,
            label=f"{task} (best attacker)" if task == "writer" else "digit (best classifier)",
        )
        for family, style in FAMILY_STYLES.items():
            values = [row[f"{task}_accuracy_by_family"].get(family) for row in sweep]
            if all(v is not None for v in values):
                ax.plot(
                    lambdas,
                    [100 * v for v in values],
                    linestyle=style,
                    color=colour,
                    linewidth=1,
                    alpha=0.7,
                    label=f"{task}: {family}",
                )
        ax.axhline(100 * original[task], color=colour, linestyle=":", alpha=0.4)
    ax.axhline(
        100 * chance_writer_accuracy,
        color="black",
        linestyle="--",
        label="random guessing (writer)",
    )
    ax.set_xlabel("lambda")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Pen-digits: accuracy of fresh attackers on anonymized images")
    ax.legend(fontsize=7, loc="center right")
    return save(fig, path)


def image_grid(
    grid: list[list[np.ndarray]] | list[np.ndarray],
    path: str | Path,
    *,
    row_labels: list[str],
    column_titles: list[str] | None = None,
    title: str = "",
) -> Path:
    """Grey uint8 images in rows (``grid[r][c]`` is (H, W)), labelled on the left (and on top)."""
    n_rows, n_cols = len(grid), len(grid[0])
    fig, axes = new_figure(0.75 * n_cols + 1.3, 0.8 * n_rows + 0.5, nrows=n_rows, ncols=n_cols)
    axes = np.asarray(axes).reshape(n_rows, n_cols)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(grid[r][c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and column_titles:
                ax.set_title(column_titles[c], fontsize=6)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, path)


def sample_grid(
    originals: np.ndarray, rows: dict[str, np.ndarray], path: str | Path, *, title: str = ""
) -> Path:
    """Originals on the first row, then one row per labelled set of processed images.

    ``originals`` is (K, H, W); every value of ``rows`` is (K, H, W) for the same K inputs.
    """
    return image_grid(
        [originals, *rows.values()], path, row_labels=["original", *rows], title=title
    )


def training_curves(history: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Per-epoch losses of one training run (the private gap, fidelity and L1 anchor)."""
    fig, ax = new_figure(6.0, 3.6)
    keys = ("reconstruction_bce", "ae_fidelity", "ae_gap", "ae_l1", "private_accuracy")
    for key in keys:
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            ax.plot(*zip(*points), marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title or "training losses per epoch")
    ax.legend(fontsize=7)
    return save(fig, path)


def evolution(
    frames: list[np.ndarray],
    column_labels: list[str],
    path: str | Path,
    *,
    row_labels: tuple[str, ...],
    title: str = "",
) -> Path:
    """Fig. 3: one row per tracked image, one column per epoch (``frames[j]`` is (K, H, W))."""
    grid = [[frame[r] for frame in frames] for r in range(len(row_labels))]
    return image_grid(
        grid, path, row_labels=list(row_labels), column_titles=column_labels, title=title
    )


def pairs(
    inputs: np.ndarray, outputs: np.ndarray, path: str | Path, *, title: str = "", per_row: int = 6
) -> Path:
    """Fig. 4: (input | output) couples, ``per_row`` couples per line."""
    n = len(inputs)
    lines = -(-n // per_row)
    fig, axes = new_figure(1.5 * per_row + 0.4, 0.85 * lines + 0.5, nrows=lines, ncols=2 * per_row)
    axes = np.asarray(axes).reshape(lines, 2 * per_row)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, per_row)
        for j, image in enumerate((inputs[i], outputs[i])):
            ax = axes[r, 2 * c + j]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("tab:blue" if j == 0 else "tab:orange")
    if title:
        fig.suptitle(f"{title} (blue frame: input, orange: output)", fontsize=9)
    return save(fig, path)


def table1_bars(
    path: str | Path,
    *,
    rows: list[tuple[str, dict, dict | None]],
    chance: dict[str, float],
    private_key: str,
    utility_key: str,
) -> Path:
    """Table 1 as bars: identity and expression accuracy per run, the paper's values as marks.

    ``rows`` are (name, accuracies by key, the paper's ``identity_accuracy`` and
    ``expression_accuracy`` or None); ``chance`` is the chance accuracy by key.
    """
    fig, ax = new_figure(max(6.0, 0.7 * len(rows) + 1.5), 4.0)
    x = np.arange(len(rows))
    for offset, key, colour, name in (
        (-0.2, private_key, "tab:red", private_key.removesuffix("_accuracy")),
        (0.2, utility_key, "tab:blue", utility_key.removesuffix("_accuracy")),
    ):
        ax.bar(x + offset, [100 * r[key] for _, r, _ in rows], 0.4, color=colour, label=name)
        paper_key = "identity_accuracy" if key == private_key else "expression_accuracy"
        marks = [(i + offset, 100 * p[paper_key]) for i, (_, _, p) in enumerate(rows) if p]
        if marks:
            ax.scatter(*zip(*marks), marker="_", s=300, color="black", zorder=3)
    ax.scatter([], [], marker="_", color="black", label="paper (Table 1)")
    ax.axhline(100 * chance[private_key], color="tab:red", linestyle="--", linewidth=1)
    ax.axhline(100 * chance[utility_key], color="tab:blue", linestyle="--", linewidth=1)
    ax.set_xticks(x, [name for name, _, _ in rows], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy of the strongest attacker (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Faces: identity (private) and expression (kept); dashed = chance", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)
