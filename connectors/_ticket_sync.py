"""Provides the resume logic of help desks that list tickets by ``updated_at`` and thread on demand.

Freshdesk and Zammad share one shape: a listing of tickets ordered by ``updated_at``
(with a "changed since" filter and page numbers) gives each ticket's *current* state,
and a second endpoint gives one ticket's messages. Neither has a change log, so this
module turns the listing into an honest incremental stream:

- **Keyset, not page numbers.** Each listing asks for tickets updated at or after the
  position ``since``, page 1; the next position is the newest ``updated_at`` of a full
  page. Page numbers only grow while a full page cannot move the position (more than a
  page of tickets stamped with one instant), so a ticket that changes while we page
  moves *ahead* of us and is read again instead of shifting a page boundary over a
  ticket we never see. The one loss this accepts: while paging through such a tie, a
  change to one of its tickets can shift another of the tie past a page boundary.
  ``seen`` remembers the versions already handled at or after ``since`` (a listing
  repeats them at its boundary).
- **Settle window.** The position never passes the server's time minus ``settle``: a
  change committed (or indexed) late must still be at or after the position when it
  becomes visible. An exhausted listing moves the position to exactly that horizon.
- **Rounds and the floor.** A round lists every stream to its end and fetches the
  messages of each changed ticket (a queue in the cursor). Message and status events are
  kept when they are at or after the *floor*, the position the round started from: any
  earlier one was read by an earlier round, because it made its ticket change then.
  ``recent`` keeps the ids of those already returned at or after the position (a ticket
  that changes again re-reads its thread), and an in-memory set does the same within a
  round (for the batches the runner confirmed by coming back with their cursor).
- **Watermark.** Only a finished round (every stream exhausted, the queue empty) moves
  it, to the earliest stream position: every change before it has been read.

All instants are integer epoch milliseconds in the cursor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from monitor.connector import Cursor
from monitor.events import Event, EventKind

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
MEMORY = 20_000
"""Event ids remembered in memory to drop what a round reads twice."""


def to_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware instant."""
    return int(at.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """The aware UTC instant of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def display_name(address: str | None) -> str | None:
    """``"Rachel <rachel@example.com>"`` -> ``"Rachel"``; anything else stays as it is."""
    if not address or not address.strip():
        return None
    text = address.strip()
    if text.endswith(">") and "<" in text:
        cut = text.rindex("<")
        name = text[:cut].strip().strip('"').strip()
        return name or text[cut + 1:-1].strip() or text
    return text


@dataclass(frozen=True, slots=True)
class Fetch:
    """A ticket whose messages are still to read: its id, the page, what parsing needs."""

    ticket: str
    page: int = 1
    context: str | int | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One ticket of a listing page, as the connector parsed it.

    ``versioned`` events are returned once per version (the ticket's attributes, a
    dismissal); ``dated`` ones once ever, and only at or after the round's floor (a
    status change, the opening message). ``fetch`` asks for its messages to be read.
    """

    ticket: str
    updated: int
    versioned: tuple[Event, ...] = ()
    dated: tuple[Event, ...] = ()
    fetch: Fetch | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where one stream's listing stands."""

    since: int
    page: int = 1
    seen: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class SyncState:
    """Everything the cursor holds; ``TicketSync.dump`` makes it JSON."""

    positions: tuple[Position, ...]
    stream: int
    floor: int
    first: bool
    queue: tuple[Fetch, ...] = ()
    recent: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    watermark: int | None = None

    @property
    def watermark_at(self) -> datetime | None:
        """The watermark as an instant."""
        return None if self.watermark is None else from_ms(self.watermark)


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one poll: the new state, its events, and whether to poll again."""

    state: SyncState
    events: tuple[Event, ...]
    more: bool


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("expected an integer")
    return value


class TicketSync:
    """The round logic for one connector instance; it keeps a bounded memory of ids."""

    def __init__(
        self, streams: Sequence[str], *, settle_ms: int, max_page: int, step_ms: int = 1
    ) -> None:
        self.streams = tuple(streams)
        self.settle_ms = settle_ms
        self.max_page = max_page
        self.step_ms = step_ms
        self._emitted: OrderedDict[str, None] = OrderedDict()
        self._pending: list[str] = []
        self._returned: dict[str, Any] | None = None

    # --- the cursor -------------------------------------------------------------------

    def start(self, since: int) -> SyncState:
        """A state that begins at ``since`` (no cursor, or one this version cannot read)."""
        return SyncState(
            positions=tuple(Position(since) for _ in self.streams),
            stream=0, floor=since, first=True,
        )

    def load(self, cursor: Cursor | None, since: int) -> SyncState:
        """Read a stored cursor; anything unreadable starts again at ``since``.

        The ids the last poll returned count as returned only if the runner comes back
        with the cursor that poll gave (it stored them); otherwise they are forgotten, so
        a batch the runner failed to store is returned whole again.
        """
        if cursor is not None and self._returned is not None and cursor == self._returned:
            for event_id in self._pending:
                self._emitted[event_id] = None
                self._emitted.move_to_end(event_id)
            while len(self._emitted) > MEMORY:
                self._emitted.popitem(last=False)
        self._pending = []
        self._returned = None
        if not cursor:
            return self.start(since)
        try:
            if cursor.get("v") != CURSOR_VERSION:
                raise TypeError("other version")
            streams = cursor["streams"]
            positions = []
            for name in self.streams:
                raw = streams[name]
                seen = {str(k): _int(v) for k, v in dict(raw.get("seen", {})).items()}
                page = _int(raw["page"])
                if page < 1:
                    raise ValueError("page")
                positions.append(Position(_int(raw["since"]), page, MappingProxyType(seen)))
            queue = []
            for item in cursor.get("queue", []):
                context = item.get("context")
                if context is not None and not isinstance(context, str | int):
                    raise TypeError("context")
                queue.append(Fetch(str(item["ticket"]), _int(item["page"]), context))
            recent = {str(k): _int(v) for k, v in dict(cursor.get("recent", {})).items()}
            watermark = cursor.get("watermark")
            stream = _int(cursor["stream"])
            if not 0 <= stream <= len(self.streams):
                raise ValueError("stream")
            first = cursor["first"]
            if not isinstance(first, bool):
                raise TypeError("first")
            return SyncState(
                positions=tuple(positions), stream=stream, floor=_int(cursor["floor"]),
                first=first, queue=tuple(queue), recent=MappingProxyType(recent),
                watermark=None if watermark is None else _int(watermark),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("unreadable cursor: starting again from the configured look-back")
            return self.start(since)

    def dump(self, state: SyncState) -> dict[str, Any]:
        """The cursor the runner stores (plain JSON); ``load`` recognises it when it returns."""
        self._returned = self._cursor(state)
        return self._cursor(state)

    def _cursor(self, state: SyncState) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "stream": state.stream,
            "floor": state.floor,
            "first": state.first,
            "streams": {
                name: {"since": p.since, "page": p.page, "seen": dict(p.seen)}
                for name, p in zip(self.streams, state.positions, strict=True)
            },
            "queue": [
                {"ticket": f.ticket, "page": f.page, "context": f.context} for f in state.queue
            ],
            "recent": dict(state.recent),
            "watermark": state.watermark,
        }

    # --- what to ask next ---------------------------------------------------------------

    def next_listing(self, state: SyncState) -> tuple[str, Position] | None:
        """The stream to list next and its position, or None when a fetch comes first."""
        if state.queue:
            return None
        stream = state.stream if state.stream < len(self.streams) else 0
        return self.streams[stream], state.positions[stream]

    # --- transitions --------------------------------------------------------------------

    def after_listing(
        self, state: SyncState, listed: Sequence[Listed], *, full: bool, server_ms: int
    ) -> Step:
        """Fold one listing page of the current stream into the state."""
        index = state.stream if state.stream < len(self.streams) else 0
        position = state.positions[index]
        horizon = server_ms - self.settle_ms
        current = [t for t in listed if t.updated >= position.since]
        fresh = [t for t in current if position.seen.get(t.ticket, -1) < t.updated]
        seen = dict(position.seen)
        for ticket in current:
            seen[ticket.ticket] = max(ticket.updated, seen.get(ticket.ticket, -1))
        newest = max((t.updated for t in current), default=None)
        if full:
            reach = min(newest if newest is not None else position.since, horizon)
            if reach > position.since:
                since, page = reach, 1
            elif position.page >= self.max_page:
                # The API lists no further; skipping one step may lose tickets that share
                # it, but staying would never finish.
                log.warning("%s listing: page limit at one instant; moving on",
                            self.streams[index])
                since, page = position.since + self.step_ms, 1
            else:
                since, page = position.since, position.page + 1
        else:
            # A page that is not full listed everything after its offset: nothing else
            # was visible up to the horizon.
            since, page = max(position.since, horizon), 1
        moved = Position(since, page, MappingProxyType(
            {k: v for k, v in seen.items() if v >= since}))
        positions = tuple(moved if i == index else p for i, p in enumerate(state.positions))
        queued = {f.ticket for f in state.queue}
        fetches = []
        for ticket in fresh:
            if ticket.fetch is not None and ticket.fetch.ticket not in queued:
                queued.add(ticket.fetch.ticket)
                fetches.append(ticket.fetch)
        state = replace(
            state, positions=positions, queue=(*state.queue, *fetches),
            stream=index + 1 if not full else index,
        )
        versioned = [e for t in fresh for e in t.versioned]
        state, dated = self._admit(state, [e for t in fresh for e in t.dated])
        return self._settle(state, (*versioned, *dated))

    def after_fetch(self, state: SyncState, events: Iterable[Event],
                    next_page: int | None) -> Step:
        """Fold one page of the queue head's messages into the state."""
        head, *rest = state.queue
        queue = (replace(head, page=next_page), *rest) if next_page else tuple(rest)
        state, admitted = self._admit(replace(state, queue=queue), list(events))
        return self._settle(state, tuple(admitted))

    def skip_fetch(self, state: SyncState) -> Step:
        """Drop the queue head (its ticket is gone: the listing reports what happened)."""
        return self._settle(replace(state, queue=state.queue[1:]), ())

    def _admit(self, state: SyncState, events: list[Event]) -> tuple[SyncState, list[Event]]:
        """The dated events not returned before and not older than the round's floor."""
        admitted = []
        for event in events:
            if (event.id in state.recent or event.id in self._emitted
                    or event.id in self._pending):
                continue
            exempt = state.first and event.kind is EventKind.STATUS
            if to_ms(event.at) < state.floor and not exempt:
                continue
            admitted.append(event)
            self._remember(event.id)
        threshold = state.positions[0].since
        recent = {k: v for k, v in state.recent.items() if v >= threshold}
        for event in admitted:
            at = to_ms(event.at)
            if at >= threshold:
                recent[event.id] = at
        return replace(state, recent=MappingProxyType(recent)), admitted

    def _remember(self, event_id: str) -> None:
        self._pending.append(event_id)

    def _settle(self, state: SyncState, events: tuple[Event, ...]) -> Step:
        """Finish the round when every stream is exhausted and nothing is queued."""
        if state.queue or state.stream < len(self.streams):
            return Step(state, events, True)
        mark = min(p.since for p in state.positions)
        if state.watermark is not None:
            mark = max(mark, state.watermark)
        threshold = state.positions[0].since
        state = replace(
            state, stream=0, floor=state.positions[0].since, first=False, watermark=mark,
            recent=MappingProxyType({k: v for k, v in state.recent.items() if v >= threshold}),
        )
        return Step(state, events, False)
