"""Provides a faithful fake of Bluesky's XRPC API: a real aiohttp app over an in-memory network.

It serves what the connector and ``replywatch demo`` use, in the shapes the recorded
payloads show (tests/fixtures SOURCES.md: atproto.dart's listNotifications, MarshalX's
getPostThread) and the lexicons define:

- ``POST /xrpc/com.atproto.server.createSession`` (handle or DID + app password),
  ``POST …refreshSession`` (rotates the pair: a used refresh token is revoked),
  ``GET …getSession``; JWTs whose ``exp`` follows the world's clock (2 h access).
- ``GET /xrpc/app.bsky.notification.listNotifications`` (``limit`` 1-100 default 50,
  ``reasons``, ``cursor``), newest first.
- ``GET /xrpc/app.bsky.feed.getAuthorFeed`` (``actor``, ``filter``, ``limit``, ``cursor``):
  posts and reposts with the reply's root and parent views.
- ``GET /xrpc/app.bsky.feed.getPostThread`` (``uri``, ``depth``, ``parentHeight``).

Like the app view, a post's notifications are made when it is indexed: a ``mention``
for each mention facet, a ``quote`` for a quoted post, and a ``reply`` to the authors of
its ancestors up to 4 levels up, one per account. Lists sort by ``sortAt``, the earlier
of ``createdAt`` and the index time, and page with a ``<ms>::<cid>`` keyset cursor (the
recorded format). Errors are XRPC bodies (``{"error": "ExpiredToken", "message": …}``);
an expired access token is a 400 ``ExpiredToken``. Every response carries
``ratelimit-*`` headers (3000 requests per 5 minutes; createSession 30 per 5 minutes
per account) and a ``Date`` from the world's clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    Handler,
    SteppedClock,
    controls_middleware,
)

RATE_LIMIT = 3000
RATE_PERIOD_SECONDS = 300
SESSION_LIMIT = 30
ACCESS_TTL = timedelta(hours=2)
REFRESH_TTL = timedelta(days=90)
REPLY_NOTIFY_DEPTH = 5
MODERATION_DID = "did:plc:ar7c4by46qjdydhdevvrndac"
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_MENTION = re.compile(r"(?<![\w@])@(?P<handle>[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])")
_SECRET = b"fake-pds-signing-secret"


def iso_ms(value: datetime) -> str:
    """The app view's timestamp format: UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tid(at: datetime, clock_id: int = 0) -> str:
    """A record key TID: microseconds << 10 | clock id, in base32-sortable (13 chars)."""
    value = (int(at.timestamp() * 1_000_000) << 10) | (clock_id & 0x3FF)
    return "".join(_TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


def fake_cid(*parts: str) -> str:
    """A CIDv1-looking content id (``bafyrei…``) derived from ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "bafyrei" + base64.b32encode(digest).decode().lower().rstrip("=")[:52]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class FakeActor:
    """An account of the fake network."""

    did: str
    handle: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FakePost:
    """A post: ``created_at`` is the client's claim, ``indexed_at`` when the app view saw it."""

    uri: str
    cid: str
    author: str
    text: str
    created_at: datetime
    indexed_at: datetime
    root: str | None
    parent: str | None
    mentions: tuple[tuple[int, int, str], ...]
    quote: str | None

    @property
    def sort_at(self) -> datetime:
        """Where the app view lists it: the earlier of created and indexed."""
        return min(self.created_at, self.indexed_at)


@dataclass(frozen=True, slots=True)
class FakeRecord:
    """A like or repost record (the notifications and feed entries that are not posts)."""

    uri: str
    cid: str
    author: str
    subject: str
    indexed_at: datetime


@dataclass(frozen=True, slots=True)
class FakeNotification:
    """A notification of ``recipient``: ``record`` is the notifying record's URI."""

    recipient: str
    reason: str
    author: str
    record: str
    cid: str
    reason_subject: str | None
    sort_at: datetime


@dataclass(slots=True)
class _Token:
    did: str
    kind: str  # "access" or "refresh"
    expires: datetime
    revoked: bool = False


class BlueskyWorld:
    """The accounts, posts, reposts, likes and notifications a fake Bluesky serves."""

    def __init__(self, *, now: Callable[[], datetime], brand: str = "acme.bsky.social",
                 app_password: str = "abcd-efgh-ijkl-mnop") -> None:
        self.now = now
        self.accounts: dict[str, FakeActor] = {}
        self.posts: dict[str, FakePost] = {}
        self.reposts: dict[str, FakeRecord] = {}
        self.likes: dict[str, FakeRecord] = {}
        self.notifications: list[FakeNotification] = []
        self.labels: dict[str, set[str]] = {}
        # Reply and quote counts by post, kept as posts come and go: counting them per
        # post view made an author feed of a week's posts take seconds a page.
        self._replies: Counter[str] = Counter()
        self._quotes: Counter[str] = Counter()
        self._clock_ids = itertools.count(1)
        self.brand_did = self.add_account(brand, brand.split(".")[0].capitalize())
        self.app_passwords: dict[str, str] = {self.brand_did: app_password}

    # Building the world ---------------------------------------------------------------

    def add_account(self, handle: str, display_name: str = "") -> str:
        """Create an account with ``handle``; return its DID."""
        handle = handle.lstrip("@").lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+", handle):
            raise ValueError(f"{handle!r} is not a handle")
        if self.find(handle) is not None:
            raise ValueError(f"handle {handle!r} is taken")
        digest = hashlib.sha256(handle.encode()).digest()
        did = "did:plc:" + base64.b32encode(digest).decode().lower()[:24]
        self.accounts[did] = FakeActor(did, handle, display_name, self.now())
        return did

    def find(self, actor: str) -> FakeActor | None:
        """The account with this DID or handle, if any."""
        actor = actor.lstrip("@")
        if actor in self.accounts:
            return self.accounts[actor]
        return next((a for a in self.accounts.values() if a.handle == actor.lower()), None)

    def _uri(self, did: str, collection: str, at: datetime) -> str:
        return f"at://{did}/{collection}/{tid(at, next(self._clock_ids))}"

    def post(self, author: str, text: str, *, at: datetime | None = None,
             created_at: datetime | None = None, reply_to: str | None = None,
             quote: str | None = None) -> str:
        """Index a post by ``author`` at ``at`` (default now); return its AT URI.

        ``created_at`` is what the client wrote (default ``at``): earlier for a post
        that took a while to be indexed, later for a client whose clock runs ahead.
        """
        if author not in self.accounts:
            raise KeyError(f"no account {author}")
        indexed = (at or self.now()).astimezone(UTC)
        created = (created_at or indexed).astimezone(UTC)
        root = parent = None
        if reply_to is not None:
            parent_post = self.posts[reply_to]
            parent, root = parent_post.uri, parent_post.root or parent_post.uri
        if quote is not None and quote not in self.posts:
            raise KeyError(f"no post {quote} to quote")
        uri = self._uri(author, "app.bsky.feed.post", created)
        post = FakePost(uri, fake_cid(uri, text), author, text, created, indexed, root, parent,
                        self._mentions(text), quote)
        self.posts[uri] = post
        self._replies[parent or ""] += 1
        self._quotes[quote or ""] += 1
        self._notify(post)
        return uri

    def _mentions(self, text: str) -> tuple[tuple[int, int, str], ...]:
        """Mention facets: UTF-8 byte ranges of ``@handle`` of known accounts."""
        found = []
        for match in _MENTION.finditer(text):
            actor = self.find(match["handle"])
            if actor is not None:
                start = len(text[:match.start()].encode())
                found.append((start, start + len(match[0].encode()), actor.did))
        return tuple(found)

    def _notify(self, post: FakePost) -> None:
        """The app view's notifications for a newly indexed post."""
        notified = {post.author}

        def notify(did: str, reason: str, subject: str | None) -> None:
            if did not in notified and did in self.accounts:
                notified.add(did)
                self.notifications.append(FakeNotification(
                    did, reason, post.author, post.uri, post.cid, subject, post.sort_at))

        for _, _, did in post.mentions:
            notify(did, "mention", None)
        if post.quote is not None:
            notify(self.posts[post.quote].author, "quote", post.quote)
        ancestor, height = post.parent, 1
        while ancestor is not None and height < REPLY_NOTIFY_DEPTH:
            above = self.posts.get(ancestor)
            if above is None:
                break
            notify(above.author, "reply", above.uri)
            ancestor, height = above.parent, height + 1

    def repost(self, by: str, uri: str, *, at: datetime | None = None) -> str:
        """``by`` reposts ``uri``; return the repost record's URI."""
        indexed = (at or self.now()).astimezone(UTC)
        record = self._uri(by, "app.bsky.feed.repost", indexed)
        self.reposts[record] = FakeRecord(record, fake_cid(record), by, uri, indexed)
        self._notify_record(self.reposts[record], "repost")
        return record

    def like(self, by: str, uri: str, *, at: datetime | None = None) -> str:
        """``by`` likes ``uri``; return the like record's URI."""
        indexed = (at or self.now()).astimezone(UTC)
        record = self._uri(by, "app.bsky.feed.like", indexed)
        self.likes[record] = FakeRecord(record, fake_cid(record), by, uri, indexed)
        self._notify_record(self.likes[record], "like")
        return record

    def _notify_record(self, record: FakeRecord, reason: str) -> None:
        subject = self.posts[record.subject]
        if subject.author != record.author:
            self.notifications.append(FakeNotification(
                subject.author, reason, record.author, record.uri, record.cid, subject.uri,
                record.indexed_at))

    def delete(self, uri: str) -> None:
        """Delete a post; like the app view, its notifications and reposts go with it."""
        post = self.posts.pop(uri, None)
        if post is None:
            raise KeyError(f"no post {uri}")
        self._replies[post.parent or ""] -= 1
        self._quotes[post.quote or ""] -= 1
        self.notifications = [n for n in self.notifications if n.record != uri]
        self.reposts = {k: r for k, r in self.reposts.items() if r.subject != uri}

    def label(self, subject: str, value: str) -> None:
        """Have the moderation service label a post (AT URI) or an account (DID)."""
        self.labels.setdefault(subject, set()).add(value)

    # What the API serves -----------------------------------------------------------

    def _label_views(self, subject: str, cid: str | None = None) -> list[dict[str, Any]]:
        views = []
        for value in sorted(self.labels.get(subject, ())):
            view: dict[str, Any] = {"src": MODERATION_DID, "uri": subject, "val": value,
                                    "cts": iso_ms(self.now()), "ver": 1}
            if cid is not None:
                view["cid"] = cid
            views.append(view)
        return views

    def profile_basic(self, did: str) -> dict[str, Any]:
        """An ``app.bsky.actor.defs#profileViewBasic``."""
        actor = self.accounts[did]
        return {
            "did": actor.did,
            "handle": actor.handle,
            "displayName": actor.display_name,
            "avatar": f"https://cdn.bsky.app/img/avatar/plain/{did}/{fake_cid(did)}@jpeg",
            "viewer": {"muted": False, "blockedBy": False},
            "labels": self._label_views(did),
            "createdAt": iso_ms(actor.created_at),
        }

    def profile(self, did: str) -> dict[str, Any]:
        """An ``app.bsky.actor.defs#profileView``."""
        return self.profile_basic(did) | {"description": "",
                                          "indexedAt": iso_ms(self.accounts[did].created_at)}

    def record_json(self, post: FakePost) -> dict[str, Any]:
        """The post's record as its author's client wrote it."""
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": post.text,
                                  "langs": ["en"], "createdAt": iso_ms(post.created_at)}
        if post.mentions:
            record["facets"] = [
                {"index": {"byteStart": start, "byteEnd": end},
                 "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}]}
                for start, end, did in post.mentions]
        if post.parent is not None and post.root is not None:
            record["reply"] = {
                "root": {"cid": fake_cid(post.root, self._text(post.root)), "uri": post.root},
                "parent": {"cid": fake_cid(post.parent, self._text(post.parent)),
                           "uri": post.parent},
            }
        if post.quote is not None:
            record["embed"] = {"$type": "app.bsky.embed.record",
                               "record": {"cid": fake_cid(post.quote, self._text(post.quote)),
                                          "uri": post.quote}}
        return record

    def _text(self, uri: str) -> str:
        post = self.posts.get(uri)
        return "" if post is None else post.text

    def post_view(self, post: FakePost) -> dict[str, Any]:
        """An ``app.bsky.feed.defs#postView``."""
        view: dict[str, Any] = {
            "uri": post.uri,
            "cid": post.cid,
            "author": self.profile_basic(post.author),
            "record": self.record_json(post),
            "replyCount": self._replies[post.uri],
            "repostCount": sum(1 for r in self.reposts.values() if r.subject == post.uri),
            "likeCount": sum(1 for r in self.likes.values() if r.subject == post.uri),
            "quoteCount": self._quotes[post.uri],
            "indexedAt": iso_ms(post.indexed_at),
            "viewer": {},
            "labels": self._label_views(post.uri, post.cid),
        }
        if post.quote is not None:
            quoted = self.posts.get(post.quote)
            view["embed"] = {"$type": "app.bsky.embed.record#view", "record": (
                {"$type": "app.bsky.embed.record#viewNotFound", "uri": post.quote,
                 "notFound": True} if quoted is None else
                {"$type": "app.bsky.embed.record#viewRecord", "uri": quoted.uri,
                 "cid": quoted.cid, "author": self.profile_basic(quoted.author),
                 "value": self.record_json(quoted), "labels": [],
                 "indexedAt": iso_ms(quoted.indexed_at), "embeds": []})}
        return view

    def maybe_post_view(self, uri: str) -> dict[str, Any]:
        """A post view, or ``notFoundPost`` for a deleted one."""
        post = self.posts.get(uri)
        if post is None:
            return {"$type": "app.bsky.feed.defs#notFoundPost", "uri": uri, "notFound": True}
        return {"$type": "app.bsky.feed.defs#postView"} | self.post_view(post)

    def notification_json(self, note: FakeNotification) -> dict[str, Any]:
        """An ``app.bsky.notification.listNotifications#notification``."""
        if note.reason in ("like", "repost"):
            record_source = self.likes.get(note.record) or self.reposts[note.record]
            subject = self.posts.get(record_source.subject)
            record: dict[str, Any] = {
                "$type": f"app.bsky.feed.{note.reason}",
                "subject": {"cid": "" if subject is None else subject.cid,
                            "uri": record_source.subject},
                "createdAt": iso_ms(record_source.indexed_at),
            }
        else:
            record = self.record_json(self.posts[note.record])
        data: dict[str, Any] = {
            "uri": note.record,
            "cid": note.cid,
            "author": self.profile(note.author),
            "reason": note.reason,
            "isRead": False,
            "record": record,
            "labels": self._label_views(note.record, note.cid),
            "indexedAt": iso_ms(note.sort_at),
        }
        if note.reason_subject is not None:
            data["reasonSubject"] = note.reason_subject
        return data


# Paging -------------------------------------------------------------------------------


def _key(at: datetime, cid: str) -> tuple[int, str]:
    return (int(at.timestamp() * 1000), cid)


def _cursor(key: tuple[int, str]) -> str:
    return f"{key[0]}::{key[1]}"


def _parse_cursor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d{1,16})::(\w{1,100})", value)
    if match is None:
        raise _XrpcError(400, "InvalidRequest", "Malformed cursor")
    return (int(match[1]), match[2])


def _page(items: Iterable[tuple[tuple[int, str], Any]], cursor: str | None,
          limit: int) -> tuple[list[Any], str | None]:
    """Keyset paging newest first: the items below ``cursor``, and the next cursor."""
    below = _parse_cursor(cursor)
    ordered = sorted((pair for pair in items if below is None or pair[0] < below),
                     key=lambda pair: pair[0], reverse=True)[:limit]
    return [item for _, item in ordered], (_cursor(ordered[-1][0]) if ordered else None)


class _XrpcError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json",
                        charset="utf-8")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"-?\d{1,9}", value):
        raise _XrpcError(400, "InvalidRequest", f"{name} must be an integer")
    number = int(value)
    if number < low:
        raise _XrpcError(400, "InvalidRequest", f"{name} can not be less than {low}")
    if number > high:
        raise _XrpcError(400, "InvalidRequest", f"{name} can not be greater than {high}")
    return number


@dataclass(slots=True)
class _Window:
    index: int = -1
    used: int = 0


@dataclass
class BlueskyFake:
    """The fake PDS + app view: routes, sessions, rate limits and scripted faults."""

    world: BlueskyWorld
    controls: FakeControls = field(default_factory=FakeControls)
    rate_limit: int = RATE_LIMIT
    session_limit: int = SESSION_LIMIT
    access_ttl: timedelta = ACCESS_TTL
    tokens: dict[str, _Token] = field(default_factory=dict)
    _global: _Window = field(default_factory=_Window)
    _sessions: dict[str, _Window] = field(default_factory=dict)
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = web.Application(middlewares=[controls_middleware(self.controls), self._gate])
        app.on_response_prepare.append(self._stamp_date)
        routes = {
            "com.atproto.server.createSession": ("POST", self._create_session),
            "com.atproto.server.refreshSession": ("POST", self._refresh_session),
            "com.atproto.server.getSession": ("GET", self._get_session),
            "app.bsky.notification.listNotifications": ("GET", self._list_notifications),
            "app.bsky.feed.getAuthorFeed": ("GET", self._author_feed),
            "app.bsky.feed.getPostThread": ("GET", self._post_thread),
        }
        for nsid, (method, handler) in routes.items():
            app.router.add_route(method, f"/xrpc/{nsid}", handler)
        return app

    def expire_sessions(self) -> None:
        """Make every access token issued so far expired (as if two hours had passed)."""
        for token in self.tokens.values():
            if token.kind == "access":
                token.expires = min(token.expires, self.world.now())

    def revoke_app_password(self, did: str | None = None) -> None:
        """Revoke the app password of ``did`` (the brand): it and its sessions stop working."""
        did = did or self.world.brand_did
        self.world.app_passwords[did] = "revoked-" + hashlib.sha256(did.encode()).hexdigest()
        for token in self.tokens.values():
            if token.did == did:
                token.revoked = True

    # Plumbing ------------------------------------------------------------------------

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_datetime(self.world.now().astimezone(UTC), usegmt=True)

    def _count(self, window: _Window, limit: int) -> tuple[bool, dict[str, str]]:
        seconds = int(self.world.now().timestamp())
        index = seconds // RATE_PERIOD_SECONDS
        if window.index != index:
            window.index, window.used = index, 0
        window.used += 1
        reset = (index + 1) * RATE_PERIOD_SECONDS
        return window.used <= limit, {
            "ratelimit-limit": str(limit),
            "ratelimit-remaining": str(max(0, limit - window.used)),
            "ratelimit-reset": str(reset),
            "ratelimit-policy": f"{limit};w={RATE_PERIOD_SECONDS}",
        }

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        allowed, headers = self._count(self._global, self.rate_limit)
        if not allowed:
            response: web.StreamResponse = _json(
                {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, 429)
        else:
            try:
                response = await handler(request)
            except _XrpcError as err:
                response = _json({"error": err.error, "message": err.message}, err.status)
            except web.HTTPNotFound:
                response = _json({"error": "MethodNotImplemented",
                                  "message": "Method Not Implemented"}, 501)
        # Several limits apply to some routes: like the PDS, report the tightest one.
        own = response.headers.get("ratelimit-remaining", "")
        if not own.isdigit() or int(headers["ratelimit-remaining"]) < int(own):
            response.headers.update(headers)
        return response

    def _issue(self, did: str) -> dict[str, Any]:
        now = self.world.now()
        serial = next(self._serial)
        pair = {}
        for kind, ttl, scope, typ in (
            ("access", self.access_ttl, "com.atproto.appPass", "at+jwt"),
            ("refresh", REFRESH_TTL, "com.atproto.refresh", "refresh+jwt"),
        ):
            header = _b64url(json.dumps({"typ": typ, "alg": "HS256"}).encode())
            claims = {"scope": scope, "sub": did, "aud": "did:web:bsky.social",
                      "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
            if kind == "refresh":
                claims["jti"] = fake_cid(did, str(serial))[7:30]
            payload = _b64url(json.dumps(claims).encode())
            signature = _b64url(hmac.new(_SECRET, f"{header}.{payload}.{serial}".encode(),
                                         hashlib.sha256).digest())
            token = f"{header}.{payload}.{signature}"
            self.tokens[token] = _Token(did, kind, now + ttl)
            pair[kind] = token
        actor = self.world.accounts[did]
        return {
            "did": did,
            "didDoc": {
                "@context": ["https://www.w3.org/ns/did/v1"],
                "id": did,
                "alsoKnownAs": [f"at://{actor.handle}"],
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                             "serviceEndpoint": "https://morel.us-east.host.bsky.network"}],
            },
            "handle": actor.handle,
            "accessJwt": pair["access"],
            "refreshJwt": pair["refresh"],
            "active": True,
        }

    def _bearer(self, request: web.Request, kind: str) -> _Token:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise _XrpcError(401, "AuthMissing", "Authentication Required")
        token = self.tokens.get(header[len("Bearer "):])
        if token is None:
            raise _XrpcError(401, "InvalidToken", "Token could not be verified")
        if token.kind != kind:
            raise _XrpcError(400, "InvalidToken", "Bad token scope")
        if token.revoked:
            raise _XrpcError(400, "ExpiredToken", "Token has been revoked")
        if self.world.now() >= token.expires:
            raise _XrpcError(400, "ExpiredToken", "Token has expired")
        return token

    # Routes --------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError as err:
            raise _XrpcError(400, "InvalidRequest", "Invalid JSON body") from err
        if not isinstance(body, dict) or not isinstance(body.get("identifier"), str) \
                or not isinstance(body.get("password"), str):
            raise _XrpcError(400, "InvalidRequest", 'Input must have the property "identifier"')
        actor = self.world.find(body["identifier"])
        key = actor.did if actor is not None else body["identifier"].lower()
        allowed, headers = self._count(self._sessions.setdefault(key, _Window()),
                                       self.session_limit)
        if not allowed:
            response = _json({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                             429)
        elif actor is None or self.world.app_passwords.get(actor.did) != body["password"]:
            response = _json({"error": "AuthenticationRequired",
                              "message": "Invalid identifier or password"}, 401)
        else:
            response = _json(self._issue(actor.did))
        response.headers.update(headers)
        return response

    async def _refresh_session(self, request: web.Request) -> web.Response:
        token = self._bearer(request, "refresh")
        token.revoked = True
        return _json(self._issue(token.did))

    async def _get_session(self, request: web.Request) -> web.Response:
        token = self._bearer(request, "access")
        actor = self.world.accounts[token.did]
        return _json({"handle": actor.handle, "did": actor.did, "active": True,
                      "emailConfirmed": True, "emailAuthFactor": False})

    async def _list_notifications(self, request: web.Request) -> web.Response:
        viewer = self._bearer(request, "access").did
        limit = _int_param(request, "limit", 50, 1, 100)
        reasons = set(request.query.getall("reasons", []))
        world = self.world
        chosen = [(_key(n.sort_at, n.cid), n) for n in world.notifications
                  if n.recipient == viewer and (not reasons or n.reason in reasons)]
        page, cursor = _page(chosen, request.query.get("cursor"), limit)
        body: dict[str, Any] = {"notifications": [world.notification_json(n) for n in page],
                                "priority": False}
        if cursor is not None:
            body["cursor"] = cursor
        return _json(body)

    async def _author_feed(self, request: web.Request) -> web.Response:
        self._bearer(request, "access")
        world = self.world
        actor = world.find(request.query.get("actor", ""))
        if actor is None:
            raise _XrpcError(400, "InvalidRequest", "Profile not found")
        limit = _int_param(request, "limit", 50, 1, 100)
        feed_filter = request.query.get("filter", "posts_with_replies")
        # Views are built for the page only: building one per post made a long feed slow.
        entries: list[tuple[tuple[int, str], FakePost | FakeRecord]] = [
            (_key(post.sort_at, post.cid), post) for post in world.posts.values()
            if post.author == actor.did and self._in_filter(post, feed_filter, actor.did)]
        if feed_filter not in ("posts_with_media", "posts_with_video"):
            entries += [(_key(repost.indexed_at, repost.cid), repost)
                        for repost in world.reposts.values()
                        if repost.author == actor.did and repost.subject in world.posts]
        page, cursor = _page(entries, request.query.get("cursor"), limit)
        body: dict[str, Any] = {"feed": [self._entry_view(item, actor.did) for item in page]}
        if cursor is not None:
            body["cursor"] = cursor
        return _json(body)

    def _entry_view(self, item: FakePost | FakeRecord, actor: str) -> dict[str, Any]:
        if isinstance(item, FakePost):
            return self._feed_view(item)
        view = self._feed_view(self.world.posts[item.subject])
        view.pop("reply", None)
        view["reason"] = {"$type": "app.bsky.feed.defs#reasonRepost",
                          "by": self.world.profile_basic(actor),
                          "indexedAt": iso_ms(item.indexed_at)}
        return view

    def _in_filter(self, post: FakePost, feed_filter: str, author: str) -> bool:
        if feed_filter in ("posts_with_media", "posts_with_video"):
            return False  # nobody in this world posts media
        if feed_filter == "posts_no_replies":
            return post.parent is None
        if feed_filter == "posts_and_author_threads":
            root = self.world.posts.get(post.root or post.uri)
            return post.parent is None or (root is not None and root.author == author)
        return True

    def _feed_view(self, post: FakePost) -> dict[str, Any]:
        world = self.world
        view: dict[str, Any] = {"post": world.post_view(post)}
        if post.parent is not None and post.root is not None:
            reply: dict[str, Any] = {"root": world.maybe_post_view(post.root),
                                     "parent": world.maybe_post_view(post.parent)}
            parent = world.posts.get(post.parent)
            grandparent = world.posts.get(parent.parent or "") if parent else None
            if grandparent is not None:
                reply["grandparentAuthor"] = world.profile_basic(grandparent.author)
            view["reply"] = reply
        return view

    async def _post_thread(self, request: web.Request) -> web.Response:
        self._bearer(request, "access")
        world = self.world
        uri = request.query.get("uri", "")
        depth = _int_param(request, "depth", 6, 0, 1000)
        height = _int_param(request, "parentHeight", 80, 0, 1000)
        post = world.posts.get(uri)
        if post is None:
            raise _XrpcError(400, "NotFound", f"Post not found: {uri}")
        return _json({"thread": self._thread_view(post, depth, height)})

    def _thread_view(self, post: FakePost, depth: int, height: int) -> dict[str, Any]:
        world = self.world
        view: dict[str, Any] = {"$type": "app.bsky.feed.defs#threadViewPost",
                                "post": world.post_view(post)}
        node = view
        current, left = post, height
        while current.parent is not None and left > 0:
            above = world.posts.get(current.parent)
            if above is None:
                node["parent"] = {"$type": "app.bsky.feed.defs#notFoundPost",
                                  "uri": current.parent, "notFound": True}
                break
            parent_view: dict[str, Any] = {"$type": "app.bsky.feed.defs#threadViewPost",
                                           "post": world.post_view(above)}
            node["parent"] = parent_view
            node, current, left = parent_view, above, left - 1
        view["replies"] = self._replies(post, depth)
        return view

    def _replies(self, post: FakePost, depth: int) -> list[dict[str, Any]]:
        if depth <= 0:
            return []
        children = sorted((p for p in self.world.posts.values() if p.parent == post.uri),
                          key=lambda p: p.sort_at)
        return [{"$type": "app.bsky.feed.defs#threadViewPost",
                 "post": self.world.post_view(child),
                 "replies": self._replies(child, depth - 1)} for child in children]


def contract_case() -> ContractCase:
    """The Bluesky fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = BlueskyWorld(now=clock)
    fake = BlueskyFake(world)
    customer = world.add_account("casey.bsky.social", "Casey")

    def seed() -> None:
        mention = world.post(customer, "@acme.bsky.social my order never arrived",
                             at=clock() - timedelta(minutes=30))
        world.post(world.brand_did, "@casey.bsky.social sorry! sending a new one today",
                   at=clock() - timedelta(minutes=20), reply_to=mention)

    def add_activity() -> None:
        world.post(customer, "@acme.bsky.social still waiting on that order", at=clock())

    return ContractCase(
        kind="bluesky",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-bluesky", "kind": "bluesky",
                                   "handle": "acme.bsky.social",
                                   "app_password": "abcd-efgh-ijkl-mnop", "base_url": base_url},
        bad_settings={"name": "acme-bluesky", "kind": "bluesky", "handle": "acme.bsky.social",
                      "app_password": "abcd-efgh-ijkl-mnop", "limit": 101},
        seed=seed,
        add_activity=add_activity,
        revoke=fake.revoke_app_password,
        clock=clock,
    )


__all__ = [
    "BlueskyFake",
    "BlueskyWorld",
    "FakeActor",
    "FakeNotification",
    "FakePost",
    "FakeRecord",
    "contract_case",
    "fake_cid",
    "iso_ms",
    "tid",
]
