"""Provides a faithful fake of Zammad's REST API: ticket search, articles, users/me, auth.

Served routes:

- ``GET /api/v1/tickets/search``: ``query`` (``updated_at:>=<time>`` with the colons
  escaped, as Elasticsearch's query string wants; any other text matches titles and
  numbers), ``sort_by`` (``updated_at`` default, ``created_at``, ``id``), ``order_by``
  (``desc`` default, ``asc``), ``page``, ``per_page`` (default 50, at most 200),
  ``expand``. Expanded, the answer is a list of tickets with association names
  (``state``, ``priority``, ``group``, ``owner``, ``customer``...); otherwise
  ``{"tickets": [ids], "tickets_count", "assets"}``. Like Elasticsearch, it refuses to
  look past 10,000 results (422).
- ``GET /api/v1/tickets``: the ticket index (ids ascending, ``page`` / ``per_page``).
- ``GET /api/v1/ticket_articles/by_ticket/:id``: every article, oldest first, with
  ``sender``, ``type`` and ``created_by`` names; 404 for an unknown ticket.
- ``GET /api/v1/users/me``.

Authentication is ``Authorization: Token token=…`` (401 otherwise). The search reads an
*index* that lags the database by ``index_delay`` seconds, as Zammad's Elasticsearch
index does (a background job indexes each change): a ticket shows up in the search, in
the version it had, only that long after it changed, while its articles are read live.
Timestamps carry milliseconds. Every response has a ``Date`` header from the world's
clock; scripted faults come from ``controls``.

The world follows Zammad's defaults where they matter to SLAs: a ticket starts ``new``
with its first article, a customer's (non-internal) follow-up reopens a pending or closed
ticket, a merged ticket is in state ``merged``, and every article or change moves the
ticket's ``updated_at``; ``last_close_at`` is set when it closes.
"""

from __future__ import annotations

import copy
import html
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, NoReturn

from aiohttp import web

from connectors.fakes._base import ContractCase, FakeControls, SteppedClock, controls_middleware
from monitor.events import parse_instant, require_utc

STATES = {1: "new", 2: "open", 3: "pending reminder", 4: "closed", 5: "merged", 6: "removed",
          7: "pending close"}
STATE_IDS = {name: state_id for state_id, name in STATES.items()}
PRIORITIES = {1: "1 low", 2: "2 normal", 3: "3 high"}
PRIORITY_IDS = {name: priority_id for priority_id, name in PRIORITIES.items()}
SENDERS = {1: "Agent", 2: "Customer", 3: "System"}
SENDER_IDS = {name: sender_id for sender_id, name in SENDERS.items()}
TYPES = {1: "email", 2: "sms", 3: "chat", 4: "fax", 5: "phone", 10: "note", 11: "web"}
TYPE_IDS = {name: type_id for type_id, name in TYPES.items()}
NOBODY = 1
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
RESULT_WINDOW = 10_000
_SINCE = re.compile(r"updated_at:>=(\S+)")


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + f".{at.microsecond // 1000:03d}Z"


def _stamp(at: datetime) -> datetime:
    """Zammad keeps milliseconds."""
    at = require_utc(at, "'at'")
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass
class _User:
    id: int
    login: str
    firstname: str
    lastname: str
    email: str
    role: str
    created_at: datetime


@dataclass
class _Ticket:
    id: int
    number: str
    title: str
    group_id: int
    priority_id: int
    state_id: int
    customer_id: int
    created_by_id: int
    create_article_type_id: int
    create_article_sender_id: int
    created_at: datetime
    updated_at: datetime
    updated_by_id: int
    owner_id: int = NOBODY
    close_at: datetime | None = None
    last_close_at: datetime | None = None
    first_response_at: datetime | None = None
    last_contact_at: datetime | None = None
    last_contact_agent_at: datetime | None = None
    last_contact_customer_at: datetime | None = None


@dataclass
class _Article:
    id: int
    ticket_id: int
    type_id: int
    sender_id: int
    sender_from: str
    to: str
    subject: str
    body: str
    content_type: str
    internal: bool
    created_by_id: int
    created_at: datetime


class ZammadWorld:
    """The in-memory Zammad instance the fake serves; tests and the demo fill it."""

    def __init__(self, *, now: Callable[[], datetime]) -> None:
        self.now = now
        start = _stamp(now())
        self.users: dict[int, _User] = {
            NOBODY: _User(NOBODY, "-", "", "", "", "Nobody", start)}
        self.groups: dict[int, str] = {1: "Users"}
        self.tickets: dict[int, _Ticket] = {}
        self.articles: list[_Article] = []
        # Each ticket's articles, kept alongside: scanning every article per ticket made a
        # week of demo traffic take seconds to write and to serve.
        self._by_ticket: dict[int, list[_Article]] = {}
        self.snapshots: dict[int, list[tuple[datetime, dict[str, Any]]]] = {}
        """Each ticket's versions, as the search index receives them."""
        self._user_ids = itertools.count(2)
        self._group_ids = itertools.count(2)
        self._ticket_ids = itertools.count(1)
        self._article_ids = itertools.count(1)

    def add_user(self, firstname: str, lastname: str, email: str, *, role: str = "Customer"
                 ) -> int:
        """Add a user (``role`` Customer, Agent or Admin) whose login is the email; its id."""
        if role not in ("Customer", "Agent", "Admin"):
            raise ValueError("role must be Customer, Agent or Admin")
        user_id = next(self._user_ids)
        self.users[user_id] = _User(user_id, email.lower(), firstname, lastname, email, role,
                                    _stamp(self.now()))
        return user_id

    def add_group(self, name: str) -> int:
        """Add a group and return its id."""
        group_id = next(self._group_ids)
        self.groups[group_id] = name
        return group_id

    def create_ticket(
        self,
        *,
        customer_id: int,
        title: str,
        body: str,
        at: datetime,
        group_id: int = 1,
        priority: str = "2 normal",
        type: str = "email",
        sender: str = "Customer",
        created_by_id: int | None = None,
    ) -> int:
        """Open a ticket (state new) with its first article; return its id.

        ``sender`` "Agent" with ``created_by_id`` an agent is an outbound ticket.
        """
        self._user(customer_id)
        author = customer_id if created_by_id is None else created_by_id
        self._user(author)
        if group_id not in self.groups:
            raise KeyError(f"no group {group_id}")
        at = _stamp(at)
        ticket_id = next(self._ticket_ids)
        ticket = _Ticket(
            id=ticket_id, number=str(77000 + ticket_id), title=title, group_id=group_id,
            priority_id=PRIORITY_IDS[priority], state_id=STATE_IDS["new"],
            customer_id=customer_id, created_by_id=author,
            create_article_type_id=TYPE_IDS[type], create_article_sender_id=SENDER_IDS[sender],
            created_at=at, updated_at=at, updated_by_id=author,
        )
        self.tickets[ticket_id] = ticket
        self._article(ticket, author_id=author, body=body, at=at, sender=sender,
                      internal=False, type=type, content_type="text/plain")
        return ticket_id

    def add_article(
        self,
        ticket_id: int,
        *,
        author_id: int,
        body: str,
        at: datetime,
        sender: str = "Agent",
        internal: bool = False,
        type: str = "email",
        content_type: str = "text/html",
    ) -> int:
        """Add an article; a customer's visible follow-up reopens a pending or closed ticket."""
        ticket = self._ticket(ticket_id)
        self._user(author_id)
        at = _stamp(at)
        article = self._article(ticket, author_id=author_id, body=body, at=at, sender=sender,
                                internal=internal, type=type, content_type=content_type)
        state = STATES[ticket.state_id]
        if sender == "Customer" and not internal and state in (
                "pending reminder", "pending close", "closed"):
            ticket.state_id = STATE_IDS["open"]
            self._touch(ticket, at, author_id)
        return article

    def update(
        self,
        ticket_id: int,
        *,
        at: datetime,
        by: int,
        state: str | None = None,
        priority: str | None = None,
        owner_id: int | None = None,
        group_id: int | None = None,
        title: str | None = None,
    ) -> None:
        """Change ticket attributes (None: unchanged)."""
        ticket = self._ticket(ticket_id)
        self._user(by)
        at = _stamp(at)
        if state is not None:
            ticket.state_id = STATE_IDS[state]
            if state == "closed":
                ticket.close_at = ticket.close_at or at
                ticket.last_close_at = at
        if priority is not None:
            ticket.priority_id = PRIORITY_IDS[priority]
        if owner_id is not None:
            if self._user(owner_id).role == "Customer":
                raise ValueError("only agents can own tickets")
            ticket.owner_id = owner_id
        if group_id is not None:
            if group_id not in self.groups:
                raise KeyError(f"no group {group_id}")
            ticket.group_id = group_id
        if title is not None:
            ticket.title = title
        self._touch(ticket, at, by)

    def merge(self, ticket_id: int, *, into: int, at: datetime, by: int) -> None:
        """Merge a ticket into another: it is left in state ``merged``, its articles move."""
        source = self._ticket(ticket_id)
        target = self._ticket(into)
        at = _stamp(at)
        moved = self._by_ticket.setdefault(target.id, [])
        for article in self._by_ticket.pop(source.id, []):
            article.ticket_id = target.id
            moved.append(article)
        moved.sort(key=lambda article: article.id)  # ids follow the order of writing
        source.state_id = STATE_IDS["merged"]
        self._touch(source, at, by)
        self._touch(target, at, by)

    def delete(self, ticket_id: int) -> None:
        """Delete a ticket for good (Zammad keeps nothing of it)."""
        self._ticket(ticket_id)
        del self.tickets[ticket_id]
        self.snapshots.pop(ticket_id, None)
        self.articles = [a for a in self.articles if a.ticket_id != ticket_id]
        self._by_ticket.pop(ticket_id, None)

    def articles_of(self, ticket_id: int) -> list[_Article]:
        """A ticket's articles, in the order they were written."""
        return self._by_ticket.get(ticket_id, [])

    def _user(self, user_id: int) -> _User:
        try:
            return self.users[user_id]
        except KeyError:
            raise KeyError(f"no user {user_id}") from None

    def _ticket(self, ticket_id: int) -> _Ticket:
        try:
            return self.tickets[ticket_id]
        except KeyError:
            raise KeyError(f"no ticket {ticket_id}") from None

    def _article(self, ticket: _Ticket, *, author_id: int, body: str, at: datetime,
                 sender: str, internal: bool, type: str, content_type: str) -> int:
        author = self.users[author_id]
        customer = self.users[ticket.customer_id]
        name = f"{author.firstname} {author.lastname}".strip()
        article = _Article(
            id=next(self._article_ids), ticket_id=ticket.id, type_id=TYPE_IDS[type],
            sender_id=SENDER_IDS[sender], sender_from=f"{name} <{author.email}>",
            to="" if sender == "Customer" else customer.email, subject=ticket.title, body=body,
            content_type=content_type, internal=internal, created_by_id=author_id,
            created_at=at,
        )
        self.articles.append(article)
        self._by_ticket.setdefault(ticket.id, []).append(article)
        if not internal:
            ticket.last_contact_at = at
            if sender == "Customer":
                ticket.last_contact_customer_at = at
            elif sender == "Agent":
                ticket.last_contact_agent_at = at
                ticket.first_response_at = ticket.first_response_at or at
        self._touch(ticket, at, author_id)
        return article.id

    def _touch(self, ticket: _Ticket, at: datetime, by: int) -> None:
        ticket.updated_at = max(ticket.updated_at, at)
        ticket.updated_by_id = by
        versions = self.snapshots.setdefault(ticket.id, [])
        snapshot = self.ticket_json(ticket, expand=True)
        if versions and versions[-1][0] == ticket.updated_at:
            versions[-1] = (ticket.updated_at, snapshot)
        else:
            versions.append((ticket.updated_at, snapshot))

    def ticket_json(self, t: _Ticket, *, expand: bool) -> dict[str, Any]:
        """A ticket as the API renders it (``expand``: with association names)."""
        count = len(self.articles_of(t.id))
        body: dict[str, Any] = {
            "id": t.id, "group_id": t.group_id, "priority_id": t.priority_id,
            "state_id": t.state_id, "organization_id": None, "number": t.number,
            "title": t.title, "owner_id": t.owner_id, "customer_id": t.customer_id,
            "note": None, "first_response_at": _iso(t.first_response_at),
            "first_response_escalation_at": None, "first_response_in_min": None,
            "first_response_diff_in_min": None, "close_at": _iso(t.close_at),
            "close_escalation_at": None, "close_in_min": None, "close_diff_in_min": None,
            "update_escalation_at": None, "update_in_min": None, "update_diff_in_min": None,
            "last_close_at": _iso(t.last_close_at), "last_contact_at": _iso(t.last_contact_at),
            "last_contact_agent_at": _iso(t.last_contact_agent_at),
            "last_contact_customer_at": _iso(t.last_contact_customer_at),
            "last_owner_update_at": None, "create_article_type_id": t.create_article_type_id,
            "create_article_sender_id": t.create_article_sender_id, "article_count": count,
            "escalation_at": None, "pending_time": None, "type": None, "time_unit": None,
            "preferences": {}, "updated_by_id": t.updated_by_id,
            "created_by_id": t.created_by_id, "created_at": _iso(t.created_at),
            "updated_at": _iso(t.updated_at),
        }
        if expand:
            body.update({
                "article_ids": [a.id for a in self.articles_of(t.id)],
                "ticket_time_accounting_ids": [], "group": self.groups[t.group_id],
                "organization": None, "ticket_time_accounting": [],
                "state": STATES[t.state_id], "priority": PRIORITIES[t.priority_id],
                "owner": self.users[t.owner_id].login,
                "customer": self.users[t.customer_id].login,
                "created_by": self.users[t.created_by_id].login,
                "updated_by": self.users[t.updated_by_id].login,
                "create_article_type": TYPES[t.create_article_type_id],
                "create_article_sender": SENDERS[t.create_article_sender_id],
            })
        return body


def _error(status: type[web.HTTPException], message: str) -> NoReturn:
    raise status(text=json.dumps({"error": message, "error_human": message}),
                 content_type="application/json")


def _number(text: str | None, default: int, low: int, high: int | None = None) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) < low:
        _error(web.HTTPUnprocessableEntity, f"Invalid value {text!r}")
    return int(text) if high is None else min(int(text), high)


class ZammadFake:
    """A real aiohttp application that behaves like Zammad's REST API for replywatch's routes."""

    def __init__(
        self,
        world: ZammadWorld,
        *,
        token: str = "fake-token",
        agent_email: str = "ops@acme.example",
        index_delay: float = 0.0,
    ) -> None:
        self.world = world
        self.token = token
        self.index_delay = index_delay
        self.controls = FakeControls()
        known = [u.id for u in world.users.values() if u.email == agent_email]
        self.me_id = known[0] if known else world.add_user("Ops", "Agent", agent_email,
                                                           role="Admin")

    def app(self) -> web.Application:
        """The aiohttp application; serve it with ``connectors.fakes._base.serve``."""
        app = web.Application(middlewares=[controls_middleware(self.controls)])
        app.on_response_prepare.append(self._date_header)
        app.router.add_get("/api/v1/tickets/search", self._search)
        app.router.add_get("/api/v1/tickets", self._index)
        app.router.add_get("/api/v1/ticket_articles/by_ticket/{id}", self._articles)
        app.router.add_get("/api/v1/users/me", self._me)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_datetime(self.world.now().astimezone(UTC), usegmt=True)

    def _authenticate(self, request: web.Request) -> None:
        if request.headers.get("Authorization", "") != f"Token token={self.token}":
            _error(web.HTTPUnauthorized, "Invalid token!")

    def _indexed(self) -> list[dict[str, Any]]:
        """Each ticket's newest version the index has received by now."""
        visible_until = self.world.now() - timedelta(seconds=self.index_delay)
        found = []
        for ticket_id, versions in self.world.snapshots.items():
            if ticket_id not in self.world.tickets:
                continue
            ready = [snapshot for at, snapshot in versions if at <= visible_until]
            if ready:
                found.append(copy.deepcopy(ready[-1]))
        return found

    async def _search(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        query = request.query.get("query", "").strip()
        page = _number(request.query.get("page"), 1, 1)
        per_page = _number(request.query.get("per_page"), DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        sort_by = request.query.get("sort_by", "updated_at")
        order_by = request.query.get("order_by", "desc")
        if sort_by not in ("updated_at", "created_at", "id") or order_by not in ("asc", "desc"):
            _error(web.HTTPUnprocessableEntity, "Invalid sort_by or order_by")
        if page * per_page > RESULT_WINDOW:
            _error(web.HTTPUnprocessableEntity,
                   f"Result window is too large, from + size must be <= {RESULT_WINDOW}")
        tickets = self._indexed()
        match = _SINCE.fullmatch(query)
        if match is not None:
            try:
                since = parse_instant(match[1].replace("\\:", ":"), "updated_at")
            except ValueError:
                _error(web.HTTPUnprocessableEntity, "Unable to parse the search query")
            tickets = [t for t in tickets if parse_instant(t["updated_at"]) >= since]
        elif query and query != "*":
            needle = query.lower()
            tickets = [t for t in tickets
                       if needle in t["title"].lower() or needle == t["number"]]
        tickets.sort(key=lambda t: (t[sort_by], t["id"]), reverse=order_by == "desc")
        start = (page - 1) * per_page
        chunk = tickets[start:start + per_page]
        if request.query.get("expand") == "true":
            return web.json_response(chunk)
        return web.json_response({
            "tickets": [t["id"] for t in chunk], "tickets_count": len(chunk), "assets": {},
        })

    async def _index(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        page = _number(request.query.get("page"), 1, 1)
        per_page = _number(request.query.get("per_page"), DEFAULT_PER_PAGE, 1, 100)
        ordered = sorted(self.world.tickets.values(), key=lambda t: t.id)
        start = (page - 1) * per_page
        expand = request.query.get("expand") == "true"
        return web.json_response([self.world.ticket_json(t, expand=expand)
                                  for t in ordered[start:start + per_page]])

    async def _articles(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        text = request.match_info["id"]
        ticket = self.world.tickets.get(int(text)) if text.isdigit() else None
        if ticket is None:
            _error(web.HTTPNotFound, f"Couldn't find Ticket with 'id'={text}")
        thread = sorted(self.world.articles_of(ticket.id),
                        key=lambda a: (a.created_at, a.id))
        return web.json_response([self._article_json(a) for a in thread])

    async def _me(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        me = self.world.users[self.me_id]
        return web.json_response({
            "id": me.id, "organization_id": None, "login": me.login,
            "firstname": me.firstname, "lastname": me.lastname, "email": me.email,
            "image": None, "web": "", "phone": "", "fax": "", "mobile": "", "department": "",
            "street": "", "zip": "", "city": "", "country": "", "address": "", "vip": False,
            "verified": False, "active": True, "note": "", "last_login": None, "source": None,
            "login_failed": 0, "out_of_office": False, "preferences": {},
            "updated_by_id": 1, "created_by_id": 1, "created_at": _iso(me.created_at),
            "updated_at": _iso(me.created_at), "role_ids": [1, 2] if me.role == "Admin" else [2],
            "organization_ids": [], "group_ids": {"1": ["full"]},
        })

    def _article_json(self, a: _Article) -> dict[str, Any]:
        author = self.world.users[a.created_by_id]
        body = a.body if a.content_type == "text/plain" else f"<div>{html.escape(a.body)}</div>"
        return {
            "id": a.id, "ticket_id": a.ticket_id, "type_id": a.type_id,
            "sender_id": a.sender_id, "from": a.sender_from, "to": a.to, "cc": None,
            "subject": a.subject, "reply_to": None, "message_id": None,
            "message_id_md5": None, "in_reply_to": None, "content_type": a.content_type,
            "references": None, "body": body, "internal": a.internal, "preferences": {},
            "updated_by_id": a.created_by_id, "created_by_id": a.created_by_id,
            "origin_by_id": None, "created_at": _iso(a.created_at),
            "updated_at": _iso(a.created_at), "attachments": [],
            "type": TYPES[a.type_id], "sender": SENDERS[a.sender_id],
            "created_by": author.login, "updated_by": author.login, "time_unit": None,
        }


def contract_case() -> ContractCase:
    """The Zammad fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = ZammadWorld(now=clock)
    fake = ZammadFake(world)
    customer = world.add_user("Casey", "Customer", "casey@example.com")
    agent = world.add_user("Kim", "Agent", "kim@acme.example", role="Agent")
    tickets: list[int] = []

    def seed() -> None:
        ticket = world.create_ticket(customer_id=customer, title="Order never arrived",
                                     body="My order never arrived",
                                     at=clock() - timedelta(minutes=30))
        world.update(ticket, at=clock() - timedelta(minutes=25), by=agent, owner_id=agent,
                     state="open")
        world.add_article(ticket, author_id=agent, body="Sorry! A new one ships today.",
                          at=clock() - timedelta(minutes=20))
        world.update(ticket, at=clock() - timedelta(minutes=20), by=agent,
                     state="pending close")
        tickets.append(ticket)

    def add_activity() -> None:
        world.add_article(tickets[-1], author_id=customer, body="Still waiting on that order",
                          at=clock(), sender="Customer")

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="zammad",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-zammad", "kind": "zammad",
                                   "url": "https://support.acme.example",
                                   "token": "fake-token", "base_url": base_url},
        bad_settings={"name": "acme-zammad", "kind": "zammad", "url": "support.acme.example",
                      "token": "t"},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
