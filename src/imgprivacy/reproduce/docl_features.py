"""What the feature-based reproductions (``docl-cifar10``, ``docl-faces``) share.

Each trains several configurations on one :class:`DoclData` with the protocol of
:mod:`imgprivacy.reproduce.docl_protocol`, then writes ``results.json`` (the first configuration's
results at the top level, as ``docl-mnist`` does, the others under ``runs``), the paper's figures
and the printed tables. :func:`operating_point` picks, per Guard policy, the alpha that best
meets the goal (>= 95% of others' private images blocked AND >= 95% of non-sensitive
images shared).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TypeVar

from rich.table import Table

from imgprivacy.docl.config import AutoencoderConfig
from imgprivacy.docl.evaluate import GuardPoint
from imgprivacy.progress import ProgressFactory
from imgprivacy.reports import docl_figures
from imgprivacy.reports.results import percent, write_results
from imgprivacy.reproduce.docl_data import DoclData
from imgprivacy.reproduce.docl_protocol import ProtocolSettings, evaluate_configuration
from imgprivacy.reproduce.docl_results import (
    FeatureData,
    FeatureResult,
    FeatureRun,
    OperatingPoint,
    run_fields,
)

GOAL = 0.95  # blocked and shared fractions asked of one Guard operating point
WIDE_ALPHAS = tuple(
    round(1.0 + 0.25 * i, 2) for i in range(9)
)  # [1, 3]: the paper's [1, 2] and beyond
R = TypeVar("R", bound=FeatureResult)


def operating_point(points: list[GuardPoint]) -> OperatingPoint:
    """The sweep point maximising min(blocked, shared), flagged if it meets the goal."""
    best = max(points, key=lambda p: (min(p.accuracy, p.acceptance_rate), p.owner_share_rate))
    return OperatingPoint(
        **dataclasses.asdict(best),
        meets_goal=best.accuracy >= GOAL and best.acceptance_rate >= GOAL,
    )


def run_configurations(
    data: DoclData,
    configs: dict[str, AutoencoderConfig],
    *,
    settings: ProtocolSettings,
    progress: ProgressFactory | None = None,
) -> dict[str, FeatureRun]:
    """:func:`evaluate_configuration` for each named config, with operating points added."""
    runs = {}
    for label, config in configs.items():
        run = evaluate_configuration(
            data, config, settings=settings, label=label, progress=progress
        )
        runs[label] = FeatureRun(
            **run_fields(run),
            operating_points={p: operating_point(v) for p, v in run.guard.items()},
        )
    return runs


def feature_data(data: DoclData) -> FeatureData:
    """What ``results.json`` records about the data of a feature-based experiment."""
    return FeatureData(
        name=data.name,
        feature_extractor=data.feature_extractor,
        feature_dim=data.input_dim,
        train_images=len(data.train_y),
        test_images=len(data.test_y),
        non_sensitive_images=len(data.public_x),
        non_sensitive_source=data.public_name,
    )


def finish(results: R, *, out: Path, started: float, titles: dict[str, str]) -> R:
    """``results`` with its figures (written to ``out``) and run time; writes results.json."""
    figures = [str(p) for p in write_figures(results, out, titles=titles)]
    results = dataclasses.replace(results, figures=figures, seconds=time.perf_counter() - started)
    write_results(results, out)
    return results


def write_figures(results: FeatureResult, out: Path, *, titles: dict[str, str]) -> list[Path]:
    """Paper Fig. 2-5 for the main run (Fig. 2 shows every run)."""
    paths = [
        docl_figures.per_class_accuracy(
            out / "fig2_per_class_accuracy.png",
            series={label: r.per_class_accuracy for label, r in results.runs.items()},
            paper_overall=results.paper.get("overall_accuracy"),
            title=titles["fig2"],
        ),
        docl_figures.accuracy_vs_acceptance(
            out / "fig3_accuracy_vs_acceptance.png", guard=results.guard, title=titles["fig3"]
        ),
        docl_figures.scalability(
            out / "fig5_scalability.png", per_size=results.scalability, title=titles["fig5"]
        ),
    ]
    if results.adversary is not None:
        paths.append(
            docl_figures.adversary_matrices(
                out / "fig4_adversary.png",
                matrices=results.adversary,
                alpha=results.adversary_alpha,
            )
        )
    return paths


def summary_tables(
    results: FeatureResult, *, title: str, paper_accuracy: dict[str, str]
) -> list[Table]:
    """Accuracy per run beside the paper, Guard operating points, adversaries."""
    runs = results.runs
    accuracy = Table(title=title)
    for column in (
        "run",
        "model",
        "overall accuracy",
        "worst class",
        "mean AUC",
        "train s/user",
        "paper",
    ):
        accuracy.add_column(column)
    for label, run in runs.items():
        cfg = run.config
        accuracy.add_row(
            label,
            f"{_dims(cfg)}, {cfg.optimizer}, {cfg.epochs} ep",
            percent(run.overall_accuracy),
            percent(min(run.per_class_accuracy)),
            percent(run.mean_auc),
            f"{run.train_seconds_per_user:.2f}",
            paper_accuracy.get(label, "-"),
        )
    guard = Table(
        title=f"Best Guard operating point per policy (blocked / shared / owners' own shared; "
        f"goal >= {GOAL:.0%} blocked and shared) - {results.data.non_sensitive_source}"
    )
    guard.add_column("policy")
    for label in runs:
        guard.add_column(label)
    for policy in results.guard:
        cells = []
        for run in runs.values():
            point = run.operating_points[policy]
            mark = " (goal met)" if point.meets_goal else ""
            cells.append(
                f"alpha={point.alpha:g}: {percent(point.accuracy)} / "
                f"{percent(point.acceptance_rate)} / {percent(point.owner_share_rate)}{mark}"
            )
        guard.add_row(policy, *cells)
    tables = [accuracy, guard]
    if results.adversary is not None:
        attack = Table(
            title=f"Adversaries (alpha={results.adversary_alpha:g}, "
            f"{results.adversary_epochs} epochs), worst pair off the diagonal: the adversary's "
            "uploads of the victim's images blocked / the victim's own uploads shared"
        )
        attack.add_column("policy")
        for label in runs:
            attack.add_column(label)
        for policy in results.adversary:
            attack.add_row(
                policy,
                *(
                    f"{percent(r.adversary_min_blocked_off_diagonal[policy])} / "
                    f"{percent(r.worst_victim_shared(policy))}"
                    for r in runs.values()
                ),
            )
        tables.append(attack)
    return tables


def _dims(cfg: AutoencoderConfig) -> str:
    widths = list(cfg.layer_widths)
    dims = [cfg.input_dim, *widths, cfg.hidden_dim, *reversed(widths), cfg.input_dim]
    return "-".join(str(d) for d in dims)
