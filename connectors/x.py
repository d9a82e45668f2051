"""Provides the X connector: mentions of the brand and the brand's replies (API v2), as events.

X is read with a Bearer token: an OAuth 2.0 app-only token, or a user access token of
the brand. The brand's user id comes from the settings, else from ``GET /2/users/me``
(user tokens only), cached; that call is the poll's one request when it is due.

Two streams share one cursor and take turns, one page request per poll:

- **mentions**, ``GET /2/users/:id/mentions``: each tweet is a public customer message.
- **replies**, ``GET /2/users/:id/tweets?exclude=retweets``: each of the brand's tweets in
  a customer's thread is a public agent message.

Both ask for ``created_at, conversation_id, in_reply_to_user_id, author_id,
referenced_tweets`` with the ``author_id`` and ``referenced_tweets.id`` expansions, so a
page also shows each reply's parent (and the parent's own parent). Tweets come newest
first; ``meta.next_token`` pages to older ones, ``since_id`` bounds a pass below.

**Passes, overlap and the watermark** (``connectors._passes``). A tweet's ``at`` is its
``created_at`` (the server's clock; the id's snowflake time when the field is absent).
A timeline can show a tweet a few seconds after its ``created_at``, so a reader that
moved ``since_id`` to the newest id it saw would skip one that appears late below it.
Each pass therefore reads down to ``since_id`` = the snowflake floor of the previous
pass's start (the server's ``date``) minus ``lag``, the tweets already returned above
it are kept in the cursor so nothing is returned twice, and a stream is known up to its
last finished pass's start minus ``lag``. The watermark is the earlier of the two
streams' such instants. The mentions timeline only reaches the 800 most recent
mentions (3200 tweets for the brand's own): a backlog beyond that is out of reach.

**Conversations.** ``conversation_id`` is the id of the tweet that started the thread.
The conversation is the top-most tweet of the thread *not written by the brand*: the
thread's first tweet when someone else wrote it (known when a tweet replies to it
directly: ``in_reply_to_user_id`` names the parent's author), else the chain of parents
is walked through the page, its expansions and a bounded cache of resolved tweets. What
is still unknown is looked up in batches with ``GET /2/tweets?ids=`` (up to 100 ids,
at most ``MAX_LOOKUP_ROUNDS`` calls per poll, one thread level each). A page that needs
more is held in memory and finished by the next polls, which return the same cursor
with ``more=True``; its events are returned together, with the cursor after it. A
deleted tweet ends the walk: above it nothing can be known.

**Rate limits.** ``x-rate-limit-remaining: 0`` makes the next poll raise ``RateLimited``
until ``x-rate-limit-reset`` (epoch seconds) before it requests anything, and stops
lookups; a 429 without ``Retry-After`` (X sends none) waits until that reset too.
"""

from __future__ import annotations

import html
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, epoch_reset_wait, get_json, header_count
from connectors._json import fail, obj, opt_array
from connectors._limits import RateBudget
from connectors._lru import remember
from connectors._passes import Lag, Rounds
from connectors._settings import https_address, validated
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.errors import FatalError
from monitor.events import Actor, Event, EventKind, parse_instant

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.x.com"
WEB_URL = "https://x.com"
CHANNEL = "x"
MAX_RESULTS = 100
"""The most tweets a timeline page holds (the minimum is 5)."""
MAX_LOOKUP_IDS = 100
"""The most ids one ``GET /2/tweets`` accepts."""
MAX_LOOKUP_ROUNDS = 3
"""``GET /2/tweets`` calls one poll may make to place tweets in their conversation."""
CONVERSATION_CACHE_SIZE = 10_000
TWITTER_EPOCH_MS = 1288834974657
"""Snowflake ids count milliseconds from 2010-11-04T01:42:54.657Z, shifted left by 22."""
TWEET_FIELDS = "created_at,conversation_id,in_reply_to_user_id,author_id,referenced_tweets"
EXPANSIONS = "author_id,referenced_tweets.id"
USER_FIELDS = "username"

_ID = re.compile(r"[0-9]{1,19}")
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,50}")


class XSettings(SourceSettings):
    """Settings of one X source: a Bearer token, and the brand's user id unless it can say."""

    kind: Literal["x"] = "x"
    token: SecretStr
    """A Bearer token: app-only (then ``user_id`` is needed) or a user token of the brand."""
    user_id: str | None = Field(default=None, pattern=r"^[0-9]{1,19}$")
    """The brand's numeric user id; without it ``GET /2/users/me`` tells (user tokens)."""
    base_url: str = DEFAULT_BASE_URL
    """The API's address (plain http only on loopback: tests and the demo)."""
    max_results: int = Field(default=MAX_RESULTS, ge=5, le=MAX_RESULTS)
    """Tweets per timeline page (5-100)."""
    lag: Lag = 30.0
    """How long a tweet may take to appear in a timeline; re-read and waited out."""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, DEFAULT_BASE_URL)


# What the API gives us, validated ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tweet:
    """A tweet as the connector needs it; ``text`` and ``username`` are untrusted."""

    id: str
    author: str | None
    username: str | None
    at: datetime
    text: str
    conversation: str | None = None
    parent: str | None = None
    parent_author: str | None = None


@dataclass(frozen=True, slots=True)
class TweetPage:
    """A timeline or lookup page: its tweets, the expanded ones, the next-page token.

    ``gone`` lists ids the API reported as not found (deleted, or hidden from us).
    """

    tweets: tuple[Tweet, ...]
    included: tuple[Tweet, ...] = ()
    next_token: str | None = None
    gone: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class XUser:
    """A user from ``/2/users/me`` or ``/2/users/:id``."""

    id: str
    username: str
    name: str


def _id(value: Any, where: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise fail(where, f"{what} {str(value)[:40]!r} is not an X id")
    return value


def _optional_id(value: Any, where: str, what: str) -> str | None:
    return None if value is None else _id(value, where, what)


def snowflake_time(tweet_id: str) -> datetime:
    """When a tweet id was made: its snowflake's millisecond timestamp."""
    return datetime.fromtimestamp(((int(tweet_id) >> 22) + TWITTER_EPOCH_MS) / 1000, UTC)


def snowflake_floor(at: datetime) -> str:
    """The largest id below every tweet created at or after ``at`` (a ``since_id``)."""
    millis = int(at.timestamp() * 1000) - TWITTER_EPOCH_MS
    return str(max(0, (millis << 22) - 1))


def parse_tweet(data: Any, usernames: Mapping[str, str], where: str = "x tweet") -> Tweet:
    """A Tweet object; ``ParseError`` if it is not one.

    X escapes ``&``, ``<`` and ``>`` in ``text`` as HTML entities; they are decoded once,
    so the text is what its author typed.
    """
    tweet = obj(data, where)
    tweet_id = _id(tweet.get("id"), where)
    where = f"{where} {tweet_id}"
    text = tweet.get("text")
    if not isinstance(text, str):
        raise fail(where, "text is missing")
    created = tweet.get("created_at")
    if created is None:
        at = snowflake_time(tweet_id)
    elif isinstance(created, str):
        try:
            at = parse_instant(created, "created_at")
        except (ValueError, OverflowError) as err:
            raise fail(where, f"created_at {created[:40]!r} is not an ISO 8601 time") from err
    else:
        raise fail(where, "created_at is not a string")
    parent = None
    for index, reference in enumerate(opt_array(tweet.get("referenced_tweets"),
                                            f"{where} referenced_tweets")):
        reference = obj(reference, f"{where} referenced_tweets[{index}]")
        if reference.get("type") == "replied_to":
            parent = _id(reference.get("id"), where, "replied_to id")
    author = _optional_id(tweet.get("author_id"), where, "author_id")
    return Tweet(
        id=tweet_id,
        author=author,
        username=usernames.get(author or ""),
        at=at,
        text=html.unescape(text).replace("\x00", "\ufffd"),
        conversation=_optional_id(tweet.get("conversation_id"), where, "conversation_id"),
        parent=parent,
        parent_author=_optional_id(tweet.get("in_reply_to_user_id"), where,
                                   "in_reply_to_user_id"),
    )


def _usernames(includes: Mapping[str, Any], where: str) -> dict[str, str]:
    names = {}
    for index, item in enumerate(opt_array(includes.get("users"), f"{where} includes users")):
        user = obj(item, f"{where} includes users[{index}]")
        username = user.get("username")
        if isinstance(username, str) and _USERNAME.fullmatch(username):
            names[_id(user.get("id"), where, "user id")] = username
    return names


def _gone(errors: Any, where: str) -> frozenset[str]:
    """Ids of tweets a partial error reports as not found; other partial errors are ignored."""
    ids = set()
    for item in opt_array(errors, f"{where} errors"):
        if not isinstance(item, Mapping) or item.get("resource_type") != "tweet":
            continue
        resource = item.get("resource_id")
        if (str(item.get("type", "")).endswith("resource-not-found")
                and isinstance(resource, str) and _ID.fullmatch(resource)):
            ids.add(resource)
    return frozenset(ids)


def parse_tweets(data: Any, where: str = "x timeline page") -> TweetPage:
    """A timeline or ``GET /2/tweets`` page; ``ParseError`` (and nothing else) if it is not one.

    An empty timeline is ``{"meta": {"result_count": 0}}``: no ``data`` at all.
    """
    body = obj(data, where)
    includes = obj({} if body.get("includes") is None else body["includes"],
                       f"{where} includes")
    usernames = _usernames(includes, where)
    tweets = tuple(parse_tweet(item, usernames, f"{where} data[{index}]")
                   for index, item in enumerate(opt_array(body.get("data"), f"{where} data")))
    included = tuple(parse_tweet(item, usernames, f"{where} includes tweets[{index}]")
                     for index, item in enumerate(opt_array(includes.get("tweets"),
                                                        f"{where} includes tweets")))
    meta = obj({} if body.get("meta") is None else body["meta"], f"{where} meta")
    token = meta.get("next_token")
    if token is not None and (not isinstance(token, str) or not token.isascii()):
        raise fail(where, "meta.next_token is not a token")
    return TweetPage(tweets, included, token or None, _gone(body.get("errors"), where))


def parse_user(data: Any, where: str = "x user") -> XUser:
    """The user of ``/2/users/me`` or ``/2/users/:id``; ``ParseError`` if it is not one."""
    user = obj(obj(data, where).get("data"), f"{where} data")
    username = user.get("username")
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise fail(where, "username is missing")
    name = user.get("name")
    return XUser(_id(user.get("id"), where), username, name if isinstance(name, str) else "")


def missing_user(data: Any) -> bool:
    """Whether a timeline answer is only the partial error "user not found" (a bad user id)."""
    if not isinstance(data, Mapping) or "data" in data or "meta" in data:
        return False
    errors = data.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, Mapping) and e.get("resource_type") == "user" for e in errors)


def reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``x-rate-limit-reset`` (epoch seconds), measured on the server's clock."""
    return epoch_reset_wait(headers, "x-rate-limit-reset", now)


# Events and threads: pure -------------------------------------------------------------


def tweet_url(tweet: Tweet) -> str:
    """The tweet's page on x.com."""
    if tweet.username:
        return f"{WEB_URL}/{tweet.username}/status/{tweet.id}"
    return f"{WEB_URL}/i/web/status/{tweet.id}"


def tweet_event(tweet: Tweet, *, source: str, conversation: str, actor: Actor,
                channel: str = CHANNEL) -> Event:
    """The public message event of a tweet in conversation ``conversation``."""
    return Event(
        source=source,
        conversation=conversation,
        id=tweet.id,
        at=tweet.at,
        kind=EventKind.MESSAGE,
        actor=actor,
        public=True,
        channel=channel,
        url=tweet_url(tweet),
        author=tweet.username or tweet.author,
        text=tweet.text or None,
    )


@dataclass(slots=True)
class Threads:
    """What is known of threads: each tweet's parent (None: the top) and author.

    ``gone`` are tweets the API cannot show (deleted, protected): a walk up the thread
    stops below them, as if the thread began there.
    """

    parents: dict[str, str | None] = field(default_factory=dict)
    authors: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def add(self, tweets: Iterable[Tweet]) -> None:
        """Learn from tweets in hand: their parent, their author, their parent's author."""
        for tweet in tweets:
            self.parents[tweet.id] = tweet.parent
            if tweet.author is not None:
                self.authors[tweet.id] = tweet.author
            if tweet.parent is not None and tweet.parent_author is not None:
                self.authors.setdefault(tweet.parent, tweet.parent_author)

    def end(self, tweet_ids: Iterable[str]) -> None:
        """Record tweets that cannot be read (deleted): the walk stops below them."""
        self.gone.update(t for t in tweet_ids if t not in self.parents)


def conversation_chain(
    tweet: Tweet, threads: Threads, known: Mapping[str, str | None], brand: str
) -> dict[str, str | None] | str:
    """The conversation of ``tweet`` and of the tweets walked to find it, or a missing id.

    A tweet's conversation is the top-most tweet of its thread not written by ``brand``
    (None: the brand's own thread). The answer is a dict, or the id of the one tweet
    whose place (its parent, or the thread root's author) must be looked up first.
    """
    if tweet.id in known:
        return {tweet.id: known[tweet.id]}
    root = tweet.conversation
    if root == tweet.id or (root is None and tweet.parent is None):
        return {tweet.id: None if tweet.author == brand else tweet.id}
    root_author = threads.authors.get(root) if root is not None else None
    if root is not None and root_author is not None and root_author != brand:
        return {tweet.id: root}
    chain: list[str] = []
    above: str | None = None
    current: str | None = tweet.id
    for _ in range(len(threads.parents) + 2):
        if current is None or current in threads.gone:
            break
        if current in known:
            above = known[current]
            break
        if current == root:
            if root_author is None:
                return root
            break  # the brand's thread root: it adds nobody
        if current not in threads.parents:
            return current
        chain.append(current)
        current = threads.parents[current]
    else:
        return tweet.id  # a reply cycle: only a corrupt page has one; ask the API
    conversations: dict[str, str | None] = {}
    for node in reversed(chain):
        if above is None and threads.authors.get(node) != brand:
            above = node
        conversations[node] = above
    return conversations


# The connector ------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """A page read but not yet returned: its tweets still need their conversation."""

    before: Rounds
    after: Rounds
    more: bool
    pending: deque[tuple[Tweet, Actor]]
    threads: Threads
    events: list[Event] = field(default_factory=list)
    looked_up: set[str] = field(default_factory=set)


class XConnector:
    """Polls X (API v2) for the brand's mentions and replies (see the module doc)."""

    kind: ClassVar[str] = "x"
    settings_model: ClassVar[type[SourceSettings]] = XSettings

    def __init__(self, settings: Any) -> None:
        self.settings = validated(XSettings, settings)
        self._user_id: str | None = self.settings.user_id
        self._conversations: OrderedDict[str, str | None] = OrderedDict()
        self._held: _Held | None = None
        self._budget = RateBudget()

    @property
    def _channel(self) -> str:
        return self.settings.channel or CHANNEL

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """One page of the stream whose turn it is, or the lookups of a held page."""
        self._budget.hold(f"x {self.settings.name}", ctx.now())
        state = Rounds.load(cursor)
        held = self._held if self._held is not None and self._held.before == state else None
        self._held = held
        if self._user_id is None:
            self._user_id = (await self._me(ctx)).id
            return Batch((), state.dump(), state.watermark, more=True)
        if held is None:
            held = self._held = await self._read_page(ctx, state, self._user_id)
        return await self._settle(ctx, held, self._user_id)

    async def check(self, ctx: PollContext) -> str:
        """Proves the token by naming the brand's account (``/2/users/me`` or ``/:id``)."""
        if self.settings.user_id is None:
            user = await self._me(ctx)
            self._user_id = user.id
        else:
            response = await self._get(ctx, f"/2/users/{self.settings.user_id}", "x user")
            if missing_user(response.data):
                raise FatalError(f"x {self.settings.name}: no user with id "
                                 f"{self.settings.user_id}")
            user = parse_user(response.data)
        return f"authenticated as @{user.username} ({user.id})"

    async def _me(self, ctx: PollContext) -> XUser:
        response = await self._get(ctx, "/2/users/me", "x users/me")
        return parse_user(response.data, "x users/me")

    # Pages -----------------------------------------------------------------------------

    async def _read_page(self, ctx: PollContext, state: Rounds, user_id: str) -> _Held:
        name = state.next
        current = state.stream(name)
        floor = current.floor or ctx.since
        params = {"max_results": str(self.settings.max_results),
                  "since_id": snowflake_floor(floor), "tweet.fields": TWEET_FIELDS,
                  "expansions": EXPANSIONS, "user.fields": USER_FIELDS}
        if current.page is not None:
            params["pagination_token"] = current.page
        if name == "mentions":
            path, what, actor = f"/2/users/{user_id}/mentions", "x mentions", Actor.CUSTOMER
        else:
            path, what, actor = f"/2/users/{user_id}/tweets", "x user tweets", Actor.AGENT
            params["exclude"] = "retweets"
        response = await self._get(ctx, path, what, params)
        if missing_user(response.data):
            raise FatalError(f"x {self.settings.name}: no user with id {user_id}")
        page = parse_tweets(response.data)
        mine = actor is Actor.AGENT
        posts = {t.id: (t, actor) for t in page.tweets if (t.author == user_id) == mine}
        new_pass, fresh, finished = current.advance(
            [(t.id, t.at) for t in page.tweets], posts, page.next_token,
            response.server_time or ctx.now(), since=ctx.since,
            lag=timedelta(seconds=self.settings.lag))
        threads = Threads()
        threads.add(page.included)
        threads.add(page.tweets)
        threads.end(page.gone)
        after = state.with_pass(name, new_pass, finished=finished)
        more = not (finished and name == "replies")
        pending = deque(posts[key] for key in fresh)
        return _Held(state, after, more, pending, threads)

    async def _settle(self, ctx: PollContext, held: _Held, brand: str) -> Batch:
        """Place the held page's tweets in their conversations; return it once all are placed."""
        rounds = MAX_LOOKUP_ROUNDS
        while held.pending:
            missing: dict[str, None] = {}
            for tweet, actor in list(held.pending):
                chain = conversation_chain(tweet, held.threads, self._conversations, brand)
                if isinstance(chain, str) and chain in held.looked_up:
                    # Looked up and still unexplained (a corrupt chain): the tweet stands alone.
                    log.info("%s: thread of tweet %s unresolved", self.settings.name, tweet.id)
                    chain = {tweet.id: None if tweet.author == brand else tweet.id}
                if isinstance(chain, str):
                    missing[chain] = None
                    root = tweet.conversation
                    if (root is not None and root not in held.threads.authors
                            and root not in held.threads.gone):
                        missing[root] = None  # its author alone may settle the thread
                    continue
                for tweet_id, conversation in chain.items():
                    self._remember(tweet_id, conversation)
                held.pending.remove((tweet, actor))
                conversation = chain[tweet.id]
                if conversation is not None:  # None: the brand's own thread
                    held.events.append(tweet_event(tweet, source=self.settings.name,
                                                   conversation=conversation, actor=actor,
                                                   channel=self._channel))
            if not missing:
                break
            if rounds <= 0 or self._budget.remaining == 0:
                return Batch((), held.before.dump(), held.before.watermark, more=True)
            rounds -= 1
            ids = list(missing)[:MAX_LOOKUP_IDS]
            held.looked_up.update(ids)
            await self._look_up(ctx, held.threads, ids)
        self._held = None
        held.events.sort(key=lambda e: e.at)
        return Batch(tuple(held.events), held.after.dump(), held.after.watermark, more=held.more)

    async def _look_up(self, ctx: PollContext, threads: Threads, ids: list[str]) -> None:
        response = await self._get(ctx, "/2/tweets", "x tweets lookup", {
            "ids": ",".join(ids), "tweet.fields": TWEET_FIELDS, "expansions": EXPANSIONS,
            "user.fields": USER_FIELDS})
        page = parse_tweets(response.data, "x tweets lookup")
        threads.add(page.included)
        threads.add(page.tweets)
        # A tweet the API does not return (deleted, protected) ends its thread's walk.
        threads.end(page.gone | (set(ids) - {t.id for t in page.tweets}))
        if page.gone:
            log.info("%s: %d tweet(s) of a thread are gone", self.settings.name, len(page.gone))

    def _remember(self, tweet_id: str, conversation: str | None) -> None:
        remember(self._conversations, tweet_id, conversation, CONVERSATION_CACHE_SIZE)

    # HTTP and rate limits --------------------------------------------------------------

    async def _get(self, ctx: PollContext, path: str, what: str,
                   params: Mapping[str, str] | None = None) -> JsonResponse:
        token = self.settings.token.get_secret_value()
        response = await get_json(
            ctx.session, self.settings.base_url + path, what=what, params=params,
            timeout=self.settings.timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            wait_hint=partial(reset_wait, now=ctx.now()),
        )
        self._budget.note(header_count(response.headers, "x-rate-limit-remaining"),
                          reset_wait(response.headers, ctx.now()), ctx.now())
        return response


__all__ = [
    "Threads",
    "Tweet",
    "TweetPage",
    "XConnector",
    "XSettings",
    "XUser",
    "conversation_chain",
    "missing_user",
    "parse_tweet",
    "parse_tweets",
    "parse_user",
    "reset_wait",
    "snowflake_floor",
    "snowflake_time",
    "tweet_event",
    "tweet_url",
]
