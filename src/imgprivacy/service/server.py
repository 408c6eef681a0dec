"""Run the service under uvicorn: the one place that starts a server process in the foreground.

``imgprivacy serve`` and ``python -m imgprivacy.service`` both end here; every other setting comes
from the ``IMGPRIVACY_*`` environment that :func:`imgprivacy.service.create_app` reads in each
worker.
"""

from __future__ import annotations

import logging

SERVICE_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "imgprivacy.service.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "uvicorn": {"level": "INFO"},
        "uvicorn.access": {"level": "WARNING"},  # the service logs each request itself
    },
}


def run_server(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve ``create_app()`` with uvicorn until interrupted (JSON logs on stderr)."""
    import uvicorn

    logging.getLogger("imgprivacy").setLevel(logging.INFO)
    uvicorn.run(
        "imgprivacy.service:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=SERVICE_LOGGING,
        access_log=False,
    )
