"""Options, logging and progress bars shared by every CLI command."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from imgprivacy.data.paths import DATA_ENV_VAR
from imgprivacy.errors import ImgPrivacyError

console = Console(stderr=True)

OutOption = Annotated[
    Path, typer.Option("--out", help="Folder for figures (PNG) and results.json.")
]
QuickOption = Annotated[
    bool, typer.Option("--quick", help="Reduced run (fewer epochs/images) for a fast look.")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_ENV_VAR,
        help="Folder with the shared data sets (default: ../shared/data next to the repository).",
        show_default=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:1...")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]


class ImgPrivacyApp(typer.Typer):
    """The root app: our own errors end the command with their message and exit code 2,
    not a traceback (they already say what was expected and how to fix it)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except ImgPrivacyError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise SystemExit(2) from None


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    logging.getLogger("imgprivacy").setLevel(logging.INFO if verbose <= 0 else level)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A rich progress display on stderr (hidden when stderr is not a terminal)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as progress:
        yield progress
