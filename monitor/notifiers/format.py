"""Provides what every notifier shares: safe text, safe links, and one view of an alert item.

Public text (customer names, subjects, snippets) and anything an API returned is made
one line, shortened and stripped of control and bidi characters by ``clean``; each
notifier then escapes it for its own format (``escape_slack``, ``escape_markdown``,
``html.escape``). ``safe_link`` lets only http(s) URLs through, percent-encoding the
characters that could end a link early in any of the formats. ``item_view`` turns an
alert item into the title, facts and quote every format renders, so all of them say
the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, urlsplit

from monitor.durations import format_duration
from monitor.text import sanitize

if TYPE_CHECKING:
    from monitor.notifiers.base import AlertItem

T = TypeVar("T")

MAX_ITEMS = 10
"""A chat message shows at most this many items, then says "and N more"."""
TEXT_CHARS = 100
"""Length of a shortened name or subject."""
SNIPPET_CHARS = 200
"""Length of a shortened customer message or error text."""
URL_CHARS = 2048

# Characters that end or reshape a link in Slack (<url|label>), Markdown ([label](url))
# or HTML attributes; they are percent-encoded, which keeps the URL's meaning.
_LINK_SAFE = ":/?#[]@!$&*+,;=%~-._"
_INVISIBLE = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_MARKDOWN = re.compile(r"([\\`*_~|\[\]()<>])")
_MARKDOWN_NO_ANGLES = re.compile(r"([\\`*_~|\[\]()])")
_MENTION = re.compile("@(?=[\\w.\\-])")
_WORD_JOINER = "\u2060"


def clean(text: str | None, limit: int = TEXT_CHARS) -> str:
    """Make untrusted text one line, printable and at most ``limit`` characters (with …)."""
    if not text:
        return ""
    # A lone surrogate (legal in a JSON string) cannot be encoded as UTF-8 and would
    # crash the send; it becomes U+FFFD instead.
    text = text.encode("utf-8", "replace").decode("utf-8")
    line = sanitize(text, keep_newlines=False)
    return line if len(line) <= limit else line[: max(0, limit - 1)].rstrip() + "…"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def safe_link(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL, encoded so no format can misread it; else None."""
    if not url or len(url) > URL_CHARS:
        return None
    text = url.strip()
    if _INVISIBLE.search(text) or (not text.isascii() and _has_surrogate(text)):
        return None
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return quote(text, safe=_LINK_SAFE)


def escape_slack(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` (and only those), as Slack's and Mattermost's text needs."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_markdown(text: str, *, angle_brackets: bool = True) -> str:
    """Backslash-escape the Markdown that could format text or forge a link ``[label](url)``.

    ``angle_brackets=False`` leaves ``<`` and ``>`` for a format that turns them into
    entities instead (Mattermost), since ``\\&lt;`` would show the entity as typed.
    """
    pattern = _MARKDOWN if angle_brackets else _MARKDOWN_NO_ANGLES
    return pattern.sub(r"\\\1", text)


def break_mentions(text: str) -> str:
    """Put an invisible word joiner after each ``@`` so ``@here``/``@name`` never notifies."""
    return _MENTION.sub("@" + _WORD_JOINER, text)


def format_when(value: datetime) -> str:
    """An instant as people read it in a message: ``2026-03-02 14:05 UTC``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def more_line(count: int) -> str:
    """The line that ends a capped message: ``and 3 more``."""
    return f"and {count} more"


def fit(parts: Sequence[T], size: Callable[[T], int], budget: int) -> int:
    """How many of ``parts`` (at least one) fit, in order, within ``budget`` by ``size``."""
    used = 0
    for index, part in enumerate(parts):
        used += size(part)
        if used > budget and index > 0:
            return index
    return len(parts)


def join_within(lines: Sequence[str], limit: int, separator: str = "\n") -> str:
    """Join whole lines, leaving off the last ones that would pass ``limit`` characters.

    Cutting at a line keeps every escape and link intact, which a cut mid-line would not.
    """
    kept: list[str] = []
    used = 0
    for line in lines:
        used += len(line) + (len(separator) if kept else 0)
        if used > limit:
            break
        kept.append(line)
    return separator.join(kept)


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled line of an alert (``Customer: Ada``); ``value`` is clean, not escaped."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class ItemView:
    """What every format shows of one alert item; every string is clean but not escaped.

    ``subject`` is the conversation's subject (or its id) and links to ``link`` when
    there is one; ``quote`` is the customer's last message, shortened.
    """

    kind: str
    title: str
    subject: str | None
    link: str | None
    facts: tuple[Fact, ...]
    quote: str | None


_TITLES = {
    "breached": "Breached",
    "at_risk": "At risk",
    "recovered": "Recovered",
    "source_down": "Source down",
    "source_up": "Source back up",
}


def _metric(item: AlertItem) -> str:
    return clean(item.metric).replace("_", " ") if item.metric else "SLA"


def _title(item: AlertItem) -> str:
    if item.kind == "test":
        return "Test alert: this target works"
    if item.kind in ("source_down", "source_up"):
        return f"{_TITLES[item.kind]}: {clean(item.source)}"
    if item.kind == "breached" and item.repeat > 0:
        return f"Still breached: {_metric(item)} (reminder {item.repeat})"
    return f"{_TITLES[item.kind]}: {_metric(item)}"


def _promise(item: AlertItem) -> str:
    text = _metric(item)
    if item.target_seconds is not None and item.target_seconds > 0:
        text += f" within {format_duration(item.target_seconds)}"
    if item.priority:
        text += f" ({clean(item.priority)})"
    return f"{clean(item.policy)}: {text}" if item.policy else text


def _timing(item: AlertItem) -> list[Fact]:
    facts: list[Fact] = []
    if item.kind == "breached":
        if item.late_seconds is not None:
            facts.append(Fact("Late", f"{format_duration(max(0, item.late_seconds))} past due"))
        if item.due_at is not None:
            facts.append(Fact("Due", format_when(item.due_at)))
    elif item.kind == "at_risk" and item.due_at is not None:
        left = max(0.0, (item.due_at - item.at).total_seconds())
        facts.append(Fact("Due", f"{format_when(item.due_at)} ({format_duration(left)} left)"))
    elif item.kind == "recovered":
        if item.late_seconds is None:
            facts.append(Fact("Replied", "after the deadline"))
        elif item.late_seconds <= 0:
            facts.append(Fact("Replied", "in time"))
        else:
            facts.append(Fact("Replied", f"{format_duration(item.late_seconds)} late"))
    return facts


def item_view(item: AlertItem) -> ItemView:
    """The title, facts and quote that every format renders for ``item``."""
    facts: list[Fact] = []
    if item.kind in ("breached", "at_risk", "recovered"):
        if item.customer:
            facts.append(Fact("Customer", clean(item.customer)))
        where = " · ".join(clean(part) for part in (item.source, item.channel) if part)
        facts.append(Fact("Where", where))
        facts.append(Fact("Promise", _promise(item)))
        facts.extend(_timing(item))
        facts.append(Fact("Assignee", clean(item.assignee) or "unassigned"))
    elif item.kind == "source_down":
        facts.append(Fact("Since", format_when(item.at)))
        if item.error:
            facts.append(Fact("Error", clean(item.error, SNIPPET_CHARS)))
    elif item.kind == "source_up":
        facts.append(Fact("Back at", format_when(item.at)))
    else:
        facts.append(Fact("Sent", format_when(item.at)))
    if item.escalated_from:
        facts.append(Fact("Escalated from", clean(item.escalated_from)))
    subject = clean(item.subject, TEXT_CHARS) or None
    if subject is None and item.conversation:
        subject = f"Conversation {clean(item.conversation)}"
    return ItemView(
        kind=item.kind,
        title=_title(item),
        subject=subject,
        link=safe_link(item.url),
        facts=tuple(facts),
        quote=clean(item.snippet, SNIPPET_CHARS) or None,
    )


def quoted(text: str) -> str:
    """Public text in quotation marks, so it reads as the customer's words, not ours."""
    return f"“{text}”"
