"""The duration grammar without pydantic: the same limits as the field types, and a
process that only reads durations (the CLI, the agent) never loads pydantic for it."""

from __future__ import annotations

import subprocess
import sys

from kanade.core import bounds, duration_text, durations


def test_the_grammar_and_the_field_types_share_their_limits() -> None:
    assert duration_text.MAX_DURATION_S == bounds.MAX_DURATION_S
    assert durations.parse_duration is duration_text.parse_duration
    assert durations.format_duration is duration_text.format_duration


def test_reading_a_duration_loads_no_pydantic() -> None:
    probe = ("import sys\nfrom kanade.core.duration_text import parse_duration\n"
             "parse_duration('1h30m')\nprint('pydantic' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"
