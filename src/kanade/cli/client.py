"""HTTP client for the backend API, turning every failure into one line that says what to do."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import httpx

from kanade.cli.credentials import stored_token

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    """An error to print as one line (plus optional detail lines) and exit non-zero."""

    def __init__(
        self,
        message: str,
        *,
        details: list[str] | None = None,
        code: int = 1,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.code = code
        self.status = status  # the HTTP status, when the backend answered with an error


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("KANADE_URL") or DEFAULT_URL).rstrip("/")


def _error_details(body: Any) -> list[str]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        out = []
        for e in body["errors"]:
            if isinstance(e, dict):
                out.append(f"{e.get('path', '?')}: {e.get('reason', e)}")
            else:
                out.append(str(e))
        return out
    return []


class ApiClient:
    def __init__(
        self, url: str | None = None, *, token: str | None = None, timeout: float = 15.0
    ) -> None:
        self.url = resolve_url(url)
        # Explicit token, then $KANADE_TOKEN, then what `kanade login` stored for this URL.
        token = token or os.environ.get("KANADE_TOKEN") or stored_token(self.url)
        self._token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def clone(self) -> ApiClient:
        """Another client to the same backend as the same caller (one per thread)."""
        return ApiClient(self.url, token=self._token, timeout=self._http.timeout.connect or 15.0)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot reach the kanade backend at {self.url} ({exc}); start it with "
                "`kanade up`, or point --url / $KANADE_URL at a running backend"
            ) from exc
        except httpx.TimeoutException as exc:
            raise CliError(f"the backend at {self.url} did not answer in time ({exc})") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url}{path} failed: {exc}") from exc
        if resp.status_code >= 400:
            raise _error_for(resp)
        return resp

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the JSON answer, or a one-line :class:`CliError`."""
        resp = self._send(method, path, **kwargs)
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_clean(params))

    def get_bytes(self, path: str, *, timeout: float = 120.0) -> bytes:
        """A raw (non-JSON) answer, e.g. a full script output."""
        return self._send("GET", path, timeout=timeout).content

    @contextlib.contextmanager
    def stream_lines(self, path: str, **params: Any) -> Iterator[Iterator[str]]:
        """The lines of a streamed answer (server-sent events), read as they come: no read
        timeout, the stream ends when the backend ends it; errors as :meth:`request`."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", path, params=_clean(params), timeout=timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_for(resp)
                yield resp.iter_lines()
        except httpx.ConnectError as exc:
            raise CliError(f"cannot reach the kanade backend at {self.url} ({exc})") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url}{path} failed: {exc}") from exc

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=json, params=_clean(params))

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=_clean(params))

    def send_document(self, method: str, path: str, raw: bytes) -> Any:
        """A document as the user wrote it (YAML or JSON): the backend parses and validates."""
        return self.request(method, path, content=raw,
                            headers={"content-type": "application/yaml"})


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _error_for(resp: httpx.Response) -> CliError:
    try:
        body: Any = resp.json()
    except ValueError:
        body = {"error": resp.text.strip() or resp.reason_phrase}
    message = body.get("error") if isinstance(body, dict) else None
    message = message or f"HTTP {resp.status_code}"
    if resp.status_code == 401:
        message = f"{message} — log in with `kanade login` or set $KANADE_TOKEN"
    elif resp.status_code == 403:
        message = f"{message} — your role does not allow this"
    elif resp.status_code == 503:
        message = f"{message} — the backend is up but not ready (is the broker running?)"
    return CliError(message, details=_error_details(body), status=resp.status_code)
