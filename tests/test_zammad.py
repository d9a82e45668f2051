"""Tests of the Zammad connector: recorded payloads, and the faithful fake served for real."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from conftest import fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors import BUILTIN
from connectors._text import TEXT_LIMIT
from connectors._ticket_sync import to_ms
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.zammad import ZammadFake, ZammadWorld
from connectors.zammad import (
    ZammadArticle,
    ZammadConnector,
    ZammadSettings,
    article_actor,
    article_events,
    html_to_text,
    parse_articles,
    parse_me,
    parse_ticket,
    parse_tickets,
    search_query,
    ticket_events,
    ticket_priority,
    ticket_status,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, FatalError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-zammad"
URL = "https://support.acme.example"
SEARCH = "/api/v1/tickets/search"


def load(name: str) -> Any:
    """A recorded payload (the shared recordings, or ours in tests/fixtures/zammad)."""
    return json.loads(fixture_path("zammad", name).read_text())


def at(text: str) -> datetime:
    """An aware UTC instant from ``2025-05-13T08:37:16.844``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


def listed_events(ticket: dict[str, Any], **options: Any) -> tuple[Event, ...]:
    """Every event a listed ticket yields (versioned first)."""
    listed = ticket_events(parse_ticket(ticket), source=SOURCE, url=URL, **options)
    return (*listed.versioned, *listed.dated)


WELCOME = "GET_api_v1_tickets_search_Welcome.json"


# --- recorded payloads ---------------------------------------------------------------------


def test_search_fixture_gives_the_ticket_and_its_state() -> None:
    """The recorded expanded search yields one update and one status event, exactly."""
    [ticket] = load(WELCOME)
    updated = at("2025-05-13T08:37:16.844")
    url = f"{URL}/#ticket/zoom/1"
    assert listed_events(ticket) == (
        Event(source=SOURCE, conversation="1", id=f"ticket-1@{to_ms(updated)}", at=updated,
              kind=EventKind.UPDATE, channel="phone", url=url,
              fields={"subject": "Welcome to Zammad!", "customer": "nicole.braun@example.com",
                      "priority": "normal", "assignee": None, "group": "Users"}),
        Event(source=SOURCE, conversation="1", id=f"1:state:1@{to_ms(updated)}", at=updated,
              kind=EventKind.STATUS, status=Status.NEW, url=url),
    )


def test_list_and_search_fixtures_parse_alike() -> None:
    """The ticket list and the search gave the same body; they parse to the same tickets."""
    assert parse_tickets(load("GET_api_v1_tickets_page1.json")) == parse_tickets(load(WELCOME))


@pytest.mark.parametrize("name", ["GET_api_v1_tickets_1.json", "POST_api_v1_tickets.json",
                                  "PUT_api_v1_tickets_5.json"],
                         ids=["show", "created", "updated"])
def test_unexpanded_tickets_give_no_status(name: str) -> None:
    """Without association names a ticket still parses; no state name means no status event."""
    events = listed_events(load(name))
    assert [e.kind for e in events] == [EventKind.UPDATE]
    assert events[0].fields["priority"] is None


def test_articles_fixture_gives_a_note_and_an_email() -> None:
    """The documented article list: a customer's note (not public) and an agent's email."""
    events = article_events(parse_articles(load("GET_api_v1_ticket_articles_by_ticket_3.json")),
                            source=SOURCE, url=URL)
    url = f"{URL}/#ticket/zoom/3"
    assert events == (
        Event(source=SOURCE, conversation="3", id="3:3", at=at("2016-08-15T07:55:42.119"),
              kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, public=False, author="Bob Smith",
              text="huhuhuu\nhuhuhuu\nhuhuhuu", url=url),
        Event(source=SOURCE, conversation="3", id="3:4", at=at("2016-08-16T07:55:42.119"),
              kind=EventKind.MESSAGE, actor=Actor.AGENT, public=True, author="Bob Smith",
              text="huhuhuu\nhuhuhuu\nhuhuhuu", url=url),
    )


@pytest.mark.parametrize(
    ("state", "custom", "expected"),
    [("new", {}, Status.NEW), ("open", {}, Status.OPEN), ("pending close", {}, Status.PENDING),
     ("pending reminder", {}, Status.ON_HOLD), ("closed", {}, Status.CLOSED),
     ("Open ", {}, Status.OPEN), ("waiting", {}, None),
     ("waiting", {"waiting": Status.ON_HOLD}, Status.ON_HOLD), (None, {}, None)],
    ids=["new", "open", "pending-close-awaits-customer", "pending-reminder-is-on-hold",
         "closed", "case-and-space", "custom-unmapped", "custom-mapped", "no-name"],
)
def test_state_names(state: str | None, custom: dict[str, Status],
                     expected: Status | None) -> None:
    """Zammad's states map as the module docstring's table says."""
    assert ticket_status(state, custom) is expected


@pytest.mark.parametrize("state", ["merged", "removed"])
def test_merged_and_removed_tickets_are_dismissed(state: str) -> None:
    """A merged or removed ticket cancels its clocks (dismissed), with no status event."""
    [ticket] = load(WELCOME)
    events = listed_events(ticket | {"state": state, "state_id": 5})
    assert [e.kind for e in events] == [EventKind.UPDATE, EventKind.DISMISSED]
    assert events[1].id == f"ticket-1@{to_ms(at('2025-05-13T08:37:16.844'))}:{state}"


def test_closed_is_dated_at_the_last_close() -> None:
    """A closed ticket's status is dated at last_close_at, not at its later update."""
    [ticket] = load(WELCOME)
    closed = ticket | {"state": "closed", "state_id": 4,
                       "last_close_at": "2025-05-13T08:30:00.000Z"}
    [status] = [e for e in listed_events(closed) if e.kind is EventKind.STATUS]
    assert (status.status, status.at) == (Status.CLOSED, at("2025-05-13T08:30:00"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("1 low", "low"), ("2 normal", "normal"), ("3 high", "high"), ("4 urgent", "urgent"),
     ("5 very high", None), ("normal", "normal"), ("", None), (None, None)],
    ids=["low", "normal", "high", "custom-urgent", "custom-unknown", "no-number", "empty",
         "none"],
)
def test_priority_names(name: str | None, expected: str | None) -> None:
    """The word after the number names the priority; anything else is no priority."""
    assert ticket_priority(name) == expected


def _article(**changes: Any) -> ZammadArticle:
    base: dict[str, Any] = {"id": 9, "ticket_id": 1, "created_at": T0, "sender": "Agent",
                            "type": "email", "internal": False, "body": "x",
                            "content_type": "text/plain", "sender_from": None,
                            "created_by_id": 5, "created_by": "kim@acme.example"}
    base.update(changes)
    return ZammadArticle(**base)


@pytest.mark.parametrize(
    ("changes", "actor", "public"),
    [
        ({"sender": "Customer"}, Actor.CUSTOMER, True),
        ({}, Actor.AGENT, True),
        ({"sender": "System"}, Actor.BOT, True),
        ({"sender": "Robot"}, Actor.CUSTOMER, True),
        ({"created_by_id": 42}, Actor.BOT, True),
        ({"internal": True}, Actor.AGENT, False),
        ({"type": "note"}, Actor.AGENT, False),
        ({"type": "phone"}, Actor.AGENT, True),
    ],
    ids=["customer", "agent", "system-is-bot", "unknown-sender-is-customer", "bot-user",
         "internal", "note-is-not-communication", "phone"],
)
def test_article_actor_and_visibility(changes: dict[str, Any], actor: Actor,
                                      public: bool) -> None:
    """sender decides the actor; internal articles and notes are not public replies."""
    article = _article(**changes)
    assert article_actor(article, {42}) is actor
    [event] = article_events([article], source=SOURCE, url=URL, bot_user_ids={42})
    assert (event.actor, event.public) == (actor, public)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("huhuhuu<br>huhuhuu<br><br>", "huhuhuu\nhuhuhuu"),
        ("<p>Hello &amp; welcome</p><p>Bye</p>", "Hello & welcome\nBye"),
        ("<div>a<div>b</div></div>", "a\nb"),
        ("<p>  lots   of\n  space </p>", "lots of space"),
        ("<style>p{}</style><script>alert(1)</script>Hi", "Hi"),
        ("&lt;b&gt;not markup&lt;/b&gt;", "<b>not markup</b>"),
        ("a<br><br>b", "a\n\nb"),
    ],
    ids=["breaks", "paragraphs-and-entities", "nested-blocks", "source-whitespace",
         "script-and-style-dropped", "escaped-tags-stay-text", "blank-line"],
)
def test_html_bodies_become_text(body: str, text: str) -> None:
    """HTML article bodies are read as text: tags dropped, entities decoded, blocks as lines."""
    assert html_to_text(body) == text


def test_plain_text_bodies_are_kept_as_they_are() -> None:
    """A text/plain body is not parsed as HTML."""
    [event] = article_events([_article(body="<b>as typed</b>\n  spaced")], source=SOURCE,
                             url=URL)
    assert event.text == "<b>as typed</b>\n  spaced"


def test_hostile_text_is_clipped_data() -> None:
    """Markup, escapes and a huge body are kept as clipped text, never interpreted."""
    hostile = "[bold red]x[/] \x1b[2J ${jndi:x}" + "y" * 10_000
    [event] = article_events([_article(body=hostile, sender_from="[red]Eve[/] <e@example.com>")],
                             source=SOURCE, url=URL)
    assert event.text is not None
    assert len(event.text) == TEXT_LIMIT
    assert event.text.startswith("[bold red]x[/] \x1b[2J ${jndi:x}")
    assert event.author == "[red]Eve[/]"


def test_search_query_escapes_the_colons() -> None:
    """The query asks from an instant to the millisecond, colons escaped for the index."""
    since = to_ms(at("2025-05-13T08:37:16.844"))
    assert search_query(since) == "updated_at:>=2025-05-13T08\\:37\\:16.844Z"


BAD_PAGES = [
    ({"tickets": [1], "tickets_count": 1, "assets": {}}, "not-expanded"),
    ([1], "ticket-not-object"),
    ([{"id": "1"}], "id-as-text"),
    ([{"id": 1, "state_id": 1, "updated_at": "soon", "created_at": "2025-05-13T08:37:16Z"}],
     "bad-time"),
    ([{"id": 1, "state_id": 1, "updated_at": "2025-05-13T08:37:16",
       "created_at": "2025-05-13T08:37:16Z"}], "naive-time"),
    ([{"id": 1, "state_id": 1, "updated_at": "2025-05-13T08:37:16Z",
       "created_at": "2025-05-13T08:37:16Z", "state": 4}], "state-as-number"),
    ([{"id": 1, "state_id": 1, "updated_at": "2025-05-13T08:37:16Z",
       "created_at": "2025-05-13T08:37:16Z", "owner_id": "kim"}], "owner-as-text"),
]


@pytest.mark.parametrize("data", [p for p, _ in BAD_PAGES], ids=[i for _, i in BAD_PAGES])
def test_malformed_search_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a search page is a ParseError naming the search."""
    with pytest.raises(ParseError, match="zammad ticket search"):
        parse_tickets(data)


@pytest.mark.parametrize(
    "data",
    [{}, [{"id": 1, "ticket_id": 1, "created_at": "2025-05-13T08:37:16Z", "internal": "no"}],
     [{"id": 1, "ticket_id": 1, "created_at": "2025-05-13T08:37:16Z", "body": ["x"]}]],
    ids=["object", "internal-as-text", "body-as-list"],
)
def test_malformed_article_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in an article list is a ParseError naming it."""
    with pytest.raises(ParseError, match="zammad articles"):
        parse_articles(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "ticket_id", "state_id", "state", "created_at", "updated_at",
                         "owner", "sender", "internal", "body", "login", "firstname"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_or_raises_parse_error_only(data: Any) -> None:
    """Whatever JSON the API sends, the parsers either succeed or raise ParseError."""
    for parse in (parse_tickets, parse_articles, parse_me):
        with contextlib.suppress(ParseError):
            parse(data)


def test_settings_validate_and_keep_the_token_secret() -> None:
    """The token never prints; addresses need a scheme; custom state names are normalized."""
    values = {"name": SOURCE, "url": URL + "/", "token": "s3cret"}
    settings_ = ZammadSettings.model_validate(values | {"custom_states": {"Waiting ": "on_hold"}})
    assert (settings_.url, settings_.custom_states) == (URL, {"waiting": Status.ON_HOLD})
    assert "s3cret" not in repr(settings_)
    for bad in ({"url": "support.acme.example"}, {"base_url": "ftp://x"}, {"page_size": 201},
                {"custom_states": {"x": "archived"}}, {"password": "x"}):
        with pytest.raises(ValidationError):
            ZammadSettings.model_validate(values | bad)


def test_connector_is_registered() -> None:
    """The registry names this class for "zammad", and it meets the protocol."""
    assert BUILTIN["zammad"] == "connectors.zammad:ZammadConnector"
    connector = ZammadConnector({"name": SOURCE, "url": URL, "token": "t"})
    assert isinstance(connector, Connector)
    assert ZammadConnector.settings_model is ZammadSettings


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Desk:
    """A served fake, a client session, and helpers to poll it."""

    fake: ZammadFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    def connector(self, **overrides: Any) -> ZammadConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "url": URL, "token": "fake-token",
                                  "base_url": self.base_url}
        values.update(overrides)
        return ZammadConnector(ZammadSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def requests(self, path: str = SEARCH) -> list[dict[str, str]]:
        """The query strings of the requests the fake received for ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]

    async def drain(
        self, connector: ZammadConnector, cursor: Cursor | None, *, limit: int = 60
    ) -> tuple[list[Event], Cursor, list[Batch]]:
        """Poll until ``more`` is False, as the runner does; return events, cursor, batches."""
        events: list[Event] = []
        batches: list[Batch] = []
        for _ in range(limit):
            batch = await connector.poll(cursor, self.ctx())
            batches.append(batch)
            events.extend(batch.events)
            cursor = batch.cursor
            if not batch.more:
                assert cursor is not None
                return events, cursor, batches
        raise AssertionError("the connector never finished its round")


@contextlib.asynccontextmanager
async def open_desk(world: ZammadWorld, clock: SteppedClock, **options: Any
                    ) -> AsyncIterator[Desk]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = ZammadFake(world, **options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Desk(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """A world with one customer, one agent, one group and one worked ticket."""

    world: ZammadWorld
    pat: int
    kim: int
    billing: int
    ticket: int


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """Pat writes in, Kim takes the ticket, notes, answers and sets it pending close."""
    world = ZammadWorld(now=clock)
    pat = world.add_user("Pat", "Customer", "pat@example.com")
    kim = world.add_user("Kim", "Agent", "kim@acme.example", role="Agent")
    billing = world.add_group("Billing")
    ticket = world.create_ticket(customer_id=pat, title="Refund please",
                                 body="I was charged twice", at=minutes(-10), group_id=billing,
                                 priority="3 high")
    world.update(ticket, at=minutes(-9), by=kim, owner_id=kim, state="open")
    world.add_article(ticket, author_id=kim, body="Checking with finance", at=minutes(-9),
                      internal=True, type="note")
    world.add_article(ticket, author_id=kim, body="Refund on its way", at=minutes(-8))
    world.update(ticket, at=minutes(-8), by=kim, state="pending close")
    return Scene(world, pat, kim, billing, ticket)


def summary(event: Event) -> tuple[Any, ...]:
    """An event as (kind, minutes from T0, what it says): easy to read in a table."""
    offset = (event.at - T0).total_seconds() / 60
    if event.kind is EventKind.STATUS:
        return ("status", offset, event.status)
    if event.kind is EventKind.MESSAGE:
        return ("message", offset, event.actor, event.public, event.text)
    if event.kind is EventKind.DISMISSED:
        return ("dismissed", offset)
    return ("update", offset, dict(event.fields))


async def test_first_round_reads_the_search_then_the_articles(
    scene: Scene, clock: SteppedClock
) -> None:
    """One request per poll: the search, then the thread; then the watermark is set."""
    since = T0 - timedelta(hours=1)
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx(since))
        thread = await connector.poll(listing.cursor, desk.ctx(since))
    requests = [(r.path, r.query) for r in desk.fake.controls.requests]
    assert requests == [
        (SEARCH, {"query": "updated_at:>=2026-11-23T08\\:00\\:00.000Z", "sort_by": "updated_at",
                  "order_by": "asc", "expand": "true", "page": "1", "per_page": "100"}),
        (f"/api/v1/ticket_articles/by_ticket/{scene.ticket}", {}),
    ]
    assert (listing.more, listing.watermark) == (True, None)
    assert (thread.more, thread.watermark) == (False, T0 - timedelta(seconds=60))
    assert [summary(e) for e in listing.events] == [
        ("update", -8, {"subject": "Refund please", "customer": "pat@example.com",
                        "priority": "high", "assignee": "kim@acme.example",
                        "group": "Billing"}),
        ("status", -8, Status.PENDING),
    ]
    assert listing.events[0].channel == "email"
    assert [summary(e) for e in thread.events] == [
        ("message", -10, Actor.CUSTOMER, True, "I was charged twice"),
        ("message", -9, Actor.AGENT, False, "Checking with finance"),
        ("message", -8, Actor.AGENT, True, "Refund on its way"),
    ]
    assert thread.events[2].author == "Kim Agent"
    json.dumps(thread.cursor)  # the runner stores it as JSON


async def test_small_pages_move_the_position_by_keyset(clock: SteppedClock) -> None:
    """Each full page moves the query to its newest ticket; every ticket is read once."""
    world = ZammadWorld(now=clock)
    pat = world.add_user("Pat", "Customer", "pat@example.com")
    tickets = [world.create_ticket(customer_id=pat, title=f"#{n}", body=f"help {n}",
                                   at=minutes(-30 + n)) for n in range(5)]
    async with open_desk(world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(page_size=2), None)
    starts = [T0 - timedelta(days=1), *(minutes(-30 + n) for n in range(1, 5))]
    assert [q["query"] for q in desk.requests()] == [search_query(to_ms(t)) for t in starts]
    assert len({e.id for e in events}) == len(events)
    firsts = [e.conversation for e in events if e.kind is EventKind.MESSAGE]
    assert firsts == [str(t) for t in tickets]


async def test_repoll_of_an_unchanged_world_yields_nothing(
    scene: Scene, clock: SteppedClock
) -> None:
    """Polling again with nothing changed returns no event and reads no thread."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        clock.advance(90)
        again, _, batches = await desk.drain(connector, cursor)
    assert seen
    assert again == []
    assert len(batches) == 1
    desk.fake.controls.assert_called(f"/api/v1/ticket_articles/by_ticket/{scene.ticket}",
                                     times=1)


async def test_cursor_survives_a_restart(scene: Scene, clock: SteppedClock) -> None:
    """A new instance resumes from the stored cursor and returns only what is new."""
    async with open_desk(scene.world, clock) as desk:
        seen, cursor, _ = await desk.drain(desk.connector(), None)
        scene.world.add_article(scene.ticket, author_id=scene.pat, body="Still waiting",
                                at=T0, sender="Customer")
        clock.advance(120)
        later, _, _ = await desk.drain(desk.connector(), json.loads(json.dumps(cursor)))
    assert {e.id for e in later}.isdisjoint({e.id for e in seen})
    assert [summary(e) for e in later] == [
        ("update", 0, {"subject": "Refund please", "customer": "pat@example.com",
                       "priority": "high", "assignee": "kim@acme.example", "group": "Billing"}),
        ("status", 0, Status.OPEN),
        ("message", 0, Actor.CUSTOMER, True, "Still waiting"),
    ]


async def test_a_change_indexed_late_is_still_found(scene: Scene, clock: SteppedClock) -> None:
    """The index shows a change 30 s late; the position waits 60 s, so the change is read."""
    async with open_desk(scene.world, clock, index_delay=30) as desk:
        connector = desk.connector()
        _, cursor, _ = await desk.drain(connector, None)
        scene.world.add_article(scene.ticket, author_id=scene.pat, body="Hello?", at=T0,
                                sender="Customer")
        clock.advance(10)
        early, cursor, batches = await desk.drain(connector, cursor)
        assert early == []
        assert batches[-1].watermark == T0 - timedelta(seconds=50)
        clock.advance(25)
        late, _, batches = await desk.drain(connector, cursor)
    assert [e.text for e in late if e.kind is EventKind.MESSAGE] == ["Hello?"]
    assert batches[-1].watermark == T0 - timedelta(seconds=25)


async def test_watermark_stays_behind_and_never_moves_back(
    scene: Scene, clock: SteppedClock
) -> None:
    """Every watermark is at most server time - index_lag, and they never decrease."""
    marks: list[datetime] = []
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(index_lag="20s")
        cursor: Cursor | None = None
        for step in range(6):
            scene.world.add_article(scene.ticket, author_id=scene.pat, body=f"ping {step}",
                                    at=clock(), sender="Customer")
            _, cursor, batches = await desk.drain(connector, cursor)
            for batch in batches:
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=20)
                    marks.append(batch.watermark)
            clock.advance(7)
    assert marks == sorted(marks)
    assert marks[-1] == clock() - timedelta(seconds=27)


async def test_merged_ticket_is_dismissed(scene: Scene, clock: SteppedClock) -> None:
    """Merging cancels the source ticket; its moved articles do not reappear as new."""
    other = scene.world.create_ticket(customer_id=scene.pat, title="Also: refund",
                                      body="Same problem", at=minutes(-5))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        _, cursor, _ = await desk.drain(connector, None)
        scene.world.merge(other, into=scene.ticket, at=T0, by=scene.kim)
        clock.advance(120)
        later, _, _ = await desk.drain(connector, cursor)
    assert sorted((e.conversation, e.kind) for e in later) == [
        (str(scene.ticket), EventKind.STATUS), (str(scene.ticket), EventKind.UPDATE),
        (str(other), EventKind.DISMISSED), (str(other), EventKind.UPDATE),
    ]


async def test_a_ticket_gone_before_its_thread_is_read_is_skipped(
    scene: Scene, clock: SteppedClock
) -> None:
    """A 404 for the articles (deleted meanwhile) drops the fetch, no error."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx())
        scene.world.delete(scene.ticket)
        skipped = await connector.poll(listing.cursor, desk.ctx())
    assert (skipped.events, skipped.more, skipped.watermark) == (
        (), False, T0 - timedelta(seconds=60))


async def test_scripted_429_then_503_then_success(scene: Scene, clock: SteppedClock) -> None:
    """[429 Retry-After: 2, 503, 200] gives RateLimited(2), TransientError, then a batch."""
    async with open_desk(scene.world, clock) as desk:
        desk.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
        connector = desk.connector()
        with pytest.raises(RateLimited) as limited:
            await connector.poll(None, desk.ctx())
        assert limited.value.retry_after == 2
        with pytest.raises(TransientError) as failed:
            await connector.poll(None, desk.ctx())
        assert not isinstance(failed.value, RateLimited)
        batch = await connector.poll(None, desk.ctx())
    assert {e.conversation for e in batch.events} == {str(scene.ticket)}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"error": "no"})),
        Fault(200, body="[{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(scene: Scene, clock: SteppedClock,
                                            fault: Fault) -> None:
    """A malformed article page is a ParseError; the retry from the last cursor is whole."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx())
        desk.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(listing.cursor, desk.ctx())
        recovered = await connector.poll(listing.cursor, desk.ctx())
    assert [e.text for e in recovered.events] == [
        "I was charged twice", "Checking with finance", "Refund on its way"]


async def test_bad_token_is_an_auth_error_without_secrets(
    scene: Scene, clock: SteppedClock
) -> None:
    """A 401 is AuthError for poll and check, and no message shows the token."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(token="wrong-token")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, desk.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(desk.ctx())
    for message in (str(polled.value), str(checked.value)):
        assert "wrong-token" not in message
        assert "401" in message


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_desk(scene.world, clock) as desk:
        desk.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await desk.connector().poll(None, desk.ctx())


async def test_check_names_the_user_and_probes_the_index(
    scene: Scene, clock: SteppedClock
) -> None:
    """check() says whose token it is, after the search found a ticket."""
    async with open_desk(scene.world, clock) as desk:
        assert await desk.connector().check(desk.ctx()) == (
            "authenticated as Ops Agent (ops@acme.example)")
    assert [r.path for r in desk.fake.controls.requests] == ["/api/v1/users/me", SEARCH]


async def test_check_says_when_the_search_index_is_missing(
    scene: Scene, clock: SteppedClock
) -> None:
    """Tickets exist but the search finds none: check() fails naming Elasticsearch."""
    async with open_desk(scene.world, clock, index_delay=10**9) as desk:
        with pytest.raises(FatalError, match="Elasticsearch"):
            await desk.connector().check(desk.ctx())


async def test_hostile_text_from_the_api_stays_inert(scene: Scene, clock: SteppedClock) -> None:
    """Markup and escapes in a title and an HTML article come through as plain strings."""
    hostile = "[link=https://evil.example]click[/link] \x1b]8;;x\x07 <img src=x onerror=1>"
    ticket = scene.world.create_ticket(customer_id=scene.pat, title=hostile, body="hi",
                                       at=minutes(-3))
    scene.world.add_article(ticket, author_id=scene.pat, body=hostile, at=minutes(-2),
                            sender="Customer")
    async with open_desk(scene.world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(), None)
    mine = [e for e in events if e.conversation == str(ticket)]
    assert hostile in {e.text for e in mine if e.kind is EventKind.MESSAGE}
    assert {e.fields["subject"] for e in mine if e.kind is EventKind.UPDATE} == {hostile}


async def test_fake_world_follows_zammad_state_rules(clock: SteppedClock) -> None:
    """A customer follow-up reopens a closed ticket; closed is dated at its last close."""
    clock.advance(-30 * 60)
    world = ZammadWorld(now=clock)
    pat = world.add_user("Pat", "Customer", "pat@example.com")
    kim = world.add_user("Kim", "Agent", "kim@acme.example", role="Agent")
    ticket = world.create_ticket(customer_id=pat, title="s", body="b", at=minutes(-40))
    world.update(ticket, at=minutes(-35), by=kim, state="closed")
    world.update(ticket, at=minutes(-33), by=kim, priority="1 low")
    async with open_desk(world, clock) as desk:
        connector = desk.connector()
        first, cursor, _ = await desk.drain(connector, None)
        world.add_article(ticket, author_id=pat, body="not done", at=minutes(-20),
                          sender="Customer")
        clock.advance(30 * 60)
        second, _, _ = await desk.drain(connector, cursor)
    assert [summary(e) for e in first if e.kind is EventKind.STATUS] == [
        ("status", -35, Status.CLOSED)]
    assert [summary(e) for e in second if e.kind is EventKind.STATUS] == [
        ("status", -20, Status.OPEN)]


async def test_fake_speaks_zammad(scene: Scene, clock: SteppedClock) -> None:
    """The fake's own answers: 401, unexpanded search shape, result window, unknown ticket."""
    good = {"Authorization": "Token token=fake-token"}
    async with open_desk(scene.world, clock) as desk:
        url = desk.base_url + SEARCH
        async with desk.session.get(url, params={"query": "Refund"}) as response:
            assert (response.status, await response.json()) == (
                401, {"error": "Invalid token!", "error_human": "Invalid token!"})
        async with desk.session.get(url, params={"query": "Refund"}, headers=good) as response:
            assert await response.json() == {"tickets": [scene.ticket], "tickets_count": 1,
                                             "assets": {}}
        async with desk.session.get(url, params={"query": "*", "page": "51", "per_page": "200"},
                                    headers=good) as response:
            assert response.status == 422
        async with desk.session.get(desk.base_url + "/api/v1/ticket_articles/by_ticket/999",
                                    headers=good) as response:
            assert response.status == 404
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:00:00 GMT"


@pytest.mark.parametrize("body", ["<![ x", "<p>hi<![CDATA[", "<!-- <![ -->", "</<![x"],
                         ids=["marked-section", "cdata", "comment", "broken-end"])
def test_html_to_text_never_raises_on_hostile_markup(body: str) -> None:
    """Markup html.parser chokes on is read by the fallback instead of crashing a poll."""
    from connectors.zammad import html_to_text

    assert isinstance(html_to_text(body), str)
