"""Tests of the shared keyset-and-rounds logic behind the Freshdesk and Zammad connectors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors._http import get_json
from connectors._text import clip
from connectors._ticket_sync import (
    Fetch,
    Listed,
    Position,
    SyncState,
    TicketSync,
    from_ms,
    to_ms,
)
from connectors.fakes._base import serve
from monitor.errors import FatalError, NotFound, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = 1_800_000_000_000
SETTLE = 30_000


def update(ticket: str, updated: int) -> Listed:
    """A listed ticket version with one versioned event and a fetch of its thread."""
    event = Event(source="s", conversation=ticket, id=f"ticket-{ticket}@{updated}",
                  at=from_ms(updated), kind=EventKind.UPDATE)
    return Listed(ticket, updated, versioned=(event,), fetch=Fetch(ticket))


def message(ticket: str, number: int, at: int) -> Event:
    """A customer message of ``ticket`` at epoch ms ``at``."""
    return Event(source="s", conversation=ticket, id=f"{ticket}:{number}", at=from_ms(at),
                 kind=EventKind.MESSAGE, actor=Actor.CUSTOMER)


def status(ticket: str, at: int) -> Event:
    """A status event of ``ticket`` at epoch ms ``at``."""
    return Event(source="s", conversation=ticket, id=f"{ticket}:status@{at}", at=from_ms(at),
                 kind=EventKind.STATUS, status=Status.OPEN)


def sync(*streams: str, max_page: int = 300) -> TicketSync:
    """A sync over ``streams`` (default one) with a 30 s settle window."""
    return TicketSync(streams or ("tickets",), settle_ms=SETTLE, max_page=max_page)


def test_instants_round_trip_through_milliseconds() -> None:
    """to_ms and from_ms are inverse on whole milliseconds, in UTC."""
    at = datetime(2026, 11, 23, 9, 0, 0, 123000, tzinfo=UTC)
    assert to_ms(at) == 1795424400123
    assert from_ms(to_ms(at)) == at


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("short", "short"), ("x" * 5, "x" * 5), ("x" * 6, "xxxx…")],
    ids=["none", "short", "exactly-limit", "over-limit"],
)
def test_clip_marks_a_cut_with_an_ellipsis(text: str | None, expected: str | None) -> None:
    """Text longer than the limit is cut to the limit, its last character an ellipsis."""
    assert clip(text, 5) == expected


async def test_not_found_is_recognised_only_for_a_404() -> None:
    """Only get_json's answer to a 404 is NotFound: the sign of a vanished ticket."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({}, status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_get("/{status}", answer)
    async with serve(app) as base_url, aiohttp.ClientSession() as session:
        with pytest.raises(NotFound):
            await get_json(session, f"{base_url}/404", what="x")
        with pytest.raises(FatalError) as refused:
            await get_json(session, f"{base_url}/400", what="x")
        assert not isinstance(refused.value, NotFound)
        with pytest.raises(TransientError):
            await get_json(session, f"{base_url}/503", what="x")


def test_fresh_state_lists_the_first_stream_from_since() -> None:
    """Without a cursor the first stream is listed from ``since``, page 1."""
    logic = sync("tickets", "deleted")
    state = logic.load(None, T0)
    assert logic.next_listing(state) == ("tickets", Position(T0))
    assert (state.floor, state.first, state.watermark) == (T0, True, None)


@pytest.mark.parametrize(
    ("updated", "full", "page", "server", "expected"),
    [
        ((T0 + 5, T0 + 9), True, 1, T0 + 100_000, (T0 + 9, 1)),
        ((T0 + 5, T0 + 90_000), True, 1, T0 + 100_000, (T0 + 70_000, 1)),
        ((T0, T0), True, 1, T0 + 100_000, (T0, 2)),
        ((T0, T0), True, 300, T0 + 100_000, (T0 + 1, 1)),
        ((T0 + 5,), False, 1, T0 + 100_000, (T0 + 70_000, 1)),
        ((T0 + 5,), False, 3, T0 + 100_000, (T0 + 70_000, 1)),
        ((), False, 2, T0 + 100_000, (T0 + 70_000, 1)),
        ((), False, 1, T0 + 10_000, (T0, 1)),
    ],
    ids=["full-moves-to-newest", "full-capped-by-settle", "full-at-one-instant-pages-on",
         "page-limit-steps-past-the-instant", "exhausted-moves-to-horizon",
         "exhausted-after-paging-too", "empty-page-after-a-tie", "never-backwards"],
)
def test_listing_moves_the_position(
    updated: tuple[int, ...], full: bool, page: int, server: int, expected: tuple[int, int]
) -> None:
    """The next position and page follow the keyset rules of the module docstring."""
    logic = sync()
    state = SyncState((Position(T0, page),), 0, T0, True)
    listed = [update(str(i), at) for i, at in enumerate(updated)]
    step = logic.after_listing(state, listed, full=full, server_ms=server)
    moved = step.state.positions[0]
    assert (moved.since, moved.page) == expected


def test_repeated_and_stale_versions_are_not_returned_again() -> None:
    """A version already seen, or an older one, yields nothing; a newer one does."""
    logic = sync()
    state = SyncState((Position(T0, 1, {"a": T0 + 5, "b": T0 + 5}),), 0, T0, False)
    listed = [update("a", T0 + 5), update("b", T0 + 2), update("c", T0 + 7)]
    step = logic.after_listing(state, listed, full=False, server_ms=T0 + 1000)
    assert [e.id for e in step.events] == [f"ticket-c@{T0 + 7}"]
    assert [f.ticket for f in step.state.queue] == ["c"]


def test_tickets_before_the_position_are_ignored() -> None:
    """A listing that starts early (Freshdesk's one-second margin) returns nothing twice."""
    logic = sync()
    state = SyncState((Position(T0),), 0, T0, False)
    step = logic.after_listing(state, [update("a", T0 - 1)], full=False, server_ms=T0 + 1)
    assert step.events == ()
    assert step.state.queue == ()


def test_dated_events_respect_the_floor_and_are_returned_once() -> None:
    """Messages older than the floor are dropped; what was returned is not returned again."""
    logic = sync()
    state = SyncState((Position(T0),), 0, T0, False, queue=(Fetch("a"),))
    events = [message("a", 1, T0 - 1), message("a", 2, T0), message("a", 3, T0 + 10)]
    step = logic.after_fetch(state, events, None)
    assert [e.id for e in step.events] == ["a:2", "a:3"]
    assert dict(step.state.recent) == {"a:2": T0, "a:3": T0 + 10}
    again = sync().after_fetch(replace_queue(step.state, "a"), events, None)
    assert again.events == ()


def replace_queue(state: SyncState, ticket: str) -> SyncState:
    """The state with one fetch of ``ticket`` queued."""
    return SyncState(state.positions, state.stream, state.floor, state.first, (Fetch(ticket),),
                     state.recent, state.watermark)


@pytest.mark.parametrize(("first", "kept"), [(True, True), (False, False)],
                         ids=["first-round-keeps-old-status", "later-round-drops-it"])
def test_status_older_than_the_floor_counts_only_in_the_first_round(
    first: bool, kept: bool
) -> None:
    """The current status is worth knowing once even if set before ``since``; later it repeats."""
    logic = sync()
    state = SyncState((Position(T0),), 0, T0, first)
    listed = Listed("a", T0 + 5, dated=(status("a", T0 - 60_000),))
    step = logic.after_listing(state, [listed], full=False, server_ms=T0 + 100_000)
    assert bool(step.events) is kept


def test_a_batch_the_runner_did_not_store_is_returned_again() -> None:
    """Re-polled from the older cursor, a batch comes back whole; once stored, never again."""
    logic = sync()
    stored = logic.dump(logic.load(None, T0))
    opening = message("a", 1, T0 + 5)
    listed = [Listed("a", T0 + 5, dated=(opening,))]
    first = logic.after_listing(logic.load(stored, T0), listed, full=False,
                                server_ms=T0 + 100_000)
    returned = logic.dump(first.state)
    retried = logic.after_listing(logic.load(stored, T0), listed, full=False,
                                  server_ms=T0 + 100_000)
    assert first.events == retried.events == (opening,)
    assert retried.state.recent == {}  # the position moved past it: only memory knows
    state = logic.load(json.loads(json.dumps(returned)), T0)
    again = logic.after_fetch(replace_queue(state, "a"), [opening], None)
    assert again.events == ()


def test_fetch_pages_and_skips() -> None:
    """A next page keeps the head queued on that page; skipping drops it."""
    logic = sync()
    state = SyncState((Position(T0),), 1, T0, False, queue=(Fetch("a"), Fetch("b")))
    paged = logic.after_fetch(state, [], 2)
    assert paged.state.queue == (Fetch("a", 2), Fetch("b"))
    assert paged.more is True
    skipped = logic.skip_fetch(paged.state)
    assert skipped.state.queue == (Fetch("b"),)
    done = logic.skip_fetch(skipped.state)
    assert (done.more, done.state.queue, done.state.watermark) == (False, (), T0)


def test_a_ticket_is_queued_once() -> None:
    """A ticket already waiting for its fetch is not queued a second time."""
    logic = sync()
    state = SyncState((Position(T0),), 0, T0, False, queue=(Fetch("a", 3),))
    step = logic.after_listing(state, [update("a", T0 + 1)], full=False, server_ms=T0 + 9)
    assert step.state.queue == (Fetch("a", 3),)


def test_round_ends_after_every_stream_with_the_earliest_position() -> None:
    """more stays True until the last stream is exhausted; the watermark is the minimum."""
    logic = sync("tickets", "deleted")
    state = logic.load(None, T0)
    first = logic.after_listing(state, [], full=False, server_ms=T0 + 100_000)
    assert (first.more, first.state.watermark, logic.next_listing(first.state)) == (
        True, None, ("deleted", Position(T0)))
    second = logic.after_listing(first.state, [], full=False, server_ms=T0 + 50_000)
    assert second.more is False
    assert second.state.watermark == T0 + 20_000
    assert (second.state.floor, second.state.first) == (T0 + 70_000, False)
    assert logic.next_listing(second.state) == ("tickets", Position(T0 + 70_000))


def test_watermark_never_moves_backwards() -> None:
    """A round whose positions are behind the stored watermark keeps the stored one."""
    logic = sync()
    state = SyncState((Position(T0),), 0, T0, False, watermark=T0 + 5)
    step = logic.after_listing(state, [], full=False, server_ms=T0)
    assert step.state.watermark == T0 + 5


def test_cursor_round_trips_through_json() -> None:
    """dump gives plain JSON that load reads back to the same state."""
    logic = sync("tickets", "spam")
    state = SyncState(
        (Position(T0, 2, {"a": T0}), Position(T0 + 1)), 1, T0 - 5, False,
        (Fetch("a", 2, 77), Fetch("b", 1, "x")), {"a:1": T0}, T0 - 9,
    )
    stored = json.loads(json.dumps(logic.dump(state)))
    assert logic.load(stored, 0) == state


@pytest.mark.parametrize(
    "cursor",
    [
        {"v": 99},
        {"v": 1, "streams": {}},
        {"v": 1, "stream": 0, "floor": 1, "first": True, "streams": {"tickets": {"since": "x",
                                                                                "page": 1}}},
        {"v": 1, "stream": 5, "floor": 1, "first": True, "streams": {"tickets": {"since": 1,
                                                                                "page": 1}}},
        {"v": 1, "stream": 0, "floor": 1, "first": "yes",
         "streams": {"tickets": {"since": 1, "page": 1}}},
        {"v": 1, "stream": 0, "floor": 1, "first": True,
         "streams": {"tickets": {"since": 1, "page": 0}}},
        {"v": 1, "stream": 0, "floor": 1, "first": True, "queue": [{"ticket": 1}],
         "streams": {"tickets": {"since": 1, "page": 1}}},
        {"v": 1, "stream": 0, "floor": 1, "first": True, "queue": [[1]],
         "streams": {"tickets": {"since": 1, "page": 1}}},
    ],
    ids=["other-version", "missing-stream", "since-text", "stream-out-of-range", "first-text",
         "page-zero", "queue-no-page", "queue-not-objects"],
)
def test_unreadable_cursor_starts_again(cursor: dict[str, object]) -> None:
    """A cursor this version cannot read is a fresh start at ``since``, never an error."""
    logic = sync()
    assert logic.load(cursor, T0) == logic.start(T0)


# --- a simulated help desk: the keyset never loses or repeats a version -------------------


@dataclass
class Desk:
    """A listing API over ticket versions, ordered by (updated, id), page-numbered."""

    updated: dict[str, int] = field(default_factory=dict)

    def listing(self, since: int, page: int, per_page: int) -> tuple[list[Listed], bool]:
        """One page of the tickets updated at or after ``since``, and whether it is full."""
        rows = sorted((at, ticket) for ticket, at in self.updated.items() if at >= since)
        chunk = rows[(page - 1) * per_page: page * per_page]
        return [update(ticket, at) for at, ticket in chunk], len(chunk) == per_page


def drain(logic: TicketSync, desk: Desk, state: SyncState, now: int,
          per_page: int) -> tuple[SyncState, list[Event]]:
    """Poll until the round ends, fetching every queued thread as an empty one."""
    events: list[Event] = []
    for _ in range(10_000):
        listing = logic.next_listing(state)
        if listing is None:
            step = logic.after_fetch(state, [], None)
        else:
            page, full = desk.listing(listing[1].since, listing[1].page, per_page)
            step = logic.after_listing(state, page, full=full, server_ms=now)
        state = step.state
        events.extend(step.events)
        if not step.more:
            return state, events
    raise AssertionError("the round never ended")


@settings(max_examples=150, deadline=None)
@given(
    per_page=st.integers(min_value=1, max_value=4),
    start=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12),
    changes=st.lists(st.tuples(st.integers(min_value=0, max_value=11),
                               st.integers(min_value=1, max_value=40_000)), max_size=12),
)
def test_keyset_reads_every_version_once(
    per_page: int, start: list[int], changes: list[tuple[int, int]]
) -> None:
    """Tickets sharing instants and changing between polls: each version is returned once."""
    logic = sync(max_page=1000)
    desk = Desk({f"t{i}": T0 + at * 1000 for i, at in enumerate(start)})
    now = T0 + 10_000
    state, events = drain(logic, desk, logic.load(None, T0), now, per_page)
    for index, gap in changes:
        now += gap
        ticket = f"t{index % len(start)}"
        desk.updated[ticket] = now - gap // 2  # a change that happened since the last poll
        state, more = drain(logic, desk, state, now, per_page)
        events += more
    now += SETTLE + 1
    state, more = drain(logic, desk, state, now, per_page)
    events += more
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    assert {f"ticket-{t}@{at}" for t, at in desk.updated.items()} <= set(ids)
    assert state.watermark == now - SETTLE
