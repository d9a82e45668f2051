"""Tests of the Freshdesk connector: recorded payloads, and the faithful fake served for real."""

from __future__ import annotations

import base64
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
from pydantic import SecretStr, ValidationError

from connectors import BUILTIN
from connectors._text import TEXT_LIMIT
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.freshdesk import CLOSED, PENDING, RESOLVED, FreshdeskFake, FreshdeskWorld
from connectors.freshdesk import (
    FreshdeskConnector,
    FreshdeskConversation,
    FreshdeskSettings,
    channel_of,
    conversation_actor,
    conversation_events,
    parse_conversations,
    parse_me,
    parse_ticket,
    parse_tickets,
    ticket_events,
    ticket_status,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-freshdesk"
TICKETS = "/api/v2/tickets"


def load(name: str) -> Any:
    """A recorded payload from the shared fixtures."""
    return json.loads(fixture_path("freshdesk", name).read_text())


def at(text: str) -> datetime:
    """An aware UTC instant from ``2016-05-18T04:36:04``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


def listed_events(ticket: dict[str, Any], **options: Any) -> tuple[Event, ...]:
    """Every event a listed ticket yields (versioned first)."""
    listed = ticket_events(parse_ticket(ticket), source=SOURCE, subdomain="acme", **options)
    return (*listed.versioned, *listed.dated)


# --- recorded payloads ---------------------------------------------------------------------


def test_ticket_fixture_gives_update_opening_message_and_status() -> None:
    """The recorded ticket (with stats and requester) yields exactly three events."""
    url = "https://acme.freshdesk.com/a/tickets/1"
    assert listed_events(load("GET_api_v2_tickets_1.json")) == (
        Event(source=SOURCE, conversation="1", id="ticket-1@1463614970",
              at=at("2016-05-18T23:42:50"), kind=EventKind.UPDATE, channel="portal", url=url,
              fields={"subject": "This is a sample ticket", "customer": "Dummyname",
                      "priority": "low", "assignee": "6010396333", "group": None,
                      "tags": ["foo", "bar"]}),
        Event(source=SOURCE, conversation="1", id="1:description",
              at=at("2016-05-18T04:36:04"), kind=EventKind.MESSAGE, actor=Actor.CUSTOMER,
              public=True, author="Dummyname",
              text="This is a sample ticket, feel free to delete it.", url=url),
        Event(source=SOURCE, conversation="1", id="1:status:2@1595604921",
              at=at("2020-07-24T15:35:21"), kind=EventKind.STATUS, status=Status.OPEN,
              url=url),
    )


def test_ticket_fixture_queues_its_conversations_with_the_requester() -> None:
    """A listed ticket asks for its thread, remembering who the requester is."""
    listed = ticket_events(parse_ticket(load("GET_api_v2_tickets_1.json")), source=SOURCE,
                           subdomain="acme")
    assert listed.fetch is not None
    assert (listed.ticket, listed.fetch.ticket, listed.fetch.context) == ("1", "1", 6012691534)


def test_conversations_fixture_gives_a_note_and_a_reply() -> None:
    """The recorded thread: a private note (internal) and a public agent reply."""
    conversations = parse_conversations(load("GET_api_v2_tickets_1_conversations.json"))
    url = "https://acme.freshdesk.com/a/tickets/1"
    assert conversation_events(conversations, source=SOURCE, subdomain="acme",
                               requester_id=6012691534) == (
        Event(source=SOURCE, conversation="1", id="1:1", at=at("2016-05-19T05:36:12"),
              kind=EventKind.MESSAGE, actor=Actor.AGENT, public=False,
              text="This is a private note", url=url),
        Event(source=SOURCE, conversation="1", id="1:2", at=at("2016-05-19T05:36:14"),
              kind=EventKind.MESSAGE, actor=Actor.AGENT, public=True, author="Rachel",
              text="This is a reply", url=url),
    )


def _conversation(**changes: Any) -> FreshdeskConversation:
    base: dict[str, Any] = {"id": 9, "ticket_id": 1, "created_at": T0, "body": "x",
                            "incoming": False, "private": False, "user_id": 5,
                            "from_email": None}
    base.update(changes)
    return FreshdeskConversation(**base)


@pytest.mark.parametrize(
    ("changes", "actor"),
    [
        ({"incoming": True}, Actor.CUSTOMER),
        ({"user_id": 77}, Actor.CUSTOMER),
        ({}, Actor.AGENT),
        ({"user_id": None}, Actor.AGENT),
        ({"user_id": 42}, Actor.BOT),
        ({"user_id": 42, "incoming": True}, Actor.BOT),
    ],
    ids=["incoming", "by-the-requester", "by-an-agent", "no-user", "bot-user",
         "bot-wins-over-incoming"],
)
def test_conversation_actor(changes: dict[str, Any], actor: Actor) -> None:
    """Incoming or requester-written is the customer; listed bots are bots; else an agent."""
    assert conversation_actor(_conversation(**changes), requester_id=77, bot_user_ids={42}) \
        is actor


@pytest.mark.parametrize(
    ("changes", "public"),
    [
        ({"source": 0}, True),
        ({"source": 2, "private": True}, False),
        ({"source": 2}, False),
        ({"source": 2, "incoming": True}, True),
        ({"source": 0, "private": True, "incoming": True}, False),
        ({"source": None}, True),
    ],
    ids=["agent-reply", "private-note", "agent-public-note", "customer-note",
         "private-incoming", "no-source"],
)
def test_conversation_visibility(changes: dict[str, Any], public: bool) -> None:
    """Replies are public; private notes and an agent's public note are not replies."""
    [event] = conversation_events([_conversation(**changes)], source=SOURCE, subdomain="acme",
                                  requester_id=77)
    assert event.public is public


@pytest.mark.parametrize(
    ("code", "custom", "expected"),
    [(2, {}, Status.OPEN), (3, {}, Status.PENDING), (4, {}, Status.SOLVED),
     (5, {}, Status.CLOSED), (6, {}, None), (6, {6: Status.ON_HOLD}, Status.ON_HOLD)],
    ids=["open", "pending", "resolved-is-solved", "closed", "custom-unmapped", "custom-mapped"],
)
def test_status_codes(code: int, custom: dict[int, Status], expected: Status | None) -> None:
    """Freshdesk's status codes map to normalized statuses; custom ones only when configured."""
    assert ticket_status(code, custom) is expected


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(1, "low"), (2, "normal"), (3, "high"), (4, "urgent"), (9, None), (None, None)],
    ids=["low", "medium-is-normal", "high", "urgent", "unknown", "none"],
)
def test_priorities(priority: int | None, expected: str | None) -> None:
    """Priorities 1-4 are low, normal, high and urgent; anything else is no priority."""
    ticket = load("GET_api_v2_tickets_1.json") | {"priority": priority}
    [update, *_] = listed_events(ticket)
    assert update.fields["priority"] == expected


@pytest.mark.parametrize(("source", "channel"),
                         [(1, "email"), (3, "phone"), (7, "chat"), (10, "outbound_email"),
                          (42, "source-42"), (None, None)],
                         ids=["email", "phone", "chat", "outbound", "unknown", "none"])
def test_channels(source: int | None, channel: str | None) -> None:
    """The ticket's source code names its channel."""
    assert channel_of(source) == channel


def test_outbound_ticket_opens_with_the_agent() -> None:
    """An outbound email's description is the agent's message, not the customer's."""
    ticket = load("GET_api_v2_tickets_1.json") | {"source": 10}
    [opening] = [e for e in listed_events(ticket) if e.kind is EventKind.MESSAGE]
    assert (opening.actor, opening.author) == (Actor.AGENT, None)


@pytest.mark.parametrize(
    ("stream", "changes", "suffix"),
    [("deleted", {}, "deleted"), ("spam", {}, "spam"), ("tickets", {"spam": True}, "spam"),
     ("tickets", {"deleted": True}, "deleted")],
    ids=["deleted-listing", "spam-listing", "flagged-spam", "flagged-deleted"],
)
def test_deleted_and_spam_tickets_are_dismissed(
    stream: str, changes: dict[str, Any], suffix: str
) -> None:
    """A ticket in the trash or the spam folder is one dismissed event and nothing else."""
    ticket = load("GET_api_v2_tickets_1.json") | changes
    assert [(e.kind, e.id) for e in listed_events(ticket, stream=stream)] == [
        (EventKind.DISMISSED, f"ticket-1@1463614970:{suffix}")]


def test_missing_stats_date_the_status_at_the_update() -> None:
    """Without the stats embed, the status is dated at the ticket's updated_at."""
    ticket = load("GET_api_v2_tickets_1.json")
    del ticket["stats"]
    [status] = [e for e in listed_events(ticket) if e.kind is EventKind.STATUS]
    assert status.at == at("2016-05-18T23:42:50")


def test_hostile_text_is_clipped_data() -> None:
    """Markup, escapes and a huge body are kept as clipped text, never interpreted."""
    hostile = "[bold red]x[/] \x1b[2J <script>alert(1)</script> ${jndi:x}" + "y" * 10_000
    conversations = load("GET_api_v2_tickets_1_conversations.json")
    conversations[0]["body_text"] = hostile
    conversations[0]["from_email"] = "[red]Eve[/] <eve@example.com>"
    [event, _] = conversation_events(parse_conversations(conversations), source=SOURCE,
                                     subdomain="acme", requester_id=None)
    assert event.text is not None
    assert len(event.text) == TEXT_LIMIT
    assert event.text.startswith("[bold red]x[/] \x1b[2J <script>alert(1)</script> ${jndi:x}")
    assert event.author == "[red]Eve[/]"


BAD_PAGES = [
    ({"tickets": []}, "object-not-list"),
    ([1], "ticket-not-object"),
    ([{"id": "1"}], "id-as-text"),
    ([{"id": 1, "updated_at": "yesterday", "created_at": "2016-05-18T04:36:04Z",
       "status": 2}], "bad-time"),
    ([{"id": 1, "updated_at": "2016-05-18T04:36:04", "created_at": "2016-05-18T04:36:04Z",
       "status": 2}], "naive-time"),
    ([{"id": 1, "updated_at": "2016-05-18T04:36:04Z", "created_at": "2016-05-18T04:36:04Z",
       "status": "open"}], "status-as-text"),
    ([{"id": 1, "updated_at": "2016-05-18T04:36:04Z", "created_at": "2016-05-18T04:36:04Z",
       "status": 2, "tags": "vip"}], "tags-not-list"),
    ([{"id": 1, "updated_at": "2016-05-18T04:36:04Z", "created_at": "2016-05-18T04:36:04Z",
       "status": 2, "stats": []}], "stats-not-object"),
    ([{"id": 1, "updated_at": "2016-05-18T04:36:04Z", "created_at": "2016-05-18T04:36:04Z",
       "status": 2, "spam": "no"}], "spam-as-text"),
]


@pytest.mark.parametrize("data", [p for p, _ in BAD_PAGES], ids=[i for _, i in BAD_PAGES])
def test_malformed_ticket_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a listing page is a ParseError naming the listing."""
    with pytest.raises(ParseError, match="freshdesk ticket list"):
        parse_tickets(data)


@pytest.mark.parametrize(
    "data",
    [{}, [{"id": 1, "ticket_id": 1, "created_at": "2016-05-19T05:36:12Z", "private": "yes"}],
     [{"id": 1, "ticket_id": 1, "created_at": "2016-05-19T05:36:12Z", "body_text": 5}]],
    ids=["object", "private-as-text", "body-as-number"],
)
def test_malformed_conversation_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a conversations page is a ParseError naming it."""
    with pytest.raises(ParseError, match="freshdesk conversations"):
        parse_conversations(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "ticket_id", "status", "created_at", "updated_at", "stats",
                         "requester", "tags", "private", "incoming", "contact", "name"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_or_raises_parse_error_only(data: Any) -> None:
    """Whatever JSON the API sends, the parsers either succeed or raise ParseError."""
    for parse in (parse_tickets, parse_conversations, parse_me):
        with contextlib.suppress(ParseError):
            parse(data)


def test_settings_validate_and_keep_the_key_secret() -> None:
    """The key never prints; built-in status ids cannot be remapped; pages are at most 100."""
    values = {"name": SOURCE, "subdomain": "acme", "api_key": SecretStr("s3cret")}
    settings_ = FreshdeskSettings.model_validate(values | {"custom_statuses": {"6": "on_hold"}})
    assert settings_.custom_statuses == {6: Status.ON_HOLD}
    assert "s3cret" not in repr(settings_)
    for bad in ({"custom_statuses": {"3": "on_hold"}}, {"page_size": 101},
                {"base_url": "ftp://x"}, {"subdomain": "a b"}, {"api_token": "x"}):
        with pytest.raises(ValidationError):
            FreshdeskSettings.model_validate(values | bad)


def test_connector_is_registered() -> None:
    """The registry names this class for "freshdesk", and it meets the protocol."""
    assert BUILTIN["freshdesk"] == "connectors.freshdesk:FreshdeskConnector"
    connector = FreshdeskConnector({"name": SOURCE, "subdomain": "acme", "api_key": "k"})
    assert isinstance(connector, Connector)
    assert FreshdeskConnector.settings_model is FreshdeskSettings


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Desk:
    """A served fake, a client session, and helpers to poll it."""

    fake: FreshdeskFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    def connector(self, **overrides: Any) -> FreshdeskConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "subdomain": "acme",
                                  "api_key": "fake-api-key", "base_url": self.base_url}
        values.update(overrides)
        return FreshdeskConnector(FreshdeskSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def requests(self, path: str = TICKETS) -> list[dict[str, str]]:
        """The query strings of the requests the fake received for ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]

    async def drain(
        self, connector: FreshdeskConnector, cursor: Cursor | None, *, limit: int = 60
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
async def open_desk(world: FreshdeskWorld, clock: SteppedClock, **options: Any
                    ) -> AsyncIterator[Desk]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = FreshdeskFake(world, **options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Desk(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """A world with one customer, one agent, one group and one worked ticket."""

    world: FreshdeskWorld
    pat: int
    kim: int
    billing: int
    ticket: int


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """Pat writes in, Kim takes the ticket, notes, answers and sets it pending."""
    world = FreshdeskWorld(now=clock)
    pat = world.add_contact("Pat Customer", "pat@example.com")
    kim = world.add_agent("Kim Agent", "kim@acme.example")
    billing = world.add_group("Billing")
    ticket = world.create_ticket(requester_id=pat, subject="Refund please",
                                 description="I was charged twice", at=minutes(-10), priority=3,
                                 source=1, tags=["vip"], group_id=billing)
    world.update(ticket, at=minutes(-9), responder_id=kim)
    world.note(ticket, user_id=kim, body="Checking with finance", at=minutes(-9))
    world.reply(ticket, agent_id=kim, body="Refund on its way", at=minutes(-8), status=PENDING)
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
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in event.fields.items()}
    return ("update", offset, fields)


async def test_first_round_reads_tickets_conversations_and_the_trash(
    scene: Scene, clock: SteppedClock
) -> None:
    """One request per poll: the list, the thread, deleted, spam; then the watermark is set."""
    since = T0 - timedelta(hours=1)
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        batches = []
        cursor: Cursor | None = None
        for _ in range(4):
            batch = await connector.poll(cursor, desk.ctx(since))
            batches.append(batch)
            cursor = batch.cursor
    requests = [(r.path, r.query) for r in desk.fake.controls.requests]
    common = {"updated_since": "2026-11-23T07:59:59Z", "order_by": "updated_at",
              "order_type": "asc", "per_page": "100", "page": "1"}
    conversations = f"/api/v2/tickets/{scene.ticket}/conversations"
    assert requests == [
        (TICKETS, common | {"include": "stats,requester,description"}),
        (conversations, {"per_page": "100", "page": "1"}),
        (TICKETS, common | {"filter": "deleted"}),
        (TICKETS, common | {"filter": "spam"}),
    ]
    assert [b.more for b in batches] == [True, True, True, False]
    assert [b.watermark for b in batches] == [None, None, None, T0 - timedelta(seconds=30)]
    assert [summary(e) for e in batches[0].events] == [
        ("update", -8, {"subject": "Refund please", "customer": "Pat Customer",
                        "priority": "high", "assignee": str(scene.kim),
                        "group": str(scene.billing), "tags": ["vip"]}),
        ("message", -10, Actor.CUSTOMER, True, "I was charged twice"),
        ("status", -8, Status.PENDING),
    ]
    assert batches[0].events[0].channel == "email"
    assert [summary(e) for e in batches[1].events] == [
        ("message", -9, Actor.AGENT, False, "Checking with finance"),
        ("message", -8, Actor.AGENT, True, "Refund on its way"),
    ]
    assert batches[1].events[1].author == "Kim Agent"
    json.dumps(batches[-1].cursor)  # the runner stores it as JSON


async def test_small_pages_move_the_position_by_keyset(clock: SteppedClock) -> None:
    """Each full page moves updated_since to its newest ticket; every ticket is read once."""
    world = FreshdeskWorld(now=clock)
    pat = world.add_contact("Pat", "pat@example.com")
    tickets = [world.create_ticket(requester_id=pat, subject=f"#{n}", description=f"help {n}",
                                   at=minutes(-30 + n)) for n in range(5)]
    async with open_desk(world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(page_size=2, dismissals=False), None)
    listings = desk.requests()
    # Each page starts with the boundary ticket again (seen, so dropped): one new a page.
    assert [(q["updated_since"], q["page"]) for q in listings] == [
        ("2026-11-22T08:59:59Z", "1"), ("2026-11-23T08:30:59Z", "1"),
        ("2026-11-23T08:31:59Z", "1"), ("2026-11-23T08:32:59Z", "1"),
        ("2026-11-23T08:33:59Z", "1"),
    ]
    assert len({e.id for e in events}) == len(events)
    openings = [e.conversation for e in events if e.id.endswith(":description")]
    assert openings == [str(t) for t in tickets]


async def test_a_burst_in_one_second_pages_by_number(clock: SteppedClock) -> None:
    """Five tickets stamped one second, two a page: at that second, pages 2 and 3 follow."""
    world = FreshdeskWorld(now=clock)
    pat = world.add_contact("Pat", "pat@example.com")
    for n in range(5):
        world.create_ticket(requester_id=pat, subject=f"#{n}", description="bulk",
                            at=minutes(-5))
    async with open_desk(world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(page_size=2, dismissals=False), None)
    assert [(q["updated_since"], q["page"]) for q in desk.requests()] == [
        ("2026-11-22T08:59:59Z", "1"), ("2026-11-23T08:54:59Z", "1"),
        ("2026-11-23T08:54:59Z", "2"), ("2026-11-23T08:54:59Z", "3"),
    ]
    assert len([e for e in events if e.kind is EventKind.UPDATE]) == 5
    assert len({e.id for e in events}) == len(events)


async def test_long_threads_follow_the_link_header(scene: Scene, clock: SteppedClock) -> None:
    """A thread longer than a page is read page by page, as the Link header announces."""
    for n in range(3):
        scene.world.customer_reply(scene.ticket, body=f"more {n}", at=minutes(-7 + n))
    async with open_desk(scene.world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(page_size=2, dismissals=False), None)
    thread = desk.requests(f"/api/v2/tickets/{scene.ticket}/conversations")
    assert [q["page"] for q in thread] == ["1", "2", "3"]
    texts = [e.text for e in events if e.kind is EventKind.MESSAGE]
    assert texts == ["I was charged twice", "Checking with finance", "Refund on its way",
                     "more 0", "more 1", "more 2"]


async def test_repoll_of_an_unchanged_world_yields_nothing(
    scene: Scene, clock: SteppedClock
) -> None:
    """Polling again with nothing changed returns no event and reads no thread."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        clock.advance(60)
        again, _, batches = await desk.drain(connector, cursor)
    assert seen
    assert again == []
    assert len(batches) == 3  # the three listings, no conversations
    desk.fake.controls.assert_called(f"/api/v2/tickets/{scene.ticket}/conversations", times=1)


async def test_cursor_survives_a_restart(scene: Scene, clock: SteppedClock) -> None:
    """A new instance resumes from the stored cursor and returns only what is new."""
    async with open_desk(scene.world, clock) as desk:
        seen, cursor, _ = await desk.drain(desk.connector(), None)
        scene.world.customer_reply(scene.ticket, body="Still waiting", at=T0)
        clock.advance(120)
        later, _, _ = await desk.drain(desk.connector(), json.loads(json.dumps(cursor)))
    assert {e.id for e in later}.isdisjoint({e.id for e in seen})
    assert [summary(e) for e in later] == [
        ("update", 0, {"subject": "Refund please", "customer": "Pat Customer",
                       "priority": "high", "assignee": str(scene.kim),
                       "group": str(scene.billing), "tags": ["vip"]}),
        ("status", 0, Status.OPEN),
        ("message", 0, Actor.CUSTOMER, True, "Still waiting"),
    ]


async def test_a_batch_the_runner_failed_to_store_comes_back(
    scene: Scene, clock: SteppedClock
) -> None:
    """Polled again from the same cursor (the store failed), a thread comes back whole."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx())
        thread = await connector.poll(listing.cursor, desk.ctx())
        retried = await connector.poll(listing.cursor, desk.ctx())
    assert len(thread.events) == 2
    assert retried.events == thread.events


async def test_changes_inside_the_settle_window_are_read_once(
    scene: Scene, clock: SteppedClock
) -> None:
    """A reply seconds old is read at once; the next round lists it again but repeats nothing."""
    scene.world.customer_reply(scene.ticket, body="Hello?", at=T0 - timedelta(seconds=5))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        first, cursor, batches = await desk.drain(connector, None)
        assert "Hello?" in {e.text for e in first}
        assert batches[-1].watermark == T0 - timedelta(seconds=30)
        clock.advance(10)
        again, cursor, batches = await desk.drain(desk.connector(), cursor)
    assert again == []
    assert batches[-1].watermark == T0 - timedelta(seconds=20)
    listing = desk.requests()[-3]
    assert listing["updated_since"] == "2026-11-23T08:59:29Z"  # behind the reply: listed again


async def test_watermark_stays_behind_and_never_moves_back(
    scene: Scene, clock: SteppedClock
) -> None:
    """Every watermark is at most server time - settle, and they never decrease."""
    marks: list[datetime] = []
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        cursor: Cursor | None = None
        for step in range(8):
            scene.world.customer_reply(scene.ticket, body=f"ping {step}", at=clock())
            _, cursor, batches = await desk.drain(connector, cursor)
            for batch in batches:
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=30)
                    marks.append(batch.watermark)
            clock.advance(7)
    assert marks == sorted(marks)
    assert marks[-1] == clock() - timedelta(seconds=37)


async def test_trashed_and_spam_tickets_are_dismissed_once(
    scene: Scene, clock: SteppedClock
) -> None:
    """Trashing one ticket and marking another spam cancels both, once each."""
    other = scene.world.create_ticket(requester_id=scene.pat, subject="Buy now",
                                      description="cheap pills", at=minutes(-6))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        _, cursor, _ = await desk.drain(connector, None)
        scene.world.delete(scene.ticket, at=T0)
        scene.world.mark_spam(other, at=T0)
        clock.advance(60)
        later, cursor, _ = await desk.drain(connector, cursor)
        clock.advance(60)
        again, _, _ = await desk.drain(connector, cursor)
    assert sorted((e.conversation, e.id) for e in later) == sorted([
        (str(scene.ticket), f"ticket-{scene.ticket}@{int(T0.timestamp())}:deleted"),
        (str(other), f"ticket-{other}@{int(T0.timestamp())}:spam"),
    ])
    assert again == []


async def test_without_dismissals_only_the_plain_list_is_read(
    scene: Scene, clock: SteppedClock
) -> None:
    """dismissals = false leaves out the deleted and spam listings."""
    async with open_desk(scene.world, clock) as desk:
        await desk.drain(desk.connector(dismissals=False), None)
    assert [q.get("filter") for q in desk.requests()] == [None]


async def test_a_ticket_gone_before_its_thread_is_read_is_skipped(
    scene: Scene, clock: SteppedClock
) -> None:
    """A 404 for the conversations (deleted for good meanwhile) drops the fetch, no error."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(dismissals=False)
        listing = await connector.poll(None, desk.ctx())
        del scene.world.tickets[scene.ticket]
        skipped = await connector.poll(listing.cursor, desk.ctx())
    assert (skipped.events, skipped.more) == ((), False)
    assert skipped.watermark == T0 - timedelta(seconds=30)


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


async def test_own_budget_waits_before_the_account_runs_dry(
    scene: Scene, clock: SteppedClock
) -> None:
    """When the last answer left fewer credits than the next call costs, no request is sent."""
    async with open_desk(scene.world, clock, rate_limit=9) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx())  # 7 credits: 2 left
        thread = await connector.poll(listing.cursor, desk.ctx())  # 1 credit: 1 left
        deleted = await connector.poll(thread.cursor, desk.ctx())  # 1 credit: 0 left
        clock.advance(15)
        with pytest.raises(RateLimited) as waited:
            await connector.poll(deleted.cursor, desk.ctx())
        assert waited.value.retry_after == 45
        assert len(desk.fake.controls.requests) == 3
        clock.advance(45)
        done = await connector.poll(deleted.cursor, desk.ctx())
    assert done.more is False


async def test_fake_answers_429_with_retry_after(scene: Scene, clock: SteppedClock) -> None:
    """Past the account's credits the fake says 429 + Retry-After; it becomes RateLimited."""
    async with open_desk(scene.world, clock, rate_limit=8) as desk:
        connector = desk.connector(min_remaining=0)
        listing = await connector.poll(None, desk.ctx())
        clock.advance(20)
        other = desk.connector()  # another instance: it does not know the budget is spent
        thread = await other.poll(listing.cursor, desk.ctx())
        with pytest.raises(RateLimited) as limited:
            await desk.connector().poll(thread.cursor, desk.ctx())
    assert limited.value.retry_after == 40


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"conversations": []})),
        Fault(200, body="[{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(scene: Scene, clock: SteppedClock,
                                            fault: Fault) -> None:
    """A malformed thread page is a ParseError; the retry from the last cursor is whole."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        listing = await connector.poll(None, desk.ctx())
        desk.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(listing.cursor, desk.ctx())
        recovered = await connector.poll(listing.cursor, desk.ctx())
    assert [e.text for e in recovered.events] == ["Checking with finance", "Refund on its way"]


async def test_bad_credentials_are_auth_errors_without_secrets(
    scene: Scene, clock: SteppedClock
) -> None:
    """A 401 is AuthError for poll and check, and no message shows the key or header."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(api_key="wrong-key")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, desk.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(desk.ctx())
    header = base64.b64encode(b"wrong-key:X").decode()
    for message in (str(polled.value), str(checked.value)):
        assert "wrong-key" not in message
        assert header not in message
        assert "401" in message


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_desk(scene.world, clock) as desk:
        desk.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await desk.connector().poll(None, desk.ctx())


async def test_check_names_the_agent(scene: Scene, clock: SteppedClock) -> None:
    """check() proves the key with agents/me and says whose it is."""
    async with open_desk(scene.world, clock) as desk:
        assert await desk.connector().check(desk.ctx()) == (
            "authenticated as Ops Agent <ops@acme.example>")
    desk.fake.controls.assert_called("/api/v2/agents/me", times=1)


async def test_hostile_text_from_the_api_stays_inert(scene: Scene, clock: SteppedClock) -> None:
    """Markup and escapes in a subject and a reply come through as plain strings."""
    hostile = "[link=https://evil.example]click[/link] \x1b]8;;x\x07 <img src=x onerror=1>"
    ticket = scene.world.create_ticket(requester_id=scene.pat, subject=hostile,
                                       description=hostile, at=minutes(-3))
    scene.world.customer_reply(ticket, body=hostile, at=minutes(-2))
    async with open_desk(scene.world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(), None)
    mine = [e for e in events if e.conversation == str(ticket)]
    assert {e.text for e in mine if e.kind is EventKind.MESSAGE} == {hostile}
    assert {e.fields["subject"] for e in mine if e.kind is EventKind.UPDATE} == {hostile}


async def test_fake_world_follows_freshdesk_status_rules(clock: SteppedClock) -> None:
    """A customer reply reopens a resolved ticket; each status is dated when it was set."""
    clock.advance(-30 * 60)
    world = FreshdeskWorld(now=clock)
    pat = world.add_contact("Pat", "pat@example.com")
    kim = world.add_agent("Kim", "kim@acme.example")
    ticket = world.create_ticket(requester_id=pat, subject="s", description="d",
                                 at=minutes(-40))
    world.reply(ticket, agent_id=kim, body="done", at=minutes(-30), status=RESOLVED)
    async with open_desk(world, clock) as desk:
        connector = desk.connector()
        first, cursor, _ = await desk.drain(connector, None)
        world.customer_reply(ticket, body="not done", at=minutes(-20))
        world.set_status(ticket, CLOSED, at=minutes(-10))
        clock.advance(30 * 60)
        second, _, _ = await desk.drain(connector, cursor)
    assert [summary(e) for e in first if e.kind is EventKind.STATUS] == [
        ("status", -30, Status.SOLVED)]
    # Only the current status is in the API: the reopening in between is not seen.
    assert [summary(e) for e in second if e.kind is EventKind.STATUS] == [
        ("status", -10, Status.CLOSED)]
    assert ("message", -20, Actor.CUSTOMER, True, "not done") in [summary(e) for e in second]


async def test_fake_speaks_freshdesk_errors(scene: Scene, clock: SteppedClock) -> None:
    """The fake's own answers: 401 body, page above 300, bad filter, rate-limit headers."""
    good = {"Authorization": "Basic " + base64.b64encode(b"fake-api-key:X").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"nope:X").decode()}
    async with open_desk(scene.world, clock) as desk:
        url = desk.base_url + TICKETS
        async with desk.session.get(url, headers=bad) as response:
            assert (response.status, (await response.json())["code"]) == (
                401, "invalid_credentials")
        async with desk.session.get(url, params={"page": "301"}, headers=good) as response:
            assert response.status == 400
        async with desk.session.get(url, params={"filter": "all"}, headers=good) as response:
            assert response.status == 400
        async with desk.session.get(url, params={"include": "stats"}, headers=good) as response:
            assert response.status == 200
            assert response.headers["X-RateLimit-Used-CurrentRequest"] == "3"
            assert response.headers["X-RateLimit-Total"] == "200"
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:00:00 GMT"
            assert [t["id"] for t in await response.json()] == [scene.ticket]
