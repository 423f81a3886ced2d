"""Query-string filters in the operator syntax the client sends (``eq.``, ``ilike.``, ``in.()``, ``gt.`` ...)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import bad_request

Predicate = Callable[[Any], bool]

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "neq": lambda a, b: a != b,
}
# created_at_gt=... style suffixes, as the client's _build_filter_params sends them.
_SUFFIXES = ("_gte", "_lte", "_gt", "_lt")


def _ilike(pattern: str) -> Predicate:
    glob = pattern.replace("*", "[*]").replace("%", "*").replace("_", "?").lower()
    return lambda value: value is not None and fnmatch.fnmatchcase(str(value).lower(), glob)


def parse_filter(expression: str) -> Predicate:
    """Turn ``"ilike.%fit%"``, ``"in.(a,b)"``, ``"eq.x"``, ``"gte.2025-01-01"`` or a bare value into a predicate.

    Example:
        >>> parse_filter("in.(completed,failed)")("failed")
        True
    """
    op, sep, arg = expression.partition(".")
    if not sep or op not in {"eq", "ilike", "like", "in", *_COMPARATORS}:
        return lambda value: value is not None and str(value) == expression
    if op == "eq":
        return lambda value: value is not None and str(value) == arg
    if op in {"ilike", "like"}:
        return _ilike(arg)
    if op == "in":
        if not (arg.startswith("(") and arg.endswith(")")):
            raise bad_request(f"Filter 'in.' needs a parenthesised list, got {expression!r}")
        options = {item.strip().strip('"') for item in arg[1:-1].split(",")}
        return lambda value: value is not None and str(value) in options
    compare = _COMPARATORS[op]
    return lambda value: value is not None and compare(str(value), arg)


def filter_records(
    records: Iterable[Mapping[str, Any]],
    params: Mapping[str, str],
    fields: Iterable[str],
) -> list[Mapping[str, Any]]:
    """Keep the records matching every filter in ``params`` on the given ``fields``.

    ``params`` may hold ``field=<operator expression>`` and ``field_gt``/``_lt``/``_gte``/``_lte`` forms.
    """
    predicates: list[tuple[str, Predicate]] = []
    allowed = set(fields)
    for key, expression in params.items():
        if key in allowed:
            predicates.append((key, parse_filter(expression)))
            continue
        for suffix in _SUFFIXES:
            base = key[: -len(suffix)]
            if key.endswith(suffix) and base in allowed:
                predicates.append((base, parse_filter(f"{suffix[1:]}.{expression}")))
                break
    return [r for r in records if all(pred(r.get(field)) for field, pred in predicates)]


def order_and_page(
    records: list[Mapping[str, Any]],
    order_by: str | None,
    order: str | None,
    offset: int,
    limit: int | None,
    default_order_by: str = "created_at",
) -> list[Mapping[str, Any]]:
    """Sort by ``order_by`` (``asc``/``desc``, default desc) and slice ``offset:offset+limit``."""
    key = order_by or default_order_by
    descending = (order or "desc").lower() != "asc"
    ordered = sorted(records, key=lambda r: (r.get(key) is None, str(r.get(key) or "")), reverse=descending)
    end = None if limit is None else offset + limit
    return ordered[offset:end]
