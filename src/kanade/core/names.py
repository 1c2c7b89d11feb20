"""Names a request refers to that match nothing known (a typo?), with the close matches a
person most likely meant (SPEC §5: typos are refused with close matches unless forced).

Pure: the caller says which names are known (pcs that ever reported, groups in KV or
reported by agents, jobs in the catalog).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

NameKind = Literal["pc", "group", "job"]

MAX_MATCHES: Final = 3
MATCH_CUTOFF: Final = 0.6
"""difflib's ratio a known name needs to be offered (``web-1`` for ``web1``, not ``db``)."""
LIST_KNOWN_UP_TO: Final = 8
"""Without a close match, the known names are listed when there are this few."""


def either(names: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def close_matches(name: str, known: Iterable[str]) -> list[str]:
    """Up to :data:`MAX_MATCHES` known names most like ``name``, best first."""
    return difflib.get_close_matches(name, sorted(set(known)), n=MAX_MATCHES, cutoff=MATCH_CUTOFF)


@dataclass(frozen=True)
class UnknownName:
    """One name that matches nothing known, where the request put it (``path``)."""

    kind: NameKind
    name: str
    path: str
    matches: tuple[str, ...]
    known: tuple[str, ...] = ()
    """All known names of this kind, kept only when there are few (to list them)."""

    @property
    def reason(self) -> str:
        text = f"no {self.kind} named {self.name!r} is known"
        if self.matches:
            return f"{text}; did you mean {either(self.matches)}?"
        if self.known:
            return f"{text} (known: {', '.join(self.known)})"
        return text

    def error(self) -> dict[str, str]:
        """The ``{path, reason}`` shape of every field error."""
        return {"path": self.path, "reason": self.reason}


def unknown_name(
    kind: NameKind, path: str, name: str, known: Collection[str]
) -> UnknownName | None:
    """``name`` (at ``path``) if it is not in ``known``, with its close matches."""
    if name in known:
        return None
    few = tuple(sorted(known)) if len(known) <= LIST_KNOWN_UP_TO else ()
    return UnknownName(kind, name, path, tuple(close_matches(name, known)), few)


def unknown_names(
    kind: NameKind, path: str, wanted: Sequence[str], known: Collection[str]
) -> list[UnknownName]:
    """Each of the list ``wanted`` (at ``path[i]``) that is not in ``known``."""
    found = (unknown_name(kind, f"{path}[{i}]", name, known) for i, name in enumerate(wanted))
    return [u for u in found if u is not None]


def describe(unknown: Sequence[UnknownName]) -> str:
    """One line naming every unknown name: ``unknown pc 'nosuch' (did you mean local-1?)``."""
    parts = []
    for u in unknown:
        hint = f" (did you mean {either(u.matches)}?)" if u.matches else ""
        parts.append(f"{u.kind} {u.name!r}{hint}")
    return "unknown " + ", ".join(parts)
