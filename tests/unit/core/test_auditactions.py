"""The one table of audit action names (kanade.core.auditactions)."""

from __future__ import annotations

import ast
from pathlib import Path

from kanade.core import auditactions
from kanade.core.auditactions import ACTIONS, LEGACY, ROUTE_ACTIONS, canonical, subject_token

BACKEND = Path(auditactions.__file__).resolve().parents[1] / "backend"
# Calls that name an audit action in their first two positional arguments.
AUDIT_CALLS = {"publish_audit", "publish_audit_once", "audit_record", "_audit"}


def test_every_old_and_route_name_maps_to_a_current_one() -> None:
    assert set(LEGACY.values()) <= set(ACTIONS)
    assert set(ROUTE_ACTIONS.values()) <= set(ACTIONS)
    assert not set(LEGACY) & set(ACTIONS)  # an old name is never also a current one
    for old in LEGACY:
        assert canonical(canonical(old)) == canonical(old) in ACTIONS
    assert canonical("job.create") == "job.create"
    assert canonical("someone_elses_action") == "someone_elses_action"


def test_names_are_area_dot_verb() -> None:
    for name in ACTIONS:
        area, _, verb = name.partition(".")
        assert area.isidentifier() and verb.replace("_", "").isalpha(), name


def test_subject_tokens_are_safe() -> None:
    assert subject_token("job.create") == "job.create"
    assert subject_token("put_job") == "put_job"
    assert subject_token("a b.c*d") == "a_b.c_d"
    assert subject_token("..") == "_._._"


def _literal_actions(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name not in AUDIT_CALLS:
            continue
        for arg in node.args[:2]:
            found += _names(arg)
    return found


def _names(arg: ast.expr) -> list[tuple[int, str]]:
    """A literal name, or each branch of ``"a" if … else "b"``."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [(arg.lineno, arg.value)]
    if isinstance(arg, ast.IfExp):
        return _names(arg.body) + _names(arg.orelse)
    return []


def test_every_action_the_backend_writes_is_in_the_table() -> None:
    unknown = []
    seen = 0
    for path in sorted(BACKEND.rglob("*.py")):
        for line, action in _literal_actions(ast.parse(path.read_text(), str(path))):
            seen += 1
            if action not in ACTIONS:
                unknown.append(f"{path.relative_to(BACKEND)}:{line}: {action!r}")
    assert seen >= 30  # the scan does find the backend's records
    assert not unknown, "add these to kanade.core.auditactions.ACTIONS:\n" + "\n".join(unknown)
