"""Where the shared data lives: ``--data-dir`` > ``$IMGPRIVACY_DATA`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from imgprivacy.errors import DataNotFoundError

DATA_ENV_VAR = "IMGPRIVACY_DATA"


def repository_root() -> Path:
    """The project checkout this package runs from (src layout), else the working directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "imgprivacy").is_dir():
            return parent
    return Path.cwd()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data directory chosen by argument, environment, or the default.

    The default is ``../shared/data`` relative to the repository root.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return repository_root().parent / "shared" / "data"


def data_file(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``name`` inside the data directory; a clear error if it is missing."""
    path = resolve_data_dir(data_dir) / name
    if not path.is_file():
        raise DataNotFoundError(
            f"Expected the data file {name!r} at {path}, but it does not exist. "
            f"Point imgprivacy at the folder that holds it with --data-dir DIR or "
            f"the {DATA_ENV_VAR} environment variable."
        )
    return path
