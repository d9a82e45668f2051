"""Provides the Mastodon connector: mentions of the brand and the brand's replies, as events.

Two streams share one cursor and take turns, one page request per poll:

- **mentions**, ``GET /api/v1/notifications?types[]=mention``: each mentioning status is
  a public customer message. Notification ids are a server-local sequence, not
  snowflakes, so a source without a cursor cannot seek by time: it reads the newest
  page, pages down with ``max_id`` until it passes ``ctx.since``, then pages up with
  ``min_id`` (the ``Link`` prev relation) from the newest notification it has seen.
- **replies**, ``GET /api/v1/accounts/:id/statuses`` of the brand (its id from
  ``verify_credentials``, cached; that call is the poll's one request when it is due):
  each of its statuses in a customer's thread is a public agent message. Status ids
  are snowflakes (ms << 16), so the first page starts at the id of ``ctx.since``.

**Conversations.** A conversation is the thread from the top-most status *not written
by the brand*: walking up from a status, its conversation is the id of the top-most
ancestor-or-self by someone else. So a customer replying under a brand announcement
opens a conversation of their own, a follow-up to the brand's reply to mention M stays
in M's, and a brand reply belongs to the conversation of the status it answers (a brand
status with only brand statuses above it belongs to none and is no event).
Conversations come from the page, the mentions held back (below) and a bounded cache
of known statuses (the brand's own included: an announcement is known as "no
conversation", so replies under it resolve without a request).

**Held-back mentions.** A mention whose thread is not known yet (typically a follow-up
replying to a brand reply the replies stream has not read) is held back in memory, up
to ``MAX_HELD``, instead of costing a ``GET /api/v1/statuses/:id/context`` lookup. Held
mentions are emitted as soon as the statuses read since resolve them; only those still
unresolved after the replies stream has read to the top are looked up, at most
``MAX_CONTEXT_LOOKUPS`` per poll. While any is held, the cursor keeps a *resume* point
(the mentions position before the page that held the earliest of them): a connector
that does not hold them (a restart, or a cursor other than the one it last returned)
re-reads the mentions from there, and the event ids deduplicate what comes twice. When
the memory is full, or a brand status's thread is unknown, the lookup happens at once;
a page that needs more than the per-poll lookups is cut before the first status left
unresolved and the cursor stops there (``more=True``). A status deleted before its
lookup (404) is skipped, as is a mention whose status is ``null``.

**Rounds and the watermark.** A round reads mentions to the top, then replies to the
top, and says ``more=False`` only after its last poll left nothing held, so each refresh
the runner asks for covers both streams. The watermark is the earlier of the two
streams' last "read to the top" times, known once both have read a non-full page, and
never past the time of a mention still held back. That time is our clock when the request
was sent (a local reply is visible at once), bounded by the server's ``Date`` + 1 s: the
header has whole seconds only, which would delay every confirmed breach by up to a
second, and the bound keeps a server whose clock is behind ours from being credited with
time it has not reached (see ``seen_until``).

**Rate limits.** ``X-RateLimit-Remaining: 0`` makes the next poll raise ``RateLimited``
until ``X-RateLimit-Reset`` before it requests anything, and stops context lookups; a
429 without ``Retry-After`` waits until that reset too (``reset_wait``).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from functools import partial
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from yarl import URL

from connectors import _text
from connectors._http import JsonResponse, get_json, header_count, server_time
from connectors._json import array, cursor_instant, fail, obj
from connectors._limits import RateBudget
from connectors._lru import remember
from connectors._settings import https_address, validated
from connectors._text import strip_tags, web_url
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.errors import AuthError, FatalError
from monitor.events import Actor, Event, EventKind, format_instant, parse_instant

log = logging.getLogger(__name__)

CHANNEL = "mastodon"
MAX_NOTIFICATIONS_PER_PAGE = 80
MAX_STATUSES_PER_PAGE = 40
MAX_CONTEXT_LOOKUPS = 4
CONVERSATION_CACHE_SIZE = 10_000
MAX_HELD = 2_000

Stream = Literal["mentions", "statuses"]
# Ids go into URL paths: anything but a plain token (snowflake, sequence, ULID) is refused.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ACCT = re.compile(r"@?(?P<user>[\w.-]+)(?:@(?P<domain>[\w.-]+))?")


class MastodonSettings(SourceSettings):
    """Settings of one Mastodon source: a server, a token of the brand's account."""

    kind: Literal["mastodon"] = "mastodon"
    base_url: str
    """The server, e.g. ``https://mastodon.example`` (plain http only on loopback)."""
    token: SecretStr
    """An access token of the brand's account with the ``read`` scope (sent as Bearer)."""
    account: str | None = None
    """The brand's acct (``acme`` or ``acme@mastodon.example``); checked against the token."""
    limit: int = Field(default=40, ge=1, le=MAX_NOTIFICATIONS_PER_PAGE)
    """Notifications per page; status pages stop at the API's maximum of 40."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, "https://mastodon.example")

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _ACCT.fullmatch(value.strip()):
            raise ValueError("expected an acct like acme or acme@mastodon.example")
        return value.strip().lstrip("@")


@dataclass(frozen=True, slots=True)
class Post:
    """A status as the connector needs it; ``text`` is plain text of untrusted HTML."""

    id: str
    at: datetime
    account_id: str
    acct: str
    in_reply_to_id: str | None
    text: str
    url: str | None
    visibility: str
    reblog: bool = False


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification; ``post`` is the mentioning status (None: another type, or deleted)."""

    id: str
    at: datetime
    post: Post | None


@dataclass(frozen=True, slots=True)
class Account:
    """The authenticated account, from ``verify_credentials``."""

    id: str
    acct: str
    url: str | None


# Pure parsing ------------------------------------------------------------------------


def html_to_text(content: str) -> str:
    """Plain text of status HTML: tags stripped, paragraphs and line breaks kept.

    The result is data to display, never markup (``connectors._text``); a tag left
    unclosed in markup the parser gives up on is dropped to the end. Never raises.
    """
    return _text.html_to_text(content, fallback=strip_tags)


def _id(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise fail(where, f"id {str(value)[:40]!r} is not a Mastodon id")
    return value


def _instant(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise fail(where, "created_at is missing")
    try:
        return parse_instant(value, "created_at")
    except (ValueError, OverflowError) as err:  # a year-9999 offset overflows into UTC
        raise fail(where, f"created_at {value[:40]!r} is not an ISO 8601 time") from err


def parse_account(data: Any, where: str = "mastodon account") -> Account:
    """An Account entity's id, acct and profile url; ``ParseError`` if it is not one."""
    account = obj(data, where)
    acct = account.get("acct")
    if not isinstance(acct, str) or not acct:
        raise fail(where, "acct is missing")
    return Account(_id(account.get("id"), where), acct, web_url(account.get("url")))


def parse_status(data: Any, where: str = "mastodon status") -> Post:
    """A Status entity as a Post; ``ParseError`` if it is not one."""
    status = obj(data, where)
    status_id = _id(status.get("id"), where)
    where = f"{where} {status_id}"
    reply_to = status.get("in_reply_to_id")
    account = parse_account(status.get("account"), f"{where} account")
    content = status.get("content")
    if isinstance(content, str):
        text = html_to_text(content)
    elif content is None and isinstance(status.get("text"), str):
        text = str(status["text"]).replace("\x00", "\ufffd").strip()  # a deleted status's source
    elif content is None:
        text = ""
    else:
        raise fail(where, "content is not a string")
    visibility = status.get("visibility")
    return Post(
        id=status_id,
        at=_instant(status.get("created_at"), where),
        account_id=account.id,
        acct=account.acct,
        in_reply_to_id=None if reply_to is None else _id(reply_to, f"{where} in_reply_to_id"),
        text=text,
        url=web_url(status.get("url")) or web_url(status.get("uri")),
        visibility=visibility if isinstance(visibility, str) else "public",
        reblog=status.get("reblog") is not None,
    )


def parse_statuses(data: Any) -> tuple[Post, ...]:
    """A page of statuses; ``ParseError`` (and nothing else) if it is not one."""
    return tuple(parse_status(item, f"mastodon statuses[{index}]")
                 for index, item in enumerate(array(data, "mastodon statuses page")))


def parse_notifications(data: Any) -> tuple[Notification, ...]:
    """A page of notifications; only mentions with a status carry a ``post``.

    Raises ``ParseError`` (and nothing else) if the page is not a list of notifications.
    """
    notifications = []
    for index, item in enumerate(array(data, "mastodon notifications page")):
        where = f"mastodon notifications[{index}]"
        note = obj(item, where)
        kind = note.get("type")
        if not isinstance(kind, str):
            raise fail(where, "type is missing")
        status = note.get("status")
        post = None
        if kind == "mention" and status is not None:
            post = parse_status(status, f"{where} status")
        notifications.append(Notification(
            _id(note.get("id"), where), _instant(note.get("created_at"), where), post
        ))
    return tuple(notifications)


def parse_context(data: Any, status_id: str) -> tuple[tuple[str, str], ...]:
    """The ancestors of ``status_id`` from its Context, oldest first, as (id, account id).

    Raises ``ParseError`` (and nothing else) if the body is not a Context.
    """
    where = f"mastodon context of {status_id}"
    context = obj(data, where)
    ancestors = []
    for item in array(context.get("ancestors"), f"{where} ancestors"):
        ancestor = obj(item, where)
        account = obj(ancestor.get("account"), f"{where} account")
        ancestors.append((_id(ancestor.get("id"), where), _id(account.get("id"), where)))
    return tuple(ancestors)


# Threads: pure ------------------------------------------------------------------------


class Unresolved(Enum):
    """The type of ``UNRESOLVED``."""

    UNRESOLVED = "unresolved"


UNRESOLVED: Final = Unresolved.UNRESOLVED
"""A status whose conversation depends on statuses not known yet."""

Resolution = str | None | Literal[Unresolved.UNRESOLVED]
"""A conversation id; None: only the brand's statuses at and above; or ``UNRESOLVED``."""


@dataclass(frozen=True, slots=True)
class ThreadLink:
    """A status's place in its thread: what it replies to, and whether the brand wrote it."""

    in_reply_to_id: str | None
    by_brand: bool


def chain_conversations(
    chain: Sequence[tuple[str, bool]], above: str | None = None
) -> dict[str, str | None]:
    """The conversation of each status of a reply chain given oldest first as (id, by brand).

    A status's conversation is the top-most status at or above it not written by the
    brand; ``above`` is the conversation of whatever the chain's first status replies to.
    """
    conversations: dict[str, str | None] = {}
    for status_id, by_brand in chain:
        if above is None and not by_brand:
            above = status_id
        conversations[status_id] = above
    return conversations


def conversation_of(
    status_id: str, links: Mapping[str, ThreadLink], known: Mapping[str, str | None]
) -> Resolution:
    """The conversation of ``status_id`` from the statuses in hand, or ``UNRESOLVED``.

    ``links`` are statuses whose place in the thread is known (a page, held mentions);
    ``known`` maps statuses to their already resolved conversation. The walk goes up
    until a known status or a thread's first status; a status above it that is in
    neither leaves the answer to a context lookup.
    """
    chain: list[str] = []
    current: str | None = status_id
    above: str | None = None
    for _ in range(len(links) + 1):
        if current is None:
            break
        if current in known:
            above = known[current]
            break
        link = links.get(current)
        if link is None:
            return UNRESOLVED
        chain.append(current)
        current = link.in_reply_to_id
    else:
        return UNRESOLVED  # a reply cycle: only a corrupt page has one; let the server say
    return chain_conversations([(s, links[s].by_brand) for s in reversed(chain)], above).get(
        status_id, above)


def seen_until(started: datetime, server_time: datetime | None) -> datetime:
    """The instant a response shows everything up to: when we sent the request.

    Bounded by the server's whole-second ``Date`` plus one second, so that a server whose
    clock is more than a second behind ours is never credited with time it has not seen.
    """
    if server_time is None:
        return started
    return min(started, server_time + timedelta(seconds=1))


def post_event(
    post: Post, *, source: str, conversation: str, actor: Actor, channel: str = CHANNEL
) -> Event:
    """The public message event of a status in conversation ``conversation``."""
    return Event(
        source=source,
        conversation=conversation,
        id=post.id,
        at=post.at,
        kind=EventKind.MESSAGE,
        actor=actor,
        public=True,  # direct messages too: the customer sees them
        channel=channel,
        url=post.url,
        author=post.acct,
        text=post.text or None,
    )


def snowflake_floor(at: datetime) -> str:
    """The largest status id below every status created at or after ``at``."""
    return str(max(0, (int(at.timestamp() * 1000) << 16) - 1))


def _id_key(value: str) -> tuple[int, str]:
    """Mastodon ids are strings of varying length that order as numbers."""
    return (len(value), value)


def _parse_reset(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value, "X-RateLimit-Reset")
    except (ValueError, OverflowError):
        return None


def reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (ISO 8601), or None when there is none to read.

    Measured against the response's ``Date``, else ``now``: the reset is the server's
    clock, and ours may be off.
    """
    reset = _parse_reset(headers.get("X-RateLimit-Reset"))
    if reset is None:
        return None
    return max(0.0, (reset - (server_time(headers) or now)).total_seconds())


# The cursor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Position:
    """Where the mentions stream reads: up from ``min_id``, or down from ``max_id`` to ``floor``."""

    min_id: str | None = None
    max_id: str | None = None
    floor: datetime | None = None


@dataclass(frozen=True, slots=True)
class _State:
    """The cursor, typed: each stream's position and when it last read to the top.

    ``resume`` is set while mentions are held back: the position to re-read them from
    when the connector polling this cursor does not hold them.
    """

    next: Stream = "mentions"
    mentions_min: str | None = None
    mentions_max: str | None = None  # set while paging down towards ``floor``
    floor: datetime | None = None
    mentions_top: datetime | None = None
    statuses_min: str | None = None
    statuses_top: datetime | None = None
    resume: _Position | None = None

    @classmethod
    def load(cls, cursor: Cursor | None) -> _State:
        """Read a stored cursor; an unreadable field counts as absent."""
        if not cursor:
            return cls()

        def part(parent: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
            value = parent.get(key)
            return value if isinstance(value, Mapping) else None

        def ident(value: Any) -> str | None:
            return value if isinstance(value, str) and _SAFE_ID.fullmatch(value) else None

        mentions, statuses = part(cursor, "mentions") or {}, part(cursor, "statuses") or {}
        resume = part(mentions, "resume")
        return cls(
            next="statuses" if cursor.get("next") == "statuses" else "mentions",
            mentions_min=ident(mentions.get("min_id")),
            mentions_max=ident(mentions.get("max_id")),
            floor=cursor_instant(mentions.get("floor")),
            mentions_top=cursor_instant(mentions.get("top_at")),
            statuses_min=ident(statuses.get("min_id")),
            statuses_top=cursor_instant(statuses.get("top_at")),
            resume=None if resume is None else _Position(
                ident(resume.get("min_id")), ident(resume.get("max_id")),
                cursor_instant(resume.get("floor"))),
        )

    def dump(self) -> dict[str, Any]:
        """The JSON form stored by the runner."""
        resume = None if self.resume is None else {
            "min_id": self.resume.min_id, "max_id": self.resume.max_id,
            "floor": format_instant(self.resume.floor)}
        return {
            "next": self.next,
            "mentions": {"min_id": self.mentions_min, "max_id": self.mentions_max,
                         "floor": format_instant(self.floor),
                         "top_at": format_instant(self.mentions_top), "resume": resume},
            "statuses": {"min_id": self.statuses_min,
                         "top_at": format_instant(self.statuses_top)},
        }

    @property
    def position(self) -> _Position:
        """Where the mentions stream reads next."""
        return _Position(self.mentions_min, self.mentions_max, self.floor)

    def rewound(self) -> _State:
        """This state for a connector that lost its held mentions: mentions re-read from resume."""
        if self.resume is None:
            return self
        return replace(self, next="mentions", mentions_min=self.resume.min_id,
                       mentions_max=self.resume.max_id, floor=self.resume.floor,
                       mentions_top=None, resume=None)

    @property
    def watermark(self) -> datetime | None:
        """Everything is seen up to the older of the two streams' last reads to the top."""
        if self.mentions_top is None or self.statuses_top is None:
            return None
        return min(self.mentions_top, self.statuses_top)

    def after(self, stream: Stream) -> _State:
        """The state once ``stream`` was polled: whose turn is next.

        A round reads mentions to the top, then statuses to the top.
        """
        at_top = (self.mentions_top if stream == "mentions" else self.statuses_top) is not None
        if not at_top:
            return replace(self, next=stream)
        return replace(self, next="statuses" if stream == "mentions" else "mentions")


def _next_min(response: JsonResponse, ids: Sequence[str], current: str | None) -> str | None:
    """The ``min_id`` after an upward page: its ``Link`` prev, bounded by what it held."""
    if not ids:
        return current
    newest = max(ids, key=_id_key)
    if current is not None and _id_key(newest) <= _id_key(current):
        return current  # a server that answers below min_id must not move us backwards
    link = response.links.get("prev")
    linked = URL(link).query.get("min_id") if link else None
    if (linked is not None and _SAFE_ID.fullmatch(linked) and _id_key(linked) <= _id_key(newest)
            and (current is None or _id_key(linked) > _id_key(current))):
        return linked
    return newest


@dataclass(frozen=True, slots=True)
class _Held:
    """A mention held back until its thread is known; ``ripe`` once it may be looked up."""

    post: Post
    ripe: bool = False


@dataclass(slots=True)
class _Lookups:
    """The context lookups one poll may still make."""

    left: int = MAX_CONTEXT_LOOKUPS


@dataclass(slots=True)
class _Page:
    """What one poll produced: its events and the mentions still held after it."""

    held: dict[str, _Held]
    events: list[Event] = field(default_factory=list)


# The connector -----------------------------------------------------------------------


class MastodonConnector:
    """Polls a Mastodon server for the brand's mentions and replies (see module doc)."""

    kind: ClassVar[str] = "mastodon"
    settings_model: ClassVar[type[SourceSettings]] = MastodonSettings

    def __init__(self, settings: Any, *, max_held: int = MAX_HELD) -> None:
        self.settings = validated(MastodonSettings, settings)
        self.max_held = max_held
        self._brand: Account | None = None
        self._conversations: OrderedDict[str, str | None] = OrderedDict()
        # The mentions held back, valid only for the cursor this instance last returned.
        self._held: dict[str, _Held] = {}
        self._issued: _State | None = None
        self._budget = RateBudget()

    @property
    def _channel(self) -> str:
        return self.settings.channel or CHANNEL

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """One page of the stream whose turn it is (see the module doc for the cursor)."""
        self._budget.hold(f"mastodon {self.settings.name}", ctx.now())
        state = _State.load(cursor)
        if state == self._issued:
            page = _Page(dict(self._held))
        else:  # not the cursor we returned last: what we hold may not be what it needs
            state = state.rewound()
            page = _Page({})
        if state.next == "statuses":
            if self._brand is None:
                await self._verify(ctx)
                return self._finish(state, state, page, more=True)
            return await self._poll_statuses(state, ctx, self._brand, page)
        return await self._poll_mentions(state, ctx, page)

    async def check(self, ctx: PollContext) -> str:
        """``verify_credentials``: proves the token and that it is the configured account."""
        brand = await self._verify(ctx)
        return f"authenticated as @{brand.acct}"

    def _finish(self, before: _State, after: _State, page: _Page, *, more: bool) -> Batch:
        """The Batch of a poll; from here on, ``page.held`` is what this instance holds."""
        held = page.held
        state = replace(after, resume=(before.resume or before.position) if held else None)
        watermark = state.watermark
        if held and watermark is not None:  # a held mention is not seen yet
            watermark = min(watermark, *(h.post.at for h in held.values()))
        self._held, self._issued = held, state
        return Batch(tuple(page.events), state.dump(), watermark, more=more or bool(held))

    # Streams ---------------------------------------------------------------------------

    async def _poll_mentions(self, state: _State, ctx: PollContext, page: _Page) -> Batch:
        limit = self.settings.limit
        params = {"types[]": "mention", "limit": str(limit)}
        upward = state.mentions_max is None and state.mentions_min is not None
        if state.mentions_max is not None:
            params["max_id"] = state.mentions_max
        elif state.mentions_min is not None:
            params["min_id"] = state.mentions_min
        started = ctx.now()
        response = await self._get(ctx, "/api/v1/notifications", "mastodon notifications", params)
        listed = parse_notifications(response.data)
        notes = sorted(listed, key=lambda n: _id_key(n.id), reverse=not upward)
        page_ids = [n.id for n in listed]
        floor = state.floor or ctx.since
        reached_floor = False
        if not upward:  # paging down: what is older than the floor is not ours to report
            below = next((i for i, n in enumerate(notes) if n.at < floor), None)
            reached_floor = below is not None
            notes = notes[:below]
        lookups = _Lookups()
        posts = [n.post for n in notes if n.post is not None]
        links = self._links([*(h.post for h in page.held.values()), *posts])
        done: str | None = None
        cut = False
        for note in notes:
            post = note.post
            if post is not None and post.id not in page.held:
                conversation = self._resolve(post.id, links)
                if conversation is UNRESOLVED and len(page.held) < self.max_held:
                    page.held[post.id] = _Held(post)  # the replies stream may tell for free
                    done = note.id
                    continue
                if conversation is UNRESOLVED:
                    conversation = await self._look_up(ctx, post, lookups)
                    if conversation is UNRESOLVED:
                        cut = True
                        break
                self._emit(page, post, conversation, Actor.CUSTOMER)
            done = note.id
        await self._release(ctx, page, lookups, ripen=False)
        server_time = seen_until(started, response.server_time)
        if upward:
            new_min = (done or state.mentions_min) if cut else _next_min(
                response, page_ids, state.mentions_min)
            at_top = not cut and len(listed) < limit
            after = replace(state, mentions_min=new_min,
                            mentions_top=server_time if at_top else None)
            return self._finish(state, after.after("mentions"), page, more=True)
        if cut and done is None:  # nothing resolved (rate budget spent): try again later
            return self._finish(state, replace(state, mentions_top=None), page, more=True)
        new_min = state.mentions_min or (max(page_ids, key=_id_key) if page_ids else None)
        if cut:
            new_max: str | None = done
        elif reached_floor or len(listed) < limit:
            new_max = None
        else:
            new_max = min(page_ids, key=_id_key)
        at_top = state.mentions_max is None and new_max is None and not cut
        after = replace(state, mentions_min=new_min, mentions_max=new_max,
                        floor=floor if new_max is not None else None,
                        mentions_top=server_time if at_top else None)
        return self._finish(state, after.after("mentions"), page, more=True)

    async def _poll_statuses(self, state: _State, ctx: PollContext, brand: Account,
                             page: _Page) -> Batch:
        limit = min(self.settings.limit, MAX_STATUSES_PER_PAGE)
        current = state.statuses_min or snowflake_floor(ctx.since)
        params = {"min_id": current, "exclude_reblogs": "true", "limit": str(limit)}
        started = ctx.now()
        response = await self._get(ctx, f"/api/v1/accounts/{brand.id}/statuses",
                                   "mastodon account statuses", params)
        posts = sorted(parse_statuses(response.data), key=lambda p: _id_key(p.id))
        own = [p for p in posts if p.account_id == brand.id and not p.reblog]
        own_ids = {p.id for p in own}
        lookups = _Lookups()
        links = self._links([*(h.post for h in page.held.values()), *own])
        done: str | None = None
        cut = False
        for post in posts:
            if post.id in own_ids:
                conversation = self._resolve(post.id, links)
                if conversation is UNRESOLVED:
                    conversation = await self._look_up(ctx, post, lookups)
                    if conversation is UNRESOLVED:
                        cut = True
                        break
                self._emit(page, post, conversation, Actor.AGENT)
            done = post.id
        new_min = (done or current) if cut else _next_min(response, [p.id for p in posts], current)
        at_top = not cut and len(posts) < limit
        # Read to the top, both streams have said all they will: what is still held needs
        # its thread looked up.
        await self._release(ctx, page, lookups, ripen=at_top)
        after = replace(state, statuses_min=new_min,
                        statuses_top=seen_until(started, response.server_time) if at_top else None)
        return self._finish(state, after.after("statuses"), page, more=not at_top)

    def _emit(self, page: _Page, post: Post, conversation: str | None, actor: Actor) -> None:
        if conversation is not None:  # None: the brand's own thread, nobody to answer
            page.events.append(post_event(post, source=self.settings.name,
                                          conversation=conversation, actor=actor,
                                          channel=self._channel))

    async def _release(self, ctx: PollContext, page: _Page, lookups: _Lookups, *,
                       ripen: bool) -> None:
        """Emit the held mentions whose conversation is now known; look up ripe ones."""
        if ripen:
            page.held = {key: replace(held, ripe=True) for key, held in page.held.items()}
        links = self._links([h.post for h in page.held.values()])
        # Oldest first: a parent's lookup then resolves its held replies for free.
        for held in sorted(page.held.values(), key=lambda h: _id_key(h.post.id)):
            conversation = self._resolve(held.post.id, links)
            if conversation is UNRESOLVED and held.ripe:
                conversation = await self._look_up(ctx, held.post, lookups)
            if conversation is UNRESOLVED:
                continue
            del page.held[held.post.id]
            self._emit(page, held.post, conversation, Actor.CUSTOMER)

    # Threads ---------------------------------------------------------------------------

    def _links(self, posts: Sequence[Post]) -> dict[str, ThreadLink]:
        brand_id = None if self._brand is None else self._brand.id
        return {p.id: ThreadLink(p.in_reply_to_id, p.account_id == brand_id) for p in posts}

    def _remember(self, status_id: str, conversation: str | None) -> None:
        remember(self._conversations, status_id, conversation, CONVERSATION_CACHE_SIZE)

    def _resolve(self, status_id: str, links: Mapping[str, ThreadLink]) -> Resolution:
        """The conversation of ``status_id`` from ``links`` and the cache, remembered."""
        conversation = conversation_of(status_id, links, self._conversations)
        if conversation is not UNRESOLVED:
            self._remember(status_id, conversation)
        return conversation

    async def _look_up(self, ctx: PollContext, post: Post, lookups: _Lookups) -> Resolution:
        """The conversation of ``post`` from its context; ``UNRESOLVED`` when out of lookups.

        None for a status deleted since it was listed: there is nothing to answer.
        """
        if lookups.left <= 0 or self._budget.remaining == 0:
            return UNRESOLVED
        lookups.left -= 1
        brand = self._brand or await self._verify(ctx)
        try:
            response = await self._get(ctx, f"/api/v1/statuses/{post.id}/context",
                                       "mastodon thread context")
        except AuthError:
            raise
        except FatalError as err:
            log.info("%s: status %s skipped: %s", self.settings.name, post.id, err)
            return None
        chain = [(status_id, account_id == brand.id)
                 for status_id, account_id in parse_context(response.data, post.id)]
        conversations = chain_conversations([*chain, (post.id, post.account_id == brand.id)])
        for status_id, conversation in conversations.items():
            self._remember(status_id, conversation)
        return conversations[post.id]

    async def _verify(self, ctx: PollContext) -> Account:
        response = await self._get(ctx, "/api/v1/accounts/verify_credentials",
                                   "mastodon verify_credentials")
        account = parse_account(response.data, "mastodon verify_credentials")
        wanted = self.settings.account
        if wanted is not None and not self._is_account(account, wanted):
            raise FatalError(f"mastodon {self.settings.name}: the token belongs to "
                             f"@{account.acct}, not @{wanted}")
        self._brand = account
        return account

    @staticmethod
    def _is_account(account: Account, wanted: str) -> bool:
        match = _ACCT.fullmatch(wanted)
        if match is None:
            return False
        user, _, domain = account.acct.lower().partition("@")
        if not domain and account.url:  # a local account's acct has no domain: take its page's
            domain = (urlsplit(account.url).hostname or "").lower()
        wanted_domain = (match["domain"] or "").lower()
        return match["user"].lower() == user and wanted_domain in ("", domain)

    # HTTP and rate limits ----------------------------------------------------------------

    async def _get(self, ctx: PollContext, path: str, what: str,
                   params: Mapping[str, str] | None = None) -> JsonResponse:
        token = self.settings.token.get_secret_value()
        response = await get_json(
            ctx.session, self.settings.base_url + path, what=what, params=params,
            timeout=self.settings.timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            wait_hint=partial(reset_wait, now=ctx.now()),
        )
        self._budget.note(header_count(response.headers, "X-RateLimit-Remaining"),
                          reset_wait(response.headers, ctx.now()), ctx.now())
        return response
