"""Provides the Freshdesk connector: the ticket list and each changed ticket's conversations.

Freshdesk API v2 has no change log, so each ``poll`` makes one request of a round (the
shared logic is ``connectors._ticket_sync``; read its docstring for the why):

1. **tickets**: ``GET /api/v2/tickets?updated_since=…&order_by=updated_at&order_type=asc
   &per_page=100&page=N&include=stats,requester,description``. Each new version of a
   ticket is an ``update`` event (subject, customer, priority, assignee, group, tags,
   channel) with id ``ticket-{id}@{updated_at epoch}``; its status is a ``status`` event
   at ``stats.status_updated_at`` (id ``{id}:status:{code}@{epoch}``); the ticket's
   description is its opening message (``{id}:description``, at ``created_at``). The
   ticket is then queued for step 2.
2. **conversations** of each queued ticket: ``GET /api/v2/tickets/:id/conversations
   ?per_page=100&page=N`` (the endpoint has no "since" filter, so a changed ticket's
   thread is read again and what was returned before is dropped). Each conversation is a
   ``message`` (``{ticket}:{conversation id}``): ``incoming`` or a post by the requester
   is the customer, a user in ``bot_user_ids`` a bot, anyone else an agent. A ``private``
   note is internal, and so is an agent's public note: the customer can read it in the
   portal but is not sent it, and Freshdesk's own SLAs do not count notes as responses.
3. **deleted** and **spam** (unless ``dismissals = false``): the same listing with
   ``filter=deleted`` / ``filter=spam``, without embeds; each ticket version there is a
   ``dismissed`` event (``ticket-{id}@{epoch}:deleted`` / ``:spam``). Freshdesk leaves
   these tickets out of the plain listing, so this is the only way to see them go.

Statuses: 2 Open -> ``open``, 3 Pending -> ``pending``, 4 Resolved -> ``solved``,
5 Closed -> ``closed``; custom statuses (6 and up) only through ``custom_statuses``
(Freshdesk does not say in a ticket whether a custom status pauses its SLA). Freshdesk
has no "new" status. Priorities 1-4 are low, normal ("Medium"), high, urgent.

Cursor and watermark: ``updated_at`` has one-second precision, so the listing asks from
one second *before* the position (equality is not documented either way) and the shared
``seen`` map drops the repeats. The position stays ``settle`` seconds (default 30) behind
the server's ``Date``: a ticket saved just before a listing, in a transaction still open
or on a replica still behind, is stamped earlier than it becomes visible. The watermark
is the earliest stream position after a finished round, so it lags the server by at
least ``settle``; intermediate statuses between two polls are not in the API (only the
current one and when it was set), so a status that lasted less than a poll is lost.

Rate limits: Freshdesk limits API credits per minute per account (a listing costs 1
credit plus 2 per embed; a conversations page 1) and reports ``X-RateLimit-Total`` /
``X-RateLimit-Remaining``. When the last response left fewer credits than the next
request costs plus ``min_remaining`` (leave some for the account's other apps), the poll
raises ``RateLimited`` until a minute after that response. A 429's ``Retry-After`` is
honoured by ``connectors._http.get_json``. The listing refuses ``page`` above 300; the
position moves on a second when a single second fills them (see ``_ticket_sync``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, cast

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, basic_auth, get_json
from connectors._json import (
    array,
    instant,
    integer,
    obj,
    opt_boolean,
    opt_instant,
    opt_integer,
    opt_string,
)
from connectors._settings import https_address, validated
from connectors._text import clip
from connectors._ticket_sync import (
    Fetch,
    Listed,
    Step,
    SyncState,
    TicketSync,
    display_name,
    to_ms,
)
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.durations import Duration
from monitor.errors import NotFound, RateLimited
from monitor.events import Actor, Event, EventKind, Status

TICKETS_PATH = "/api/v2/tickets"
CONVERSATIONS_PATH = "/api/v2/tickets/{id}/conversations"
ME_PATH = "/api/v2/agents/me"

MAX_PER_PAGE = 100
MAX_PAGE = 300
"""Freshdesk answers 400 for a ticket listing page above 300."""
EMBEDS = "stats,requester,description"
EMBED_CREDITS = 2
"""Each embedded resource costs two more credits per listing request."""
LIMIT_WINDOW = 60.0

STATUSES: Mapping[int, Status] = {
    2: Status.OPEN, 3: Status.PENDING, 4: Status.SOLVED, 5: Status.CLOSED,
}
PRIORITIES: Mapping[int, str] = {1: "low", 2: "normal", 3: "high", 4: "urgent"}
SOURCES: Mapping[int, str] = {
    1: "email", 2: "portal", 3: "phone", 5: "twitter", 6: "facebook", 7: "chat",
    8: "mobihelp", 9: "feedback_widget", 10: "outbound_email",
}
OUTBOUND_EMAIL = 10
NOTE = 2
"""A conversation's ``source`` when it is a note (0 is a reply)."""
"""A ticket an agent opened by writing to the customer: its description is the agent's."""

Stream = Literal["tickets", "deleted", "spam"]


class FreshdeskSettings(SourceSettings):
    """A Freshdesk account, authenticated with an agent's API key."""

    kind: Literal["freshdesk"] = "freshdesk"
    subdomain: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
    """The account's subdomain: ``acme`` for ``https://acme.freshdesk.com``."""
    api_key: SecretStr
    """The agent's API key (Profile settings); give it as ``"${FRESHDESK_API_KEY}"``."""
    base_url: str | None = None
    """Overrides ``https://{subdomain}.freshdesk.com`` (tests and the demo use the fake)."""
    page_size: int = Field(default=MAX_PER_PAGE, ge=1, le=MAX_PER_PAGE)
    """Tickets and conversations per page (``per_page``, at most 100)."""
    settle: Duration = 30.0
    """How far behind the server's clock the position and the watermark stay."""
    custom_statuses: dict[int, Status] = Field(default_factory=dict)
    """Custom status ids (6 and up) mapped to a normalized status, e.g. ``{6 = "on_hold"}``."""
    bot_user_ids: frozenset[int] = frozenset()
    """Users whose conversations are a bot's (an automation's or a bot integration's agent)."""
    dismissals: bool = True
    """Also list deleted and spam tickets (two more listings a round) to cancel their clocks."""
    min_remaining: int = Field(default=0, ge=0)
    """API credits a minute to leave to the account's other apps."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else https_address(value, "https://acme.freshdesk.com")

    @field_validator("custom_statuses")
    @classmethod
    def _custom_statuses(cls, value: dict[int, Status]) -> dict[int, Status]:
        builtin = sorted(set(value) & set(STATUSES))
        if builtin:
            raise ValueError(f"status {builtin[0]} is built in; only custom ids (6+) map")
        return value


# --- what the API gives us, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreshdeskTicket:
    """The parts of a listed ticket replywatch carries; text fields are untrusted."""

    id: int
    updated_at: datetime
    created_at: datetime
    status: int
    priority: int | None
    source: int | None
    subject: str | None
    requester_id: int | None
    responder_id: int | None
    group_id: int | None
    tags: tuple[str, ...]
    status_updated_at: datetime | None = None
    description: str | None = None
    requester_name: str | None = None
    requester_email: str | None = None
    spam: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class FreshdeskConversation:
    """One reply or note of a ticket; ``body`` is untrusted text."""

    id: int
    ticket_id: int
    created_at: datetime
    body: str | None
    incoming: bool
    private: bool
    user_id: int | None
    from_email: str | None
    source: int | None = None


@dataclass(frozen=True, slots=True)
class FreshdeskAgent:
    """The agent an API key belongs to (``agents/me``)."""

    id: int
    name: str | None
    email: str | None


# --- shape checks: every surprise becomes a ParseError naming the place --------------------


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = array(value, where)
    tags = []
    for i, item in enumerate(items):
        tag = opt_string(item, f"{where}[{i}]")
        if tag:
            tags.append(tag)
    return tuple(tags)


# --- parsers -------------------------------------------------------------------------------


def parse_ticket(data: Any, where: str = "freshdesk ticket") -> FreshdeskTicket:
    """Validate one ticket as the list and view endpoints give it (embeds optional)."""
    ticket = obj(data, where)
    stats = ticket.get("stats")
    status_updated_at = None
    if stats is not None:
        stats = obj(stats, f"{where}.stats")
        status_updated_at = opt_instant(stats.get("status_updated_at"),
                                         f"{where}.stats.status_updated_at")
    requester = ticket.get("requester")
    name = email = None
    if requester is not None:
        requester = obj(requester, f"{where}.requester")
        name = opt_string(requester.get("name"), f"{where}.requester.name")
        email = opt_string(requester.get("email"), f"{where}.requester.email")
    return FreshdeskTicket(
        id=integer(ticket.get("id"), f"{where}.id"),
        updated_at=instant(ticket.get("updated_at"), f"{where}.updated_at"),
        created_at=instant(ticket.get("created_at"), f"{where}.created_at"),
        status=integer(ticket.get("status"), f"{where}.status"),
        priority=opt_integer(ticket.get("priority"), f"{where}.priority"),
        source=opt_integer(ticket.get("source"), f"{where}.source"),
        subject=opt_string(ticket.get("subject"), f"{where}.subject"),
        requester_id=opt_integer(ticket.get("requester_id"), f"{where}.requester_id"),
        responder_id=opt_integer(ticket.get("responder_id"), f"{where}.responder_id"),
        group_id=opt_integer(ticket.get("group_id"), f"{where}.group_id"),
        tags=_tags(ticket.get("tags"), f"{where}.tags"),
        status_updated_at=status_updated_at,
        description=opt_string(ticket.get("description_text"), f"{where}.description_text"),
        requester_name=name,
        requester_email=email,
        spam=opt_boolean(ticket.get("spam"), f"{where}.spam"),
        deleted=opt_boolean(ticket.get("deleted"), f"{where}.deleted"),
    )


def parse_tickets(data: Any) -> tuple[FreshdeskTicket, ...]:
    """Validate one page of ``GET /api/v2/tickets``; raise ParseError on any shape error."""
    what = "freshdesk ticket list"
    return tuple(parse_ticket(item, f"{what}[{i}]")
                 for i, item in enumerate(array(data, what)))


def parse_conversations(data: Any) -> tuple[FreshdeskConversation, ...]:
    """Validate one page of ``GET /api/v2/tickets/:id/conversations``."""
    what = "freshdesk conversations"
    conversations = []
    for i, item in enumerate(array(data, what)):
        where = f"{what}[{i}]"
        conversation = obj(item, where)
        conversations.append(FreshdeskConversation(
            id=integer(conversation.get("id"), f"{where}.id"),
            ticket_id=integer(conversation.get("ticket_id"), f"{where}.ticket_id"),
            created_at=instant(conversation.get("created_at"), f"{where}.created_at"),
            body=opt_string(conversation.get("body_text"), f"{where}.body_text"),
            incoming=opt_boolean(conversation.get("incoming"), f"{where}.incoming"),
            private=opt_boolean(conversation.get("private"), f"{where}.private"),
            source=opt_integer(conversation.get("source"), f"{where}.source"),
            user_id=opt_integer(conversation.get("user_id"), f"{where}.user_id"),
            from_email=opt_string(conversation.get("from_email"), f"{where}.from_email"),
        ))
    return tuple(conversations)


def parse_me(data: Any) -> FreshdeskAgent:
    """Validate ``GET /api/v2/agents/me``: the agent and its contact card."""
    what = "freshdesk agents/me"
    agent = obj(data, what)
    contact = obj(agent.get("contact") or {}, f"{what}.contact")
    return FreshdeskAgent(
        id=integer(agent.get("id"), f"{what}.id"),
        name=opt_string(contact.get("name"), f"{what}.contact.name"),
        email=opt_string(contact.get("email"), f"{what}.contact.email"),
    )


# --- tickets and conversations -> normalized events (pure) ---------------------------------


def ticket_url(subdomain: str, ticket_id: int) -> str:
    """The agent-UI address of a ticket: what a lead opens from the board."""
    return f"https://{subdomain}.freshdesk.com/a/tickets/{ticket_id}"


def channel_of(source: int | None) -> str | None:
    """The channel name of a ticket's ``source`` code (unknown codes keep their number)."""
    if source is None:
        return None
    return SOURCES.get(source, f"source-{source}")


def ticket_status(code: int, custom: Mapping[int, Status] | None = None) -> Status | None:
    """The normalized status of a Freshdesk status code; None for an unmapped custom one."""
    return STATUSES.get(code) or (custom or {}).get(code)


def _customer(ticket: FreshdeskTicket) -> str | None:
    if ticket.requester_name:
        return ticket.requester_name
    if ticket.requester_email:
        return ticket.requester_email
    return None if ticket.requester_id is None else str(ticket.requester_id)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def ticket_events(
    ticket: FreshdeskTicket,
    *,
    source: str,
    subdomain: str,
    stream: Stream = "tickets",
    channel: str | None = None,
    custom_statuses: Mapping[int, Status] | None = None,
) -> Listed:
    """What one listed ticket version says: its attributes, status and opening message.

    A ticket from the deleted or spam listing (or flagged so) is one ``dismissed`` event.
    """
    url = ticket_url(subdomain, ticket.id)
    epoch = _epoch(ticket.updated_at)
    common: dict[str, Any] = {"source": source, "conversation": str(ticket.id), "url": url}
    updated = to_ms(ticket.updated_at)
    if stream != "tickets" or ticket.deleted or ticket.spam:
        reason = "deleted" if stream == "deleted" or ticket.deleted else "spam"
        dismissed = Event(id=f"ticket-{ticket.id}@{epoch}:{reason}", at=ticket.updated_at,
                          kind=EventKind.DISMISSED, **common)
        return Listed(str(ticket.id), updated, versioned=(dismissed,))
    fields = {
        "subject": ticket.subject,
        "customer": _customer(ticket),
        "priority": PRIORITIES.get(ticket.priority) if ticket.priority is not None else None,
        "assignee": None if ticket.responder_id is None else str(ticket.responder_id),
        "group": None if ticket.group_id is None else str(ticket.group_id),
        "tags": list(ticket.tags),
    }
    update = Event(id=f"ticket-{ticket.id}@{epoch}", at=ticket.updated_at,
                   kind=EventKind.UPDATE, fields=fields,
                   channel=channel or channel_of(ticket.source), **common)
    dated: list[Event] = []
    outbound = ticket.source == OUTBOUND_EMAIL
    dated.append(Event(
        id=f"{ticket.id}:description", at=ticket.created_at, kind=EventKind.MESSAGE,
        actor=Actor.AGENT if outbound else Actor.CUSTOMER, public=True,
        author=None if outbound else _customer(ticket), text=clip(ticket.description),
        **common,
    ))
    status = ticket_status(ticket.status, custom_statuses)
    if status is not None:
        at = ticket.status_updated_at or ticket.updated_at
        dated.append(Event(id=f"{ticket.id}:status:{ticket.status}@{_epoch(at)}", at=at,
                           kind=EventKind.STATUS, status=status, **common))
    fetch = Fetch(str(ticket.id), 1, ticket.requester_id)
    return Listed(str(ticket.id), updated, versioned=(update,), dated=tuple(dated),
                  fetch=fetch)


def conversation_actor(
    conversation: FreshdeskConversation, requester_id: int | None,
    bot_user_ids: Iterable[int] = (),
) -> Actor:
    """Who wrote a conversation: a listed bot, else the customer (incoming or the requester)."""
    if conversation.user_id is not None and conversation.user_id in frozenset(bot_user_ids):
        return Actor.BOT
    if conversation.incoming or (
        requester_id is not None and conversation.user_id == requester_id
    ):
        return Actor.CUSTOMER
    return Actor.AGENT


def conversation_events(
    conversations: Iterable[FreshdeskConversation],
    *,
    source: str,
    subdomain: str,
    requester_id: int | None,
    bot_user_ids: Iterable[int] = (),
) -> tuple[Event, ...]:
    """One ``message`` per conversation; notes are internal unless the customer wrote them."""
    bots = frozenset(bot_user_ids)
    events = []
    for c in conversations:
        actor = conversation_actor(c, requester_id, bots)
        note_by_us = c.source == NOTE and actor is not Actor.CUSTOMER
        events.append(Event(
            source=source, conversation=str(c.ticket_id), id=f"{c.ticket_id}:{c.id}",
            at=c.created_at, kind=EventKind.MESSAGE, actor=actor,
            public=not c.private and not note_by_us,
            author=display_name(c.from_email), text=clip(c.body),
            url=ticket_url(subdomain, c.ticket_id),
        ))
    return tuple(events)


# --- the connector -----------------------------------------------------------------------


def _format_since(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FreshdeskConnector:
    """Polls one Freshdesk account through its ticket list and ticket conversations."""

    kind: ClassVar[str] = "freshdesk"
    settings_model: ClassVar[type[SourceSettings]] = FreshdeskSettings

    def __init__(self, settings: FreshdeskSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(FreshdeskSettings, settings)
        self._base = settings.base_url or f"https://{settings.subdomain}.freshdesk.com"
        self._headers = {
            "Accept": "application/json",
            "Authorization": basic_auth(settings.api_key.get_secret_value(), "X"),
        }
        streams: tuple[Stream, ...] = (
            ("tickets", "deleted", "spam") if settings.dismissals else ("tickets",))
        self._sync = TicketSync(streams, settle_ms=int(settings.settle * 1000),
                                max_page=MAX_PAGE, step_ms=1000)
        self._remaining: int | None = None
        self._remaining_at: datetime | None = None

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Make the round's next request; see the module docstring."""
        since = to_ms(ctx.since) // 1000 * 1000
        state = self._sync.load(cursor, since)
        listing = self._sync.next_listing(state)
        if listing is None:
            step = await self._fetch(ctx, state)
        else:
            step = await self.array(ctx, state, listing[0], listing[1].since, listing[1].page)
        return Batch(step.events, self._sync.dump(step.state), step.state.watermark_at,
                     more=step.more)

    async def check(self, ctx: PollContext) -> str:
        """Ask ``agents/me`` whose API key this is."""
        response = await self._get(ctx, ME_PATH, {}, "freshdesk agents/me", cost=1)
        agent = parse_me(response.data)
        who = agent.name or agent.email or str(agent.id)
        if agent.email and agent.name:
            who = f"{agent.name} <{agent.email}>"
        return f"authenticated as {who}"

    async def array(
        self, ctx: PollContext, state: SyncState, stream: str, since: int, page: int
    ) -> Step:
        params = {
            # One second early: whether updated_since is inclusive is not documented,
            # and the boundary second must be read again either way.
            "updated_since": _format_since(since - 1000),
            "order_by": "updated_at",
            "order_type": "asc",
            "per_page": str(self.settings.page_size),
            "page": str(page),
        }
        cost = 1
        if stream == "tickets":
            params["include"] = EMBEDS
            cost += EMBED_CREDITS * len(EMBEDS.split(","))
        else:
            params["filter"] = stream
        response = await self._get(ctx, TICKETS_PATH, params,
                                   f"freshdesk ticket list ({stream})", cost=cost)
        tickets = parse_tickets(response.data)
        listed = [
            ticket_events(t, source=self.settings.name, subdomain=self.settings.subdomain,
                          stream=cast(Stream, stream),
                          channel=self.settings.channel,
                          custom_statuses=self.settings.custom_statuses)
            for t in tickets
        ]
        full = len(tickets) >= self.settings.page_size or "next" in response.links
        server = response.server_time or ctx.now()
        return self._sync.after_listing(state, listed, full=full, server_ms=to_ms(server))

    async def _fetch(self, ctx: PollContext, state: SyncState) -> Step:
        head = state.queue[0]
        params = {"per_page": str(self.settings.page_size), "page": str(head.page)}
        path = CONVERSATIONS_PATH.format(id=head.ticket)
        try:
            response = await self._get(ctx, path, params, "freshdesk conversations", cost=1)
        except NotFound:  # deleted for good meanwhile: nothing left to read
            return self._sync.skip_fetch(state)
        conversations = parse_conversations(response.data)
        requester = head.context if isinstance(head.context, int) else None
        events = conversation_events(
            conversations, source=self.settings.name, subdomain=self.settings.subdomain,
            requester_id=requester, bot_user_ids=self.settings.bot_user_ids,
        )
        more = "next" in response.links or len(conversations) >= self.settings.page_size
        return self._sync.after_fetch(state, events, head.page + 1 if more else None)

    async def _get(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str, *, cost: int
    ) -> JsonResponse:
        now = ctx.now()
        self._respect_budget(now, cost, what)
        response = await get_json(
            ctx.session, self._base + path, what=what, params=params, headers=self._headers,
            timeout=self.settings.timeout,
        )
        remaining = response.headers.get("X-RateLimit-Remaining", "")
        if remaining.strip().lstrip("-").isdigit():
            self._remaining, self._remaining_at = int(remaining), now
        return response

    def _respect_budget(self, now: datetime, cost: int, what: str) -> None:
        if self._remaining is None or self._remaining_at is None:
            return
        elapsed = (now - self._remaining_at).total_seconds()
        if elapsed >= LIMIT_WINDOW or self._remaining - cost >= self.settings.min_remaining:
            return
        wait = math.ceil(LIMIT_WINDOW - elapsed)
        raise RateLimited(f"{what}: {self._remaining} API credits left this minute",
                          retry_after=max(1, wait))
