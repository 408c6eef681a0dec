"""A client that hangs up mid-request is logged and counted as a disconnect (499), not a 500."""

from __future__ import annotations

import logging
import socket
import time

import httpx

from tests.service.conftest import in_process_service, unique

PARTIAL_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100  # the start of a body declared far longer


def _counted(metrics_text: str, status: int) -> bool:
    return any(
        line.startswith("imgprivacy_http_requests_total") and f'status="{status}"' in line
        for line in metrics_text.splitlines()
    )


def test_a_disconnect_while_the_body_streams_is_answered_inside_the_app(tmp_path, caplog):
    with in_process_service(tmp_path) as service:
        headers = service.token()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/check",
            "raw_path": b"/v1/check",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"service"),
                (b"authorization", headers["Authorization"].encode()),
                (b"content-type", b"image/png"),
                (b"content-length", b"5000"),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 80),
        }
        messages = [{"type": "http.request", "body": PARTIAL_PNG, "more_body": True}]
        sent = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        with caplog.at_level(logging.INFO, logger="imgprivacy.service"):
            service.portal.call(service.app, scope, receive, send)  # raises nothing
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
        assert "client disconnected during POST /v1/check" in caplog.text
        assert "unhandled error" not in caplog.text
        metrics = service.request("GET", "/metrics").text
        assert _counted(metrics, 499) and not _counted(metrics, 500)


def test_a_client_hanging_up_on_a_live_server_is_no_server_error(server):
    token = httpx.post(f"{server.url}/v1/users", json={"name": unique("gone")}).json()["token"]
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        "POST /v1/check HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: image/png\r\n"
        "Content-Length: 5000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + PARTIAL_PNG)  # then close with 4,892 bytes still owed
    deadline = time.monotonic() + 30
    metrics = ""
    while not _counted(metrics, 499):  # the server notices the closed connection on its own
        assert time.monotonic() < deadline, f"no 499 counted:\n{server.log()[-3000:]}"
        time.sleep(0.05)
        metrics = httpx.get(f"{server.url}/metrics").text
    assert not _counted(metrics, 500)
    log = server.log()
    assert "client disconnected during POST /v1/check" in log
    assert "unhandled error" not in log and "Exception in ASGI application" not in log
