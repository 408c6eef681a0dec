"""``imgprivacy serve``: check the configuration, then run the DOCL service with uvicorn.

Flags are written to the ``IMGPRIVACY_*`` environment, which ``create_app()`` reads in every
worker; a flag left out keeps the environment's (or the default) value. Before uvicorn starts,
every value is checked where the service checks it (``imgprivacy.service.settings``) and whatever
else a worker needs at start-up here (feature extractor, probe images, database, address), so a
wrong value ends with one message listing every problem, and nothing (no SQLite file) is left
behind.
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from imgprivacy.cli.common import FEATURE_NAMES, POLICY_NAMES, console, error_message
from imgprivacy.errors import ImgPrivacyError, InvalidInputError


def _opt(help_text: str, *names: str, **kwargs):
    return typer.Option(*names, help=help_text, show_default=False, **kwargs)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0 = any free port, printed at start).")
    ] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the database.")] = 1,
    database_url: Annotated[
        str | None,
        _opt("SQLAlchemy URL (default: sqlite:///imgprivacy-service.db)", "--database-url"),
    ] = None,
    admin_token: Annotated[
        str | None, _opt("Admin token (or IMGPRIVACY_ADMIN_TOKEN).", "--admin-token")
    ] = None,
    policy: Annotated[
        str | None, _opt("Guard policy (default: margin).", "--policy", parser=POLICY_NAMES)
    ] = None,
    alpha: Annotated[
        float | None, _opt("Privacy interval width in standard deviations.", "--alpha")
    ] = None,
    data_dir: Annotated[
        Path | None,
        _opt(
            "Folder with fashion_mnist.npz (probe images).",
            "--data-dir",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    features: Annotated[
        str | None,
        _opt(
            "Feature extractor every model must use.",
            "--features",
            parser=FEATURE_NAMES,
        ),
    ] = None,
    batch_max_size: Annotated[
        int | None, _opt("Checks per bank pass (1 = no batching).", "--batch-max-size", min=1)
    ] = None,
    bank: Annotated[
        str | None,
        _opt("Where the bank lives: memory (default) or ray (shard actors).", "--bank"),
    ] = None,
    ray_address: Annotated[
        str | None, _opt("Ray cluster for --bank ray (default: a local one).", "--ray-address")
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log", help="One JSON line per request.", show_default=False
        ),
    ] = None,
) -> None:
    """Serve the DOCL filter over HTTP (OpenAPI docs at /docs)."""
    from imgprivacy.service.server import run_server

    flags = {
        "database_url": database_url,
        "admin_token": admin_token,
        "policy": policy,
        "alpha": alpha,
        "data_dir": None if data_dir is None else str(data_dir),
        "feature_extractor": features,
        "batch_max_size": batch_max_size,
        "access_log": access_log,
        "bank": bank,
        "ray_address": ray_address,
    }
    flags = {name: value for name, value in flags.items() if value is not None}
    settings, problems = settings_and_problems(flags)
    check_settings(settings, workers=workers, problems=problems)
    check_address(host, port)
    for name, value in flags.items():
        os.environ[f"IMGPRIVACY_{name.upper()}"] = str(value)
    if settings.admin_token is None:
        console.print("[yellow]no admin token set: the /v1/admin endpoints refuse every request")
    run_server(host=host, port=port, workers=workers)


def load_settings(flags: dict):
    """The service settings from ``flags`` over the ``IMGPRIVACY_*`` environment."""
    from imgprivacy.service.settings import load_settings as service_settings

    return service_settings(**flags)


def settings_and_problems(flags: dict):
    """As :func:`load_settings`, with the bad values' problems returned beside the settings
    (each bad value replaced by its default) instead of raised."""
    from imgprivacy.service.settings import settings_and_problems as service_settings

    return service_settings(**flags)


def check_settings(settings, *, workers: int = 1, problems: list[str] | None = None) -> None:
    """Every problem a worker would hit while starting, collected and raised at once.

    The values themselves (policy, alpha, breadth ratio, probe settings, ...) are checked by
    the service's ``load_settings``; ``problems`` are the ones it found.

    Raises
    ------
    InvalidInputError
        Listing ``problems`` and what the settings do not find: the feature extractor (its
        weights), probe images, database URL, the bank (Ray installed; a cluster address for
        several workers).
    """
    problems = list(problems or [])
    checks = (
        _check_extractor,
        _check_probe_images,
        _check_database,
        partial(_check_bank, workers=workers),
    )
    for check in checks:
        try:
            check(settings)
        except (ImgPrivacyError, OSError) as exc:
            problems += getattr(exc, "problems", None) or [error_message(exc)]
    if problems:
        raise InvalidInputError(problems)


def _check_bank(settings, *, workers: int) -> None:
    if settings.bank == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InvalidInputError(
                "--bank ray needs Ray; install it with pip install 'imgprivacy[cluster]'"
            ) from None
        from imgprivacy.service.ray_bank import check_workers

        check_workers(workers=workers, bank=settings.bank, ray_address=settings.ray_address)


def _check_extractor(settings) -> None:
    import numpy as np

    from imgprivacy.features import get_extractor

    extractor = get_extractor(settings.feature_extractor)
    height, width = extractor.input_size
    shape = (1, height, width) if extractor.mode == "L" else (1, height, width, 3)
    extractor.transform(np.zeros(shape, np.uint8))  # loads the extractor's weights


def _check_probe_images(settings) -> None:
    from imgprivacy.data.paths import data_file

    if settings.probe_count > 0:
        data_file("fashion_mnist.npz", settings.data_dir)


def _check_database(settings) -> None:
    """The URL parses, its driver is installed and the database answers; a SQLite file is only
    looked at, never created here."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    given = settings.database_url
    try:
        url = make_url(given)
    except SQLAlchemyError:
        raise InvalidInputError(
            f"database URL {given!r} is not a SQLAlchemy URL; use e.g. "
            "sqlite:///imgprivacy-service.db or postgresql+psycopg://USER@HOST/DB"
        ) from None
    if url.get_backend_name() == "sqlite":
        _check_sqlite_file(url.database)
        return
    shown = url.render_as_string()  # the password hidden
    connect_args = {"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {}
    try:
        engine = create_engine(url, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as exc:
        raise InvalidInputError(f"database URL {shown!r}: {exc}; install its driver") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise InvalidInputError(f"cannot connect to the database {shown}: {reason}") from None
    finally:
        engine.dispose()


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_file(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    folder = path.absolute().parent
    if path.is_dir():
        raise InvalidInputError(f"the SQLite database {path} is a folder; name a file")
    if not folder.is_dir():
        raise InvalidInputError(
            f"the folder of the SQLite database {path} does not exist; create {folder}"
        )
    if not os.access(folder, os.W_OK):
        raise InvalidInputError(f"the folder of the SQLite database {path} is not writable")
    if path.is_file():
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise InvalidInputError(
                f"{path} is not a SQLite database; move it away or name another file"
            )


def check_address(host: str, port: int) -> None:
    """Refuse an address uvicorn could not listen on (unknown host, port in use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind(address)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --host "
            "or --port (0 = any free port)"
        ) from None
