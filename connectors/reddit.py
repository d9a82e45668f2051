"""Provides the Reddit connector: mentions of the brand account and its replies, as events.

**Auth.** A Reddit "script" app: the password grant (``POST {auth_url}/api/v1/access_token``
with Basic ``client_id:client_secret``) gives a bearer token for ``{base_url}``
(``https://oauth.reddit.com``), kept in memory until a minute before it expires. A poll
makes one API request, plus the token request when one is due, plus one retry with a
fresh token when the API answers 401: at most three. ``User-Agent`` is always sent, as
Reddit requires (``user_agent``, else ``python:replywatch:0.1 (by /u/{username})``).

**Feeds.** Each is a Listing read newest first, taking turns, one page per poll:

- ``mentions`` (``/message/mentions``): comments naming ``u/{username}``;
- ``posts`` (``/r/{a+b}/new``, only with ``subreddits``): new posts there;
- ``brand`` (``/user/{username}/comments``): the brand's own comments, its replies;
- ``followups`` (``/message/comments``, with ``followups``): replies to the brand's
  comments, which carry the conversation on after the brand answered.

A round reads each feed to the top in that order; ``more`` is True until it is complete
and nothing is held back (below).

**The cursor.** Per feed, the newest item read (the *anchor*) and the items of its
second. A feed reads what is newer with ``before={anchor}`` (Reddit gives the items just
above it). The first time, it pages down from the newest item with ``after=`` until it
passes ``ctx.since`` and anchors on what was newest when it started. Reddit answers
``before=`` with an empty page both when nothing is new and when the anchor has left the
listing (deleted), so an empty page only counts as "at the top" while the anchor was
seen within ``verify_every``; past that, the next poll reads the newest page again down to
the anchor's time (a *check*): it re-reads at most one page in a quiet minute, and it
re-anchors a feed whose anchor is gone.

**Conversations.** A mention or a post starts its own conversation (its fullname). A
brand comment belongs to the conversation of what it answers (``parent_id``), a
follow-up to the conversation of the brand comment it answers; a mention that answers a
brand comment stays in that conversation too. The map from comment to conversation is
kept in memory (``MAX_THREADS``) and its newest ``CURSOR_THREADS`` entries in the cursor,
so a restart keeps recent threads; a thread older than that starts a conversation of its
own. A conversation's first item also gives an ``update`` with subject (the post title),
customer (its author) and tags (``r/{subreddit}``). An item read as ``[removed]`` or
``[deleted]`` is ``dismissed``.

**Held-back replies.** The brand feed is read before the follow-ups, so a brand comment
may answer a follow-up not read yet (always so in a backfill, where the brand feed reads
the whole window first). A brand comment whose parent is neither a known thread, a post,
nor a conversation this instance saw start is held back in memory (up to ``MAX_HELD``),
and so is a follow-up answering a held comment. Each poll emits, oldest first, what the
items read since resolve; once the follow-ups are read to the top the rest goes, a brand
comment to the conversation its parent's id names (a mention seen before a restart, or
a comment no feed brings). While anything is held the cursor keeps a *resume* point
(the brand and follow-up feeds before the poll that first held one): a connector that
does not hold them (a restart, or a cursor other than the one it last returned)
re-reads both feeds from there, and event ids deduplicate what comes twice. With
``followups = false`` nothing is held: nothing later could tell.

**Who wrote it.** The brand account and ``agents`` are ``agent``; ``AutoModerator`` and
``bots`` are ``bot``; everyone else is ``customer``.

**Watermark.** A feed at the top has seen everything up to the server time (``Date``,
else ``ctx.now()``) of the read that proved it: a non-empty page from ``before=``, or a
check (an empty page proves only as much as the last check). The watermark is the
earliest of the feeds' and never moves backwards, and is reported no later than the
time of a reply still held back.

**Rate limits.** ``x-ratelimit-remaining`` below 1 makes the next poll raise
``RateLimited`` until ``x-ratelimit-reset`` (seconds) without sending anything; a 429 is
``RateLimited`` (``Retry-After``, else the reset).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from connectors._http import JsonResponse, basic_auth, get_json, header_number, header_seconds
from connectors._json import cursor_instant, fail, obj, opt_string, string
from connectors._limits import RateBudget
from connectors._lru import remember
from connectors._settings import https_address, validated
from connectors._text import clip
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.durations import Duration
from monitor.errors import AuthError
from monitor.events import Actor, Event, EventKind, format_instant

CHANNEL = "reddit"
WEB = "https://www.reddit.com"
MAX_LIMIT = 100
MAX_THREADS = 20_000
CURSOR_THREADS = 256
TOKEN_MARGIN = timedelta(seconds=60)
GONE = frozenset({"[deleted]", "[removed]"})
DEFAULT_BOTS = frozenset({"automoderator"})

Feed = Literal["mentions", "posts", "brand", "followups"]
FEEDS: tuple[Feed, ...] = ("mentions", "posts", "brand", "followups")
HOLDING: tuple[Feed, ...] = ("brand", "followups")
MAX_HELD = 5_000
_NAME = re.compile(r"[A-Za-z0-9_-]{3,20}")
_SUBREDDIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{1,20}")
_FULLNAME = re.compile(r"t[1-6]_[0-9a-z]{1,13}")


class RedditSettings(SourceSettings):
    """A Reddit brand account, read through a "script" app of that account."""

    kind: Literal["reddit"] = "reddit"
    client_id: str = Field(min_length=1)
    """The script app's client id (under the app's name on reddit.com/prefs/apps)."""
    client_secret: SecretStr
    """The script app's secret; give it as ``"${REDDIT_CLIENT_SECRET}"``."""
    username: str
    """The brand account (without ``u/``); the app must belong to it."""
    password: SecretStr
    """The brand account's password; give it as ``"${REDDIT_PASSWORD}"``."""
    user_agent: str | None = None
    """Sent with every request; Reddit asks for ``platform:app:version (by /u/name)``."""
    subreddits: tuple[str, ...] = ()
    """Subreddits whose new posts are conversations too (the brand's own, say)."""
    followups: bool = True
    """Read replies to the brand's comments (``/message/comments``)."""
    agents: tuple[str, ...] = ()
    """Other accounts that answer for the brand."""
    bots: tuple[str, ...] = ()
    """Accounts that act as bots, besides AutoModerator."""
    limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT)
    """Items per page (Reddit allows at most 100)."""
    verify_every: Duration = 60.0
    """How long an empty ``before=`` page is trusted before the newest page is re-read."""
    base_url: str = "https://oauth.reddit.com"
    """The OAuth API (tests and the demo point it at the fake)."""
    auth_url: str = "https://www.reddit.com"
    """Where tokens come from (tests and the demo point it at the fake)."""

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        name = value.strip().removeprefix("/").removeprefix("u/")
        if not _NAME.fullmatch(name):
            raise ValueError("expected a Reddit username like acme_support")
        return name

    @field_validator("agents", "bots")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Reddit username")
        return tuple(name.lower() for name in value)

    @field_validator("subreddits")
    @classmethod
    def _subreddits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.strip().removeprefix("/").removeprefix("r/") for name in value)
        for name in names:
            if not _SUBREDDIT.fullmatch(name):
                raise ValueError(f"{name!r} is not a subreddit name")
        return names

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, "https://oauth.reddit.com", "credentials")

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, value: str) -> str:
        return https_address(value, "https://www.reddit.com", "credentials")

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("expected a printable User-Agent")
        return value


# --- what the API gives us, validated ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thing:
    """A comment (t1) or post (t3) of a Listing; ``text`` and ``title`` are untrusted."""

    fullname: str
    author: str
    created: datetime
    parent_id: str | None
    subreddit: str | None
    title: str | None
    text: str
    path: str | None
    removed: bool


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a Listing, newest first, with Reddit's ``after`` / ``before``."""

    things: tuple[Thing, ...]
    after: str | None
    before: str | None


@dataclass(frozen=True, slots=True)
class Token:
    """An access-token answer: the token, or Reddit's ``error`` (wrong password: 200!)."""

    access_token: str | None
    expires_in: int
    error: str | None = None


def _fullname(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _FULLNAME.fullmatch(value):
        raise fail(where, f"{str(value)[:40]!r} is not a fullname")
    return value


def _opt_fullname(value: Any, where: str) -> str | None:
    return None if value is None or value == "" else _fullname(value, where)


def _created(value: Any, where: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(where, "created_utc is not a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise fail(where, "created_utc is out of range") from err


def _path(value: Any) -> str | None:
    """A site-relative path (``/r/…``): never a scheme or another host."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return None


def parse_thing(data: Any, where: str = "reddit thing") -> Thing:
    """A t1 or t3 child of a Listing; ParseError if it is not one."""
    child = obj(data, where)
    kind = child.get("kind")
    if kind not in ("t1", "t3"):
        raise fail(where, f"kind {str(kind)[:10]!r} is neither a comment nor a post")
    item = obj(child.get("data"), f"{where}.data")
    name = _fullname(item.get("name"), f"{where}.name")
    if not name.startswith(f"{kind}_"):
        raise fail(where, f"name {name} does not match kind {kind}")
    where = f"{where} {name}"
    author = string(item.get("author"), f"{where}.author")
    title: str | None
    if kind == "t3":
        title = string(item.get("title"), f"{where}.title")
        body = opt_string(item.get("selftext"), f"{where}.selftext") or ""
        removed = (item.get("removed_by_category") is not None or body in GONE
                   or author == "[deleted]")
        text = title if not body or body in GONE else f"{title}\n\n{body}"
        parent = None
        path = _path(item.get("permalink"))
    else:
        body = string(item.get("body"), f"{where}.body")
        title = opt_string(item.get("link_title"), f"{where}.link_title")
        removed = body in GONE or author == "[deleted]"
        text = body
        parent = _opt_fullname(item.get("parent_id"), f"{where}.parent_id")
        path = _path(item.get("context")) or _path(item.get("permalink"))
    subreddit = item.get("subreddit")
    return Thing(
        fullname=name, author=author, created=_created(item.get("created_utc"), where),
        parent_id=parent, subreddit=subreddit if isinstance(subreddit, str) else None,
        title=title, text=text, path=path, removed=removed,
    )


def parse_listing(data: Any, what: str = "reddit listing") -> Listing:
    """One Listing page; ParseError (and nothing else) if it is not one."""
    page = obj(data, what)
    if page.get("kind") != "Listing":
        raise fail(what, "not a Listing")
    body = obj(page.get("data"), f"{what}.data")
    children = body.get("children")
    if not isinstance(children, list):
        raise fail(what, "children is not a list")
    return Listing(
        things=tuple(parse_thing(child, f"{what}[{i}]") for i, child in enumerate(children)),
        after=_opt_fullname(body.get("after"), f"{what}.after"),
        before=_opt_fullname(body.get("before"), f"{what}.before"),
    )


def parse_token(data: Any) -> Token:
    """An access-token answer; ParseError if it is neither a token nor an error."""
    answer = obj(data, "reddit access token")
    error = answer.get("error")
    if error is not None:
        return Token(None, 0, str(error)[:60])
    token = string(answer.get("access_token"), "reddit access token.access_token")
    expires = answer.get("expires_in")
    if isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0:
        raise fail("reddit access token", "expires_in is not a positive number")
    if not token:
        raise fail("reddit access token", "access_token is empty")
    return Token(token, expires)


def parse_me(data: Any) -> str:
    """The account name ``/api/v1/me`` reports; ParseError if there is none."""
    return string(obj(data, "reddit me").get("name"), "reddit me.name")


# --- events: pure --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class People:
    """How authors are classified (names in lower case)."""

    brand: str
    agents: frozenset[str] = frozenset()
    bots: frozenset[str] = DEFAULT_BOTS

    def actor(self, author: str) -> Actor:
        """The brand and its agents answer; AutoModerator and listed bots are bots."""
        name = author.lower()
        if name == self.brand or name in self.agents:
            return Actor.AGENT
        if name in self.bots:
            return Actor.BOT
        return Actor.CUSTOMER


def thing_events(
    thing: Thing, *, source: str, conversation: str, people: People, channel: str = CHANNEL,
) -> tuple[Event, ...]:
    """The events of one item in ``conversation``: its message, or its dismissal.

    An item that starts its conversation also gives an ``update`` with its subject,
    customer and subreddit tag.
    """
    common: dict[str, Any] = {
        "source": source, "conversation": conversation, "at": thing.created,
        "channel": channel, "url": None if thing.path is None else WEB + thing.path,
    }
    if thing.removed:
        return (Event(id=f"{thing.fullname}:removed", kind=EventKind.DISMISSED, **common),)
    actor = people.actor(thing.author)
    events = []
    if conversation == thing.fullname:
        fields: dict[str, Any] = {"subject": thing.title}
        if actor is Actor.CUSTOMER:
            fields["customer"] = thing.author
        if thing.subreddit:
            fields["tags"] = [f"r/{thing.subreddit}"]
        events.append(Event(id=f"{thing.fullname}:about", kind=EventKind.UPDATE, fields=fields,
                            **common))
    events.append(Event(id=thing.fullname, kind=EventKind.MESSAGE, actor=actor, public=True,
                        author=thing.author, text=clip(thing.text or None), **common))
    return tuple(events)


def reset_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until Reddit's rate-limit window resets (``x-ratelimit-reset``), or None."""
    return header_seconds(headers, "x-ratelimit-reset")


# --- feeds: pure ---------------------------------------------------------------------------


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and _FULLNAME.fullmatch(v))


@dataclass(frozen=True, slots=True)
class FeedState:
    """Where one feed stands (see the module doc): its anchor, a check under way, its top."""

    anchor: str | None = None
    anchor_at: datetime | None = None
    recent: tuple[str, ...] = ()
    scanning: bool = False
    scan_floor: datetime | None = None
    scan_after: str | None = None
    scan_top: str | None = None
    scan_top_at: datetime | None = None
    scan_recent: tuple[str, ...] = ()
    scan_started: datetime | None = None
    verified_at: datetime | None = None
    top: datetime | None = None
    at_top: bool = False

    @classmethod
    def load(cls, data: Any) -> FeedState:
        """A stored feed state; what cannot be read counts as absent (a fresh start)."""
        if not isinstance(data, Mapping):
            return cls()
        anchor = data.get("anchor")
        anchor_at = cursor_instant(data.get("anchor_at"))
        if not (isinstance(anchor, str) and _FULLNAME.fullmatch(anchor) and anchor_at):
            anchor, anchor_at = None, None
        scan = data.get("scan")
        state = cls(anchor=anchor, anchor_at=anchor_at, recent=_names(data.get("recent")),
                    verified_at=cursor_instant(data.get("verified_at")),
                    top=cursor_instant(data.get("top")),
                    at_top=data.get("at_top") is True)
        if isinstance(scan, Mapping) and cursor_instant(scan.get("floor")) is not None:
            after = _names([scan.get("after")])
            top = _names([scan.get("top")])
            state = replace(state, scanning=True, scan_floor=cursor_instant(scan.get("floor")),
                            scan_after=after[0] if after else None,
                            scan_top=top[0] if top else None,
                            scan_top_at=cursor_instant(scan.get("top_at")),
                            scan_recent=_names(scan.get("recent")),
                            scan_started=cursor_instant(scan.get("started")))
        return state

    def dump(self) -> dict[str, Any]:
        """The JSON form stored in the cursor."""
        scan = None
        if self.scanning:
            scan = {"floor": format_instant(self.scan_floor), "after": self.scan_after,
                    "top": self.scan_top, "top_at": format_instant(self.scan_top_at),
                    "recent": list(self.scan_recent), "started": format_instant(self.scan_started)}
        return {"anchor": self.anchor, "anchor_at": format_instant(self.anchor_at),
                "recent": list(self.recent), "scan": scan,
                "verified_at": format_instant(self.verified_at), "top": format_instant(self.top),
                "at_top": self.at_top}

    def request(self, since: datetime, limit: int) -> dict[str, str]:
        """The query of this feed's next page (starting a first scan if it has no anchor)."""
        params = {"limit": str(limit), "raw_json": "1"}
        if self.scanning:
            if self.scan_after is not None:
                params["after"] = self.scan_after
        elif self.anchor is not None:
            params["before"] = self.anchor
        return params


def _same_second(things: Sequence[Thing]) -> tuple[str, ...]:
    if not things:
        return ()
    return tuple(t.fullname for t in things if t.created == things[0].created)


def step(
    state: FeedState, listing: Listing, *, since: datetime, limit: int, server_time: datetime,
    verify_every: float,
) -> tuple[FeedState, tuple[Thing, ...]]:
    """The feed after one page, and the page's items that are new (pure).

    ``state`` must be the one whose ``request`` asked for the page.
    """
    things = listing.things
    if not state.scanning and state.anchor is None:
        state = replace(state, scanning=True, scan_floor=since)
    if state.scanning:
        return _scan_step(state, listing, limit=limit, server_time=server_time)
    assert state.anchor is not None
    assert state.anchor_at is not None
    fresh = tuple(t for t in things if t.fullname not in state.recent
                  and t.fullname != state.anchor)
    if things:
        newest = things[0]
        recent = _same_second(things)
        if newest.created == state.anchor_at:
            recent = tuple(dict.fromkeys((*state.recent, *recent)))
        state = replace(state, anchor=newest.fullname, anchor_at=newest.created, recent=recent)
        if len(things) >= limit:
            return replace(state, at_top=False), fresh
        return replace(state, at_top=True, verified_at=server_time,
                       top=_later(state.top, server_time)), fresh
    checked = state.verified_at
    if checked is not None and (server_time - checked).total_seconds() < verify_every:
        return replace(state, at_top=True, top=_later(state.top, checked)), ()
    # Nothing newer, or an anchor that left the listing: only the newest page can tell.
    return replace(state, at_top=False, scanning=True, scan_floor=state.anchor_at,
                   scan_after=None, scan_top=None, scan_top_at=None, scan_recent=(),
                   scan_started=None), ()


def _later(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _scan_step(
    state: FeedState, listing: Listing, *, limit: int, server_time: datetime
) -> tuple[FeedState, tuple[Thing, ...]]:
    things = listing.things
    floor = state.scan_floor
    assert floor is not None
    if state.scan_after is None:  # the scan's first page: what is newest right now
        top = things[0] if things else None
        state = replace(state, scan_started=server_time,
                        scan_top=None if top is None else top.fullname,
                        scan_top_at=None if top is None else top.created,
                        scan_recent=_same_second(things))
    known = {*state.recent, *(() if state.anchor is None else (state.anchor,))}
    fresh: list[Thing] = []
    reached = False
    for thing in things:
        if thing.fullname in known or thing.created < floor:
            reached = True
            break
        fresh.append(thing)
    if not reached and (len(things) < limit or listing.after is None):
        reached = True
    if not reached:
        return replace(state, at_top=False, scan_after=things[-1].fullname), tuple(fresh)
    started = state.scan_started or server_time
    anchored = state
    if state.scan_top is not None:
        recent = state.scan_recent
        if state.scan_top_at == state.anchor_at:
            recent = tuple(dict.fromkeys((*state.recent, *recent)))
        anchored = replace(state, anchor=state.scan_top, anchor_at=state.scan_top_at,
                           recent=recent)
    done = replace(anchored, scanning=False, scan_floor=None, scan_after=None, scan_top=None,
                   scan_top_at=None, scan_recent=(), scan_started=None, at_top=True,
                   verified_at=started, top=_later(state.top, started))
    return done, tuple(fresh)


# --- the cursor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where the brand and follow-up feeds stood before the poll that first held a reply."""

    next: Feed
    feeds: Mapping[Feed, FeedState]

    @classmethod
    def load(cls, data: Any, active: Sequence[Feed]) -> _Resume | None:
        """A stored resume point; None when there is none or it cannot be read."""
        if not isinstance(data, Mapping) or data.get("next") not in active:
            return None
        feeds_data = data.get("feeds")
        feeds_data = feeds_data if isinstance(feeds_data, Mapping) else {}
        return cls(next=data["next"],
                   feeds={feed: FeedState.load(feeds_data.get(feed))
                          for feed in HOLDING if feed in active})

    def dump(self) -> dict[str, Any]:
        """The JSON form stored in the cursor."""
        return {"next": self.next, "feeds": {k: v.dump() for k, v in self.feeds.items()}}


@dataclass(frozen=True, slots=True)
class _State:
    """The cursor: each feed's state, whose turn it is, recent threads, the watermark.

    ``resume`` is set while replies are held back: where a connector that does not hold
    them (a restart, or a cursor other than the one it last returned) re-reads them from.
    """

    next: Feed
    feeds: Mapping[Feed, FeedState]
    threads: tuple[tuple[str, str], ...] = ()
    watermark: datetime | None = None
    resume: _Resume | None = None

    @classmethod
    def load(cls, cursor: Cursor | None, active: Sequence[Feed]) -> _State:
        feeds_data = cursor.get("feeds") if cursor else None
        feeds_data = feeds_data if isinstance(feeds_data, Mapping) else {}
        feeds = {feed: FeedState.load(feeds_data.get(feed)) for feed in active}
        turn = cursor.get("next") if cursor else None
        threads_data = cursor.get("threads") if cursor else None
        threads = tuple(
            (pair[0], pair[1]) for pair in (threads_data if isinstance(threads_data, list) else [])
            if isinstance(pair, list) and len(pair) == 2
            and all(isinstance(p, str) and _FULLNAME.fullmatch(p) for p in pair)
        )
        return cls(
            next=next((feed for feed in active if feed == turn), active[0]),
            feeds=feeds,
            threads=threads[-CURSOR_THREADS:],
            watermark=cursor_instant(cursor.get("watermark")) if cursor else None,
            resume=_Resume.load(cursor.get("resume"), active) if cursor else None,
        )

    def dump(self) -> dict[str, Any]:
        return {"next": self.next, "feeds": {k: v.dump() for k, v in self.feeds.items()},
                "threads": [list(pair) for pair in self.threads],
                "watermark": format_instant(self.watermark),
                "resume": None if self.resume is None else self.resume.dump()}

    def holding(self) -> _Resume:
        """The resume point of a poll from this state that holds a reply back."""
        return self.resume or _Resume(
            self.next, {feed: state for feed, state in self.feeds.items() if feed in HOLDING})

    def rewound(self) -> _State:
        """This state for a connector that does not hold its replies: re-read from resume."""
        if self.resume is None:
            return self
        return replace(self, next=self.resume.next, feeds={**self.feeds, **self.resume.feeds},
                       resume=None)


@dataclass(slots=True)
class _Session:
    """The bearer token in hand, and what this instance knows of threads."""

    token: str | None = None
    expires: datetime | None = None
    threads: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # Items that started their own conversation: a brand reply to one needs no holding.
    starts: OrderedDict[str, None] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class _Held:
    """An item whose conversation waits on a comment not read yet, and the feed it came from."""

    feed: Feed
    thing: Thing


# --- the connector -------------------------------------------------------------------------


class RedditConnector:
    """Polls Reddit for the brand's mentions, posts in its subreddits, and its replies."""

    kind: ClassVar[str] = "reddit"
    settings_model: ClassVar[type[SourceSettings]] = RedditSettings

    def __init__(self, settings: RedditSettings | Mapping[str, Any], *,
                 max_held: int = MAX_HELD) -> None:
        self.settings = settings = validated(RedditSettings, settings)
        self.max_held = max_held
        self._people = People(settings.username.lower(), frozenset(settings.agents),
                              DEFAULT_BOTS | frozenset(settings.bots))
        self._user_agent = settings.user_agent or (
            f"python:replywatch:0.1 (by /u/{settings.username})")
        self._budget = RateBudget()
        self._session = _Session()
        self._app_auth = basic_auth(settings.client_id, settings.client_secret.get_secret_value())
        # The replies held back, valid only for the cursor this instance last returned.
        self._held: dict[str, _Held] = {}
        self._issued: _State | None = None

    @property
    def feeds(self) -> tuple[Feed, ...]:
        """The feeds this source reads, in round order."""
        wanted = {"mentions", "brand"}
        if self.settings.subreddits:
            wanted.add("posts")
        if self.settings.followups:
            wanted.add("followups")
        return tuple(feed for feed in FEEDS if feed in wanted)

    def _path(self, feed: Feed) -> str:
        if feed == "mentions":
            return "/message/mentions"
        if feed == "followups":
            return "/message/comments"
        if feed == "posts":
            return f"/r/{'+'.join(self.settings.subreddits)}/new"
        return f"/user/{self.settings.username}/comments"

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """One page of the feed whose turn it is; see the module doc for the round."""
        self._respect_budget(ctx)
        feeds = self.feeds
        state = _State.load(cursor, feeds)
        if state == self._issued:
            held = dict(self._held)
        else:  # not the cursor we returned last: what we hold may not be what it needs
            state = state.rewound()
            held = {}
        for child, conversation in state.threads:
            self._session.threads.setdefault(child, conversation)
        feed = state.next
        feed_state = state.feeds[feed]
        limit = self.settings.limit
        params = feed_state.request(ctx.since, limit)
        if feed == "brand":
            params["sort"] = "new"
        response = await self._api(ctx, self._path(feed), params, f"reddit {feed}")
        listing = parse_listing(response.data, f"reddit {feed} listing")
        after, fresh = step(feed_state, listing, since=ctx.since, limit=limit,
                            server_time=response.server_time or ctx.now(),
                            verify_every=self.settings.verify_every)
        round_done = after.at_top and feed == feeds[-1]
        for thing in fresh:
            held[thing.fullname] = _Held(feed, thing)
        # Every follow-up answers a brand comment read earlier in the round, so once the
        # follow-ups are read to the top nothing left can still tell: let the rest go.
        resolved = self._resolve(held, release=round_done or "followups" not in feeds)
        events: list[Event] = []
        threads = list(state.threads)
        for item, conversation in resolved:
            if conversation != item.thing.fullname:
                threads.append((item.thing.fullname, conversation))
            events += thing_events(item.thing, source=self.settings.name,
                                   conversation=conversation, people=self._people,
                                   channel=self.settings.channel or CHANNEL)
        feeds_after = {**state.feeds, feed: after}
        turn = feed
        if after.at_top:
            turn = feeds[(feeds.index(feed) + 1) % len(feeds)]
        watermark = state.watermark
        tops = [s.top for s in feeds_after.values()]
        if all(top is not None for top in tops):
            mark = min(top for top in tops if top is not None)
            watermark = mark if watermark is None else max(watermark, mark)
        new_state = _State(turn, feeds_after, tuple(threads[-CURSOR_THREADS:]), watermark,
                           state.holding() if held else None)
        if held and watermark is not None:  # a held reply is not seen yet
            watermark = min(watermark, *(item.thing.created for item in held.values()))
        self._held, self._issued = held, new_state
        return Batch(tuple(events), new_state.dump(), watermark,
                     more=not round_done or bool(held))

    async def check(self, ctx: PollContext) -> str:
        """``/api/v1/me``: proves the app, the password, and that they are the brand's."""
        self._respect_budget(ctx)
        response = await self._api(ctx, "/api/v1/me", {"raw_json": "1"}, "reddit me")
        name = parse_me(response.data)
        if name.lower() != self.settings.username.lower():
            raise AuthError(f"reddit {self.settings.name}: the app signs in as u/{name}, "
                            f"not u/{self.settings.username}")
        return f"authenticated as u/{name}"

    # Threads ----------------------------------------------------------------------------------

    def _resolve(self, held: dict[str, _Held], *,
                 release: bool) -> list[tuple[_Held, str]]:
        """Take out of ``held`` every item whose conversation is known now, oldest first.

        With ``release`` every item goes, a reply whose parent was never read to that
        parent's conversation (its own id), as the module doc says.
        """
        resolved: list[tuple[_Held, str]] = []
        # Oldest first, so a parent resolves before its replies; a reply in the parent's
        # second sorted before it waits for the next pass.
        waiting = sorted(held.values(), key=lambda h: (h.thing.created, h.thing.fullname))
        force = False
        while waiting:
            left: list[_Held] = []
            for item in waiting:
                conversation = self._conversation(item, held, release=release, force=force)
                if conversation is None:
                    left.append(item)
                    continue
                del held[item.thing.fullname]
                resolved.append((item, conversation))
            if len(left) == len(waiting):
                if not release and len(held) <= self.max_held:
                    break
                force = True  # a parent that can never resolve (a reply cycle), or no room
            waiting = left
        return resolved

    def _conversation(self, item: _Held, held: Mapping[str, _Held], *, release: bool,
                      force: bool) -> str | None:
        """The conversation of ``item``, remembered; None while it has to wait."""
        feed, thing = item.feed, item.thing
        session = self._session
        parent = thing.parent_id
        conversation: str
        if feed == "posts" or parent is None:
            conversation = thing.fullname
        elif parent in session.threads:
            conversation = session.threads[parent]
        elif parent in held and not force:
            return None
        elif feed != "brand":
            conversation = thing.fullname
        elif (parent.startswith("t3_") or parent in session.starts or release or force
              or len(held) > self.max_held):
            # A reply to a post or a mention, or to a comment no feed brought.
            conversation = parent
        else:
            return None  # perhaps a follow-up the follow-ups feed has not read yet
        if conversation != thing.fullname or feed == "brand":
            remember(session.threads, thing.fullname, conversation, MAX_THREADS)
        else:
            remember(session.starts, thing.fullname, None, MAX_THREADS)
        return conversation

    # HTTP, tokens and rate limits -----------------------------------------------------------

    def _respect_budget(self, ctx: PollContext) -> None:
        self._budget.hold(f"reddit {self.settings.name}", ctx.now())

    async def _token(self, ctx: PollContext) -> str:
        session = self._session
        if session.token is not None and session.expires is not None \
                and ctx.now() < session.expires - TOKEN_MARGIN:
            return session.token
        settings = self.settings
        response = await get_json(
            ctx.session, settings.auth_url + "/api/v1/access_token", what="reddit access token",
            method="POST", timeout=settings.timeout,
            data={"grant_type": "password", "username": settings.username,
                  "password": settings.password.get_secret_value()},
            headers={"Authorization": self._app_auth,
                     "User-Agent": self._user_agent, "Accept": "application/json"},
            wait_hint=reset_wait,
        )
        token = parse_token(response.data)
        if token.error is not None or token.access_token is None:
            raise AuthError(f"reddit access token: refused ({token.error}); check the "
                            f"username, password and that the app is a script app")
        session.token = token.access_token
        session.expires = ctx.now() + timedelta(seconds=token.expires_in)
        return token.access_token

    async def _api(self, ctx: PollContext, path: str, params: Mapping[str, str],
                   what: str) -> JsonResponse:
        for attempt in (1, 2):
            token = await self._token(ctx)
            try:
                response = await get_json(
                    ctx.session, self.settings.base_url + path, what=what, params=params,
                    timeout=self.settings.timeout, wait_hint=reset_wait,
                    headers={"Authorization": f"bearer {token}", "User-Agent": self._user_agent,
                             "Accept": "application/json"},
                )
            except AuthError:
                # An expired or revoked token: one fresh token may fix it, a second refusal won't.
                self._session.token = None
                if attempt == 2:
                    raise
                continue
            self._budget.note(header_number(response.headers, "x-ratelimit-remaining"),
                              reset_wait(response.headers), ctx.now())
            return response
        raise AssertionError("unreachable")  # pragma: no cover
