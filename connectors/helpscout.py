"""Provides the Help Scout connector: Mailbox API 2.0 conversations and threads as events.

**Requests.** Authentication is OAuth2 client credentials: ``POST /v2/oauth2/token``
gives a bearer token with an ``expires_in``; it is kept in memory and fetched again a
minute before it expires, or once when the API answers 401 (a second 401 is an
``AuthError``). Conversations come from ``GET /v2/conversations?status=all&
modifiedSince=…&sortField=modifiedAt&sortOrder=desc&page=N`` (25 a page); each
conversation that changed is then read with ``GET /v2/conversations/:id/threads`` (50 a
page, newest first). A poll makes one of these requests (plus the token request when
one is due, and ``GET /v2/mailboxes`` when a mailbox's name is not known yet).

**Events.** A listed conversation gives one ``update`` event (subject, customer,
assignee, group = the mailbox's name, tags; channel = its type) when those attributes
changed, or a ``dismissed`` event when it is spam or deleted. Its threads give
``message`` events: ``customer`` threads are the customer's, ``reply`` / ``message`` /
``chat`` / ``phone`` threads are by whoever ``createdBy`` names (``customer`` or
``user``; anyone else, and automatic workflows, is a ``bot``), ``note`` and forwards
are internal. A thread whose ``status`` is not ``nochange`` (a ``lineitem`` status
change, or a reply sent as pending or closed) gives a ``status`` event: ``active`` ->
``open``, ``pending`` -> ``pending``, ``closed`` -> ``closed``, ``spam`` -> ``dismissed``.
Drafts and threads under review are left out until they are published.

**Why pages are read newest first.** The conversation list pages by number over a set
sorted by ``modifiedAt``, and a conversation modified while we page moves in that
order. Sorted ascending it would move behind the pages still to come and push one
unread conversation back onto a page already read: skipped. Sorted descending it moves
to the front, before the pages already read, so paging can repeat a conversation but
never skip one; what moved is read again in the next round, whose ``modifiedSince`` is
earlier than its change.

**Rounds, cursor and watermark.** A round lists every page modified since ``since``,
then each changed conversation's threads, one request per poll (``more`` is True until
the round is done). The cursor (JSON) holds ``since``, the next page, the round's start
(the server's ``Date`` of its first page), the conversations whose threads are still to
read, and a memory of the most recent ``MAX_KNOWN`` conversations: a fingerprint of
what was listed, and the ids of the threads already returned. A conversation listed
again unchanged costs nothing; a changed one returns only threads not returned before
(Help Scout's list repeats the whole conversation, and a draft can be published later
with an older id, so the ids are remembered rather than a high-water mark).

Help Scout's list is a search index that trails writes by a few seconds and filters on
whole seconds, and ``modifiedAt`` is not in the payload, so positions cannot be
remembered: the next round starts ``search_lag`` (60 s) before the previous round's
start, re-reading that overlap. The watermark moves only after a round that was a
single page, to its start minus ``search_lag``: such a round is one snapshot of the
index, and the lag covers what the index had not shown yet. A round of several pages
leaves the watermark where it was, because a conversation modified while it paged
moved to the front and will only be read by the next round.

**Rate limits.** The API allows ``requests_per_minute`` (400 on most plans, counted
across the account). A sliding window per connector refuses the request that would
exceed it with ``RateLimited`` before sending it, ``X-RateLimit-Remaining-Minute: 0``
makes the next poll wait until our oldest request in the window is a minute old, and a
429 waits ``X-RateLimit-Retry-After`` seconds (or ``Retry-After``).

A stored cursor this version cannot read is treated as no cursor (start again at
``ctx.since``): event ids are stable, so re-reading only repeats known events.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, get_json, header_seconds, server_second
from connectors._json import (
    array,
    fail,
    instant,
    integer,
    obj,
    opt_instant,
    opt_integer,
    opt_obj,
    opt_string,
    string,
)
from connectors._limits import RequestWindow
from connectors._lru import remembered
from connectors._search_index import finish_round
from connectors._settings import https_address, validated
from connectors._text import clip, html_to_text
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.durations import Duration
from monitor.errors import AuthError, ConnectorError, FatalError, NotFound, RateLimited
from monitor.events import Actor, Event, EventKind, Status, format_instant

API = "https://api.helpscout.net"
WEB = "https://secure.helpscout.net"
TOKEN_PATH = "/v2/oauth2/token"
CONVERSATIONS_PATH = "/v2/conversations"
MAILBOXES_PATH = "/v2/mailboxes"
ME_PATH = "/v2/users/me"

MAX_KNOWN = 500
"""Conversations the cursor remembers (fingerprint and thread ids); the oldest go first."""
MAX_THREAD_IDS = 300
"""Thread ids remembered per conversation; a longer one may repeat its oldest threads."""
TOKEN_MARGIN = timedelta(seconds=60)
"""A token is replaced this long before Help Scout says it expires."""
MAILBOX_REFRESH = timedelta(hours=1)
"""An unknown mailbox id makes us re-read the mailbox names at most this often."""
WINDOW = timedelta(minutes=1)

STATUSES: Mapping[str, Status] = {
    "active": Status.OPEN,
    "open": Status.OPEN,
    "pending": Status.PENDING,
    "closed": Status.CLOSED,
}
MESSAGE_TYPES = frozenset({"customer", "message", "reply", "chat", "phone", "beaconchat", "note",
                           "forwardparent", "forwardchild"})
INTERNAL_TYPES = frozenset({"note", "forwardparent", "forwardchild"})
UNPUBLISHED_STATES = frozenset({"draft", "underreview"})
BOT_CREATORS = frozenset({"system_user", "system", "bot", "workflow"})
BOT_ACTIONS = frozenset({"automatic-workflow"})


class HelpScoutSettings(SourceSettings):
    """A Help Scout account, read with an OAuth2 app's client credentials."""

    kind: Literal["helpscout"] = "helpscout"
    client_id: SecretStr
    """The app's ID (Your Profile > My Apps); give it as ``"${HELPSCOUT_APP_ID}"``."""
    client_secret: SecretStr
    """The app's secret; give it as ``"${HELPSCOUT_APP_SECRET}"``."""
    base_url: str = API
    """The API's address; tests and the demo point it at the fake."""
    mailboxes: tuple[int, ...] = ()
    """Only these mailbox ids (all mailboxes the app's user can see when empty)."""
    requests_per_minute: int = Field(default=400, ge=1, le=10_000)
    """The account's API limit (it depends on the plan; all apps of the account share it)."""
    search_lag: Duration = 60.0
    """How far the conversation list may trail writes; rounds overlap by this much."""
    threads_api: Literal["v2", "v3"] = "v2"
    """``v3`` reads threads from the v3 endpoint, which tells AI system users (bots) apart."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, API)


# --- what the API gives us, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and how many seconds it lives."""

    access_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True, slots=True)
class HelpScoutConversation:
    """The parts of a listed conversation replywatch carries; names are untrusted text."""

    id: int
    number: int | None
    status: str
    state: str
    channel: str | None
    subject: str | None
    mailbox_id: int | None
    customer: str | None
    assignee: str | None
    tags: tuple[str, ...]
    changed_at: datetime
    """The latest of its own timestamps: when its listed attributes were last true."""
    version: str
    """A fingerprint of everything listed that a change would touch."""
    web_url: str | None


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """One page of the conversation list."""

    conversations: tuple[HelpScoutConversation, ...]
    number: int
    total_pages: int
    has_next: bool


@dataclass(frozen=True, slots=True)
class HelpScoutThread:
    """One thread of a conversation; ``author`` and ``body`` are untrusted text."""

    id: int
    type: str
    status: str | None
    state: str | None
    created_at: datetime
    created_by: str | None
    author: str | None
    body: str | None
    action: str | None


@dataclass(frozen=True, slots=True)
class ThreadPage:
    """One page of a conversation's threads (newest first)."""

    threads: tuple[HelpScoutThread, ...]
    number: int
    has_next: bool


# --- shape checks: every surprise becomes a ParseError naming the place --------------------


def _person(value: Any, where: str) -> tuple[int | None, str | None, str | None]:
    """A person object as (id, type, display name): "First Last", else the email."""
    if value is None:
        return None, None, None
    person = obj(value, where)
    first = opt_string(person.get("first"), f"{where}.first") or ""
    last = opt_string(person.get("last"), f"{where}.last") or ""
    email = opt_string(person.get("email"), f"{where}.email")
    name = " ".join(part for part in (first.strip(), last.strip()) if part) or email
    return (opt_integer(person.get("id"), f"{where}.id"),
            opt_string(person.get("type"), f"{where}.type"), name)


def _page_block(data: Mapping[str, Any], where: str) -> tuple[int, int, bool]:
    """(page number, total pages, a next page exists) from the HAL ``page`` and ``_links``."""
    page = opt_obj(data.get("page"), f"{where}: page")
    number = opt_integer(page.get("number"), f"{where}: page.number")
    total = opt_integer(page.get("totalPages"), f"{where}: page.totalPages") or 0
    if number is None:
        number = 1
    links = opt_obj(data.get("_links"), f"{where}: _links")
    has_next = links.get("next") is not None or number < total
    return number, total, has_next


def _embedded(data: Any, key: str, where: str) -> tuple[Mapping[str, Any], list[Any]]:
    page = obj(data, where)
    embedded = page.get("_embedded")
    if embedded is None:  # Help Scout leaves _embedded out of an empty page
        if "page" not in page:
            raise fail(where, "neither _embedded nor page")
        return page, []
    return page, array(obj(embedded, f"{where}: _embedded").get(key),
                       f"{where}: _embedded.{key}")


# --- parsers -------------------------------------------------------------------------------


def parse_token(data: Any) -> Token:
    """Validate a ``/v2/oauth2/token`` answer; raise ParseError on any shape error."""
    what = "helpscout token"
    body = obj(data, what)
    token = string(body.get("access_token"), f"{what}: access_token")
    if not token.strip():
        raise fail(what, "empty access_token")
    expires = body.get("expires_in", 7200)
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0:
        raise fail(what, "expires_in must be a positive number")
    return Token(token, float(expires))


def _fingerprint(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_conversation(data: Any, where: str = "helpscout conversation") -> HelpScoutConversation:
    """Validate one conversation object of the list (or of ``GET /v2/conversations/:id``)."""
    conversation = obj(data, where)
    conversation_id = integer(conversation.get("id"), f"{where}.id")
    created_at = instant(conversation.get("createdAt"), f"{where}.createdAt")
    user_updated = opt_instant(conversation.get("userUpdatedAt"), f"{where}.userUpdatedAt")
    closed_at = opt_instant(conversation.get("closedAt"), f"{where}.closedAt")
    waiting = opt_obj(conversation.get("customerWaitingSince"), f"{where}.customerWaitingSince")
    waiting_since = opt_instant(waiting.get("time"), f"{where}.customerWaitingSince.time")
    tags = []
    for i, item in enumerate(array(conversation.get("tags") or [], f"{where}.tags")):
        tag = obj(item, f"{where}.tags[{i}]")
        tags.append(string(tag.get("tag"), f"{where}.tags[{i}].tag"))
    assignee_id, _, assignee = _person(conversation.get("assignee"), f"{where}.assignee")
    customer_id, _, customer = _person(conversation.get("primaryCustomer"),
                                       f"{where}.primaryCustomer")
    if customer is None and customer_id is not None:
        customer = str(customer_id)
    if assignee is None and assignee_id is not None:
        assignee = str(assignee_id)
    status = string(conversation.get("status"), f"{where}.status")
    state = opt_string(conversation.get("state"), f"{where}.state") or "published"
    subject = opt_string(conversation.get("subject"), f"{where}.subject")
    mailbox_id = opt_integer(conversation.get("mailboxId"), f"{where}.mailboxId")
    threads = opt_integer(conversation.get("threads"), f"{where}.threads")
    links = opt_obj(conversation.get("_links"), f"{where}._links")
    web = opt_obj(links.get("web"), f"{where}._links.web")
    href = opt_string(web.get("href"), f"{where}._links.web.href")
    stamps = [t for t in (created_at, user_updated, closed_at, waiting_since) if t is not None]
    version = _fingerprint([
        status, state, threads, subject, mailbox_id, customer_id, customer, assignee_id,
        sorted(tags), [format_instant(t) for t in (user_updated, closed_at, waiting_since)],
    ])
    return HelpScoutConversation(
        id=conversation_id,
        number=opt_integer(conversation.get("number"), f"{where}.number"),
        status=status,
        state=state,
        channel=opt_string(conversation.get("type"), f"{where}.type"),
        subject=subject,
        mailbox_id=mailbox_id,
        customer=customer,
        assignee=assignee,
        tags=tuple(tags),
        changed_at=max(stamps),
        version=version,
        web_url=href if href and href.startswith(("https://", "http://")) else None,
    )


def parse_conversation_page(data: Any) -> ConversationPage:
    """Validate one page of ``GET /v2/conversations``; raise ParseError on any shape error."""
    what = "helpscout conversations"
    page, items = _embedded(data, "conversations", what)
    conversations = tuple(
        parse_conversation(item, f"{what}: conversations[{i}]") for i, item in enumerate(items)
    )
    number, total, has_next = _page_block(page, what)
    return ConversationPage(conversations, number, total, has_next and bool(conversations))


def parse_thread(data: Any, where: str = "helpscout thread") -> HelpScoutThread:
    """Validate one thread object."""
    thread = obj(data, where)
    _, creator, author = _person(thread.get("createdBy"), f"{where}.createdBy")
    action = opt_obj(thread.get("action"), f"{where}.action")
    return HelpScoutThread(
        id=integer(thread.get("id"), f"{where}.id"),
        type=string(thread.get("type"), f"{where}.type"),
        status=opt_string(thread.get("status"), f"{where}.status"),
        state=opt_string(thread.get("state"), f"{where}.state"),
        created_at=instant(thread.get("createdAt"), f"{where}.createdAt"),
        created_by=creator,
        author=author,
        body=opt_string(thread.get("body"), f"{where}.body"),
        action=opt_string(action.get("type"), f"{where}.action.type"),
    )


def parse_thread_page(data: Any) -> ThreadPage:
    """Validate one page of ``GET /v2/conversations/:id/threads``."""
    what = "helpscout threads"
    page, items = _embedded(data, "threads", what)
    threads = tuple(parse_thread(item, f"{what}: threads[{i}]") for i, item in enumerate(items))
    number, _, has_next = _page_block(page, what)
    return ThreadPage(threads, number, has_next and bool(threads))


def parse_mailboxes(data: Any) -> dict[int, str]:
    """Validate ``GET /v2/mailboxes`` into mailbox id -> name."""
    what = "helpscout mailboxes"
    _, items = _embedded(data, "mailboxes", what)
    names: dict[int, str] = {}
    for i, item in enumerate(items):
        mailbox = obj(item, f"{what}: mailboxes[{i}]")
        name = opt_string(mailbox.get("name"), f"{what}: mailboxes[{i}].name")
        names[integer(mailbox.get("id"), f"{what}: mailboxes[{i}].id")] = name or ""
    return names


def parse_me(data: Any) -> str:
    """Validate ``GET /v2/users/me`` into the user's display name."""
    what = "helpscout users/me"
    user = obj(data, what)
    first = opt_string(user.get("firstName"), f"{what}: firstName") or ""
    last = opt_string(user.get("lastName"), f"{what}: lastName") or ""
    email = opt_string(user.get("email"), f"{what}: email")
    user_id = opt_integer(user.get("id"), f"{what}: id")
    return " ".join(p for p in (first.strip(), last.strip()) if p) or email or str(user_id)


# --- records -> normalized events (pure) ---------------------------------------------------


def conversation_url(conversation_id: int, number: int | None) -> str:
    """The address of a conversation in Help Scout's web app."""
    if number is None:
        return f"{WEB}/conversation/{conversation_id}/"
    return f"{WEB}/conversation/{conversation_id}/{number}/"


def conversation_fields(
    conversation: HelpScoutConversation, mailboxes: Mapping[int, str]
) -> dict[str, Any]:
    """The attributes an ``update`` event carries (Help Scout has no priority)."""
    group = None
    if conversation.mailbox_id is not None:
        group = mailboxes.get(conversation.mailbox_id) or str(conversation.mailbox_id)
    return {
        "subject": conversation.subject,
        "customer": conversation.customer,
        "assignee": conversation.assignee,
        "group": group,
        "tags": list(conversation.tags),
    }


def conversation_event(
    conversation: HelpScoutConversation,
    *,
    source: str,
    mailboxes: Mapping[int, str],
    channel: str | None = None,
) -> Event:
    """The event of a listed conversation: ``dismissed`` (spam, deleted) or an ``update``.

    The update's id names the conversation, the instant and a digest of its fields, so a
    re-poll repeats it and any real change makes a new one.
    """
    epoch = int(conversation.changed_at.timestamp())
    common: dict[str, Any] = {
        "source": source,
        "conversation": str(conversation.id),
        "at": conversation.changed_at,
        "url": conversation.web_url or conversation_url(conversation.id, conversation.number),
        "channel": channel or conversation.channel,
    }
    if conversation.status == "spam" or conversation.state == "deleted":
        reason = "spam" if conversation.status == "spam" else "deleted"
        return Event(id=f"conversation-{conversation.id}@{epoch}:{reason}",
                     kind=EventKind.DISMISSED, **common)
    fields = conversation_fields(conversation, mailboxes)
    return Event(id=f"conversation-{conversation.id}@{epoch}:{_fingerprint(fields)[:10]}",
                 kind=EventKind.UPDATE, fields=fields, **common)


def thread_actor(thread: HelpScoutThread) -> Actor:
    """Who wrote a thread: ``customer`` threads are the customer's; else ``createdBy`` decides.

    Automatic workflows and creators that are neither a customer nor a user (the v3
    endpoint's ``system_user``: Help Scout's AI) are bots.
    """
    if thread.type == "customer":
        return Actor.CUSTOMER
    if thread.action in BOT_ACTIONS or (thread.created_by or "").lower() in BOT_CREATORS:
        return Actor.BOT
    if thread.created_by == "customer":
        return Actor.CUSTOMER
    if thread.created_by == "user":
        return Actor.AGENT
    # Nobody named: a mistaken customer can at worst start a clock, a mistaken agent
    # would stop one and hide a breach.
    return Actor.BOT if thread.created_by else Actor.CUSTOMER


def is_published(thread: HelpScoutThread) -> bool:
    """A draft or a thread held for review has not happened yet."""
    return (thread.state or "published") not in UNPUBLISHED_STATES


def thread_events(
    thread: HelpScoutThread,
    *,
    source: str,
    conversation_id: int,
    url: str | None,
    channel: str | None = None,
) -> tuple[Event, ...]:
    """The events of one published thread: a ``message`` and/or a ``status`` change."""
    if not is_published(thread):
        return ()
    common: dict[str, Any] = {"source": source, "conversation": str(conversation_id),
                              "at": thread.created_at, "url": url}
    events: list[Event] = []
    status = (thread.status or "nochange").lower()
    if status == "spam":
        events.append(Event(id=f"thread-{thread.id}:spam", kind=EventKind.DISMISSED, **common))
    elif status in STATUSES:
        events.append(Event(id=f"thread-{thread.id}:status", kind=EventKind.STATUS,
                            status=STATUSES[status], **common))
    if thread.type in MESSAGE_TYPES:
        public = thread.type not in INTERNAL_TYPES and thread.state != "hidden"
        text = html_to_text(thread.body) if thread.body is not None else None
        events.append(Event(
            id=f"thread-{thread.id}", kind=EventKind.MESSAGE, actor=thread_actor(thread),
            public=public, author=thread.author, text=clip(text), channel=channel, **common,
        ))
    return tuple(events)


# --- the cursor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Todo:
    """A conversation whose threads are still to read, from ``page``."""

    id: int
    number: int | None
    version: str
    page: int = 1

    def dump(self) -> list[Any]:
        return [self.id, self.number, self.version, self.page]


@dataclass(frozen=True, slots=True)
class _Known:
    """What the cursor remembers of a conversation."""

    version: str | None
    digest: str | None
    threads: tuple[int, ...] = ()

    def dump(self) -> list[Any]:
        return [self.version, self.digest, list(self.threads)]


@dataclass(frozen=True, slots=True)
class _State:
    """The connector's position; ``dump`` is the cursor the runner stores."""

    since: int
    page: int = 1
    listed: bool = False
    """Every list page of this round has been read."""
    started: int | None = None
    pages: int = 0
    todo: tuple[_Todo, ...] = ()
    known: Mapping[int, _Known] = field(default_factory=dict)
    watermark: int | None = None

    @classmethod
    def load(cls, cursor: Cursor | None, since: int) -> _State:
        fresh = cls(since=since)
        if not cursor or cursor.get("v") != 1:
            return fresh
        try:
            todo = tuple(_Todo(int(t[0]), None if t[1] is None else int(t[1]), str(t[2]),
                               int(t[3])) for t in cursor["todo"])
            known = {
                int(key): _Known(None if k[0] is None else str(k[0]),
                                 None if k[1] is None else str(k[1]),
                                 tuple(int(i) for i in k[2]))
                for key, k in cursor["known"].items()
            }
            state = cls(
                since=int(cursor["since"]),
                page=int(cursor["page"]),
                listed=bool(cursor["listed"]),
                started=None if cursor["started"] is None else int(cursor["started"]),
                pages=int(cursor["pages"]),
                todo=todo,
                known=known,
                watermark=None if cursor["watermark"] is None else int(cursor["watermark"]),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return fresh
        if state.page < 1 or any(t.page < 1 for t in todo):
            return fresh
        return state

    def dump(self) -> dict[str, Any]:
        return {
            "v": 1,
            "since": self.since,
            "page": self.page,
            "listed": self.listed,
            "started": self.started,
            "pages": self.pages,
            "todo": [t.dump() for t in self.todo],
            "known": {str(k): v.dump() for k, v in self.known.items()},
            "watermark": self.watermark,
        }

    @property
    def watermark_at(self) -> datetime | None:
        return None if self.watermark is None else datetime.fromtimestamp(self.watermark, UTC)

    def finished(self, lag: float) -> _State:
        """The state after a complete round: the next one starts ``lag`` before this one."""
        since, watermark = finish_round(self.since, self.started, self.pages, self.watermark,
                                        lag)
        return replace(self, since=since, page=1, listed=False, started=None, pages=0,
                       watermark=watermark)


def _remember(known: Mapping[int, _Known], key: int, value: _Known) -> dict[int, _Known]:
    return remembered(known, key, value, MAX_KNOWN)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the connector -----------------------------------------------------------------------


def token_error_hint(status: int, body: bytes, where: str) -> ConnectorError | None:
    """The token endpoint's 400 (``invalid_client``, ``invalid_grant``) is refused credentials.

    Its 404 is a wrong address, not a deleted conversation: a FatalError, never NotFound.
    """
    if status == 400:
        return AuthError(f"{where}: client credentials refused (HTTP 400)")
    if status == 404:
        return FatalError(f"{where}: request refused (HTTP 404)")
    return None


def retry_after_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``X-RateLimit-Retry-After`` (Help Scout's 429 has no Retry-After)."""
    return header_seconds(headers, "X-RateLimit-Retry-After")


class HelpScoutConnector:
    """Polls one Help Scout account's conversations and their threads."""

    kind: ClassVar[str] = "helpscout"
    settings_model: ClassVar[type[SourceSettings]] = HelpScoutSettings

    def __init__(self, settings: HelpScoutSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(HelpScoutSettings, settings)
        self._token: str | None = None
        self._token_until: datetime | None = None
        self._window = RequestWindow(settings.requests_per_minute, WINDOW)
        self._blocked_until: datetime | None = None
        self._mailboxes: dict[int, str] = {}
        self._mailboxes_at: datetime | None = None

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Read the next list page, or the next threads page of a changed conversation."""
        state = _State.load(cursor, int(ctx.since.timestamp()))
        if state.todo:
            return await self._poll_threads(ctx, state)
        return await self._poll_list(ctx, state)

    async def check(self, ctx: PollContext) -> str:
        """Fetch a token and ask ``users/me`` whose app it is."""
        response = await self._api(ctx, ME_PATH, {}, "helpscout users/me")
        return f"authenticated as {parse_me(response.data)}"

    # polls --------------------------------------------------------------------------

    async def _poll_list(self, ctx: PollContext, state: _State) -> Batch:
        params = {"status": "all", "modifiedSince": _iso(state.since), "sortField": "modifiedAt",
                  "sortOrder": "desc", "page": str(state.page)}
        if self.settings.mailboxes:
            params["mailbox"] = ",".join(str(m) for m in self.settings.mailboxes)
        response = await self._api(ctx, CONVERSATIONS_PATH, params, "helpscout conversations")
        page = parse_conversation_page(response.data)
        started = state.started
        if started is None:
            started = int(self._now(ctx, response).timestamp())
        await self._learn_mailboxes(ctx, page.conversations)
        events: list[Event] = []
        known = dict(state.known)
        todo = list(state.todo)
        for conversation in page.conversations:
            if conversation.state == "draft":
                continue  # a new conversation an agent has not sent yet
            memory = known.get(conversation.id)
            queued = next((t for t in todo if t.id == conversation.id), None)
            if queued is not None and queued.version == conversation.version:
                continue
            if queued is None and memory is not None and memory.version == conversation.version:
                continue  # listed again (the rounds overlap) with nothing new
            event = conversation_event(conversation, source=self.settings.name,
                                       mailboxes=self._mailboxes, channel=self.settings.channel)
            digest = event.id.rsplit(":", 1)[-1]
            if memory is None or memory.digest != digest:
                events.append(event)
            known = _remember(known, conversation.id, _Known(
                memory.version if memory else None, digest, memory.threads if memory else ()))
            entry = _Todo(conversation.id, conversation.number, conversation.version)
            if queued is not None:
                todo[todo.index(queued)] = entry
            else:
                todo.append(entry)
        return self._batch(tuple(events), replace(
            state, page=state.page + 1, listed=not page.has_next, started=started,
            pages=state.pages + 1, todo=tuple(todo), known=known))

    async def _poll_threads(self, ctx: PollContext, state: _State) -> Batch:
        job = state.todo[0]
        path = f"/{self.settings.threads_api}/conversations/{job.id}/threads"
        memory = state.known.get(job.id) or _Known(None, None)
        try:
            response = await self._api(ctx, path, {"page": str(job.page)}, "helpscout threads")
        except NotFound:
            # Deleted after it was listed: its clocks are cancelled, the round goes on.
            gone = Event(source=self.settings.name, conversation=str(job.id),
                         id=f"conversation-{job.id}:deleted", at=self._now(ctx, None),
                         kind=EventKind.DISMISSED, url=conversation_url(job.id, job.number))
            after = replace(state, todo=state.todo[1:], known=_remember(
                state.known, job.id, replace(memory, version=job.version)))
            return self._batch((gone,), after)
        page = parse_thread_page(response.data)
        seen = set(memory.threads)
        url = conversation_url(job.id, job.number)
        events: list[Event] = []
        fresh: list[int] = []
        # Newest first on the page; emitted oldest first so a batch reads in time order.
        for thread in sorted(page.threads, key=lambda t: (t.created_at, t.id)):
            if thread.id in seen or not is_published(thread):
                continue
            fresh.append(thread.id)
            events.extend(thread_events(thread, source=self.settings.name,
                                        conversation_id=job.id, url=url,
                                        channel=self.settings.channel))
        threads = tuple(sorted({*memory.threads, *fresh}))[-MAX_THREAD_IDS:]
        if page.has_next:
            todo = (replace(job, page=job.page + 1), *state.todo[1:])
            known = _remember(state.known, job.id, replace(memory, threads=threads))
        else:
            todo = state.todo[1:]
            known = _remember(state.known, job.id,
                              replace(memory, version=job.version, threads=threads))
        return self._batch(tuple(events), replace(state, todo=todo, known=known))

    def _batch(self, events: tuple[Event, ...], after: _State) -> Batch:
        """The batch for ``after``; a round whose list and threads are all read ends here."""
        if after.listed and not after.todo:
            after = after.finished(self.settings.search_lag)
            return Batch(events, after.dump(), after.watermark_at, more=False)
        return Batch(events, after.dump(), after.watermark_at, more=True)

    @staticmethod
    def _now(ctx: PollContext, response: JsonResponse | None) -> datetime:
        """Whole seconds of the server's time (its ``Date``), else of the runner's clock."""
        return server_second(response, ctx.now())

    async def _learn_mailboxes(
        self, ctx: PollContext, conversations: Sequence[HelpScoutConversation]
    ) -> None:
        unknown = {c.mailbox_id for c in conversations
                   if c.mailbox_id is not None and c.mailbox_id not in self._mailboxes}
        if not unknown:
            return
        now = ctx.now()
        if self._mailboxes_at is not None and now - self._mailboxes_at < MAILBOX_REFRESH:
            return  # names we could not learn an hour ago are reported as ids meanwhile
        response = await self._api(ctx, MAILBOXES_PATH, {}, "helpscout mailboxes")
        self._mailboxes.update(parse_mailboxes(response.data))
        self._mailboxes_at = now

    # HTTP, tokens and rate limits ----------------------------------------------------

    async def _api(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str
    ) -> JsonResponse:
        """One authenticated GET; a 401 on a token we held earns one new token and a retry."""
        reused = await self._ensure_token(ctx)
        try:
            return await self._send(ctx, path, params, what)
        except AuthError:
            self._token = None
            if not reused:
                raise
        await self._ensure_token(ctx)
        return await self._send(ctx, path, params, what)

    async def _ensure_token(self, ctx: PollContext) -> bool:
        """Make sure a live token is held; True when it was already held before this call."""
        now = ctx.now()
        if self._token is not None and self._token_until is not None and now < self._token_until:
            return True
        self._admit(ctx, "helpscout token")
        form = {
            "grant_type": "client_credentials",
            "client_id": self.settings.client_id.get_secret_value(),
            "client_secret": self.settings.client_secret.get_secret_value(),
        }
        response = await get_json(
            ctx.session, self.settings.base_url + TOKEN_PATH, what="helpscout token",
            method="POST", data=form, headers={"Accept": "application/json"},
            timeout=self.settings.timeout, wait_hint=retry_after_hint,
            error_hint=token_error_hint,
        )
        token = parse_token(response.data)
        self._note_limits(response.headers, ctx)
        self._token = token.access_token
        self._token_until = now + timedelta(seconds=token.expires_in) - TOKEN_MARGIN
        return False

    async def _send(
        self, ctx: PollContext, path: str, params: Mapping[str, str], what: str
    ) -> JsonResponse:
        self._admit(ctx, what)
        response = await get_json(
            ctx.session, self.settings.base_url + path, what=what, params=params,
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            timeout=self.settings.timeout, wait_hint=retry_after_hint,
        )
        self._note_limits(response.headers, ctx)
        return response

    def _admit(self, ctx: PollContext, what: str) -> None:
        """Count a request against our budget, or refuse it with RateLimited before it leaves."""
        now = ctx.now()
        if self._blocked_until is not None:
            if now < self._blocked_until:
                left = (self._blocked_until - now).total_seconds()
                raise RateLimited(f"{what}: the account's minute budget is used up",
                                  retry_after=math.ceil(left))
            self._blocked_until = None
        self._window.admit(what, now)

    def _note_limits(self, headers: Mapping[str, str], ctx: PollContext) -> None:
        remaining = headers.get("X-RateLimit-Remaining-Minute", "").strip()
        if remaining.isascii() and remaining.isdigit() and int(remaining) == 0:
            sent = self._window.sent
            oldest = sent[0] if sent else ctx.now()
            self._blocked_until = max(oldest + WINDOW, ctx.now() + timedelta(seconds=1))
