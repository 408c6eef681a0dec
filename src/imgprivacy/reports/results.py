"""Writing a reproduction's numbers (results.json) and printing ours beside the paper's."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imgprivacy.fileio import write_atomic


def _plain(value):
    """JSON-friendly copy: numpy arrays and scalars become lists and floats."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def results_json(results) -> dict:
    """What results.json holds for ``results``: a reproduction's result dataclass as
    ``dataclasses.asdict`` (its field names are the keys) or a dict, with numpy values and NaN
    made JSON-friendly."""
    if dataclasses.is_dataclass(results) and not isinstance(results, type):
        results = dataclasses.asdict(results)
    return _plain(results)


def write_results(results, out: str | Path) -> Path:
    """Write :func:`results_json` to ``out/results.json`` atomically and return its path."""
    text = json.dumps(results_json(results), indent=2)
    return write_atomic(Path(out) / "results.json", text.encode())


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def comparison_table(title: str, rows: list[tuple[str, str, str]], *, columns=None) -> Table:
    """A three-column table: quantity, ours, paper."""
    table = Table(title=title)
    for name in columns or ("quantity", "ours", "paper"):
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    return table


def print_tables(tables: list[Table]) -> None:
    console = Console()
    for table in tables:
        console.print(table)
