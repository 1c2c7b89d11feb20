"""The duration grammar (SPEC §2.1): one table of accepted and rejected texts, round
trips, and junk that must only ever raise ValueError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from kanade.core.bounds import MAX_DURATION_S
from kanade.core.durations import Duration, format_duration, parse_duration

MS = timedelta(milliseconds=1)
LONGEST = timedelta(seconds=MAX_DURATION_S)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(days=14)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("  1h30m  ", timedelta(minutes=90)),
        ("1 h", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        ("0.1s", timedelta(milliseconds=100)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("0s", timedelta(0)),
        ("0ms", timedelta(0)),
        ("90m", timedelta(minutes=90)),
        ("0.001ms", timedelta(microseconds=1)),
    ],
)
def test_accepted(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5",
        "1.5",
        "-5s",
        "+5s",
        "10 minutes",
        "10min",
        "10M",
        "1H",
        "5 s s",
        "1h-30m",
        "1e3s",
        ".5s",
        "5.s",
        "s",
        "1y",
        "\uff11s",  # a full-width digit one: not an ASCII digit
        "30m1h",  # out of order
        "1h1h",  # duplicate unit
        "1s1s",
        "0.0000001s",  # non-zero but below 1 µs: never a silent zero
        "9" * 30 + "w",  # past timedelta's range
        "1h" + " " * 100,  # longer than the cap
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|microsecond"):
        parse_duration(text)


def test_error_message_names_the_text_and_the_grammar() -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration("10 minutes")
    assert str(exc.value) == (
        '"10 minutes" is not a duration (use e.g. 500ms, 30s, 10m, 6h, 1d or 1h30m)'
    )


def test_non_string_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration(30)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=5400), "1h30m"),
        (timedelta(seconds=1.5), "1s500ms"),
        (timedelta(days=1), "1d"),
        (timedelta(days=14), "14d"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=1), "0.001ms"),
    ],
)
def test_format(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))


@given(st.integers(min_value=0, max_value=int(MAX_DURATION_S) * 1000))
def test_round_trip_millisecond_granularity(ms: int) -> None:
    td = ms * MS
    assert parse_duration(format_duration(td)) == td


@given(st.timedeltas(min_value=timedelta(0), max_value=LONGEST))
def test_round_trip_any_non_negative_timedelta(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@given(st.timedeltas(min_value=timedelta(0), max_value=LONGEST))
def test_format_is_canonical(td: timedelta) -> None:
    text = format_duration(td)
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("text", ["3660d1ms", "365000d", "99999999999w"])
def test_longer_than_ten_years_is_refused(text: str) -> None:
    # now + 365000d overflows datetime arithmetic far from the document (issue #15).
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration(text)


def test_longer_than_ten_years_is_refused_as_timedelta() -> None:
    with pytest.raises(ValidationError, match="too long a duration"):
        _Doc(d=LONGEST + timedelta(microseconds=1))


@given(st.text(max_size=80))
def test_junk_text_only_raises_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert result >= timedelta(0)


@given(st.text(alphabet="0123456789.msdhw -+ ", max_size=30))
def test_near_miss_text_only_raises_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert result >= timedelta(0)
    assert text.strip(), "an empty text must never parse"


# --- the pydantic type ---------------------------------------------------------------------
class _Doc(BaseModel):
    d: Duration


def test_duration_type_accepts_text_and_timedelta() -> None:
    assert _Doc(d="1h30m").d == timedelta(minutes=90)
    assert _Doc(d=timedelta(seconds=3)).d == timedelta(seconds=3)


@pytest.mark.parametrize("value", [30, 1.5, True, 0])
def test_duration_type_rejects_numbers_with_a_hint(value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        _Doc.model_validate({"d": value})
    assert "'30s'" in str(exc.value)


@pytest.mark.parametrize("value", [None, [], {}, timedelta(seconds=-1), "10 minutes"])
def test_duration_type_rejects_other_values(value: object) -> None:
    with pytest.raises(ValidationError):
        _Doc.model_validate({"d": value})


def test_duration_type_serializes_canonically_in_json_mode() -> None:
    doc = _Doc(d="90m")
    assert doc.model_dump(mode="json") == {"d": "1h30m"}
    assert doc.model_dump() == {"d": timedelta(minutes=90)}
    assert doc.model_dump_json() == '{"d":"1h30m"}'


def test_duration_type_json_schema_is_a_pattern_string() -> None:
    prop = _Doc.model_json_schema()["properties"]["d"]
    assert prop["type"] == "string"
    assert "pattern" in prop
