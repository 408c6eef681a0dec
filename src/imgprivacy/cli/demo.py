"""``imgprivacy demo service|anonymizer``: short demos that start what they need and end by themselves."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from imgprivacy.cli.common import (
    POLICY_NAMES,
    DataDirOption,
    SeedOption,
    ShowsChoices,
    console,
    progress_bar,
)
from imgprivacy.cli.reproduce import rich_progress

demo_app = typer.Typer(
    help="Live demos that start what they need and stop by themselves.", no_args_is_help=True
)


@demo_app.command("service", cls=ShowsChoices)
def service_demo(
    out: Path = typer.Option(Path("reports/docl-service"), "--out", help="Folder for demo.json."),
    replay: int = typer.Option(
        1000, "--replay", help="MNIST and Fashion-MNIST images replayed (each)."
    ),
    clients: int = typer.Option(8, "--clients", help="Concurrent HTTP clients during the replay."),
    policy: str | None = typer.Option(
        None, "--policy", help="Guard policy (default: the service's).", parser=POLICY_NAMES
    ),
    alpha: float | None = typer.Option(
        None, "--alpha", help="Privacy interval width (default: the service's)."
    ),
    train_per_user: int = typer.Option(800, "--train-per-user", help="Training images per user."),
    epochs: int = typer.Option(30, "--epochs", help="Epochs of every user's guard."),
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
) -> None:
    """Start the service with SQLite, let the paper's 10 MNIST users train on their own digit and
    upload through the edge client, replay MNIST and Fashion-MNIST uploads by random users over
    HTTP, and print the decisions beside the in-process reproduction's."""
    from imgprivacy.fileio import write_atomic
    from imgprivacy.reports.results import percent
    from imgprivacy.reproduce.service_demo import run_service_demo

    with progress_bar() as progress:
        result = run_service_demo(
            data_dir=data_dir,
            seed=seed,
            policy=policy,
            alpha=alpha,
            replay=replay,
            clients=clients,
            train_per_user=train_per_user,
            epochs=epochs,
            progress=rich_progress(progress),
        )
    table = Table(title=f"DOCL service demo: policy {result.policy}, alpha {result.alpha:g}")
    for column in (
        "uploads",
        "count",
        "measure",
        "HTTP",
        "in-process, same uploads",
        "reproduction protocol",
    ):
        table.add_column(column)
    for row in result.rows:
        table.add_row(
            row["uploads"],
            str(row["count"]),
            row["measure"],
            percent(row["http"]),
            percent(row["in_process_same_uploads"]),
            percent(row["reproduction_protocol"]),
        )
    console.print(table)
    console.print(
        f"{result.checks} checks over HTTP at {result.checks_per_second:.0f}/s with {clients} clients; "
        f"decisions differing from in-process: {result.disagreements}; "
        f"largest |mu|,|sigma| difference edge vs in-process training: {result.max_stat_difference:.3g}; "
        f"in-process nearest-model accuracy {percent(result.reproduction['overall_accuracy'])}"
    )
    examples = Table(title="What unauthorised, malformed and hostile requests get")
    for column in ("request", "status", "body"):
        examples.add_column(column, overflow="fold")
    for label, status, body in result.examples:
        examples.add_row(escape(label), str(status), escape(body))
    console.print(examples)
    write_atomic(
        Path(out) / "demo.json", json.dumps(result.__dict__, indent=2, default=str).encode()
    )
    if result.disagreements or result.max_stat_difference > 1e-4:
        console.print("[red]HTTP and in-process results disagree")
        raise typer.Exit(1)


@demo_app.command("anonymizer")
def anonymizer_demo(
    out: Path = typer.Option(
        Path("reports/anonymizer-demo"), "--out", help="Folder for the model and PNG."
    ),
    data_dir: DataDirOption = None,
    seed: SeedOption = 0,
) -> None:
    """Train the warp-game anonymizer in its selected configuration on pen-digits (the writer is
    private), release the test images, and show what a fresh random forest reads from them beside
    the originals, with a before / after picture."""
    from imgprivacy.reports.results import percent
    from imgprivacy.reproduce.anonymizer_demo import run_anonymizer_demo

    with progress_bar() as progress:
        result = run_anonymizer_demo(
            out=out, data_dir=data_dir, seed=seed, progress=rich_progress(progress)
        )
    table = Table(
        title=f"Anonymizer demo ({result.configuration}): a fresh random forest on the test images"
    )
    for column in ("images", "writer (hidden)", "digit (kept)"):
        table.add_column(column)
    table.add_row("originals", percent(result.writer_original), percent(result.digit_original))
    table.add_row("released", percent(result.writer_released), percent(result.digit_released))
    table.add_row(
        "released: per-cluster vote (Bayes attacker)", percent(result.writer_cluster_vote), ""
    )
    table.add_row("chance", percent(result.writer_chance), percent(0.1))
    console.print(table)
    console.print(
        f"before / after picture: {result.figure}; model: {result.model} "
        f"({result.seconds / 60:.1f} min)"
    )
