"""Target resolution (SPEC §1.2, §4.1): which subjects a target is published on, which pcs
it is expected to reach. One rule for the exec service, the scheduler and the kill path."""

from __future__ import annotations

from kanade.core import subjects
from kanade.core.models.target import Target


def command_subjects(target: Target, job_id: str) -> list[str]:
    """One subject per address: ``all``, else each group and each pc (one message each)."""
    if target.all:
        return [subjects.command_subject("all", None, job_id)]
    return [subjects.command_subject("group", g, job_id) for g in target.groups] + [
        subjects.command_subject("pc", p, job_id) for p in target.pcs
    ]


def expected_pcs(target: Target, alive: list[tuple[str, list[str]]]) -> list[str]:
    """Alive agents the target matches, plus every explicitly listed pc."""
    matched = {pc for pc, groups in alive if target.matches(pc, groups)}
    return sorted(matched | set(target.pcs))
