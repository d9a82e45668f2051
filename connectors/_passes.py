"""Provides the cursor of social connectors that read two newest-first lists by overlapping passes.

Social APIs (Bluesky's notifications and author feed, X's mention and user timelines)
list items newest first and page towards older ones. An item can show up *after* a
reader went past its place in the list: Bluesky sorts by a client-written time, X
timelines fill in a few seconds late. A connector therefore reads each list in
*passes*, from the newest page down to a *floor*: the first pass's floor is
``ctx.since``; each later one's is where the previous pass started (the server's clock)
minus ``lag``, the longest an item may take to appear. The items already returned at or
above that floor are kept in the cursor (``seen``), so that the overlap is re-read
without returning anything twice, and a stream is known up to its last finished pass's
start minus ``lag``: an honest watermark.

:class:`Rounds` alternates two streams, ``mentions`` then ``replies``: a round has read
both to the top when its ``replies`` pass finishes, and its watermark is the earlier of
the two streams' tops.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from connectors._json import cursor_instant
from monitor.connector import Cursor
from monitor.durations import Duration
from monitor.events import format_instant

Stream = Literal["mentions", "replies"]
MAX_SEEN = 500
"""Most item keys a pass keeps to deduplicate the overlap it re-reads."""


def _at_most_an_hour(value: float) -> float:
    if value > 3600:
        raise ValueError("at most 1h: the watermark stays this far behind")
    return value


Lag = Annotated[Duration, AfterValidator(_at_most_an_hour)]
"""The ``lag`` setting: how long an item may take to appear in a list (at most an hour)."""


def _newest(seen: Mapping[str, datetime], floor: datetime) -> tuple[tuple[str, datetime], ...]:
    kept = sorted(((k, at) for k, at in seen.items() if at >= floor), key=lambda kv: kv[1],
                  reverse=True)
    return tuple(kept[:MAX_SEEN])


@dataclass(frozen=True, slots=True)
class Pass:
    """One stream's progress: a pass reads from the newest page down to ``floor``.

    ``page`` is the API's token for the next older page while a pass is under way and
    ``started`` the server time of its first page. ``seen`` holds the items already
    returned at or above the floor (the overlap a pass re-reads); ``top`` the instant up
    to which the last finished pass saw everything.
    """

    floor: datetime | None = None
    page: str | None = None
    started: datetime | None = None
    seen: tuple[tuple[str, datetime], ...] = ()
    top: datetime | None = None

    def advance(self, items: Sequence[tuple[str, datetime]], wanted: Container[str],
                next_page: str | None, server_time: datetime, *, since: datetime,
                lag: timedelta) -> tuple[Pass, list[str], bool]:
        """The pass after a page of (key, time) items: (pass, new wanted keys, finished).

        Every item counts towards reaching the floor; only ``wanted`` ones (those that
        become events) are returned and remembered. A pass finishes at the floor, or
        where the API has no older page.
        """
        floor = self.floor or since
        started = self.started if self.page is not None and self.started else server_time
        next_floor = max(floor, started - lag)
        seen = dict(self.seen)
        fresh: list[str] = []
        reached = False
        for key, at in items:
            if at < floor:
                reached = True
                continue
            if key not in wanted or key in seen or key in fresh:
                continue
            fresh.append(key)
            if at >= next_floor:  # only the overlap the next pass re-reads needs remembering
                seen[key] = at
        finished = reached or next_page is None or not items
        if not finished:
            return replace(self, page=next_page, started=started,
                           seen=_newest(seen, floor)), fresh, False
        top = started - lag if self.top is None else max(self.top, started - lag)
        return Pass(floor=next_floor, seen=_newest(seen, next_floor), top=top), fresh, True

    @classmethod
    def load(cls, data: Any) -> Pass:
        """Read a stored pass; an unreadable field counts as absent."""
        if not isinstance(data, Mapping):
            return cls()
        seen = []
        for entry in data.get("seen") or ():
            if (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and (at := cursor_instant(entry[1])) is not None):
                seen.append((entry[0], at))
        page = data.get("page")
        return cls(floor=cursor_instant(data.get("floor")),
                   page=page if isinstance(page, str) and page else None,
                   started=cursor_instant(data.get("started")),
                   seen=tuple(seen[:MAX_SEEN]), top=cursor_instant(data.get("top")))

    def dump(self) -> dict[str, Any]:
        """The JSON form stored by the runner."""
        return {"floor": format_instant(self.floor), "page": self.page,
                "started": format_instant(self.started),
                "seen": [[key, format_instant(at)] for key, at in self.seen],
                "top": format_instant(self.top)}


@dataclass(frozen=True, slots=True)
class Rounds:
    """The cursor, typed: whose turn it is and each stream's pass."""

    next: Stream = "mentions"
    mentions: Pass = field(default_factory=Pass)
    replies: Pass = field(default_factory=Pass)

    @classmethod
    def load(cls, cursor: Cursor | None) -> Rounds:
        """Read a stored cursor; anything unreadable counts as absent."""
        if not cursor:
            return cls()
        return cls(next="replies" if cursor.get("next") == "replies" else "mentions",
                   mentions=Pass.load(cursor.get("mentions")),
                   replies=Pass.load(cursor.get("replies")))

    def dump(self) -> dict[str, Any]:
        """The JSON form stored by the runner."""
        return {"next": self.next, "mentions": self.mentions.dump(),
                "replies": self.replies.dump()}

    def stream(self, name: Stream) -> Pass:
        """The pass of stream ``name``."""
        return self.mentions if name == "mentions" else self.replies

    def with_pass(self, name: Stream, new: Pass, *, finished: bool) -> Rounds:
        """This state with ``name``'s pass replaced; a finished pass hands the turn over."""
        state = replace(self, mentions=new) if name == "mentions" else replace(self, replies=new)
        if finished:
            return replace(state, next="replies" if name == "mentions" else "mentions")
        return state

    @property
    def watermark(self) -> datetime | None:
        """Everything is seen up to the older of the two streams' tops."""
        if self.mentions.top is None or self.replies.top is None:
            return None
        return min(self.mentions.top, self.replies.top)


__all__ = ["MAX_SEEN", "Pass", "Rounds", "Stream"]
