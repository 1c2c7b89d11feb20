"""Reading job and schedule files: strict validation, ``script_file`` inlined, errors that
name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kanade.cli.client import CliError
from kanade.cli.documents import read_job_file, read_schedule_file

JOB = """\
id: hello
version: "1"
execute:
  shell: sh
  script_file: hello.sh
  timeout: 30s
"""

SCHEDULE = """\
id: nightly
job_id: hello
when:
  calendar:
    at: "02:00"
target:
  all: true
"""


def test_read_job_file_inlines_script_file_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "hello.sh").write_text("echo hi\n")
    (tmp_path / "job.yaml").write_text(JOB)
    job = read_job_file(tmp_path / "job.yaml")
    assert job.execute.script == "echo hi\n" and job.execute.script_file is None


def test_read_job_file_names_an_unreadable_script_file(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    with pytest.raises(CliError, match=r"execute\.script_file: cannot read"):
        read_job_file(tmp_path / "job.yaml")


def test_read_schedule_file_returns_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCHEDULE)
    raw, schedule = read_schedule_file(path)
    assert raw == SCHEDULE.encode() and schedule.id == "nightly"


@pytest.mark.parametrize("reader", [read_job_file, read_schedule_file])
def test_readers_name_a_missing_or_invalid_file(
    tmp_path: Path, reader: Callable[[Path], object]
) -> None:
    with pytest.raises(CliError, match="cannot read"):
        reader(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: 1\n")
    with pytest.raises(CliError, match=r"bad\.yaml: invalid") as caught:
        reader(bad)
    assert caught.value.details
