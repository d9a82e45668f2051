"""Provides parsing and formatting of the human durations used in config ("6m", "1h30m")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+$")


def parse_duration(value: Any) -> float:
    """Return seconds for ``"30s"``, ``"6m"``, ``"1h30m"``, ``"1d"``, ``"2w"`` (or a number).

    A bare number is seconds. Raises ``ValueError`` for anything else, or for a
    duration that is not positive.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '6m', '1h30m' or '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _WHOLE.match(value.lower()):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value.lower()))
    else:
        raise ValueError(f"{value!r} is not a duration like '30s', '6m', '1h30m' or '1d'")
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds as people read them: ``"45s"``, ``"6m"``, ``"1h 30m"``, ``"2d 4h"``.

    Negative amounts keep their sign (``"-3m 10s"``); at most two units are shown.
    """
    sign = "-" if seconds < 0 else ""
    remaining = round(abs(seconds))
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + " ".join(parts[:2])


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, written in TOML as ``"30s"``, ``"6m"``, ``"1h"``..."""
