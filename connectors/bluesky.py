"""Provides the Bluesky connector: mentions of the brand and the brand's replies, as events.

Bluesky (the AT Protocol's app view, reached through the brand's PDS, ``bsky.social`` by
default) is read with a session of the brand's handle and an app password
(``com.atproto.server.createSession``; the access token is refreshed with
``refreshSession`` before its JWT ``exp``, or when a call answers ``ExpiredToken``).

Two streams share one cursor and take turns, one page request per poll:

- **mentions**, ``app.bsky.notification.listNotifications`` with ``reasons`` (``mention``
  and ``reply`` by default, ``quote`` on request): each such notification is a post by
  someone else, a public customer message.
- **replies**, ``app.bsky.feed.getAuthorFeed?filter=posts_with_replies`` of the brand:
  each of its own posts in a customer's thread is a public agent message (reposts and
  pins are not the brand's words and are skipped).

**Event time.** The app view orders both lists by ``sortAt``: the earlier of the
record's ``createdAt`` (the client's clock) and the instant it was indexed; a
notification's ``indexedAt`` already *is* that ``sortAt``. An event's ``at`` is the same
instant, so ordering, paging and the watermark speak of one clock, and a client whose
clock runs ahead (the recorded page has a like "created" 45 minutes after it was
indexed) cannot push a message into the future.

**Passes, overlap and the watermark.** Both lists are newest first with an opaque
cursor for older pages. A *pass* reads a stream from its newest page down to its
*floor*; the first pass's floor is ``ctx.since``. Because ``sortAt`` can be earlier
than indexing, a post written at 12:00:00 and indexed at 12:00:03 sorts at 12:00:00
and may appear *below* posts a pass already read. So each later pass's floor is the
previous pass's start (the server's ``Date``) minus ``lag``, and the posts already
returned at or above that floor are kept in the cursor (``seen``) so that the overlap
is re-read without repeating anything. For the same reason a stream is only known
up to its last finished pass's start minus ``lag``; the watermark is the earlier of
the two streams' such instants. A post whose ``createdAt`` is more than ``lag`` before
it was indexed (a backdated or long-delayed record) can sort below a floor already
passed and is missed: the price of polling a list sorted by a client-chosen time.

**Conversations.** A conversation is the top-most post of the thread *not written by
the brand*. An AT URI names its author (``at://did:plc:…/app.bsky.feed.post/…``), so
the thread root in ``record.reply.root`` settles most posts at once: a root by someone
else is the conversation. Under a root by the brand (a customer answering an
announcement), the chain of parents is walked through the page (the author feed shows
each reply's parent), a bounded cache of resolved posts, and, failing those,
``app.bsky.feed.getPostThread`` (at most ``MAX_THREAD_LOOKUPS`` per poll). A page whose
posts need more lookups than one poll may make is held in memory and finished by the
next polls, which return the same cursor with ``more=True``; its events are returned
together, with the cursor after it. A post deleted before its lookup is skipped.

**Moderation.** A customer's post labelled ``spam``, ``!hide`` or ``!takedown`` (on the
post or its author) that opens its own conversation is returned with a ``dismissed``
event; one inside another conversation is skipped, so a spammer cannot cancel a real
customer's clocks.

**Rate limits.** ``ratelimit-remaining: 0`` makes the next poll raise ``RateLimited``
until ``ratelimit-reset`` (epoch seconds) before it requests anything, and stops thread
lookups; a 429 without ``Retry-After`` waits until that reset too. ``createSession`` has
its own documented limits (30 per 5 minutes, 100 a day at the bsky.social entryway);
the connector keeps under them itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from yarl import URL

from connectors._http import JsonResponse, epoch_reset_wait, get_json, header_count
from connectors._json import array, fail, obj
from connectors._limits import RateBudget
from connectors._lru import remember
from connectors._passes import Lag, Rounds
from connectors._settings import https_address, validated
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.errors import AuthError, ConnectorError, FatalError, RateLimited
from monitor.events import Actor, Event, EventKind, parse_instant

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://bsky.social"
APP_URL = "https://bsky.app"
CHANNEL = "bluesky"
MAX_PAGE = 100
"""The most items ``listNotifications`` and ``getAuthorFeed`` return per page."""
MAX_THREAD_LOOKUPS = 4
"""``getPostThread`` calls one poll may make to place posts in their conversation."""
CONVERSATION_CACHE_SIZE = 10_000
REFRESH_MARGIN = timedelta(minutes=2)
"""Refresh the access token this long before its JWT says it expires."""
SESSION_BUDGET = ((timedelta(minutes=5), 30), (timedelta(days=1), 100))
"""createSession's limits: 30 per 5 minutes per handle, 100 a day at the entryway."""
POST_REASONS = frozenset({"mention", "reply", "quote"})
DISMISS_LABELS = frozenset({"spam", "!hide", "!takedown"})
POST_COLLECTION = "app.bsky.feed.post"
AUTH_ERRORS = frozenset({"InvalidToken", "AuthenticationRequired", "AccountTakedown",
                         "AccountDeactivated", "AuthFactorTokenRequired"})

Reason = Literal["mention", "reply", "quote"]

_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}")
_HANDLE = re.compile(
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_AT_URI = re.compile(
    r"at://(?P<did>did:[a-z]+:[A-Za-z0-9._:%-]{1,2000})"
    r"/(?P<collection>[A-Za-z0-9.-]{1,317})/(?P<rkey>[A-Za-z0-9._~:-]{1,512})"
)


class BlueskySettings(SourceSettings):
    """Settings of one Bluesky source: the brand's handle and an app password."""

    kind: Literal["bluesky"] = "bluesky"
    handle: str
    """The brand's handle (``acme.bsky.social``) or DID; the session identifier."""
    app_password: SecretStr
    """An app password of that account (Settings > App passwords), never the real one."""
    base_url: str = DEFAULT_BASE_URL
    """The account's PDS or entryway (plain http only on loopback: tests and the demo)."""
    reasons: tuple[Reason, ...] = ("mention", "reply")
    """Notification reasons that are customer messages; ``quote`` adds quote-posts."""
    limit: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)
    """Items per page of both lists (the API's maximum is 100)."""
    lag: Lag = 60.0
    """How long a post may take from its ``createdAt`` to the API; re-read and waited out."""

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str) -> str:
        value = value.strip().lstrip("@")
        if not (_HANDLE.fullmatch(value) or _DID.fullmatch(value)):
            raise ValueError("expected a handle like acme.bsky.social or a did:plc:... DID")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, DEFAULT_BASE_URL, "the password")

    @field_validator("reasons")
    @classmethod
    def _reasons(cls, value: tuple[Reason, ...]) -> tuple[Reason, ...]:
        if not value:
            raise ValueError("name at least one of mention, reply, quote")
        return tuple(dict.fromkeys(value))


# What the API gives us, validated ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """A post as the connector needs it; ``text`` and ``handle`` are untrusted."""

    uri: str
    author: str
    handle: str | None
    at: datetime
    text: str
    root: str | None = None
    parent: str | None = None
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification; ``post`` is the notifying post for the post reasons, else None."""

    uri: str
    reason: str
    at: datetime
    post: Post | None


@dataclass(frozen=True, slots=True)
class NotificationPage:
    """A page of ``listNotifications``, newest first, and the cursor of the next older page."""

    notifications: tuple[Notification, ...]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class FeedItem:
    """An author-feed entry: the post, whether it is a repost, and its place in the list.

    ``parents`` maps the thread posts the view shows (the reply's parent and root) to
    what each replies to.
    """

    post: Post
    sort_at: datetime
    repost: bool = False
    pinned: bool = False
    parents: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of ``getAuthorFeed``, newest first, and the cursor of the next older page."""

    items: tuple[FeedItem, ...]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Session:
    """A session from ``createSession`` or ``refreshSession``."""

    did: str
    handle: str
    access: SecretStr
    refresh: SecretStr
    access_expires: datetime | None


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise fail(where, f"{key} is missing")
    return value


def _instant(value: Any, where: str, key: str = "indexedAt") -> datetime:
    if not isinstance(value, str):
        raise fail(where, f"{key} is missing")
    try:
        return parse_instant(value, key)
    except (ValueError, OverflowError) as err:
        raise fail(where, f"{key} {value[:40]!r} is not an ISO 8601 time") from err


def _client_instant(value: Any) -> datetime | None:
    """A record's ``createdAt``: the client's claim, None when it is not a readable time."""
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value, "createdAt")
    except (ValueError, OverflowError):
        return None


def parse_at_uri(value: Any, where: str, collection: str | None = POST_COLLECTION) -> str:
    """``value`` if it is an AT URI (of ``collection``) with a DID authority; else ParseError."""
    match = _AT_URI.fullmatch(value) if isinstance(value, str) else None
    if match is None or (collection is not None and match["collection"] != collection):
        raise fail(where, f"{str(value)[:80]!r} is not the AT URI of a post")
    return str(value)


def did_of(uri: str) -> str:
    """The DID of an AT URI's author: the repository the record lives in."""
    return uri[len("at://"):].split("/", 1)[0]


def _labels(data: Any, where: str) -> frozenset[str]:
    if data is None:
        return frozenset()
    return frozenset(
        str(label["val"]) for label in array(data, f"{where} labels")
        if isinstance(label, Mapping) and isinstance(label.get("val"), str)
    )


def _reply_refs(record: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
    reply = record.get("reply")
    if reply is None:
        return None, None
    reply = obj(reply, f"{where} reply")
    root = obj(reply.get("root"), f"{where} reply root")
    parent = obj(reply.get("parent"), f"{where} reply parent")
    return (parse_at_uri(root.get("uri"), f"{where} reply root"),
            parse_at_uri(parent.get("uri"), f"{where} reply parent"))


def _text(record: Mapping[str, Any]) -> str:
    text = record.get("text")
    return text.replace("\x00", "\ufffd") if isinstance(text, str) else ""


def _post(uri: str, author: Mapping[str, Any], record: Any, indexed_at: datetime,
          labels: frozenset[str], where: str) -> Post:
    """A Post from the parts every view of a post has."""
    record = obj(record, f"{where} record")
    kind = record.get("$type", POST_COLLECTION)
    if kind != POST_COLLECTION:
        raise fail(where, f"record is a {str(kind)[:60]!r}, not a post")
    author_did = _string(author, "did", f"{where} author")
    if not _DID.fullmatch(author_did) or author_did != did_of(uri):
        raise fail(where, "author does not match the post's repository")
    handle = author.get("handle")
    created = _client_instant(record.get("createdAt"))
    root, parent = _reply_refs(record, where)
    return Post(
        uri=uri,
        author=author_did,
        handle=handle if isinstance(handle, str) and _HANDLE.fullmatch(handle) else None,
        at=indexed_at if created is None else min(created, indexed_at),
        text=_text(record),
        root=root,
        parent=parent,
        labels=labels | _labels(author.get("labels"), f"{where} author"),
    )


def parse_post_view(data: Any, where: str = "bluesky post") -> Post:
    """An ``app.bsky.feed.defs#postView`` as a Post; ``ParseError`` if it is not one."""
    view = obj(data, where)
    uri = parse_at_uri(view.get("uri"), where)
    where = f"{where} {uri}"
    return _post(uri, obj(view.get("author"), f"{where} author"), view.get("record"),
                 _instant(view.get("indexedAt"), where), _labels(view.get("labels"), where),
                 where)


def parse_notifications(data: Any) -> NotificationPage:
    """A ``listNotifications`` page; only the post reasons carry a ``post``.

    Raises ``ParseError`` (and nothing else) if the body is not such a page.
    """
    body = obj(data, "bluesky notifications page")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise fail("bluesky notifications page", "cursor is not a string")
    notifications = []
    for index, item in enumerate(array(body.get("notifications"), "bluesky notifications")):
        where = f"bluesky notifications[{index}]"
        note = obj(item, where)
        reason = _string(note, "reason", where)
        uri = parse_at_uri(note.get("uri"), where, collection=None)
        at = _instant(note.get("indexedAt"), where)
        post = None
        if reason in POST_REASONS:
            post = _post(parse_at_uri(uri, where), obj(note.get("author"), f"{where} author"),
                         note.get("record"), at, _labels(note.get("labels"), where), where)
        notifications.append(Notification(uri, reason, at, post))
    return NotificationPage(tuple(notifications), cursor or None)


def _thread_link(data: Any, where: str) -> tuple[str, str | None] | None:
    """(uri, what it replies to) of a post view in a reply ref; None for a missing post."""
    view = obj(data, where)
    if "record" not in view:  # notFoundPost / blockedPost: only its URI is known
        parse_at_uri(view.get("uri"), where)
        return None
    post = parse_post_view(view, where)
    return post.uri, post.parent


def parse_author_feed(data: Any) -> FeedPage:
    """A ``getAuthorFeed`` page; ``ParseError`` (and nothing else) if it is not one."""
    body = obj(data, "bluesky author feed page")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise fail("bluesky author feed page", "cursor is not a string")
    items = []
    for index, entry in enumerate(array(body.get("feed"), "bluesky feed")):
        where = f"bluesky feed[{index}]"
        item = obj(entry, where)
        post = parse_post_view(item.get("post"), f"{where} post")
        reason = item.get("reason")
        repost = pinned = False
        sort_at = post.at
        if reason is not None:
            reason = obj(reason, f"{where} reason")
            kind = str(reason.get("$type", ""))
            pinned = kind.endswith("#reasonPin")
            repost = not pinned
            if repost:
                sort_at = _instant(reason.get("indexedAt"), f"{where} reason")
        parents = []
        reply = item.get("reply")
        if reply is not None and not repost:
            reply = obj(reply, f"{where} reply")
            for key in ("root", "parent"):
                link = _thread_link(reply.get(key), f"{where} reply {key}")
                if link is not None:
                    parents.append(link)
        items.append(FeedItem(post, sort_at, repost, pinned, tuple(parents)))
    return FeedPage(tuple(items), cursor or None)


def parse_thread(data: Any, uri: str) -> dict[str, str | None]:
    """What each post of ``uri``'s ancestor chain replies to, from ``getPostThread``.

    A deleted or blocked ancestor ends the chain: it is recorded as replying to nothing,
    the top of what can be known. Raises ``ParseError`` (and nothing else) if the body
    is not a thread.
    """
    where = f"bluesky thread of {uri}"
    node: Any = obj(data, where).get("thread")
    parents: dict[str, str | None] = {}
    for depth in range(1001):  # the API's own parentHeight limit
        node = obj(node, f"{where} [{depth}]")
        if "post" not in node:  # notFoundPost / blockedPost
            parents[parse_at_uri(node.get("uri"), where)] = None
            break
        post = parse_post_view(node.get("post"), f"{where} [{depth}] post")
        parents[post.uri] = post.parent
        node = node.get("parent")
        if node is None or post.parent is None:
            break
    return parents


def parse_session(data: Any) -> Session:
    """A ``createSession`` / ``refreshSession`` answer; ``ParseError`` if it is not one."""
    body = obj(data, "bluesky session")
    did = _string(body, "did", "bluesky session")
    if not _DID.fullmatch(did):
        raise fail("bluesky session", "did is not a DID")
    access = _string(body, "accessJwt", "bluesky session")
    refresh = _string(body, "refreshJwt", "bluesky session")
    handle = body.get("handle")
    return Session(did, handle if isinstance(handle, str) else did, SecretStr(access),
                   SecretStr(refresh), jwt_expiry(access))


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT, read without verifying it; None when there is none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return None
        return datetime.fromtimestamp(expires, UTC)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, OSError,
            binascii.Error, UnicodeDecodeError):
        return None


def xrpc_error_name(body: bytes) -> str | None:
    """The ``error`` name of an XRPC error body (``ExpiredToken``...), or None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    name = data.get("error") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name.isascii() and name.isalnum() else None


class SessionExpired(AuthError):
    """The access (or refresh) token expired: refresh it, or start a new session."""


class PostNotFound(FatalError):
    """``getPostThread`` says the post is gone (deleted, or never indexed)."""


def xrpc_error(status: int, body: bytes, where: str) -> ConnectorError | None:
    """The precise error an XRPC error body names, for ``get_json``'s ``error_hint``."""
    name = xrpc_error_name(body)
    if name == "ExpiredToken":
        return SessionExpired(f"{where}: session expired (ExpiredToken)")
    if name in AUTH_ERRORS:
        return AuthError(f"{where}: credentials refused ({name}, HTTP {status})")
    if status == 400 and name == "NotFound":
        return PostNotFound(f"{where}: post not found")
    return None


def reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``ratelimit-reset`` (epoch seconds), measured on the server's clock."""
    return epoch_reset_wait(headers, "ratelimit-reset", now)


# Events and threads: pure -------------------------------------------------------------


def post_url(post: Post) -> str:
    """The post's page on bsky.app."""
    rkey = post.uri.rsplit("/", 1)[1]
    profile = post.handle if post.handle and post.handle != "handle.invalid" else post.author
    return f"{APP_URL}/profile/{profile}/post/{rkey}"


def post_event(post: Post, *, source: str, conversation: str, actor: Actor,
               channel: str = CHANNEL) -> Event:
    """The public message event of a post in conversation ``conversation``."""
    return Event(
        source=source,
        conversation=conversation,
        id=post.uri,
        at=post.at,
        kind=EventKind.MESSAGE,
        actor=actor,
        public=True,
        channel=channel,
        url=post_url(post),
        author=post.handle or post.author,
        text=post.text or None,
    )


def dismissed_event(post: Post, *, source: str, channel: str = CHANNEL) -> Event:
    """The ``dismissed`` event of a moderated post that opened its own conversation."""
    return Event(source=source, conversation=post.uri, id=f"{post.uri}#dismissed", at=post.at,
                 kind=EventKind.DISMISSED, channel=channel, url=post_url(post),
                 author=post.handle or post.author)


def conversation_chain(
    uri: str,
    root: str | None,
    parents: Mapping[str, str | None],
    known: Mapping[str, str | None],
    brand: str,
) -> dict[str, str | None] | None:
    """The conversation of ``uri`` and of the posts walked to find it, or None if unknown.

    A post's conversation is the top-most post of its thread not written by ``brand``
    (None: the brand's own thread). ``root`` is the thread root from the post's record;
    ``parents`` maps posts in hand to what they reply to; ``known`` maps posts to their
    already resolved conversation. None means a parent is in neither: look the thread up.
    """
    if uri in known:
        return {uri: known[uri]}
    if root is None or root == uri:
        return {uri: None if did_of(uri) == brand else uri}
    if did_of(root) != brand:
        return {uri: root}
    chain: list[str] = []
    above: str | None = None
    current: str | None = uri
    for _ in range(len(parents) + 2):
        if current is None or current == root:
            break
        if current in known:
            above = known[current]
            break
        if current not in parents:
            return None
        chain.append(current)
        current = parents[current]
    else:
        return None  # a reply cycle: only a corrupt page has one
    conversations: dict[str, str | None] = {}
    for node in reversed(chain):
        if above is None and did_of(node) != brand:
            above = node
        conversations[node] = above
    return conversations


# The connector ------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """A page read but not yet returned: its posts still need their conversation."""

    before: Rounds
    after: Rounds
    more: bool
    pending: deque[tuple[Post, Actor]]
    parents: dict[str, str | None]
    events: list[Event] = field(default_factory=list)
    looked_up: set[str] = field(default_factory=set)


class BlueskyConnector:
    """Polls Bluesky for the brand's mentions and replies (see the module doc)."""

    kind: ClassVar[str] = "bluesky"
    settings_model: ClassVar[type[SourceSettings]] = BlueskySettings

    def __init__(self, settings: Any) -> None:
        self.settings = validated(BlueskySettings, settings)
        self._session: Session | None = None
        self._session_attempts: deque[datetime] = deque()
        self._conversations: OrderedDict[str, str | None] = OrderedDict()
        self._held: _Held | None = None
        self._budget = RateBudget()

    @property
    def _channel(self) -> str:
        return self.settings.channel or CHANNEL

    @property
    def _lag(self) -> timedelta:
        return timedelta(seconds=self.settings.lag)

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """One page of the stream whose turn it is, or the lookups of a held page."""
        self._budget.hold(f"bluesky {self.settings.name}", ctx.now())
        state = Rounds.load(cursor)
        held = self._held if self._held is not None and self._held.before == state else None
        self._held = held
        if await self._ensure_session(ctx):
            return Batch((), state.dump(), state.watermark, more=True)
        try:
            if held is None:
                held = self._held = await self._read_page(ctx, state)
            return await self._settle(ctx, held)
        except SessionExpired:
            await self._refresh(ctx)
            return Batch((), state.dump(), state.watermark, more=True)

    async def check(self, ctx: PollContext) -> str:
        """A session proves the app password; an existing one is checked with getSession."""
        if not await self._ensure_session(ctx):
            try:
                response = await self._get(ctx, "com.atproto.server.getSession",
                                           "bluesky getSession")
            except SessionExpired:
                self._session = None
                return await self.check(ctx)
            assert self._session is not None
            data = obj(response.data, "bluesky getSession")
            handle = data.get("handle")
            if isinstance(handle, str) and handle:
                self._session = replace(self._session, handle=handle)
        assert self._session is not None
        return f"authenticated as @{self._session.handle} ({self._session.did})"

    # Pages -----------------------------------------------------------------------------

    async def _read_page(self, ctx: PollContext, state: Rounds) -> _Held:
        name = state.next
        current = state.stream(name)
        query: list[tuple[str, str]] = [("limit", str(self.settings.limit))]
        if current.page is not None:
            query.append(("cursor", current.page))
        if name == "mentions":
            query += [("reasons", reason) for reason in self.settings.reasons]
            response = await self._get(ctx, "app.bsky.notification.listNotifications",
                                       "bluesky listNotifications", query)
            page = parse_notifications(response.data)
            items = [(n.uri, n.at) for n in page.notifications]
            posts = {n.uri: (n.post, Actor.CUSTOMER) for n in page.notifications
                     if n.post is not None and n.reason in self.settings.reasons
                     and n.post.author != self._brand}
            parents = {post.uri: post.parent for post, _ in posts.values()}
            next_page = page.cursor
        else:
            query += [("actor", self._brand), ("filter", "posts_with_replies")]
            response = await self._get(ctx, "app.bsky.feed.getAuthorFeed",
                                       "bluesky getAuthorFeed", query)
            feed = parse_author_feed(response.data)
            items = [(self._feed_key(i), i.sort_at) for i in feed.items if not i.pinned]
            posts = {self._feed_key(i): (i.post, Actor.AGENT) for i in feed.items
                     if not (i.repost or i.pinned) and i.post.author == self._brand}
            parents = {}
            for item in feed.items:
                parents.update(item.parents)
                if not item.repost:
                    parents[item.post.uri] = item.post.parent
            next_page = feed.cursor
        new_pass, fresh, finished = current.advance(
            items, posts, next_page, response.server_time or ctx.now(), since=ctx.since,
            lag=self._lag)
        after = state.with_pass(name, new_pass, finished=finished)
        more = not (finished and name == "replies")
        pending = deque(posts[key] for key in fresh if key in posts)
        return _Held(state, after, more, pending, parents)

    @staticmethod
    def _feed_key(item: FeedItem) -> str:
        # A repost is its own list entry: keyed apart from the post it repeats.
        return f"{item.post.uri}#repost" if item.repost else item.post.uri

    async def _settle(self, ctx: PollContext, held: _Held) -> Batch:
        """Place the held page's posts in their conversations; return it once all are placed."""
        lookups = MAX_THREAD_LOOKUPS
        while held.pending:
            post, actor = held.pending[0]
            chain = conversation_chain(post.uri, post.root, held.parents, self._conversations,
                                       self._brand)
            if chain is None and post.uri in held.looked_up:
                # Its own thread did not explain it (a corrupt chain): the post stands alone.
                log.info("%s: thread of %s unresolved", self.settings.name, post.uri)
                chain = {post.uri: None if post.author == self._brand else post.uri}
            if chain is None:
                if lookups <= 0 or self._budget.remaining == 0:
                    return Batch((), held.before.dump(), held.before.watermark, more=True)
                lookups -= 1
                held.looked_up.add(post.uri)
                try:
                    held.parents.update(await self._thread(ctx, post.uri))
                except PostNotFound:
                    log.info("%s: post %s skipped: deleted", self.settings.name, post.uri)
                    held.pending.popleft()
                continue
            for uri, conversation in chain.items():
                self._remember(uri, conversation)
            held.pending.popleft()
            self._emit(held, post, chain[post.uri], actor)
        self._held = None
        return Batch(tuple(held.events), held.after.dump(), held.after.watermark, more=held.more)

    def _emit(self, held: _Held, post: Post, conversation: str | None, actor: Actor) -> None:
        if conversation is None:  # the brand's own thread: nobody to answer
            return
        source, channel = self.settings.name, self._channel
        if actor is Actor.CUSTOMER and post.labels & DISMISS_LABELS:
            if conversation != post.uri:
                return  # never let moderated noise touch someone else's conversation
            held.events.append(post_event(post, source=source, conversation=conversation,
                                          actor=actor, channel=channel))
            held.events.append(dismissed_event(post, source=source, channel=channel))
            return
        held.events.append(post_event(post, source=source, conversation=conversation,
                                      actor=actor, channel=channel))

    async def _thread(self, ctx: PollContext, uri: str) -> dict[str, str | None]:
        response = await self._get(ctx, "app.bsky.feed.getPostThread",
                                   "bluesky getPostThread",
                                   [("uri", uri), ("depth", "0"), ("parentHeight", "1000")])
        return parse_thread(response.data, uri)

    def _remember(self, uri: str, conversation: str | None) -> None:
        remember(self._conversations, uri, conversation, CONVERSATION_CACHE_SIZE)

    # Sessions --------------------------------------------------------------------------

    @property
    def _brand(self) -> str:
        assert self._session is not None, "no session yet"
        return self._session.did

    async def _ensure_session(self, ctx: PollContext) -> bool:
        """Create or refresh the session when due; True if that took this poll's request."""
        if self._session is None:
            await self._create_session(ctx)
            return True
        expires = self._session.access_expires
        if expires is not None and ctx.now() >= expires - REFRESH_MARGIN:
            await self._refresh(ctx)
            return True
        return False

    async def _create_session(self, ctx: PollContext) -> None:
        now = ctx.now()
        while self._session_attempts and now - self._session_attempts[0] > SESSION_BUDGET[-1][0]:
            self._session_attempts.popleft()
        for window, limit in SESSION_BUDGET:
            recent = [at for at in self._session_attempts if now - at < window]
            if len(recent) >= limit:
                wait = (recent[0] + window - now).total_seconds()
                raise RateLimited(f"bluesky {self.settings.name}: createSession budget used up "
                                  f"({limit} per {window})", retry_after=wait)
        self._session_attempts.append(now)
        body = json.dumps({"identifier": self.settings.handle,
                           "password": self.settings.app_password.get_secret_value()})
        response = await self._call(ctx, "com.atproto.server.createSession",
                                    "bluesky createSession", method="POST", data=body,
                                    headers={"Content-Type": "application/json"})
        self._session = parse_session(response.data)

    async def _refresh(self, ctx: PollContext) -> None:
        """Trade the refresh token for a new pair; a refused one means a new session next."""
        session = self._session
        self._session = None
        if session is None:
            return
        try:
            response = await self._call(
                ctx, "com.atproto.server.refreshSession", "bluesky refreshSession",
                method="POST",
                headers={"Authorization": f"Bearer {session.refresh.get_secret_value()}"})
        except SessionExpired:
            return  # the refresh token is spent too: the next poll signs in again
        self._session = parse_session(response.data)

    # HTTP and rate limits --------------------------------------------------------------

    async def _get(self, ctx: PollContext, method: str, what: str,
                   query: Iterable[tuple[str, str]] = ()) -> JsonResponse:
        assert self._session is not None, "no session yet"
        token = self._session.access.get_secret_value()
        return await self._call(ctx, method, what, query=query,
                                headers={"Authorization": f"Bearer {token}"})

    async def _call(self, ctx: PollContext, nsid: str, what: str, *,
                    query: Iterable[tuple[str, str]] = (), method: str = "GET",
                    data: str | None = None, headers: Mapping[str, str] | None = None
                    ) -> JsonResponse:
        url = URL(f"{self.settings.base_url}/xrpc/{nsid}")
        query = list(query)
        if query:
            url = url.with_query(query)
        response = await get_json(
            ctx.session, url, what=what, method=method, data=data,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=self.settings.timeout,
            wait_hint=partial(reset_wait, now=ctx.now()), error_hint=xrpc_error)
        self._budget.note(header_count(response.headers, "ratelimit-remaining"),
                          reset_wait(response.headers, ctx.now()), ctx.now())
        return response


__all__ = [
    "BlueskyConnector",
    "BlueskySettings",
    "FeedItem",
    "FeedPage",
    "Notification",
    "NotificationPage",
    "Post",
    "PostNotFound",
    "Session",
    "SessionExpired",
    "conversation_chain",
    "did_of",
    "dismissed_event",
    "jwt_expiry",
    "parse_at_uri",
    "parse_author_feed",
    "parse_notifications",
    "parse_post_view",
    "parse_session",
    "parse_thread",
    "post_event",
    "post_url",
    "reset_wait",
    "xrpc_error",
    "xrpc_error_name",
]
