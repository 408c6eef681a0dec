"""The edge client: register, upload a guard, ask the service for a decision.

Transient failures (connection refused or reset, timeouts, 429/502/503/504) are retried with
exponential backoff; a request that may have reached the server is retried only when repeating
it is harmless (everything but registration). Server errors raise :class:`ServiceRequestError`
carrying the service's stable ``detail`` string and its explanation.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from imgprivacy.errors import ImgPrivacyError

logger = logging.getLogger(__name__)

RETRY_STATUS = {429, 502, 503, 504}
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class ServiceRequestError(ImgPrivacyError):
    """The service answered with an error (or could not be reached after the retries)."""

    def __init__(self, status: int | None, detail: str, problems: list[str] | None = None):
        self.status = status
        self.detail = detail
        self.problems = list(problems or [])
        where = f"HTTP {status}" if status is not None else "no answer"
        text = f"{where}: {detail}"
        if self.problems:
            text += " - " + "; ".join(self.problems)
        super().__init__(text)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServiceRequestError:
        try:
            body = response.json()
            return cls(response.status_code, str(body.get("detail")), body.get("problems") or [])
        except (ValueError, AttributeError):
            return cls(
                response.status_code, response.reason_phrase or "error", [response.text[:200]]
            )


@dataclass(frozen=True)
class CheckResult:
    decision: str  # "share" or "block"
    share: bool
    reason: str
    policy: str
    alpha: float


class GuardClient:
    """HTTP client of the DOCL service.

    Parameters
    ----------
    server
        Base URL, e.g. ``http://127.0.0.1:8000``.
    token
        The API token from :meth:`register` (``None`` for registration and health only).
    retries
        Extra attempts after a transient failure; ``backoff`` seconds doubles each time.
    """

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ):
        self.server = server.rstrip("/")
        self.token = token
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(base_url=self.server, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GuardClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, idempotent: bool = True, **kwargs
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except NOT_SENT as exc:
                if last:
                    raise ServiceRequestError(
                        None, f"cannot reach {self.server}", [str(exc)]
                    ) from exc
                self._wait(attempt, None, f"{type(exc).__name__}")
                continue
            except MAYBE_SENT as exc:
                if last or not idempotent:
                    raise ServiceRequestError(
                        None, f"no answer from {self.server}", [str(exc)]
                    ) from exc
                self._wait(attempt, None, f"{type(exc).__name__}")
                continue
            if response.status_code in RETRY_STATUS and not last:
                self._wait(
                    attempt, response.headers.get("retry-after"), f"HTTP {response.status_code}"
                )
                continue
            if response.status_code >= 400:
                raise ServiceRequestError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        logger.warning("%s from %s; retrying in %.2fs", why, self.server, delay)
        time.sleep(delay)

    # -- API --------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._request("GET", "/healthz").json()

    def ready(self) -> dict:
        return self._request("GET", "/readyz").json()

    def register(self, name: str) -> str:
        """Create user ``name``; returns their token and uses it for later calls."""
        body = self._request("POST", "/v1/users", json={"name": name}, idempotent=False).json()
        self.token = body["token"]
        return self.token

    def me(self) -> dict:
        return self._request("GET", "/v1/me").json()

    def upload(self, name: str, model: str | os.PathLike | bytes) -> dict:
        """Upload (or replace) your guard ``name`` from a .safetensors path or its bytes."""
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        response = self._request(
            "PUT",
            f"/v1/models/{name}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return response.json()

    def models(self) -> list[dict]:
        return self._request("GET", "/v1/models").json()

    def delete(self, name: str) -> None:
        self._request("DELETE", f"/v1/models/{name}")

    def check_image(self, image: str | os.PathLike | bytes) -> CheckResult:
        """Ask whether a PNG/JPEG (path or bytes) may be shared."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        content_type = next(
            (t for magic, t in IMAGE_MAGIC.items() if data.startswith(magic)),
            "application/octet-stream",
        )
        response = self._request(
            "POST", "/v1/check", content=data, headers={"Content-Type": content_type}
        )
        return CheckResult(**response.json())

    def check_features(self, features) -> CheckResult:
        """Ask about one feature vector of the service's dimension D (values in [0, 1])."""
        values = np.asarray(features, dtype=np.float32).reshape(-1).tolist()
        return CheckResult(**self._request("POST", "/v1/check", json={"features": values}).json())
