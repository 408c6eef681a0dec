"""``imgprivacy serve``: run the DOCL service with uvicorn.

Flags are written to the ``IMGPRIVACY_*`` environment, which ``create_app()`` reads in every
worker; a flag left out keeps the environment's (or the default) value.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from imgprivacy.cli.common import console


def _opt(help_text: str, *names: str):
    return typer.Option(*names, help=help_text, show_default=False)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port, printed at start).")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the database.")] = 1,
    database_url: Annotated[
        str | None,
        _opt("SQLAlchemy URL (default: sqlite:///imgprivacy-service.db)", "--database-url"),
    ] = None,
    admin_token: Annotated[
        str | None, _opt("Admin token (or IMGPRIVACY_ADMIN_TOKEN).", "--admin-token")
    ] = None,
    policy: Annotated[
        str | None, _opt("Guard policy (imgprivacy.docl.POLICIES).", "--policy")
    ] = None,
    alpha: Annotated[
        float | None, _opt("Privacy interval width in standard deviations.", "--alpha")
    ] = None,
    data_dir: Annotated[
        str | None, _opt("Folder with fashion_mnist.npz (probe images).", "--data-dir")
    ] = None,
    features: Annotated[
        str | None,
        _opt("Feature extractor every model must use (imgprivacy features list).", "--features"),
    ] = None,
    batch_max_size: Annotated[
        int | None, _opt("Checks per bank pass (1 = no batching).", "--batch-max-size")
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log", help="One JSON line per request.", show_default=False
        ),
    ] = None,
) -> None:
    """Serve the DOCL filter over HTTP (OpenAPI docs at /docs)."""
    from imgprivacy.docl import POLICIES
    from imgprivacy.service import ServiceSettings
    from imgprivacy.service.server import run_server

    flags = {
        "database_url": database_url,
        "admin_token": admin_token,
        "policy": policy,
        "alpha": alpha,
        "data_dir": data_dir,
        "feature_extractor": features,
        "batch_max_size": batch_max_size,
        "access_log": access_log,
    }
    for name, value in flags.items():
        if value is not None:
            os.environ[f"IMGPRIVACY_{name.upper()}"] = str(value)
    settings = ServiceSettings()  # fail here, before forking workers, on a bad value
    if settings.policy not in POLICIES:
        raise typer.BadParameter(
            f"Unknown policy {settings.policy!r}; valid: {', '.join(POLICIES)}"
        )
    if settings.admin_token is None:
        console.print("[yellow]no admin token set: the /v1/admin endpoints refuse every request")
    run_server(host=host, port=port, workers=workers)
