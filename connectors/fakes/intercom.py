"""Provides a faithful fake of Intercom's REST API 2.x: conversation search, parts, admins.

Served routes, with Intercom's shapes (``type`` on every object, epoch-second times):

- ``POST /conversations/search``: a JSON body with ``query`` (one ``{field, operator,
  value}`` or ``{operator: AND|OR, value: [...]}``; operators ``=``, ``!=``, ``<``,
  ``>``, ``IN``, ``NIN`` on ``id``, ``created_at``, ``updated_at``, ``state``, ``open``,
  ``priority``, ``admin_assignee_id``, ``team_assignee_id``), ``sort`` (``updated_at`` or
  ``created_at``, ``ascending`` / ``descending``) and ``pagination`` (``per_page`` up to
  150, ``starting_after``). Pages are keyset cursors over the sort, so paging never
  skips; ``pages.next.starting_after`` is absent on the last page. Results carry no
  parts, only ``conversation_parts.total_count`` and ``statistics``.
- ``GET /conversations/{id}``: the conversation with its ``conversation_parts`` (the 500
  most recent); ``display_as=plaintext`` gives bodies as text instead of HTML. Unknown
  ids are 404 ``not_found``.
- ``GET /me``, ``GET /admins``, ``GET /teams``.

Bad or missing tokens answer 401 ``{"type": "error.list", "errors": [{"code":
"unauthorized", ...}]}``. Every answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds) for a window of
``window`` seconds (Intercom spreads its per-minute limit over 10-second windows); past
the limit it is 429 ``rate_limit_exceeded`` without ``Retry-After``, as Intercom. Every
response has a ``Date`` from the world's clock; the ``Intercom-Version`` header of each
request is logged, and so is every search body (``searches``). Scripted faults come
from ``controls`` (``connectors.fakes._base``).

The world follows Intercom's rules where they matter to SLAs: a contact's reply reopens
a closed or snoozed conversation, closing, reopening, snoozing and assigning are parts,
and every change moves ``updated_at``.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import math
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
)
from monitor.events import require_utc

MAX_PER_PAGE = 150
MAX_PARTS = 500
FIN = "Fin"


def _epoch(at: datetime) -> int:
    return int(require_utc(at, "'at'").timestamp())


@dataclass
class _Person:
    id: str
    type: Literal["admin", "user", "lead", "bot"]
    name: str
    email: str | None
    ai: bool = False

    def author(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "id": self.id, "name": self.name,
                                "email": self.email or ""}
        if self.type == "admin":
            body["from_ai_agent"] = self.ai
            body["is_ai_answer"] = self.ai
        return body


@dataclass
class _Part:
    id: str
    type: str
    body: str | None
    author: _Person
    created_at: int
    assigned_to: dict[str, Any] | None = None


@dataclass
class _Conversation:
    id: str
    created_at: int
    updated_at: int
    contact: _Person
    source_author: _Person
    source_id: str
    body: str
    subject: str
    channel: str
    delivered_as: str
    state: str = "open"
    priority: bool = False
    title: str | None = None
    admin_assignee_id: str | None = None
    team_assignee_id: str | None = None
    waiting_since: int | None = None
    snoozed_until: int | None = None
    tags: list[str] = field(default_factory=list)
    parts: list[_Part] = field(default_factory=list)
    read: bool = False


class IntercomWorld:
    """The in-memory Intercom workspace the fake serves; tests and the demo fill it."""

    def __init__(self, *, now: Callable[[], datetime], app_id: str = "acme1234",
                 app_name: str = "Acme") -> None:
        self.now = now
        self.app_id = app_id
        self.app_name = app_name
        self.people: dict[str, _Person] = {}
        self.teams: dict[str, str] = {}
        self.conversations: dict[str, _Conversation] = {}
        self._admin_ids = itertools.count(5_017_001)
        self._team_ids = itertools.count(814_001)
        self._contact_ids = itertools.count(1)
        self._conversation_ids = itertools.count(215_000_000_001)
        self._part_ids = itertools.count(6_000_000_001)
        self._message_ids = itertools.count(400_000_001)
        self._tag_ids: dict[str, str] = {}
        self.bot = _Person("bot-operator", "bot", "Operator", None)
        self.fin = self.add_admin(FIN, None, ai=True)

    # people and teams ------------------------------------------------------------------

    def add_admin(self, name: str, email: str | None = None, *, ai: bool = False) -> str:
        """Add a teammate (``ai=True``: the Fin AI agent) and return its id."""
        admin_id = str(next(self._admin_ids))
        self.people[admin_id] = _Person(admin_id, "admin", name, email, ai)
        return admin_id

    def add_team(self, name: str) -> str:
        """Add a team and return its id."""
        team_id = str(next(self._team_ids))
        self.teams[team_id] = name
        return team_id

    def add_contact(self, name: str, email: str | None = None, *,
                    role: Literal["user", "lead"] = "user") -> str:
        """Add a contact (a user or a lead) and return its id."""
        contact_id = f"{next(self._contact_ids):024x}"
        self.people[contact_id] = _Person(contact_id, role, name, email)
        return contact_id

    # conversations -------------------------------------------------------------------

    def start_conversation(self, *, contact_id: str, body: str, at: datetime,
                           subject: str = "", channel: str = "conversation") -> str:
        """A contact writes in; return the new conversation's id."""
        contact = self._person(contact_id, ("user", "lead"))
        stamp = _epoch(at)
        conversation = _Conversation(
            id=str(next(self._conversation_ids)), created_at=stamp, updated_at=stamp,
            contact=contact, source_author=contact, source_id=str(next(self._message_ids)),
            body=body, subject=subject, channel=channel, delivered_as="customer_initiated",
            waiting_since=stamp,
        )
        self.conversations[conversation.id] = conversation
        return conversation.id

    def start_outbound(self, *, admin_id: str, contact_id: str, body: str, at: datetime,
                       automated: bool = False) -> str:
        """A teammate (or an automated message) writes first; return the conversation's id."""
        admin = self._person(admin_id, ("admin",))
        contact = self._person(contact_id, ("user", "lead"))
        stamp = _epoch(at)
        conversation = _Conversation(
            id=str(next(self._conversation_ids)), created_at=stamp, updated_at=stamp,
            contact=contact, source_author=admin, source_id=str(next(self._message_ids)),
            body=body, subject="", channel="conversation",
            delivered_as="automated" if automated else "admin_initiated",
        )
        self.conversations[conversation.id] = conversation
        return conversation.id

    def customer_reply(self, conversation_id: str, *, body: str, at: datetime) -> str:
        """The contact writes again, reopening a closed or snoozed conversation."""
        conversation = self._conversation(conversation_id)
        stamp = _epoch(at)
        conversation.state, conversation.snoozed_until = "open", None
        conversation.waiting_since = conversation.waiting_since or stamp
        return self._part(conversation, "comment", conversation.contact, body, stamp)

    def admin_reply(self, conversation_id: str, *, admin_id: str, body: str, at: datetime,
                    close: bool = False) -> str:
        """A teammate (or Fin) replies, closing the conversation if asked; return the part id."""
        conversation = self._conversation(conversation_id)
        admin = self._person(admin_id, ("admin",))
        stamp = _epoch(at)
        conversation.waiting_since = None
        if close:
            conversation.state = "closed"
            return self._part(conversation, "close", admin, body, stamp)
        return self._part(conversation, "comment", admin, body, stamp)

    def bot_reply(self, conversation_id: str, *, body: str, at: datetime) -> str:
        """The Operator bot answers; return the part id."""
        conversation = self._conversation(conversation_id)
        return self._part(conversation, "comment", self.bot, body, _epoch(at))

    def add_note(self, conversation_id: str, *, admin_id: str, body: str, at: datetime) -> str:
        """A teammate adds an internal note; return the part id."""
        conversation = self._conversation(conversation_id)
        return self._part(conversation, "note", self._person(admin_id, ("admin",)), body,
                          _epoch(at))

    def close(self, conversation_id: str, *, admin_id: str, at: datetime) -> str:
        """Close without a message; return the part id."""
        conversation = self._conversation(conversation_id)
        conversation.state = "closed"
        return self._part(conversation, "close", self._person(admin_id, ("admin",)), None,
                          _epoch(at))

    def reopen(self, conversation_id: str, *, admin_id: str, at: datetime) -> str:
        """Reopen; return the part id."""
        conversation = self._conversation(conversation_id)
        conversation.state, conversation.snoozed_until = "open", None
        return self._part(conversation, "open", self._person(admin_id, ("admin",)), None,
                          _epoch(at))

    def snooze(self, conversation_id: str, *, admin_id: str, until: datetime,
               at: datetime) -> str:
        """Snooze until ``until``; return the part id."""
        conversation = self._conversation(conversation_id)
        conversation.state, conversation.snoozed_until = "snoozed", _epoch(until)
        return self._part(conversation, "snoozed", self._person(admin_id, ("admin",)), None,
                          _epoch(at))

    def assign(self, conversation_id: str, *, admin_id: str, at: datetime,
               assignee_id: str | None = None, team_id: str | None = None) -> str:
        """Assign to a teammate or a team (neither: unassign); return the part id."""
        conversation = self._conversation(conversation_id)
        admin = self._person(admin_id, ("admin",))
        if team_id is not None:
            if team_id not in self.teams:
                raise KeyError(f"no team {team_id}")
            conversation.team_assignee_id = team_id
            target: dict[str, Any] = {"type": "team", "id": team_id}
        elif assignee_id is not None:
            self._person(assignee_id, ("admin",))
            conversation.admin_assignee_id = assignee_id
            target = {"type": "admin", "id": assignee_id}
        else:
            conversation.admin_assignee_id = None
            target = {"type": "nobody_admin", "id": None}
        return self._part(conversation, "assignment", admin, None, _epoch(at), target)

    def set_priority(self, conversation_id: str, priority: bool, *, at: datetime) -> None:
        """Mark or unmark as priority (no part)."""
        conversation = self._conversation(conversation_id)
        conversation.priority = priority
        conversation.updated_at = max(conversation.updated_at, _epoch(at))

    def tag(self, conversation_id: str, tags: Sequence[str], *, at: datetime) -> None:
        """Replace the tags (no part)."""
        conversation = self._conversation(conversation_id)
        conversation.tags = list(dict.fromkeys(tags))
        conversation.updated_at = max(conversation.updated_at, _epoch(at))

    def set_title(self, conversation_id: str, title: str, *, at: datetime) -> None:
        """Give the conversation a title (no part)."""
        conversation = self._conversation(conversation_id)
        conversation.title = title
        conversation.updated_at = max(conversation.updated_at, _epoch(at))

    def delete(self, conversation_id: str) -> None:
        """Delete the conversation: it is gone from search and 404 to read."""
        del self.conversations[conversation_id]

    # internals -----------------------------------------------------------------------

    def _person(self, person_id: str, kinds: tuple[str, ...]) -> _Person:
        person = self.people.get(person_id)
        if person is None or person.type not in kinds:
            raise KeyError(f"no {'/'.join(kinds)} {person_id}")
        return person

    def _conversation(self, conversation_id: str) -> _Conversation:
        return entry(self.conversations, conversation_id, "conversation")

    def _part(self, conversation: _Conversation, kind: str, author: _Person, body: str | None,
              stamp: int, assigned_to: dict[str, Any] | None = None) -> str:
        part = _Part(str(next(self._part_ids)), kind, body, author, stamp, assigned_to)
        conversation.parts.append(part)
        conversation.updated_at = max(conversation.updated_at, stamp)
        return part.id

    def tag_id(self, name: str) -> str:
        """A stable id for a tag name."""
        return self._tag_ids.setdefault(name, str(7_000_001 + len(self._tag_ids)))


def _errors(status: type[web.HTTPException], code: str, message: str,
            headers: dict[str, str] | None = None) -> NoReturn:
    body = {"type": "error.list", "request_id": "fake-request",
            "errors": [{"code": code, "message": message}]}
    raise status(text=json.dumps(body), content_type="application/json", headers=headers)


def _encode(position: tuple[int, str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _decode(token: str) -> tuple[int, str, int]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
        stamp, conversation_id, page = value
        if not (isinstance(stamp, int) and isinstance(conversation_id, str)
                and isinstance(page, int)):
            raise ValueError(token)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        _errors(web.HTTPBadRequest, "parameter_invalid", "starting_after is invalid")
    return stamp, conversation_id, page


FIELDS: dict[str, Callable[[_Conversation], Any]] = {
    "id": lambda c: c.id,
    "created_at": lambda c: c.created_at,
    "updated_at": lambda c: c.updated_at,
    "state": lambda c: c.state,
    "open": lambda c: c.state != "closed",
    "priority": lambda c: "priority" if c.priority else "not_priority",
    "admin_assignee_id": lambda c: c.admin_assignee_id,
    "team_assignee_id": lambda c: c.team_assignee_id,
}


def _matches(query: Any, conversation: _Conversation) -> bool:
    """Evaluate a search query; a query Intercom would refuse is a 400."""
    if not isinstance(query, dict):
        _errors(web.HTTPBadRequest, "parameter_invalid", "query must be an object")
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        parts = query.get("value")
        if not isinstance(parts, list) or not parts:
            _errors(web.HTTPBadRequest, "parameter_invalid", f"{operator} needs a list")
        results = [_matches(part, conversation) for part in parts]
        return all(results) if operator == "AND" else any(results)
    name = query.get("field")
    if name not in FIELDS:
        _errors(web.HTTPBadRequest, "parameter_invalid", f"Unsupported field {name!r}")
    actual, wanted = FIELDS[name](conversation), query.get("value")
    if name in ("created_at", "updated_at") and not isinstance(wanted, int | list):
        _errors(web.HTTPBadRequest, "parameter_invalid", f"{name} takes epoch seconds")
    try:
        if operator == "=":
            return bool(actual == wanted)
        if operator == "!=":
            return bool(actual != wanted)
        if operator == ">":
            return actual is not None and bool(actual > wanted)
        if operator == "<":
            return actual is not None and bool(actual < wanted)
        if operator in ("IN", "NIN") and isinstance(wanted, list):
            return (actual in wanted) is (operator == "IN")
    except TypeError:
        pass
    _errors(web.HTTPBadRequest, "parameter_invalid", f"Invalid operator {operator!r}")


class IntercomFake:
    """A real aiohttp application that behaves like Intercom's REST API 2.x."""

    def __init__(
        self,
        world: IntercomWorld,
        *,
        token: str = "fake-intercom-token",
        rate_limit: int | None = 1666,
        window: int = 10,
    ) -> None:
        self.world = world
        self.token = token
        self.rate_limit = rate_limit
        self.window = window
        self.controls = FakeControls()
        self.searches: list[Any] = []
        """The JSON body of every search request, in order."""
        self._window_start: int | None = None
        self._used = 0
        self.me = world.add_admin("Ops Owner", "ops@acme.example")

    def app(self) -> web.Application:
        """The aiohttp application; serve it with ``connectors.fakes._base.serve``."""
        app = fake_app(self.controls, self.world.now, self._guard)
        app.router.add_post("/conversations/search", self._search)
        app.router.add_get("/conversations/{id}", self._conversation)
        app.router.add_get("/me", self._me)
        app.router.add_get("/admins", self._admins)
        app.router.add_get("/teams", self._teams)
        return app

    def _limit_headers(self) -> dict[str, str]:
        assert self.rate_limit is not None
        assert self._window_start is not None
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - self._used)),
                "X-RateLimit-Reset": str(self._window_start + self.window)}

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            _errors(web.HTTPUnauthorized, "unauthorized", "Access Token Invalid")
        if self.rate_limit is None:
            response: web.StreamResponse = await handler(request)
            return response
        now = _epoch(self.world.now())
        if self._window_start is None or now >= self._window_start + self.window:
            self._window_start, self._used = now - now % self.window, 0
        if self._used >= self.rate_limit:
            _errors(web.HTTPTooManyRequests, "rate_limit_exceeded", "Exceeded rate limit",
                    headers=self._limit_headers())
        self._used += 1
        try:
            response = await handler(request)
        except web.HTTPException as err:
            err.headers.update(self._limit_headers())
            raise
        response.headers.update(self._limit_headers())
        return response

    async def _search(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            _errors(web.HTTPBadRequest, "parameter_invalid", "Body is not JSON")
        self.searches.append(body)
        if not isinstance(body, dict) or "query" not in body:
            _errors(web.HTTPBadRequest, "parameter_not_found", "query is required")
        sort = body.get("sort") or {"field": "updated_at", "order": "descending"}
        if (not isinstance(sort, dict) or sort.get("field") not in ("updated_at", "created_at")
                or sort.get("order", "descending") not in ("ascending", "descending")):
            _errors(web.HTTPBadRequest, "parameter_invalid", "Invalid sort")
        pagination = body.get("pagination") or {}
        per_page = pagination.get("per_page", 20) if isinstance(pagination, dict) else None
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            _errors(web.HTTPBadRequest, "parameter_invalid", "per_page must be 1 to 150")
        descending = sort.get("order", "descending") == "descending"
        sort_field = sort["field"]

        def key(c: _Conversation) -> tuple[int, str]:
            return (getattr(c, sort_field), c.id.zfill(20))

        matching = sorted((c for c in self.world.conversations.values()
                           if _matches(body["query"], c)), key=key, reverse=descending)
        number = 1
        after = pagination.get("starting_after")
        if after is not None:
            stamp, last_id, number = _decode(str(after))
            position = (stamp, last_id.zfill(20))
            matching = [c for c in matching
                        if (key(c) < position if descending else key(c) > position)]
        page = matching[:per_page]
        pages: dict[str, Any] = {
            "type": "pages", "page": number, "per_page": per_page,
            "total_pages": number - 1 + max(1, math.ceil(len(matching) / per_page)),
        }
        if len(matching) > per_page:
            last = page[-1]
            pages["next"] = {"page": number + 1, "starting_after": _encode(
                (getattr(last, sort_field), last.id, number + 1))}
        return web.json_response({
            "type": "conversation.list",
            "conversations": [self._conversation_json(c, parts=False, plain=False)
                              for c in page],
            "total_count": len(matching) + (number - 1) * per_page,
            "pages": pages,
        })

    async def _conversation(self, request: web.Request) -> web.Response:
        conversation = self.world.conversations.get(request.match_info["id"])
        if conversation is None:
            _errors(web.HTTPNotFound, "not_found", "Resource Not Found")
        plain = request.query.get("display_as") == "plaintext"
        return web.json_response(self._conversation_json(conversation, parts=True, plain=plain))

    async def _me(self, request: web.Request) -> web.Response:
        me = self.world.people[self.me]
        return web.json_response({
            "type": "admin", "id": me.id, "name": me.name, "email": me.email,
            "email_verified": True, "away_mode_enabled": False, "has_inbox_seat": True,
            "app": {"type": "app", "id_code": self.world.app_id, "name": self.world.app_name,
                    "region": "US", "timezone": "Etc/UTC", "identity_verification": False},
        })

    async def _admins(self, request: web.Request) -> web.Response:
        return web.json_response({"type": "admin.list", "admins": [
            {"type": "admin", "id": p.id, "name": p.name, "email": p.email,
             "away_mode_enabled": False, "has_inbox_seat": True,
             "team_ids": [t for t in self.world.teams]}
            for p in self.world.people.values() if p.type == "admin"]})

    async def _teams(self, request: web.Request) -> web.Response:
        return web.json_response({"type": "team.list", "teams": [
            {"type": "team", "id": team_id, "name": name, "admin_ids": []}
            for team_id, name in self.world.teams.items()]})

    @staticmethod
    def _body(text: str | None, plain: bool) -> str | None:
        if text is None or plain:
            return text
        return "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n"))

    def _statistics(self, c: _Conversation) -> dict[str, Any]:
        contact_parts = [p.created_at for p in c.parts if p.author.type in ("user", "lead")
                         and p.type == "comment"]
        admin_parts = [p.created_at for p in c.parts if p.author.type == "admin"
                       and p.type in ("comment", "close") and p.body]
        closes = [p.created_at for p in c.parts if p.type == "close"]
        assignments = [p.created_at for p in c.parts if p.type == "assignment"]
        opener = c.source_author.type in ("user", "lead")
        first_contact: int | None = c.created_at if opener else next(iter(contact_parts), None)
        return {
            "type": "conversation_statistics",
            "time_to_assignment": assignments[0] - c.created_at if assignments else None,
            "time_to_admin_reply": admin_parts[0] - c.created_at if admin_parts else None,
            "time_to_first_close": closes[0] - c.created_at if closes else None,
            "time_to_last_close": closes[-1] - c.created_at if closes else None,
            "median_time_to_reply": None,
            "first_contact_reply_at": first_contact,
            "first_assignment_at": assignments[0] if assignments else None,
            "first_admin_reply_at": admin_parts[0] if admin_parts else None,
            "first_close_at": closes[0] if closes else None,
            "last_assignment_at": assignments[-1] if assignments else None,
            "last_assignment_admin_reply_at": None,
            "last_contact_reply_at": contact_parts[-1] if contact_parts else first_contact,
            "last_admin_reply_at": admin_parts[-1] if admin_parts else None,
            "last_close_at": closes[-1] if closes else None,
            "last_closed_by_id": None,
            "count_reopens": sum(1 for p in c.parts if p.type == "open"),
            "count_assignments": len(assignments),
            "count_conversation_parts": len(c.parts) + 1,
            "handling_time": None,
        }

    def _conversation_json(self, c: _Conversation, *, parts: bool,
                           plain: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "conversation", "id": c.id, "title": c.title,
            "created_at": c.created_at, "updated_at": c.updated_at,
            "waiting_since": c.waiting_since, "snoozed_until": c.snoozed_until,
            "open": c.state != "closed", "state": c.state, "read": c.read,
            "priority": "priority" if c.priority else "not_priority",
            "admin_assignee_id": int(c.admin_assignee_id) if c.admin_assignee_id else None,
            "team_assignee_id": c.team_assignee_id,
            "tags": {"type": "tag.list", "tags": [
                {"type": "tag", "id": self.world.tag_id(t), "name": t,
                 "applied_at": c.updated_at, "applied_by": {"type": "admin", "id": self.me}}
                for t in c.tags]},
            "conversation_rating": None,
            "source": {
                "type": c.channel, "id": c.source_id, "delivered_as": c.delivered_as,
                "subject": c.subject, "body": self._body(c.body, plain),
                "author": c.source_author.author(), "attachments": [], "url": None,
                "redacted": False,
            },
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": c.contact.id, "external_id": None}]},
            "teammates": {"type": "admin.list", "admins": [
                {"type": "admin", "id": a} for a in
                dict.fromkeys(p.author.id for p in c.parts if p.author.type == "admin")]},
            "custom_attributes": {},
            "first_contact_reply": None,
            "sla_applied": None,
            "statistics": self._statistics(c),
            "linked_objects": {"type": "list", "total_count": 0, "has_more": False, "data": []},
            "ai_agent_participated": any(p.author.ai for p in c.parts),
        }
        if parts:
            body["conversation_parts"] = {
                "type": "conversation_part.list",
                "conversation_parts": [self._part_json(p, plain) for p in c.parts[-MAX_PARTS:]],
                "total_count": len(c.parts),
            }
        else:
            body["conversation_parts"] = {"total_count": len(c.parts)}
        return body

    def _part_json(self, part: _Part, plain: bool) -> dict[str, Any]:
        return {
            "type": "conversation_part", "id": part.id, "part_type": part.type,
            "body": self._body(part.body, plain), "created_at": part.created_at,
            "updated_at": part.created_at, "notified_at": part.created_at,
            "assigned_to": part.assigned_to, "author": part.author.author(),
            "attachments": [], "external_id": None, "redacted": False,
        }


def contract_case() -> ContractCase:
    """The Intercom fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = IntercomWorld(now=clock)
    fake = IntercomFake(world)
    contact = world.add_contact("Casey Customer", "casey@example.com")
    agent = world.add_admin("Kim Agent", "kim@acme.example")
    conversations: list[str] = []

    def seed() -> None:
        conversation = world.start_conversation(contact_id=contact,
                                                body="My order never arrived",
                                                at=clock() - timedelta(minutes=30))
        world.assign(conversation, admin_id=agent, assignee_id=agent,
                     at=clock() - timedelta(minutes=25))
        world.admin_reply(conversation, admin_id=agent, body="Sorry! A new one ships today.",
                          at=clock() - timedelta(minutes=20))
        conversations.append(conversation)

    def add_activity() -> None:
        world.customer_reply(conversations[-1], body="Still waiting on that order", at=clock())

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="intercom",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-intercom", "kind": "intercom",
                                   "token": "fake-intercom-token", "base_url": base_url},
        bad_settings={"name": "acme-intercom", "kind": "intercom", "token": "t",
                      "page_size": 500},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
