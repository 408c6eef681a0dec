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

from imgprivacy.client.model_file import check_guard_bytes
from imgprivacy.errors import ImgPrivacyError, InvalidInputError

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

    Raises
    ------
    InvalidInputError
        When ``server`` is not an ``http://`` or ``https://`` URL with a host.
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
        self.server = _service_url(server)
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
            except httpx.HTTPError as exc:  # not transient: a proxy, protocol or URL error
                raise ServiceRequestError(
                    None, f"request to {self.server} failed", [str(exc)]
                ) from exc
            if response.status_code in RETRY_STATUS and not last:
                self._wait(
                    attempt, response.headers.get("retry-after"), f"HTTP {response.status_code}"
                )
                continue
            if response.status_code >= 400:
                raise ServiceRequestError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kwargs):
        """The JSON body of a successful request (an error if the answer is not JSON)."""
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise _not_the_service(self.server, response) from exc

    def _check_result(self, body) -> CheckResult:
        try:
            return CheckResult(**body)
        except TypeError as exc:
            raise ServiceRequestError(
                200, f"unexpected answer from {self.server}/v1/check", [str(body)[:200]]
            ) from exc

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        logger.warning("%s from %s; retrying in %.2fs", why, self.server, delay)
        time.sleep(delay)

    # -- API --------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/healthz")

    def ready(self) -> dict:
        return self._json("GET", "/readyz")

    def register(self, name: str) -> str:
        """Create user ``name``; returns their token and uses it for later calls."""
        body = self._json("POST", "/v1/users", json={"name": name}, idempotent=False)
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise ServiceRequestError(
                200, f"unexpected answer from {self.server}/v1/users", [str(body)[:200]]
            )
        self.token = body["token"]
        return self.token

    def me(self) -> dict:
        return self._json("GET", "/v1/me")

    def upload(self, name: str, model: str | os.PathLike | bytes, *, check: bool = True) -> dict:
        """Upload (or replace) your guard ``name`` from a .safetensors path or its bytes.

        With ``check`` (the default) the file is checked here first (:func:`check_guard_bytes`:
        sigma and mu finite and > 0, finite weights), so a guard the service would refuse is
        not sent.

        Raises
        ------
        CorruptFileError, InvalidInputError
            From the local check.
        ServiceRequestError
            When the service refuses the upload or cannot be reached.
        """
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        if check:
            check_guard_bytes(data, source="upload" if isinstance(model, bytes) else str(model))
        return self._json(
            "PUT",
            f"/v1/models/{name}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def models(self) -> list[dict]:
        return self._json("GET", "/v1/models")

    def delete(self, name: str) -> None:
        self._request("DELETE", f"/v1/models/{name}")

    def check_image(self, image: str | os.PathLike | bytes) -> CheckResult:
        """Ask whether a PNG/JPEG (path or bytes) may be shared.

        Raises
        ------
        InvalidInputError
            When the bytes are not a PNG or JPEG (checked here, before anything is sent).
        ServiceRequestError
            When the service refuses the request or cannot be reached.
        """
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        content_type = next((t for magic, t in IMAGE_MAGIC.items() if data.startswith(magic)), None)
        if content_type is None:
            source = "the image" if isinstance(image, bytes) else str(image)
            raise InvalidInputError(
                f"Expected a PNG or JPEG image, but {source} starts with {data[:8]!r}. The "
                "service reads only these two formats: convert the file (e.g. with Pillow: "
                "Image.open(path).save('image.png'))."
            )
        body = self._json("POST", "/v1/check", content=data, headers={"Content-Type": content_type})
        return self._check_result(body)

    def check_features(self, features) -> CheckResult:
        """Ask about one feature vector of the service's dimension D (values in [0, 1])."""
        values = np.asarray(features, dtype=np.float32).reshape(-1).tolist()
        return self._check_result(self._json("POST", "/v1/check", json={"features": values}))


def _service_url(server: str) -> str:
    """``server`` without a trailing slash, once it is known to be an http(s) URL with a host."""
    try:
        url = httpx.URL(server)
        valid = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, TypeError):
        valid = False
    if not valid:
        raise InvalidInputError(
            f"Expected the service URL as http://HOST:PORT or https://HOST, got {server!r}. "
            "Pass it with --server or IMGPRIVACY_SERVER."
        )
    return str(server).rstrip("/")


def _not_the_service(server: str, response: httpx.Response) -> ServiceRequestError:
    return ServiceRequestError(
        response.status_code,
        f"{server} did not answer with JSON: is it an imgprivacy service?",
        [response.text[:200]],
    )
