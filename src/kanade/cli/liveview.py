"""Live output in the CLI (SPEC §4.12): an exec's live stream (``GET
/api/executions/{id}/live``, server-sent events) read in a thread while a wait polls the
results, and printed as lines — prefixed by pc when several run the script, plain when not
on a terminal — with what the rate cap left out said in place.

The printer also tells the wait, for each pc, whether its whole output was shown live (from
its first byte, nothing left out, nothing lost, its last chunk seen): then the result is
announced by its status line alone; otherwise the result's output is printed as before.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from kanade.cli import output
from kanade.cli.client import ApiClient, CliError

if TYPE_CHECKING:
    from rich.console import Console

MAX_QUEUED: Final = 10_000
"""Events held for the printer; beyond, the feed drops them (and says so)."""
MAX_PARTIAL: Final = 16 * 1024
"""A line without its newline is printed once this long."""
RETRY_S: Final = 1.0

Event = tuple[str, dict[str, Any]]


def sse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events from the stream's lines: ``(event, data)``, JSON data decoded;
    comments (pings) and undecodable data skipped."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = None
                if isinstance(payload, dict):
                    yield name, payload
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class LiveFeed:
    """An exec's live events, read by a daemon thread (on its own connection) into a
    bounded queue; a lost stream is opened again until the exec ends or :meth:`close`."""

    def __init__(self, api: ApiClient, exec_id: str) -> None:
        self._api = api.clone()
        self._path = f"/api/executions/{exec_id}/live"
        self._queue: deque[Event] = deque()  # one writer, one reader: deque ops are atomic
        self._stop = threading.Event()
        self.ended = threading.Event()
        self.lost = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._read, name="live-output", daemon=True)

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading (the thread ends with its stream; it never holds the process)."""
        self._stop.set()

    def drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                events.append(self._queue.popleft())
            except IndexError:
                break
        if self.lost:
            events.append(("dropped", {"chunks": self.lost, "where": "cli"}))
            self.lost = 0
        return events

    def wait_for_finals(self, printer: LivePrinter, pcs: Iterable[str], grace_s: float) -> None:
        """Give pcs that were sending live output up to ``grace_s`` for their last chunks
        (the result can arrive before them), printing what comes meanwhile."""
        give_up = time.monotonic() + grace_s
        waiting = [pc for pc in pcs if printer.awaiting_final(pc)]
        while waiting and time.monotonic() < give_up and not self.ended.is_set():
            printer.handle(self.drain())
            waiting = [pc for pc in waiting if printer.awaiting_final(pc)]
            time.sleep(0.05)
        printer.handle(self.drain())

    def _read(self) -> None:
        while not self._stop.is_set() and not self.ended.is_set():
            try:
                with self._api.stream_lines(self._path) as lines:
                    for name, data in sse_events(lines):
                        if self._stop.is_set():
                            return
                        if name == "end":
                            self.ended.set()
                        if len(self._queue) < MAX_QUEUED:
                            self._queue.append((name, data))
                        else:
                            self.lost += 1
            except CliError as exc:
                self.error = exc.message
                if exc.status is not None and 400 <= exc.status < 500:
                    return  # unknown exec, no right to read it, no such route: no retry
            self._stop.wait(RETRY_S)


@dataclass
class _Pc:
    next_seq: int = 0
    whole: bool = True  # every byte so far was shown
    final: bool = False
    attempt: int = 1


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


class LivePrinter:
    """Chunks → lines. A line is printed once its newline arrived (or the run ended, or it
    grew past :data:`MAX_PARTIAL`), prefixed ``pc | `` when ``prefix``."""

    def __init__(
        self,
        *,
        prefix: bool,
        json_mode: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.prefix = prefix
        self.json_mode = json_mode
        self._out = out
        self._err = err
        self._pcs: dict[str, _Pc] = {}
        self._partial: dict[tuple[str, str], str] = {}
        self._settled: set[str] = set()
        self._styled = out is None and output.is_terminal()
        # Set while a progress bar is drawn on the same screen: lines go above it.
        self.screen: Console | None = None

    # --- what the wait asks ---------------------------------------------------------------
    def seen(self, pc: str) -> bool:
        return pc in self._pcs

    def complete(self, pc: str) -> bool:
        """The whole of this pc's output was shown live (and its run ended)."""
        state = self._pcs.get(pc)
        return state is not None and state.whole and state.final

    def awaiting_final(self, pc: str) -> bool:
        state = self._pcs.get(pc)
        return state is not None and not state.final

    def settled(self, pc: str) -> None:
        """This pc's result was printed with its whole output: live chunks still on their
        way (a stream that reached the backend after the result) would print it twice, so
        they and any line held for its newline are dropped."""
        self._settled.add(pc)
        for key in [k for k in self._partial if k[0] == pc]:
            del self._partial[key]

    # --- events -----------------------------------------------------------------------------
    def handle(self, events: Iterable[Event]) -> None:
        for name, data in events:
            if name == "chunk":
                self.chunk(data)
            elif name == "dropped":
                self.dropped(int(data.get("chunks") or 0))

    def chunk(self, data: dict[str, Any]) -> None:
        pc = str(data.get("pc_id") or "?")
        if pc in self._settled:
            return
        state = self._pcs.setdefault(pc, _Pc())
        seq = int(data.get("seq") or 0)
        if seq != state.next_seq:
            state.whole = False  # a chunk lost on the way (or a stream opened late)
        state.next_seq = seq + 1
        attempt = int(data.get("attempt") or 1)
        if self.json_mode:
            output.json_line({"event": "chunk", **data})
        elif attempt != state.attempt:
            state.attempt = attempt
            self._flush(pc)
            self._note(pc, f"attempt {attempt}")
        for stream in ("stdout", "stderr"):
            elided = int(data.get(f"{stream}_elided") or 0)
            if elided:
                state.whole = False
                if not self.json_mode:
                    self._flush(pc, stream)
                    self._note(
                        pc,
                        f"{_bytes(elided)} of {stream} not shown live (rate cap); the "
                        "result has the output",
                        stream,
                    )
            if not self.json_mode:
                self._text(pc, stream, str(data.get(stream) or ""))
        if data.get("final"):
            state.final = True
            if not self.json_mode:
                self._flush(pc)

    def dropped(self, chunks: int) -> None:
        for state in self._pcs.values():
            state.whole = False
        if self.json_mode:
            output.json_line({"event": "dropped", "chunks": chunks})
        else:
            self._note(None, f"{chunks} live chunk(s) missed (reading too slowly)", "stderr")

    def finish(self) -> None:
        """Print every line still waiting for its newline."""
        for pc, stream in list(self._partial):
            self._flush(pc, stream)

    # --- printing ---------------------------------------------------------------------------
    def _text(self, pc: str, stream: str, text: str) -> None:
        if not text:
            return
        held = self._partial.pop((pc, stream), "") + text
        *lines, rest = held.split("\n")
        for line in lines:
            self._line(pc, stream, line)
        if len(rest) >= MAX_PARTIAL:
            self._line(pc, stream, rest)
        elif rest:
            self._partial[(pc, stream)] = rest

    def _flush(self, pc: str, stream: str | None = None) -> None:
        for s in (stream,) if stream else ("stdout", "stderr"):
            rest = self._partial.pop((pc, s), None)
            if rest:
                self._line(pc, s, rest)

    def _note(self, pc: str | None, text: str, stream: str = "stdout") -> None:
        self._line(pc, stream, f"[… {text} …]", note=True)

    def _line(self, pc: str | None, stream: str, line: str, *, note: bool = False) -> None:
        lead = f"{pc} | " if self.prefix and pc is not None else ""
        if self._styled:
            from rich.text import Text

            console = self.screen or (output.out if stream == "stdout" else output.err)
            text = Text(lead, style="bold cyan") if lead else Text()
            text.append(line, style="dim" if note else ("" if stream == "stdout" else "yellow"))
            console.print(text, soft_wrap=True)
            return
        fh = (self._out or sys.stdout) if stream == "stdout" else (self._err or sys.stderr)
        fh.write(f"{lead}{line}\n")
        fh.flush()
