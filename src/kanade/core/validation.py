"""The write boundary for user-authored documents (SPEC §2.3): :func:`load_document`,
:func:`parse_job`, :func:`parse_schedule` → a model or every problem as ``path: reason``.

Strict writer vs tolerant reader: docs/documents.md, "The write boundary".
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Final, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from kanade.core.durations import quoted
from kanade.core.models.job import (
    CTX_ALLOW_SCRIPT_FILE,
    CTX_KNOWN_JOB_IDS,
    RULE_ERROR_TYPE,
    RULES_KEY,
    JobManifest,
)
from kanade.core.models.schedule import Schedule

DOCUMENT: Final = "(document)"

# A manifest with an inline script is a few KiB; the cap keeps a hostile upload from
# costing more than a parse of a couple of MiB.
MAX_DOCUMENT_BYTES: Final = 2 * 1024 * 1024

# YAML aliases let a small document stand for a huge one (one 1 MiB string aliased 1 500
# times expands to 1.5 GB in whatever walks the result). A document is bounded as if its
# aliases were written out, and a manifest never needs more than a few aliases.
MAX_ALIASES: Final = 100

# Past this many, more lines stop helping; the count of the rest is still reported.
MAX_ERRORS: Final = 100

M = TypeVar("M", bound=BaseModel)
PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True)
class FieldError:
    """One problem: where (``path``) and what, for a human (``reason``)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DocumentInvalid(ValueError):
    """A document that cannot be accepted, with every problem found."""

    def __init__(self, errors: Sequence[FieldError], kind: str = "document") -> None:
        self.errors: list[FieldError] = list(errors)
        self.kind = kind
        # args mirror the constructor so the exception pickles (e.g. across processes).
        super().__init__(self.errors, kind)

    def __str__(self) -> str:
        count = len(self.errors)
        header = f"invalid {self.kind} ({count} error{'s' if count != 1 else ''}):"
        return "\n".join([header, *(f"  {e}" for e in self.errors)])

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of an HTTP 400 (and of ``--json`` CLI output)."""
        return {
            "error": f"invalid {self.kind}",
            "errors": [{"path": e.path, "reason": e.reason} for e in self.errors],
        }


# --- paths ---------------------------------------------------------------------------------
_WORD_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def format_path(parts: Sequence[PathPart]) -> str:
    """``("rollout", "waves", 0, "delay")`` → ``rollout.waves[0].delay``."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _WORD_RE.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += "[" + json.dumps(str(part)) + "]"
    return out or DOCUMENT


# --- loading -----------------------------------------------------------------------------------
def _kind_of(value: object) -> str:
    """What the user gave, in their words (YAML/JSON), for "must be X, not Y"."""
    if value is None:
        return "empty (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, date):  # YAML turns an unquoted 2026-01-01 into a date
        return "a date"
    return f"a {type(value).__name__}"


def _invalid(reason: str, kind: str) -> DocumentInvalid:
    return DocumentInvalid([FieldError(DOCUMENT, reason)], kind)


def _require_mapping(data: object, kind: str) -> dict[Any, Any]:
    if data is None:
        raise _invalid("is empty", kind)
    if not isinstance(data, dict):
        raise _invalid(f"must be a mapping of fields (key: value), not {_kind_of(data)}", kind)
    return data


def load_document(text: str | bytes, *, kind: str = "document") -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into the mapping of a document.

    ``kind`` only labels the error (``invalid job``). Raises :class:`DocumentInvalid`
    for anything that is not a single mapping: bad UTF-8, YAML syntax errors (with
    line and column), an empty document, a list or scalar at the top.
    """
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise _invalid(f"is larger than {MAX_DOCUMENT_BYTES} bytes", kind)
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _invalid(
                f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                kind,
            ) from None
    elif not isinstance(text, str):
        raise _invalid(f"must be text, not {_kind_of(text)}", kind)
    elif len(text) > MAX_DOCUMENT_BYTES:
        raise _invalid(f"is larger than {MAX_DOCUMENT_BYTES} characters", kind)

    try:
        data = _bounded_load(text, kind)
    except DocumentInvalid:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        raise _invalid(f"is not valid YAML{where}: {what}", kind) from None
    except yaml.YAMLError as exc:  # e.g. ReaderError: control characters
        raise _invalid(f"is not valid YAML: {exc}", kind) from None
    except RecursionError:
        raise _invalid("is nested too deeply", kind) from None
    except Exception as exc:  # PyYAML has a few non-YAMLError failure modes on junk
        raise _invalid(f"could not be read as YAML ({type(exc).__name__})", kind) from None
    return _require_mapping(data, kind)


# libyaml when present: the 2 MiB a document may have are composed in C, in milliseconds.
_Loader: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TooBig(Exception):
    pass


class _Expansion:
    """The composed node graph measured as if every alias were written out. An alias is a
    second path to a node already seen; sizes are memoised per node, so a wide alias graph
    costs its number of nodes to measure, not its expansion."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()
        self.aliases = 0

    def size(self, node: yaml.Node) -> int:
        key = id(node)
        if key in self.sizes:
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(f"uses more than {MAX_ALIASES} YAML aliases")
            return self.sizes[key]
        if key in self.open:
            raise _TooBig("contains a recursive YAML alias")
        self.open.add(key)
        if isinstance(node, yaml.ScalarNode):
            size = len(str(node.value)) + 1
        elif isinstance(node, yaml.SequenceNode):
            size = 2 + sum(self.size(child) for child in node.value)
        else:
            size = 2 + sum(self.size(k) + self.size(v) for k, v in node.value)
        self.open.discard(key)
        self.sizes[key] = size
        if size > MAX_DOCUMENT_BYTES:
            raise _TooBig(
                f"is larger than {MAX_DOCUMENT_BYTES} characters once its aliases are expanded"
            )
        return size


def _bounded_load(text: str, kind: str) -> Any:
    """``yaml.safe_load`` with the alias count and the expanded size bounded on the
    composed nodes, before any Python object is built from them."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _Expansion().size(node)
        except _TooBig as exc:
            raise _invalid(str(exc), kind) from None
        return loader.construct_document(node)
    finally:
        loader.dispose()


# --- unknown fields ----------------------------------------------------------------------------
def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _unknown_reason(key: object, known: Collection[str]) -> str:
    if not isinstance(key, str):
        return f"unknown field (the key {quoted(key)} is not text)"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f'unknown field (did you mean "{close[0]}"?)' if close else "unknown field"


def _scan_model(
    data: dict[Any, Any], model: type[BaseModel], path: Path, errors: list[FieldError]
) -> dict[Any, Any]:
    """Report the unknown keys of ``data`` and return a copy without them."""
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    kept: dict[Any, Any] = {}
    for key, value in data.items():
        info = fields.get(key) if isinstance(key, str) else None
        if info is None:
            part = key if isinstance(key, str) else str(key)
            errors.append(FieldError(format_path((*path, part)), _unknown_reason(key, fields)))
            continue
        kept[key] = _scan_value(value, info.annotation, (*path, key), errors)
    return kept


def _scan_value(value: Any, annotation: Any, path: Path, errors: list[FieldError]) -> Any:
    """Follow ``value`` into nested models, lists and dicts of models, as typed."""
    tp = _strip_annotated(annotation)
    origin = get_origin(tp)
    args = [_strip_annotated(a) for a in get_args(tp)]
    if _is_model(tp):
        return _scan_model(value, tp, path, errors) if isinstance(value, dict) else value
    if origin in (Union, types.UnionType):
        # Only unions with one model member are walked (``X | None``, and the like);
        # with several, which one applies is exactly what validation will decide.
        models = [a for a in args if _is_model(a)]
        if len(models) == 1:
            return _scan_value(value, models[0], path, errors)
        return value
    if origin in (list, Sequence) and args and isinstance(value, list):
        return [_scan_value(item, args[0], (*path, i), errors) for i, item in enumerate(value)]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _scan_value(v, args[1], (*path, k), errors) for k, v in value.items()}
    return value


# --- pydantic errors → FieldError -------------------------------------------------------------
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    msg = err["msg"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        return "required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of fields (key: value), not {_kind_of(value)}"
    if kind == "list_type":
        return f"must be a list, not {_kind_of(value)}"
    if kind == "string_type":
        if isinstance(value, bool | int | float):
            return f"must be text, not {_kind_of(value)}; write it in quotes"
        return f"must be text, not {_kind_of(value)}"
    if kind == "bool_type":
        return f"must be true or false, not {quoted(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, not {quoted(value)}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a finite number, not {quoted(value)}"
    if kind == "literal_error":
        return f"{quoted(value)} is not one of {ctx.get('expected', '')}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "recursion_loop":
        return "is nested too deeply (or refers to itself)"
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg.replace("Input should be", "must be")


def _convert(err: ErrorDetails) -> Iterator[FieldError]:
    loc: Path = tuple(err["loc"])
    if err["type"] == "invalid_key":
        # A non-text key on a model: the unknown-field scan reports it (strict mode) or
        # drops it (tolerant mode), so pydantic's version would only repeat it.
        return
    if loc and loc[-1] == "[key]":
        # The key itself is wrong (``env: {1: x}``); show the key as a key, not an index.
        key_path = (*loc[:-2], str(loc[-2])) if len(loc) >= 2 else loc[:-1]
        yield FieldError(format_path(key_path), f"the key {_reason(err)}")
        return
    if err["type"] == RULE_ERROR_TYPE:
        rules = (err.get("ctx") or {}).get(RULES_KEY) or ()
        for at, reason in rules:
            yield FieldError(format_path((*loc, *at)), str(reason))
        return
    yield FieldError(format_path(loc), _reason(err))


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every error of a pydantic ``ValidationError`` as ``path: reason``."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        out.extend(_convert(err))
    return out


# --- parsing -----------------------------------------------------------------------------------
def _capped(errors: list[FieldError]) -> list[FieldError]:
    unique = list(dict.fromkeys(errors))
    if len(unique) <= MAX_ERRORS:
        return unique
    rest = len(unique) - MAX_ERRORS
    return [*unique[:MAX_ERRORS], FieldError(DOCUMENT, f"{rest} more error(s) not shown")]


def _parse(model: type[M], kind: str, data: object, *, strict: bool, context: dict[str, Any]) -> M:
    mapping = _require_mapping(data, kind)
    unknown: list[FieldError] = []
    cleaned = _scan_model(mapping, model, (), unknown)
    errors = list(unknown) if strict else []
    try:
        result = model.model_validate(mapping if strict else cleaned, context=context)
    except ValidationError as exc:
        errors.extend(field_errors(exc))
    except RecursionError:
        errors.append(FieldError(DOCUMENT, "is nested too deeply"))
    except Exception as exc:
        # Validators only raise ValueError by design; this net keeps the promise that
        # bad input yields DocumentInvalid and nothing else should one slip through.
        errors.append(FieldError(DOCUMENT, f"could not be validated ({type(exc).__name__})"))
    if errors:
        raise DocumentInvalid(_capped(errors), kind)
    return result


def parse_job(data: object, *, strict: bool = True, allow_script_file: bool = False) -> JobManifest:
    """Validate a job manifest (the output of :func:`load_document`, or any object).

    ``allow_script_file`` is for the CLI only, which inlines the file before upload.
    """
    return _parse(
        JobManifest,
        "job",
        data,
        strict=strict,
        context={CTX_ALLOW_SCRIPT_FILE: allow_script_file},
    )


def parse_schedule(
    data: object, *, strict: bool = True, known_job_ids: Collection[str] | None = None
) -> Schedule:
    """Validate a schedule. With ``known_job_ids``, ``job_id`` must be one of them."""
    context: dict[str, Any] = {}
    if known_job_ids is not None:
        context[CTX_KNOWN_JOB_IDS] = known_job_ids
    return _parse(Schedule, "schedule", data, strict=strict, context=context)
