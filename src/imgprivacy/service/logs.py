"""Structured logs: one JSON object per line, and an ASGI middleware that logs each request."""

from __future__ import annotations

import json
import logging
import time
import uuid

access_logger = logging.getLogger("imgprivacy.service.access")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields}`` on one line."""

    RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self.RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


class AccessLogMiddleware:
    """Counts every request in the metrics and (optionally) logs it as one JSON line."""

    def __init__(self, app, *, metrics, log: bool):
        self.app = app
        self.metrics = metrics
        self.log = log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.count_request(scope["method"], template, status["code"])
            if self.log:
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status["code"],
                    extra={
                        "request_id": uuid.uuid4().hex[:12],
                        "method": scope["method"],
                        "route": template,
                        "status": status["code"],
                        "ms": round(1000 * (time.perf_counter() - started), 2),
                    },
                )
