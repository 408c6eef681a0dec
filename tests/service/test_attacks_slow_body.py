"""A client that starts a request body and then sends nothing more is refused (408) once the
body has been idle for ``body_idle_timeout_seconds``; the wait for a disconnect after a complete
body is not cut short."""

from __future__ import annotations

import asyncio
import json

import anyio

from imgprivacy.service import ServiceSettings
from imgprivacy.service.limits import BodyGuardMiddleware
from tests.service.conftest import FEATURES

SCOPE = {
    "type": "http",
    "method": "PUT",
    "path": "/v1/models/m",
    "headers": [(b"content-type", b"application/octet-stream")],
}


async def _echo_app(scope, receive, send):
    """Reads the whole body, then waits for one more message (a disconnect), then answers."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    after = await receive()
    payload = json.dumps({"got": len(body), "after": after["type"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def _serve(messages, *, idle: float) -> tuple[int, dict]:
    """Run the guard over ``messages`` (None: never answers) and return (status, JSON body)."""
    settings = ServiceSettings(feature_extractor=FEATURES, body_idle_timeout_seconds=idle)
    guard = BodyGuardMiddleware(_echo_app, settings=settings)
    queue = list(messages)
    sent = []

    async def receive():
        item = queue.pop(0) if queue else None
        if item is None:
            await asyncio.Event().wait()  # a stalled client
        if item == "slow-disconnect":
            await asyncio.sleep(2 * idle)
            return {"type": "http.disconnect"}
        return item

    async def send(message):
        sent.append(message)

    async def main():
        with anyio.fail_after(30):
            await guard(SCOPE, receive, send)

    anyio.run(main)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_a_body_that_stops_arriving_is_refused_with_408():
    status, body = _serve(
        [{"type": "http.request", "body": b"abc", "more_body": True}, None], idle=0.2
    )
    assert status == 408
    assert body["detail"] == "request timeout"
    assert "after 3 bytes" in body["problems"][0]


def test_after_a_complete_body_the_wait_for_a_disconnect_is_not_timed():
    status, body = _serve(
        [{"type": "http.request", "body": b"abcd", "more_body": False}, "slow-disconnect"],
        idle=0.2,
    )
    assert (status, body) == (200, {"got": 4, "after": "http.disconnect"})
