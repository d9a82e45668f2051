"""Provides a faithful fake of the X API v2: a real aiohttp app over an in-memory world of tweets.

It serves what the connector and ``replywatch demo`` use, in the shapes the recorded
payload shows (tests/fixtures SOURCES.md: tweepy's mentions cassette) and the v2
reference documents:

- ``GET /2/users/me`` (user-context tokens only: an app-only token gets 403
  ``unsupported-authentication``) and ``GET /2/users/:id``
- ``GET /2/users/:id/mentions`` and ``GET /2/users/:id/tweets`` (``exclude=retweets``):
  newest first, ``max_results`` 5-100 (default 10), ``since_id``/``until_id``,
  ``pagination_token`` from ``meta.next_token``; the 800 most recent mentions and 3200
  most recent tweets only
- ``GET /2/tweets?ids=`` (up to 100 ids)

Only the requested ``tweet.fields`` are returned (``id``, ``text`` and
``edit_history_tweet_ids`` always), with ``includes.users`` / ``includes.tweets`` for
the ``author_id`` and ``referenced_tweets.id`` expansions; a missing tweet or user is a
partial error in ``errors`` (HTTP 200). Like X, tweet ids are snowflakes (milliseconds
since 2010-11-04T01:42:54.657Z << 22), a reply's text starts with ``@`` its parent's
author, ``&``, ``<`` and ``>`` are escaped as HTML entities, and a tweet can reach the
timelines a little after its ``created_at`` (``visible_after``). Every response carries
``x-rate-limit-*`` (epoch reset, per endpoint per 15 minutes) and a ``date`` from the
world's clock; a refused token is X's 401 problem body.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    Handler,
    SteppedClock,
    controls_middleware,
)

TWITTER_EPOCH_MS = 1288834974657
RATE_WINDOW_SECONDS = 15 * 60
RATE_LIMITS = {"mentions": 450, "tweets": 1500, "lookup": 900, "users": 900, "me": 75}
MENTIONS_REACH = 800
TWEETS_REACH = 3200
TWEET_FIELDS = frozenset({
    "attachments", "author_id", "context_annotations", "conversation_id", "created_at",
    "edit_controls", "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id",
    "lang", "possibly_sensitive", "public_metrics", "referenced_tweets", "reply_settings",
    "source", "text", "withheld"})
EXPANSIONS = frozenset({"author_id", "referenced_tweets.id", "referenced_tweets.id.author_id",
                        "in_reply_to_user_id", "entities.mentions.username"})
_MENTION = re.compile(r"(?<![\w@])@(?P<name>[A-Za-z0-9_]{1,15})")
_PROBLEMS = "https://api.twitter.com/2/problems"
_ACTING_USER = web.RequestKey("acting_user", str)
"""The user a request's token acts for; absent for an app-only token."""


def snowflake(at: datetime, sequence: int = 0) -> int:
    """An X-style id for ``at``: milliseconds since X's epoch << 22 | worker and sequence."""
    return ((int(at.timestamp() * 1000) - TWITTER_EPOCH_MS) << 22) | (1 << 12) | (sequence & 0xFFF)


def x_date(value: datetime) -> str:
    """X's ``date`` header format, as recorded (``Fri, 07 Oct 2022 22:43:18 UTC``)."""
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class FakeUser:
    """An account of the fake world."""

    id: str
    username: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FakeTweet:
    """A tweet: ``visible_at`` is when it reaches the timelines (a little after creation)."""

    id: str
    author: str
    text: str
    created_at: datetime
    visible_at: datetime
    conversation_id: str
    parent: str | None
    retweet_of: str | None
    mentions: tuple[tuple[int, int, str], ...]


class XWorld:
    """The users and tweets a fake X serves."""

    def __init__(self, *, now: Callable[[], datetime], brand: str = "acme") -> None:
        self.now = now
        self.users: dict[str, FakeUser] = {}
        self.tweets: dict[str, FakeTweet] = {}
        self.deleted: set[str] = set()
        self._user_ids = itertools.count(1_500_000_000)
        self._sequence = itertools.count(1)
        self._last_id = 0
        self.brand_id = self.add_user(brand, brand.capitalize())

    def add_user(self, username: str, name: str = "") -> str:
        """Create an account; return its id."""
        username = username.lstrip("@")
        if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", username):
            raise ValueError(f"{username!r} is not an X username")
        if self.find(username) is not None:
            raise ValueError(f"username {username!r} is taken")
        user_id = str(next(self._user_ids))
        self.users[user_id] = FakeUser(user_id, username, name or username, self.now())
        return user_id

    def find(self, username: str) -> FakeUser | None:
        """The account named ``username`` (case-insensitive), if any."""
        wanted = username.lstrip("@").lower()
        return next((u for u in self.users.values() if u.username.lower() == wanted), None)

    def tweet(self, author: str, text: str, *, at: datetime | None = None,
              reply_to: str | None = None, visible_after: float = 0.0) -> str:
        """Post a tweet at ``at`` (default now); return its id.

        A reply starts with ``@`` its parent's author, as X's clients write it. Ids follow
        ``at`` but never fall below one already given, like a real id service.
        """
        if author not in self.users:
            raise KeyError(f"no user {author}")
        created = (at or self.now()).astimezone(UTC)
        parent = self.tweets.get(reply_to or "") if reply_to is not None else None
        if reply_to is not None and (parent is None or reply_to in self.deleted):
            raise KeyError(f"no tweet {reply_to} to reply to")
        if parent is not None:
            prefix = f"@{self.users[parent.author].username} "
            if not text.lower().startswith(prefix.lower()):
                text = prefix + text
        return self._add(author, text, created, parent, None, visible_after)

    def retweet(self, author: str, tweet_id: str, *, at: datetime | None = None) -> str:
        """``author`` retweets ``tweet_id``; return the retweet's id."""
        original = self.tweets[tweet_id]
        text = f"RT @{self.users[original.author].username}: {original.text}"
        return self._add(author, text, (at or self.now()).astimezone(UTC), None, tweet_id, 0.0)

    def _add(self, author: str, text: str, created: datetime, parent: FakeTweet | None,
             retweet_of: str | None, visible_after: float) -> str:
        tweet_id = max(snowflake(created, next(self._sequence)), self._last_id + 1)
        self._last_id = tweet_id
        mentions = []
        for match in _MENTION.finditer(text):
            user = self.find(match["name"])
            if user is not None:
                mentions.append((match.start(), match.end(), user.id))
        tweet = FakeTweet(
            str(tweet_id), author, text, created, created + timedelta(seconds=visible_after),
            parent.conversation_id if parent is not None else str(tweet_id),
            None if parent is None else parent.id, retweet_of, tuple(mentions))
        self.tweets[tweet.id] = tweet
        return tweet.id

    def delete(self, tweet_id: str) -> None:
        """Delete a tweet: it leaves every timeline and lookups report it not found."""
        if tweet_id not in self.tweets or tweet_id in self.deleted:
            raise KeyError(f"no tweet {tweet_id}")
        self.deleted.add(tweet_id)

    def live(self, tweet_id: str) -> FakeTweet | None:
        """The tweet, unless deleted."""
        return None if tweet_id in self.deleted else self.tweets.get(tweet_id)

    # What the API serves -----------------------------------------------------------

    def timeline(self, user_id: str, kind: str, *, exclude_retweets: bool) -> list[FakeTweet]:
        """A user's mentions or tweets as the timeline shows them now, newest first."""
        now = self.now()
        if kind == "mentions":
            chosen = [t for t in self.tweets.values()
                      if t.author != user_id and t.retweet_of is None
                      and any(m[2] == user_id for m in t.mentions)]
            reach = MENTIONS_REACH
        else:
            chosen = [t for t in self.tweets.values() if t.author == user_id
                      and not (exclude_retweets and t.retweet_of is not None)]
            reach = TWEETS_REACH
        visible = [t for t in chosen if t.id not in self.deleted and t.visible_at <= now]
        return sorted(visible, key=lambda t: int(t.id), reverse=True)[:reach]

    def user_json(self, user: FakeUser) -> dict[str, Any]:
        """A User object (default fields)."""
        return {"id": user.id, "name": user.name, "username": user.username}

    def tweet_json(self, tweet: FakeTweet, fields: frozenset[str]) -> dict[str, Any]:
        """A Tweet object with the default fields and those of ``fields``."""
        data: dict[str, Any] = {"edit_history_tweet_ids": [tweet.id], "id": tweet.id,
                                "text": html.escape(tweet.text, quote=False)}
        if "created_at" in fields:
            data["created_at"] = tweet.created_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")
        if "author_id" in fields:
            data["author_id"] = tweet.author
        if "conversation_id" in fields:
            data["conversation_id"] = tweet.conversation_id
        parent = self.tweets.get(tweet.parent or "")
        if "in_reply_to_user_id" in fields and parent is not None:
            data["in_reply_to_user_id"] = parent.author
        if "referenced_tweets" in fields:
            references = []
            if tweet.parent is not None:
                references.append({"type": "replied_to", "id": tweet.parent})
            if tweet.retweet_of is not None:
                references.append({"type": "retweeted", "id": tweet.retweet_of})
            if references:
                data["referenced_tweets"] = references
        if "entities" in fields and tweet.mentions:
            data["entities"] = {"mentions": [
                {"start": start, "end": end, "username": self.users[user].username, "id": user}
                for start, end, user in tweet.mentions]}
        if "lang" in fields:
            data["lang"] = "en"
        if "possibly_sensitive" in fields:
            data["possibly_sensitive"] = False
        return data

    def expanded(self, tweets: list[FakeTweet], fields: frozenset[str],
                 expansions: frozenset[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``includes`` and partial ``errors`` for a page's requested expansions."""
        includes: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        referenced: list[FakeTweet] = []
        if "referenced_tweets.id" in expansions:
            for tweet in tweets:
                for ref in (tweet.parent, tweet.retweet_of):
                    if ref is None or any(r.id == ref for r in referenced):
                        continue
                    found = self.live(ref)
                    if found is None:
                        errors.append(_not_found("tweet", ref, "referenced_tweets.id"))
                    else:
                        referenced.append(found)
            if referenced:
                includes["tweets"] = [self.tweet_json(t, fields) for t in referenced]
        user_ids: dict[str, None] = {}
        if "author_id" in expansions:
            user_ids.update((t.author, None) for t in tweets)
        if "referenced_tweets.id.author_id" in expansions:
            user_ids.update((t.author, None) for t in referenced)
        if "in_reply_to_user_id" in expansions:
            user_ids.update((self.tweets[t.parent].author, None) for t in tweets if t.parent)
        if user_ids:
            includes["users"] = [self.user_json(self.users[u]) for u in user_ids]
        return includes, errors


def _not_found(resource: str, value: str, parameter: str) -> dict[str, Any]:
    return {"value": value, "detail": f"Could not find {resource} with {parameter}: [{value}].",
            "title": "Not Found Error", "resource_type": resource, "parameter": parameter,
            "resource_id": value, "type": f"{_PROBLEMS}/resource-not-found"}


class _Problem(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", ""))
        self.status, self.body = status, body


def _invalid(message: str, parameter: str, value: str) -> _Problem:
    return _Problem(400, {"errors": [{"parameters": {parameter: [value]}, "message": message}],
                          "title": "Invalid Request",
                          "detail": "One or more parameters to your request was invalid.",
                          "type": f"{_PROBLEMS}/invalid-request"})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json",
                        charset="utf-8")


def _csv(request: web.Request, name: str, allowed: frozenset[str]) -> frozenset[str]:
    value = request.query.get(name)
    if value is None:
        return frozenset()
    items = frozenset(value.split(","))
    unknown = sorted(items - allowed)
    if unknown:
        raise _invalid(f"The `{name}` query parameter value [{unknown[0]}] is not one of "
                       f"[{', '.join(sorted(allowed))}]", name, value)
    return items


def _id_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", value):
        raise _invalid(f"The `{name}` query parameter value [{value}] is not valid", name, value)
    return int(value)


@dataclass(slots=True)
class _Window:
    index: int = -1
    used: int = 0


@dataclass
class XFake:
    """The fake API: routes, Bearer tokens, per-endpoint rate limits and scripted faults.

    ``tokens`` maps a Bearer token to the user it acts for (None: app-only).
    """

    world: XWorld
    controls: FakeControls = field(default_factory=FakeControls)
    tokens: dict[str, str | None] = field(default_factory=dict)
    rate_limits: dict[str, int] = field(default_factory=lambda: dict(RATE_LIMITS))
    _windows: dict[str, _Window] = field(default_factory=dict)
    _pages: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = web.Application(middlewares=[controls_middleware(self.controls), self._gate])
        app.on_response_prepare.append(self._stamp_date)
        app.router.add_get("/2/users/me", self._me)
        app.router.add_get("/2/users/{id}", self._user)
        app.router.add_get("/2/users/{id}/mentions", self._mentions)
        app.router.add_get("/2/users/{id}/tweets", self._user_tweets)
        app.router.add_get("/2/tweets", self._lookup)
        return app

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["date"] = x_date(self.world.now())

    def _endpoint(self, request: web.Request) -> str:
        path = request.path
        if path.endswith("/mentions"):
            return "mentions"
        if path.endswith("/tweets") and path.startswith("/2/users/"):
            return "tweets"
        if path == "/2/users/me":
            return "me"
        return "users" if path.startswith("/2/users/") else "lookup"

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        if token is None or token not in self.tokens:
            return _json({"title": "Unauthorized", "type": "about:blank", "status": 401,
                          "detail": "Unauthorized"}, 401)
        endpoint = self._endpoint(request)
        limit = self.rate_limits[endpoint]
        window = self._windows.setdefault(f"{token}:{endpoint}", _Window())
        seconds = int(self.world.now().timestamp())
        if window.index != seconds // RATE_WINDOW_SECONDS:
            window.index, window.used = seconds // RATE_WINDOW_SECONDS, 0
        window.used += 1
        headers = {"x-rate-limit-limit": str(limit),
                   "x-rate-limit-remaining": str(max(0, limit - window.used)),
                   "x-rate-limit-reset": str((window.index + 1) * RATE_WINDOW_SECONDS)}
        response: web.StreamResponse
        if window.used > limit:
            response = _json({"title": "Too Many Requests", "detail": "Too Many Requests",
                              "type": "about:blank", "status": 429}, 429)
        else:
            acting = self.tokens[token]
            if acting is not None:
                request[_ACTING_USER] = acting
            try:
                response = await handler(request)
            except _Problem as problem:
                response = _json(problem.body, problem.status)
        response.headers.update(headers)
        return response

    # Routes --------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        user_id = request.get(_ACTING_USER)
        if user_id is None:
            raise _Problem(403, {
                "title": "Unsupported Authentication",
                "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this "
                          "endpoint.  Supported authentication types are [OAuth 1.0a User "
                          "Context, OAuth 2.0 User Context].",
                "type": f"{_PROBLEMS}/unsupported-authentication", "status": 403})
        return _json({"data": self.world.user_json(self.world.users[user_id])})

    def _known_user(self, request: web.Request) -> str | web.Response:
        user_id = request.match_info["id"]
        if not re.fullmatch(r"[0-9]{1,19}", user_id):
            raise _invalid(f"The `id` query parameter value [{user_id}] is not valid", "id",
                           user_id)
        if user_id not in self.world.users:
            return _json({"errors": [_not_found("user", user_id, "id")]})
        return user_id

    async def _user(self, request: web.Request) -> web.Response:
        user_id = self._known_user(request)
        if isinstance(user_id, web.Response):
            return user_id
        return _json({"data": self.world.user_json(self.world.users[user_id])})

    async def _mentions(self, request: web.Request) -> web.Response:
        return self._timeline(request, "mentions")

    async def _user_tweets(self, request: web.Request) -> web.Response:
        return self._timeline(request, "tweets")

    def _timeline(self, request: web.Request, kind: str) -> web.Response:
        user_id = self._known_user(request)
        if isinstance(user_id, web.Response):
            return user_id
        limit_text = request.query.get("max_results", "10")
        if not re.fullmatch(r"[0-9]{1,3}", limit_text) or not 5 <= int(limit_text) <= 100:
            raise _invalid(f"The `max_results` query parameter value [{limit_text}] is not "
                           "between 5 and 100", "max_results", limit_text)
        fields = _csv(request, "tweet.fields", TWEET_FIELDS)
        expansions = _csv(request, "expansions", EXPANSIONS)
        excluded = _csv(request, "exclude", frozenset({"retweets", "replies"}))
        if kind == "mentions" and excluded:
            raise _invalid("The query parameter [exclude] is not one of [...]", "exclude",
                           ",".join(sorted(excluded)))
        since_id, until_id = _id_param(request, "since_id"), _id_param(request, "until_id")
        token = request.query.get("pagination_token")
        below = None
        if token is not None:
            if token not in self._pages:
                raise _invalid(f"The `pagination_token` query parameter value [{token}] is "
                               "not valid", "pagination_token", token)
            below = self._pages[token]
        tweets = [t for t in self.world.timeline(user_id, kind,
                                                 exclude_retweets="retweets" in excluded)
                  if (since_id is None or int(t.id) > since_id)
                  and (until_id is None or int(t.id) < until_id)
                  and (below is None or int(t.id) < below)
                  and not ("replies" in excluded and t.parent is not None)]
        page = tweets[:int(limit_text)]
        if not page:
            return _json({"meta": {"result_count": 0}})
        meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0].id,
                                "oldest_id": page[-1].id}
        if len(tweets) > len(page):
            meta["next_token"] = self._token(request.path, int(page[-1].id))
        if token is not None:
            meta["previous_token"] = self._token(request.path + "#prev", int(page[0].id))
        body: dict[str, Any] = {"data": [self.world.tweet_json(t, fields) for t in page]}
        includes, errors = self.world.expanded(page, fields, expansions)
        if includes:
            body["includes"] = includes
        if errors:
            body["errors"] = errors
        body["meta"] = meta
        return _json(body)

    def _token(self, path: str, below: int) -> str:
        digest = int(hashlib.sha256(f"{path}:{below}".encode()).hexdigest(), 16)
        alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
        token = "".join(alphabet[(digest >> (5 * i)) % 36] for i in range(45))
        self._pages[token] = below
        return token

    async def _lookup(self, request: web.Request) -> web.Response:
        ids_text = request.query.get("ids", "")
        ids = [i for i in ids_text.split(",") if i]
        if not ids or len(ids) > 100 or not all(re.fullmatch(r"[0-9]{1,19}", i) for i in ids):
            raise _invalid(f"The `ids` query parameter value [{ids_text[:80]}] is not valid",
                           "ids", ids_text)
        fields = _csv(request, "tweet.fields", TWEET_FIELDS)
        expansions = _csv(request, "expansions", EXPANSIONS)
        found = []
        errors = []
        for tweet_id in dict.fromkeys(ids):
            tweet = self.world.live(tweet_id)
            if tweet is None:
                errors.append(_not_found("tweet", tweet_id, "ids"))
            else:
                found.append(tweet)
        body: dict[str, Any] = {}
        if found:
            body["data"] = [self.world.tweet_json(t, fields) for t in found]
            includes, more_errors = self.world.expanded(found, fields, expansions)
            errors += more_errors
            if includes:
                body["includes"] = includes
        if errors:
            body["errors"] = errors
        return _json(body)


def contract_case() -> ContractCase:
    """The X fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = XWorld(now=clock)
    fake = XFake(world, tokens={"fake-user-token": world.brand_id})
    customer = world.add_user("casey", "Casey")

    def seed() -> None:
        mention = world.tweet(customer, "@acme my order never arrived",
                              at=clock() - timedelta(minutes=30))
        world.tweet(world.brand_id, "sorry! sending a new one today",
                    at=clock() - timedelta(minutes=20), reply_to=mention)

    def add_activity() -> None:
        world.tweet(customer, "@acme still waiting on that order", at=clock())

    return ContractCase(
        kind="x",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-x", "kind": "x", "token": "fake-user-token",
                                   "base_url": base_url},
        bad_settings={"name": "acme-x", "kind": "x", "token": "t", "max_results": 4},
        seed=seed,
        add_activity=add_activity,
        revoke=fake.tokens.clear,
        clock=clock,
    )


__all__ = [
    "FakeTweet",
    "FakeUser",
    "XFake",
    "XWorld",
    "contract_case",
    "snowflake",
    "x_date",
]
