"""Provides the Intercom connector: REST API 2.x conversation search and parts as events.

**Requests.** ``POST /conversations/search`` with ``updated_at > since - 1`` (Intercom's
search has no ``>=``), sorted by ``updated_at`` ascending, ``per_page`` up to 150, paged
with ``pages.next.starting_after``; then ``GET /conversations/:id?display_as=plaintext``
for each conversation whose parts changed. A poll makes one of these requests, plus,
when a name is missing (first poll, or an admin or team id not seen before, at most
hourly), ``GET /admins``, ``GET /teams`` and (without ``app_id``) ``GET /me``. Every
request sends ``Authorization: Bearer`` and the ``Intercom-Version`` header.

**Events.** A listed conversation gives one ``update`` event when its attributes changed:
``priority`` (``priority`` -> ``high``, ``not_priority`` -> ``normal``), assignee (the
name of ``admin_assignee_id``), group (the name of ``team_assignee_id``), tags, subject
(``title``, else the opening message's subject), customer (the opening message's
author) and channel (``source.type``). The opening message (``source``) and each part
give ``message`` events: the author's ``type`` decides the actor (``user`` / ``lead`` /
``contact`` -> ``customer``, ``admin`` -> ``agent``, ``bot`` -> ``bot``; an admin
flagged ``from_ai_agent`` or ``is_ai_answer``, that is Fin, is a ``bot``); ``note``
parts are internal, ``comment`` parts public, and a state or assignment part that
carries a body (a reply sent while closing, reopening or assigning) is a public
message too. ``close`` -> ``solved``, ``open`` / ``unsnoozed`` -> ``open``, ``snoozed``
-> ``pending`` give ``status`` events, and assignment parts give ``update`` events
(assignee, or group for a team). ``statistics.count_conversation_parts`` (or
``conversation_parts.total_count``) tells whether a listed conversation has new parts
at all, so a tag or priority change costs no extra request.

**Cursor.** The cursor (JSON) holds ``since``, the walk's ``starting_after``, the walk's
start (the server's ``Date`` of its first page), the conversations whose parts are
still to read, and a memory of the most recent ``MAX_KNOWN`` conversations: their
``updated_at``, a digest of their attributes, their part count, when their parts were
last read, and the ids of the parts created within ``SKEW`` of that read. A conversation
listed again at the same ``updated_at`` costs nothing; a changed one returns only parts
created after its last read (those before were in that response) and not remembered.
A conversation seen for the first time returns its whole history (up to the 500 most
recent parts Intercom sends), so clocks start from its first message. Given back the
cursor it returned last (the same object, or an equal copy from the store), a poll starts
from the state it kept in memory; any other cursor (a restart, an older or an edited one)
is read and checked again.

**Watermark.** Intercom's search is an index that trails writes by seconds and filters
on whole seconds. A walk runs from ``since`` to the last page; the next starts at the
walk's start minus ``search_lag`` (60 s), re-reading that overlap. The watermark moves
only after a walk of a single page, to its start minus ``search_lag``: a single page is
one snapshot of the index, and the lag covers what the index had not shown yet. In a
walk of several pages a conversation updated meanwhile can be re-indexed behind the
cursor and only read by the next walk, so such a walk leaves the watermark where it was.

**Rate limits.** ``X-RateLimit-Remaining: 0`` makes the next poll raise ``RateLimited``
until ``X-RateLimit-Reset`` (epoch seconds) before it sends anything; a 429 without
``Retry-After`` waits until that reset too. Intercom's limit (10,000 calls a minute per
app, spread over 10-second windows) is far above what one poll a few seconds apart uses,
so there is no budget of our own.

**Not visible.** Intercom's API does not list deleted conversations; a conversation
deleted after it was listed (404 when its parts are read) gives a ``dismissed`` event.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import (
    DEFAULT_RETRY_AFTER,
    JsonResponse,
    epoch_reset_wait,
    get_json,
    server_second,
)
from connectors._json import (
    array,
    epoch,
    fail,
    obj,
    opt_epoch,
    opt_integer,
    opt_obj,
    opt_string,
    string,
)
from connectors._lru import remembered
from connectors._search_index import finish_round
from connectors._settings import https_address, validated
from connectors._text import TEXT_LIMIT, clip, html_to_text
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.durations import Duration
from monitor.errors import NotFound, RateLimited
from monitor.events import Actor, Event, EventKind, Status

REGIONS: Mapping[str, tuple[str, str]] = {
    "us": ("https://api.intercom.io", "https://app.intercom.com"),
    "eu": ("https://api.eu.intercom.io", "https://app.eu.intercom.com"),
    "au": ("https://api.au.intercom.io", "https://app.au.intercom.com"),
}
SEARCH_PATH = "/conversations/search"
CONVERSATION_PATH = "/conversations/{id}"
ME_PATH = "/me"
ADMINS_PATH = "/admins"
TEAMS_PATH = "/teams"

MAX_KNOWN = 500
"""Conversations the cursor remembers; the least recently seen go first."""
SKEW = timedelta(seconds=60)
"""Parts created this close to (or after) a read are remembered by id, not by time."""
DIRECTORY_REFRESH = timedelta(hours=1)
"""An unknown admin or team id makes us re-read the names at most this often."""

CUSTOMER_TYPES = frozenset({"user", "lead", "contact"})
MESSAGE_PARTS = frozenset({"comment", "note"})
"""Parts that are messages even without a body (an attachment alone)."""
STATE_PARTS: Mapping[str, Status] = {
    "close": Status.SOLVED,
    "open": Status.OPEN,
    "snoozed": Status.PENDING,
    "unsnoozed": Status.OPEN,
    "timer_unsnooze": Status.OPEN,
    "assign_and_reopen": Status.OPEN,
    "assign_and_unsnooze": Status.OPEN,
}
ASSIGNMENT_PARTS = frozenset({"assignment", "default_assignment", "away_mode_assignment",
                              "assign_and_reopen", "assign_and_unsnooze"})
BODY_PARTS = frozenset({*STATE_PARTS, *ASSIGNMENT_PARTS, "quick_reply"})
"""Parts that are a public message as well when they carry a body."""
PRIORITIES: Mapping[str, str] = {"priority": "high", "not_priority": "normal"}


class IntercomSettings(SourceSettings):
    """An Intercom workspace, read with an access token."""

    kind: Literal["intercom"] = "intercom"
    token: SecretStr
    """The app's access token; give it as ``"${INTERCOM_TOKEN}"``."""
    region: Literal["us", "eu", "au"] = "us"
    """Where the workspace is hosted: picks ``api.intercom.io``, ``api.eu.intercom.io``..."""
    base_url: str | None = None
    """Overrides the region's API address (tests and the demo use the fake)."""
    api_version: str = Field(default="2.11", pattern=r"^(\d+\.\d+|Unstable)$")
    """The ``Intercom-Version`` header sent with every request."""
    page_size: int = Field(default=50, ge=1, le=150)
    """Conversations per search page (Intercom allows 150)."""
    search_lag: Duration = 60.0
    """How far the search index may trail writes; walks overlap by this much."""
    app_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The workspace id used in web links; learned from ``/me`` when absent."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else https_address(value, "https://api.intercom.io")


# --- what the API gives us, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntercomAuthor:
    """Who wrote a message or made a change; ``name`` is untrusted text."""

    type: str
    id: str | None
    name: str | None
    ai: bool = False


@dataclass(frozen=True, slots=True)
class IntercomPart:
    """One conversation part (or the opening message); ``body`` is untrusted text."""

    id: str
    type: str
    body: str | None
    created_at: datetime
    author: IntercomAuthor | None
    assigned_to: tuple[str, str | None] | None = None
    """(type, id) of whom the part assigned the conversation to; None: no assignment."""
    delivered_as: str | None = None


@dataclass(frozen=True, slots=True)
class IntercomStatistics:
    """Intercom's own figures for a conversation (epoch instants as aware datetimes)."""

    first_contact_reply_at: datetime | None
    first_admin_reply_at: datetime | None
    last_contact_reply_at: datetime | None
    last_admin_reply_at: datetime | None
    last_close_at: datetime | None
    count_reopens: int | None
    count_conversation_parts: int | None


@dataclass(frozen=True, slots=True)
class IntercomConversation:
    """The parts of a conversation replywatch carries."""

    id: str
    created_at: datetime
    updated_at: datetime
    state: str | None
    priority: str | None
    admin_assignee_id: str | None
    team_assignee_id: str | None
    tags: tuple[str, ...]
    title: str | None
    channel: str | None
    customer: str | None
    """The opening message's author when a customer wrote it, else the first contact."""
    opening: IntercomPart | None
    subject: str | None
    parts: tuple[IntercomPart, ...] | None
    """None when the payload carries no parts (search results)."""
    parts_count: int | None
    statistics: IntercomStatistics | None
    web_url: str | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of conversation search."""

    conversations: tuple[IntercomConversation, ...]
    next_cursor: str | None
    total_count: int | None


# --- shape checks: every surprise becomes a ParseError naming the place --------------------


def _id(value: Any, where: str) -> str:
    """Intercom ids are strings, but some (admin ids) come as numbers."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail(where, "expected an id")
    text = str(value).strip()
    if not text:
        raise fail(where, "empty id")
    return text


def _opt_id(value: Any, where: str) -> str | None:
    """An optional id; Intercom says "nobody" with null, 0 or an empty string."""
    if value is None or value == "" or value == 0:
        return None
    return _id(value, where)


def _author(value: Any, where: str) -> IntercomAuthor | None:
    if value is None:
        return None
    author = obj(value, where)
    name = opt_string(author.get("name"), f"{where}.name")
    email = opt_string(author.get("email"), f"{where}.email")
    ai = any(author.get(key) is True for key in ("from_ai_agent", "is_ai_answer"))
    return IntercomAuthor(
        type=string(author.get("type"), f"{where}.type"),
        id=_opt_id(author.get("id"), f"{where}.id"),
        name=(name or "").strip() or email,
        ai=ai,
    )


def parse_part(data: Any, where: str = "intercom part") -> IntercomPart:
    """Validate one conversation part."""
    part = obj(data, where)
    assigned = part.get("assigned_to")
    assigned_to = None
    if isinstance(assigned, dict):
        assigned_to = (string(assigned.get("type"), f"{where}.assigned_to.type"),
                       _opt_id(assigned.get("id"), f"{where}.assigned_to.id"))
    elif assigned is not None:
        raise fail(f"{where}.assigned_to", "expected an object")
    return IntercomPart(
        id=_id(part.get("id"), f"{where}.id"),
        type=string(part.get("part_type"), f"{where}.part_type"),
        body=opt_string(part.get("body"), f"{where}.body"),
        created_at=epoch(part.get("created_at"), f"{where}.created_at"),
        author=_author(part.get("author"), f"{where}.author"),
        assigned_to=assigned_to,
    )


def _statistics(value: Any, where: str) -> IntercomStatistics | None:
    if value is None:
        return None
    stats = obj(value, where)

    def instant(key: str) -> datetime | None:
        return opt_epoch(stats.get(key), f"{where}.{key}")

    return IntercomStatistics(
        first_contact_reply_at=instant("first_contact_reply_at"),
        first_admin_reply_at=instant("first_admin_reply_at"),
        last_contact_reply_at=instant("last_contact_reply_at"),
        last_admin_reply_at=instant("last_admin_reply_at"),
        last_close_at=instant("last_close_at"),
        count_reopens=opt_integer(stats.get("count_reopens"), f"{where}.count_reopens"),
        count_conversation_parts=opt_integer(stats.get("count_conversation_parts"),
                                          f"{where}.count_conversation_parts"),
    )


def parse_conversation(data: Any, where: str = "intercom conversation") -> IntercomConversation:
    """Validate a conversation of search, ``GET /conversations/:id`` or a webhook's item.

    The legacy (1.x) webhook shape names the opening message ``conversation_message`` and
    the assignee ``assignee``; both are read as their 2.x counterparts.
    """
    conversation = obj(data, where)
    conversation_id = _id(conversation.get("id"), f"{where}.id")
    created_at = epoch(conversation.get("created_at"), f"{where}.created_at")
    opening_key = "source" if "source" in conversation else "conversation_message"
    raw_opening = conversation.get(opening_key)
    opening = None
    subject = None
    channel = None
    if raw_opening is not None:
        ow = f"{where}.{opening_key}"
        message = obj(raw_opening, ow)
        subject = opt_string(message.get("subject"), f"{ow}.subject")
        channel = opt_string(message.get("type"), f"{ow}.type")
        opening = IntercomPart(
            id=_opt_id(message.get("id"), f"{ow}.id") or conversation_id,
            type="source",
            body=opt_string(message.get("body"), f"{ow}.body"),
            created_at=created_at,
            author=_author(message.get("author"), f"{ow}.author"),
            delivered_as=opt_string(message.get("delivered_as"), f"{ow}.delivered_as"),
        )
    admin = conversation.get("admin_assignee_id")
    if "admin_assignee_id" not in conversation and isinstance(conversation.get("assignee"), dict):
        assignee = conversation["assignee"]
        admin = assignee.get("id") if assignee.get("type") == "admin" else None
    tags: list[str] = []
    tag_block = conversation.get("tags")
    if tag_block is not None:
        raw_tags = tag_block.get("tags") if isinstance(tag_block, dict) else tag_block
        for i, item in enumerate(array(raw_tags or [], f"{where}.tags")):
            tag = obj(item, f"{where}.tags[{i}]")
            tags.append(string(tag.get("name"), f"{where}.tags[{i}].name"))
    parts_block = opt_obj(conversation.get("conversation_parts"), f"{where}.conversation_parts")
    parts = None
    if "conversation_parts" in parts_block:
        pw = f"{where}.conversation_parts.conversation_parts"
        parts = tuple(parse_part(item, f"{pw}[{i}]")
                      for i, item in enumerate(array(parts_block["conversation_parts"], pw)))
    statistics = _statistics(conversation.get("statistics"), f"{where}.statistics")
    parts_count = opt_integer(parts_block.get("total_count"),
                           f"{where}.conversation_parts.total_count")
    if parts_count is None and statistics is not None:
        parts_count = statistics.count_conversation_parts
    priority = opt_string(conversation.get("priority"), f"{where}.priority")
    customer = None
    author = opening.author if opening is not None else None
    if author is not None and author.type in CUSTOMER_TYPES:
        customer = author.name or author.id
    elif isinstance(conversation.get("user"), dict):  # the legacy webhook shape
        user = _author({"type": "user", **conversation["user"]}, f"{where}.user")
        customer = None if user is None else user.name or user.id
    else:
        contacts = opt_obj(conversation.get("contacts"), f"{where}.contacts").get("contacts")
        first = array(contacts, f"{where}.contacts.contacts")[:1] if contacts is not None else []
        if first:
            customer = _opt_id(obj(first[0], f"{where}.contacts.contacts[0]").get("id"),
                               f"{where}.contacts.contacts[0].id")
    links = opt_obj(conversation.get("links"), f"{where}.links")
    web = opt_string(links.get("conversation_web"), f"{where}.links.conversation_web")
    return IntercomConversation(
        id=conversation_id,
        created_at=created_at,
        updated_at=epoch(conversation.get("updated_at"), f"{where}.updated_at"),
        state=opt_string(conversation.get("state"), f"{where}.state"),
        priority=PRIORITIES.get(priority) if priority is not None else None,
        admin_assignee_id=_opt_id(admin, f"{where}.admin_assignee_id"),
        team_assignee_id=_opt_id(conversation.get("team_assignee_id"),
                                 f"{where}.team_assignee_id"),
        tags=tuple(tags),
        title=opt_string(conversation.get("title"), f"{where}.title"),
        channel=channel,
        customer=customer,
        opening=opening,
        subject=subject,
        parts=parts,
        parts_count=parts_count,
        statistics=statistics,
        web_url=web if web and web.startswith(("https://", "http://")) else None,
    )


def parse_search_page(data: Any) -> SearchPage:
    """Validate one page of ``POST /conversations/search``; raise ParseError on any shape error."""
    what = "intercom conversation search"
    page = obj(data, what)
    items = array(page.get("conversations"), f"{what}: conversations")
    conversations = tuple(parse_conversation(item, f"{what}: conversations[{i}]")
                          for i, item in enumerate(items))
    pages = opt_obj(page.get("pages"), f"{what}: pages")
    following = opt_obj(pages.get("next"), f"{what}: pages.next")
    next_cursor = opt_string(following.get("starting_after"), f"{what}: pages.next.starting_after")
    return SearchPage(
        conversations=conversations,
        next_cursor=next_cursor if next_cursor and conversations else None,
        total_count=opt_integer(page.get("total_count"), f"{what}: total_count"),
    )


def parse_conversation_detail(data: Any) -> IntercomConversation:
    """Validate ``GET /conversations/:id``: a conversation that must carry its parts."""
    what = "intercom conversation"
    conversation = parse_conversation(data, what)
    if conversation.parts is None:
        raise fail(what, "conversation_parts missing")
    return conversation


def parse_directory(data: Any, key: str) -> dict[str, str]:
    """Validate ``GET /admins`` (``key="admins"``) or ``GET /teams`` into id -> name."""
    what = f"intercom {key}"
    names: dict[str, str] = {}
    for i, item in enumerate(array(obj(data, what).get(key), f"{what}: {key}")):
        entry = obj(item, f"{what}: {key}[{i}]")
        name = opt_string(entry.get("name"), f"{what}: {key}[{i}].name")
        names[_id(entry.get("id"), f"{what}: {key}[{i}].id")] = name or ""
    return names


def parse_me(data: Any) -> tuple[str, str | None, str | None]:
    """Validate ``GET /me`` into (admin name, workspace id, workspace name)."""
    what = "intercom me"
    me = obj(data, what)
    app = opt_obj(me.get("app"), f"{what}: app")
    name = (opt_string(me.get("name"), f"{what}: name")
            or opt_string(me.get("email"), f"{what}: email"))
    return (name or _id(me.get("id"), f"{what}: id"),
            opt_string(app.get("id_code"), f"{what}: app.id_code"),
            opt_string(app.get("name"), f"{what}: app.name"))


# --- records -> normalized events (pure) ---------------------------------------------------


def conversation_url(app_url: str, app_id: str | None, conversation_id: str) -> str | None:
    """The address of a conversation in Intercom's inbox (None without the workspace id)."""
    if app_id is None:
        return None
    return f"{app_url}/a/apps/{app_id}/conversations/{conversation_id}"


def _digest(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _name(table: Mapping[str, str], key: str | None) -> str | None:
    if key is None:
        return None
    return table.get(key) or key


def conversation_fields(
    conversation: IntercomConversation, admins: Mapping[str, str], teams: Mapping[str, str],
    *, html: bool = True,
) -> dict[str, Any]:
    """The attributes an ``update`` event carries."""
    subject = conversation.title or conversation.subject
    if subject is not None and html:
        subject = html_to_text(subject)
    return {
        "subject": subject or None,
        "customer": conversation.customer,
        "priority": conversation.priority,
        "assignee": _name(admins, conversation.admin_assignee_id),
        "group": _name(teams, conversation.team_assignee_id),
        "tags": list(conversation.tags),
    }


def conversation_event(
    conversation: IntercomConversation,
    *,
    source: str,
    admins: Mapping[str, str],
    teams: Mapping[str, str],
    url: str | None,
    channel: str | None = None,
    html: bool = True,
) -> Event:
    """The ``update`` event of a conversation's attributes as of its ``updated_at``."""
    fields = conversation_fields(conversation, admins, teams, html=html)
    epoch = int(conversation.updated_at.timestamp())
    return Event(
        source=source, conversation=conversation.id,
        id=f"conversation-{conversation.id}@{epoch}:{_digest(fields)}",
        at=conversation.updated_at, kind=EventKind.UPDATE, fields=fields,
        url=url or conversation.web_url, channel=channel or conversation.channel,
    )


def author_actor(author: IntercomAuthor | None, delivered_as: str | None = None) -> Actor:
    """Who wrote a message: customer, agent (an admin) or bot (Operator, Fin, automation).

    Nobody named counts as the customer: a mistaken customer can at worst start a clock,
    a mistaken agent would stop one and hide a breach.
    """
    if delivered_as == "automated":
        return Actor.BOT
    if author is None:
        return Actor.CUSTOMER
    kind = author.type.lower()
    if kind == "bot" or author.ai:
        return Actor.BOT
    if kind in ("admin", "team"):
        return Actor.AGENT
    return Actor.CUSTOMER


def part_events(
    conversation_id: str,
    part: IntercomPart,
    *,
    source: str,
    admins: Mapping[str, str],
    teams: Mapping[str, str],
    url: str | None,
    html: bool = True,
) -> tuple[Event, ...]:
    """The events of one part (or of the opening message, ``part.type == "source"``)."""
    common: dict[str, Any] = {"source": source, "conversation": conversation_id,
                              "at": part.created_at, "url": url}
    events: list[Event] = []
    if part.type in STATE_PARTS:
        events.append(Event(id=f"part-{part.id}:status", kind=EventKind.STATUS,
                            status=STATE_PARTS[part.type], **common))
    if part.type in ASSIGNMENT_PARTS and part.assigned_to is not None:
        kind, target = part.assigned_to
        fields = ({"group": _name(teams, target)} if kind == "team"
                  else {"assignee": _name(admins, target) if kind == "admin" else None})
        events.append(Event(id=f"part-{part.id}:assign", kind=EventKind.UPDATE, fields=fields,
                            **common))
    text = part.body
    if text is not None and html:
        text = html_to_text(text)
    text = text.strip() if text else None
    is_message = (part.type in MESSAGE_PARTS or part.type == "source"
                  or (part.type in BODY_PARTS and text))
    if is_message:
        event_id = (f"conversation-{conversation_id}:source" if part.type == "source"
                    else f"part-{part.id}")
        events.append(Event(
            id=event_id, kind=EventKind.MESSAGE,
            actor=author_actor(part.author, part.delivered_as),
            public=part.type != "note", author=part.author.name if part.author else None,
            text=clip(text or None, TEXT_LIMIT), **common,
        ))
    return tuple(events)


def conversation_parts(conversation: IntercomConversation) -> tuple[IntercomPart, ...]:
    """The opening message then the parts, in time order."""
    opening = (conversation.opening,) if conversation.opening is not None else ()
    parts = conversation.parts or ()
    return (*opening, *sorted(parts, key=lambda p: (p.created_at, p.id)))


# --- the cursor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Known:
    """What the cursor remembers of a conversation."""

    updated_at: int | None
    digest: str | None
    parts_count: int | None = None
    read_at: int | None = None
    """When its parts were last read (server time), None: never."""
    recent: tuple[str, ...] = ()
    """Ids of the parts returned that were created within SKEW of that read."""
    seen_at: int | None = None
    """When the search last showed it (server time): a later second means nothing since."""

    def dump(self) -> list[Any]:
        return [self.updated_at, self.digest, self.parts_count, self.read_at, list(self.recent),
                self.seen_at]

    @classmethod
    def load(cls, raw: Any) -> _Known:
        updated, digest, count, read_at, recent, seen_at = raw

        def number(value: Any) -> int | None:
            return None if value is None else int(value)

        return cls(number(updated), None if digest is None else str(digest), number(count),
                   number(read_at), tuple(str(p) for p in recent), number(seen_at))

    def current(self, updated: int) -> bool:
        """Already handled at ``updated``, and seen in a later second (so nothing came since).

        ``updated_at`` has whole seconds: a change in the very second the search showed
        the conversation would not move it, so that second is read again.
        """
        return (self.updated_at == updated and self.seen_at is not None
                and self.seen_at > updated)


@dataclass(frozen=True, slots=True)
class _State:
    """The connector's position; ``dump`` is the cursor the runner stores."""

    since: int
    after: str | None = None
    listed: bool = False
    started: int | None = None
    pages: int = 0
    todo: tuple[tuple[str, int, int | None], ...] = ()
    """(conversation id, listed updated_at, listed part count) still to read."""
    known: Mapping[str, _Known] = field(default_factory=dict)
    watermark: int | None = None

    @classmethod
    def load(cls, cursor: Cursor | None, since: int) -> _State:
        fresh = cls(since=since)
        if not cursor or cursor.get("v") != 1:
            return fresh
        try:
            state = cls(
                since=int(cursor["since"]),
                after=None if cursor["after"] is None else str(cursor["after"]),
                listed=bool(cursor["listed"]),
                started=None if cursor["started"] is None else int(cursor["started"]),
                pages=int(cursor["pages"]),
                todo=tuple((str(t[0]), int(t[1]), None if t[2] is None else int(t[2]))
                           for t in cursor["todo"]),
                known={str(k): _Known.load(v) for k, v in cursor["known"].items()},
                watermark=None if cursor["watermark"] is None else int(cursor["watermark"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return fresh
        return state

    def dump(self) -> dict[str, Any]:
        return {
            "v": 1,
            "since": self.since,
            "after": self.after,
            "listed": self.listed,
            "started": self.started,
            "pages": self.pages,
            "todo": [list(t) for t in self.todo],
            "known": {k: v.dump() for k, v in self.known.items()},
            "watermark": self.watermark,
        }

    @property
    def watermark_at(self) -> datetime | None:
        return None if self.watermark is None else datetime.fromtimestamp(self.watermark, UTC)

    def finished(self, lag: float) -> _State:
        """The state after a complete walk: the next one starts ``lag`` before this one."""
        since, watermark = finish_round(self.since, self.started, self.pages, self.watermark,
                                        lag)
        return replace(self, since=since, after=None, listed=False, started=None, pages=0,
                       watermark=watermark)


def _remember(known: Mapping[str, _Known], key: str, value: _Known) -> dict[str, _Known]:
    return remembered(known, key, value, MAX_KNOWN)


# --- the connector -----------------------------------------------------------------------


def reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch seconds), from the server's clock if given."""
    return epoch_reset_wait(headers, "X-RateLimit-Reset", now)


class IntercomConnector:
    """Polls one Intercom workspace's conversations and their parts."""

    kind: ClassVar[str] = "intercom"
    settings_model: ClassVar[type[SourceSettings]] = IntercomSettings
    cursor_reads: int
    """Cursors this instance had to read back (diagnostics: its own last one costs none)."""

    def __init__(self, settings: IntercomSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(IntercomSettings, settings)
        api, app = REGIONS[settings.region]
        self._base = settings.base_url or api
        self._app_url = app
        self._app_id = settings.app_id
        self._admins: dict[str, str] = {}
        self._teams: dict[str, str] = {}
        self._directory_at: datetime | None = None
        self._wait_until: datetime | None = None
        # The cursor this instance returned last, and the state it was dumped from.
        self._issued: tuple[Cursor, _State] | None = None
        self.cursor_reads = 0

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Read the next search page, or the parts of the next changed conversation."""
        state = self._resume(cursor, ctx)
        if state.todo:
            return await self._poll_conversation(ctx, state)
        return await self._poll_search(ctx, state)

    async def check(self, ctx: PollContext) -> str:
        """Ask ``/me`` who the token belongs to."""
        response = await self._request(ctx, "GET", ME_PATH, "intercom me")
        name, app_id, app_name = parse_me(response.data)
        self._app_id = self._app_id or app_id
        workspace = f" in {app_name}" if app_name else ""
        return f"authenticated as {name}{workspace}"

    def _resume(self, cursor: Cursor | None, ctx: PollContext) -> _State:
        """The state ``cursor`` stands for: the one in memory when it is the cursor we
        returned last (reading ``known`` back was most of a backfill's CPU), else read."""
        issued = self._issued
        if cursor is not None and issued is not None and (
                cursor is issued[0] or cursor == issued[0]):
            return issued[1]
        if cursor is not None:
            self.cursor_reads += 1
        return _State.load(cursor, int(ctx.since.timestamp()))

    # polls --------------------------------------------------------------------------

    async def _poll_search(self, ctx: PollContext, state: _State) -> Batch:
        pagination: dict[str, Any] = {"per_page": self.settings.page_size}
        if state.after is not None:
            pagination["starting_after"] = state.after
        body = {
            "query": {"field": "updated_at", "operator": ">", "value": state.since - 1},
            "sort": {"field": "updated_at", "order": "ascending"},
            "pagination": pagination,
        }
        response = await self._request(ctx, "POST", SEARCH_PATH, "intercom conversation search",
                                       body=body)
        page = parse_search_page(response.data)
        seen_at = int(self._now(ctx, response).timestamp())
        started = state.started if state.started is not None else seen_at
        await self._learn_names(ctx, page.conversations)
        events: list[Event] = []
        known = dict(state.known)
        todo = list(state.todo)
        for conversation in page.conversations:
            updated = int(conversation.updated_at.timestamp())
            memory = known.get(conversation.id)
            queued = next((t for t in todo if t[0] == conversation.id), None)
            if queued is not None and queued[1] == updated:
                continue
            if queued is None and memory is not None and memory.current(updated):
                continue  # listed again (the walks overlap) with nothing new
            event = conversation_event(
                conversation, source=self.settings.name, admins=self._admins, teams=self._teams,
                url=self._url(conversation.id), channel=self.settings.channel)
            digest = event.id.rsplit(":", 1)[-1]
            if memory is None or memory.digest != digest:
                events.append(event)
            memory = memory or _Known(None, None)
            unchanged_parts = (queued is None and conversation.parts_count is not None
                               and memory.read_at is not None
                               and memory.parts_count == conversation.parts_count)
            if unchanged_parts:  # a tag, priority or assignee change: no new parts to read
                known = _remember(known, conversation.id, replace(
                    memory, updated_at=updated, digest=digest, seen_at=seen_at))
                continue
            known = _remember(known, conversation.id,
                              replace(memory, digest=digest, seen_at=seen_at))
            job = (conversation.id, updated, conversation.parts_count)
            if queued is not None:
                todo[todo.index(queued)] = job
            else:
                todo.append(job)
        return self._batch(tuple(events), replace(
            state, after=page.next_cursor, listed=page.next_cursor is None, started=started,
            pages=state.pages + 1, todo=tuple(todo), known=known))

    async def _poll_conversation(self, ctx: PollContext, state: _State) -> Batch:
        conversation_id, updated, count = state.todo[0]
        memory = state.known.get(conversation_id) or _Known(None, None)
        try:
            response = await self._request(
                ctx, "GET", CONVERSATION_PATH.format(id=conversation_id), "intercom conversation",
                params={"display_as": "plaintext"})
        except NotFound:
            # Deleted after it was listed: its clocks are cancelled, the walk goes on.
            gone = Event(source=self.settings.name, conversation=conversation_id,
                         id=f"conversation-{conversation_id}:deleted", at=self._now(ctx, None),
                         kind=EventKind.DISMISSED, url=self._url(conversation_id))
            known = _remember(state.known, conversation_id, replace(memory, updated_at=updated))
            return self._batch((gone,), replace(state, todo=state.todo[1:], known=known))
        conversation = parse_conversation_detail(response.data)
        read_at = self._now(ctx, response)
        floor = (None if memory.read_at is None
                 else datetime.fromtimestamp(memory.read_at, UTC) - SKEW)
        events: list[Event] = []
        recent: list[str] = []
        for part in conversation_parts(conversation):
            key = "source" if part.type == "source" else part.id
            if part.created_at >= read_at - SKEW:
                recent.append(key)
            if floor is not None and part.created_at < floor:
                continue  # in the response of the previous read, returned then
            if key in memory.recent:
                continue
            events.extend(part_events(
                conversation_id, part, source=self.settings.name, admins=self._admins,
                teams=self._teams, url=self._url(conversation_id), html=False))
        remembered = replace(memory, updated_at=updated, parts_count=count,
                             read_at=int(read_at.timestamp()), recent=tuple(recent))
        known = _remember(state.known, conversation_id, remembered)
        return self._batch(tuple(events), replace(state, todo=state.todo[1:], known=known))

    def _batch(self, events: tuple[Event, ...], after: _State) -> Batch:
        """The batch for ``after``; a walk whose pages and parts are all read ends here."""
        done = after.listed and not after.todo
        if done:
            after = after.finished(self.settings.search_lag)
        cursor = after.dump()
        self._issued = (cursor, after)
        return Batch(events, cursor, after.watermark_at, more=not done)

    def _url(self, conversation_id: str) -> str | None:
        return conversation_url(self._app_url, self._app_id, conversation_id)

    async def _learn_names(
        self, ctx: PollContext, conversations: Sequence[IntercomConversation]
    ) -> None:
        """Fetch admin and team names (and the workspace id) when some are missing."""
        missing = self._app_id is None or any(
            (c.admin_assignee_id is not None and c.admin_assignee_id not in self._admins)
            or (c.team_assignee_id is not None and c.team_assignee_id not in self._teams)
            for c in conversations
        )
        if not missing or not conversations:
            return
        now = ctx.now()
        if self._directory_at is not None and now - self._directory_at < DIRECTORY_REFRESH:
            return  # names we could not learn lately are reported as ids meanwhile
        if self._app_id is None:
            _, self._app_id, _ = parse_me(
                (await self._request(ctx, "GET", ME_PATH, "intercom me")).data)
        admins = await self._request(ctx, "GET", ADMINS_PATH, "intercom admins")
        self._admins.update(parse_directory(admins.data, "admins"))
        teams = await self._request(ctx, "GET", TEAMS_PATH, "intercom teams")
        self._teams.update(parse_directory(teams.data, "teams"))
        self._directory_at = now

    # HTTP and rate limits --------------------------------------------------------------

    @staticmethod
    def _now(ctx: PollContext, response: JsonResponse | None) -> datetime:
        """Whole seconds of the server's time (its ``Date``), else of the runner's clock."""
        return server_second(response, ctx.now())

    async def _request(
        self, ctx: PollContext, method: str, path: str, what: str, *,
        params: Mapping[str, str] | None = None, body: Any = None,
    ) -> JsonResponse:
        now = ctx.now()
        if self._wait_until is not None:
            left = (self._wait_until - now).total_seconds()
            if left > 0:
                raise RateLimited(f"{what}: rate limit used up, resets in {math.ceil(left)}s",
                                  retry_after=math.ceil(left))
            self._wait_until = None
        headers = {
            "Authorization": f"Bearer {self.settings.token.get_secret_value()}",
            "Accept": "application/json",
            "Intercom-Version": self.settings.api_version,
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        response = await get_json(
            ctx.session, self._base + path, what=what, params=params, headers=headers,
            method=method, data=data, timeout=self.settings.timeout,
            wait_hint=partial(reset_wait, now=now),
        )
        remaining = response.headers.get("X-RateLimit-Remaining", "").strip()
        if remaining.isascii() and remaining.isdigit() and int(remaining) == 0:
            wait = reset_wait(response.headers, now)
            self._wait_until = now + timedelta(
                seconds=DEFAULT_RETRY_AFTER if wait is None else max(1.0, wait))
        return response
