"""Tests of the Zendesk connector: recorded payloads, and the faithful fake served for real."""

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
from pydantic import SecretStr

from connectors import BUILTIN
from connectors._text import TEXT_LIMIT
from connectors.fakes._base import Fault, serve
from connectors.fakes.zendesk import ZendeskFake, ZendeskWorld
from connectors.zendesk import (
    ZendeskConnector,
    ZendeskGroup,
    ZendeskSettings,
    ZendeskUser,
    parse_audit_page,
    parse_comment_page,
    parse_event_page,
    parse_me,
    parse_ticket_page,
    parse_users,
    record_events,
    ticket_event,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-desk"
EXPORT_PATHS = ("/api/v2/incremental/tickets/cursor.json", "/api/v2/incremental/ticket_events.json")


def load(name: str) -> Any:
    """A recorded payload from the shared fixtures."""
    return json.loads(fixture_path("zendesk", name).read_text())


def at(text: str) -> datetime:
    """An aware UTC instant from ``2011-05-05T10:38:52``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def basic(credentials: str) -> dict[str, str]:
    """A Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


# --- recorded payloads ---------------------------------------------------------------------


def test_ticket_export_fixture_gives_one_exact_update_event() -> None:
    """The recorded cursor page yields the ticket's attributes as one update event."""
    page = parse_ticket_page(load("GET_api_v2_incremental_tickets_cursor.json"))
    assert page.after_cursor == "MTU3NjYxMzUzOS4wfHw0Njd8"
    assert page.end_of_stream is True
    [ticket] = page.tickets
    event = ticket_event(ticket, source=SOURCE, subdomain="company", users={}, groups={})
    assert event == Event(
        source=SOURCE, conversation="35436", id="ticket-35436@1304591932",
        at=at("2011-05-05T10:38:52"), kind=EventKind.UPDATE,
        fields={"subject": "Help, my printer is on fire!", "customer": "20978392",
                "priority": "high", "assignee": "235323", "group": "98738",
                "tags": ["enterprise", "other_tag"]},
        channel="web", url="https://company.zendesk.com/agent/tickets/35436",
    )


def test_ticket_event_names_people_and_groups_from_the_sideloads() -> None:
    """Known users and groups are reported by name; the source's channel override wins."""
    [ticket] = parse_ticket_page(load("GET_api_v2_incremental_tickets_cursor.json")).tickets
    users = {235323: ZendeskUser(235323, "Kim", "agent"),
             20978392: ZendeskUser(20978392, "Pat", "end-user")}
    event = ticket_event(ticket, source=SOURCE, subdomain="company", users=users,
                         groups={98738: "billing"}, channel="vip-desk")
    assert event.fields["customer"] == "Pat"
    assert event.fields["assignee"] == "Kim"
    assert event.fields["group"] == "billing"
    assert event.channel == "vip-desk"


def test_deleted_ticket_becomes_a_dismissal() -> None:
    """A ticket exported with status deleted cancels its clocks (a dismissed event)."""
    data = load("GET_api_v2_incremental_tickets_cursor.json")
    data["tickets"][0]["status"] = "deleted"
    [ticket] = parse_ticket_page(data).tickets
    event = ticket_event(ticket, source=SOURCE, subdomain="company", users={}, groups={})
    assert event.kind is EventKind.DISMISSED
    assert event.id == "ticket-35436@1304591932:deleted"


def test_ticket_event_fixture_gives_one_exact_message() -> None:
    """The recorded ticket-event page yields its comment as a public customer message."""
    page = parse_event_page(load("GET_api_v2_incremental_ticket_events_comment_events.json"))
    assert page.end_of_stream is True
    assert page.end_time == 1723660897  # no end_time given: the page's latest timestamp
    events = record_events(page.records, source=SOURCE, subdomain="d3v", users={}, groups={})
    assert events == (Event(
        source=SOURCE, conversation="35436", id="35436:1", at=at("2009-07-20T22:55:29"),
        kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, public=True, text="Test comment",
        url="https://d3v.zendesk.com/agent/tickets/35436",
    ),)


@pytest.mark.parametrize(
    ("role", "via", "author_id", "actor"),
    [
        ("end-user", None, 235323, Actor.CUSTOMER),
        ("agent", None, 235323, Actor.AGENT),
        ("admin", None, 235323, Actor.AGENT),
        (None, None, 235323, Actor.CUSTOMER),
        ("agent", {"channel": "rule"}, 235323, Actor.BOT),
        ("end-user", {"channel": "answer_bot_for_web_widget"}, 235323, Actor.BOT),
        (None, None, -1, Actor.BOT),
    ],
    ids=["end-user", "agent", "admin", "unknown-author", "trigger", "answer-bot", "system-user"],
)
def test_comment_actor_follows_role_and_via(
    role: str | None, via: dict[str, str] | None, author_id: int, actor: Actor
) -> None:
    """Role decides customer vs agent; rules, Answer Bot and the system user are bots."""
    data = load("GET_api_v2_incremental_ticket_events_comment_events.json")
    child = data["ticket_events"][0]["child_events"][0]
    child["author_id"] = author_id
    if via is not None:
        child["via"] = via
    users = {} if role is None else {author_id: ZendeskUser(author_id, "Someone", role)}
    [event] = record_events(parse_event_page(data).records, source=SOURCE, subdomain="d3v",
                            users=users, groups={})
    assert event.actor is actor


def test_audits_fixture_gives_a_private_note_and_a_status_change() -> None:
    """An audit's private comment is an internal note; its trigger-made change is a status."""
    page = parse_audit_page(load("GET_api_v2_ticket_audits.json"))
    users = {5246746: ZendeskUser(5246746, "Sam", "agent")}
    events = record_events(page.records, source=SOURCE, subdomain="acme", users=users, groups={})
    url = "https://acme.zendesk.com/agent/tickets/666"
    assert events == (
        Event(source=SOURCE, conversation="666", id="2127301143:2127301148",
              at=at("2011-09-25T22:35:44"), kind=EventKind.MESSAGE, actor=Actor.AGENT,
              public=False, author="Sam", text="This is a new private comment", url=url),
        Event(source=SOURCE, conversation="666", id="2127301143:2127301163",
              at=at("2011-09-25T22:35:44"), kind=EventKind.STATUS, status=Status.OPEN, url=url),
    )


def test_comments_fixture_gives_the_same_id_scheme_as_the_export() -> None:
    """A comment from the comments endpoint is ``{audit_id}:{comment id}``, like the export."""
    page = parse_comment_page(load("GET_api_v2_tickets_4634_comments.json"), ticket_id=4634)
    assert record_events(page.records, source=SOURCE, subdomain="acme", users={}, groups={}) == (
        Event(source=SOURCE, conversation="4634", id="288845689508:288845689548",
              at=at("2017-04-19T11:14:25"), kind=EventKind.MESSAGE, actor=Actor.CUSTOMER,
              public=True, text="I am comment", url="https://acme.zendesk.com/agent/tickets/4634"),
    )


def _audit_with(child: dict[str, Any]) -> dict[str, Any]:
    return {"audits": [{"id": 7, "ticket_id": 9, "created_at": "2026-11-23T09:00:00Z",
                        "author_id": 1, "events": [{"id": 8, **child}]}], "next_page": None}


def _export_with(child: dict[str, Any]) -> dict[str, Any]:
    return {"ticket_events": [{"id": 7, "ticket_id": 9, "timestamp": 1795424400,
                               "child_events": [{"id": 8, **child}]}],
            "end_of_stream": True, "end_time": 1795424400}


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (_export_with({"event_type": "Change", "status": "hold", "previous_value": "open"}),
         ("status", Status.ON_HOLD)),
        (_export_with({"event_type": "Create", "status": "new"}), ("status", Status.NEW)),
        (_export_with({"event_type": "Change", "priority": "urgent"}),
         ("update", {"priority": "urgent"})),
        (_export_with({"event_type": "Change", "priority": None}), ("update", {"priority": None})),
        (_export_with({"event_type": "Change", "assignee_id": 5}), ("update", {"assignee": "Kim"})),
        (_export_with({"event_type": "Change", "group_id": 6}), ("update", {"group": "billing"})),
        (_export_with({"event_type": "Change", "tags": ["vip", "refund"], "added_tags": ["vip"]}),
         ("update", {"tags": ["vip", "refund"]})),
        (_audit_with({"type": "Change", "field_name": "assignee_id", "value": "5"}),
         ("update", {"assignee": "Kim"})),
        (_audit_with({"type": "Change", "field_name": "tags", "value": ["a", "b"]}),
         ("update", {"tags": ["a", "b"]})),
        (_audit_with({"type": "Change", "field_name": "status", "value": "solved"}),
         ("status", Status.SOLVED)),
        (_export_with({"event_type": "Change", "subject": "New subject"}), None),
        (_export_with({"event_type": "Change", "status": "archived"}), None),
        (_export_with({"event_type": "Notification", "body": "mail sent"}), None),
    ],
    ids=["hold-is-on_hold", "create-new", "priority", "priority-cleared", "assignee-named",
         "group-named", "tags", "audit-assignee-as-text", "audit-tags", "audit-status",
         "untracked-field", "unknown-status", "notification"],
)
def test_field_changes_become_status_and_update_events(
    page: dict[str, Any], expected: tuple[str, Any] | None
) -> None:
    """Each tracked field change in either spelling maps to one event; others to none."""
    parse = parse_audit_page if "audits" in page else parse_event_page
    events = record_events(parse(page).records, source=SOURCE, subdomain="acme",
                           users={5: ZendeskUser(5, "Kim", "agent")}, groups={6: "billing"})
    if expected is None:
        assert events == ()
        return
    [event] = events
    assert event.id == "7:8"
    if expected[0] == "status":
        assert (event.kind, event.status) == (EventKind.STATUS, expected[1])
    else:
        assert event.kind is EventKind.UPDATE
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in event.fields.items()} \
            == expected[1]


def test_long_and_hostile_text_is_kept_as_clipped_data() -> None:
    """A huge body full of markup and control characters is clipped, never interpreted."""
    hostile = "[bold red]x[/] \x1b[2J <script>" + "y" * 10_000
    data = _export_with({"event_type": "Comment", "author_id": 1, "body": hostile,
                         "public": True})
    [event] = record_events(parse_event_page(data).records, source=SOURCE, subdomain="acme",
                            users={}, groups={})
    assert event.text is not None
    assert len(event.text) == TEXT_LIMIT
    assert event.text.startswith("[bold red]x[/] \x1b[2J <script>")
    assert event.text.endswith("…")


BAD_TICKET_PAGES = [
    ("<html>oops</html>", "html-string"),
    ([], "array"),
    ({"end_of_stream": True}, "no-tickets"),
    ({"tickets": {}, "end_of_stream": True}, "tickets-not-list"),
    ({"tickets": [{"id": "1", "updated_at": "2026-11-23T09:00:00Z", "status": "open"}],
      "end_of_stream": True}, "id-as-text"),
    ({"tickets": [{"id": True, "updated_at": "2026-11-23T09:00:00Z", "status": "open"}],
      "end_of_stream": True}, "id-as-bool"),
    ({"tickets": [{"id": 1, "updated_at": "yesterday", "status": "open"}],
      "end_of_stream": True}, "bad-time"),
    ({"tickets": [{"id": 1, "updated_at": "2026-11-23T09:00:00", "status": "open"}],
      "end_of_stream": True}, "naive-time"),
    ({"tickets": [{"id": 1, "updated_at": "2026-11-23T09:00:00Z", "status": "open",
                   "tags": "vip"}], "end_of_stream": True}, "tags-not-list"),
    ({"tickets": [], "end_of_stream": "yes"}, "end-of-stream-text"),
    ({"tickets": [], "end_of_stream": False}, "more-without-cursor"),
    ({"tickets": [], "end_of_stream": True, "users": [{"id": 1, "name": "x"}]}, "user-no-role"),
]


@pytest.mark.parametrize("data", [p for p, _ in BAD_TICKET_PAGES],
                         ids=[i for _, i in BAD_TICKET_PAGES])
def test_malformed_ticket_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a ticket page is a ParseError, never a KeyError or TypeError."""
    with pytest.raises(ParseError, match="zendesk ticket export"):
        parse_ticket_page(data)


BAD_EVENT_PAGES = [
    ({"end_of_stream": True}, "no-ticket-events"),
    ({"ticket_events": [1], "end_of_stream": True}, "event-not-object"),
    ({"ticket_events": [{"id": 1, "ticket_id": 2, "timestamp": 10 ** 20}],
      "end_of_stream": True}, "timestamp-out-of-range"),
    ({"ticket_events": [{"id": 1, "ticket_id": 2, "timestamp": 5, "child_events": {}}],
      "end_of_stream": True}, "children-not-list"),
    (_export_with({"event_type": "Comment", "author_id": 1, "body": "x", "public": "yes"}),
     "public-as-text"),
    (_export_with({"event_type": "Comment", "author_id": "me", "body": "x", "public": True}),
     "author-as-text"),
    (_export_with({"event_type": "Change", "assignee_id": "kim"}), "assignee-not-an-id"),
    ({"ticket_events": [], "end_of_stream": True, "end_time": "soon"}, "end-time-text"),
]


@pytest.mark.parametrize("data", [p for p, _ in BAD_EVENT_PAGES],
                         ids=[i for _, i in BAD_EVENT_PAGES])
def test_malformed_event_pages_raise_parse_error(data: Any) -> None:
    """Any shape error in a ticket-event page is a ParseError naming the export."""
    with pytest.raises(ParseError, match="zendesk ticket event export"):
        parse_event_page(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "ticket_id", "timestamp", "tickets", "ticket_events",
                         "child_events", "event_type", "end_of_stream", "users", "status",
                         "updated_at", "public", "body", "author_id", "user", "role"]),
        inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_or_raises_parse_error_only(data: Any) -> None:
    """Whatever JSON an API sends, the parsers either succeed or raise ParseError."""
    for parse in (parse_ticket_page, parse_event_page, parse_audit_page, parse_users, parse_me):
        with contextlib.suppress(ParseError):
            parse(data)
    with contextlib.suppress(ParseError):
        parse_comment_page(data, ticket_id=1)


def test_users_and_me_payloads() -> None:
    """show_many gives users with roles; users/me for the anonymous user is None."""
    assert parse_users({"users": [{"id": 1, "name": "Kim", "role": "agent"}]}) == (
        ZendeskUser(1, "Kim", "agent"),)
    assert parse_me({"user": {"id": None, "name": "Anonymous user", "role": "end-user"}}) is None
    assert parse_me({"user": {"id": 3, "name": "Ops", "role": "admin"}}) == (
        ZendeskUser(3, "Ops", "admin"))


def test_connector_is_registered_and_keeps_its_token_secret() -> None:
    """The registry names this class for "zendesk", and settings never print the token."""
    module, _, name = BUILTIN["zendesk"].partition(":")
    assert (module, name) == ("connectors.zendesk", "ZendeskConnector")
    settings_ = ZendeskSettings(name=SOURCE, subdomain="acme", email="ops@acme.example",
                                token=SecretStr("s3cret"))
    connector = ZendeskConnector(settings_)
    assert isinstance(connector, Connector)
    assert "s3cret" not in repr(settings_)
    assert ZendeskConnector.settings_model is ZendeskSettings


# --- against the fake, served for real -----------------------------------------------------


class Clock:
    """A steerable clock shared by the world (server) and the poll context (runner)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


@dataclass
class Desk:
    """A served fake, a client session, and helpers to poll it."""

    fake: ZendeskFake
    base_url: str
    session: aiohttp.ClientSession
    clock: Clock

    def connector(self, **overrides: Any) -> ZendeskConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "subdomain": "acme",
                                  "email": "ops@acme.example", "token": "fake-token",
                                  "base_url": self.base_url}
        values.update(overrides)
        return ZendeskConnector(ZendeskSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def export_requests(self) -> int:
        """How many export requests the fake received."""
        return sum(1 for r in self.fake.controls.requests if r.path in EXPORT_PATHS)

    async def drain(
        self, connector: ZendeskConnector, cursor: Cursor | None, *, limit: int = 40
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
async def open_desk(world: ZendeskWorld, clock: Clock, **fake_options: Any) -> AsyncIterator[Desk]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = ZendeskFake(world, **fake_options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Desk(fake, base_url, session, clock)


@pytest.fixture
def clock() -> Clock:
    """The test's clock, at T0."""
    return Clock(T0)


@dataclass
class Scene:
    """A world with one customer, one agent, one group and one worked ticket."""

    world: ZendeskWorld
    pat: int
    kim: int
    billing: int
    ticket: int


@pytest.fixture
def scene(clock: Clock) -> Scene:
    """Pat writes in, Kim takes the ticket, answers and sets it pending."""
    world = ZendeskWorld(now=clock)
    pat = world.add_user("Pat Customer", "end-user", "pat@example.com")
    kim = world.add_user("Kim Agent", "agent", "kim@acme.example")
    billing = world.add_group("Billing")
    ticket = world.create_ticket(requester_id=pat, subject="Refund please",
                                 body="I was charged twice", at=minutes(-10), priority="high",
                                 channel="email", tags=["vip"], group_id=billing)
    world.update(ticket, at=minutes(-9), author_id=kim, assignee_id=kim)
    world.add_comment(ticket, author_id=kim, body="Refund on its way", public=True,
                      at=minutes(-8))
    world.update(ticket, at=minutes(-8), author_id=kim, status="pending")
    return Scene(world, pat, kim, billing, ticket)


def summary(event: Event) -> tuple[Any, ...]:
    """An event as (kind, minutes from T0, what it says): easy to read in a table."""
    offset = (event.at - T0).total_seconds() / 60
    if event.kind is EventKind.STATUS:
        return ("status", offset, event.status)
    if event.kind is EventKind.MESSAGE:
        return ("message", offset, event.actor, event.public, event.text)
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in event.fields.items()}
    return (str(event.kind), offset, fields)


async def test_first_round_reads_both_streams_from_since(scene: Scene, clock: Clock) -> None:
    """Without a cursor the connector reads tickets then events from ctx.since, exactly."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        since = T0 - timedelta(hours=1)
        first = await connector.poll(None, desk.ctx(since))
        second = await connector.poll(first.cursor, desk.ctx(since))
    tickets_request, events_request = (
        r for r in desk.fake.controls.requests if r.path in EXPORT_PATHS)
    assert tickets_request.query == {"start_time": str(int(since.timestamp())),
                                     "include": "users,groups"}
    assert events_request.query == {"start_time": str(int(since.timestamp())),
                                    "include": "comment_events"}
    assert first.more is True
    assert first.watermark is None
    assert first.events == (Event(
        source=SOURCE, conversation=str(scene.ticket), id=f"ticket-{scene.ticket}@"
        f"{int(minutes(-8).timestamp())}", at=minutes(-8), kind=EventKind.UPDATE,
        fields={"subject": "Refund please", "customer": "Pat Customer", "priority": "high",
                "assignee": "Kim Agent", "group": "Billing", "tags": ["vip"]},
        channel="email", url=f"https://acme.zendesk.com/agent/tickets/{scene.ticket}",
    ),)
    assert second.more is False
    assert second.watermark == T0 - timedelta(seconds=60)
    assert [summary(e) for e in second.events] == [
        ("status", -10, Status.NEW),
        ("update", -10, {"priority": "high"}),
        ("update", -10, {"group": "Billing"}),
        ("update", -10, {"tags": ["vip"]}),
        ("message", -10, Actor.CUSTOMER, True, "I was charged twice"),
        ("update", -9, {"assignee": "Kim Agent"}),
        ("status", -9, Status.OPEN),
        ("message", -8, Actor.AGENT, True, "Refund on its way"),
        ("status", -8, Status.PENDING),
    ]
    created = scene.world.audits[0]
    assert second.events[4].id == f"{created.id}:{created.children[-1]['id']}"
    assert second.events[4].author == "Pat Customer"
    json.dumps(second.cursor)  # the runner stores it as JSON


async def test_pages_until_end_of_stream_with_more(clock: Clock) -> None:
    """Small pages are followed with more=True until both streams reach their end."""
    world = ZendeskWorld(now=clock)
    pat = world.add_user("Pat", "end-user")
    tickets = [world.create_ticket(requester_id=pat, subject=f"#{n}", body=f"help {n}",
                                   at=minutes(-30 + n)) for n in range(5)]
    async with open_desk(world, clock, ticket_page_size=2, event_page_size=2) as desk:
        events, _, batches = await desk.drain(desk.connector(), None)
    assert [b.more for b in batches] == [True] * 6 + [False]
    assert [len(b.events) for b in batches] == [2, 2, 1, 4, 2, 2, 2]
    assert len({e.id for e in events}) == len(events)  # repeated seconds are not re-emitted
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    assert [m.conversation for m in messages] == [str(t) for t in tickets]
    assert sorted(e.conversation for e in events if e.id.startswith("ticket-")) == sorted(
        str(t) for t in tickets)
    starts = [r.query["start_time"] for r in desk.fake.controls.requests
              if r.path == EXPORT_PATHS[1]]
    since = T0 - timedelta(days=1)
    assert starts == [str(int(t.timestamp())) for t in (since, *map(minutes, (-29, -28, -27)))]


async def test_repoll_of_unchanged_world_yields_no_new_ids(scene: Scene, clock: Clock) -> None:
    """Polling again with nothing changed returns no event at all, so no new id."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        sent = desk.export_requests()
        clock.advance(30)
        again, _, _ = await desk.drain(connector, cursor)
    assert seen
    assert desk.export_requests() == sent + 2  # both streams were asked again
    assert again == []


async def test_a_real_change_yields_new_ids(scene: Scene, clock: Clock) -> None:
    """A priority change gives a new ticket-state event and a new update event."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        seen, cursor, _ = await desk.drain(connector, None)
        scene.world.update(scene.ticket, at=T0, author_id=scene.kim, priority="urgent")
        clock.advance(90)
        later, _, _ = await desk.drain(connector, cursor)
    new = [e for e in later if e.id not in {s.id for s in seen}]
    assert [summary(e) for e in new] == [
        ("update", 0, {"subject": "Refund please", "customer": "Pat Customer",
                       "priority": "urgent", "assignee": "Kim Agent", "group": "Billing",
                       "tags": ["vip"]}),
        ("update", 0, {"priority": "urgent"}),
    ]


async def test_cursor_survives_a_restart(scene: Scene, clock: Clock) -> None:
    """A new connector instance resumes from the stored cursor and sees only what is new."""
    async with open_desk(scene.world, clock) as desk:
        seen, cursor, _ = await desk.drain(desk.connector(), None)
        scene.world.add_comment(scene.ticket, author_id=scene.pat, body="Still waiting",
                                public=True, at=T0)
        clock.advance(120)
        restarted = desk.connector()
        later, _, _ = await desk.drain(restarted, json.loads(json.dumps(cursor)))
    new = [summary(e) for e in later if e.id not in {s.id for s in seen}]
    assert new == [
        ("update", 0, {"subject": "Refund please", "customer": "Pat Customer",
                       "priority": "high", "assignee": "Kim Agent", "group": "Billing",
                       "tags": ["vip"]}),
        ("message", 0, Actor.CUSTOMER, True, "Still waiting"),
        ("status", 0, Status.OPEN),
    ]


async def test_last_minute_is_left_out_until_it_has_passed(scene: Scene, clock: Clock) -> None:
    """A reply made 30 s ago is not exported yet; a minute later it is, and the mark follows."""
    scene.world.add_comment(scene.ticket, author_id=scene.pat, body="Hello?", public=True,
                            at=T0 - timedelta(seconds=30))
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        early, cursor, batches = await desk.drain(connector, None)
        assert "Hello?" not in {e.text for e in early}
        assert batches[-1].watermark == T0 - timedelta(seconds=60)
        clock.advance(60)
        late, _, batches = await desk.drain(connector, cursor)
    assert "Hello?" in {e.text for e in late}
    assert batches[-1].watermark == T0


async def test_watermark_stays_behind_server_time_and_never_moves_back(
    scene: Scene, clock: Clock
) -> None:
    """Every watermark is at most server time - 60 s, and they never decrease."""
    marks: list[datetime] = []
    async with open_desk(scene.world, clock, ticket_page_size=1, event_page_size=2) as desk:
        connector = desk.connector()
        cursor: Cursor | None = None
        for step in range(6):
            scene.world.add_comment(scene.ticket, author_id=scene.pat, body=f"ping {step}",
                                    public=True, at=clock())
            for _ in range(4):
                batch = await connector.poll(cursor, desk.ctx())
                cursor = batch.cursor
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=60)
                    marks.append(batch.watermark)
            clock.advance(45)
    assert marks == sorted(marks)
    assert len(marks) > 6


async def test_own_limiter_refuses_the_eleventh_request(scene: Scene, clock: Clock) -> None:
    """Ten export requests in a minute are sent; the eleventh is refused before it leaves."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        cursor: Cursor | None = None
        for n in range(10):
            cursor = (await connector.poll(cursor, desk.ctx())).cursor
            if n == 1:
                clock.advance(20)
        with pytest.raises(RateLimited) as refused:
            await connector.poll(cursor, desk.ctx())
        assert refused.value.retry_after == 40
        assert desk.export_requests() == 10
        clock.advance(40)
        await connector.poll(cursor, desk.ctx())
        assert desk.export_requests() == 11


async def test_fake_answers_429_when_our_budget_is_higher(scene: Scene, clock: Clock) -> None:
    """With a 30/minute budget against a 10/minute account, Zendesk's 429 becomes RateLimited."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(requests_per_minute=30)
        cursor: Cursor | None = None
        for _ in range(10):
            cursor = (await connector.poll(cursor, desk.ctx())).cursor
        with pytest.raises(RateLimited) as limited:
            await connector.poll(cursor, desk.ctx())
    assert limited.value.retry_after == 60
    assert desk.export_requests() == 11


async def test_scripted_429_then_503_then_success(scene: Scene, clock: Clock) -> None:
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
    assert [e.conversation for e in batch.events] == [str(scene.ticket)]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"ticket_events": "nope", "end_of_stream": True})),
        Fault(200, body="{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(scene: Scene, clock: Clock, fault: Fault) -> None:
    """A malformed events page is a ParseError; the retry from the last good cursor is whole."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        tickets = await connector.poll(None, desk.ctx())
        desk.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(tickets.cursor, desk.ctx())
        recovered = await connector.poll(tickets.cursor, desk.ctx())
        reference, _, _ = await desk.drain(desk.connector(), None)
    assert recovered.more is False
    assert [e.id for e in recovered.events] == [
        e.id for e in reference if not e.id.startswith("ticket-")]


async def test_bad_credentials_are_auth_errors_without_secrets(scene: Scene, clock: Clock) -> None:
    """A 401 is AuthError for poll and check, and no message shows the token or header."""
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector(token="wrong-token")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, desk.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(desk.ctx())
    header = base64.b64encode(b"ops@acme.example/token:wrong-token").decode()
    for message in (str(polled.value), str(checked.value)):
        assert "wrong-token" not in message
        assert header not in message
        assert "ops@acme.example/token" not in message
        assert "401" in message


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: Clock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_desk(scene.world, clock) as desk:
        desk.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await desk.connector().poll(None, desk.ctx())


async def test_check_names_the_authenticated_admin(scene: Scene, clock: Clock) -> None:
    """check() proves the credentials with users/me and says whose they are."""
    async with open_desk(scene.world, clock) as desk:
        assert await desk.connector().check(desk.ctx()) == "authenticated as Ops (admin)"
    desk.fake.controls.assert_called("/api/v2/users/me.json", times=1)


@pytest.mark.parametrize(
    "user",
    [{"id": None, "name": "Anonymous user", "role": "end-user"},
     {"id": 8, "name": "Pat", "role": "end-user"}],
    ids=["anonymous", "end-user"],
)
async def test_check_refuses_anonymous_and_end_users(
    scene: Scene, clock: Clock, user: dict[str, Any]
) -> None:
    """A users/me answer for the anonymous user or an end user is an AuthError."""
    async with open_desk(scene.world, clock) as desk:
        desk.fake.controls.faults.append(Fault(200, body=json.dumps({"user": user})))
        with pytest.raises(AuthError):
            await desk.connector().check(desk.ctx())


async def test_unknown_comment_author_is_looked_up_on_the_next_poll(
    scene: Scene, clock: Clock
) -> None:
    """An author no sideload named is fetched with show_many before the page is released."""
    lee = scene.world.add_user("Lee Lead", "admin")
    scene.world.add_comment(scene.ticket, author_id=lee, body="Escalating", public=False,
                            at=minutes(-7))
    scene.world.add_comment(scene.ticket, author_id=scene.kim, body="Auto: we got it",
                            public=True, at=minutes(-7), via="rule")
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        tickets = await connector.poll(None, desk.ctx())
        held = await connector.poll(tickets.cursor, desk.ctx())
        assert (held.events, held.more, held.cursor) == ((), True, tickets.cursor)
        released = await connector.poll(held.cursor, desk.ctx())
    lookups = [r for r in desk.fake.controls.requests if r.path == "/api/v2/users/show_many.json"]
    assert [r.query["ids"] for r in lookups] == [str(lee)]
    notes = {e.text: (e.actor, e.public, e.author) for e in released.events
             if e.kind is EventKind.MESSAGE}
    assert notes["Escalating"] == (Actor.AGENT, False, "Lee Lead")
    assert notes["Auto: we got it"] == (Actor.BOT, True, "Kim Agent")
    assert released.more is False
    assert released.watermark is not None


async def test_author_zendesk_cannot_name_counts_as_customer(scene: Scene, clock: Clock) -> None:
    """A comment by a user that no longer exists is a customer message after one lookup."""
    ghost = scene.world.add_user("Ghost", "agent")
    scene.world.add_comment(scene.ticket, author_id=ghost, body="Boo", public=True,
                            at=minutes(-7))
    del scene.world.users[ghost]
    async with open_desk(scene.world, clock) as desk:
        connector = desk.connector()
        events, cursor, _ = await desk.drain(connector, None)
        clock.advance(60)
        await desk.drain(connector, cursor)
    [boo] = [e for e in events if e.text == "Boo"]
    assert (boo.actor, boo.author) == (Actor.CUSTOMER, None)
    desk.fake.controls.assert_called("/api/v2/users/show_many.json", times=1)


async def test_fake_world_follows_zendesk_status_rules(clock: Clock) -> None:
    """Hold maps to on_hold, and a customer reply reopens a pending ticket."""
    world = ZendeskWorld(now=clock)
    pat = world.add_user("Pat", "end-user")
    kim = world.add_user("Kim", "agent")
    ticket = world.create_ticket(requester_id=pat, subject="s", body="b", at=minutes(-20))
    world.update(ticket, at=minutes(-19), author_id=kim, status="hold")
    world.update(ticket, at=minutes(-18), author_id=kim, status="pending")
    world.add_comment(ticket, author_id=pat, body="any news?", public=True, at=minutes(-17))
    async with open_desk(world, clock) as desk:
        events, _, _ = await desk.drain(desk.connector(), None)
    assert [summary(e) for e in events if e.kind is EventKind.STATUS] == [
        ("status", -20, Status.NEW), ("status", -19, Status.ON_HOLD),
        ("status", -18, Status.PENDING), ("status", -17, Status.OPEN),
    ]


async def test_fake_speaks_zendesk_errors(scene: Scene, clock: Clock) -> None:
    """The fake's own answers: 401 body, anonymous me, too-recent start_time, 429 + Retry-After."""
    async with open_desk(scene.world, clock, rate_limit=1) as desk:
        good = basic("ops@acme.example/token:fake-token")
        bad = basic("ops@acme.example/token:nope")
        url = desk.base_url + "/api/v2/incremental/ticket_events.json"
        async with desk.session.get(url, params={"start_time": "0"}, headers=bad) as response:
            assert (response.status, await response.json()) == (
                401, {"error": "Couldn't authenticate you"})
        async with desk.session.get(desk.base_url + "/api/v2/users/me.json") as response:
            assert (await response.json())["user"]["id"] is None
        recent = str(int(T0.timestamp()) - 30)
        async with desk.session.get(url, params={"start_time": recent}, headers=good) as response:
            assert response.status == 400
        clock.advance(60)
        async with desk.session.get(url, params={"start_time": "0"}, headers=good) as response:
            assert response.status == 200
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:01:00 GMT"
        clock.advance(15)
        async with desk.session.get(url, params={"start_time": "0"}, headers=good) as response:
            assert (response.status, response.headers["Retry-After"]) == (429, "45")


def test_sideload_types_are_plain_data() -> None:
    """Groups and users from a ticket page are small frozen records."""
    data = load("GET_api_v2_incremental_tickets_cursor.json")
    data["users"] = [{"id": 1, "name": "Kim", "role": "agent", "email": "k@example.com"}]
    data["groups"] = [{"id": 2, "name": "Billing"}]
    page = parse_ticket_page(data)
    assert page.users == (ZendeskUser(1, "Kim", "agent"),)
    assert page.groups == (ZendeskGroup(2, "Billing"),)
    with pytest.raises(AttributeError):
        page.users[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("event_type", [{"a": 1}, ["Comment"], 7], ids=["dict", "list", "int"])
def test_child_event_type_of_wrong_type_is_a_parse_error(event_type: object) -> None:
    """A child event whose type is not a string is a ParseError, never a TypeError."""
    from connectors.zendesk import parse_event_page
    from monitor.errors import ParseError

    page = {"ticket_events": [{"id": 1, "ticket_id": 2, "timestamp": 1700000000,
                               "child_events": [{"id": 3, "event_type": event_type}]}],
            "end_of_stream": True}
    with pytest.raises(ParseError, match="event_type"):
        parse_event_page(page)
