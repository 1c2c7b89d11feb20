"""One page of a list query (newest first, limit/offset) and its total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Connection

Record = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Record]
    total: int
    limit: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def page(conn: Connection, query: Select[Any], limit: int, offset: int) -> Page:
    """Run ``query`` for one page; ``total`` counts every row it matches."""
    total = conn.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = conn.execute(query.limit(limit).offset(offset)).mappings()
    return Page([dict(r) for r in rows], int(total.scalar_one()), limit, offset)
