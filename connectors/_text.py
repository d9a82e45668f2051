"""Provides what connectors do to untrusted text: HTML to plain text, clipping, safe links.

What comes out is data to display, never markup: entities are decoded once, scripts and
styles dropped, NUL replaced as HTML parsing does. Nothing here raises on any input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

TEXT_LIMIT = 2000
"""Longest ``text`` an event carries; longer bodies are cut with an ellipsis."""

BLOCKS = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "table", "tr", "h1", "h2", "h3",
                    "h4", "h5", "h6"})
"""Elements whose edges are paragraph breaks (a blank line)."""
HIDDEN = frozenset({"script", "style", "template", "head"})
"""Elements whose content is not text."""
_TAG = re.compile(r"<[^>]*>?")


class _TextExtractor(HTMLParser):
    """Collects the text of HTML: block edges become blank lines, <br> a newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._owed = ""  # the break owed before the next text, once there is text
        self._hidden = 0

    def _break(self, newline: str) -> None:
        if self.parts and len(newline) > len(self._owed):
            self._owed = newline

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.handle_data("\n")
        elif tag in BLOCKS:
            self._break("\n\n")
        elif tag == "li":
            self._break("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.handle_data("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in BLOCKS:
            self._break("\n\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._owed:
            if not data.strip():
                return  # whitespace between blocks is layout, not text
            self.parts.append(self._owed)
            self._owed = ""
        self.parts.append(data)


def strip_tags(content: str) -> str:
    """``content`` without anything from a ``<`` to the next ``>`` (or to its end)."""
    return _TAG.sub("", content)


def strip_closed_tags(content: str) -> str:
    """``content`` without its tags, but a ``<`` never closed keeps the text after it."""
    return "".join(part.split(">", 1)[-1] for part in content.split("<"))


def html_to_text(content: str, *, fallback: Callable[[str], str] = strip_closed_tags) -> str:
    """Plain text of an HTML body: tags stripped, paragraphs and line breaks kept.

    Markup that ``html.parser`` cannot read (it can still assert on hostile input such as
    ``"<![ "``) is read with ``fallback`` instead, entities decoded after it. Never raises.
    """
    parser = _TextExtractor()
    try:
        parser.feed(content)
        parser.close()
        text = "".join(parser.parts)
    except Exception:
        text = unescape(fallback(content))
    return text.replace("\x00", "\ufffd").strip()


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    """Cut untrusted text to ``limit`` characters, marking the cut with an ellipsis."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def web_url(value: Any) -> str | None:
    """``value`` if it is an http(s) address: a ``javascript:`` url must never be opened."""
    if not isinstance(value, str):
        return None
    try:
        scheme = urlsplit(value).scheme
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return value if scheme in ("http", "https") else None
