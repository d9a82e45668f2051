"""Provides the one place that makes text from the public safe to show on a terminal."""

from __future__ import annotations

import re

# C0 and C1 controls except tab and newline, DEL, and the Unicode bidi controls that
# can reorder what a reader sees (the "Trojan Source" characters).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def sanitize(text: str, *, keep_newlines: bool = True) -> str:
    """Remove control and bidi-override characters; optionally fold newlines to spaces."""
    cleaned = _UNSAFE.sub("", text)
    if not keep_newlines:
        cleaned = " ".join(cleaned.split())
    return cleaned


def snippet(text: str | None, width: int = 80) -> str:
    """A one-line, sanitized, shortened version of ``text`` ending in … when cut."""
    if not text:
        return ""
    line = sanitize(text, keep_newlines=False)
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"
