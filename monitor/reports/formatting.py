"""Provides how every renderer spells a figure, and the one check that lets a link through.

All renderers format through here, so the HTML, the Markdown summary and the charts say
the same thing the same way; CSV and JSON carry the raw values these are made from.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from urllib.parse import urlsplit

from monitor.durations import format_duration
from monitor.events import Metric
from monitor.text import sanitize

METRIC_NAMES = {
    Metric.FIRST_RESPONSE: "First response",
    Metric.NEXT_RESPONSE: "Next response",
    Metric.RESOLUTION: "Resolution",
}
DIMENSION_NAMES = {"all": "All", "source": "Source", "channel": "Channel", "priority": "Priority"}
DASH = "\u2013"
"""What stands in a cell that has no figure (an en dash)."""
MINUS = "\u2212"
"""The minus sign of changes (a real minus, as wide as the plus)."""
NONE_VALUE = "(none)"
"""How a missing channel, priority or name is shown."""
_URL_LIMIT = 2048
_NAME_LIMIT = 120


def duration(seconds: int | None) -> str:
    """``1h 30m``; a dash when there is no figure."""
    return DASH if seconds is None else format_duration(seconds)


def percent(value: float | None) -> str:
    """``93.4 %``; a dash when nothing was measured."""
    return DASH if value is None else f"{value:.1f} %"


def count(value: int) -> str:
    """``12,345``."""
    return f"{value:,}"


def signed_count(value: int | None) -> str:
    """``+12``, ``-3`` (with a minus sign), ``±0``; empty when there is nothing to compare with."""
    if value is None:
        return ""
    if value == 0:
        return "±0"
    return f"+{value:,}" if value > 0 else f"{MINUS}{-value:,}"


def signed_points(value: float | None) -> str:
    """``+1.3 pp``, ``-0.4 pp`` (percentage points, minus sign); empty when not comparable."""
    if value is None:
        return ""
    if value == 0:
        return "±0.0 pp"
    return f"+{value:.1f} pp" if value > 0 else f"{MINUS}{-value:.1f} pp"


def signed_duration(seconds: int | None) -> str:
    """``+5m``, ``-1h 2m`` (minus sign); empty when not comparable."""
    if seconds is None:
        return ""
    if seconds == 0:
        return "±0s"
    return ("+" if seconds > 0 else MINUS) + format_duration(abs(seconds))


def when(value: datetime | None, zone: tzinfo) -> str:
    """``Mon 16 Nov 14:05`` in the report's timezone; a dash for none."""
    if value is None:
        return DASH
    local = value.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def name(value: str | None, limit: int = _NAME_LIMIT) -> str:
    """A name or subject written by the public, on one line, bounded; ``(none)`` if empty.

    It still goes through the renderer's escaping: this only removes what would
    reorder or hide text (control and bidi characters) and cuts what is too long.
    """
    if value is None:
        return NONE_VALUE
    line = sanitize(value, keep_newlines=False).strip()
    if not line:
        return NONE_VALUE
    return line if len(line) <= limit else line[: limit - 1] + "…"


def safe_url(value: str | None) -> str | None:
    """``value`` if it is an absolute http(s) URL fit for a link, else None.

    Anything else (``javascript:``, ``data:``, relative paths, a URL with spaces or
    control characters) is not linked at all: a link is only ever a web page.
    """
    if not value or len(value) > _URL_LIMIT:
        return None
    if any(ch.isspace() or not ch.isprintable() or ch in "<>\"'`\\" for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value
