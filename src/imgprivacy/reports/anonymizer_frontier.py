"""The privacy / utility frontier of the pen-digits anonymizers: writer against digit accuracy."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import ScalarFormatter

from imgprivacy.reports.plotting import new_figure, save

STYLES = {  # method -> (colour, marker)
    "warp-game": ("tab:green", "o"),
    "warp-game lambda=0": ("tab:grey", "s"),
    "moment deskew (hand-made)": ("tab:olive", "^"),
    "umap-gmm (pixels)": ("tab:purple", "D"),
    "paper autoencoder + k-means prototypes": ("tab:orange", "v"),
    "paper autoencoder outputs": ("tab:red", "x"),
}


def frontier(
    path: str | Path,
    *,
    rows: list[dict],
    chance_writer: float,
    chance_digit: float,
    goal_writer: float,
    goal_digit: float,
    selected: dict | None = None,
    split: str = "test",
) -> Path:
    """Writer accuracy (strongest attacker) against digit accuracy, one series per ``label``.

    ``rows`` hold ``label``, ``<split>_writer`` and ``<split>_digit``; rows of one label are
    joined in order. The goal region (writer <= goal, digit >= goal) is shaded, chance drawn.
    """
    fig, ax = new_figure(7.2, 5.0)
    labels = list(dict.fromkeys(row["label"] for row in rows))
    for label in labels:
        series = [r for r in rows if r["label"] == label]
        colour, marker = STYLES.get(label.split(" (lambda")[0], ("tab:blue", "o"))
        if label.startswith("warp-game (lambda"):
            colour = None  # one colour per lambda from the cycle
        ax.plot(
            [100 * r[f"{split}_writer"] for r in series],
            [100 * r[f"{split}_digit"] for r in series],
            marker=marker,
            color=colour,
            linewidth=1,
            markersize=4,
            label=label,
        )
    writers = [100 * r[f"{split}_writer"] for r in rows] + [100 * chance_writer]
    left = 0.8 * min(writers)
    ax.fill_between([left, 100 * goal_writer], 100 * goal_digit, 100, color="tab:green", alpha=0.08)
    ax.axhline(100 * goal_digit, color="tab:green", linestyle="--", linewidth=1, label="goal")
    ax.axvline(100 * goal_writer, color="tab:green", linestyle="--", linewidth=1)
    ax.axvline(100 * chance_writer, color="black", linestyle=":", label="chance (writer)")
    bottom = max(0.0, min(100 * r[f"{split}_digit"] for r in rows) - 5)
    if 100 * chance_digit >= bottom:  # the digit's chance, when the axis reaches it
        ax.axhline(100 * chance_digit, color="black", linestyle=":")
    ax.set_ylim(bottom, 100.5)
    if selected is not None:
        ax.scatter(
            [100 * selected[f"{split}_writer"]],
            [100 * selected[f"{split}_digit"]],
            s=160,
            facecolors="none",
            edgecolors="black",
            label="selected (on validation)",
        )
    ax.set_xlabel(f"writer accuracy, strongest attacker ({split}, %)")
    ax.set_ylabel(f"digit accuracy ({split}, %)")
    ax.set_xscale("log")
    ax.set_xlim(left=left)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_title("pen-digits: privacy / utility frontier")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)
