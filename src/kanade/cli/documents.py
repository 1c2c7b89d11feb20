"""Reading manifests from disk for the CLI: the only place ``script_file`` is resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kanade.cli.client import CliError
from kanade.core.models.job import JobManifest
from kanade.core.models.schedule import Schedule
from kanade.core.validation import DocumentInvalid, load_document, parse_job, parse_schedule


def _invalid(path: Path, exc: DocumentInvalid) -> CliError:
    return CliError(f"{path}: invalid {exc.kind}", details=[str(e) for e in exc.errors])


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_job_file(path: Path) -> JobManifest:
    """Load, validate strictly, and inline ``execute.script_file`` (relative to the manifest)."""
    raw = _read_bytes(path)
    try:
        data: Any = load_document(raw, kind="job")
        job = parse_job(data, strict=True, allow_script_file=True)
    except DocumentInvalid as exc:
        raise _invalid(path, exc) from exc
    script_file = job.execute.script_file
    if script_file is None:
        return job
    script_path = (path.parent / script_file).resolve()
    try:
        script = script_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: execute.script_file: cannot read {script_path}: {exc}") from exc
    execute = dict(data["execute"])
    execute.pop("script_file")
    execute["script"] = script
    try:
        return parse_job({**data, "execute": execute}, strict=True)
    except DocumentInvalid as exc:
        raise _invalid(path, exc) from exc


def read_schedule_file(path: Path) -> tuple[bytes, Schedule]:
    """The file's bytes (sent as written) and the schedule, validated strictly (job ids
    are checked by the backend)."""
    raw = _read_bytes(path)
    try:
        data = load_document(raw, kind="schedule")
        return raw, parse_schedule(data, strict=True)
    except DocumentInvalid as exc:
        raise _invalid(path, exc) from exc
