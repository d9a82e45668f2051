"""Provides the Zammad connector: the ticket search by ``updated_at`` and each ticket's articles.

Zammad's REST API has no change log, so each ``poll`` makes one request of a round (the
shared logic is ``connectors._ticket_sync``; read its docstring for the why):

1. **tickets**: ``GET /api/v1/tickets/search?query=updated_at:>=…&sort_by=updated_at
   &order_by=asc&expand=true&page=N&per_page=100``. Each new version of a ticket is an
   ``update`` event (subject, customer, priority, assignee, group, channel) with id
   ``ticket-{id}@{updated_at ms}``, and its state a ``status`` event. The ticket is
   then queued for step 2.
2. **articles** of each queued ticket: ``GET /api/v1/ticket_articles/by_ticket/:id``
   (all of them; the endpoint has no "since" filter, so what was returned before is
   dropped). Each article is a ``message`` (``{ticket}:{article id}``): ``sender``
   Customer -> ``customer``, Agent -> ``agent``, System -> ``bot`` (as is an author in
   ``bot_user_ids``); ``internal`` articles and ``note`` articles are not public: Zammad
   itself does not count a note as communication with the customer.

States (Zammad's defaults; custom ones through ``custom_states``):

========================  ===========  ==================================================
Zammad state              normalized   why
========================  ===========  ==================================================
new                       new
open                      open
pending close             pending      waits for the customer; closes itself if none comes
pending reminder          on_hold      parked by the agent until a date (third party,
                                       a promised follow-up), not awaiting the customer
closed                    closed
merged, removed           dismissed    the conversation continues in another ticket (or
                                       is gone): its clocks are cancelled, not met
========================  ===========  ==================================================

Zammad keeps no state timestamps but ``last_close_at``, so a ``closed`` status is dated
then and any other state at the ticket version's ``updated_at`` (an upper bound: the
change happened at or before it). A state that lasted less than a poll is not seen.

Cursor and watermark: the search runs on Zammad's Elasticsearch index, which is updated
by a background job after each change, so a ticket may appear in the search seconds (or,
under load, minutes) after its ``updated_at``. The position and the watermark therefore
stay ``index_lag`` (default 60 s) behind the server's ``Date``. Without Elasticsearch,
Zammad's database fallback does not understand field queries: ``check`` detects an index
that finds nothing while tickets exist and says so.

Rate limits: Zammad documents none for the REST API; a 429 (a proxy in front of it) is
honoured through ``Retry-After`` by ``connectors._http.get_json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, get_json
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
from connectors._text import clip, strip_closed_tags
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
from monitor.errors import FatalError, NotFound
from monitor.events import Actor, Event, EventKind, Priority, Status

SEARCH_PATH = "/api/v1/tickets/search"
TICKETS_PATH = "/api/v1/tickets"
ARTICLES_PATH = "/api/v1/ticket_articles/by_ticket/{id}"
ME_PATH = "/api/v1/users/me"

MAX_PER_PAGE = 200
"""The search's own limit on ``per_page``."""
RESULT_WINDOW = 10_000
"""Elasticsearch answers no further than this many results into a query."""
NOBODY_ID = 1
"""Zammad's placeholder user ``-``: an unassigned ticket's owner."""

STATES: Mapping[str, Status] = {
    "new": Status.NEW,
    "open": Status.OPEN,
    "pending close": Status.PENDING,
    "pending reminder": Status.ON_HOLD,
    "closed": Status.CLOSED,
}
DISMISSED_STATES = frozenset({"merged", "removed"})
SENDERS: Mapping[str, Actor] = {
    "customer": Actor.CUSTOMER, "agent": Actor.AGENT, "system": Actor.BOT,
}
PRIORITIES = frozenset(p.value for p in Priority)
NOT_COMMUNICATION = frozenset({"note"})
"""Article types Zammad does not count as talking to the customer."""


class ZammadSettings(SourceSettings):
    """A Zammad instance, authenticated with an agent's access token."""

    kind: Literal["zammad"] = "zammad"
    url: str
    """The instance's address (``https://support.example.com``); ticket links point there."""
    token: SecretStr
    """An access token of an agent who can read the groups to watch (``"${ZAMMAD_TOKEN}"``)."""
    base_url: str | None = None
    """Overrides ``url`` for API calls (tests and the demo use the fake)."""
    page_size: int = Field(default=100, ge=1, le=MAX_PER_PAGE)
    """Tickets per search page (``per_page``, at most 200)."""
    index_lag: Duration = 60.0
    """How far behind the server's clock the position and the watermark stay."""
    custom_states: dict[str, Status] = Field(default_factory=dict)
    """Custom state names mapped to a normalized status: ``{"waiting for parts" = "on_hold"}``."""
    bot_user_ids: frozenset[int] = frozenset()
    """Users whose articles are a bot's (an integration posting as an agent)."""

    @field_validator("url", "base_url")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        # Both may carry the token: ``url`` is the API's address unless base_url is set.
        return None if value is None else https_address(value, "https://support.example.com")

    @field_validator("custom_states")
    @classmethod
    def _custom_states(cls, value: dict[str, Status]) -> dict[str, Status]:
        return {name.strip().lower(): status for name, status in value.items()}


# --- what the API gives us, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZammadTicket:
    """The parts of an expanded ticket replywatch carries; names are untrusted text."""

    id: int
    updated_at: datetime
    created_at: datetime
    state_id: int
    state: str | None
    title: str | None = None
    number: str | None = None
    priority: str | None = None
    group: str | None = None
    owner_id: int | None = None
    owner: str | None = None
    customer: str | None = None
    last_close_at: datetime | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class ZammadArticle:
    """One article of a ticket; ``body`` and ``sender_from`` are untrusted text."""

    id: int
    ticket_id: int
    created_at: datetime
    sender: str | None
    type: str | None
    internal: bool
    body: str | None
    content_type: str | None
    sender_from: str | None
    created_by_id: int | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class ZammadUser:
    """The user a token belongs to (``users/me``)."""

    id: int
    login: str | None
    name: str | None


# --- shape checks: every surprise becomes a ParseError naming the place --------------------


def _name(value: Any, where: str) -> str | None:
    """An expanded association: a name, or an object with one (older versions)."""
    if isinstance(value, dict):
        return opt_string(value.get("name", value.get("login")), f"{where}.name")
    return opt_string(value, where)


# --- parsers -------------------------------------------------------------------------------


def parse_ticket(data: Any, where: str = "zammad ticket") -> ZammadTicket:
    """Validate one ticket (expanded: association names beside the ids)."""
    ticket = obj(data, where)
    return ZammadTicket(
        id=integer(ticket.get("id"), f"{where}.id"),
        updated_at=instant(ticket.get("updated_at"), f"{where}.updated_at"),
        created_at=instant(ticket.get("created_at"), f"{where}.created_at"),
        state_id=integer(ticket.get("state_id"), f"{where}.state_id"),
        state=_name(ticket.get("state"), f"{where}.state"),
        title=opt_string(ticket.get("title"), f"{where}.title"),
        number=opt_string(ticket.get("number"), f"{where}.number"),
        priority=_name(ticket.get("priority"), f"{where}.priority"),
        group=_name(ticket.get("group"), f"{where}.group"),
        owner_id=opt_integer(ticket.get("owner_id"), f"{where}.owner_id"),
        owner=_name(ticket.get("owner"), f"{where}.owner"),
        customer=_name(ticket.get("customer"), f"{where}.customer"),
        last_close_at=opt_instant(ticket.get("last_close_at"), f"{where}.last_close_at"),
        channel=_name(ticket.get("create_article_type"), f"{where}.create_article_type"),
    )


def parse_tickets(data: Any) -> tuple[ZammadTicket, ...]:
    """Validate one expanded search page (a list of tickets); raise ParseError on any error."""
    what = "zammad ticket search"
    return tuple(parse_ticket(item, f"{what}[{i}]")
                 for i, item in enumerate(array(data, what)))


def parse_articles(data: Any) -> tuple[ZammadArticle, ...]:
    """Validate ``GET /api/v1/ticket_articles/by_ticket/:id``."""
    what = "zammad articles"
    articles = []
    for i, item in enumerate(array(data, what)):
        where = f"{what}[{i}]"
        article = obj(item, where)
        articles.append(ZammadArticle(
            id=integer(article.get("id"), f"{where}.id"),
            ticket_id=integer(article.get("ticket_id"), f"{where}.ticket_id"),
            created_at=instant(article.get("created_at"), f"{where}.created_at"),
            sender=_name(article.get("sender"), f"{where}.sender"),
            type=_name(article.get("type"), f"{where}.type"),
            internal=opt_boolean(article.get("internal"), f"{where}.internal"),
            body=opt_string(article.get("body"), f"{where}.body"),
            content_type=opt_string(article.get("content_type"), f"{where}.content_type"),
            sender_from=opt_string(article.get("from"), f"{where}.from"),
            created_by_id=opt_integer(article.get("created_by_id"), f"{where}.created_by_id"),
            created_by=_name(article.get("created_by"), f"{where}.created_by"),
        ))
    return tuple(articles)


def parse_me(data: Any) -> ZammadUser:
    """Validate ``GET /api/v1/users/me``."""
    what = "zammad users/me"
    user = obj(data, what)
    first = opt_string(user.get("firstname"), f"{what}.firstname") or ""
    last = opt_string(user.get("lastname"), f"{what}.lastname") or ""
    return ZammadUser(
        id=integer(user.get("id"), f"{what}.id"),
        login=opt_string(user.get("login"), f"{what}.login"),
        name=f"{first} {last}".strip() or None,
    )


# --- text ----------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


class _Text(HTMLParser):
    """Collects the text of an HTML body; block elements become line breaks."""

    BLOCKS = frozenset({"br", "p", "div", "li", "tr", "blockquote", "h1", "h2", "h3", "pre"})
    SKIPPED = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def _break(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(_SPACE.sub(" ", data))  # source line breaks are spaces in HTML


def html_to_text(body: str) -> str:
    """The readable text of an HTML article body (tags dropped, entities decoded)."""
    parser = _Text()
    try:
        parser.feed(body)
        parser.close()
        raw = "".join(parser.parts)
    except Exception:  # html.parser can assert on hostile markup such as "<![ x"
        raw = unescape(strip_closed_tags(body))
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def article_text(article: ZammadArticle) -> str | None:
    """The article's body as plain text (HTML bodies converted)."""
    if article.body is None:
        return None
    if (article.content_type or "").lower().startswith("text/html"):
        return html_to_text(article.body)
    return article.body


# --- tickets and articles -> normalized events (pure) --------------------------------------


def ticket_url(url: str, ticket_id: int) -> str:
    """The agent-UI address of a ticket: what a lead opens from the board."""
    return f"{url.rstrip('/')}/#ticket/zoom/{ticket_id}"


def ticket_priority(name: str | None) -> str | None:
    """``"3 high"`` -> ``"high"``; a custom priority without a known word is None."""
    if not name:
        return None
    word = name.strip().split(maxsplit=1)[-1].lower()
    return word if word in PRIORITIES else None


def ticket_status(name: str | None, custom: Mapping[str, Status] | None = None) -> Status | None:
    """The normalized status of a state name (see the module docstring); None if unknown."""
    if name is None:
        return None
    key = name.strip().lower()
    return STATES.get(key) or (custom or {}).get(key)


def ticket_events(
    ticket: ZammadTicket,
    *,
    source: str,
    url: str,
    channel: str | None = None,
    custom_states: Mapping[str, Status] | None = None,
) -> Listed:
    """What one ticket version says: its attributes, its state, and a fetch of its articles."""
    common: dict[str, Any] = {
        "source": source, "conversation": str(ticket.id), "url": ticket_url(url, ticket.id),
    }
    updated = to_ms(ticket.updated_at)
    assignee = None
    if ticket.owner_id not in (None, NOBODY_ID) and ticket.owner not in (None, "", "-"):
        assignee = ticket.owner
    elif ticket.owner_id not in (None, NOBODY_ID):
        assignee = str(ticket.owner_id)
    fields = {
        "subject": ticket.title,
        "customer": ticket.customer,
        "priority": ticket_priority(ticket.priority),
        "assignee": assignee,
        "group": ticket.group,
    }
    versioned = [Event(id=f"ticket-{ticket.id}@{updated}", at=ticket.updated_at,
                       kind=EventKind.UPDATE, fields=fields,
                       channel=channel or ticket.channel, **common)]
    dated: list[Event] = []
    state = (ticket.state or "").strip().lower()
    if state in DISMISSED_STATES:
        versioned.append(Event(id=f"ticket-{ticket.id}@{updated}:{state}", at=ticket.updated_at,
                               kind=EventKind.DISMISSED, **common))
    else:
        status = ticket_status(ticket.state, custom_states)
        if status is not None:
            at = ticket.updated_at
            if status is Status.CLOSED and ticket.last_close_at is not None:
                at = min(ticket.last_close_at, ticket.updated_at)
            dated.append(Event(id=f"{ticket.id}:state:{ticket.state_id}@{to_ms(at)}", at=at,
                               kind=EventKind.STATUS, status=status, **common))
    return Listed(str(ticket.id), updated, versioned=tuple(versioned), dated=tuple(dated),
                  fetch=Fetch(str(ticket.id)))


def article_actor(article: ZammadArticle, bot_user_ids: Iterable[int] = ()) -> Actor:
    """Who wrote an article: its sender, a listed bot user, else (unknown) the customer."""
    if article.created_by_id is not None and article.created_by_id in frozenset(bot_user_ids):
        return Actor.BOT
    # An unknown sender counts as the customer: a mistaken customer can at worst start a
    # clock, while a mistaken agent would stop one and hide a breach.
    return SENDERS.get((article.sender or "").strip().lower(), Actor.CUSTOMER)


def _author(article: ZammadArticle) -> str | None:
    return display_name(article.sender_from) or article.created_by


def article_events(
    articles: Iterable[ZammadArticle],
    *,
    source: str,
    url: str,
    bot_user_ids: Iterable[int] = (),
) -> tuple[Event, ...]:
    """One ``message`` per article; internal articles and notes are not public."""
    bots = frozenset(bot_user_ids)
    return tuple(
        Event(
            source=source, conversation=str(a.ticket_id), id=f"{a.ticket_id}:{a.id}",
            at=a.created_at, kind=EventKind.MESSAGE, actor=article_actor(a, bots),
            public=not a.internal and (a.type or "").lower() not in NOT_COMMUNICATION,
            author=_author(a), text=clip(article_text(a)), url=ticket_url(url, a.ticket_id),
        )
        for a in articles
    )


# --- the connector -----------------------------------------------------------------------


def search_query(since_ms: int) -> str:
    """The search for tickets updated at or after an instant, colons escaped for the index."""
    at = datetime.fromtimestamp(since_ms // 1000, UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S") + f".{since_ms % 1000:03d}Z"
    return "updated_at:>=" + text.replace(":", "\\:")


class ZammadConnector:
    """Polls one Zammad instance through its ticket search and ticket articles."""

    kind: ClassVar[str] = "zammad"
    settings_model: ClassVar[type[SourceSettings]] = ZammadSettings

    def __init__(self, settings: ZammadSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(ZammadSettings, settings)
        self._base = settings.base_url or settings.url
        self._headers = {
            "Accept": "application/json",
            "Authorization": f"Token token={settings.token.get_secret_value()}",
        }
        self._sync = TicketSync(("tickets",), settle_ms=int(settings.index_lag * 1000),
                                max_page=RESULT_WINDOW // settings.page_size)

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Make the round's next request; see the module docstring."""
        state = self._sync.load(cursor, to_ms(ctx.since))
        listing = self._sync.next_listing(state)
        if listing is None:
            step = await self._fetch(ctx, state)
        else:
            step = await self._search(ctx, state, listing[1].since, listing[1].page)
        return Batch(step.events, self._sync.dump(step.state), step.state.watermark_at,
                     more=step.more)

    async def check(self, ctx: PollContext) -> str:
        """Ask ``users/me`` who the token belongs to, and probe that the search index answers."""
        me = parse_me((await self._get(ctx, ME_PATH, {}, "zammad users/me")).data)
        who = me.name or me.login or str(me.id)
        if me.name and me.login:
            who = f"{me.name} ({me.login})"
        found = parse_tickets((await self._get(
            ctx, SEARCH_PATH, {"query": search_query(0), "per_page": "1", "expand": "true"},
            "zammad ticket search")).data)
        if not found:
            listed = (await self._get(ctx, TICKETS_PATH, {"per_page": "1"},
                                      "zammad tickets")).data
            if isinstance(listed, list) and listed:
                raise FatalError(
                    "zammad ticket search: finds no ticket although tickets exist; the search "
                    "needs Zammad's Elasticsearch index (and a token that may read the groups)")
        return f"authenticated as {who}"

    async def _search(self, ctx: PollContext, state: SyncState, since: int, page: int) -> Step:
        params = {
            "query": search_query(since),
            "sort_by": "updated_at",
            "order_by": "asc",
            "expand": "true",
            "page": str(page),
            "per_page": str(self.settings.page_size),
        }
        response = await self._get(ctx, SEARCH_PATH, params, "zammad ticket search")
        tickets = parse_tickets(response.data)
        listed = [
            ticket_events(t, source=self.settings.name, url=self.settings.url,
                          channel=self.settings.channel,
                          custom_states=self.settings.custom_states)
            for t in tickets
        ]
        full = len(tickets) >= self.settings.page_size
        server = response.server_time or ctx.now()
        return self._sync.after_listing(state, listed, full=full, server_ms=to_ms(server))

    async def _fetch(self, ctx: PollContext, state: SyncState) -> Step:
        head = state.queue[0]
        path = ARTICLES_PATH.format(id=head.ticket)
        try:
            response = await self._get(ctx, path, {}, "zammad ticket articles")
        except NotFound:  # deleted meanwhile: nothing left to read
            return self._sync.skip_fetch(state)
        events = article_events(parse_articles(response.data), source=self.settings.name,
                                url=self.settings.url, bot_user_ids=self.settings.bot_user_ids)
        return self._sync.after_fetch(state, events, None)

    async def _get(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str
    ) -> JsonResponse:
        return await get_json(
            ctx.session, self._base + path, what=what, params=params, headers=self._headers,
            timeout=self.settings.timeout,
        )

