"""The NUL check on query strings: which parameter it names, and what it lets through."""

from __future__ import annotations

import pytest

from kanade.backend.api.middleware.nul import nul_parameter


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (b"exec_id=ab%00cd", "exec_id"),
        (b"limit=5&q=x%00", "q"),
        (b"a=1&b=%00&c=%00", "b"),  # the first one
        (b"ab%00=1", "ab\\0"),  # in a name: shown escaped
        (b"exec_id=ab\x00cd", "exec_id"),  # raw, as a lax client may send it
    ],
)
def test_a_nul_names_its_parameter(query: bytes, named: str) -> None:
    assert nul_parameter(query) == named


@pytest.mark.parametrize("query", [b"", b"exec_id=abcd&q=%2500", b"q=%C3%A9", b"q=100%"])
def test_anything_else_passes(query: bytes) -> None:
    # %2500 is the text "%00", not a NUL.
    assert nul_parameter(query) is None
