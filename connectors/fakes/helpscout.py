"""Provides a faithful fake of Help Scout's Mailbox API 2.0: OAuth2, conversations, threads.

Served routes, with Help Scout's HAL shapes (``_embedded``, ``_links``, ``page``):

- ``POST /v2/oauth2/token``: the client-credentials grant (form-encoded
  ``grant_type``, ``client_id``, ``client_secret``) answers ``{"token_type": "bearer",
  "access_token": …, "expires_in": …}``; wrong credentials answer 401
  ``{"error": "invalid_client"}``. A token dies after ``expires_in`` seconds of the
  world's clock, and every data route answers 401 to a missing, unknown or dead token.
- ``GET /v2/conversations``: ``status`` (``active`` by default, ``all``, ``pending``,
  ``closed``, ``spam``), ``mailbox`` (comma-separated ids), ``modifiedSince`` (whole
  seconds, inclusive), ``sortField`` (``createdAt`` by default, ``modifiedAt``,
  ``number``), ``sortOrder`` (``desc`` by default), ``page``; 25 a page. Drafts and
  deleted conversations are not listed, and ``modifiedAt`` is not in the payload, as
  in Help Scout.
- ``GET /v2/conversations/{id}/threads`` and ``/v3/...``: 50 a page, newest first; v2
  reports an AI system user as ``user``, v3 as ``system_user``. Unknown ids are 404.
- ``GET /v2/mailboxes`` and ``GET /v2/users/me`` (the user whose app the token is for).

Every answer carries ``X-RateLimit-Limit-Minute`` / ``X-RateLimit-Remaining-Minute``
over a sliding minute; past the limit it is 429 with ``X-RateLimit-Retry-After`` (and no
``Retry-After``, as Help Scout). Every response has a ``Date`` from the world's clock.
Scripted faults come from ``controls`` (``connectors.fakes._base``).

The world follows Help Scout's rules where they matter to SLAs: a customer's thread
makes the conversation ``active`` again, a reply can set the status (pending, closed),
status and assignment changes by hand are ``lineitem`` threads, and every change moves
the conversation's (hidden) ``modifiedAt``.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from monitor.events import parse_instant

ConversationStatus = Literal["active", "pending", "closed", "spam"]
STATUSES = ("active", "pending", "closed", "spam")
LIST_PAGE = 25
THREAD_PAGE = 50
OTHER_PAGE = 50
WINDOW_SECONDS = 60
HAL = "application/hal+json"


@dataclass
class _Person:
    id: int
    first: str
    last: str
    email: str | None
    kind: Literal["user", "customer", "system_user"]

    def json(self, *, api: str = "v3") -> dict[str, Any]:
        kind = "user" if api == "v2" and self.kind == "system_user" else self.kind
        return {"id": self.id, "type": kind, "first": self.first, "last": self.last,
                "email": self.email}


@dataclass
class _Thread:
    id: int
    type: str
    status: str
    state: str
    body: str | None
    created_by: _Person
    customer: _Person
    assigned_to: _Person | None
    created_at: datetime
    action: dict[str, Any] | None = None
    source_type: str = "email"


@dataclass
class _Conversation:
    id: int
    number: int
    mailbox_id: int
    subject: str
    channel: str
    status: str
    state: str
    customer: _Person
    created_by: _Person
    created_at: datetime
    modified_at: datetime
    user_updated_at: datetime
    assignee: _Person | None = None
    closed_at: datetime | None = None
    closed_by: int | None = None
    waiting_since: datetime | None = None
    tags: list[str] = field(default_factory=list)
    threads: list[_Thread] = field(default_factory=list)


class HelpScoutWorld:
    """The in-memory Help Scout account the fake serves; tests and the demo fill it."""

    def __init__(self, *, now: Callable[[], datetime]) -> None:
        self.now = now
        self.mailboxes: dict[int, str] = {}
        self.people: dict[int, _Person] = {}
        self.conversations: dict[int, _Conversation] = {}
        self._mailbox_ids = itertools.count(301)
        self._user_ids = itertools.count(4001)
        self._customer_ids = itertools.count(700_001)
        self._conversation_ids = itertools.count(2_000_001)
        self._numbers = itertools.count(1001)
        self._thread_ids = itertools.count(9_000_000_001)
        self._tag_ids: dict[str, int] = {}

    # people and places -----------------------------------------------------------------

    def add_mailbox(self, name: str) -> int:
        """Add a mailbox and return its id."""
        mailbox_id = next(self._mailbox_ids)
        self.mailboxes[mailbox_id] = name
        return mailbox_id

    def add_user(self, first: str, last: str, email: str | None = None, *,
                 ai: bool = False) -> int:
        """Add a user (an agent; ``ai=True``: Help Scout's AI system user) and return its id."""
        user_id = next(self._user_ids)
        self.people[user_id] = _Person(user_id, first, last, email,
                                       "system_user" if ai else "user")
        return user_id

    def add_customer(self, first: str, last: str, email: str | None = None) -> int:
        """Add a customer and return its id."""
        customer_id = next(self._customer_ids)
        self.people[customer_id] = _Person(customer_id, first, last, email, "customer")
        return customer_id

    # conversations -------------------------------------------------------------------

    def create_conversation(
        self,
        *,
        customer_id: int,
        mailbox_id: int,
        subject: str,
        body: str,
        at: datetime,
        channel: str = "email",
        tags: Sequence[str] = (),
    ) -> int:
        """A customer writes in; return the new conversation's id."""
        customer = self._person(customer_id, "customer")
        if mailbox_id not in self.mailboxes:
            raise KeyError(f"no mailbox {mailbox_id}")
        at = whole_seconds(at)
        conversation = _Conversation(
            id=next(self._conversation_ids), number=next(self._numbers), mailbox_id=mailbox_id,
            subject=subject, channel=channel, status="active", state="published",
            customer=customer, created_by=customer, created_at=at, modified_at=at,
            user_updated_at=at, waiting_since=at, tags=list(dict.fromkeys(tags)),
        )
        self.conversations[conversation.id] = conversation
        self._add(conversation, "customer", customer, body, at, status="active",
                  source_type=channel)
        return conversation.id

    def customer_reply(self, conversation_id: int, *, body: str, at: datetime) -> int:
        """The customer writes again, which makes the conversation active; return the thread id."""
        conversation = self._conversation(conversation_id)
        at = whole_seconds(at)
        conversation.status = "active"
        conversation.closed_at = None
        conversation.waiting_since = conversation.waiting_since or at
        return self._add(conversation, "customer", conversation.customer, body, at,
                         status="active")

    def reply(
        self,
        conversation_id: int,
        *,
        user_id: int,
        body: str,
        at: datetime,
        status: ConversationStatus | None = None,
        draft: bool = False,
    ) -> int:
        """A user (or the AI) replies, optionally setting the status; return the thread id."""
        conversation = self._conversation(conversation_id)
        user = self._person(user_id, "user")
        at = whole_seconds(at)
        thread_id = self._add(conversation, "reply", user, body, at,
                              status=status or "nochange", state="draft" if draft else "published")
        if not draft:
            self._agent_touched(conversation, user, at, status)
        return thread_id

    def publish(self, conversation_id: int, thread_id: int, *, at: datetime) -> None:
        """Send a draft reply: it keeps its id and creation time, as it was written then."""
        conversation = self._conversation(conversation_id)
        thread = next(t for t in conversation.threads if t.id == thread_id)
        thread.state = "published"
        self._agent_touched(conversation, thread.created_by, whole_seconds(at), None)

    def add_note(self, conversation_id: int, *, user_id: int, body: str, at: datetime) -> int:
        """A user adds an internal note; return the thread id."""
        conversation = self._conversation(conversation_id)
        user = self._person(user_id, "user")
        at = whole_seconds(at)
        thread_id = self._add(conversation, "note", user, body, at, status="nochange")
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)
        return thread_id

    def change_status(self, conversation_id: int, *, user_id: int, status: ConversationStatus,
                      at: datetime, workflow: bool = False) -> int:
        """Change the status by hand (or by an automatic workflow): a ``lineitem`` thread."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        conversation = self._conversation(conversation_id)
        user = self._person(user_id, "user")
        at = whole_seconds(at)
        action: dict[str, Any] = {
            "type": "automatic-workflow" if workflow else "changed-ticket-status",
            "text": f"{user.first} marked as {status.title()}", "associatedEntities": {},
        }
        thread_id = self._add(conversation, "lineitem", user, None, at, status=status,
                              action=action)
        self._set_status(conversation, user, status, at)
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)
        return thread_id

    def assign(self, conversation_id: int, *, user_id: int, assignee_id: int | None,
               at: datetime) -> int:
        """(Un)assign the conversation: a ``lineitem`` thread; return its id."""
        conversation = self._conversation(conversation_id)
        user = self._person(user_id, "user")
        conversation.assignee = None if assignee_id is None else self._person(assignee_id, "user")
        at = whole_seconds(at)
        name = "nobody" if conversation.assignee is None else conversation.assignee.first
        action = {"type": "changed-ticket-assignee", "text": f"{user.first} assigned to {name}",
                  "associatedEntities": {}}
        thread_id = self._add(conversation, "lineitem", user, None, at, status="nochange",
                              action=action)
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)
        return thread_id

    def set_tags(self, conversation_id: int, tags: Sequence[str], *, at: datetime) -> None:
        """Replace the tags (no thread, as in Help Scout)."""
        conversation = self._conversation(conversation_id)
        at = whole_seconds(at)
        conversation.tags = list(dict.fromkeys(tags))
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)

    def set_subject(self, conversation_id: int, subject: str, *, at: datetime) -> None:
        """Change the subject (no thread)."""
        conversation = self._conversation(conversation_id)
        at = whole_seconds(at)
        conversation.subject = subject
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)

    def delete(self, conversation_id: int, *, at: datetime) -> None:
        """Delete the conversation: it is no longer listed."""
        conversation = self._conversation(conversation_id)
        conversation.state = "deleted"
        conversation.modified_at = max(conversation.modified_at, whole_seconds(at))

    # internals -----------------------------------------------------------------------

    def _person(self, person_id: int, kind: str) -> _Person:
        person = self.people.get(person_id)
        if person is None:
            raise KeyError(f"no {kind} {person_id}")
        if (kind == "customer") != (person.kind == "customer"):
            raise ValueError(f"{person_id} is not a {kind}")
        return person

    def _conversation(self, conversation_id: int) -> _Conversation:
        return entry(self.conversations, conversation_id, "conversation")

    def _add(self, conversation: _Conversation, kind: str, author: _Person, body: str | None,
             at: datetime, *, status: str, state: str = "published",
             action: dict[str, Any] | None = None, source_type: str = "email") -> int:
        thread = _Thread(
            id=next(self._thread_ids), type=kind, status=status, state=state, body=body,
            created_by=author, customer=conversation.customer,
            assigned_to=conversation.assignee, created_at=at, action=action,
            source_type=source_type,
        )
        conversation.threads.append(thread)
        if state == "published":
            conversation.modified_at = max(conversation.modified_at, at)
        return thread.id

    def _agent_touched(self, conversation: _Conversation, user: _Person, at: datetime,
                       status: str | None) -> None:
        conversation.waiting_since = None
        conversation.modified_at = max(conversation.modified_at, at)
        conversation.user_updated_at = max(conversation.user_updated_at, at)
        if status is not None:
            self._set_status(conversation, user, status, at)

    @staticmethod
    def _set_status(conversation: _Conversation, user: _Person, status: str,
                    at: datetime) -> None:
        conversation.status = status
        if status == "closed":
            conversation.closed_at, conversation.closed_by = at, user.id
        else:
            conversation.closed_at, conversation.closed_by = None, None

    def tag_id(self, tag: str) -> int:
        """A stable id for a tag name."""
        return self._tag_ids.setdefault(tag, 9100 + len(self._tag_ids))


def _error(status: type[web.HTTPException], body: dict[str, Any],
           headers: dict[str, str] | None = None) -> NoReturn:
    raise status(text=json.dumps(body), content_type="application/json", headers=headers)


def _hal(body: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body), content_type=HAL)


class HelpScoutFake:
    """A real aiohttp application that behaves like Help Scout's Mailbox API 2.0."""

    def __init__(
        self,
        world: HelpScoutWorld,
        *,
        client_id: str = "fake-app-id",
        client_secret: str = "fake-app-secret",
        owner_id: int | None = None,
        rate_limit: int | None = 400,
        expires_in: int = 172_800,
        list_page_size: int = LIST_PAGE,
        thread_page_size: int = THREAD_PAGE,
    ) -> None:
        self.world = world
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit = rate_limit
        self.expires_in = expires_in
        self.list_page_size = list_page_size
        self.thread_page_size = thread_page_size
        self.controls = FakeControls()
        self.tokens: dict[str, datetime] = {}
        self._times: deque[datetime] = deque()
        self.owner_id = owner_id if owner_id is not None else world.add_user(
            "Ops", "Owner", "ops@acme.example")

    def app(self) -> web.Application:
        """The aiohttp application; serve it with ``connectors.fakes._base.serve``."""
        app = fake_app(self.controls, self.world.now, self._limits)
        app.router.add_post("/v2/oauth2/token", self._token)
        app.router.add_get("/v2/conversations", self._conversations)
        app.router.add_get("/v2/conversations/{id}/threads", self._threads)
        app.router.add_get("/v3/conversations/{id}/threads", self._threads)
        app.router.add_get("/v2/mailboxes", self._mailboxes)
        app.router.add_get("/v2/users/me", self._me)
        return app

    def revoke_tokens(self) -> None:
        """Forget every token handed out (as when the app's secret is regenerated)."""
        self.tokens.clear()

    def expire_tokens(self) -> None:
        """Make every token handed out dead from now on."""
        self.tokens = dict.fromkeys(self.tokens, self.world.now())

    @web.middleware
    async def _limits(self, request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if self.rate_limit is None:
            response: web.StreamResponse = await handler(request)
            return response
        now = self.world.now()
        while self._times and (now - self._times[0]).total_seconds() >= WINDOW_SECONDS:
            self._times.popleft()
        if len(self._times) >= self.rate_limit:
            wait = WINDOW_SECONDS - (now - self._times[0]).total_seconds()
            _error(web.HTTPTooManyRequests, {"message": "Rate limit exceeded"}, headers={
                "X-RateLimit-Limit-Minute": str(self.rate_limit),
                "X-RateLimit-Remaining-Minute": "0",
                "X-RateLimit-Retry-After": str(max(1, math.ceil(wait))),
            })
        self._times.append(now)
        remaining = str(self.rate_limit - len(self._times))
        try:
            response = await handler(request)
        except web.HTTPException as err:
            err.headers["X-RateLimit-Limit-Minute"] = str(self.rate_limit)
            err.headers["X-RateLimit-Remaining-Minute"] = remaining
            raise
        response.headers["X-RateLimit-Limit-Minute"] = str(self.rate_limit)
        response.headers["X-RateLimit-Remaining-Minute"] = remaining
        return response

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            _error(web.HTTPBadRequest, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get(
                "client_secret") != self.client_secret:
            _error(web.HTTPUnauthorized, {"error": "invalid_client",
                                          "error_description": "Bad client credentials"})
        token = secrets.token_hex(16)
        self.tokens[token] = self.world.now() + timedelta(seconds=self.expires_in)
        return web.json_response({"token_type": "bearer", "access_token": token,
                                  "expires_in": self.expires_in})

    def _authorize(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        until = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if until is None or self.world.now() >= until:
            _error(web.HTTPUnauthorized, {"error": "invalid_token",
                                          "error_description": "Access token is invalid"},
                   headers={"WWW-Authenticate": 'Bearer realm="api"'})

    @staticmethod
    def _page(request: web.Request) -> int:
        text = request.query.get("page", "1")
        if not text.isdigit() or int(text) < 1:
            _error(web.HTTPBadRequest, {"message": "page must be a positive integer"})
        return int(text)

    @staticmethod
    def _links(request: web.Request, number: int, total: int) -> dict[str, Any]:
        base = request.url.with_query({k: v for k, v in request.query.items() if k != "page"})

        def at(page: int) -> dict[str, str]:
            return {"href": str(base.update_query(page=str(page)))}

        links: dict[str, Any] = {"self": at(number), "first": at(1), "last": at(max(1, total)),
                                 "page": {"href": f"{base}{{?page}}", "templated": True}}
        if number < total:
            links["next"] = at(number + 1)
        if number > 1:
            links["previous"] = at(number - 1)
        return links

    async def _conversations(self, request: web.Request) -> web.Response:
        self._authorize(request)
        query = request.query
        status = query.get("status", "active")
        if status not in (*STATUSES, "all", "open"):
            _error(web.HTTPBadRequest, {"message": f"Invalid status {status}"})
        wanted = {"all": set(STATUSES), "open": {"active", "pending"}}.get(status, {status})
        mailboxes: set[int] | None = None
        if "mailbox" in query:
            parts = query["mailbox"].split(",")
            if not all(p.strip().isdigit() for p in parts):
                _error(web.HTTPBadRequest, {"message": "mailbox must be ids"})
            mailboxes = {int(p) for p in parts}
        since: datetime | None = None
        if "modifiedSince" in query:
            try:
                since = parse_instant(query["modifiedSince"], "modifiedSince")
            except ValueError:
                _error(web.HTTPBadRequest, {"message": "modifiedSince must be ISO 8601 UTC"})
        sort_field = query.get("sortField", "createdAt")
        keys: dict[str, Callable[[_Conversation], Any]] = {
            "createdAt": lambda c: (c.created_at, c.id),
            "modifiedAt": lambda c: (c.modified_at, c.id),
            "number": lambda c: (c.number, c.id),
        }
        if sort_field not in keys or query.get("sortOrder", "desc") not in ("asc", "desc"):
            _error(web.HTTPBadRequest, {"message": "Invalid sort"})
        number = self._page(request)
        matching = sorted(
            (c for c in self.world.conversations.values()
             if c.state == "published" and c.status in wanted
             and (mailboxes is None or c.mailbox_id in mailboxes)
             and (since is None or c.modified_at >= since)),
            key=keys[sort_field], reverse=query.get("sortOrder", "desc") == "desc",
        )
        size = self.list_page_size
        total_pages = math.ceil(len(matching) / size)
        page = matching[(number - 1) * size: number * size]
        body: dict[str, Any] = {
            "_embedded": {"conversations": [self._conversation_json(request, c) for c in page]},
            "_links": self._links(request, number, total_pages),
            "page": {"size": size, "totalElements": len(matching), "totalPages": total_pages,
                     "number": number},
        }
        return _hal(body)

    async def _threads(self, request: web.Request) -> web.Response:
        self._authorize(request)
        text = request.match_info["id"]
        conversation = self.world.conversations.get(int(text)) if text.isdigit() else None
        if conversation is None or conversation.state == "deleted":
            _error(web.HTTPNotFound, {"message": "Conversation not found"})
        api = "v3" if request.path.startswith("/v3/") else "v2"
        number = self._page(request)
        threads = sorted(conversation.threads, key=lambda t: (t.created_at, t.id), reverse=True)
        size = self.thread_page_size
        total_pages = math.ceil(len(threads) / size)
        page = threads[(number - 1) * size: number * size]
        return _hal({
            "_embedded": {"threads": [self._thread_json(request, conversation, t, api)
                                      for t in page]},
            "_links": self._links(request, number, total_pages),
            "page": {"size": size, "totalElements": len(threads), "totalPages": total_pages,
                     "number": number},
        })

    async def _mailboxes(self, request: web.Request) -> web.Response:
        self._authorize(request)
        number = self._page(request)
        items = sorted(self.world.mailboxes.items())
        total_pages = math.ceil(len(items) / OTHER_PAGE)
        page = items[(number - 1) * OTHER_PAGE: number * OTHER_PAGE]
        origin = request.url.origin()
        return _hal({
            "_embedded": {"mailboxes": [
                {"id": mailbox_id, "name": name, "slug": f"{mailbox_id:x}",
                 "email": f"{name.lower().replace(' ', '-')}@acme.example",
                 "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z",
                 "_links": {"self": {"href": f"{origin}/v2/mailboxes/{mailbox_id}"}}}
                for mailbox_id, name in page]},
            "_links": self._links(request, number, total_pages),
            "page": {"size": OTHER_PAGE, "totalElements": len(items),
                     "totalPages": total_pages, "number": number},
        })

    async def _me(self, request: web.Request) -> web.Response:
        self._authorize(request)
        owner = self.world.people[self.owner_id]
        return _hal({
            "id": owner.id, "firstName": owner.first, "lastName": owner.last,
            "email": owner.email, "role": "owner", "timezone": "UTC", "type": "user",
            "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z",
            "_links": {"self": {"href": f"{request.url.origin()}/v2/users/{owner.id}"}},
        })

    def _conversation_json(self, request: web.Request, c: _Conversation) -> dict[str, Any]:
        origin = request.url.origin()
        published = [t for t in c.threads if t.state == "published" and t.type != "lineitem"]
        body: dict[str, Any] = {
            "id": c.id, "number": c.number, "threads": len(published), "type": c.channel,
            "folderId": 11, "status": c.status, "state": c.state, "subject": c.subject,
            "preview": (published[-1].body or "")[:185] if published else "",
            "mailboxId": c.mailbox_id,
            "createdBy": {"id": c.created_by.id, "type": c.created_by.kind,
                          "email": c.created_by.email},
            "createdAt": iso_seconds(c.created_at), "userUpdatedAt": iso_seconds(c.user_updated_at),
            "source": {"type": c.channel, "via": "customer"},
            "tags": [{"id": self.world.tag_id(t), "color": "#929499", "tag": t} for t in c.tags],
            "cc": [], "bcc": [],
            "primaryCustomer": {**c.customer.json(), "type": "customer"},
            "customFields": [],
            "_links": {
                "mailbox": {"href": f"{origin}/v2/mailboxes/{c.mailbox_id}"},
                "self": {"href": f"{origin}/v2/conversations/{c.id}"},
                "threads": {"href": f"{origin}/v2/conversations/{c.id}/threads"},
                "web": {"href": f"https://secure.helpscout.net/conversation/{c.id}/{c.number}/"},
            },
        }
        if c.assignee is not None:
            body["assignee"] = c.assignee.json(api="v2")
        if c.closed_at is not None:
            body["closedAt"], body["closedBy"] = iso_seconds(c.closed_at), c.closed_by
        if c.waiting_since is not None:
            body["customerWaitingSince"] = {"time": iso_seconds(c.waiting_since),
                                            "friendly": "a while ago",
                                            "latestReplyFrom": "customer"}
        return body

    def _thread_json(self, request: web.Request, c: _Conversation, t: _Thread,
                     api: str) -> dict[str, Any]:
        origin = request.url.origin()
        body: dict[str, Any] = {
            "id": t.id, "type": t.type, "status": t.status, "state": t.state,
            "source": {"type": t.source_type,
                       "via": "customer" if t.created_by.kind == "customer" else "user"},
            "customer": t.customer.json(), "createdBy": t.created_by.json(api=api),
            "to": [], "cc": [], "bcc": [], "createdAt": iso_seconds(t.created_at),
            "_embedded": {"attachments": []},
            "_links": {"createdByUser" if t.created_by.kind != "customer" else
                       "createdByCustomer": {
                           "href": f"{origin}/v2/users/{t.created_by.id}"}},
        }
        if t.body is not None:
            body["body"] = (t.body if t.type == "chat"
                            else f"<div>{html.escape(t.body)}</div>")
        if t.action is not None:
            body["action"] = dict(t.action)
        if t.assigned_to is not None:
            body["assignedTo"] = t.assigned_to.json(api=api)
        return body


def contract_case() -> ContractCase:
    """The Help Scout fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = HelpScoutWorld(now=clock)
    fake = HelpScoutFake(world)
    support = world.add_mailbox("Support")
    customer = world.add_customer("Casey", "Customer", "casey@example.com")
    agent = world.add_user("Kim", "Agent", "kim@acme.example")
    conversations: list[int] = []

    def seed() -> None:
        conversation = world.create_conversation(
            customer_id=customer, mailbox_id=support, subject="Order never arrived",
            body="My order never arrived", at=clock() - timedelta(minutes=30))
        world.assign(conversation, user_id=agent, assignee_id=agent,
                     at=clock() - timedelta(minutes=25))
        world.reply(conversation, user_id=agent, body="Sorry! A new one ships today.",
                    at=clock() - timedelta(minutes=20), status="pending")
        conversations.append(conversation)

    def add_activity() -> None:
        world.customer_reply(conversations[-1], body="Still waiting on that order", at=clock())

    def revoke() -> None:
        fake.client_secret = "regenerated-secret"
        fake.revoke_tokens()

    return ContractCase(
        kind="helpscout",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-helpscout", "kind": "helpscout",
                                   "client_id": fake.client_id,
                                   "client_secret": "fake-app-secret", "base_url": base_url},
        bad_settings={"name": "acme-helpscout", "kind": "helpscout", "client_id": "x",
                      "client_secret": "y", "api_key": "z"},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
