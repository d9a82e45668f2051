"""Provides the shape checks connectors run on API payloads: each surprise is a ParseError.

Every check takes the value and ``where``, the path of the value in the payload, named
from the API down (``"zendesk ticket export: tickets[3].id"``), and returns the value
typed, or raises ``ParseError`` naming that path. The ``opt_`` variants let ``null`` (or
a missing key) through as None, or as the empty value given. ``cursor_instant`` reads
what a connector stored itself, where nothing unreadable is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.errors import ParseError
from monitor.events import parse_instant


def fail(where: str, problem: str) -> ParseError:
    """The ParseError for ``problem`` at ``where``, for a connector's own checks to raise."""
    return ParseError(f"{where}: {problem}")


def obj(value: Any, where: str) -> Mapping[str, Any]:
    """A JSON object."""
    if not isinstance(value, Mapping):
        raise fail(where, f"expected an object, got {type(value).__name__}")
    return value


def opt_obj(value: Any, where: str) -> Mapping[str, Any]:
    """A JSON object; null is an empty one."""
    return {} if value is None else obj(value, where)


def array(value: Any, where: str) -> list[Any]:
    """A JSON list."""
    if not isinstance(value, list):
        raise fail(where, f"expected a list, got {type(value).__name__}")
    return value


def opt_array(value: Any, where: str) -> list[Any]:
    """A JSON list; null is an empty one."""
    return [] if value is None else array(value, where)


def integer(value: Any, where: str) -> int:
    """A JSON integer (``true`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, "expected an integer")
    return value


def opt_integer(value: Any, where: str) -> int | None:
    """A JSON integer or null."""
    return None if value is None else integer(value, where)


def string(value: Any, where: str) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        raise fail(where, "expected a string")
    return value


def opt_string(value: Any, where: str) -> str | None:
    """A JSON string or null."""
    return None if value is None else string(value, where)


def boolean(value: Any, where: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise fail(where, "expected true or false")
    return value


def opt_boolean(value: Any, where: str, default: bool = False) -> bool:
    """``true`` or ``false``; null is ``default``."""
    return default if value is None else boolean(value, where)


def instant(value: Any, where: str) -> datetime:
    """An ISO 8601 time with an offset, as aware UTC."""
    if not isinstance(value, str):
        raise fail(where, "expected an ISO 8601 time")
    try:
        return parse_instant(value, where)
    except ValueError as err:
        raise fail(where, f"{value[:40]!r} is not an ISO 8601 time") from err


def opt_instant(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time or null."""
    return None if value is None else instant(value, where)


def epoch(value: Any, where: str) -> datetime:
    """Whole epoch seconds, as aware UTC."""
    seconds = integer(value, where)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise fail(where, "timestamp out of range") from err


def opt_epoch(value: Any, where: str) -> datetime | None:
    """Whole epoch seconds or null."""
    return None if value is None else epoch(value, where)


def cursor_instant(value: Any) -> datetime | None:
    """An instant a cursor stored; anything unreadable is None (a fresh start), not an error."""
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value)
    except (ValueError, OverflowError):
        return None
