"""Tests of the Intercom connector: recorded payloads, and the faithful fake served for real."""

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
from pydantic import SecretStr, ValidationError

from connectors import BUILTIN
from connectors._text import TEXT_LIMIT
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.intercom import IntercomFake, IntercomWorld
from connectors.intercom import (
    IntercomAuthor,
    IntercomConnector,
    IntercomPart,
    IntercomSettings,
    author_actor,
    conversation_event,
    conversation_parts,
    parse_conversation,
    parse_conversation_detail,
    parse_directory,
    parse_me,
    parse_search_page,
    part_events,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-intercom"
SEARCH = "/conversations/search"


def load(name: str) -> Any:
    """A recorded payload (ours in tests/fixtures, else the shared ones)."""
    return json.loads(fixture_path("intercom", name).read_text())


def epoch(seconds: int) -> datetime:
    """An aware UTC instant from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


# --- recorded payloads ---------------------------------------------------------------------


def test_list_fixture_gives_attributes_statistics_and_cursor() -> None:
    """The recorded 2.14 list yields its conversation's attributes, statistics and cursor."""
    page = parse_search_page(load("GET_conversations.json"))
    assert (page.next_cursor, page.total_count) == ("your-cursor-from-response", 1)
    [conversation] = page.conversations
    assert (conversation.parts, conversation.parts_count) == (None, 1)
    assert conversation.statistics is not None
    assert conversation.statistics.first_admin_reply_at == epoch(1663597233)
    assert conversation.statistics.count_reopens == 1
    event = conversation_event(conversation, source=SOURCE, admins={},
                               teams={"5017691": "Billing"}, url=None)
    assert event == Event(
        source=SOURCE, conversation="471", id=event.id, at=epoch(1734537460),
        kind=EventKind.UPDATE, channel="conversation",
        fields={"subject": "Conversation Title", "customer": "6762f0f31bb69f9f2193bb8b",
                "priority": "normal", "assignee": None, "group": "Billing",
                "tags": ["Test tag"]},
    )
    assert event.id.startswith("conversation-471@1734537460:")


def test_list_fixture_opening_by_the_ai_agent_is_a_bot_message() -> None:
    """An opening message by an admin flagged from_ai_agent is a bot's public message."""
    [conversation] = parse_search_page(load("GET_conversations.json")).conversations
    assert conversation.opening is not None
    [message] = part_events("471", conversation.opening, source=SOURCE, admins={}, teams={},
                            url=None)
    assert (message.id, message.actor, message.public, message.text, message.author) == (
        "conversation-471:source", Actor.BOT, True, "this is the message body", "Ciaran166 Lee")


def test_conversation_fixture_gives_exact_events() -> None:
    """The recorded conversation's opening message and parts become the expected events."""
    conversation = parse_conversation_detail(load("GET_conversations_147.json"))
    url = "https://app.intercom.com/a/apps/acme/conversations/147"
    events = [e for part in conversation_parts(conversation)
              for e in part_events("147", part, source=SOURCE, admins={}, teams={}, url=url)]
    common: dict[str, Any] = {"source": SOURCE, "conversation": "147", "url": url}
    assert events == [
        Event(id="conversation-147:source", at=epoch(1734537460), kind=EventKind.MESSAGE,
              actor=Actor.CUSTOMER, public=True, author="Pat Customer",
              text="I was charged twice for my order", **common),
        Event(id="part-6073780001", at=epoch(1734537470), kind=EventKind.MESSAGE,
              actor=Actor.BOT, public=True, author="Operator",
              text="Hi! I'm the Operator. A teammate will be with you shortly.", **common),
        Event(id="part-6073780002:assign", at=epoch(1734537500), kind=EventKind.UPDATE,
              fields={"assignee": "991267628"}, **common),
        Event(id="part-6073780003", at=epoch(1734538000), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, public=False, author="Ciaran Lee",
              text="Refund approved by finance.", **common),
        Event(id="part-6073780004", at=epoch(1734538300), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, public=True, author="Ciaran Lee",
              text="Sorry about that! The duplicate charge is refunded.", **common),
        Event(id="part-6073780005:status", at=epoch(1734538310), kind=EventKind.STATUS,
              status=Status.PENDING, **common),
        Event(id="part-6073780006", at=epoch(1734539000), kind=EventKind.MESSAGE,
              actor=Actor.CUSTOMER, public=True, author="Pat Customer",
              text="Thanks, when will I see it?", **common),
        Event(id="part-6073780007:status", at=epoch(1734541360), kind=EventKind.STATUS,
              status=Status.SOLVED, **common),
        Event(id="part-6073780007", at=epoch(1734541360), kind=EventKind.MESSAGE,
              actor=Actor.BOT, public=True, author="Ciaran Lee",
              text="Within 5 business days. Closing this for now.", **common),
    ]


def test_conversation_fixture_attributes_use_known_names() -> None:
    """Admin and team ids are reported by name once known; priority maps to high."""
    conversation = parse_conversation_detail(load("GET_conversations_147.json"))
    event = conversation_event(conversation, source=SOURCE, admins={"991267628": "Ciaran"},
                               teams={"5017691": "Billing"}, url=None, channel="vip-chat")
    assert dict(event.fields) | {"tags": list(event.fields["tags"])} == {
        "subject": None, "customer": "Pat Customer", "priority": "high", "assignee": "Ciaran",
        "group": "Billing", "tags": ["billing"]}
    assert event.channel == "vip-chat"
    assert conversation.statistics is not None
    assert conversation.statistics.count_conversation_parts == 7


def test_search_fixture_pages_on() -> None:
    """The recorded search page carries no parts, its part count and the next cursor."""
    page = parse_search_page(load("POST_conversations_search.json"))
    assert page.next_cursor == "WzE3MzQ1NDEzNjAsIjE0NyIsMl0="
    [conversation] = page.conversations
    assert (conversation.parts, conversation.parts_count) == (None, 7)


def test_legacy_webhook_item_parses_with_its_parts() -> None:
    """The 1.x webhook's conversation (conversation_message, user, assignee) reads the same."""
    item = load("WEBHOOK_conversation.admin.replied.json")["data"]["item"]
    conversation = parse_conversation(item)
    assert (conversation.customer, conversation.admin_assignee_id, conversation.state) == (
        "Bob Dylan", "3330619", "open")
    assert conversation.web_url == (
        "https://app.intercom.com/a/apps/lkqcyt9t/conversations/137324500000000")
    events = [e for part in conversation_parts(conversation)
              for e in part_events(conversation.id, part, source=SOURCE, admins={}, teams={},
                                   url=conversation.web_url)]
    assert [(e.id, str(e.kind), e.actor, e.status, e.text) for e in events] == [
        ("conversation-137324500000000:source", "message", Actor.AGENT, None, "Hi Bob,hola"),
        ("part-6073780765:status", "status", None, Status.OPEN, None),
        ("part-6073780765", "message", Actor.AGENT, None, "hi Bob"),
    ]


@pytest.mark.parametrize(
    ("author", "delivered_as", "actor"),
    [
        (IntercomAuthor("user", "1", "Pat"), None, Actor.CUSTOMER),
        (IntercomAuthor("lead", "1", None), None, Actor.CUSTOMER),
        (IntercomAuthor("contact", "1", None), None, Actor.CUSTOMER),
        (IntercomAuthor("admin", "2", "Kim"), None, Actor.AGENT),
        (IntercomAuthor("admin", "3", "Fin", ai=True), None, Actor.BOT),
        (IntercomAuthor("bot", "4", "Operator"), None, Actor.BOT),
        (IntercomAuthor("admin", "2", "Kim"), "automated", Actor.BOT),
        (None, None, Actor.CUSTOMER),
    ],
    ids=["user", "lead", "contact", "admin", "fin", "operator-bot", "automated-outbound",
         "nobody"],
)
def test_author_decides_the_actor(author: IntercomAuthor | None, delivered_as: str | None,
                                  actor: Actor) -> None:
    """Contacts are customers, admins agents, bots and AI answers bots; unknown is customer."""
    assert author_actor(author, delivered_as) is actor


def _part(kind: str, body: str | None = None, **extra: Any) -> IntercomPart:
    return IntercomPart(id="9", type=kind, body=body, created_at=T0,
                        author=IntercomAuthor("admin", "2", "Kim"), **extra)


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (_part("comment", "hi"), [("message", True)]),
        (_part("comment", ""), [("message", True)]),
        (_part("note", "psst"), [("message", False)]),
        (_part("close"), [("status", Status.SOLVED)]),
        (_part("close", "bye"), [("status", Status.SOLVED), ("message", True)]),
        (_part("open"), [("status", Status.OPEN)]),
        (_part("snoozed"), [("status", Status.PENDING)]),
        (_part("unsnoozed"), [("status", Status.OPEN)]),
        (_part("assignment", assigned_to=("team", "7")), [("update", {"group": "Billing"})]),
        (_part("assignment", assigned_to=("nobody_admin", None)), [("update", {"assignee": None})]),
        (_part("assignment", "on it", assigned_to=("admin", "2")),
         [("update", {"assignee": "Kim"}), ("message", True)]),
        (_part("participant_added", "<p>x</p>"), []),
        (_part("conversation_rating_changed"), []),
    ],
    ids=["comment", "comment-attachment-only", "note", "close", "close-with-reply", "open",
         "snoozed", "unsnoozed", "assign-team", "unassign", "assign-with-reply",
         "participant-added", "rating"],
)
def test_part_types_map_to_events(part: IntercomPart, expected: list[tuple[str, Any]]) -> None:
    """Each part type maps to the status, update and message events the docstring lists."""
    events = part_events("1", part, source=SOURCE, admins={"2": "Kim"}, teams={"7": "Billing"},
                         url=None)
    seen: list[tuple[str, Any]] = []
    for event in events:
        if event.kind is EventKind.STATUS:
            seen.append(("status", event.status))
        elif event.kind is EventKind.UPDATE:
            seen.append(("update", dict(event.fields)))
        else:
            seen.append(("message", event.public))
    assert seen == expected


def test_long_and_hostile_text_is_kept_as_clipped_data() -> None:
    """A huge body full of markup and control characters is clipped, never interpreted."""
    hostile = "[bold red]x[/] \x1b[2J {{7*7}} " + "y" * 10_000
    [event] = part_events("1", _part("comment", hostile), source=SOURCE, admins={}, teams={},
                          url=None, html=False)
    assert event.text is not None
    assert len(event.text) == TEXT_LIMIT
    assert event.text.startswith("[bold red]x[/] \x1b[2J {{7*7}}")
    assert event.text.endswith("…")


BAD_SEARCH = [
    ("<html>", "html-string"),
    ([], "array"),
    ({}, "no-conversations"),
    ({"conversations": {}}, "conversations-not-list"),
    ({"conversations": [{"id": True}]}, "id-as-bool"),
    ({"conversations": [{"id": "1", "created_at": "yesterday", "updated_at": 1}]}, "time-text"),
    ({"conversations": [{"id": "1", "created_at": 1, "updated_at": 10 ** 20}]}, "time-huge"),
    ({"conversations": [{"id": "1", "created_at": 1, "updated_at": 1,
                         "tags": {"tags": [{"name": 5}]}}]}, "tag-name-number"),
    ({"conversations": [{"id": "1", "created_at": 1, "updated_at": 1,
                         "source": {"author": {"type": 3}}}]}, "author-type-number"),
    ({"conversations": [], "pages": {"next": {"starting_after": 5}}}, "cursor-number"),
]


@pytest.mark.parametrize("data", [d for d, _ in BAD_SEARCH], ids=[i for _, i in BAD_SEARCH])
def test_malformed_search_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a search page is a ParseError naming the endpoint."""
    with pytest.raises(ParseError, match="intercom conversation search"):
        parse_search_page(data)


@pytest.mark.parametrize(
    "data",
    [
        {"id": "1", "created_at": 1, "updated_at": 1},
        {"id": "1", "created_at": 1, "updated_at": 1,
         "conversation_parts": {"conversation_parts": [{"id": "2", "part_type": "comment"}]}},
        {"id": "1", "created_at": 1, "updated_at": 1,
         "conversation_parts": {"conversation_parts": [
             {"id": "2", "part_type": "comment", "created_at": 1, "assigned_to": "kim"}]}},
    ],
    ids=["no-parts", "part-without-time", "assigned-to-text"],
)
def test_malformed_conversations_raise_parse_error(data: Any) -> None:
    """A conversation read for its parts must carry well-formed parts."""
    with pytest.raises(ParseError, match="intercom conversation"):
        parse_conversation_detail(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["conversations", "id", "created_at", "updated_at", "source", "author",
                         "type", "conversation_parts", "part_type", "tags", "name", "pages",
                         "next", "starting_after", "statistics", "admins", "teams", "app"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_or_raises_parse_error_only(data: Any) -> None:
    """Whatever JSON the API sends, the parsers either succeed or raise ParseError."""
    for parse in (parse_search_page, parse_conversation_detail, parse_me):
        with contextlib.suppress(ParseError):
            parse(data)
    for key in ("admins", "teams"):
        with contextlib.suppress(ParseError):
            parse_directory(data, key)


def test_connector_is_registered_and_keeps_its_token_secret() -> None:
    """The registry names this class for "intercom", and settings never print the token."""
    module, _, name = BUILTIN["intercom"].partition(":")
    assert (module, name) == ("connectors.intercom", "IntercomConnector")
    settings_ = IntercomSettings(name=SOURCE, token=SecretStr("s3cret"), region="eu")
    assert isinstance(IntercomConnector(settings_), Connector)
    assert "s3cret" not in repr(settings_)


@pytest.mark.parametrize(
    "values",
    [{"base_url": "http://api.intercom.example"}, {"page_size": 151},
     {"api_version": "latest"}, {"region": "mars"}],
    ids=["plain-http-remote", "page-too-big", "bad-version", "bad-region"],
)
def test_bad_settings_are_refused(values: dict[str, Any]) -> None:
    """Unsafe addresses and values the API would refuse fail validation."""
    with pytest.raises(ValidationError):
        IntercomSettings.model_validate({"name": SOURCE, "token": "t", **values})


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Inbox:
    """A served fake, a client session, and helpers to poll it."""

    fake: IntercomFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    def connector(self, **overrides: Any) -> IntercomConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "token": "fake-intercom-token",
                                  "base_url": self.base_url}
        values.update(overrides)
        return IntercomConnector(IntercomSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def paths(self) -> list[str]:
        """The paths the fake was asked for, in order."""
        return [r.path for r in self.fake.controls.requests]

    def reads(self) -> int:
        """How many single conversations were read."""
        return sum(1 for p in self.paths() if p.startswith("/conversations/") and p != SEARCH)

    async def drain(
        self, connector: IntercomConnector, cursor: Cursor | None, *, limit: int = 60
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
                return events, batch.cursor, batches
        raise AssertionError("the connector never finished its walk")


@contextlib.asynccontextmanager
async def open_inbox(world: IntercomWorld, clock: SteppedClock,
                     **fake_options: Any) -> AsyncIterator[Inbox]:
    """Serve a fake of ``world`` on loopback for one test, logging search bodies."""
    fake = IntercomFake(world, **fake_options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Inbox(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """A world with one contact, one teammate, one team and one worked conversation."""

    world: IntercomWorld
    pat: str
    kim: str
    billing: str
    conversation: str


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """Pat writes in, Kim takes it for Billing, notes, replies and snoozes it."""
    world = IntercomWorld(now=clock)
    pat = world.add_contact("Pat Customer", "pat@example.com")
    kim = world.add_admin("Kim Agent", "kim@acme.example")
    billing = world.add_team("Billing")
    conversation = world.start_conversation(contact_id=pat, body="I was charged twice",
                                            at=minutes(-10))
    world.assign(conversation, admin_id=kim, assignee_id=kim, at=minutes(-9))
    world.assign(conversation, admin_id=kim, team_id=billing, at=minutes(-9))
    world.tag(conversation, ["vip"], at=minutes(-9))
    world.add_note(conversation, admin_id=kim, body="Checking billing", at=minutes(-9))
    world.admin_reply(conversation, admin_id=kim, body="Refund on its way", at=minutes(-8))
    world.snooze(conversation, admin_id=kim, until=minutes(60), at=minutes(-8))
    return Scene(world, pat, kim, billing, conversation)


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


async def test_first_walk_searches_then_reads_parts(scene: Scene, clock: SteppedClock) -> None:
    """Without a cursor: a search since ctx.since, the names, then the conversation's parts."""
    async with open_inbox(scene.world, clock) as inbox:
        since = T0 - timedelta(hours=1)
        connector = inbox.connector()
        first = await connector.poll(None, inbox.ctx(since))
        second = await connector.poll(first.cursor, inbox.ctx(since))
    assert inbox.paths() == [SEARCH, "/me", "/admins", "/teams",
                             f"/conversations/{scene.conversation}"]
    search, *_, read = inbox.fake.controls.requests
    assert read.query == {"display_as": "plaintext"}
    assert search.headers["Intercom-Version"] == "2.11"
    url = f"https://app.intercom.com/a/apps/acme1234/conversations/{scene.conversation}"
    assert (first.more, first.watermark) == (True, None)
    assert [summary(e) for e in first.events] == [
        ("update", -8, {"subject": None, "customer": "Pat Customer", "priority": "normal",
                        "assignee": "Kim Agent", "group": "Billing", "tags": ["vip"]}),
    ]
    assert first.events[0].url == url
    assert second.more is False
    assert second.watermark == T0 - timedelta(seconds=60)
    assert [summary(e) for e in second.events] == [
        ("message", -10, Actor.CUSTOMER, True, "I was charged twice"),
        ("update", -9, {"assignee": "Kim Agent"}),
        ("update", -9, {"group": "Billing"}),
        ("message", -9, Actor.AGENT, False, "Checking billing"),
        ("message", -8, Actor.AGENT, True, "Refund on its way"),
        ("status", -8, Status.PENDING),
    ]
    assert all(e.url == url for e in second.events)
    json.dumps(second.cursor)  # the runner stores it as JSON


async def test_search_body_asks_for_the_window_ascending(scene: Scene,
                                                         clock: SteppedClock) -> None:
    """The search asks for updated_at >= since (as > since - 1), oldest first, paged."""
    async with open_inbox(scene.world, clock) as inbox:
        await inbox.connector(page_size=25).poll(None, inbox.ctx(T0 - timedelta(hours=1)))
    assert inbox.fake.searches == [{
        "query": {"field": "updated_at", "operator": ">",
                  "value": int((T0 - timedelta(hours=1)).timestamp()) - 1},
        "sort": {"field": "updated_at", "order": "ascending"},
        "pagination": {"per_page": 25},
    }]


async def test_pages_are_followed_and_nothing_repeats(clock: SteppedClock) -> None:
    """Five conversations over pages of two are all read once, via starting_after."""
    world = IntercomWorld(now=clock)
    pat = world.add_contact("Pat")
    ids = [world.start_conversation(contact_id=pat, body=f"help {n}", at=minutes(-30 + n))
           for n in range(5)]
    async with open_inbox(world, clock) as inbox:
        events, _, batches = await inbox.drain(inbox.connector(app_id="acme1234", page_size=2),
                                               None)
    assert [b.more for b in batches] == [True] * 7 + [False]
    assert len({e.id for e in events}) == len(events)
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    assert [m.conversation for m in messages] == ids
    assert batches[-1].watermark is None  # a walk of several pages claims nothing


async def test_repoll_of_unchanged_world_yields_nothing(scene: Scene, clock: SteppedClock) -> None:
    """Listing an unchanged conversation again returns no event and reads nothing more."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        seen, cursor, _ = await inbox.drain(connector, None)
        reads = inbox.reads()
        clock.advance(30)
        again, _, _ = await inbox.drain(connector, cursor)
    assert seen
    assert again == []
    assert inbox.reads() == reads
    assert inbox.paths().count("/admins") == 1


async def test_attribute_change_costs_no_read(scene: Scene, clock: SteppedClock) -> None:
    """A tag or priority change is one update event, without reading the parts again."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        _, cursor, _ = await inbox.drain(connector, None)
        reads = inbox.reads()
        scene.world.set_priority(scene.conversation, True, at=T0)
        scene.world.tag(scene.conversation, ["vip", "refund"], at=T0)
        clock.advance(60)
        later, _, _ = await inbox.drain(connector, cursor)
    assert inbox.reads() == reads
    assert [summary(e) for e in later] == [
        ("update", 0, {"subject": None, "customer": "Pat Customer", "priority": "high",
                       "assignee": "Kim Agent", "group": "Billing", "tags": ["vip", "refund"]}),
    ]


async def test_cursor_survives_a_restart(scene: Scene, clock: SteppedClock) -> None:
    """A new connector instance resumes from the stored cursor and sees only what is new."""
    async with open_inbox(scene.world, clock) as inbox:
        seen, cursor, _ = await inbox.drain(inbox.connector(), None)
        scene.world.customer_reply(scene.conversation, body="Still waiting", at=T0)
        scene.world.close(scene.conversation, admin_id=scene.kim, at=T0 + timedelta(seconds=5))
        clock.advance(120)
        later, _, _ = await inbox.drain(inbox.connector(), json.loads(json.dumps(cursor)))
    assert {e.id for e in later}.isdisjoint(e.id for e in seen)
    assert [summary(e) for e in later if e.kind is not EventKind.UPDATE] == [
        ("message", 0, Actor.CUSTOMER, True, "Still waiting"),
        ("status", 5 / 60, Status.SOLVED),
    ]


async def test_recent_parts_are_not_returned_twice(scene: Scene, clock: SteppedClock) -> None:
    """Parts created around a read are remembered by id, so the next read skips them."""
    scene.world.customer_reply(scene.conversation, body="Hello?", at=T0)
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        seen, cursor, _ = await inbox.drain(connector, None)
        scene.world.admin_reply(scene.conversation, admin_id=scene.kim, body="Hi!", at=T0)
        later, _, _ = await inbox.drain(connector, cursor)
    assert "Hello?" in {e.text for e in seen}
    assert [e.text for e in later if e.kind is EventKind.MESSAGE] == ["Hi!"]


async def test_watermark_only_follows_single_page_walks(scene: Scene,
                                                        clock: SteppedClock) -> None:
    """Watermarks stay behind server time - 60 s, never decrease, and move after one-page walks."""
    marks: list[datetime] = []
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector(page_size=1)
        cursor: Cursor | None = None
        for step in range(8):
            if step == 3:
                scene.world.start_conversation(contact_id=scene.pat, body="Another", at=clock())
            _, cursor, batches = await inbox.drain(connector, cursor)
            for batch in batches:
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=60)
                    marks.append(batch.watermark)
            clock.advance(45)
    assert marks == sorted(marks)
    assert marks[-1] == clock() - timedelta(seconds=45 + 60)


async def test_bots_fin_and_automated_messages(scene: Scene, clock: SteppedClock) -> None:
    """Operator, Fin and automated outbound messages are bots; a reply while closing counts."""
    scene.world.bot_reply(scene.conversation, body="A teammate will reply soon", at=minutes(-7))
    scene.world.admin_reply(scene.conversation, admin_id=scene.world.fin, body="Try this",
                            at=minutes(-6))
    scene.world.admin_reply(scene.conversation, admin_id=scene.kim, body="All done",
                            at=minutes(-5), close=True)
    outbound = scene.world.start_outbound(admin_id=scene.kim, contact_id=scene.pat,
                                          body="Your trial ends soon", at=minutes(-4),
                                          automated=True)
    async with open_inbox(scene.world, clock) as inbox:
        events, _, _ = await inbox.drain(inbox.connector(), None)
    actors = {e.text: (e.actor, e.public) for e in events if e.kind is EventKind.MESSAGE}
    assert actors["A teammate will reply soon"] == (Actor.BOT, True)
    assert actors["Try this"] == (Actor.BOT, True)
    assert actors["All done"] == (Actor.AGENT, True)
    assert actors["Your trial ends soon"] == (Actor.BOT, True)
    assert ("status", -5, Status.SOLVED) in [summary(e) for e in events]
    assert any(e.conversation == outbound for e in events)


async def test_conversation_deleted_before_its_read_is_dismissed(
    scene: Scene, clock: SteppedClock
) -> None:
    """A conversation gone (404) between search and read is dismissed and the walk goes on."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        first = await connector.poll(None, inbox.ctx())
        scene.world.delete(scene.conversation)
        second = await connector.poll(first.cursor, inbox.ctx())
    assert [summary(e) for e in second.events] == [("dismissed", 0)]
    assert second.events[0].id == f"conversation-{scene.conversation}:deleted"
    assert second.more is False


async def test_hostile_text_travels_as_inert_data(scene: Scene, clock: SteppedClock) -> None:
    """Markup, escapes and control characters from a contact arrive as the same text."""
    hostile = "[red]pay now[/red] <b>bold</b> \x1b[31m'; DROP TABLE events; --"
    scene.world.customer_reply(scene.conversation, body=hostile, at=minutes(-1))
    scene.world.set_title(scene.conversation, "[link=file:///etc/passwd]x[/link]",
                          at=minutes(-1))
    async with open_inbox(scene.world, clock) as inbox:
        events, _, _ = await inbox.drain(inbox.connector(), None)
    assert hostile in {e.text for e in events}
    assert "[link=file:///etc/passwd]x[/link]" in {e.fields.get("subject") for e in events}


async def test_scripted_429_then_503_then_success(scene: Scene, clock: SteppedClock) -> None:
    """[429 Retry-After: 2, 503, 200] gives RateLimited(2), TransientError, then a batch."""
    async with open_inbox(scene.world, clock) as inbox:
        inbox.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
        connector = inbox.connector()
        with pytest.raises(RateLimited) as limited:
            await connector.poll(None, inbox.ctx())
        assert limited.value.retry_after == 2
        with pytest.raises(TransientError) as failed:
            await connector.poll(None, inbox.ctx())
        assert not isinstance(failed.value, RateLimited)
        batch = await connector.poll(None, inbox.ctx())
    assert [e.conversation for e in batch.events] == [scene.conversation]


async def test_intercoms_429_waits_until_the_reset(scene: Scene, clock: SteppedClock) -> None:
    """Intercom's 429 has no Retry-After: the wait runs to X-RateLimit-Reset."""
    clock.advance(3)  # 09:00:03, inside the window 09:00:00-09:00:10
    unassigned = scene.world.conversations[scene.conversation]
    unassigned.admin_assignee_id = unassigned.team_assignee_id = None  # no names to learn
    async with open_inbox(scene.world, clock, rate_limit=1) as inbox:
        inbox.fake.controls.faults.append(Fault(200, body=json.dumps(
            {"type": "conversation.list", "conversations": [], "pages": {}})))
        await inbox.connector().poll(None, inbox.ctx())  # a scripted answer: uses no budget
        await inbox.connector(app_id="acme1234").poll(None, inbox.ctx())  # uses the one call
        with pytest.raises(RateLimited) as limited:
            await inbox.connector().poll(None, inbox.ctx())  # a fresh connector: 429
    assert limited.value.retry_after == 7


async def test_remaining_zero_waits_without_asking(scene: Scene, clock: SteppedClock) -> None:
    """X-RateLimit-Remaining: 0 makes the next poll wait until the reset, sending nothing."""
    async with open_inbox(scene.world, clock, rate_limit=1) as inbox:
        connector = inbox.connector(app_id="acme1234")
        unassigned = scene.world.conversations[scene.conversation]
        unassigned.admin_assignee_id = unassigned.team_assignee_id = None  # no names to learn
        await connector.poll(None, inbox.ctx())
        sent = len(inbox.paths())
        clock.advance(4)
        with pytest.raises(RateLimited) as waiting:
            await connector.poll(None, inbox.ctx())
        assert (waiting.value.retry_after, len(inbox.paths())) == (6, sent)
        clock.advance(6)
        await connector.poll(None, inbox.ctx())
    assert len(inbox.paths()) == sent + 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"type": "conversation.list", "conversations": "nope"})),
        Fault(200, body="{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(scene: Scene, clock: SteppedClock,
                                            fault: Fault) -> None:
    """A malformed search page is a ParseError; polling again from the same cursor is whole."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        inbox.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(None, inbox.ctx())
        events, _, _ = await inbox.drain(connector, None)
        reference, _, _ = await inbox.drain(inbox.connector(), None)
    assert [e.id for e in events] == [e.id for e in reference]
    assert any(e.kind is EventKind.MESSAGE for e in events)


async def test_malformed_conversation_read_keeps_it_queued(scene: Scene,
                                                           clock: SteppedClock) -> None:
    """A malformed conversation read is a ParseError; the cursor still has it to read."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        first = await connector.poll(None, inbox.ctx())
        inbox.fake.controls.faults.append(Fault(200, body=json.dumps({"id": 1})))
        with pytest.raises(ParseError):
            await connector.poll(first.cursor, inbox.ctx())
        second = await connector.poll(first.cursor, inbox.ctx())
    assert "Refund on its way" in {e.text for e in second.events}


async def test_bad_token_is_an_auth_error_without_secrets(scene: Scene,
                                                          clock: SteppedClock) -> None:
    """A refused token is AuthError for poll and check, and no message shows it."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector(token="wrong-token-123")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, inbox.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(inbox.ctx())
    for message in (str(polled.value), str(checked.value)):
        assert "wrong-token-123" not in message
        assert "401" in message


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_inbox(scene.world, clock) as inbox:
        inbox.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await inbox.connector().poll(None, inbox.ctx())


async def test_check_names_the_admin_and_workspace(scene: Scene, clock: SteppedClock) -> None:
    """check() proves the token with /me and says whose it is."""
    async with open_inbox(scene.world, clock) as inbox:
        assert await inbox.connector().check(inbox.ctx()) == "authenticated as Ops Owner in Acme"
    inbox.fake.controls.assert_called("/me", times=1)


@pytest.mark.parametrize(
    "cursor",
    [{"v": 2}, {"v": 1, "since": "yesterday"}, {"v": 1, "todo": 5}, {"unrelated": True}],
    ids=["future-version", "bad-since", "bad-todo", "foreign"],
)
async def test_unreadable_cursor_starts_again(scene: Scene, clock: SteppedClock,
                                              cursor: dict[str, Any]) -> None:
    """A cursor this version cannot read is treated as none: the walk starts at ctx.since."""
    async with open_inbox(scene.world, clock) as inbox:
        events, _, _ = await inbox.drain(inbox.connector(), cursor)
    assert any(e.text == "Refund on its way" for e in events)


async def test_fake_speaks_intercom(scene: Scene, clock: SteppedClock) -> None:
    """The fake's own answers: error.list 401, query validation, parts, rate-limit headers."""
    async with open_inbox(scene.world, clock) as inbox:
        url = inbox.base_url
        good = {"Authorization": "Bearer fake-intercom-token"}
        async with inbox.session.post(url + SEARCH, json={"query": {}}) as response:
            body = await response.json()
            assert (response.status, body["type"], body["errors"][0]["code"]) == (
                401, "error.list", "unauthorized")
        async with inbox.session.post(url + SEARCH, headers=good, json={
                "query": {"field": "colour", "operator": "=", "value": 1}}) as response:
            assert response.status == 400
        async with inbox.session.get(f"{url}/conversations/{scene.conversation}",
                                     headers=good) as response:
            detail = await response.json()
            assert response.headers["X-RateLimit-Limit"] == "1666"
            assert response.headers["X-RateLimit-Reset"] == str(int(T0.timestamp()) + 10)
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:00:00 GMT"
        async with inbox.session.get(f"{url}/conversations/nope", headers=good) as response:
            assert response.status == 404
    assert detail["source"]["body"] == "<p>I was charged twice</p>"
    assert [p["part_type"] for p in detail["conversation_parts"]["conversation_parts"]] == [
        "assignment", "assignment", "note", "comment", "snoozed"]


# --- the cursor it returned last is not read again -----------------------------------------


def replay(events: list[Event]) -> list[tuple[str, Any]]:
    """Events as (id, summary): what two runs are compared on."""
    return [(e.id, summary(e)) for e in events]


@pytest.mark.parametrize("handed_back", ["same-object", "stored-copy"])
async def test_a_walk_resumes_from_memory_with_the_cursor_it_returned(
    clock: SteppedClock, handed_back: str
) -> None:
    """Given back its own last cursor (as is, or through JSON) a poll reads no cursor, and
    the walk is the one a fresh instance per poll (reading every cursor) makes."""
    world = IntercomWorld(now=clock)
    pat = world.add_contact("Pat")
    for n in range(5):
        conversation = world.start_conversation(contact_id=pat, body=f"help {n}",
                                                at=minutes(-30 + n))
        world.customer_reply(conversation, body=f"more {n}", at=minutes(-20 + n))
    async with open_inbox(world, clock) as inbox:
        connector = inbox.connector(app_id="acme1234", page_size=2)
        kept: list[Batch] = []
        cursor: Cursor | None = None
        while not kept or kept[-1].more:
            kept.append(await connector.poll(cursor, inbox.ctx()))
            cursor = kept[-1].cursor
            if handed_back == "stored-copy":
                cursor = json.loads(json.dumps(cursor))
        fresh: list[Batch] = []
        readers: list[IntercomConnector] = []
        cursor = None
        while not fresh or fresh[-1].more:
            readers.append(inbox.connector(app_id="acme1234", page_size=2))
            fresh.append(await readers[-1].poll(cursor, inbox.ctx()))
            cursor = fresh[-1].cursor
    assert len(kept) == 8  # three search pages, five conversations read
    assert connector.cursor_reads == 0
    assert [reader.cursor_reads for reader in readers] == [0] + [1] * 7
    assert [(replay(list(b.events)), b.cursor, b.watermark, b.more) for b in kept] == [
        (replay(list(b.events)), b.cursor, b.watermark, b.more) for b in fresh]


@pytest.mark.parametrize("other", ["restart", "older-cursor", "edited-cursor"])
async def test_any_other_cursor_is_read_again(
    scene: Scene, clock: SteppedClock, other: str
) -> None:
    """A cursor this instance did not return last is read: the poll follows what it says."""
    async with open_inbox(scene.world, clock) as inbox:
        connector = inbox.connector()
        _, done, _ = await inbox.drain(connector, None)
        scene.world.customer_reply(scene.conversation, body="Still waiting", at=T0)
        clock.advance(120)
        await connector.poll(done, inbox.ctx())  # the cursor it returned: nothing to read
        assert connector.cursor_reads == 0
        given = json.loads(json.dumps(done))
        if other == "edited-cursor":
            given["known"] = {}  # forget the conversation: its whole history comes again
        polling = inbox.connector() if other == "restart" else connector
        events, end, _ = await inbox.drain(polling, given)
        expected, expected_end, _ = await inbox.drain(inbox.connector(), given)
    assert polling.cursor_reads == 1
    assert (replay(events), end) == (replay(expected), expected_end)
    texts = [e.text for e in events if e.kind is EventKind.MESSAGE]
    assert texts == (["I was charged twice", "Checking billing", "Refund on its way",
                      "Still waiting"]
                     if other == "edited-cursor" else ["Still waiting"])
