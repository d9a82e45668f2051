"""Provides a faithful fake of the Mastodon REST API: a real aiohttp app over an in-memory world.

It serves what the connector and ``replywatch demo`` use, in the shapes the recorded
payloads show (tests/fixtures SOURCES.md, halcy/Mastodon.py cassettes):

- ``GET /api/v1/accounts/verify_credentials``
- ``GET /api/v1/notifications`` (``types[]``/``exclude_types[]``, ``max_id``/``since_id``/
  ``min_id``, ``limit`` default 40 max 80, newest first, ``Link`` next/prev)
- ``GET /api/v1/accounts/:id/statuses`` (same paging, ``limit`` default 20 max 40)
- ``GET /api/v1/statuses/:id`` and ``GET /api/v1/statuses/:id/context``

Like Mastodon, status and account ids are snowflakes (milliseconds since the epoch << 16
| a sequence) and notification ids a plain sequence ("17" in the recording), so only
status ids can be derived from a time. A ``min_id`` page holds the items immediately
newer than ``min_id``, still listed newest first. A deleted status disappears with its
notifications. Bearer auth answers 401 ``{"error": "The access token is invalid"}``;
each token gets 300 requests per 5-minute window aligned on the epoch, reported in
``X-RateLimit-*`` (ISO 8601 reset) and enforced with a 429 that, like Mastodon's, has
no ``Retry-After``. Every response carries a ``Date`` from the world's clock.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    Handler,
    SteppedClock,
    fake_app,
)

VISIBILITIES = ("public", "unlisted", "private", "direct")
RATE_LIMIT = 300
RATE_PERIOD_SECONDS = 300
_URL_DISPLAY_CHARS = 30
_TOKEN = re.compile(
    r"(?P<url>https?://[^\s<>\"']+)"
    r"|(?<![\w/@])@(?P<user>\w+)(?:@(?P<domain>[\w-]+(?:\.[\w-]+)+))?"
    r"|(?<![\w/&#])#(?P<tag>\w+)"
)


def snowflake(at: datetime, sequence: int = 0) -> int:
    """A Mastodon-style id for ``at``: milliseconds since the epoch << 16 | sequence."""
    return (int(at.timestamp() * 1000) << 16) | (sequence & 0xFFFF)


def iso_ms(value: datetime) -> str:
    """Mastodon's timestamp format: UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class FakeAccount:
    """An account of the fake world (remote ones have a domain in ``acct``)."""

    id: str
    username: str
    acct: str
    domain: str
    display_name: str
    created_at: datetime

    @property
    def url(self) -> str:
        """The account's profile page."""
        return f"https://{self.domain}/@{self.username}"


@dataclass(frozen=True, slots=True)
class FakeStatus:
    """A status of the fake world: its plain text and the HTML Mastodon would serve."""

    id: str
    account_id: str
    text: str
    content: str
    created_at: datetime
    in_reply_to_id: str | None
    visibility: str
    mention_ids: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FakeNotification:
    """A notification of the brand account (only mentions are generated)."""

    id: int
    type: str
    account_id: str
    status_id: str | None
    created_at: datetime


@dataclass(slots=True)
class _Rendered:
    html: str = ""
    mention_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


class MastodonWorld:
    """The accounts, statuses and notifications a fake Mastodon server serves."""

    def __init__(
        self, *, now: Callable[[], datetime], brand: str = "acme", domain: str = "mastodon.example"
    ) -> None:
        self.now = now
        self.domain = domain
        self.accounts: dict[str, FakeAccount] = {}
        self.statuses: dict[str, FakeStatus] = {}
        self.notifications: list[FakeNotification] = []
        self._sequence = itertools.count(1)
        self._notification_ids = itertools.count(1)
        self._last_status_id = 0
        self.brand_id: str = self.add_account(brand, brand.capitalize())

    def add_account(self, username: str, display_name: str = "") -> str:
        """Create an account (``name@other.example`` makes a remote one); return its id."""
        name, _, remote = username.lstrip("@").partition("@")
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"{username!r} is not a Mastodon username")
        domain = remote or self.domain
        acct = f"{name}@{remote}" if remote else name
        if self.find_account(acct) is not None:
            raise ValueError(f"account {acct!r} already exists")
        account_id = str(snowflake(self.now(), next(self._sequence)))
        self.accounts[account_id] = FakeAccount(
            account_id, name, acct, domain, display_name, self.now()
        )
        return account_id

    def find_account(self, acct: str) -> FakeAccount | None:
        """The account whose acct is ``acct`` (``name`` or ``name@domain``), if any."""
        name, _, domain = acct.lstrip("@").lower().partition("@")
        for account in self.accounts.values():
            if account.username.lower() == name and (domain or self.domain) == account.domain:
                return account
        return None

    def post(
        self,
        account_id: str,
        text: str,
        *,
        at: datetime,
        in_reply_to_id: str | None = None,
        visibility: str = "public",
    ) -> str:
        """Publish a status; one mentioning the brand by someone else notifies the brand.

        Ids follow ``at``, but never fall below an id already given: a server hands out
        ids as statuses arrive, so a late one must not hide behind a reader's ``min_id``.
        """
        if account_id not in self.accounts:
            raise KeyError(f"no account {account_id}")
        if in_reply_to_id is not None and in_reply_to_id not in self.statuses:
            raise KeyError(f"no status {in_reply_to_id} to reply to")
        if visibility not in VISIBILITIES:
            raise ValueError(f"visibility must be one of {VISIBILITIES}")
        at = at.astimezone(UTC)
        status_id = max(snowflake(at, next(self._sequence)), self._last_status_id + 1)
        self._last_status_id = status_id
        rendered = self._render(text)
        status = FakeStatus(
            str(status_id), account_id, text, rendered.html, at, in_reply_to_id, visibility,
            tuple(dict.fromkeys(rendered.mention_ids)), tuple(dict.fromkeys(rendered.tags)),
        )
        self.statuses[status.id] = status
        if self.brand_id in status.mention_ids and account_id != self.brand_id:
            self.notifications.append(FakeNotification(
                next(self._notification_ids), "mention", account_id, status.id, at
            ))
        return status.id

    def delete(self, status_id: str) -> None:
        """Delete a status; like Mastodon, its notifications go with it."""
        if self.statuses.pop(status_id, None) is None:
            raise KeyError(f"no status {status_id}")
        self.notifications = [n for n in self.notifications if n.status_id != status_id]

    def _render(self, text: str) -> _Rendered:
        """Mastodon's plain-text formatter: escaped text, <p> paragraphs, <br />, links."""
        rendered = _Rendered()
        paragraphs = [p for p in re.split(r"\n{2,}", text.replace("\r\n", "\n").strip()) if p]
        parts = []
        for paragraph in paragraphs or [""]:
            lines = [self._render_line(line, rendered) for line in paragraph.split("\n")]
            parts.append("<p>" + "<br />".join(lines) + "</p>")
        rendered.html = "".join(parts)
        return rendered

    def _render_line(self, line: str, rendered: _Rendered) -> str:
        out: list[str] = []
        position = 0
        for match in _TOKEN.finditer(line):
            out.append(html.escape(line[position:match.start()]))
            out.append(self._render_token(match, rendered))
            position = match.end()
        out.append(html.escape(line[position:]))
        return "".join(out)

    def _render_token(self, match: re.Match[str], rendered: _Rendered) -> str:
        if match["url"]:
            return _render_link(match["url"])
        if match["tag"]:
            tag = match["tag"]
            rendered.tags.append(tag.lower())
            return (f'<a href="https://{self.domain}/tags/{html.escape(tag.lower())}" '
                    f'class="mention hashtag" rel="tag">#<span>{html.escape(tag)}</span></a>')
        acct = match["user"] + (f"@{match['domain']}" if match["domain"] else "")
        account = self.find_account(acct)
        if account is None:
            return html.escape(match[0])
        rendered.mention_ids.append(account.id)
        return (f'<span class="h-card" translate="no"><a href="{html.escape(account.url)}" '
                f'class="u-url mention">@<span>{html.escape(account.username)}</span></a></span>')

    # What the API serves ------------------------------------------------------------

    def visible(self, status: FakeStatus, viewer_id: str) -> bool:
        """Whether ``viewer_id`` may see ``status`` (it follows nobody in this world)."""
        return (
            status.visibility in ("public", "unlisted")
            or status.account_id == viewer_id
            or viewer_id in status.mention_ids
        )

    def account_json(self, account: FakeAccount) -> dict[str, Any]:
        """An Account entity."""
        own = [s for s in self.statuses.values() if s.account_id == account.id]
        last = max((s.created_at for s in own), default=None)
        local = account.domain == self.domain
        media = f"https://{self.domain}" if local else f"https://{self.domain}/system/cache"
        return {
            "id": account.id,
            "username": account.username,
            "acct": account.acct,
            "display_name": account.display_name,
            "locked": False,
            "bot": False,
            "discoverable": None,
            "group": False,
            "created_at": iso_ms(account.created_at.replace(hour=0, minute=0, second=0,
                                                            microsecond=0)),
            "note": "",
            "url": account.url,
            "avatar": f"{media}/avatars/original/missing.png",
            "avatar_static": f"{media}/avatars/original/missing.png",
            "header": f"{media}/headers/original/missing.png",
            "header_static": f"{media}/headers/original/missing.png",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": len(own),
            "last_status_at": None if last is None else last.date().isoformat(),
            "noindex": False,
            "emojis": [],
            "fields": [],
        }

    def status_json(self, status: FakeStatus, viewer_id: str) -> dict[str, Any]:
        """A Status entity as ``viewer_id`` sees it."""
        account = self.accounts[status.account_id]
        reply_to = self.statuses.get(status.in_reply_to_id or "")
        data: dict[str, Any] = {
            "id": status.id,
            "created_at": iso_ms(status.created_at),
            "in_reply_to_id": status.in_reply_to_id,
            "in_reply_to_account_id": None if reply_to is None else reply_to.account_id,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": status.visibility,
            "language": "en",
            "uri": f"https://{account.domain}/users/{account.username}/statuses/{status.id}",
            "url": f"https://{account.domain}/@{account.username}/{status.id}",
            "replies_count": sum(1 for s in self.statuses.values()
                                 if s.in_reply_to_id == status.id),
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "content": status.content,
            "filtered": [],
            "reblog": None,
            "application": {"name": "Web", "website": None},
            "account": self.account_json(account),
            "media_attachments": [],
            "mentions": [
                {"id": a.id, "username": a.username, "url": a.url, "acct": a.acct}
                for a in (self.accounts[i] for i in status.mention_ids)
            ],
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{t}"} for t in status.tags],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        if status.account_id == viewer_id:
            data["pinned"] = False
        if account.domain != self.domain:
            del data["application"]
        return data

    def notification_json(self, notification: FakeNotification, viewer_id: str) -> dict[str, Any]:
        """A Notification entity."""
        status = self.statuses.get(notification.status_id or "")
        data: dict[str, Any] = {
            "id": str(notification.id),
            "type": notification.type,
            "created_at": iso_ms(notification.created_at),
            "account": self.account_json(self.accounts[notification.account_id]),
        }
        if notification.status_id is not None:
            data["status"] = None if status is None else self.status_json(status, viewer_id)
        return data


def _render_link(url: str) -> str:
    """A link as Mastodon shows it: scheme hidden, long paths cut with an ellipsis."""
    scheme, _, rest = url.partition("://")
    prefix = f"{scheme}://"
    if rest.startswith("www."):
        prefix, rest = prefix + "www.", rest[4:]
    shown, hidden = rest[:_URL_DISPLAY_CHARS], rest[_URL_DISPLAY_CHARS:]
    shown_class = "ellipsis" if hidden else ""
    return (f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" '
            f'translate="no"><span class="invisible">{html.escape(prefix)}</span>'
            f'<span class="{shown_class}">{html.escape(shown)}</span>'
            f'<span class="invisible">{html.escape(hidden)}</span></a>')


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data),
                        content_type="application/json", charset="utf-8")


def _not_found() -> web.Response:
    return _json({"error": "Record not found"}, 404)


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else None


def _limit(request: web.Request, default: int, maximum: int) -> int:
    value = _int_param(request, "limit")
    return default if value is None or value < 1 else min(value, maximum)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _page(
    items: Iterable[Any], key: Callable[[Any], int], request: web.Request, limit: int
) -> list[Any]:
    """Mastodon's id paging: ``min_id`` reads up from below, the others down from the top."""
    max_id = _int_param(request, "max_id")
    since_id = _int_param(request, "since_id")
    min_id = _int_param(request, "min_id")
    chosen = sorted(
        (item for item in items
         if (max_id is None or key(item) < max_id)
         and (since_id is None or key(item) > since_id)
         and (min_id is None or key(item) > min_id)),
        key=key,
    )
    if min_id is not None:
        return list(reversed(chosen[:limit]))
    return list(reversed(chosen))[:limit]


def _link_header(request: web.Request, page: list[Any], key: Callable[[Any], int],
                 keep: tuple[str, ...]) -> dict[str, str]:
    """``Link`` next (older, ``max_id``) and prev (newer, ``min_id``); none for an empty page."""
    if not page:
        return {}
    base = request.url.with_query(None)
    kept = [(k, v) for k, v in request.query.items() if k in keep]
    older = base.with_query([*kept, ("max_id", str(key(page[-1])))])
    newer = base.with_query([*kept, ("min_id", str(key(page[0])))])
    return {"Link": f'<{older}>; rel="next", <{newer}>; rel="prev"'}


class MastodonFake:
    """The fake server: routes, Bearer auth, rate limiting and scripted faults."""

    def __init__(self, world: MastodonWorld, *, token: str = "fake-token") -> None:
        self.world = world
        self.token = token
        self.controls = FakeControls()
        self.rate_limit = RATE_LIMIT
        self.rate_period = RATE_PERIOD_SECONDS
        self._window: tuple[int, int] = (-1, 0)

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = fake_app(self.controls, self.world.now, self._gate)
        app.router.add_get("/api/v1/accounts/verify_credentials", self._verify_credentials)
        app.router.add_get("/api/v1/notifications", self._notifications)
        app.router.add_get("/api/v1/accounts/{id}/statuses", self._account_statuses)
        app.router.add_get("/api/v1/statuses/{id}", self._status)
        app.router.add_get("/api/v1/statuses/{id}/context", self._context)
        return app

    def _rate_headers(self, used: int) -> dict[str, str]:
        now = self.world.now().astimezone(UTC)
        seconds = int(now.timestamp())
        reset = now + timedelta(seconds=self.rate_period - seconds % self.rate_period)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.rate_limit - used)),
            "X-RateLimit-Reset": reset.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            refused = _json({"error": "The access token is invalid"}, 401)
            refused.headers["WWW-Authenticate"] = (
                'Bearer realm="Doorkeeper", error="invalid_token", '
                'error_description="The access token is invalid"'
            )
            return refused
        window = int(self.world.now().timestamp()) // self.rate_period
        used = (self._window[1] if self._window[0] == window else 0) + 1
        self._window = (window, used)
        headers = self._rate_headers(used)
        if used > self.rate_limit:
            limited = _json({"error": "Too many requests"}, 429)
            limited.headers.update(headers)
            return limited
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = _not_found()
        response.headers.update(headers)
        return response

    async def _verify_credentials(self, request: web.Request) -> web.Response:
        world = self.world
        data = world.account_json(world.accounts[world.brand_id])
        data["source"] = {"privacy": "public", "sensitive": False, "language": "en", "note": "",
                          "fields": [], "follow_requests_count": 0}
        return _json(data)

    async def _notifications(self, request: web.Request) -> web.Response:
        world = self.world
        types = set(request.query.getall("types[]", []))
        excluded = set(request.query.getall("exclude_types[]", []))
        chosen = [n for n in world.notifications
                  if (not types or n.type in types) and n.type not in excluded]
        page = _page(chosen, lambda n: n.id, request, _limit(request, 40, 80))
        body = [world.notification_json(n, world.brand_id) for n in page]
        headers = _link_header(request, page, lambda n: n.id,
                               ("limit", "types[]", "exclude_types[]", "account_id"))
        response = _json(body)
        response.headers.update(headers)
        return response

    async def _account_statuses(self, request: web.Request) -> web.Response:
        world = self.world
        account_id = request.match_info["id"]
        if account_id not in world.accounts:
            return _not_found()
        viewer = world.brand_id
        chosen = [s for s in world.statuses.values()
                  if s.account_id == account_id and world.visible(s, viewer)
                  and not (_flag(request, "exclude_replies") and s.in_reply_to_id)]
        if _flag(request, "pinned") or _flag(request, "only_media"):
            chosen = []
        page = _page(chosen, lambda s: int(s.id), request, _limit(request, 20, 40))
        response = _json([world.status_json(s, viewer) for s in page])
        response.headers.update(_link_header(
            request, page, lambda s: int(s.id),
            ("limit", "exclude_replies", "exclude_reblogs", "only_media", "pinned", "tagged"),
        ))
        return response

    def _visible_status(self, request: web.Request) -> FakeStatus | None:
        status = self.world.statuses.get(request.match_info["id"])
        if status is None or not self.world.visible(status, self.world.brand_id):
            return None
        return status

    async def _status(self, request: web.Request) -> web.Response:
        status = self._visible_status(request)
        if status is None:
            return _not_found()
        return _json(self.world.status_json(status, self.world.brand_id))

    async def _context(self, request: web.Request) -> web.Response:
        world = self.world
        status = self._visible_status(request)
        if status is None:
            return _not_found()
        viewer = world.brand_id
        ancestors: list[FakeStatus] = []
        parent = world.statuses.get(status.in_reply_to_id or "")
        while parent is not None and world.visible(parent, viewer) and parent not in ancestors:
            ancestors.append(parent)
            parent = world.statuses.get(parent.in_reply_to_id or "")
        descendants: list[FakeStatus] = []

        def walk(node: FakeStatus) -> None:
            children = sorted((s for s in world.statuses.values()
                               if s.in_reply_to_id == node.id and world.visible(s, viewer)),
                              key=lambda s: int(s.id))
            for child in children:
                descendants.append(child)
                walk(child)

        walk(status)
        return _json({
            "ancestors": [world.status_json(s, viewer) for s in reversed(ancestors)],
            "descendants": [world.status_json(s, viewer) for s in descendants],
        })


def contract_case() -> ContractCase:
    """The Mastodon fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = MastodonWorld(now=clock)
    fake = MastodonFake(world)
    customer = world.add_account("casey", "Casey")

    def seed() -> None:
        mention = world.post(customer, "@acme my order never arrived",
                             at=clock() - timedelta(minutes=30))
        world.post(world.brand_id, "@casey sorry! sending a new one today",
                   at=clock() - timedelta(minutes=20), in_reply_to_id=mention)

    def add_activity() -> None:
        world.post(customer, "@acme still waiting on that order", at=clock())

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="mastodon",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-mastodon", "kind": "mastodon",
                                   "base_url": base_url, "token": "fake-token"},
        bad_settings={"name": "acme-mastodon", "kind": "mastodon",
                      "base_url": "https://mastodon.example", "token": "t", "limit": 81},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )


__all__ = [
    "FakeAccount",
    "FakeNotification",
    "FakeStatus",
    "MastodonFake",
    "MastodonWorld",
    "contract_case",
    "iso_ms",
    "snowflake",
]
