"""HTTP client for the backend API, turning every failure into one line that says what to do.

Built on the standard library's ``http.client`` (one kept-alive connection per client):
importing httpx cost the CLI a third of its start-up, and a verb makes a handful of
plain JSON requests to one host (docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from kanade.cli.credentials import stored_token

DEFAULT_URL = "http://127.0.0.1:8080"
_IDLE_REUSE_S = 2.0
"""A kept-alive connection idle longer than this is replaced before a request: servers
close idle ones (uvicorn after 5 s) and a request must not race that close."""


class CliError(Exception):
    """An error to print as one line (plus optional detail lines) and exit non-zero.

    ``status`` and ``body`` are the API's answer when the error is one (a verb may turn a
    known answer into its own words, e.g. a 409 into "pass --replace")."""

    def __init__(
        self,
        message: str,
        *,
        details: list[str] | None = None,
        code: int = 1,
        status: int | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.code = code
        self.status = status
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        """The error as ``--json`` prints it."""
        out: dict[str, Any] = {"error": self.message, "exit_code": self.code}
        if self.details:
            out["details"] = self.details
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            out["errors"] = self.body["errors"]
        if self.status is not None:
            out["status"] = self.status
        return out


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("KANADE_URL") or DEFAULT_URL).rstrip("/")


QUERY_OPTIONS: dict[str, str] = {
    "query.limit": "--limit",
    "query.offset": "--offset",
    "query.n": "-n",
    "query.status": "--status",
    "query.state": "--state",
    "query.since": "--since",
    "query.job_id": "--job",
    "query.pc_id": "--pc",
    "query.exec_id": "--exec",
    "query.timeout": "--timeout",
    "query.group": "--group",
}
"""Query parameters and the options that set them, the same in every verb."""


def option_for(path: str, options: Mapping[str, str]) -> str:
    """An API field path (``query.n``, ``target.pcs[0]``) in the CLI's words (``-n``,
    ``--pc``) when ``options`` names it; the path itself otherwise."""
    for api_path in sorted(options, key=len, reverse=True):
        if path == api_path or path.startswith((api_path + ".", api_path + "[")):
            return options[api_path]
    return path


def _error_details(body: Any, options: Mapping[str, str]) -> list[str]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        out = []
        for e in body["errors"]:
            if isinstance(e, dict):
                out.append(f"{option_for(str(e.get('path', '?')), options)}: "
                           f"{e.get('reason', e)}")
            else:
                out.append(str(e))
        return out
    return []


class ApiClient:
    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 15.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.url = resolve_url(url)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--url {self.url!r}: must be http://HOST[:PORT] or https://…")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port
        except ValueError:
            raise CliError(f"--url {self.url!r}: the port is not a number") from None
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        # API field paths → the CLI options that set them, for error details.
        self.options: dict[str, str] = {**QUERY_OPTIONS, **(options or {})}
        # Explicit token, then $KANADE_TOKEN, then what `kanade login` stored for this URL.
        token = token or os.environ.get("KANADE_TOKEN") or stored_token(self.url)
        self._token = token
        self.headers: dict[str, str] = {"accept": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def clone(self) -> ApiClient:
        """Another client to the same backend as the same caller (one per thread)."""
        return ApiClient(self.url, token=self._token, timeout=self._timeout,
                         options=self.options)  # fmt: skip

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """The kept-alive connection (and True) or a new one (False)."""
        conn = self._conn
        if conn is not None and time.monotonic() - self._last_used < _IDLE_REUSE_S:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        self.close()
        self._conn = self._new_connection(timeout)
        return self._conn, False

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            import ssl  # only for an https backend: it costs start-up

            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + quote(path, safe="/:@!$&'()*+,;=-._~")
        query = urlencode(_clean(params or {}), doseq=True)
        return f"{target}?{query}" if query else target

    def _exchange(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            conn, reused = self._connection(timeout)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                # The server closed a kept-alive connection under us: nothing was done,
                # retry once on a fresh one (a fresh one failing is a real failure).
                if reused and attempt == 1:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            self._last_used = time.monotonic()
            if resp.will_close:
                self.close()
            return resp.status, resp.reason, data
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        target = self._target(path, params)
        sent = dict(self.headers)
        if headers:
            sent.update(headers)
        body = content
        if json is not None:
            body = jsonlib.dumps(json).encode()
            sent["content-type"] = "application/json"
        try:
            status, reason, data = self._exchange(
                method, target, body, sent, self._timeout if timeout is None else timeout
            )
        except (ConnectionRefusedError, socket.gaierror) as exc:
            raise CliError(
                f"cannot reach the kanade backend at {self.url} ({exc}); start it with "
                "`kanade up`, or point --url / $KANADE_URL at a running backend"
            ) from None
        except TimeoutError as exc:
            raise CliError(f"the backend at {self.url} did not answer in time ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"request to {self.url}{path} failed: {exc!r}") from None
        if status >= 400:
            raise error_for(status, reason, data, self.options)
        return status, data

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the JSON answer, or a one-line :class:`CliError`."""
        _, data = self._send(method, path, **kwargs)
        return jsonlib.loads(data) if data else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def get_bytes(self, path: str, *, timeout: float = 120.0) -> bytes:
        """A raw (non-JSON) answer, e.g. a full script output."""
        return self._send("GET", path, timeout=timeout)[1]

    @contextlib.contextmanager
    def stream_lines(self, path: str, **params: Any) -> Iterator[Iterator[str]]:
        """The lines of a streamed answer (server-sent events), read as they come on a
        connection of their own: no read timeout, the stream ends when the backend ends
        it; errors as :meth:`request`."""
        conn = self._new_connection(self._timeout)
        try:
            try:
                conn.request("GET", self._target(path, params),
                             headers={**self.headers, "accept": "text/event-stream"})  # fmt: skip
                resp = conn.getresponse()
                if resp.status >= 400:
                    raise error_for(resp.status, resp.reason, resp.read(), self.options)
                if conn.sock is not None:
                    conn.sock.settimeout(None)
            except (ConnectionRefusedError, socket.gaierror) as exc:
                raise CliError(f"cannot reach the kanade backend at {self.url} ({exc})") from None
            except (OSError, http.client.HTTPException) as exc:
                raise CliError(f"request to {self.url}{path} failed: {exc!r}") from None

            def lines() -> Iterator[str]:
                try:
                    while raw := resp.readline():
                        yield raw.decode("utf-8", "replace").rstrip("\r\n")
                except (OSError, http.client.HTTPException) as exc:
                    raise CliError(f"the stream from {self.url}{path} broke: {exc!r}") from None

            yield lines()
        finally:
            conn.close()

    def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=json, params=params)

    def put(self, path: str, json: Any = None, **params: Any) -> Any:
        return self.request("PUT", path, json=json, params=params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def send_document(self, method: str, path: str, raw: bytes) -> Any:
        """A document as the user wrote it (YAML or JSON): the backend parses and validates."""
        return self.request(method, path, content=raw,
                            headers={"content-type": "application/yaml"})


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def error_for(status: int, reason: str, data: bytes, options: Mapping[str, str]) -> CliError:
    try:
        body: Any = jsonlib.loads(data)
    except ValueError:
        body = {"error": data.decode(errors="replace").strip() or reason}
    message = body.get("error") if isinstance(body, dict) else None
    message = str(message or f"HTTP {status}")
    if status == 401:
        message = f"{message} — log in with `kanade login` or set $KANADE_TOKEN"
    elif status == 403:
        message = f"{message} — your role does not allow this"
    elif status == 503:
        message = f"{message} — the backend is up but not ready (is the broker running?)"
    elif isinstance(body, dict) and body.get("overridable_by") == "force":
        message += (
            "; check the spelling, or pass --force to use it anyway"
            if status == 400
            else "; pass --force to send it anyway"
        )
    return CliError(message, details=_error_details(body, options), status=status, body=body)
