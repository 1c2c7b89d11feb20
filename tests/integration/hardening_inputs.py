"""The hand-crafted bad inputs of issue #15 (items 1, 2, 3, 5, 9), sent to a real backend
process over HTTP; each answer timed, the backend's RSS read before and after.

Used by ``test_hardening_inputs.py`` (which asserts the contract) and runnable against any
backend to measure: ``python tests/integration/hardening_inputs.py URL VIEWER OPERATOR PID``
(two tokens and the backend's process id).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psutil

MiB = 1024 * 1024


@dataclass
class Answer:
    name: str
    status: int
    seconds: float
    error: str
    requests: int = 1


def _job(script: str) -> dict[str, Any]:
    return {"id": "big", "version": "1", "execute": {"shell": "sh", "script": script,
                                                    "timeout": "5s"}}  # fmt: skip


def _alias_bomb() -> bytes:
    return (
        "id: bomb\nversion: '1'\nexecute: {shell: sh, script: 'true', timeout: 5s}\n"
        f"description: &a {'x' * MiB}\n"
        "tags: [" + ", ".join(["*a"] * 1500) + "]\n"
    ).encode()


class RawAnswer:
    """What :func:`_raw_post` read back: enough of an ``httpx.Response`` for :func:`run`."""

    def __init__(self, status: int, text: str) -> None:
        self.status_code = status
        self.text = text


def _raw_post(base: str, path: str, total: int, *, chunked: bool) -> RawAnswer:
    """POST ``total`` bytes of body the way an attacker would: declared up front, or chunked
    without a length; stop sending as soon as the server answers or closes."""
    url = httpx.URL(base)
    sock = socket.create_connection((url.host, url.port or 80), timeout=30)
    try:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
        head = f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}{framing}\r\n\r\n".encode())
        chunk = b" " * (256 * 1024)
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
        sent = 0
        sock.setblocking(False)
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server answered: stop sending
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                sock.settimeout(30)
                sock.sendall(frame)
                sock.setblocking(False)
            except OSError:
                break  # the server closed the connection
            sent += len(chunk)
        sock.settimeout(30)
        if chunked and sent >= total:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")  # the last chunk: a server still reading gets all
        data = b""
        with contextlib.suppress(OSError):
            # Until the body is in: the server may send its head and its body as two
            # segments, and stopping after the head read an empty error message.
            while not _answer_read(data):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        status_line, _, rest = data.partition(b"\r\n")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        body = rest.partition(b"\r\n\r\n")[2]
        start, end = body.find(b"{"), body.rfind(b"}")  # past any chunk-size line
        text = body[start : end + 1] if 0 <= start < end else body
        return RawAnswer(status, text.decode(errors="replace"))
    finally:
        sock.close()


def _answer_read(data: bytes) -> bool:
    """Whether ``data`` holds a whole answer: its head and, by its Content-Length or up to
    the JSON object's closing brace (a chunked body), its body."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return b"}" in body


def inputs(reads: int) -> list[tuple[str, Callable[[httpx.Client], Any]]]:
    """``(name, send)`` per input; ``reads`` GETs per read endpoint for item 1."""
    pcs = [f"pc-{i}" for i in range(200_000)]
    yaml = {"content-type": "application/yaml"}
    return [
        ("1.reads_config", lambda c: _many(c, "/api/config", reads)),
        ("1.reads_groups", lambda c: _many(c, "/api/groups", reads)),
        ("1.reads_revocations", lambda c: _many(c, "/api/revocations", reads)),
        ("1.reads_agent_config", lambda c: _many(c, "/api/agents/pc-1/config", reads)),
        ("2.run_script_1.5MB",
         lambda c: c.post("/api/run", json={"script": "x" * (3 * MiB // 2),
                                            "target": {"pcs": ["pc-1"]}})),
        ("2.run_script_10MB",
         lambda c: c.post("/api/run", json={"script": "x" * (10 * MiB),
                                            "target": {"pcs": ["pc-1"]}})),
        ("2.run_200000_pcs",
         lambda c: c.post("/api/run", json={"script": "true", "target": {"pcs": pcs}})),
        ("2.job_script_1.5MB", lambda c: c.post("/api/jobs", json=_job("y" * (3 * MiB // 2)))),
        ("3.yaml_alias_bomb", lambda c: c.post("/api/jobs", content=_alias_bomb(), headers=yaml)),
        ("5.login_400MB_declared",
         lambda c: _raw_post(str(c.base_url), "/api/auth/login", 400 * MiB, chunked=False)),
        ("5.login_400MB_chunked",
         lambda c: _raw_post(str(c.base_url), "/api/auth/login", 400 * MiB, chunked=True)),
        ("9.options", lambda c: c.options("/api/jobs")),
        ("9.bad_path_param", lambda c: c.get("/api/jobs/not%20a%20slug")),
        ("9.dashboard", lambda c: c.get("/")),
    ]  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _many(client: httpx.Client, path: str, n: int) -> tuple[httpx.Response, int]:
    """``n`` GETs; ``(the first answer that is not 200, else the last; how many were sent)``."""
    r = client.get(path)
    sent = 1
    while sent < n and r.status_code == 200:
        r = client.get(path)
        sent += 1
    return r, sent


def run(
    url: str, viewer: str, operator: str, pid: int, reads: int = 1100, only: str = ""
) -> dict[str, Any]:
    """Reads as ``viewer`` (the issue: a viewer token is enough), writes as ``operator``;
    ``only``: the inputs whose name starts with it."""
    process = psutil.Process(pid)
    rss_before = process.memory_info().rss
    answers: list[Answer] = []
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:  # the peak, not just the end: a body held in memory is freed later
        while not done.wait(0.05):
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with (
        httpx.Client(base_url=url, headers=_bearer(viewer), timeout=120) as reader,
        httpx.Client(base_url=url, headers=_bearer(operator), timeout=120) as writer,
    ):
        for name, send in inputs(reads):
            if not name.startswith(only):
                continue
            client = reader if name.startswith(("1.", "9.")) else writer
            started = time.perf_counter()
            n = 1
            try:
                r = send(client)
                if isinstance(r, tuple):
                    r, n = r
                status, text = r.status_code, r.text
            except httpx.HTTPError as exc:  # a connection the server cut short
                status, text = 0, repr(exc)
            elapsed = time.perf_counter() - started
            try:
                error = str(json.loads(text).get("error", ""))
            except (ValueError, AttributeError):
                error = text[:200]
            answers.append(Answer(name, status, round(elapsed, 4), error[:300], n))
    done.set()
    sampler.join()
    rss_after = process.memory_info().rss
    return {
        "answers": [asdict(a) for a in answers],
        "rss_before_mb": round(rss_before / MiB, 1),
        "rss_peak_mb": round(peak[0] / MiB, 1),
        "rss_after_mb": round(rss_after / MiB, 1),
    }


if __name__ == "__main__":
    out = run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    for a in out["answers"]:
        print(json.dumps({"input": a["name"], **{k: v for k, v in a.items() if k != "name"}}))
    print(json.dumps({k: v for k, v in out.items() if k != "answers"}))
