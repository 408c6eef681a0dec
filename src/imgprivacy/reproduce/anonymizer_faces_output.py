"""What the faces reproduction shows: Fig. 3 frames while training, the figures, Table 1 rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgprivacy.anonymizer.model import as_pixels
from imgprivacy.reports import anonymizer_figures
from imgprivacy.reproduce.anonymizer_results import FacesResult


class EvolutionRecorder:
    """Fig. 3: the autoencoder's output for a few fixed images after every epoch of a run."""

    def __init__(self, images: np.ndarray, image_size: int):
        self.x = as_pixels(images, image_size=image_size)
        self.frames: list[np.ndarray] = []  # (K, S, S) uint8 per recorded epoch
        self.epochs: list[int] = []

    def record(self, autoencoder: torch.nn.Module, epoch: int) -> None:
        training = autoencoder.training
        autoencoder.eval()
        device = next(autoencoder.parameters()).device
        with torch.inference_mode():
            out = torch.sigmoid(autoencoder(self.x.to(device))).cpu().numpy()
        autoencoder.train(training)
        side = int(round(self.x.shape[1] ** 0.5))
        self.frames.append(np.rint(out * 255).astype(np.uint8).reshape(-1, side, side))
        self.epochs.append(epoch)

    def on_epoch(self, trainer, record: dict) -> None:
        self.record(trainer.nets.autoencoder, record["epoch"])


def write_figures(
    results: FacesResult, data, runs, start_frame, evolution_picks, pair_picks, out: Path
) -> list[Path]:
    rows = [("originals", results.baseline, None)]
    rows.append(("standard", results.standard_no_substitution, None))
    rows += [(f"std+sub {r['target_identity']}", r, None) for r in results.standard]
    rows += [(f"intertw. {r['target_identity']}", r, r.get("paper")) for r in results.intertwined]
    rows += [(f"code match {r['target_identity']}", r, r.get("paper")) for r in results.code_match]
    rows += [(f"swap {r['target_identity']}", r, r.get("paper")) for r in results.swap]
    rows += [
        (f"swap+z-NN {r['target_identity']}", r, r.get("paper")) for r in results.swap_code_nearest
    ]
    paths = [
        anonymizer_figures.table1_bars(
            out / "table1_accuracy.png",
            rows=rows,
            chance=results.chance,
            private_key=results.private_key,
            utility_key=results.utility_key,
        )
    ]
    for name, run in runs.items():
        if name.startswith("standard_target"):
            continue  # same autoencoder as "standard": its figures would repeat
        if name.startswith(("swap_code_nearest", "code_match")):
            picks = pair_picks
            paths.append(
                anonymizer_figures.pairs(
                    data.images[picks],
                    run["released"][picks],
                    out / f"fig4_pairs_{name}.png",
                    title=f"{name}: 24 test inputs and the released (nearest in z) images",
                )
            )
            continue
        recorder = run["recorder"]
        swap_target = getattr(recorder, "target", None)  # the swap model's recorder renders one
        if swap_target is None:
            frames = [data.images[evolution_picks], start_frame, *recorder.frames]
            epochs = ["input", "pre-training", *[f"epoch {e}" for e in recorder.epochs]]
        else:
            frames = [data.images[evolution_picks], *recorder.frames]
            epochs = ["input", *[f"epoch {e}" for e in recorder.epochs]]
        if swap_target is None or name == f"swap_target_{swap_target}":
            paths.append(
                anonymizer_figures.evolution(
                    frames,
                    epochs,
                    out / f"fig3_evolution_{name}.png",
                    row_labels=("training sample", "validation sample"),
                    title=f"{name}: output after each epoch",
                )
            )
        picks = pair_picks  # indices into the whole data set, like the processed arrays
        paths.append(
            anonymizer_figures.pairs(
                data.images[picks],
                run["raw"][picks],
                out / f"fig4_pairs_{name}.png",
                title=f"{name}: 24 test inputs and the autoencoder's outputs",
            )
        )
        if run["released"] is not run["raw"]:
            paths.append(
                anonymizer_figures.pairs(
                    data.images[picks],
                    run["released"][picks],
                    out / f"fig4_pairs_{name}_released.png",
                    title=f"{name}: 24 test inputs and the released (substituted) images",
                )
            )
    return paths


def summary_rows(results: FacesResult) -> list[tuple[str, ...]]:
    """Rows of the printed Table 1: run, identity, expression (ours; per family; paper)."""
    p_key, u_key = results.private_key, results.utility_key

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    def families(row, key):
        return " / ".join(pct(v) for v in row[f"{key}_by_family"].values())

    def line(name, row, paper=None):
        return (
            name,
            pct(row[p_key]),
            families(row, p_key),
            pct(row[u_key]),
            families(row, u_key),
            pct(paper["identity_accuracy"]) if paper else "-",
            pct(paper["expression_accuracy"]) if paper else "-",
        )

    rows = [line("originals", results.baseline)]
    rows.append(line("standard, no substitution", results.standard_no_substitution))
    for row in results.standard:
        rows.append(line(f"standard + substitution, target {row['target_identity']}", row))
    for row in results.intertwined:
        rows.append(line(f"intertwined, target {row['target_identity']}", row, row.get("paper")))
    for row in results.code_match:
        name = f"code match (nearest target image), target {row['target_identity']}"
        rows.append(line(name, row, row.get("paper")))
    for row in results.swap:
        rows.append(line(f"identity swap, target {row['target_identity']}", row, row.get("paper")))
    for row in results.swap_code_nearest:
        name = f"identity swap + nearest in z, target {row['target_identity']}"
        rows.append(line(name, row, row.get("paper")))
    chance = results.chance
    paper_chance = results.paper_chance  # FERG's, shown only beside FERG-like data
    rows.append(
        (
            "chance",
            pct(chance[p_key]),
            "",
            pct(chance[u_key]),
            "",
            pct(paper_chance and paper_chance["identity_accuracy"]),
            pct(paper_chance and paper_chance["expression_accuracy"]),
        )
    )
    goal = results.goal
    rows.append(
        (
            "goal",
            f"<= {pct(goal.identity_accuracy_at_most)}",
            "",
            f">= {pct(goal.expression_accuracy_at_least)}",
            "",
            "",
            "",
        )
    )
    return rows
