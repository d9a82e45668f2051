"""Tests of the Help Scout connector: recorded payloads, and the faithful fake served for real."""

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
from connectors._text import TEXT_LIMIT, html_to_text
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.helpscout import HelpScoutFake, HelpScoutWorld
from connectors.helpscout import (
    HelpScoutConnector,
    HelpScoutSettings,
    HelpScoutThread,
    conversation_event,
    parse_conversation_page,
    parse_mailboxes,
    parse_me,
    parse_thread_page,
    parse_token,
    thread_actor,
    thread_events,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-helpscout"
LIST = "/v2/conversations"
TOKEN = "/v2/oauth2/token"


def load(name: str) -> Any:
    """A recorded payload (ours in tests/fixtures, else the shared ones)."""
    return json.loads(fixture_path("helpscout", name).read_text())


def at(text: str) -> datetime:
    """An aware UTC instant from ``2012-03-16T14:07:23``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


# --- recorded payloads ---------------------------------------------------------------------


def test_conversation_list_fixture_gives_one_exact_update() -> None:
    """The recorded list page yields the conversation's attributes as one update event."""
    page = parse_conversation_page(load("GET_v2_conversations.json"))
    assert (page.number, page.total_pages, page.has_next) == (0, 0, False)
    [conversation] = page.conversations
    event = conversation_event(conversation, source=SOURCE, mailboxes={13: "Support"})
    url = "https://secure.helpscout.net/conversation/123/12/"
    assert event == Event(
        source=SOURCE, conversation="123", id=event.id, at=at("2012-07-24T20:18:33"),
        kind=EventKind.UPDATE, channel="email", url=url,
        fields={"subject": "Help", "customer": "238604", "assignee": "Mr Robot",
                "group": "Support", "tags": ["vip"]},
    )
    assert event.id.startswith("conversation-123@1343161113:")
    again = conversation_event(parse_conversation_page(load("GET_v2_conversations.json"))
                               .conversations[0], source=SOURCE, mailboxes={13: "Support"})
    assert again.id == event.id  # stable: a re-poll repeats the same id


def test_mailbox_without_a_known_name_is_reported_by_id() -> None:
    """Until the mailbox names are known the group is the mailbox id; the channel override wins."""
    [conversation] = parse_conversation_page(load("GET_v2_conversations.json")).conversations
    event = conversation_event(conversation, source=SOURCE, mailboxes={}, channel="vip-desk")
    assert (event.fields["group"], event.channel) == ("13", "vip-desk")


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"status": "spam"}, "spam"), ({"state": "deleted"}, "deleted")],
    ids=["spam", "deleted"],
)
def test_spam_and_deleted_conversations_are_dismissed(change: dict[str, str], reason: str) -> None:
    """A conversation marked spam, or deleted, cancels its clocks with a dismissed event."""
    data = load("GET_v2_conversations.json")
    data["_embedded"]["conversations"][0].update(change)
    [conversation] = parse_conversation_page(data).conversations
    event = conversation_event(conversation, source=SOURCE, mailboxes={})
    assert (event.kind, event.id) == (EventKind.DISMISSED, f"conversation-123@1343161113:{reason}")


def test_threads_fixture_gives_exact_messages_and_status_changes() -> None:
    """Customer thread, note, reply and status line item become the events SLA.md expects."""
    page = parse_thread_page(load("GET_v2_conversations_123_threads.json"))
    assert (page.number, page.has_next) == (1, False)
    url = "https://secure.helpscout.net/conversation/123/12/"
    events = [e for t in reversed(page.threads)
              for e in thread_events(t, source=SOURCE, conversation_id=123, url=url)]
    common: dict[str, Any] = {"source": SOURCE, "conversation": "123", "url": url}
    assert events == [
        Event(id="thread-5001:status", at=at("2012-03-15T22:46:22"), kind=EventKind.STATUS,
              status=Status.OPEN, **common),
        Event(id="thread-5001", at=at("2012-03-15T22:46:22"), kind=EventKind.MESSAGE,
              actor=Actor.CUSTOMER, public=True, author="Vernon Bear",
              text="this is what i have to say: I was charged twice.", **common),
        Event(id="thread-5002", at=at("2012-03-16T09:30:00"), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, public=False, author="Mr Robot",
              text="Checked the order: charged twice.", **common),
        Event(id="thread-5003", at=at("2012-03-16T14:05:10"), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, public=True, author="Mr Robot",
              text="Hi Vernon,\n\nYour refund is on its way & should arrive Monday.", **common),
        Event(id="thread-5004:status", at=at("2012-03-16T14:07:23"), kind=EventKind.STATUS,
              status=Status.CLOSED, **common),
    ]


def test_token_fixture_parses_and_hides_the_token() -> None:
    """The token answer gives the token and its lifetime; the token never shows in a repr."""
    token = parse_token(load("POST_v2_oauth2_token.json"))
    assert token.expires_in == 172800
    assert token.access_token == "REDACTED-example-access-token"
    assert "REDACTED" not in repr(token)


def _thread(**overrides: Any) -> HelpScoutThread:
    values: dict[str, Any] = {"id": 1, "type": "reply", "status": "nochange",
                              "state": "published", "created_at": T0, "created_by": "user",
                              "author": "Kim", "body": "hi", "action": None}
    values.update(overrides)
    return HelpScoutThread(**values)


@pytest.mark.parametrize(
    ("overrides", "actor", "public"),
    [
        ({"type": "customer", "created_by": "customer"}, Actor.CUSTOMER, True),
        ({"type": "customer", "created_by": "user"}, Actor.CUSTOMER, True),
        ({"type": "reply"}, Actor.AGENT, True),
        ({"type": "message"}, Actor.AGENT, True),
        ({"type": "note"}, Actor.AGENT, False),
        ({"type": "chat", "created_by": "customer"}, Actor.CUSTOMER, True),
        ({"type": "phone"}, Actor.AGENT, True),
        ({"type": "forwardparent"}, Actor.AGENT, False),
        ({"type": "reply", "created_by": "system_user"}, Actor.BOT, True),
        ({"type": "reply", "action": "automatic-workflow"}, Actor.BOT, True),
        ({"type": "reply", "created_by": None}, Actor.CUSTOMER, True),
        ({"type": "reply", "state": "hidden"}, Actor.AGENT, False),
    ],
    ids=["customer", "customer-logged-by-user", "reply", "outbound-message", "note",
         "chat-from-customer", "phone", "forward", "ai-system-user", "auto-workflow",
         "nobody-named", "hidden"],
)
def test_thread_actor_and_visibility(overrides: dict[str, Any], actor: Actor, public: bool) -> None:
    """Thread type and createdBy decide actor and visibility as the module docstring says."""
    thread = _thread(**overrides)
    assert thread_actor(thread) is actor
    [event] = thread_events(thread, source=SOURCE, conversation_id=1, url=None)
    assert (event.actor, event.public) == (actor, public)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"type": "lineitem", "status": "pending", "body": None}, [("status", Status.PENDING)]),
        ({"type": "lineitem", "status": "spam", "body": None}, [("dismissed", None)]),
        ({"type": "lineitem", "status": "nochange", "body": None}, []),
        ({"type": "reply", "status": "closed"}, [("status", Status.CLOSED), ("message", None)]),
        ({"type": "reply", "state": "draft"}, []),
        ({"type": "reply", "state": "underreview"}, []),
        ({"type": "mystery", "status": "nochange"}, []),
    ],
    ids=["lineitem-pending", "lineitem-spam", "lineitem-assignment", "reply-and-close", "draft",
         "under-review", "unknown-type"],
)
def test_thread_status_changes(overrides: dict[str, Any], expected: list[tuple[str, Any]]) -> None:
    """A real thread status is a status event; spam dismisses; drafts are nothing yet."""
    events = thread_events(_thread(**overrides), source=SOURCE, conversation_id=1, url=None)
    assert [(str(e.kind), e.status) for e in events] == expected


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("line<br>break", "line\nbreak"),
        ("a &lt;b&gt; &amp; c", "a <b> & c"),
        ("<script>alert(1)</script>shown", "shown"),
        ("I <3 you", "I <3 you"),
        ("<![ broken", "![ broken"),
    ],
    ids=["paragraphs", "br", "entities", "script-dropped", "not-a-tag", "hostile-markup"],
)
def test_html_bodies_become_plain_text(html: str, text: str) -> None:
    """Email HTML becomes plain text: blocks kept, entities decoded once, scripts dropped."""
    assert html_to_text(html) == text


def test_long_and_hostile_text_is_kept_as_clipped_data() -> None:
    """A huge body full of markup and control characters is clipped, never interpreted."""
    hostile = "[bold red]x[/] \x1b[2J {{7*7}} " + "y" * 10_000
    [event] = thread_events(_thread(body=hostile), source=SOURCE, conversation_id=1, url=None)
    assert event.text is not None
    assert len(event.text) == TEXT_LIMIT
    assert event.text.startswith("[bold red]x[/] \x1b[2J {{7*7}}")
    assert event.text.endswith("…")


BAD_LISTS = [
    ("<html>", "html-string"),
    ([], "array"),
    ({}, "no-embedded-no-page"),
    ({"_embedded": {"conversations": {}}}, "conversations-not-list"),
    ({"_embedded": {"conversations": [{"id": "1"}]}}, "id-as-text"),
    ({"_embedded": {"conversations": [{"id": 1, "status": "active"}]}}, "no-created-at"),
    ({"_embedded": {"conversations": [{"id": 1, "status": "active",
                                       "createdAt": "2026-11-23T09:00:00"}]}}, "naive-time"),
    ({"_embedded": {"conversations": [{"id": 1, "status": "active", "createdAt":
                                       "2026-11-23T09:00:00Z", "tags": [{"tag": 5}]}]}},
     "tag-not-text"),
    ({"_embedded": {"conversations": []}, "page": {"number": "2"}}, "page-number-text"),
]


@pytest.mark.parametrize("data", [d for d, _ in BAD_LISTS], ids=[i for _, i in BAD_LISTS])
def test_malformed_list_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a list page is a ParseError naming the endpoint."""
    with pytest.raises(ParseError, match="helpscout conversations"):
        parse_conversation_page(data)


BAD_THREADS = [
    ({"_embedded": {"threads": [{"id": 1, "type": "reply"}]}}, "no-created-at"),
    ({"_embedded": {"threads": [{"id": 1, "type": 3, "createdAt": "2026-11-23T09:00:00Z"}]}},
     "type-not-text"),
    ({"_embedded": {"threads": [{"id": 1, "type": "reply", "createdAt": "2026-11-23T09:00:00Z",
                                 "createdBy": "kim"}]}}, "creator-not-object"),
    ({"_embedded": {"threads": [{"id": 1, "type": "reply", "createdAt": "2026-11-23T09:00:00Z",
                                 "body": ["x"]}]}}, "body-not-text"),
]


@pytest.mark.parametrize("data", [d for d, _ in BAD_THREADS], ids=[i for _, i in BAD_THREADS])
def test_malformed_thread_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a threads page is a ParseError naming the endpoint."""
    with pytest.raises(ParseError, match="helpscout threads"):
        parse_thread_page(data)


@pytest.mark.parametrize(
    "data",
    [{}, {"access_token": ""}, {"access_token": "t", "expires_in": "soon"},
     {"access_token": "t", "expires_in": -1}, "token"],
    ids=["empty", "blank-token", "expiry-text", "expiry-negative", "not-object"],
)
def test_malformed_tokens_raise_parse_error(data: Any) -> None:
    """A token answer without a usable token or lifetime is a ParseError."""
    with pytest.raises(ParseError, match="helpscout token"):
        parse_token(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["_embedded", "conversations", "threads", "mailboxes", "page", "id",
                         "status", "createdAt", "type", "tags", "createdBy", "number",
                         "access_token", "expires_in", "_links", "next", "firstName"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_or_raises_parse_error_only(data: Any) -> None:
    """Whatever JSON the API sends, the parsers either succeed or raise ParseError."""
    for parse in (parse_conversation_page, parse_thread_page, parse_mailboxes, parse_me,
                  parse_token):
        with contextlib.suppress(ParseError):
            parse(data)


def test_connector_is_registered_and_keeps_its_secrets() -> None:
    """The registry names this class for "helpscout", and settings never print the secrets."""
    module, _, name = BUILTIN["helpscout"].partition(":")
    assert (module, name) == ("connectors.helpscout", "HelpScoutConnector")
    settings_ = HelpScoutSettings(name=SOURCE, client_id=SecretStr("app-id-1"),
                                  client_secret=SecretStr("s3cret"))
    assert isinstance(HelpScoutConnector(settings_), Connector)
    assert "s3cret" not in repr(settings_)
    assert "app-id-1" not in repr(settings_)
    assert settings_.base_url == "https://api.helpscout.net"


@pytest.mark.parametrize(
    "base_url",
    ["http://api.helpscout.example", "ftp://api.helpscout.net", "https://u:p@api.helpscout.net"],
    ids=["plain-http-remote", "not-http", "credentials-in-url"],
)
def test_unsafe_base_urls_are_refused(base_url: str) -> None:
    """The token must not travel in clear text or sit in a URL."""
    with pytest.raises(ValidationError):
        HelpScoutSettings(name=SOURCE, client_id=SecretStr("a"), client_secret=SecretStr("b"),
                          base_url=base_url)


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Desk:
    """A served fake, a client session, and helpers to poll it."""

    fake: HelpScoutFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    def connector(self, **overrides: Any) -> HelpScoutConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "client_id": "fake-app-id",
                                  "client_secret": "fake-app-secret", "base_url": self.base_url}
        values.update(overrides)
        return HelpScoutConnector(HelpScoutSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def requests(self, path: str) -> list[dict[str, str]]:
        """The queries of the requests the fake received for ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]

    def thread_requests(self) -> int:
        """How many thread pages were asked for."""
        return sum(1 for r in self.fake.controls.requests if r.path.endswith("/threads"))

    async def drain(
        self, connector: HelpScoutConnector, cursor: Cursor | None, *, limit: int = 60
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
        raise AssertionError("the connector never finished its round")


@contextlib.asynccontextmanager
async def open_desk(world: HelpScoutWorld, clock: SteppedClock,
                    **fake_options: Any) -> AsyncIterator[Desk]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = HelpScoutFake(world, **fake_options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Desk(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """A world with one customer, one agent, one mailbox and one worked conversation."""

    world: HelpScoutWorld
    pat: int
    kim: int
    support: int
    conversation: int


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """Pat writes in, Kim takes the conversation, notes, replies and sets it pending."""
    world = HelpScoutWorld(now=clock)
    support = world.add_mailbox("Support")
    pat = world.add_customer("Pat", "Customer", "pat@example.com")
    kim = world.add_user("Kim", "Agent", "kim@acme.example")
    conversation = world.create_conversation(
        customer_id=pat, mailbox_id=support, subject="Refund please",
        body="I was charged twice", at=minutes(-10), tags=["vip"])
    world.assign(conversation, user_id=kim, assignee_id=kim, at=minutes(-9))
    world.add_note(conversation, user_id=kim, body="Checking billing", at=minutes(-9))
    world.reply(conversation, user_id=kim, body="Refund on its way", at=minutes(-8),
                status="pending")
    return Scene(world, pat, kim, support, conversation)


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


async def test_first_round_lists_then_reads_threads(scene: Scene, clock: SteppedClock) -> None:
    """Without a cursor: a token, the list since ctx.since newest first, then the threads."""
    async with open_desk(scene.world, clock) as desk:
        since = T0 - timedelta(hours=1)
        connector = desk.connector()
        first = await connector.poll(None, desk.ctx(since))
        second = await connector.poll(first.cursor, desk.ctx(since))
    assert [r.path for r in desk.fake.controls.requests] == [
        TOKEN, LIST, "/v2/mailboxes", f"/v2/conversations/{scene.conversation}/threads"]
    assert desk.requests(LIST) == [{"status": "all", "modifiedSince": "2026-11-23T08:00:00Z",
                                    "sortField": "modifiedAt", "sortOrder": "desc", "page": "1"}]
    number = scene.world.conversations[scene.conversation].number
    url = f"https://secure.helpscout.net/conversation/{scene.conversation}/{number}/"
    assert (first.more, first.watermark) == (True, None)
    assert [summary(e) for e in first.events] == [
        ("update", -8, {"subject": "Refund please", "customer": "Pat Customer",
                        "assignee": "Kim Agent", "group": "Support", "tags": ["vip"]}),
    ]
    assert (first.events[0].url, first.events[0].channel) == (url, "email")
    assert second.more is False
    assert second.watermark == T0 - timedelta(seconds=60)
    assert [summary(e) for e in second.events] == [
        ("status", -10, Status.OPEN),
        ("message", -10, Actor.CUSTOMER, True, "I was charged twice"),
        ("message", -9, Actor.AGENT, False, "Checking billing"),
        ("status", -8, Status.PENDING),
        ("message", -8, Actor.AGENT, True, "Refund on its way"),
    ]
    assert {e.author for e in second.events if e.kind is EventKind.MESSAGE} == {
        "Pat Customer", "Kim Agent"}
    assert all(e.url == url for e in second.events)
    json.dumps(second.cursor)  # the runner stores it as JSON


async def test_pages_are_followed_and_nothing_repeats(clock: SteppedClock) -> None:
    """Five conversations over pages of two are all read once, with more=True until done."""
    world = HelpScoutWorld(now=clock)
    support = world.add_mailbox("Support")
    pat = world.add_customer("Pat", "Customer")
    ids = [world.create_conversation(customer_id=pat, mailbox_id=support, subject=f"#{n}",
                                     body=f"help {n}", at=minutes(-30 + n)) for n in range(5)]
    async with open_desk(world, clock, list_page_size=2) as desk:
        events, _, batches = await desk.drain(desk.connector(), None)
    assert [b.more for b in batches] == [True] * 7 + [False]
    assert [r["page"] for r in desk.requests(LIST)] == ["1", "2", "3"]
    assert len({e.id for e in events}) == len(events)
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    assert sorted(m.conversation for m in messages) == sorted(str(i) for i in ids)
    assert batches[-1].watermark is None  # a round of several pages claims nothing


async def test_repoll_of_unchanged_world_yields_nothing(scene: Scene, clock: SteppedClock) -> None:
    """Listing an unchanged conversation again returns no event and reads no threads."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        read = desk.thread_requests()
        clock.advance(30)
        again, _, _ = await desk.drain(connector, cursor)
    assert seen
    assert again == []
    assert desk.thread_requests() == read
    assert len(desk.requests(LIST)) == 2
    assert len(desk.requests(TOKEN)) == 1  # the token is kept


async def test_cursor_survives_a_restart(scene: Scene, clock: SteppedClock) -> None:
    """A new connector instance resumes from the stored cursor and sees only what is new."""
    async with open_desk(scene.world, clock) as desk:
        seen, cursor, _ = await desk.drain(desk.connector(), None)
        scene.world.customer_reply(scene.conversation, body="Still waiting", at=T0)
        scene.world.set_tags(scene.conversation, ["vip", "angry"], at=T0)
        clock.advance(120)
        later, _, _ = await desk.drain(desk.connector(), json.loads(json.dumps(cursor)))
    assert {e.id for e in later}.isdisjoint(e.id for e in seen)
    assert [summary(e) for e in later] == [
        ("update", 0, {"subject": "Refund please", "customer": "Pat Customer",
                       "assignee": "Kim Agent", "group": "Support", "tags": ["vip", "angry"]}),
        ("status", 0, Status.OPEN),
        ("message", 0, Actor.CUSTOMER, True, "Still waiting"),
    ]


async def test_a_conversation_moved_while_paging_is_not_skipped(clock: SteppedClock) -> None:
    """Modified between two list pages, a conversation never pushes another out of the round."""
    world = HelpScoutWorld(now=clock)
    support = world.add_mailbox("Support")
    pat = world.add_customer("Pat", "Customer")
    ids = [world.create_conversation(customer_id=pat, mailbox_id=support, subject=f"#{n}",
                                     body=f"help {n}", at=minutes(-30 + n)) for n in range(6)]
    async with open_desk(world, clock, list_page_size=2) as desk:
        connector = desk.connector()
        first = await connector.poll(None, desk.ctx())  # the two newest: ids[5], ids[4]
        world.customer_reply(ids[0], body="bump", at=T0)  # the oldest jumps to the front
        events, cursor, _ = await desk.drain(connector, first.cursor)
        events = list(first.events) + events
        clock.advance(60)
        later, _, _ = await desk.drain(connector, cursor)
    listed = {e.conversation for e in events if e.kind is EventKind.UPDATE}
    # Sorted ascending, ids[1] would have slid onto the page already read and been lost.
    assert listed == {str(i) for i in ids[1:]}
    assert [e.text for e in later if e.kind is EventKind.MESSAGE] == ["help 0", "bump"]


async def test_watermark_only_follows_single_page_rounds(scene: Scene, clock: SteppedClock) -> None:
    """Watermarks stay behind server time - 60 s, never decrease, and move after one-page rounds."""
    marks: list[datetime] = []
    async with open_desk(scene.world, clock, list_page_size=1) as desk:
        connector = desk.connector()
        cursor: Cursor | None = None
        for step in range(8):
            if step == 3:
                other = scene.world.create_conversation(
                    customer_id=scene.pat, mailbox_id=scene.support, subject="Another",
                    body="Hello?", at=clock())
                assert other
            _, cursor, batches = await desk.drain(connector, cursor)
            for batch in batches:
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=60)
                    marks.append(batch.watermark)
            clock.advance(45)
    assert marks == sorted(marks)
    assert marks[-1] == clock() - timedelta(seconds=45 + 60)


async def test_draft_published_later_is_still_returned(scene: Scene, clock: SteppedClock) -> None:
    """A draft is not an answer; once sent it is returned even though newer threads exist."""
    draft = scene.world.reply(scene.conversation, user_id=scene.kim, body="Draft answer",
                              at=minutes(-5), draft=True)
    scene.world.customer_reply(scene.conversation, body="Hello?", at=minutes(-4))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        assert "Draft answer" not in {e.text for e in seen}
        scene.world.publish(scene.conversation, draft, at=T0)
        clock.advance(120)
        later, _, _ = await desk.drain(connector, cursor)
    assert [summary(e) for e in later if e.kind is EventKind.MESSAGE] == [
        ("message", -5, Actor.AGENT, True, "Draft answer")]


async def test_spam_and_ai_replies(scene: Scene, clock: SteppedClock) -> None:
    """Marked spam is a dismissal; the AI user is a bot through v3 and an agent through v2."""
    robot = scene.world.add_user("Help Scout", "AI", ai=True)
    scene.world.reply(scene.conversation, user_id=robot, body="Try turning it off and on",
                      at=minutes(-7))
    scene.world.change_status(scene.conversation, user_id=scene.kim, status="spam",
                              at=minutes(-6))
    async with open_desk(scene.world, clock) as desk:
        v3, _, _ = await desk.drain(desk.connector(threads_api="v3"), None)
        v2, _, _ = await desk.drain(desk.connector(), None)
    assert [r.path for r in desk.fake.controls.requests if r.path.endswith("threads")] == [
        f"/v3/conversations/{scene.conversation}/threads",
        f"/v2/conversations/{scene.conversation}/threads"]
    [robot_v3] = [e for e in v3 if e.text == "Try turning it off and on"]
    [robot_v2] = [e for e in v2 if e.text == "Try turning it off and on"]
    assert (robot_v3.actor, robot_v2.actor) == (Actor.BOT, Actor.AGENT)
    dismissed = sorted(e.id for e in v3 if e.kind is EventKind.DISMISSED)
    assert len(dismissed) == 2  # the conversation's status, and the line item that set it
    assert any(i.endswith(":spam") and i.startswith("conversation-") for i in dismissed)


async def test_conversation_deleted_before_its_threads_is_dismissed(
    scene: Scene, clock: SteppedClock
) -> None:
    """A conversation gone (404) between listing and threads is dismissed; the round ends."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        first = await connector.poll(None, desk.ctx())
        scene.world.delete(scene.conversation, at=T0)
        second = await connector.poll(first.cursor, desk.ctx())
        clock.advance(60)
        again, _, _ = await desk.drain(connector, second.cursor)
    assert [summary(e) for e in second.events] == [("dismissed", 0)]
    assert second.events[0].id == f"conversation-{scene.conversation}:deleted"
    assert (second.more, again) == (False, [])


async def test_hostile_text_travels_as_inert_data(scene: Scene, clock: SteppedClock) -> None:
    """Markup, escapes and control characters from a customer arrive as the same text."""
    hostile = "[red]pay now[/red] <b>bold</b> \x1b[31m'; DROP TABLE events; --"
    scene.world.customer_reply(scene.conversation, body=hostile, at=minutes(-1))
    scene.world.set_subject(scene.conversation, "[link=file:///etc/passwd]x[/link]",
                            at=minutes(-1))
    async with open_desk(scene.world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(), None)
    assert hostile in {e.text for e in events}
    assert "[link=file:///etc/passwd]x[/link]" in {e.fields.get("subject") for e in events}


async def test_scripted_429_then_503_then_success(scene: Scene, clock: SteppedClock) -> None:
    """[429 Retry-After: 2, 503, 200] gives RateLimited(2), TransientError, then a batch."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        await connector.check(desk.ctx())  # hold a token, so the faults hit the list
        desk.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
        with pytest.raises(RateLimited) as limited:
            await connector.poll(None, desk.ctx())
        assert limited.value.retry_after == 2
        with pytest.raises(TransientError) as failed:
            await connector.poll(None, desk.ctx())
        assert not isinstance(failed.value, RateLimited)
        batch = await connector.poll(None, desk.ctx())
    assert [e.conversation for e in batch.events] == [str(scene.conversation)]


async def test_help_scouts_own_429_header_is_honoured(scene: Scene, clock: SteppedClock) -> None:
    """Help Scout's 429 carries X-RateLimit-Retry-After, not Retry-After; it is honoured."""
    async with open_desk(scene.world, clock, rate_limit=3) as desk:
        await desk.connector().poll(None, desk.ctx())  # token, list, mailboxes: all three
        clock.advance(20)
        with pytest.raises(RateLimited) as limited:  # a restarted connector knows no budget
            await desk.connector().poll(None, desk.ctx())
    assert limited.value.retry_after == 40
    assert desk.fake.controls.requests[-1].path == TOKEN


async def test_own_budget_refuses_before_sending(scene: Scene, clock: SteppedClock) -> None:
    """With a budget of 3 a minute the fourth request is refused before it leaves."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(requests_per_minute=3)
        first = await connector.poll(None, desk.ctx())  # token, list, mailboxes
        sent = len(desk.fake.controls.requests)
        clock.advance(10)
        with pytest.raises(RateLimited) as refused:
            await connector.poll(first.cursor, desk.ctx())
        assert (refused.value.retry_after, len(desk.fake.controls.requests)) == (50, sent)
        clock.advance(50)
        await connector.poll(first.cursor, desk.ctx())
    assert len(desk.fake.controls.requests) == sent + 1


async def test_remaining_zero_waits_without_asking(scene: Scene, clock: SteppedClock) -> None:
    """X-RateLimit-Remaining-Minute: 0 makes the next poll wait instead of earning a 429."""
    async with open_desk(scene.world, clock, rate_limit=3) as desk:
        connector = desk.connector()
        first = await connector.poll(None, desk.ctx())  # token, list, mailboxes: remaining 0
        sent = len(desk.fake.controls.requests)
        with pytest.raises(RateLimited) as waiting:
            await connector.poll(first.cursor, desk.ctx())
    assert waiting.value.retry_after == 60
    assert len(desk.fake.controls.requests) == sent


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"_embedded": {"conversations": "nope"}})),
        Fault(200, body="{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(scene: Scene, clock: SteppedClock,
                                            fault: Fault) -> None:
    """A malformed list page is a ParseError; polling again from the same cursor is whole."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        await connector.check(desk.ctx())
        desk.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(None, desk.ctx())
        events, _, _ = await desk.drain(connector, None)
        reference, _, _ = await desk.drain(desk.connector(), None)
    assert [e.id for e in events] == [e.id for e in reference]
    assert any(e.kind is EventKind.MESSAGE for e in events)


async def test_bad_credentials_are_auth_errors_without_secrets(
    scene: Scene, clock: SteppedClock
) -> None:
    """Refused client credentials are AuthError for poll and check, naming no secret."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(client_secret="wrong-secret-123")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, desk.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(desk.ctx())
    for message in (str(polled.value), str(checked.value)):
        assert "wrong-secret-123" not in message
        assert "fake-app-id" not in message
        assert "401" in message


async def test_expired_token_is_replaced_once(scene: Scene, clock: SteppedClock) -> None:
    """A 401 on a token we held earns one new token and a retry; a refused retry is AuthError."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        await connector.check(desk.ctx())
        desk.fake.expire_tokens()
        assert (await connector.check(desk.ctx())).startswith("authenticated as")
        assert len(desk.requests(TOKEN)) == 2
        desk.fake.controls.faults.extend([Fault(401), Fault(200, body=json.dumps(
            {"token_type": "bearer", "access_token": "t", "expires_in": 7200})), Fault(401)])
        with pytest.raises(AuthError):
            await connector.check(desk.ctx())
    assert len(desk.requests(TOKEN)) == 3


async def test_token_is_renewed_before_it_expires(scene: Scene, clock: SteppedClock) -> None:
    """A token is fetched again a minute before expires_in runs out, without a 401."""
    async with open_desk(scene.world, clock, expires_in=600) as desk:
        connector = desk.connector()
        await connector.check(desk.ctx())
        clock.advance(530)
        await connector.check(desk.ctx())
        assert len(desk.requests(TOKEN)) == 1
        clock.advance(15)
        await connector.check(desk.ctx())
    assert len(desk.requests(TOKEN)) == 2
    assert not any(r.path != TOKEN and "Bearer" not in r.headers.get("Authorization", "")
                   for r in desk.fake.controls.requests)


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        await connector.check(desk.ctx())
        desk.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await connector.poll(None, desk.ctx())


async def test_check_names_the_apps_user(scene: Scene, clock: SteppedClock) -> None:
    """check() proves the credentials with users/me and says whose app it is."""
    async with open_desk(scene.world, clock) as desk:
        assert await desk.connector().check(desk.ctx()) == "authenticated as Ops Owner"
    desk.fake.controls.assert_called("/v2/users/me", times=1)


async def test_mailbox_filter_and_names(scene: Scene, clock: SteppedClock) -> None:
    """Configured mailboxes filter the list; mailbox names are fetched once and reused."""
    sales = scene.world.add_mailbox("Sales")
    scene.world.create_conversation(customer_id=scene.pat, mailbox_id=sales, subject="Quote",
                                    body="Price?", at=minutes(-3))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(mailboxes=[sales])
        events, cursor, _ = await desk.drain(connector, None)
        clock.advance(60)
        await desk.drain(connector, cursor)
    assert desk.requests(LIST)[0]["mailbox"] == str(sales)
    assert {e.fields.get("group") for e in events if e.kind is EventKind.UPDATE} == {"Sales"}
    assert len(desk.requests("/v2/mailboxes")) == 1


@pytest.mark.parametrize(
    "cursor",
    [{"v": 99}, {"v": 1, "since": "yesterday"}, {"v": 1, "todo": "x"}, {"unrelated": True}],
    ids=["future-version", "bad-since", "bad-todo", "foreign"],
)
async def test_unreadable_cursor_starts_again(scene: Scene, clock: SteppedClock,
                                              cursor: dict[str, Any]) -> None:
    """A cursor this version cannot read is treated as none: the round starts at ctx.since."""
    async with open_desk(scene.world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(), cursor)
    assert desk.requests(LIST)[0]["modifiedSince"] == "2026-11-22T09:00:00Z"
    assert any(e.text == "Refund on its way" for e in events)


async def test_fake_speaks_help_scout(scene: Scene, clock: SteppedClock) -> None:
    """The fake's own answers: token errors, 401 without token, HAL pages, Date header."""
    async with open_desk(scene.world, clock) as desk:
        url = desk.base_url
        async with desk.session.post(url + TOKEN, data={
                "grant_type": "client_credentials", "client_id": "x",
                "client_secret": "y"}) as response:
            assert (response.status, (await response.json())["error"]) == (401, "invalid_client")
        async with desk.session.get(url + LIST) as response:
            assert response.status == 401
        async with desk.session.post(url + TOKEN, data={
                "grant_type": "client_credentials", "client_id": "fake-app-id",
                "client_secret": "fake-app-secret"}) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with desk.session.get(url + LIST, headers=headers,
                                    params={"status": "all"}) as response:
            body = await response.json(content_type=None)
            assert response.headers["Content-Type"].startswith("application/hal+json")
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:00:00 GMT"
            assert response.headers["X-RateLimit-Limit-Minute"] == "400"
    [listed] = body["_embedded"]["conversations"]
    assert "modifiedAt" not in listed
    assert body["page"] == {"size": 25, "totalElements": 1, "totalPages": 1, "number": 1}
