"""Provides the Zendesk Support connector: two incremental exports turned into normalized events.

Each ``poll`` makes exactly one request, reading two streams in rounds:

1. the cursor-based incremental ticket export
   (``/api/v2/incremental/tickets/cursor.json``, ``include=users,groups``): every changed
   ticket becomes one ``update`` event carrying its subject, customer (the requester),
   priority, assignee, group, tags, channel (``via.channel``) and agent-UI URL. Its id is
   ``ticket-{id}@{updated_at epoch}``: a re-poll of an unchanged ticket repeats it, a real
   change makes a new one. A deleted ticket becomes a ``dismissed`` event. The sideloaded
   users and groups fill a bounded in-memory directory (id -> name, role).
2. the time-based incremental ticket event export
   (``/api/v2/incremental/ticket_events.json``, ``include=comment_events``): ``Create`` and
   ``Change`` child events of status (``hold`` -> ``on_hold``), priority, assignee, group and
   tags become ``status`` / ``update`` events; ``Comment`` child events become ``message``
   events (``public`` reply or internal note). Event ids are ``{audit id}:{child id}``, the
   same ids the Ticket Audits and Ticket Comments endpoints give (see ``parse_audit_page``
   and ``parse_comment_page``), so every path deduplicates against the others.

A round pages the ticket stream to its end, then the event stream to its end; ``more`` is
True until the round is complete. The cursor (a small JSON object) holds both streams'
positions, which one is next, when each last reached its end, the watermark, and the
audits of the event export's last second already returned (the time-based export starts
the next page at that second again; they are dropped so no id is returned twice).

Who wrote a comment: a comment made by a business rule (``via`` ``rule``, trigger or
automation), by Answer Bot (``answer_bot*``) or by the Zendesk system user (id -1) is
``bot``; otherwise the author's role decides (``end-user`` -> ``customer``, ``agent`` /
``admin`` -> ``agent``). An author the directory does not know is looked up with
``/api/v2/users/show_many.json`` on the next poll (the page is held in memory meanwhile and
returned with its cursor once the authors are known; a restart simply fetches it again).
An author Zendesk cannot tell us about (deleted) counts as ``customer``: a mistaken
customer can at worst start a clock, while a mistaken agent would stop one and hide a
breach.

Watermark: Zendesk's incremental exports leave out whatever changed in the minute before
the request ("Using the Incremental Exports API", developer.zendesk.com). When a stream
reports ``end_of_stream`` it has therefore shown everything up to the server's time
(``Date`` header, else ``ctx.now()``) minus 60 s. The watermark is the earlier of the two
streams' latest such instants and never moves backwards.

Rate limit: the incremental exports allow ``requests_per_minute`` requests (10, or 30 with
the High Volume add-on). An in-memory sliding window per connector refuses the request
that would exceed it with ``RateLimited`` before sending it; a real 429 is mapped by
``connectors._http.get_json`` honouring ``Retry-After``.

A stored cursor this version cannot read is treated as no cursor (start again at
``ctx.since``): every event id is stable, so re-reading only repeats known events.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, basic_auth, get_json
from connectors._json import (
    array,
    boolean,
    epoch,
    fail,
    instant,
    integer,
    obj,
    opt_array,
    opt_integer,
    opt_string,
    string,
)
from connectors._limits import RequestWindow
from connectors._lru import remember
from connectors._settings import https_address, validated
from connectors._text import clip
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.errors import AuthError
from monitor.events import Actor, Event, EventKind, Priority, Status

TICKETS_PATH = "/api/v2/incremental/tickets/cursor.json"
EVENTS_PATH = "/api/v2/incremental/ticket_events.json"
ME_PATH = "/api/v2/users/me.json"
SHOW_MANY_PATH = "/api/v2/users/show_many.json"

EXCLUDED_SECONDS = 60
"""Zendesk's exports leave out changes made in the minute before the request."""
SHOW_MANY_LIMIT = 100
"""Most ids ``users/show_many`` accepts in one request."""
MAX_USERS = 20_000
MAX_GROUPS = 5_000
SYSTEM_USER_ID = -1
"""The author id Zendesk gives to comments the system itself wrote."""

STATUSES: Mapping[str, Status] = {
    "new": Status.NEW,
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "hold": Status.ON_HOLD,
    "solved": Status.SOLVED,
    "closed": Status.CLOSED,
}
PRIORITIES = frozenset(p.value for p in Priority)
TRACKED_FIELDS = ("status", "priority", "assignee_id", "group_id", "tags")
"""Ticket fields whose changes become events; the rest (subject, type...) are ignored."""
BOT_CHANNELS = frozenset({"rule", "trigger", "automation", "system"})
COMMENT_TYPES = frozenset({"Comment", "VoiceComment"})
CHANGE_TYPES = frozenset({"Create", "Change"})

Stream = Literal["tickets", "events"]


class ZendeskSettings(SourceSettings):
    """A Zendesk Support source, authenticated with an API token."""

    kind: Literal["zendesk"] = "zendesk"
    subdomain: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
    """The account's subdomain: ``acme`` for ``https://acme.zendesk.com``."""
    email: str = Field(min_length=3)
    """The email address of the admin the API token belongs to."""
    token: SecretStr
    """The API token; give it as ``"${ZENDESK_TOKEN}"``."""
    base_url: str | None = None
    """Overrides ``https://{subdomain}.zendesk.com`` (tests and the demo use the fake)."""
    requests_per_minute: int = Field(default=10, ge=1, le=1000)
    """The incremental exports' limit: 10 a minute, 30 with the High Volume add-on."""
    page_size: int | None = Field(default=None, ge=1, le=1000)
    """Tickets per page of the ticket export (``per_page``); Zendesk's default is 1000."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else https_address(value, "https://acme.zendesk.com")


# --- what the API gives us, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZendeskUser:
    """A user from a sideload or a lookup; ``name`` is untrusted text."""

    id: int
    name: str | None
    role: str


@dataclass(frozen=True, slots=True)
class ZendeskGroup:
    """A group from the ticket export's sideload."""

    id: int
    name: str | None


@dataclass(frozen=True, slots=True)
class ZendeskTicket:
    """The parts of a ticket's current state that replywatch carries."""

    id: int
    updated_at: datetime
    status: str
    subject: str | None
    requester_id: int | None
    assignee_id: int | None
    group_id: int | None
    priority: str | None
    tags: tuple[str, ...]
    channel: str | None


@dataclass(frozen=True, slots=True)
class TicketPage:
    """One page of the cursor-based incremental ticket export."""

    tickets: tuple[ZendeskTicket, ...]
    users: tuple[ZendeskUser, ...]
    groups: tuple[ZendeskGroup, ...]
    after_cursor: str | None
    end_of_stream: bool


FieldValue = str | int | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A tracked ticket field set (``Create``) or changed (``Change``) by one audit."""

    audit_id: int
    child_id: int
    ticket_id: int
    at: datetime
    field: str
    value: FieldValue


@dataclass(frozen=True, slots=True)
class CommentAdded:
    """A comment added by one audit; ``body`` is untrusted text."""

    audit_id: int
    child_id: int
    ticket_id: int
    at: datetime
    author_id: int | None
    body: str | None
    public: bool
    via: str | None


Record = FieldChange | CommentAdded


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of ticket history: the event export, the audits or the comments endpoint.

    ``end_time`` is where the next time-based page starts (the export's ``end_time``, else
    the page's latest timestamp); ``end_of_stream`` is True when nothing more is waiting.
    ``boundary`` lists the audits stamped exactly ``end_time``: the next page starts at
    that second again, and these are the ones it will repeat.
    """

    records: tuple[Record, ...]
    end_time: int | None
    end_of_stream: bool
    next_page: str | None = None
    count: int | None = None
    boundary: tuple[int, ...] = ()


# --- shape checks: every surprise becomes a ParseError naming the place --------------------


def _id_value(value: Any, where: str) -> int | None:
    """An id that audits may spell as a string (``"235323"``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.lstrip("-").isdigit():
            return int(text)
        raise fail(where, "expected an id")
    return opt_integer(value, where)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    return tuple(string(item, f"{where}[{i}]") for i, item in enumerate(opt_array(value, where)))


def _via(value: Any, where: str) -> str | None:
    """A via as a lower-case channel: ``{"channel": "web"}`` or the export's ``"Web form"``."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower().replace(" ", "_") or None
    channel = obj(value, where).get("channel")
    if channel is None:
        return None
    if isinstance(channel, str):
        return channel.strip().lower() or None
    raise fail(f"{where}.channel", "expected a string")


def _user(value: Any, where: str) -> ZendeskUser:
    data = obj(value, where)
    return ZendeskUser(
        id=integer(data.get("id"), f"{where}.id"),
        name=opt_string(data.get("name"), f"{where}.name"),
        role=string(data.get("role"), f"{where}.role"),
    )


def _users(value: Any, where: str) -> tuple[ZendeskUser, ...]:
    return tuple(_user(item, f"{where}[{i}]") for i, item in enumerate(opt_array(value, where)))


# --- parsers -------------------------------------------------------------------------------


def parse_ticket_page(data: Any) -> TicketPage:
    """Validate one page of the cursor-based ticket export; raise ParseError on any shape error."""
    what = "zendesk ticket export"
    page = obj(data, what)
    tickets = []
    for i, item in enumerate(array(page.get("tickets"), f"{what}: tickets")):
        where = f"{what}: tickets[{i}]"
        ticket = obj(item, where)
        priority = opt_string(ticket.get("priority"), f"{where}.priority")
        tickets.append(ZendeskTicket(
            id=integer(ticket.get("id"), f"{where}.id"),
            updated_at=instant(ticket.get("updated_at"), f"{where}.updated_at"),
            status=string(ticket.get("status"), f"{where}.status"),
            subject=opt_string(ticket.get("subject"), f"{where}.subject"),
            requester_id=opt_integer(ticket.get("requester_id"), f"{where}.requester_id"),
            assignee_id=opt_integer(ticket.get("assignee_id"), f"{where}.assignee_id"),
            group_id=opt_integer(ticket.get("group_id"), f"{where}.group_id"),
            priority=priority if priority in PRIORITIES else None,
            tags=_strings(ticket.get("tags"), f"{where}.tags"),
            channel=_via(ticket.get("via"), f"{where}.via"),
        ))
    groups = []
    raw_groups = page.get("groups")
    if raw_groups is not None:
        for i, item in enumerate(array(raw_groups, f"{what}: groups")):
            group = obj(item, f"{what}: groups[{i}]")
            groups.append(ZendeskGroup(
                id=integer(group.get("id"), f"{what}: groups[{i}].id"),
                name=opt_string(group.get("name"), f"{what}: groups[{i}].name"),
            ))
    end_of_stream = boolean(page.get("end_of_stream"), f"{what}: end_of_stream")
    after_cursor = opt_string(page.get("after_cursor"), f"{what}: after_cursor")
    if not end_of_stream and not after_cursor:
        raise fail(what, "more pages announced but no after_cursor")
    return TicketPage(
        tickets=tuple(tickets),
        users=_users(page.get("users"), f"{what}: users"),
        groups=tuple(groups),
        after_cursor=after_cursor,
        end_of_stream=end_of_stream,
    )


def _tracked_change(child: Mapping[str, Any], where: str) -> tuple[str, FieldValue] | None:
    """The tracked field a Create/Change child sets, in either of Zendesk's two spellings."""
    if "field_name" in child:  # the Ticket Audits spelling: field_name + value
        name = string(child["field_name"], f"{where}.field_name")
        if name not in TRACKED_FIELDS:
            return None
        return name, _field_value(name, child.get("value"), f"{where}.value")
    for name in TRACKED_FIELDS:  # the export spelling: the field itself is the key
        if name in child:
            return name, _field_value(name, child[name], f"{where}.{name}")
    return None


_TEXT_FIELDS = frozenset(TRACKED_FIELDS) - {"assignee_id", "group_id", "tags"}
"""The tracked fields whose value is a string or null (see :func:`_field_value`)."""


def _field_value(name: str, value: Any, where: str) -> FieldValue:
    if name in ("assignee_id", "group_id"):
        return _id_value(value, where)
    if name == "tags":
        if isinstance(value, str):  # audits may give tags as one space-separated string
            return tuple(value.split())
        return _strings(value, where)
    return opt_string(value, where)


def _records(
    audit_id: int,
    ticket_id: int,
    at: datetime,
    audit_author: int | None,
    audit_via: str | None,
    children: list[Any],
    where: str,
    type_key: str,
) -> list[Record]:
    # Every event of a page passes here: the common shapes are checked inline, and only
    # an unusual value goes through the checking helper (which names the place in error).
    records: list[Record] = []
    for j, item in enumerate(children):
        child = item if type(item) is dict else obj(item, f"{where}[{j}]")
        kind = child[type_key] if type_key in child else child.get("type")
        if kind is not None and type(kind) is not str:
            kind = opt_string(kind, f"{where}[{j}].{type_key}")
        if kind in COMMENT_TYPES:
            author = child.get("author_id", audit_author)
            if author is not None and type(author) is not int:
                author = opt_integer(author, f"{where}[{j}].author_id")
            via = _via(child.get("via"), f"{where}[{j}].via") if "via" in child else audit_via
            created = child.get("created_at")
            child_id = child.get("id")
            if type(child_id) is not int:
                child_id = integer(child_id, f"{where}[{j}].id")
            body = child.get("body")
            if body is not None and type(body) is not str:
                body = string(body, f"{where}[{j}].body")
            public = child.get("public")
            if type(public) is not bool:
                public = boolean(public, f"{where}[{j}].public")
            records.append(CommentAdded(
                audit_id,
                child_id,
                ticket_id,
                at if created is None else instant(created, f"{where}[{j}].created_at"),
                author,
                body,
                public,
                via,
            ))
        elif kind in CHANGE_TYPES:
            name = child.get("field_name")
            value = child.get("value")
            if type(name) is str and (name not in TRACKED_FIELDS or (
                name in _TEXT_FIELDS and (value is None or type(value) is str)
            )):
                change = (name, value) if name in TRACKED_FIELDS else None
            else:
                change = _tracked_change(child, f"{where}[{j}]")
            if change is not None:
                child_id = child.get("id")
                if type(child_id) is not int:
                    child_id = integer(child_id, f"{where}[{j}].id")
                records.append(FieldChange(audit_id, child_id, ticket_id, at, *change))
    return records


def parse_event_page(data: Any) -> EventPage:
    """Validate one page of the ticket event export; raise ParseError on any shape error."""
    what = "zendesk ticket event export"
    page = obj(data, what)
    records: list[Record] = []
    stamps: list[tuple[int, int]] = []
    # As in _records, the common shapes are checked inline, the place named only in error.
    epochs: dict[int, datetime] = {}  # audits of one page share their seconds
    for i, item in enumerate(array(page.get("ticket_events"), f"{what}: ticket_events")):
        event = item if type(item) is dict else obj(item, f"{what}: ticket_events[{i}]")
        timestamp = event.get("timestamp")
        if type(timestamp) is int and timestamp in epochs:
            at = epochs[timestamp]
        elif "timestamp" in event:
            timestamp = integer(timestamp, f"{what}: ticket_events[{i}].timestamp")
            at = epochs[timestamp] = epoch(timestamp, f"{what}: ticket_events[{i}].timestamp")
        else:
            at = instant(event.get("created_at"), f"{what}: ticket_events[{i}].created_at")
            timestamp = int(at.timestamp())
        audit_id = event.get("id")
        if type(audit_id) is not int:
            audit_id = integer(audit_id, f"{what}: ticket_events[{i}].id")
        ticket_id = event.get("ticket_id")
        if type(ticket_id) is not int:
            ticket_id = integer(ticket_id, f"{what}: ticket_events[{i}].ticket_id")
        author = event.get("updater_id")
        if author is not None and type(author) is not int:
            author = opt_integer(author, f"{what}: ticket_events[{i}].updater_id")
        via = event.get("via")
        channel = via.get("channel") if type(via) is dict else None
        if type(channel) is str:
            via = channel.strip().lower() or None
        elif via is not None:
            via = _via(via, f"{what}: ticket_events[{i}].via")
        children = event.get("child_events", [])
        if type(children) is not list:
            children = array(children, f"{what}: ticket_events[{i}].child_events")
        stamps.append((timestamp, audit_id))
        records.extend(_records(
            audit_id=audit_id,
            ticket_id=ticket_id,
            at=at,
            audit_author=author,
            audit_via=via,
            children=children,
            where=f"{what}: ticket_events[{i}].child_events",
            type_key="event_type",
        ))
    end_time = opt_integer(page.get("end_time"), f"{what}: end_time")
    if end_time is None:
        end_time = max((stamp for stamp, _ in stamps), default=None)
    return EventPage(
        records=tuple(records),
        end_time=end_time,
        end_of_stream=boolean(page.get("end_of_stream"), f"{what}: end_of_stream"),
        next_page=opt_string(page.get("next_page"), f"{what}: next_page"),
        count=opt_integer(page.get("count"), f"{what}: count"),
        boundary=tuple(audit for stamp, audit in stamps if stamp == end_time),
    )


def parse_audit_page(data: Any) -> EventPage:
    """Validate one page of the Ticket Audits endpoint into the same records as the export."""
    what = "zendesk ticket audits"
    page = obj(data, what)
    records: list[Record] = []
    latest: int | None = None
    for i, item in enumerate(array(page.get("audits"), f"{what}: audits")):
        where = f"{what}: audits[{i}]"
        audit = obj(item, where)
        at = instant(audit.get("created_at"), f"{where}.created_at")
        latest = int(at.timestamp()) if latest is None else max(latest, int(at.timestamp()))
        records.extend(_records(
            audit_id=integer(audit.get("id"), f"{where}.id"),
            ticket_id=integer(audit.get("ticket_id"), f"{where}.ticket_id"),
            at=at,
            audit_author=opt_integer(audit.get("author_id"), f"{where}.author_id"),
            audit_via=_via(audit.get("via"), f"{where}.via"),
            children=array(audit.get("events", []), f"{where}.events"),
            where=f"{where}.events",
            type_key="type",
        ))
    next_page = opt_string(page.get("next_page"), f"{what}: next_page")
    return EventPage(tuple(records), latest, next_page is None, next_page,
                     opt_integer(page.get("count"), f"{what}: count"))


def parse_comment_page(data: Any, *, ticket_id: int) -> EventPage:
    """Validate one page of a ticket's comments (``/api/v2/tickets/{id}/comments``)."""
    what = "zendesk ticket comments"
    page = obj(data, what)
    records: list[Record] = []
    for i, item in enumerate(array(page.get("comments"), f"{what}: comments")):
        where = f"{what}: comments[{i}]"
        comment = obj(item, where)
        records.append(CommentAdded(
            audit_id=integer(comment.get("audit_id"), f"{where}.audit_id"),
            child_id=integer(comment.get("id"), f"{where}.id"),
            ticket_id=ticket_id,
            at=instant(comment.get("created_at"), f"{where}.created_at"),
            author_id=opt_integer(comment.get("author_id"), f"{where}.author_id"),
            body=opt_string(comment.get("body"), f"{where}.body"),
            public=boolean(comment.get("public"), f"{where}.public"),
            via=_via(comment.get("via"), f"{where}.via"),
        ))
    latest = max((int(r.at.timestamp()) for r in records), default=None)
    next_page = opt_string(page.get("next_page"), f"{what}: next_page")
    return EventPage(tuple(records), latest, next_page is None, next_page,
                     opt_integer(page.get("count"), f"{what}: count"))


def parse_users(data: Any) -> tuple[ZendeskUser, ...]:
    """Validate a ``{"users": [...]}`` answer (``users/show_many``)."""
    what = "zendesk users"
    return _users(array(obj(data, what).get("users"), f"{what}: users"), f"{what}: users")


def parse_me(data: Any) -> ZendeskUser | None:
    """Validate a ``users/me`` answer; None when Zendesk answered as the anonymous user."""
    what = "zendesk users/me"
    user = obj(obj(data, what).get("user"), f"{what}: user")
    if user.get("id") is None:
        return None
    return _user(user, f"{what}: user")


# --- records -> normalized events (pure) ---------------------------------------------------


def ticket_url(subdomain: str, ticket_id: int) -> str:
    """The agent-UI address of a ticket: what a lead opens from the board."""
    return f"https://{subdomain}.zendesk.com/agent/tickets/{ticket_id}"


def _is_bot_channel(via: str | None) -> bool:
    return via is not None and (via in BOT_CHANNELS or via.startswith("answer_bot"))


def comment_actor(comment: CommentAdded, users: Mapping[int, ZendeskUser]) -> Actor:
    """Who wrote a comment: bot by its via or the system user, else by the author's role."""
    if _is_bot_channel(comment.via) or comment.author_id == SYSTEM_USER_ID:
        return Actor.BOT
    user = users.get(comment.author_id) if comment.author_id is not None else None
    if user is not None and user.role in ("agent", "admin"):
        return Actor.AGENT
    return Actor.CUSTOMER


def unknown_authors(records: Iterable[Record], users: Mapping[int, ZendeskUser]) -> frozenset[int]:
    """Comment authors whose role decides the actor but who are not in ``users``."""
    return frozenset(
        r.author_id for r in records
        if isinstance(r, CommentAdded) and r.author_id is not None and r.author_id > 0
        and r.author_id not in users and not _is_bot_channel(r.via)
    )


def _user_name(user_id: int | None, users: Mapping[int, ZendeskUser]) -> str | None:
    if user_id is None:
        return None
    user = users.get(user_id)
    return user.name if user is not None and user.name else str(user_id)


def _group_name(group_id: int | None, groups: Mapping[int, str]) -> str | None:
    if group_id is None:
        return None
    return groups.get(group_id) or str(group_id)


def ticket_event(
    ticket: ZendeskTicket,
    *,
    source: str,
    subdomain: str,
    users: Mapping[int, ZendeskUser],
    groups: Mapping[int, str],
    channel: str | None = None,
) -> Event:
    """The event of one ticket state: an ``update`` of its attributes, or ``dismissed``.

    Names come from ``users`` / ``groups`` where known, else the id as text.
    """
    epoch = int(ticket.updated_at.timestamp())
    common: dict[str, Any] = {
        "source": source,
        "conversation": str(ticket.id),
        "at": ticket.updated_at,
        "url": ticket_url(subdomain, ticket.id),
        "channel": channel or ticket.channel,
    }
    if ticket.status == "deleted":
        return Event(id=f"ticket-{ticket.id}@{epoch}:deleted", kind=EventKind.DISMISSED, **common)
    fields = {
        "subject": ticket.subject,
        "customer": _user_name(ticket.requester_id, users),
        "priority": ticket.priority,
        "assignee": _user_name(ticket.assignee_id, users),
        "group": _group_name(ticket.group_id, groups),
        "tags": list(ticket.tags),
    }
    return Event(id=f"ticket-{ticket.id}@{epoch}", kind=EventKind.UPDATE, fields=fields, **common)


def record_events(
    records: Iterable[Record],
    *,
    source: str,
    subdomain: str,
    users: Mapping[int, ZendeskUser],
    groups: Mapping[int, str],
) -> tuple[Event, ...]:
    """The events of audit records: ``message`` per comment, ``status`` / ``update`` per change."""
    events: list[Event] = []
    tickets: dict[int, tuple[str, str]] = {}  # a page holds several events per ticket
    for record in records:
        ticket = tickets.get(record.ticket_id)
        if ticket is None:
            ticket = (str(record.ticket_id), ticket_url(subdomain, record.ticket_id))
            tickets[record.ticket_id] = ticket
        conversation, url = ticket
        event_id = f"{record.audit_id}:{record.child_id}"
        if isinstance(record, CommentAdded):
            actor = comment_actor(record, users)
            author = users.get(record.author_id) if record.author_id is not None else None
            events.append(Event(
                source=source, conversation=conversation, id=event_id, at=record.at,
                kind=EventKind.MESSAGE, actor=actor, public=record.public,
                author=author.name if author is not None else None,
                text=clip(record.body), url=url,
            ))
        elif record.field == "status":
            status = STATUSES.get(record.value) if isinstance(record.value, str) else None
            if status is not None:  # custom or unknown statuses say nothing about SLAs
                events.append(Event(
                    source=source, conversation=conversation, id=event_id, at=record.at,
                    kind=EventKind.STATUS, status=status, url=url,
                ))
        else:
            events.append(Event(
                source=source, conversation=conversation, id=event_id, at=record.at,
                kind=EventKind.UPDATE, fields=_update_fields(record, users, groups), url=url,
            ))
    return tuple(events)


def _update_fields(
    change: FieldChange, users: Mapping[int, ZendeskUser], groups: Mapping[int, str]
) -> dict[str, Any]:
    value = change.value
    if change.field == "assignee_id":
        return {"assignee": _user_name(value if isinstance(value, int) else None, users)}
    if change.field == "group_id":
        return {"group": _group_name(value if isinstance(value, int) else None, groups)}
    if change.field == "tags":
        return {"tags": list(value) if isinstance(value, tuple) else []}
    return {"priority": value if value in PRIORITIES else None}


# --- the cursor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Position:
    """Where both streams stand; its ``dump`` is the cursor the runner stores."""

    next: Stream
    ticket_cursor: str | None
    ticket_start: int
    event_start: int
    tickets_end: int | None = None
    events_end: int | None = None
    watermark: int | None = None
    event_seen: tuple[int, ...] = ()
    """Audits of the second ``event_start`` already returned (the export repeats them)."""

    @classmethod
    def load(cls, cursor: Cursor | None, start: int) -> _Position:
        fresh = cls(next="tickets", ticket_cursor=None, ticket_start=start, event_start=start)
        if not cursor:
            return fresh
        try:
            tickets = cursor["tickets"]
            events = cursor["events"]
            position = cls(
                next=cursor["next"],
                ticket_cursor=tickets.get("cursor"),
                ticket_start=tickets["start_time"],
                event_start=events["start_time"],
                tickets_end=tickets.get("end"),
                events_end=events.get("end"),
                watermark=cursor.get("watermark"),
                event_seen=tuple(events.get("seen", ())),
            )
        except (KeyError, TypeError, AttributeError):
            return fresh
        ints = (position.ticket_start, position.event_start)
        optional = (position.tickets_end, position.events_end, position.watermark)
        if (
            position.next not in ("tickets", "events")
            or not all(type(v) is int for v in ints)
            or not all(v is None or type(v) is int for v in optional)
            or not all(type(v) is int for v in position.event_seen)
            or not (position.ticket_cursor is None or isinstance(position.ticket_cursor, str))
        ):
            return fresh
        return position

    def dump(self) -> dict[str, Any]:
        tickets: dict[str, Any] = {"start_time": self.ticket_start, "end": self.tickets_end}
        if self.ticket_cursor is not None:
            tickets["cursor"] = self.ticket_cursor
        return {
            "next": self.next,
            "tickets": tickets,
            "events": {"start_time": self.event_start, "end": self.events_end,
                       "seen": list(self.event_seen)},
            "watermark": self.watermark,
        }

    def settled(self) -> _Position:
        """The same position with the watermark both streams' ends now allow."""
        if self.tickets_end is None or self.events_end is None:
            return self
        both = min(self.tickets_end, self.events_end)
        if self.watermark is not None:
            both = max(both, self.watermark)
        return replace(self, watermark=both)

    @property
    def watermark_at(self) -> datetime | None:
        return None if self.watermark is None else datetime.fromtimestamp(self.watermark, UTC)


@dataclass(frozen=True, slots=True)
class _HeldPage:
    """An event page waiting for its unknown authors to be looked up."""

    fetched_from: _Position
    leads_to: _Position
    page: EventPage
    ids: tuple[int, ...]
    more: bool


# --- the connector -----------------------------------------------------------------------


class ZendeskConnector:
    """Polls one Zendesk Support account through its incremental exports."""

    kind: ClassVar[str] = "zendesk"
    settings_model: ClassVar[type[SourceSettings]] = ZendeskSettings

    def __init__(self, settings: ZendeskSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(ZendeskSettings, settings)
        self._base = settings.base_url or f"https://{settings.subdomain}.zendesk.com"
        self._headers = {
            "Accept": "application/json",
            "Authorization": basic_auth(f"{settings.email}/token",
                                        settings.token.get_secret_value()),
        }
        self._window = RequestWindow(settings.requests_per_minute)
        self._users: OrderedDict[int, ZendeskUser] = OrderedDict()
        self._groups: OrderedDict[int, str] = OrderedDict()
        self._unresolvable: OrderedDict[int, None] = OrderedDict()
        self._held: _HeldPage | None = None

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Fetch the next page of one stream; see the module docstring for the round."""
        now = int(ctx.now().timestamp())
        start = min(int(ctx.since.timestamp()), now - EXCLUDED_SECONDS - 1)
        position = _Position.load(cursor, start)
        if self._held is not None:
            if self._held.fetched_from == position:
                return await self._resolve_held(ctx, self._held)
            self._held = None  # the runner moved on (or restarted): the page is refetched
        if position.next == "tickets":
            return await self._poll_tickets(ctx, position)
        return await self._poll_events(ctx, position)

    async def check(self, ctx: PollContext) -> str:
        """Ask ``users/me`` who the credentials belong to; anonymous or end-user is AuthError."""
        response = await self._get(ctx, ME_PATH, {}, "zendesk users/me")
        user = parse_me(response.data)
        if user is None:
            raise AuthError("zendesk users/me: credentials not accepted (answered as anonymous)")
        name = user.name or str(user.id)
        if user.role == "end-user":
            raise AuthError(f"zendesk users/me: {name} is an end user; the exports need an admin")
        note = "" if user.role == "admin" else "; the incremental exports need an admin"
        return f"authenticated as {name} ({user.role}){note}"

    async def _get(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str
    ) -> JsonResponse:
        return await get_json(
            ctx.session, self._base + path, what=what, params=params, headers=self._headers,
            timeout=self.settings.timeout,
        )

    async def _export(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str
    ) -> tuple[JsonResponse, int]:
        """One export request within our budget; also returns the exports' horizon (epoch)."""
        now = ctx.now()
        self._window.admit(what, now)
        response = await self._get(ctx, path, params, what)
        server_time = response.server_time or now
        return response, int(server_time.timestamp()) - EXCLUDED_SECONDS

    async def _poll_tickets(self, ctx: PollContext, position: _Position) -> Batch:
        params = {"include": "users,groups"}
        if position.ticket_cursor:
            params["cursor"] = position.ticket_cursor
        else:
            params["start_time"] = str(position.ticket_start)
        if self.settings.page_size:
            params["per_page"] = str(self.settings.page_size)
        response, horizon = await self._export(ctx, TICKETS_PATH, params, "zendesk ticket export")
        page = parse_ticket_page(response.data)
        for user in page.users:
            remember(self._users, user.id, user, MAX_USERS)
            self._unresolvable.pop(user.id, None)
        for group in page.groups:
            if group.name:
                remember(self._groups, group.id, group.name, MAX_GROUPS)
        events = tuple(
            ticket_event(t, source=self.settings.name, subdomain=self.settings.subdomain,
                         users=self._users, groups=self._groups, channel=self.settings.channel)
            for t in page.tickets
        )
        after = replace(position, ticket_cursor=page.after_cursor or position.ticket_cursor)
        if page.end_of_stream:
            after = replace(after, next="events", tickets_end=horizon).settled()
        return Batch(events, after.dump(), after.watermark_at, more=True)

    async def _poll_events(self, ctx: PollContext, position: _Position) -> Batch:
        params = {"start_time": str(position.event_start), "include": "comment_events"}
        response, horizon = await self._export(
            ctx, EVENTS_PATH, params, "zendesk ticket event export"
        )
        page = parse_event_page(response.data)
        start = position.event_start
        if not page.end_of_stream and (page.end_time is None or page.end_time <= start):
            raise fail("zendesk ticket event export", f"page did not advance past {start}")
        end_time = start if page.end_time is None else max(start, page.end_time)
        # The next page starts at end_time again; remember that second's audits so that
        # what the export repeats is not returned twice (the contract: no duplicate ids).
        seen = page.boundary if end_time > start else (*position.event_seen, *page.boundary)
        after = replace(position, event_start=end_time, event_seen=tuple(dict.fromkeys(seen)))
        if page.end_of_stream:
            after, more = replace(after, next="tickets", events_end=horizon).settled(), False
        else:
            more = True
        if position.event_seen:
            page = replace(page, records=tuple(
                r for r in page.records if r.audit_id not in position.event_seen))
        unknown = [
            user_id for user_id in unknown_authors(page.records, self._users)
            if user_id not in self._unresolvable
        ]
        if unknown:
            self._held = _HeldPage(position, after, page, tuple(sorted(unknown)), more)
            return Batch((), position.dump(), position.watermark_at, more=True)
        return self._release(page, after, more)

    async def _resolve_held(self, ctx: PollContext, held: _HeldPage) -> Batch:
        asked = held.ids[:SHOW_MANY_LIMIT]
        response = await self._get(
            ctx, SHOW_MANY_PATH, {"ids": ",".join(map(str, asked))}, "zendesk users/show_many"
        )
        for user in parse_users(response.data):
            remember(self._users, user.id, user, MAX_USERS)
        for user_id in asked:
            if user_id not in self._users:
                remember(self._unresolvable, user_id, None, MAX_USERS)
        rest = held.ids[SHOW_MANY_LIMIT:]
        if rest:
            self._held = replace(held, ids=rest)
            return Batch((), held.fetched_from.dump(), held.fetched_from.watermark_at, more=True)
        self._held = None
        return self._release(held.page, held.leads_to, held.more)

    def _release(self, page: EventPage, after: _Position, more: bool) -> Batch:
        events = record_events(page.records, source=self.settings.name,
                               subdomain=self.settings.subdomain,
                               users=self._users, groups=self._groups)
        return Batch(events, after.dump(), after.watermark_at, more=more)

