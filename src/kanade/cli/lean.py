"""Option values without pydantic: typer (0.29) turns every option value into its type
through a pydantic ``TypeAdapter``, and importing pydantic and building the adapters cost a
``kanade run`` process about a third of its start-up (docs/performance.md, "CLI start-up").

For the plain types nearly every option has — text, numbers, lists of them — a direct
conversion gives the same value and a clear error naming the option; those parameters get
one. Choices (enums, literals), paths and files keep typer's own coercion. This reaches into
typer's parameter objects (``_runtime_param``, pinned typer version): should they change,
nothing is replaced and typer coerces as before.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam

_KINDS: dict[type, str] = {
    int: "an integer", float: "a number", str: "text", bool: "true or false",
}
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _as(kind: type, value: Any) -> Any:
    if isinstance(value, kind):
        return value
    if kind is bool:
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(value)
    return kind(value)


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """A value (or each value of a list) made a ``kind`` (str, int, float or bool), within
    the option's min and max."""

    kind: type

    def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
        if isinstance(value, (list, tuple)):
            return [self._one(v, param, ctx) for v in value]
        return self._one(value, param, ctx)

    def _one(self, value: Any, param: Any, ctx: Context) -> Any:
        try:
            out = _as(self.kind, value)
        except (TypeError, ValueError):
            raise BadParameter(f"{value!r} is not {_KINDS[self.kind]}", ctx=ctx,
                               param=param) from None  # fmt: skip
        low: Any = self.parameter_info.min
        high: Any = self.parameter_info.max
        if (low is not None and out < low) or (high is not None and out > high):
            lower = "" if low is None else f"{low} <= "
            upper = "" if high is None else f" <= {high}"
            raise BadParameter(f"{value!r} is not in {lower}x{upper}", ctx=ctx, param=param)
        return out


def plain_param(desc: Any) -> PlainParam | None:
    """A direct conversion for a parameter's type descriptor, when its type is plain."""
    if desc.is_choice or desc.is_file or desc.is_path or desc.is_tuple:
        return None
    annotation: Any = desc.annotation
    if desc.is_list:
        args: tuple[Any, ...] = getattr(annotation, "__args__", ())
        annotation = args[0] if len(args) == 1 else None
    if annotation not in _KINDS:
        return None
    return PlainParam(desc.parameter_info, desc.annotation, annotation)


def install() -> None:
    """Make typer build plain parameters' coercion here, and every other one as before.
    (Typer builds it lazily, per parameter, through ``typer.core.build_runtime_param`` —
    help and completion options included, which exist only once a context asks.)"""
    typer_core: Any = importlib.import_module("typer.core")
    original = getattr(typer_core, "build_runtime_param", None)
    if original is None or getattr(original, "kanade_lean", False):
        return

    def build(desc: Any) -> Any:
        return plain_param(desc) or original(desc)

    build.kanade_lean = True  # type: ignore[attr-defined]
    typer_core.build_runtime_param = build
