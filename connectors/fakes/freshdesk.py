"""Provides a faithful fake of Freshdesk API v2: ticket list, conversations, agents/me, limits.

Served routes:

- ``GET /api/v2/tickets``: ``filter`` (``deleted``, ``spam``; the plain list leaves both
  out), ``updated_since`` (inclusive; without it only tickets created in the last 30
  days), ``order_by`` (``created_at`` default, ``updated_at``, ``due_by``, ``status``),
  ``order_type`` (``desc`` default, ``asc``), ``per_page`` (1-100, default 30), ``page``
  (1-300: a higher page is a 400, as on Freshdesk), ``include`` (``stats``,
  ``requester``, ``description``). A ``Link: <…>; rel="next"`` header announces a further
  page.
- ``GET /api/v2/tickets/:id/conversations``: ``per_page`` / ``page`` and ``Link`` the same
  way, oldest first; 404 for a ticket that does not exist.
- ``GET /api/v2/agents/me``.

Authentication is HTTP Basic with the API key as user and ``X`` as password (401
``invalid_credentials`` otherwise). Every request costs credits (a listing 1 plus 2 per
embed, anything else 1) from a per-minute budget reported in ``X-RateLimit-Total`` /
``X-RateLimit-Remaining`` / ``X-RateLimit-Used-CurrentRequest``; past it, 429 with
``Retry-After``. Timestamps have whole seconds, as Freshdesk's do. Every response carries
a ``Date`` header from the world's clock; scripted faults come from ``controls``.

The world follows Freshdesk's defaults where they matter to SLAs: tickets start Open, a
customer reply reopens a Pending, Resolved or Closed ticket, and every reply, note or
property change moves the ticket's ``updated_at`` (status changes also
``stats.status_updated_at``).
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from aiohttp import web
from yarl import URL

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    SteppedClock,
    entry,
    fake_app,
    iso_seconds,
    whole_seconds,
)
from monitor.events import parse_instant

WINDOW_SECONDS = 60
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
MAX_PAGE = 300
DEFAULT_WINDOW = timedelta(days=30)
INCLUDES = ("stats", "requester", "description")
ORDER_BY = ("created_at", "updated_at", "due_by", "status")
OPEN, PENDING, RESOLVED, CLOSED = 2, 3, 4, 5
STATUS_NAMES = {OPEN: "Open", PENDING: "Pending", RESOLVED: "Resolved", CLOSED: "Closed"}
PRIORITY_NAMES = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}
REPLY, NOTE = 0, 2


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso_seconds(at)


@dataclass
class _Person:
    id: int
    name: str
    email: str
    agent: bool


@dataclass
class _Ticket:
    id: int
    subject: str
    description: str
    requester_id: int
    source: int
    priority: int
    status: int
    tags: list[str]
    group_id: int | None
    created_at: datetime
    updated_at: datetime
    status_updated_at: datetime
    responder_id: int | None = None
    first_responded_at: datetime | None = None
    agent_responded_at: datetime | None = None
    requester_responded_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    pending_since: datetime | None = None
    reopened_at: datetime | None = None
    spam: bool = False
    deleted: bool = False


@dataclass
class _Conversation:
    id: int
    ticket_id: int
    body: str
    incoming: bool
    private: bool
    user_id: int
    from_email: str | None
    source: int
    created_at: datetime
    to_emails: list[str] = field(default_factory=list)


class FreshdeskWorld:
    """The in-memory Freshdesk account the fake serves; tests and the demo fill it."""

    def __init__(self, *, now: Callable[[], datetime], support_email: str = "support@acme.example"
                 ) -> None:
        self.now = now
        self.support_email = support_email
        self.people: dict[int, _Person] = {}
        self.groups: dict[int, str] = {}
        self.tickets: dict[int, _Ticket] = {}
        self.conversations: list[_Conversation] = []
        self._person_ids = itertools.count(43_000_000_001)
        self._group_ids = itertools.count(43_000_100_001)
        self._ticket_ids = itertools.count(1)
        self._conversation_ids = itertools.count(43_010_000_001)

    def add_contact(self, name: str, email: str) -> int:
        """Add a customer (contact) and return its id."""
        return self._person(name, email, agent=False)

    def add_agent(self, name: str, email: str) -> int:
        """Add an agent and return its id."""
        return self._person(name, email, agent=True)

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
        description: str,
        at: datetime,
        priority: int = 1,
        source: int = 2,
        tags: Sequence[str] = (),
        group_id: int | None = None,
    ) -> int:
        """Open a ticket (status Open) and return its id; ``source`` 10 is an outbound email."""
        self._contact(requester_id)
        if priority not in PRIORITY_NAMES:
            raise ValueError("priority must be 1 (low) to 4 (urgent)")
        if group_id is not None and group_id not in self.groups:
            raise KeyError(f"no group {group_id}")
        at = whole_seconds(at)
        ticket = _Ticket(
            id=next(self._ticket_ids), subject=subject, description=description,
            requester_id=requester_id, source=source, priority=priority, status=OPEN,
            tags=list(dict.fromkeys(tags)), group_id=group_id, created_at=at, updated_at=at,
            status_updated_at=at,
        )
        if source != 10:
            ticket.requester_responded_at = at
        self.tickets[ticket.id] = ticket
        return ticket.id

    def reply(self, ticket_id: int, *, agent_id: int, body: str, at: datetime,
              status: int | None = None) -> int:
        """An agent's public reply (optionally setting the status, as "Send and set as")."""
        ticket = self._ticket(ticket_id)
        agent = self._agent(agent_id)
        at = whole_seconds(at)
        conversation = self._add(ticket, body=body, incoming=False, private=False,
                                 user_id=agent.id, source=REPLY, at=at,
                                 from_email=f"{agent.name} <{self.support_email}>",
                                 to_emails=[self.people[ticket.requester_id].email])
        ticket.agent_responded_at = at
        if ticket.first_responded_at is None:
            ticket.first_responded_at = at
        if status is not None:
            self._status(ticket, status, at)
        return conversation

    def note(self, ticket_id: int, *, user_id: int, body: str, at: datetime,
             private: bool = True, incoming: bool = False) -> int:
        """A note: private (internal) by default; a public note shows to the customer."""
        ticket = self._ticket(ticket_id)
        self._user(user_id)
        return self._add(ticket, body=body, incoming=incoming, private=private, user_id=user_id,
                         source=NOTE, at=whole_seconds(at), from_email=None)

    def customer_reply(self, ticket_id: int, *, body: str, at: datetime) -> int:
        """The requester replies (by email): reopens a Pending, Resolved or Closed ticket."""
        ticket = self._ticket(ticket_id)
        requester = self.people[ticket.requester_id]
        at = whole_seconds(at)
        conversation = self._add(ticket, body=body, incoming=True, private=False,
                                 user_id=requester.id, source=REPLY, at=at,
                                 from_email=f"{requester.name} <{requester.email}>",
                                 to_emails=[self.support_email])
        ticket.requester_responded_at = at
        if ticket.status in (PENDING, RESOLVED, CLOSED):
            if ticket.status in (RESOLVED, CLOSED):
                ticket.reopened_at = at
            self._status(ticket, OPEN, at)
        return conversation

    def set_status(self, ticket_id: int, status: int, *, at: datetime) -> None:
        """Change a ticket's status (any code, custom ones included)."""
        ticket = self._ticket(ticket_id)
        at = whole_seconds(at)
        if status != ticket.status:
            self._status(ticket, status, at)
            self._touch(ticket, at)

    def update(
        self,
        ticket_id: int,
        *,
        at: datetime,
        priority: int | None = None,
        responder_id: int | None = None,
        group_id: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Change ticket properties (None: unchanged)."""
        ticket = self._ticket(ticket_id)
        if priority is not None:
            if priority not in PRIORITY_NAMES:
                raise ValueError("priority must be 1 (low) to 4 (urgent)")
            ticket.priority = priority
        if responder_id is not None:
            ticket.responder_id = self._agent(responder_id).id
        if group_id is not None:
            if group_id not in self.groups:
                raise KeyError(f"no group {group_id}")
            ticket.group_id = group_id
        if tags is not None:
            ticket.tags = list(dict.fromkeys(tags))
        self._touch(ticket, whole_seconds(at))

    def delete(self, ticket_id: int, *, at: datetime) -> None:
        """Move a ticket to the trash (it leaves the plain list, joins ``filter=deleted``)."""
        ticket = self._ticket(ticket_id)
        ticket.deleted = True
        self._touch(ticket, whole_seconds(at))

    def mark_spam(self, ticket_id: int, *, at: datetime) -> None:
        """Mark a ticket as spam (it leaves the plain list, joins ``filter=spam``)."""
        ticket = self._ticket(ticket_id)
        ticket.spam = True
        self._touch(ticket, whole_seconds(at))

    def _person(self, name: str, email: str, *, agent: bool) -> int:
        person_id = next(self._person_ids)
        self.people[person_id] = _Person(person_id, name, email, agent)
        return person_id

    def _user(self, user_id: int) -> _Person:
        return entry(self.people, user_id, "user")

    def _contact(self, user_id: int) -> _Person:
        person = self._user(user_id)
        if person.agent:
            raise ValueError(f"user {user_id} is an agent, not a contact")
        return person

    def _agent(self, user_id: int) -> _Person:
        person = self._user(user_id)
        if not person.agent:
            raise ValueError(f"user {user_id} is a contact, not an agent")
        return person

    def _ticket(self, ticket_id: int) -> _Ticket:
        return entry(self.tickets, ticket_id, "ticket")

    def _add(self, ticket: _Ticket, *, body: str, incoming: bool, private: bool, user_id: int,
             source: int, at: datetime, from_email: str | None,
             to_emails: list[str] | None = None) -> int:
        conversation = _Conversation(
            id=next(self._conversation_ids), ticket_id=ticket.id, body=body, incoming=incoming,
            private=private, user_id=user_id, from_email=from_email, source=source,
            created_at=at, to_emails=to_emails or [],
        )
        self.conversations.append(conversation)
        self._touch(ticket, at)
        return conversation.id

    def _status(self, ticket: _Ticket, status: int, at: datetime) -> None:
        ticket.status = status
        ticket.status_updated_at = at
        ticket.pending_since = at if status == PENDING else None
        if status == RESOLVED:
            ticket.resolved_at = at
        if status == CLOSED:
            ticket.closed_at = at
        self._touch(ticket, at)

    @staticmethod
    def _touch(ticket: _Ticket, at: datetime) -> None:
        ticket.updated_at = max(ticket.updated_at, at)


def _error(status: type[web.HTTPException], body: dict[str, Any],
           headers: dict[str, str] | None = None) -> NoReturn:
    raise status(text=json.dumps(body), content_type="application/json", headers=headers)


def _invalid(field_name: str, message: str) -> NoReturn:
    _error(web.HTTPBadRequest, {"description": "Validation failed", "errors": [
        {"field": field_name, "message": message, "code": "invalid_value"}]})


def _number(text: str | None, field_name: str, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        _invalid(field_name, f"It should be a Positive Number less than or equal to {high}")
    return int(text)


class FreshdeskFake:
    """A real aiohttp application that behaves like Freshdesk API v2 for replywatch's routes."""

    def __init__(
        self,
        world: FreshdeskWorld,
        *,
        api_key: str = "fake-api-key",
        agent_email: str = "ops@acme.example",
        rate_limit: int | None = 200,
    ) -> None:
        self.world = world
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.controls = FakeControls()
        self._spent: deque[tuple[datetime, int]] = deque()
        known = [p.id for p in world.people.values() if p.email == agent_email and p.agent]
        self.me_id = known[0] if known else world.add_agent("Ops Agent", agent_email)

    def app(self) -> web.Application:
        """The aiohttp application; serve it with ``connectors.fakes._base.serve``."""
        app = fake_app(self.controls, self.world.now)
        app.router.add_get("/api/v2/tickets", self._tickets)
        app.router.add_get("/api/v2/tickets/{id}/conversations", self._conversations)
        app.router.add_get("/api/v2/agents/me", self._me)
        return app

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        if scheme.lower() != "basic" or decoded != f"{self.api_key}:X":
            _error(web.HTTPUnauthorized, {
                "code": "invalid_credentials",
                "message": "You have to be logged in to perform this action.",
            })

    def _charge(self, credits: int) -> dict[str, str]:
        """Spend credits from this minute's budget; 429 past it. Returns the limit headers."""
        if self.rate_limit is None:
            return {}
        now = self.world.now()
        while self._spent and (now - self._spent[0][0]).total_seconds() >= WINDOW_SECONDS:
            self._spent.popleft()
        used = sum(c for _, c in self._spent)
        if used + credits > self.rate_limit:
            oldest = self._spent[0][0] if self._spent else now
            wait = WINDOW_SECONDS - (now - oldest).total_seconds()
            _error(web.HTTPTooManyRequests,
                   {"message": "You have exceeded the limit of requests per minute"},
                   headers={"Retry-After": str(max(1, math.ceil(wait))),
                            "X-RateLimit-Total": str(self.rate_limit),
                            "X-RateLimit-Remaining": str(max(0, self.rate_limit - used))})
        self._spent.append((now, credits))
        return {
            "X-RateLimit-Total": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_limit - used - credits),
            "X-RateLimit-Used-CurrentRequest": str(credits),
        }

    async def _tickets(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        query = request.query
        includes = [part.strip() for part in query.get("include", "").split(",") if part.strip()]
        for part in includes:
            if part not in INCLUDES:
                _invalid("include", f"It should be one of these values: '{','.join(INCLUDES)}'")
        per_page = _number(query.get("per_page"), "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        page = _number(query.get("page"), "page", 1, 1, 10**9)
        if page > MAX_PAGE:
            _invalid("page", f"You cannot access a page beyond {MAX_PAGE}")
        order_by = query.get("order_by", "created_at")
        order_type = query.get("order_type", "desc")
        if order_by not in ORDER_BY:
            _invalid("order_by", f"It should be one of these values: '{','.join(ORDER_BY)}'")
        if order_type not in ("asc", "desc"):
            _invalid("order_type", "It should be one of these values: 'asc,desc'")
        wanted = query.get("filter")
        if wanted not in (None, "deleted", "spam"):
            _invalid("filter", "It should be one of these values: 'deleted,spam'")
        headers = self._charge(1 + 2 * len(includes))
        tickets = [t for t in self.world.tickets.values() if self._listed(t, wanted)]
        if "updated_since" in query:
            try:
                since = parse_instant(query["updated_since"], "updated_since")
            except ValueError:
                _invalid("updated_since", "It should be in the 'valid date' format")
            tickets = [t for t in tickets if t.updated_at >= since]
        else:
            tickets = [t for t in tickets if t.created_at >= self.world.now() - DEFAULT_WINDOW]
        tickets.sort(key=lambda t: (self._order_key(t, order_by), t.id),
                     reverse=order_type == "desc")
        start = (page - 1) * per_page
        chunk = tickets[start:start + per_page]
        if start + per_page < len(tickets):
            next_url = request.url.update_query(page=str(page + 1))
            headers["Link"] = f'<{self._public(request, next_url)}>; rel="next"'
        body = [self._ticket_json(t, includes) for t in chunk]
        return web.json_response(body, headers=headers)

    async def _conversations(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        text = request.match_info["id"]
        ticket = self.world.tickets.get(int(text)) if text.isdigit() else None
        if ticket is None:
            raise web.HTTPNotFound(text="", content_type="application/json")
        per_page = _number(request.query.get("per_page"), "per_page", DEFAULT_PER_PAGE, 1,
                           MAX_PER_PAGE)
        page = _number(request.query.get("page"), "page", 1, 1, 10**9)
        headers = self._charge(1)
        thread = sorted((c for c in self.world.conversations if c.ticket_id == ticket.id),
                        key=lambda c: (c.created_at, c.id))
        start = (page - 1) * per_page
        if start + per_page < len(thread):
            next_url = request.url.update_query(page=str(page + 1))
            headers["Link"] = f'<{self._public(request, next_url)}>; rel="next"'
        body = [self._conversation_json(c) for c in thread[start:start + per_page]]
        return web.json_response(body, headers=headers)

    async def _me(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        headers = self._charge(1)
        me = self.world.people[self.me_id]
        return web.json_response({
            "available": True, "occasional": False, "id": me.id, "ticket_scope": 1,
            "signature": None, "group_ids": [], "role_ids": [], "skill_ids": [],
            "available_since": None, "contact": {
                "active": True, "email": me.email, "job_title": None, "language": "en",
                "last_login_at": None, "mobile": None, "name": me.name, "phone": None,
                "time_zone": "UTC", "created_at": None, "updated_at": None,
            },
            "created_at": None, "updated_at": None, "type": "support_agent",
        }, headers=headers)

    @staticmethod
    def _listed(ticket: _Ticket, wanted: str | None) -> bool:
        if wanted == "deleted":
            return ticket.deleted
        if wanted == "spam":
            return ticket.spam and not ticket.deleted
        return not ticket.deleted and not ticket.spam

    @staticmethod
    def _public(request: web.Request, url: URL) -> str:
        return str(url.with_scheme(request.url.scheme).with_host(request.url.host or "")
                   .with_port(request.url.port))

    @staticmethod
    def _order_key(ticket: _Ticket, order_by: str) -> Any:
        if order_by == "updated_at":
            return ticket.updated_at
        if order_by == "status":
            return ticket.status
        return ticket.created_at  # due_by follows created_at in this world

    def _ticket_json(self, t: _Ticket, includes: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "ticket_cc_emails": [],
            "fr_escalated": False, "spam": t.spam, "email_config_id": None,
            "group_id": t.group_id, "priority": t.priority, "requester_id": t.requester_id,
            "responder_id": t.responder_id, "source": t.source, "company_id": None,
            "status": t.status, "subject": t.subject, "association_type": None,
            "support_email": None, "to_emails": None, "product_id": None, "id": t.id,
            "type": None, "due_by": _iso(t.created_at + timedelta(days=3)),
            "fr_due_by": _iso(t.created_at + timedelta(hours=1)), "is_escalated": False,
            "custom_fields": {}, "created_at": _iso(t.created_at),
            "updated_at": _iso(t.updated_at), "associated_tickets_count": None,
            "tags": list(t.tags),
        }
        if t.deleted:
            body["deleted"] = True
        if "stats" in includes:
            body["stats"] = {
                "agent_responded_at": _iso(t.agent_responded_at),
                "requester_responded_at": _iso(t.requester_responded_at),
                "first_responded_at": _iso(t.first_responded_at),
                "status_updated_at": _iso(t.status_updated_at),
                "reopened_at": _iso(t.reopened_at), "resolved_at": _iso(t.resolved_at),
                "closed_at": _iso(t.closed_at), "pending_since": _iso(t.pending_since),
            }
        if "requester" in includes:
            person = self.world.people[t.requester_id]
            body["requester"] = {"id": person.id, "name": person.name, "email": person.email,
                                 "mobile": None, "phone": None}
        if "description" in includes:
            body["description"] = f"<div>{html.escape(t.description)}</div>"
            body["description_text"] = t.description
        return body

    @staticmethod
    def _conversation_json(c: _Conversation) -> dict[str, Any]:
        return {
            "body": f"<div>{html.escape(c.body)}</div>", "body_text": c.body, "id": c.id,
            "incoming": c.incoming, "private": c.private, "user_id": c.user_id,
            "support_email": None, "source": c.source, "category": 2, "ticket_id": c.ticket_id,
            "to_emails": list(c.to_emails), "from_email": c.from_email, "cc_emails": [],
            "bcc_emails": None, "email_failure_count": None, "outgoing_failures": None,
            "created_at": _iso(c.created_at), "updated_at": _iso(c.created_at),
            "attachments": [], "last_edited_at": None, "last_edited_user_id": None,
            "automation_id": None, "automation_type_id": None, "auto_response": False,
            "thread_id": None, "thread_message_id": None,
        }


def contract_case() -> ContractCase:
    """The Freshdesk fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = FreshdeskWorld(now=clock)
    fake = FreshdeskFake(world)
    customer = world.add_contact("Casey Customer", "casey@example.com")
    agent = world.add_agent("Kim Agent", "kim@acme.example")
    tickets: list[int] = []

    def seed() -> None:
        ticket = world.create_ticket(requester_id=customer, subject="Order never arrived",
                                     description="My order never arrived", priority=2,
                                     at=clock() - timedelta(minutes=30))
        world.update(ticket, at=clock() - timedelta(minutes=25), responder_id=agent)
        world.reply(ticket, agent_id=agent, body="Sorry! A new one ships today.",
                    at=clock() - timedelta(minutes=20), status=PENDING)
        tickets.append(ticket)

    def add_activity() -> None:
        world.customer_reply(tickets[-1], body="Still waiting on that order", at=clock())

    def revoke() -> None:
        fake.api_key = "revoked-key"

    return ContractCase(
        kind="freshdesk",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-freshdesk", "kind": "freshdesk",
                                   "subdomain": "acme", "api_key": "fake-api-key",
                                   "base_url": base_url},
        bad_settings={"name": "acme-freshdesk", "kind": "freshdesk", "subdomain": "acme",
                      "api_key": "k", "page_size": 500},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
