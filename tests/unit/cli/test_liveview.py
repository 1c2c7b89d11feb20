"""Live output in the CLI (kanade.cli.liveview, kanade.cli.waiting with ``live``): the
stream parsed, lines printed as they complete and prefixed by pc when several, what the cap
left out said in place, and a result whose whole output was shown announced by its status
line alone; ``executions tail`` exits with the script's own code on one pc."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kanade.cli.client import CliError
from kanade.cli.commands.exec import tail_exit_code
from kanade.cli.liveview import LivePrinter, sse_events
from kanade.cli.waiting import follow_exec


def test_server_sent_events_are_parsed_pings_and_junk_skipped() -> None:
    lines = [
        ": ping", "", "event: hello", 'data: {"exec_id": "e1"}', "",
        "event: chunk", 'data: {"pc_id":', 'data: "a"}', "",
        "event: chunk", "data: not json", "", "data: {\"x\": 1}", "",
    ]  # fmt: skip
    assert list(sse_events(lines)) == [
        ("hello", {"exec_id": "e1"}),
        ("chunk", {"pc_id": "a"}),
        ("message", {"x": 1}),
    ]


def _chunk(pc: str, seq: int, **kw: Any) -> dict[str, Any]:
    return {"exec_id": "e1", "pc_id": pc, "seq": seq, **kw}


def _printer(prefix: bool) -> tuple[LivePrinter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return LivePrinter(prefix=prefix, out=out, err=err), out, err


def test_lines_print_once_complete_prefixed_by_pc_when_several() -> None:
    printer, out, err = _printer(prefix=True)
    printer.chunk(_chunk("a", 0, stdout="one\ntw"))
    printer.chunk(_chunk("b", 0, stdout="bee\n", stderr="oops\n"))
    assert out.getvalue() == "a | one\nb | bee\n"
    printer.chunk(_chunk("a", 1, stdout="o\nthree", final=True))
    assert out.getvalue() == "a | one\nb | bee\na | two\na | three\n"
    assert err.getvalue() == "b | oops\n"
    assert printer.complete("a") and not printer.complete("b")  # b has not ended
    assert printer.awaiting_final("b") and not printer.awaiting_final("c")


def test_one_pc_prints_plain_lines() -> None:
    printer, out, _ = _printer(prefix=False)
    printer.chunk(_chunk("a", 0, stdout="hello\nworld\n", final=True))
    assert out.getvalue() == "hello\nworld\n"


def test_what_the_cap_left_out_is_said_in_place_and_the_output_is_not_whole() -> None:
    printer, out, err = _printer(prefix=False)
    printer.chunk(_chunk("a", 0, stdout="first\npart"))
    printer.chunk(_chunk("a", 1, stdout="later\n", stdout_elided=5000, stderr_elided=10))
    printer.chunk(_chunk("a", 2, final=True))
    assert out.getvalue() == (
        "first\npart\n[… 4.9 KiB of stdout not shown live (rate cap); the result has the "
        "output …]\nlater\n"
    )
    assert "10 bytes of stderr not shown live" in err.getvalue()
    assert not printer.complete("a")


def test_a_lost_chunk_or_a_slow_reader_makes_the_live_output_not_whole() -> None:
    printer, _, _ = _printer(prefix=True)
    printer.chunk(_chunk("a", 1, stdout="x\n", final=True))  # seq 0 never came
    assert not printer.complete("a")
    printer.chunk(_chunk("b", 0, stdout="x\n", final=True))
    assert printer.complete("b")
    printer.dropped(3)
    assert not printer.complete("b")


def test_a_new_attempt_is_marked() -> None:
    printer, out, _ = _printer(prefix=False)
    printer.chunk(_chunk("a", 0, stdout="try\n"))
    printer.chunk(_chunk("a", 1, stdout="again\n", attempt=2))
    assert out.getvalue() == "try\n[… attempt 2 …]\nagain\n"


def test_tail_exits_with_the_scripts_own_code_on_one_pc() -> None:
    assert tail_exit_code([], True) == 0
    assert tail_exit_code([{"state": "finished", "exit_code": 3}], False) == 3
    assert tail_exit_code([{"state": "finished", "exit_code": -1}], False) == 1  # killed
    assert tail_exit_code([{"state": "finished", "exit_code": 125, "skipped": True}], False) == 1
    assert tail_exit_code([{"state": "no_result", "exit_code": None}], False) == 1
    two = [{"state": "finished", "exit_code": 3}, {"state": "finished", "exit_code": 0}]
    assert tail_exit_code(two, False) == 1


# --- the wait, with a live stream -------------------------------------------------------
def _sse(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for name, data in events:
        lines += [f"event: {name}", f"data: {json.dumps(data)}", ""]
    return lines


class LiveApi:
    """``GET /api/executions/{id}`` answers in turn; the live stream one scripted SSE body."""

    def __init__(self, answers: list[dict[str, Any]], stream: list[str] | CliError) -> None:
        self.answers = answers
        self.calls = 0
        self.stream = stream
        self.streamed: list[str] = []

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]

    def clone(self) -> LiveApi:
        return self

    @contextlib.contextmanager
    def stream_lines(self, path: str, **params: Any) -> Iterator[Iterator[str]]:
        self.streamed.append(path)
        if isinstance(self.stream, CliError):
            raise self.stream
        yield iter(self.stream)


def _row(pc: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"pc_id": pc, "state": state, **kw}


def test_a_run_shows_output_live_and_then_only_the_status_of_what_was_shown_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = {"status": "running", "results": [_row("a", "in_flight"), _row("b", "in_flight")]}
    done = {"status": "completed", "results": [
        _row("a", "finished", exit_code=0, stdout="a1\na2\n"),
        _row("b", "finished", exit_code=2, stdout="b-head\n", note="it said no"),
    ]}  # fmt: skip
    stream = _sse([
        ("hello", {"exec_id": "e1"}),
        ("chunk", _chunk("a", 0, stdout="a1\n")),
        ("chunk", _chunk("a", 1, stdout="a2\n", final=True)),
        ("chunk", _chunk("b", 0, stdout="b-live\n", stdout_elided=100)),
        ("chunk", _chunk("b", 1, final=True)),
        ("end", {"exec_id": "e1", "status": "completed"}),
    ])  # fmt: skip
    api = LiveApi([running, running, done], stream)
    followed = follow_exec(api, {"exec_id": "e1", "expected_count": 2}, json_mode=False,  # type: ignore[arg-type]
                           max_wait_s=10, live=True)  # fmt: skip
    out = capsys.readouterr().out
    assert not followed.ok and len(followed.rows) == 2
    assert api.streamed == ["/api/executions/e1/live"]
    assert out.index("a | a1") < out.index("a | a2") < out.index("a  exit 0")
    assert "| a1" not in out[out.index("a  exit 0") :]  # shown whole: not printed again
    # b lost bytes to the cap: its result's output is printed as before
    assert "b | b-live" in out and "  | b-head" in out and "note: it said no" in out


def test_a_result_printed_with_its_output_is_not_printed_again_by_late_chunks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The live stream can reach the CLI after the result (a watch on another replica, a
    # slow subscription): the result is printed with its output first, and the chunks that
    # follow must not print the same lines again (seen in `kanade up --cluster`'s test).
    release, delivered = threading.Event(), threading.Event()
    done = {"status": "completed", "results": [
        _row("a", "finished", exit_code=0, stdout="late-line\n"),
        _row("b", "finished", exit_code=0, stdout="b-line\n"),
    ]}  # fmt: skip

    def late_stream() -> Iterator[str]:
        release.wait(10)
        yield from _sse([
            ("chunk", _chunk("a", 0, stdout="late-line\npart")),
            ("chunk", _chunk("a", 1, stdout="ial\n", final=True)),
            ("end", {"exec_id": "e1", "status": "completed"}),
        ])  # fmt: skip
        delivered.set()  # every event above is queued for the printer

    class LateApi(LiveApi):
        def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
            release.set()
            assert delivered.wait(10)
            return done

        @contextlib.contextmanager
        def stream_lines(self, path: str, **params: Any) -> Iterator[Iterator[str]]:
            yield late_stream()

    api = LateApi([done], [])
    followed = follow_exec(api, {"exec_id": "e1", "expected_count": 2}, json_mode=False,  # type: ignore[arg-type]
                           max_wait_s=10, live=True)  # fmt: skip
    assert followed.ok
    out = capsys.readouterr().out
    assert out.count("late-line") == 1 and "partial" not in out, out
    assert "a  exit 0" in out and "b-line" in out


def test_a_settled_pc_drops_its_later_chunks_and_held_line() -> None:
    printer, out, _ = _printer(prefix=True)
    printer.chunk(_chunk("a", 0, stdout="held"))
    printer.settled("a")
    printer.chunk(_chunk("a", 1, stdout=" more\n", final=True))
    printer.chunk(_chunk("b", 0, stdout="b\n"))
    printer.finish()
    assert out.getvalue() == "b | b\n"


def test_a_stream_the_backend_refuses_leaves_the_wait_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = {"status": "completed", "results": [_row("a", "finished", exit_code=0, stdout="hi\n")]}
    api = LiveApi([done], CliError("no such route", status=404))
    followed = follow_exec(api, {"exec_id": "e1", "expected_count": 1}, json_mode=False,  # type: ignore[arg-type]
                           max_wait_s=10, live=True)  # fmt: skip
    assert followed.ok
    out = capsys.readouterr().out
    assert "a  exit 0" in out and "  | hi" in out
