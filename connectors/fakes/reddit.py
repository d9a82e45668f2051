"""Provides a faithful fake of Reddit's OAuth API: a real aiohttp app over an in-memory world.

Served routes, in the shapes of the recorded payloads (praw-dev/praw cassettes; see
tests/test_reddit.py):

- ``POST /api/v1/access_token``: the password grant of a script app (Basic
  ``client_id:client_secret``, form ``grant_type=password&username&password``). Wrong
  app credentials are 401; a wrong password is, as on Reddit, a 200 with
  ``{"error": "invalid_grant"}``. Tokens last ``token_lifetime`` seconds.
- ``GET /api/v1/me``
- ``GET /message/mentions`` (username mentions) and ``GET /message/comments`` (replies
  to the account's comments): inbox Listings
- ``GET /r/{a+b}/new`` and ``GET /user/{name}/comments``

Listings are newest first with ``limit`` (default 25, max 100), ``after`` (older than a
fullname) and ``before`` (the items just newer than a fullname); an anchor that is not
in the listing gives an empty page, as on Reddit. ``raw_json=1`` leaves ``&``, ``<`` and
``>`` unescaped in text fields; without it they are HTML-escaped (Reddit's legacy).

API calls need ``Authorization: bearer`` (401 ``{"message": "Unauthorized", "error":
401}`` otherwise) and a descriptive ``User-Agent``: a library's default one is answered
429, as Reddit throttles them. The rate limit is ``rate_limit`` requests per 600-second
window aligned on the epoch, reported in ``x-ratelimit-used`` / ``-remaining`` (a float,
"596.0") / ``-reset`` (seconds) and enforced with 429. Every response carries a ``Date``
from the world's clock.

The world follows Reddit: a comment naming ``u/{brand}`` (or ``/u/{brand}``) notifies the
brand as a mention, unless it replies to the brand's own comment, which notifies it as a
comment reply instead. Deleting takes a comment out of its author's listing and of the
inbox; a moderator's removal leaves it in place as ``[removed]``.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    Handler,
    SteppedClock,
    fake_app,
    whole_seconds,
)

RATE_LIMIT = 1000
RATE_WINDOW_SECONDS = 600
TOKEN_LIFETIME = 3600
MAX_LIMIT = 100
GENERIC_AGENTS = ("Python/", "python-requests/", "curl/")
_TEXT_FIELDS = ("body", "title", "selftext", "link_title")


def base36(number: int) -> str:
    """Reddit's id alphabet."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "_".join(words)[:50] or "post"


@dataclass
class FakeThing:
    """A post (t3) or a comment (t1) of the fake world."""

    kind: str
    id: str
    author: str
    subreddit: str
    created: datetime
    seq: int
    title: str = ""
    text: str = ""
    parent_id: str | None = None
    link_id: str | None = None
    removed: bool = False
    deleted: bool = False

    @property
    def fullname(self) -> str:
        """``t1_…`` or ``t3_…``."""
        return f"{self.kind}_{self.id}"


@dataclass
class InboxItem:
    """A notification of the brand: ``username_mention`` or ``comment_reply``."""

    fullname: str
    type: str
    seq: int


class RedditWorld:
    """The accounts, posts, comments and the brand's inbox a fake Reddit serves."""

    def __init__(self, *, now: Callable[[], datetime], brand: str = "acme_support") -> None:
        self.now = now
        self.brand = brand
        self.accounts: dict[str, str] = {}
        self.things: dict[str, FakeThing] = {}
        self.inbox: list[InboxItem] = []
        self._seq = itertools.count(1)
        self._post_ids = itertools.count(400_000_000)
        self._comment_ids = itertools.count(20_000_000_000)
        self._account_ids = itertools.count(10_000_000)
        self.add_account(brand)

    def add_account(self, name: str) -> str:
        """Add an account; return its name."""
        if name.lower() in self.accounts:
            raise ValueError(f"account {name!r} exists")
        self.accounts[name.lower()] = base36(next(self._account_ids))
        return name

    def _account(self, name: str) -> str:
        if name.lower() not in self.accounts:
            raise KeyError(f"no account {name!r}")
        return name

    def post(self, author: str, subreddit: str, title: str, text: str = "", *,
             at: datetime) -> str:
        """Submit a self post; return its fullname."""
        thing = FakeThing("t3", base36(next(self._post_ids)), self._account(author), subreddit,
                          whole_seconds(at), next(self._seq), title=title, text=text)
        self.things[thing.fullname] = thing
        return thing.fullname

    def comment(self, author: str, parent: str, body: str, *, at: datetime) -> str:
        """Reply to a post or comment; return the comment's fullname (notifies the brand)."""
        above = self.things.get(parent)
        if above is None:
            raise KeyError(f"no post or comment {parent}")
        thing = FakeThing(
            "t1", base36(next(self._comment_ids)), self._account(author), above.subreddit,
            whole_seconds(at), next(self._seq), title=self._post(above).title, text=body,
            parent_id=parent, link_id=above.fullname if above.kind == "t3" else above.link_id,
        )
        self.things[thing.fullname] = thing
        brand = self.brand.lower()
        if author.lower() != brand:
            if above.kind == "t1" and above.author.lower() == brand:
                self.inbox.append(InboxItem(thing.fullname, "comment_reply", thing.seq))
            elif re.search(rf"(?<![\w/])/?u/{re.escape(self.brand)}\b", body, re.IGNORECASE):
                self.inbox.append(InboxItem(thing.fullname, "username_mention", thing.seq))
        return thing.fullname

    def delete(self, fullname: str) -> None:
        """The author deletes it: gone from their listing and from the inbox."""
        thing = self.things[fullname]
        thing.deleted = True
        self.inbox = [item for item in self.inbox if item.fullname != fullname]

    def remove(self, fullname: str) -> None:
        """A moderator removes it: it stays listed, as ``[removed]``."""
        self.things[fullname].removed = True

    def _post(self, thing: FakeThing) -> FakeThing:
        return thing if thing.kind == "t3" else self.things[thing.link_id or ""]

    # What the API serves --------------------------------------------------------------

    def _permalink(self, thing: FakeThing) -> str:
        post = self._post(thing)
        base = f"/r/{thing.subreddit}/comments/{post.id}/{_slug(post.title)}/"
        return base if thing.kind == "t3" else f"{base}{thing.id}/"

    def _shown(self, thing: FakeThing) -> tuple[str, str]:
        """(author, text) as Reddit shows them after a deletion or a removal."""
        if thing.deleted:
            return "[deleted]", "[deleted]"
        if thing.removed:
            return thing.author, "[removed]"
        return thing.author, thing.text

    def _common(self, thing: FakeThing) -> dict[str, Any]:
        author, _ = self._shown(thing)
        created = thing.created.timestamp()
        return {
            "id": thing.id, "name": thing.fullname, "author": author,
            "author_fullname": None if thing.deleted else
            f"t2_{self.accounts[thing.author.lower()]}",
            "subreddit": thing.subreddit, "subreddit_name_prefixed": f"r/{thing.subreddit}",
            "created": created, "created_utc": created, "distinguished": None, "score": 1,
        }

    def comment_json(self, thing: FakeThing) -> dict[str, Any]:
        """A t1 child as ``/user/{name}/comments`` lists it."""
        _, body = self._shown(thing)
        post = self._post(thing)
        return {"kind": "t1", "data": {
            **self._common(thing), "body": body, "body_html": _md(body),
            "parent_id": thing.parent_id, "link_id": thing.link_id,
            "link_title": post.title, "link_author": post.author,
            "link_permalink": f"https://www.reddit.com{self._permalink(post)}",
            "permalink": self._permalink(thing), "edited": False, "stickied": False,
            "num_comments": self._count(post), "over_18": False, "replies": "",
        }}

    def post_json(self, thing: FakeThing) -> dict[str, Any]:
        """A t3 child as ``/r/{sub}/new`` lists it."""
        _, text = self._shown(thing)
        return {"kind": "t3", "data": {
            **self._common(thing), "title": thing.title, "selftext": text,
            "selftext_html": _md(text) if text else None, "is_self": True,
            "permalink": self._permalink(thing),
            "url": f"https://www.reddit.com{self._permalink(thing)}",
            "num_comments": self._count(thing), "over_18": False, "locked": False,
            "stickied": False, "link_flair_text": None,
            "removed_by_category": "moderator" if thing.removed else
            ("deleted" if thing.deleted else None),
        }}

    def inbox_json(self, item: InboxItem) -> dict[str, Any]:
        """An inbox child: the recorded username-mention shape (comment replies alike)."""
        thing = self.things[item.fullname]
        _, body = self._shown(thing)
        post = self._post(thing)
        return {"kind": "t1", "data": {
            **self._common(thing), "body": body, "link_title": post.title,
            "was_comment": True, "first_message": None, "first_message_name": None,
            "dest": self.brand, "body_html": _md(body), "parent_id": thing.parent_id,
            "likes": None, "context": f"{self._permalink(thing)}?context=3", "replies": "",
            "new": True, "type": item.type, "associated_awarding_id": None,
            "subject": "username mention" if item.type == "username_mention"
            else "comment reply",
            "num_comments": self._count(post),
        }}

    def _count(self, post: FakeThing) -> int:
        return sum(1 for t in self.things.values()
                   if t.kind == "t1" and t.link_id == post.fullname)


def _md(text: str) -> str:
    """Reddit's rendered markdown, for a plain paragraph."""
    return (f'<!-- SC_OFF --><div class="md"><p>{html.escape(text, quote=False)}</p>\n'
            f"</div><!-- SC_ON -->")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), headers=headers,
                        content_type="application/json", charset="UTF-8")


def _legacy_escape(child: dict[str, Any]) -> dict[str, Any]:
    """Without ``raw_json=1`` Reddit HTML-escapes ``&``, ``<`` and ``>`` in text."""
    data = dict(child["data"])
    for key in _TEXT_FIELDS:
        if isinstance(data.get(key), str):
            data[key] = html.escape(data[key], quote=False)
    return {**child, "data": data}


class RedditFake:
    """The fake server: token grant, bearer auth, User-Agent rule, rate limit, faults."""

    def __init__(self, world: RedditWorld, *, client_id: str = "fake-client",
                 client_secret: str = "fake-secret", password: str = "fake-password",
                 rate_limit: int = RATE_LIMIT, token_lifetime: int = TOKEN_LIFETIME) -> None:
        self.world = world
        self.client_id = client_id
        self.client_secret = client_secret
        self.password = password
        self.rate_limit = rate_limit
        self.token_lifetime = token_lifetime
        self.controls = FakeControls()
        self.tokens: dict[str, datetime] = {}
        self._token_ids = itertools.count(1)
        self._window: tuple[int, int] = (-1, 0)

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = fake_app(self.controls, self.world.now, self._gate)
        app.router.add_post("/api/v1/access_token", self._access_token)
        app.router.add_get("/api/v1/me", self._me)
        app.router.add_get("/message/mentions", self._mentions)
        app.router.add_get("/message/comments", self._comment_replies)
        app.router.add_get("/r/{subreddits}/new", self._new)
        app.router.add_get("/user/{name}/comments", self._user_comments)
        return app

    def revoke_tokens(self) -> None:
        """Invalidate every token handed out (as when the app's secret is reset)."""
        self.tokens.clear()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        if not agent.strip() or agent.startswith(GENERIC_AGENTS):
            return _json({"message": "Too Many Requests", "error": 429}, 429)
        if request.path == "/api/v1/access_token":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expires = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None or self.world.now() >= expires:
            refused = _json({"message": "Unauthorized", "error": 401}, 401)
            refused.headers["www-authenticate"] = 'Bearer realm="reddit", error="invalid_token"'
            return refused
        now = int(self.world.now().timestamp())
        window = now // RATE_WINDOW_SECONDS
        used = (self._window[1] if self._window[0] == window else 0) + 1
        self._window = (window, used)
        headers = {
            "x-ratelimit-used": str(used),
            "x-ratelimit-remaining": f"{max(0, self.rate_limit - used):.1f}",
            "x-ratelimit-reset": str(RATE_WINDOW_SECONDS - now % RATE_WINDOW_SECONDS),
        }
        response: web.StreamResponse
        if used > self.rate_limit:
            response = _json({"message": "Too Many Requests", "error": 429}, 429)
        else:
            try:
                response = await handler(request)
            except web.HTTPNotFound:
                response = _json({"message": "Not Found", "error": 404}, 404)
        response.headers.update(headers)
        return response

    async def _access_token(self, request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        if scheme.lower() != "basic" or decoded != f"{self.client_id}:{self.client_secret}":
            return _json({"message": "Unauthorized", "error": 401}, 401)
        form = await request.post()
        if form.get("grant_type") != "password":
            return _json({"error": "unsupported_grant_type"})
        if (str(form.get("username", "")).lower() != self.world.brand.lower()
                or form.get("password") != self.password):
            return _json({"error": "invalid_grant"})
        token = f"fake-bearer-{next(self._token_ids)}"
        self.tokens[token] = self.world.now() + timedelta(seconds=self.token_lifetime)
        return _json({"access_token": token, "token_type": "bearer",
                      "expires_in": self.token_lifetime, "scope": "*"})

    async def _me(self, request: web.Request) -> web.Response:
        world = self.world
        return _json({"name": world.brand, "id": world.accounts[world.brand.lower()],
                      "created_utc": 1_479_000_000.0, "link_karma": 1, "comment_karma": 1,
                      "is_suspended": False, "has_verified_email": True, "over_18": False})

    def _listing(self, request: web.Request, things: list[FakeThing],
                 render: Callable[[FakeThing], dict[str, Any]]) -> web.Response:
        """Newest first, paged by ``after`` / ``before`` anchors, as Reddit pages Listings."""
        query = request.query
        limit_text = query.get("limit", "25")
        limit = min(MAX_LIMIT, max(1, int(limit_text))) if limit_text.isdigit() else 25
        ordered = sorted(things, key=lambda t: (t.created, t.seq), reverse=True)
        names = [t.fullname for t in ordered]
        if "after" in query:
            start = names.index(query["after"]) + 1 if query["after"] in names else len(names)
            chosen = ordered[start:start + limit]
        elif "before" in query:
            end = names.index(query["before"]) if query["before"] in names else 0
            chosen = ordered[max(0, end - limit):end]
        else:
            chosen = ordered[:limit]
        children = [render(t) for t in chosen]
        if query.get("raw_json") != "1":
            children = [_legacy_escape(child) for child in children]
        paged = "after" in query or "before" in query or "count" in query
        first = names.index(chosen[0].fullname) if chosen else 0
        last = names.index(chosen[-1].fullname) if chosen else 0
        return _json({"kind": "Listing", "data": {
            "after": chosen[-1].fullname if chosen and last < len(names) - 1 else None,
            "dist": len(children), "modhash": None, "geo_filter": "",
            "children": children,
            "before": chosen[0].fullname if chosen and paged and first > 0 else None,
        }})

    def _inbox(self, request: web.Request, kind: str) -> web.Response:
        world = self.world
        items = {item.fullname: item for item in world.inbox if item.type == kind}
        return self._listing(request, [world.things[name] for name in items],
                             lambda t: world.inbox_json(items[t.fullname]))

    async def _mentions(self, request: web.Request) -> web.Response:
        return self._inbox(request, "username_mention")

    async def _comment_replies(self, request: web.Request) -> web.Response:
        return self._inbox(request, "comment_reply")

    async def _new(self, request: web.Request) -> web.Response:
        wanted = {name.lower() for name in request.match_info["subreddits"].split("+")}
        posts = [t for t in self.world.things.values()
                 if t.kind == "t3" and t.subreddit.lower() in wanted]
        return self._listing(request, posts, self.world.post_json)

    async def _user_comments(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower()
        if name not in self.world.accounts:
            return _json({"message": "Not Found", "error": 404}, 404)
        comments = [t for t in self.world.things.values()
                    if t.kind == "t1" and t.author.lower() == name and not t.deleted]
        return self._listing(request, comments, self.world.comment_json)


def contract_case() -> ContractCase:
    """The Reddit fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = RedditWorld(now=clock)
    fake = RedditFake(world)
    casey = world.add_account("casey_k")
    post = world.post(casey, "gadgets", "Best widget?", "Looking for one", at=clock()
                      - timedelta(days=3))
    replies: list[str] = []

    def seed() -> None:
        mention = world.comment(casey, post, "u/acme_support my order never arrived",
                                at=clock() - timedelta(minutes=30))
        replies.append(world.comment(world.brand, mention, "Sorry! A new one ships today.",
                                     at=clock() - timedelta(minutes=20)))

    def add_activity() -> None:
        world.comment(casey, replies[-1], "Still waiting on that order", at=clock())

    def revoke() -> None:
        fake.password = "changed-password"
        fake.revoke_tokens()

    return ContractCase(
        kind="reddit",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {
            "name": "acme-reddit", "kind": "reddit", "client_id": fake.client_id,
            "client_secret": fake.client_secret, "username": world.brand,
            "password": "fake-password", "base_url": base_url, "auth_url": base_url},
        bad_settings={"name": "acme-reddit", "kind": "reddit", "client_id": "c",
                      "client_secret": "s", "username": "acme_support", "password": "p",
                      "limit": 101},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )


__all__ = [
    "FakeThing",
    "InboxItem",
    "RedditFake",
    "RedditWorld",
    "base36",
    "contract_case",
]
