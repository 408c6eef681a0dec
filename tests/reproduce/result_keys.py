"""The keys of every reproduction's results.json, stored once, and the recursive key paths of a
results file to compare against them.

``results_keys.json`` holds, per experiment, the sorted key paths of the results.json its tiny
test run writes: ``/data/train_images`` for a nested key, ``[]`` for "any element of a list"
(``/sweep[]/lambda``). The file was written from the dict-returning reproductions; the typed
results must keep every path, so a reader of an older results.json reads a new one unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

STORED = Path(__file__).with_name("results_keys.json")


def key_paths(value, prefix: str = "") -> set[str]:
    """Every key path in a JSON value (dicts by key, list elements merged under ``[]``)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add(f"{prefix}/{key}")
            paths |= key_paths(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def stored_keys(experiment: str) -> set[str]:
    return set(json.loads(STORED.read_text())[experiment])


def assert_same_keys(results_json: Path, experiment: str) -> None:
    """The key paths of ``results_json`` are exactly the stored ones (a diff names the rest)."""
    found = key_paths(json.loads(Path(results_json).read_text()))
    expected = stored_keys(experiment)
    assert found == expected, {
        "missing": sorted(expected - found),
        "unexpected": sorted(found - expected),
    }
