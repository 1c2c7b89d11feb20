"""Helpers for the document-validation tests: a valid document with changes applied, and
the field errors a parser reports for a bad one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kanade.core.validation import DocumentInvalid


def changed(valid: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``valid`` with ``a__b`` path changes applied (value ``...`` deletes the key)."""
    data = copy.deepcopy(valid)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def field_errors(
    parse: Callable[..., object], kind: str, data: object, **kw: Any
) -> dict[str, str]:
    """``parse(data)`` must reject a ``kind`` document: its errors, path → reason."""
    with pytest.raises(DocumentInvalid) as exc:
        parse(data, **kw)
    assert exc.value.kind == kind
    return {e.path: e.reason for e in exc.value.errors}
