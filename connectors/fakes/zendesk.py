"""Provides a faithful fake of Zendesk Support: incremental exports, users, auth, rate limits.

Served routes (with and without ``.json``, as Zendesk accepts both):

- ``GET /api/v2/incremental/tickets/cursor.json``: the cursor-based ticket export;
  ``start_time`` or ``cursor``, ``per_page`` (at most 1000), ``include=users,groups``;
  pages carry ``after_cursor`` / ``after_url`` / ``end_of_stream``. Tickets are ordered by
  ``generated_timestamp`` then id, so a changed ticket comes again after the cursor.
- ``GET /api/v2/incremental/ticket_events.json``: the time-based ticket event export;
  ``start_time``, ``include=comment_events``; pages carry ``next_page`` / ``end_time`` /
  ``end_of_stream`` / ``count``. A page never splits one second's events, and a page
  that is not the last always ends later than it starts, so paging (each page starts at
  the previous ``end_time``, repeating that second) always makes progress.
- ``GET /api/v2/users/me.json`` (the anonymous user when no credentials are sent) and
  ``GET /api/v2/users/show_many.json?ids=…`` (at most 100 ids; unknown ids are left out).

Like Zendesk, both exports leave out whatever changed in the minute before the request
(so ``end_time`` is never later than now - 60 s), refuse a ``start_time`` less than a
minute old, allow ``rate_limit`` requests a minute between them (then 429 with
``Retry-After``), and answer bad credentials with 401 ``{"error": "Couldn't authenticate
you"}``. Every response carries a ``Date`` header from the world's clock. Scripted faults
come from ``controls`` (``connectors.fakes._base``).

The world follows Zendesk's own rules where they matter to SLAs: a new ticket is ``new``,
assigning it opens it, and a public end-user comment reopens a ``pending`` or ``solved``
ticket. Every change is one audit (ticket event) with its child events.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

from aiohttp import web

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    SteppedClock,
    entry,
    fake_app,
    iso_seconds,
    whole_seconds,
)

Role = Literal["end-user", "agent", "admin"]

EXCLUDED_SECONDS = 60
WINDOW_SECONDS = 60
MAX_PAGE = 1000
SHOW_MANY_LIMIT = 100
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
ROLES = ("end-user", "agent", "admin")
VIA_NAMES = {
    "web": "Web form", "email": "Mail", "api": "API", "rule": "Rule", "chat": "Chat",
    "answer_bot": "Answer Bot", "web_widget": "Web Widget", "mobile_sdk": "Mobile SDK",
    "voice": "Voice", "sms": "Text",
}
"""How the ticket event export spells a via channel (it gives a name, not an object)."""
_CURSOR = re.compile(r"(\d+)\.0\|\|(-?\d+)\|")


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


@dataclass
class _User:
    id: int
    name: str
    role: Role
    email: str | None
    created_at: datetime


@dataclass
class _Ticket:
    id: int
    subject: str
    description: str
    requester_id: int
    assignee_id: int | None
    group_id: int | None
    priority: str | None
    status: str
    tags: list[str]
    channel: str
    created_at: datetime
    updated_at: datetime
    generated: int


@dataclass
class _Audit:
    id: int
    ticket_id: int
    at: datetime
    author_id: int
    via: str
    children: list[dict[str, Any]]


class ZendeskWorld:
    """The in-memory Zendesk account the fake serves; tests and the demo fill it."""

    def __init__(self, *, now: Callable[[], datetime], subdomain: str = "acme") -> None:
        self.now = now
        self.subdomain = subdomain
        self.users: dict[int, _User] = {}
        self.groups: dict[int, str] = {}
        self.tickets: dict[int, _Ticket] = {}
        self.audits: list[_Audit] = []
        self._user_ids = itertools.count(361_000_001)
        self._group_ids = itertools.count(360_000_101)
        self._ticket_ids = itertools.count(1)
        self._audit_ids = itertools.count(9_100_000_001)
        self._child_ids = itertools.count(9_200_000_001)

    def add_user(self, name: str, role: Role, email: str | None = None) -> int:
        """Add a user and return its id."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        user_id = next(self._user_ids)
        self.users[user_id] = _User(user_id, name, role, email, whole_seconds(self.now()))
        return user_id

    def add_group(self, name: str) -> int:
        """Add an agent group and return its id."""
        group_id = next(self._group_ids)
        self.groups[group_id] = name
        return group_id

    def create_ticket(
        self,
        *,
        requester_id: int,
        subject: str,
        body: str,
        at: datetime,
        priority: str | None = None,
        channel: str = "web",
        tags: Sequence[str] = (),
        group_id: int | None = None,
    ) -> int:
        """Open a ticket whose first comment is ``body``, by its requester; return its id."""
        self._user(requester_id)
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        if group_id is not None and group_id not in self.groups:
            raise KeyError(f"no group {group_id}")
        at = whole_seconds(at)
        ticket = _Ticket(
            id=next(self._ticket_ids), subject=subject, description=body,
            requester_id=requester_id, assignee_id=None, group_id=group_id, priority=priority,
            status="new", tags=list(dict.fromkeys(tags)), channel=channel, created_at=at,
            updated_at=at, generated=_epoch(at),
        )
        self.tickets[ticket.id] = ticket
        via = VIA_NAMES.get(channel, channel)
        children = [
            self._change("Create", via, "subject", subject),
            self._change("Create", via, "requester_id", requester_id),
            self._change("Create", via, "status", "new"),
        ]
        if priority is not None:
            children.append(self._change("Create", via, "priority", priority))
        if group_id is not None:
            children.append(self._change("Create", via, "group_id", group_id))
        if ticket.tags:
            children.append(self._tags("Create", via, ticket.tags, []))
        children.append(self._comment(requester_id, body, True, at, channel))
        self._record(ticket, at, requester_id, via, children)
        return ticket.id

    def add_comment(
        self, ticket_id: int, *, author_id: int, body: str, public: bool, at: datetime,
        via: str = "web",
    ) -> None:
        """Add a comment (``via`` ``"rule"`` / ``"answer_bot"`` for bots)."""
        ticket = self._ticket(ticket_id)
        author = self._user(author_id)
        if ticket.status == "closed":
            raise ValueError(f"ticket {ticket_id} is closed; Zendesk takes no more comments")
        at = whole_seconds(at)
        via_name = VIA_NAMES.get(via, via)
        children = [self._comment(author_id, body, public, at, via)]
        if author.role == "end-user" and public and ticket.status in ("pending", "solved"):
            children.append(self._change("Change", via_name, "status", "open", ticket.status))
            ticket.status = "open"
        self._record(ticket, at, author_id, via_name, children)

    def update(
        self,
        ticket_id: int,
        *,
        at: datetime,
        author_id: int,
        status: str | None = None,
        priority: str | None = None,
        assignee_id: int | None = None,
        group_id: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Change ticket fields (None: unchanged); an update that changes nothing is no audit."""
        ticket = self._ticket(ticket_id)
        self._user(author_id)
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        if assignee_id is not None and self._user(assignee_id).role == "end-user":
            raise ValueError("only agents and admins can be assignees")
        if group_id is not None and group_id not in self.groups:
            raise KeyError(f"no group {group_id}")
        at = whole_seconds(at)
        via = VIA_NAMES["web"]
        children: list[dict[str, Any]] = []
        if assignee_id is not None and assignee_id != ticket.assignee_id:
            children.append(self._change("Change", via, "assignee_id", assignee_id,
                                         ticket.assignee_id))
            ticket.assignee_id = assignee_id
            if ticket.status == "new" and status is None:
                status = "open"  # Zendesk opens a new ticket once someone is assigned
        if status is not None and status != ticket.status:
            children.append(self._change("Change", via, "status", status, ticket.status))
            ticket.status = status
        if priority is not None and priority != ticket.priority:
            children.append(self._change("Change", via, "priority", priority, ticket.priority))
            ticket.priority = priority
        if group_id is not None and group_id != ticket.group_id:
            children.append(self._change("Change", via, "group_id", group_id, ticket.group_id))
            ticket.group_id = group_id
        if tags is not None and list(dict.fromkeys(tags)) != ticket.tags:
            new_tags = list(dict.fromkeys(tags))
            children.append(self._tags("Change", via, new_tags, ticket.tags))
            ticket.tags = new_tags
        if children:
            self._record(ticket, at, author_id, via, children)

    def _user(self, user_id: int) -> _User:
        return entry(self.users, user_id, "user")

    def _ticket(self, ticket_id: int) -> _Ticket:
        return entry(self.tickets, ticket_id, "ticket")

    def _change(
        self, kind: str, via: str, name: str, value: Any, previous: Any = None
    ) -> dict[str, Any]:
        child: dict[str, Any] = {
            "id": next(self._child_ids), "via": via, "via_reference_id": None, name: value,
            "event_type": kind,
        }
        if kind == "Change":
            child["previous_value"] = previous
        return child

    def _tags(self, kind: str, via: str, tags: list[str], before: list[str]) -> dict[str, Any]:
        child = self._change(kind, via, "tags", list(tags), list(before) if before else None)
        child["added_tags"] = [t for t in tags if t not in before]
        child["removed_tags"] = [t for t in before if t not in tags]
        if kind == "Create":
            child.pop("previous_value", None)
        return child

    def _comment(
        self, author_id: int, body: str, public: bool, at: datetime, via: str
    ) -> dict[str, Any]:
        return {
            "id": next(self._child_ids),
            "via": {"channel": via, "source": {
                "from": {}, "to": {}, "rel": "trigger" if via == "rule" else None}},
            "via_reference_id": None,
            "type": "Comment",
            "author_id": author_id,
            "body": body,
            "html_body": f'<div class="zd-comment" dir="auto"><p>{html.escape(body)}</p></div>',
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": None,
            "created_at": iso_seconds(at),
            "event_type": "Comment",
        }

    def _record(
        self, ticket: _Ticket, at: datetime, author_id: int, via: str,
        children: list[dict[str, Any]],
    ) -> None:
        audit = _Audit(next(self._audit_ids), ticket.id, at, author_id, via, children)
        for child in children:
            if child["event_type"] == "Comment":
                child["audit_id"] = audit.id
        self.audits.append(audit)
        ticket.updated_at = max(ticket.updated_at, at)
        ticket.generated = max(ticket.generated, _epoch(at))


def _error(status: type[web.HTTPException], error: str, description: str | None = None,
           headers: dict[str, str] | None = None) -> NoReturn:
    body: dict[str, Any] = {"error": error}
    if description is not None:
        body["description"] = description
    raise status(text=json.dumps(body), content_type="application/json", headers=headers)


def _encode_cursor(position: tuple[int, int]) -> str:
    return base64.b64encode(f"{position[0]}.0||{position[1]}|".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        match = _CURSOR.fullmatch(base64.b64decode(cursor, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        match = None
    if match is None:
        _error(web.HTTPBadRequest, "InvalidPaginationParameter", "cursor is invalid")
    return int(match[1]), int(match[2])


class ZendeskFake:
    """A real aiohttp application that behaves like Zendesk Support for replywatch's routes."""

    def __init__(
        self,
        world: ZendeskWorld,
        *,
        email: str = "ops@acme.example",
        token: str = "fake-token",
        rate_limit: int | None = 10,
        ticket_page_size: int = MAX_PAGE,
        event_page_size: int = MAX_PAGE,
    ) -> None:
        self.world = world
        self.email = email
        self.token = token
        self.rate_limit = rate_limit
        self.ticket_page_size = ticket_page_size
        self.event_page_size = event_page_size
        self.controls = FakeControls()
        self._export_times: deque[datetime] = deque()
        known = [u.id for u in world.users.values() if u.email == email]
        self.me_id = known[0] if known else world.add_user(
            email.split("@")[0].title(), "admin", email)

    def app(self) -> web.Application:
        """The aiohttp application; serve it with ``connectors.fakes._base.serve``."""
        app = fake_app(self.controls, self.world.now)
        for path, handler in (
            ("/api/v2/incremental/tickets/cursor", self._tickets),
            ("/api/v2/incremental/ticket_events", self._ticket_events),
            ("/api/v2/users/me", self._me),
            ("/api/v2/users/show_many", self._show_many),
        ):
            app.router.add_get(path, handler)
            app.router.add_get(path + ".json", handler)
        return app

    def _caller(self, request: web.Request) -> _User | None:
        """The authenticated user, None for an anonymous request; 401 on bad credentials."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        if scheme.lower() != "basic" or decoded != f"{self.email}/token:{self.token}":
            _error(web.HTTPUnauthorized, "Couldn't authenticate you",
                   headers={"WWW-Authenticate": 'Basic realm="Web Password"'})
        return self.world.users[self.me_id]

    def _admin(self, request: web.Request) -> _User:
        user = self._caller(request)
        if user is None:
            _error(web.HTTPUnauthorized, "Couldn't authenticate you",
                   headers={"WWW-Authenticate": 'Basic realm="Web Password"'})
        if user.role != "admin":
            _error(web.HTTPForbidden, "Forbidden", "You do not have access to this page.")
        return user

    def _throttle(self) -> None:
        if self.rate_limit is None:
            return
        now = self.world.now()
        times = self._export_times
        while times and (now - times[0]).total_seconds() >= WINDOW_SECONDS:
            times.popleft()
        if len(times) >= self.rate_limit:
            wait = WINDOW_SECONDS - (now - times[0]).total_seconds()
            _error(web.HTTPTooManyRequests, "APIRateLimitExceeded",
                   "Number of allowed incremental export API requests per minute exceeded",
                   headers={"Retry-After": str(max(1, math.ceil(wait)))})
        times.append(now)

    def _cutoff(self) -> int:
        return _epoch(self.world.now()) - EXCLUDED_SECONDS

    def _start_time(self, request: web.Request) -> int:
        text = request.query.get("start_time", "")
        if not text.isdigit():
            _error(web.HTTPBadRequest, "InvalidValue", "start_time must be a Unix epoch time")
        start = int(text)
        if start > self._cutoff():
            _error(web.HTTPBadRequest, "InvalidValue",
                   "Too recent start_time. Use a start_time older than 1 minute")
        return start

    @staticmethod
    def _includes(request: web.Request) -> set[str]:
        return {part.strip() for part in request.query.get("include", "").split(",")}

    async def _tickets(self, request: web.Request) -> web.Response:
        self._admin(request)
        self._throttle()
        query = request.query
        if ("cursor" in query) == ("start_time" in query):
            _error(web.HTTPBadRequest, "InvalidValue", "Give either start_time or cursor")
        per_page = self.ticket_page_size
        if "per_page" in query:
            text = query["per_page"]
            if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
                _error(web.HTTPBadRequest, "InvalidValue", "per_page must be 1 to 1000")
            per_page = int(text)
        if "cursor" in query:
            position = _decode_cursor(query["cursor"])
        else:
            position = (self._start_time(request), -1)
        cutoff = self._cutoff()
        eligible = sorted(
            (t for t in self.world.tickets.values()
             if (t.generated, t.id) > position and t.generated <= cutoff),
            key=lambda t: (t.generated, t.id),
        )
        page = eligible[:per_page]
        after = (page[-1].generated, page[-1].id) if page else position
        base = f"{request.url.origin()}/api/v2/incremental/tickets/cursor.json"
        after_cursor = _encode_cursor(after)
        before_cursor = _encode_cursor(position) if "cursor" in query else None
        body: dict[str, Any] = {
            "tickets": [self._ticket_json(request, t) for t in page],
            "after_cursor": after_cursor,
            "after_url": f"{base}?cursor={after_cursor}",
            "before_cursor": before_cursor,
            "before_url": None if before_cursor is None else f"{base}?cursor={before_cursor}",
            "end_of_stream": len(eligible) <= per_page,
        }
        includes = self._includes(request)
        if "users" in includes:
            ids = dict.fromkeys(
                i for t in page for i in (t.requester_id, t.assignee_id)
                if i is not None
            )
            body["users"] = [self._user_json(request, self.world.users[i]) for i in ids]
        if "groups" in includes:
            group_ids = dict.fromkeys(t.group_id for t in page if t.group_id is not None)
            body["groups"] = [self._group_json(request, g) for g in group_ids]
        return web.json_response(body)

    async def _ticket_events(self, request: web.Request) -> web.Response:
        self._admin(request)
        self._throttle()
        start = self._start_time(request)
        cutoff = self._cutoff()
        eligible = sorted(
            (a for a in self.world.audits if start <= _epoch(a.at) <= cutoff),
            key=lambda a: (_epoch(a.at), a.id),
        )
        stamps = [_epoch(a.at) for a in eligible]
        size = min(self.event_page_size, len(stamps))
        while size < len(stamps) and stamps[size] == stamps[size - 1]:
            size += 1  # one second's events stay on one page
        if 0 < size < len(stamps) and stamps[size - 1] == start:
            size += 1  # a page that repeats only its start second must still move on
            while size < len(stamps) and stamps[size] == stamps[size - 1]:
                size += 1
        page = eligible[:size]
        end_time = _epoch(page[-1].at) if page else start
        comments = "comment_events" in self._includes(request)
        include = "&include=comment_events" if comments else ""
        base = f"{request.url.origin()}/api/v2/incremental/ticket_events.json"
        return web.json_response({
            "ticket_events": [self._audit_json(a, comments) for a in page],
            "next_page": f"{base}?start_time={end_time}{include}",
            "count": len(page),
            "end_of_stream": len(page) == len(eligible),
            "end_time": end_time,
        })

    async def _me(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        if user is None:
            return web.json_response({"user": {
                "id": None, "url": None, "name": "Anonymous user", "email": "invalid@example.com",
                "created_at": None, "updated_at": None, "time_zone": "UTC", "locale": "en-US",
                "role": "end-user", "verified": False, "active": True,
            }})
        return web.json_response({"user": self._user_json(request, user)})

    async def _show_many(self, request: web.Request) -> web.Response:
        if self._caller(request) is None:
            _error(web.HTTPUnauthorized, "Couldn't authenticate you")
        parts = [p.strip() for p in request.query.get("ids", "").split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts) or len(parts) > SHOW_MANY_LIMIT:
            _error(web.HTTPBadRequest, "InvalidValue", "ids must be 1 to 100 user ids")
        users = [self.world.users[int(p)] for p in dict.fromkeys(parts)
                 if int(p) in self.world.users]
        return web.json_response({
            "users": [self._user_json(request, u) for u in users],
            "next_page": None, "previous_page": None, "count": len(users),
        })

    def _ticket_json(self, request: web.Request, t: _Ticket) -> dict[str, Any]:
        origin = request.url.origin()
        return {
            "url": f"{origin}/api/v2/tickets/{t.id}.json", "id": t.id, "external_id": None,
            "via": {"channel": t.channel, "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": iso_seconds(t.created_at), "updated_at": iso_seconds(t.updated_at),
            "generated_timestamp": t.generated, "type": None, "subject": t.subject,
            "raw_subject": t.subject, "description": t.description, "priority": t.priority,
            "status": t.status, "recipient": None, "requester_id": t.requester_id,
            "submitter_id": t.requester_id, "assignee_id": t.assignee_id,
            "organization_id": None, "group_id": t.group_id, "collaborator_ids": [],
            "follower_ids": [], "email_cc_ids": [], "forum_topic_id": None, "problem_id": None,
            "has_incidents": False, "is_public": True, "due_at": None, "tags": list(t.tags),
            "custom_fields": [], "satisfaction_rating": None, "sharing_agreement_ids": [],
            "fields": [], "followup_ids": [], "ticket_form_id": None, "brand_id": None,
            "allow_channelback": False, "allow_attachments": True,
            "from_messaging_channel": False,
        }

    def _user_json(self, request: web.Request, u: _User) -> dict[str, Any]:
        return {
            "id": u.id, "url": f"{request.url.origin()}/api/v2/users/{u.id}.json",
            "name": u.name, "email": u.email, "created_at": iso_seconds(u.created_at),
            "updated_at": iso_seconds(u.created_at), "time_zone": "UTC",
            "iana_time_zone": "Etc/UTC",
            "phone": None, "photo": None, "locale": "en-US", "locale_id": 1,
            "organization_id": None, "role": u.role, "verified": True, "external_id": None,
            "tags": [], "alias": None, "active": True, "shared": False, "shared_agent": False,
            "last_login_at": None, "signature": None, "details": None, "notes": None,
            "role_type": None, "custom_role_id": None, "moderator": u.role != "end-user",
            "ticket_restriction": "requested" if u.role == "end-user" else None,
            "only_private_comments": False, "restricted_agent": False, "suspended": False,
            "default_group_id": None, "user_fields": {},
        }

    def _group_json(self, request: web.Request, group_id: int) -> dict[str, Any]:
        return {
            "id": group_id, "url": f"{request.url.origin()}/api/v2/groups/{group_id}.json",
            "name": self.world.groups[group_id], "description": "", "default": False,
            "deleted": False, "is_public": True,
        }

    def _audit_json(self, audit: _Audit, comments: bool) -> dict[str, Any]:
        return {
            "id": audit.id, "ticket_id": audit.ticket_id, "timestamp": _epoch(audit.at),
            "created_at": iso_seconds(audit.at), "updater_id": audit.author_id, "via": audit.via,
            "system": {"client": "replywatch-fake", "location": "Loopback",
                       "ip_address": "127.0.0.1"},
            "event_type": "Audit", "merged_ticket_ids": [],
            "child_events": [
                dict(child) for child in audit.children
                if comments or child["event_type"] != "Comment"
            ],
        }


def contract_case() -> ContractCase:
    """The Zendesk fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = ZendeskWorld(now=clock)
    fake = ZendeskFake(world)
    customer = world.add_user("Casey Customer", "end-user", "casey@example.com")
    agent = world.add_user("Kim Agent", "agent", "kim@acme.example")
    tickets: list[int] = []

    def seed() -> None:
        ticket = world.create_ticket(requester_id=customer, subject="Order never arrived",
                                     body="My order never arrived", priority="normal",
                                     at=clock() - timedelta(minutes=30))
        world.update(ticket, at=clock() - timedelta(minutes=25), author_id=agent,
                     assignee_id=agent)
        world.add_comment(ticket, author_id=agent, body="Sorry! A new one ships today.",
                          public=True, at=clock() - timedelta(minutes=20))
        world.update(ticket, at=clock() - timedelta(minutes=20), author_id=agent,
                     status="pending")
        tickets.append(ticket)

    def add_activity() -> None:
        world.add_comment(tickets[-1], author_id=customer, body="Still waiting on that order",
                          public=True, at=clock())

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="zendesk",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-desk", "kind": "zendesk", "subdomain": "acme",
                                   "email": fake.email, "token": "fake-token",
                                   "base_url": base_url},
        bad_settings={"name": "acme-desk", "kind": "zendesk", "subdomain": "acme",
                      "email": "ops@acme.example", "token": "t", "per_page": 50},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
