"""Request bodies are capped and JSON nesting is bounded while the body streams in.

:class:`BodyGuardMiddleware` sits in front of every route. A declared ``Content-Length`` above
the route's cap is refused at once, before a byte is read; otherwise it counts the bytes of each
``http.request`` message as the route reads them and refuses the request as soon as the count
passes the cap, so a hostile body costs at most the cap in memory whatever its size. The caps,
by route kind (:func:`body_cap`):

======================  ============================================================
``PUT /v1/models/...``  ``max_upload_bytes`` (the model file)
``POST /v1/check``      ``max_image_bytes`` + ``max_form_overhead_bytes`` (multipart framing)
everything else         ``max_body_bytes`` (small JSON bodies such as a registration)
======================  ============================================================

JSON bodies (``application/json``, ``application/*+json`` or no content type) are also scanned for
their nesting depth (:class:`JsonDepthScanner`): deeper than ``max_json_depth`` arrays/objects is
refused with 422 before any parser sees it, so no body can drive a JSON parser into a
``RecursionError``. Refusals use the service's error shape (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio

import numpy as np
from starlette.datastructures import Headers

from imgprivacy.service.errors import (
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unprocessable,
    error_response,
)

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEP = np.zeros(256, np.int8)  # +1 opens an array/object, -1 closes one
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


class JsonDepthScanner:
    """How deeply the JSON text fed so far nests arrays and objects, chunk by chunk.

    Only brackets outside strings count; a quote preceded by an odd run of backslashes does not
    end a string. Strings, escapes and depth carry over between chunks. Each chunk is scanned
    with a few vectorised passes (numpy), so a body of nothing but brackets costs milliseconds,
    not a Python step per byte. It does not validate JSON: where the text is invalid the
    parser stops there, before reaching any deeper nesting the scan might have missed.

    Examples
    --------
    >>> scanner = JsonDepthScanner(max_depth=2)
    >>> scanner.feed(b'{"a": [1, "]]]\\\\"[[[", ') and scanner.feed(b'2]}')
    True
    >>> JsonDepthScanner(max_depth=2).feed(b"[[[1]]]")
    False
    """

    def __init__(self, max_depth: int):
        self.max_depth = max_depth
        self.depth = 0
        self._in_string = False
        self._backslashes = 0  # length of the run of backslashes that ended the last chunk

    def feed(self, chunk: bytes) -> bool:
        """Scan the next chunk; False as soon as the nesting passes ``max_depth``."""
        if not chunk:
            return True
        text = np.frombuffer(chunk, np.uint8)
        quote = text == _QUOTE
        if self._backslashes or b"\\" in chunk:  # drop the escaped quotes
            at = np.arange(len(text))
            backslash = text == _BACKSLASH
            # Index of the last other byte at or before each position (a carried run counts).
            last_other = np.maximum.accumulate(np.where(backslash, -self._backslashes - 1, at))
            before = np.concatenate(([-self._backslashes - 1], last_other[:-1]))
            quote &= (at - 1 - before) % 2 == 0  # an even run of backslashes right before
            run = len(text) - 1 - int(last_other[-1])
            self._backslashes = run if backslash[-1] else 0
        step = _STEP[text]
        if self._in_string or quote.any():
            inside = (np.cumsum(quote) + self._in_string) % 2 == 1
            step[inside] = 0
            self._in_string = bool(inside[-1])
        depth = np.cumsum(step, dtype=np.int64)
        depth += self.depth
        self.depth = int(depth[-1])
        return int(depth.max()) <= self.max_depth


def body_cap(settings, method: str, path: str) -> tuple[str, int]:
    """(route kind, byte cap) of a request; see the module docstring."""
    if method == "PUT" and path.startswith("/v1/models/"):
        return "upload", settings.max_upload_bytes
    if method == "POST" and path == "/v1/check":
        return "check", settings.max_image_bytes + settings.max_form_overhead_bytes
    return "json", settings.max_body_bytes


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


def _too_large(cap: int, got: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Expected a request body of at most {cap} bytes on this endpoint, got {got}; "
        "send a smaller file (the caps are in the service's settings)."
    )


def _too_deep(max_depth: int) -> Unprocessable:
    return Unprocessable(
        f"Expected JSON nested at most {max_depth} arrays/objects deep, got deeper; send a flat "
        'body such as {"features": [0.1, 0.2, ...]} or {"name": "alice"}.',
        detail="json too deeply nested",
    )


def _stalled(idle: float, received: int) -> RequestTimeout:
    return RequestTimeout(
        f"Expected the rest of the request body, got nothing for {idle:g} s after {received} "
        "bytes; send the whole body at once (Content-Length or a chunked body with its end)."
    )


class BodyGuardMiddleware:
    """ASGI middleware: per-route body caps and JSON depth, enforced as the body streams."""

    def __init__(self, app, *, settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind, cap = body_cap(self.settings, scope["method"], scope["path"])
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            await error_response(_too_large(cap, f"{declared} bytes"))(scope, receive, send)
            return
        scanner = None
        if kind != "upload" and is_json(headers.get("content-type")):
            scanner = JsonDepthScanner(self.settings.max_json_depth)
        refusal: ServiceError | None = None
        received = 0
        started = False
        idle = self.settings.body_idle_timeout_seconds
        body_done = False

        async def guarded_receive():
            nonlocal received, refusal, body_done
            if refusal is not None:
                raise refusal
            if body_done or not idle:  # after the body only a disconnect comes: no timeout
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), idle)
                except TimeoutError:
                    refusal = _stalled(idle, received)
                    raise refusal from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > cap:
                    refusal = _too_large(cap, "more")
                elif scanner is not None and not scanner.feed(chunk):
                    refusal = _too_deep(scanner.max_depth)
                if refusal is not None:
                    raise refusal
            return message

        async def guarded_send(message):
            nonlocal started
            if refusal is not None and not started:
                return  # whatever the route made of the refused body, the refusal answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refusal is None or started:
                raise
        if refusal is not None and not started:
            await error_response(refusal)(scope, receive, send)
