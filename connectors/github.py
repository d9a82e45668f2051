"""Provides the GitHub Issues connector: a repository's issues and comments, as support events.

For open-source maintainers answering their users: an issue is a conversation (its
``number``), its opening post and its comments are messages, closing solves it.

**Two streams, one request per poll.** A round reads the issues stream
(``GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&since=…``) to
the top, then the comments stream (``GET /repos/{owner}/{repo}/issues/comments?sort=
updated&direction=asc&since=…``) to the top; ``more`` is True until the round is complete.
Pull requests come through both endpoints and are left out: issue items carrying
``pull_request``, comments whose ``html_url`` points at ``/pull/``.

**The cursor.** ``since`` has second precision and is inclusive, and both lists order by
``updated_at``: each stream keeps the second it has read up to and the ids it already
returned at that second (the next request repeats them and they are dropped). Paging
moves ``since`` forward to the last item read, which stays stable while items change
(numbered pages over a mutable order would skip items); numbered pages (``page=``, read
from the ``Link`` header) are only used when more than a page of items share one second.

**What an issue says.** Every version of an issue read (one per ``updated_at``) gives an
``update`` event ``issue-{n}@{epoch}`` with subject (title), customer, assignee, tags
(labels) and, with ``priority_labels``, priority; an open issue that has changed since it
was opened gives a ``status`` ``open`` event ``issue-{n}:open@{epoch}`` at that version's
``updated_at`` (a reopen is only seen as a version, so it is dated by it); an issue locked
as spam is ``dismissed``. Events that happened once carry stable ids and are returned
once: the opening post (``issue-{n}``: a customer message, or an agent message when a
maintainer opened it, which makes the conversation outbound) and the close
(``issue-{n}:closed@{epoch}``: ``solved`` at ``closed_at``; a close as ``not_planned`` or
``duplicate`` is ``solved`` too, since nothing is left to answer). They are returned when
they happened after the start of the current catch-up *run* (the ``since`` of the first
request after the stream last reached the top): everything older was returned by an
earlier run, so a later version of an old issue does not repeat them. Comments
(``comment-{id}``) follow the same rule, so an edited comment is not returned again.

**Who wrote it.** ``author_association`` ``OWNER`` / ``MEMBER`` / ``COLLABORATOR`` (or a
login in ``agents``) is ``agent``; a ``Bot`` account, a login ending ``[bot]`` (or listed in
``bots``) is ``bot``; everyone else is ``customer``.

**Watermark.** GitHub's lists are read from replicas that can trail a write by a moment,
and a second's changes may still be landing when we read it. A poll therefore only takes
items updated at least ``settle`` (default 10 s) before the server's time (``Date``, else
``ctx.now()``), leaving newer ones for the next poll. A stream that read to the top has
seen every change up to that cutoff; the watermark is the earlier of the two streams'
cutoffs and never moves backwards.

**Rate limits.** ``X-RateLimit-Remaining: 0`` makes the next poll raise ``RateLimited``
until ``X-RateLimit-Reset`` without sending anything. A 403 or 429 that is a rate limit
(``Retry-After``, remaining 0, or a "rate limit" message: the secondary limits) becomes
``RateLimited``; any other 403 is an ``AuthError``.

A stored cursor this version cannot read is treated as no cursor: ids are stable, so
starting again from ``ctx.since`` only repeats known events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator

from connectors._http import (
    DEFAULT_RETRY_AFTER,
    JsonResponse,
    epoch_reset_wait,
    get_json,
    header_count,
    parse_retry_after,
)
from connectors._json import (
    array,
    boolean,
    cursor_instant,
    fail,
    instant,
    obj,
    opt_array,
    opt_instant,
    opt_string,
    string,
)
from connectors._limits import RateBudget
from connectors._settings import https_address, validated
from connectors._text import clip, web_url
from monitor.connector import Batch, Cursor, PollContext, SourceSettings
from monitor.durations import Duration
from monitor.errors import ParseError
from monitor.events import Actor, Event, EventKind, Priority, Status

CHANNEL = "github"
MAX_PER_PAGE = 100
MAINTAINERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
DONE_REASONS = frozenset({"completed", "not_planned", "duplicate"})
"""``state_reason`` values of a closed issue; all of them solve the conversation."""
SPAM_LOCK = "spam"
ISO_SECOND = "%Y-%m-%dT%H:%M:%SZ"

Stream = Literal["issues", "comments"]
_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")
_RATE_MESSAGE = re.compile(rb"rate limit", re.IGNORECASE)


class GitHubSettings(SourceSettings):
    """A GitHub repository whose issues are the conversations."""

    kind: Literal["github"] = "github"
    repo: str
    """The repository as ``owner/name``."""
    token: SecretStr | None = None
    """A token that can read the repository's issues (sent as Bearer); give it as
    ``"${GITHUB_TOKEN}"``. Optional for public repositories, which then get 60 requests
    an hour instead of 5000."""
    base_url: str = "https://api.github.com"
    """The API root; ``https://HOST/api/v3`` for GitHub Enterprise Server (tests: the fake)."""
    per_page: int = Field(default=MAX_PER_PAGE, ge=1, le=MAX_PER_PAGE)
    """Items per page (GitHub allows at most 100)."""
    agents: tuple[str, ...] = ()
    """Logins that answer for the project although GitHub does not show them as members
    (a private org membership reads as ``CONTRIBUTOR`` to some tokens)."""
    bots: tuple[str, ...] = ()
    """Logins of user accounts that act as bots (their comments never stop a clock)."""
    priority_labels: dict[str, Priority] = Field(default_factory=dict)
    """Labels that set the priority, e.g. ``{"P0" = "urgent", "bug" = "high"}``; the first
    label of an issue found here wins. Empty: issues carry no priority."""
    settle: Duration = 10.0
    """Changes younger than this are left for the next poll (see the watermark)."""

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO.fullmatch(value.strip()):
            raise ValueError("expected the repository as owner/name")
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return https_address(value, "https://api.github.com")

    @field_validator("agents", "bots")
    @classmethod
    def _logins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for login in value:
            if not _LOGIN.fullmatch(login):
                raise ValueError(f"{login!r} is not a GitHub login")
        return tuple(login.lower() for login in value)


# --- what the API gives us, validated ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubUser:
    """An issue's or comment's author; ``bot`` for GitHub App and ``[bot]`` accounts."""

    login: str
    bot: bool


@dataclass(frozen=True, slots=True)
class Issue:
    """One version of an issue (or pull request) from the issues list."""

    id: int
    number: int
    title: str
    body: str | None
    user: GitHubUser
    association: str
    state: str
    state_reason: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    labels: tuple[str, ...]
    assignee: str | None
    locked: bool
    lock_reason: str | None
    url: str | None
    pull_request: bool


@dataclass(frozen=True, slots=True)
class Comment:
    """One version of an issue comment; ``on_pull_request`` for a comment on a PR."""

    id: int
    issue_number: int
    body: str | None
    user: GitHubUser
    association: str
    created_at: datetime
    updated_at: datetime
    url: str | None
    on_pull_request: bool


@dataclass(frozen=True, slots=True)
class Repository:
    """What ``check`` reports of the repository."""

    full_name: str
    private: bool
    has_issues: bool


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(where, "expected a non-negative integer")
    return value


def _user(value: Any, where: str) -> GitHubUser:
    """An author; a deleted account (``null``) is GitHub's ``ghost``."""
    if value is None:
        return GitHubUser("ghost", bot=False)
    user = obj(value, where)
    login = string(user.get("login"), f"{where}.login")
    kind = user.get("type")
    return GitHubUser(login, bot=kind == "Bot" or login.lower().endswith("[bot]"))


def _association(value: Any, where: str) -> str:
    return "NONE" if value is None else string(value, where).upper()


def _labels(value: Any, where: str) -> tuple[str, ...]:
    names = []
    for index, label in enumerate(opt_array(value, where)):
        if isinstance(label, str):  # the API documents labels as objects or plain names
            names.append(label)
        else:
            names.append(string(obj(label, f"{where}[{index}]").get("name"),
                              f"{where}[{index}].name"))
    return tuple(dict.fromkeys(names))


def parse_issue(data: Any, where: str = "github issue") -> Issue:
    """One Issue object (also a pull request's issue form); ParseError if it is not one."""
    issue = obj(data, where)
    number = _int(issue.get("number"), f"{where}.number")
    where = f"{where} #{number}"
    assignee = issue.get("assignee")
    if assignee is None and issue.get("assignees"):
        assignee = array(issue["assignees"], f"{where}.assignees")[0]
    state = string(issue.get("state"), f"{where}.state")
    if state not in ("open", "closed"):
        raise fail(where, f"state {state[:20]!r} is neither open nor closed")
    return Issue(
        id=_int(issue.get("id"), f"{where}.id"),
        number=number,
        title=string(issue.get("title"), f"{where}.title"),
        body=opt_string(issue.get("body"), f"{where}.body"),
        user=_user(issue.get("user"), f"{where}.user"),
        association=_association(issue.get("author_association"), f"{where}.author_association"),
        state=state,
        state_reason=opt_string(issue.get("state_reason"), f"{where}.state_reason"),
        created_at=instant(issue.get("created_at"), f"{where}.created_at"),
        updated_at=instant(issue.get("updated_at"), f"{where}.updated_at"),
        closed_at=opt_instant(issue.get("closed_at"), f"{where}.closed_at"),
        labels=_labels(issue.get("labels"), f"{where}.labels"),
        assignee=None if assignee is None else _user(assignee, f"{where}.assignee").login,
        locked=issue.get("locked") is not None and boolean(issue["locked"], f"{where}.locked"),
        lock_reason=opt_string(issue.get("active_lock_reason"), f"{where}.active_lock_reason"),
        url=web_url(issue.get("html_url")),
        pull_request=issue.get("pull_request") is not None,
    )


def parse_issues(data: Any) -> tuple[Issue, ...]:
    """A page of the issues list; ParseError (and nothing else) if it is not one."""
    return tuple(parse_issue(item, f"github issues[{index}]")
                 for index, item in enumerate(array(data, "github issues page")))


def _issue_number(issue_url: Any, where: str) -> int:
    path = urlsplit(string(issue_url, f"{where}.issue_url")).path.rstrip("/")
    head, _, tail = path.rpartition("/")
    if not head.endswith("/issues") or not tail.isascii() or not tail.isdigit():
        raise fail(where, "issue_url does not name an issue")
    return int(tail)


def parse_comment(data: Any, where: str = "github comment") -> Comment:
    """One issue comment; ParseError if it is not one."""
    comment = obj(data, where)
    comment_id = _int(comment.get("id"), f"{where}.id")
    where = f"{where} {comment_id}"
    url = web_url(comment.get("html_url"))
    return Comment(
        id=comment_id,
        issue_number=_issue_number(comment.get("issue_url"), where),
        body=opt_string(comment.get("body"), f"{where}.body"),
        user=_user(comment.get("user"), f"{where}.user"),
        association=_association(comment.get("author_association"),
                                 f"{where}.author_association"),
        created_at=instant(comment.get("created_at"), f"{where}.created_at"),
        updated_at=instant(comment.get("updated_at"), f"{where}.updated_at"),
        url=url,
        on_pull_request=url is not None and "/pull/" in urlsplit(url).path,
    )


def parse_comments(data: Any) -> tuple[Comment, ...]:
    """A page of the repository's issue comments; ParseError if it is not one."""
    return tuple(parse_comment(item, f"github comments[{index}]")
                 for index, item in enumerate(array(data, "github comments page")))


def parse_repository(data: Any) -> Repository:
    """The repository object ``check`` reads; ParseError if it is not one."""
    repo = obj(data, "github repository")
    return Repository(
        full_name=string(repo.get("full_name"), "github repository.full_name"),
        private=bool(repo.get("private")),
        has_issues=repo.get("has_issues") is not False,
    )


# --- events: pure --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class People:
    """How authors are classified: extra agent and bot logins (lower case)."""

    agents: frozenset[str] = frozenset()
    bots: frozenset[str] = frozenset()

    def actor(self, user: GitHubUser, association: str) -> Actor:
        """Bots first (an app can be a collaborator), then maintainers, else the public."""
        login = user.login.lower()
        if user.bot or login in self.bots:
            return Actor.BOT
        if association in MAINTAINERS or login in self.agents:
            return Actor.AGENT
        return Actor.CUSTOMER


@dataclass(frozen=True, slots=True)
class Fresh:
    """Where the current run started: what happened before was returned by an earlier run.

    ``seen`` are the ids already returned at the second ``since`` itself.
    """

    since: datetime
    seen: frozenset[int] = frozenset()

    def admits(self, at: datetime, item_id: int) -> bool:
        """Whether a one-time event at ``at`` of item ``item_id`` is new to this run."""
        return at > self.since or (at == self.since and item_id not in self.seen)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _priority(labels: Sequence[str], priority_labels: Mapping[str, Priority]) -> Priority | None:
    lowered = {name.lower(): priority for name, priority in priority_labels.items()}
    for label in labels:
        if label.lower() in lowered:
            return lowered[label.lower()]
    return None


def issue_events(
    issue: Issue,
    *,
    source: str,
    fresh: Fresh,
    people: People | None = None,
    priority_labels: Mapping[str, Priority] | None = None,
    channel: str = CHANNEL,
) -> tuple[Event, ...]:
    """The events one version of an issue says (see the module doc); none for a PR."""
    if issue.pull_request:
        return ()
    people = people or People()
    n = issue.number
    version = _epoch(issue.updated_at)
    common: dict[str, Any] = {"source": source, "conversation": str(n), "url": issue.url,
                              "channel": channel}
    opener = people.actor(issue.user, issue.association)
    events: list[Event] = []
    if fresh.admits(issue.created_at, n):
        events.append(Event(
            id=f"issue-{n}", at=issue.created_at, kind=EventKind.MESSAGE, actor=opener,
            public=True, author=issue.user.login,
            text=clip(issue.body or None) or clip(issue.title or None), **common,
        ))
    fields: dict[str, Any] = {"subject": issue.title, "assignee": issue.assignee,
                              "tags": list(issue.labels)}
    if opener is Actor.CUSTOMER:
        fields["customer"] = issue.user.login
    if priority_labels:
        priority = _priority(issue.labels, priority_labels)
        fields["priority"] = None if priority is None else str(priority)
    events.append(Event(id=f"issue-{n}@{version}", at=issue.updated_at, kind=EventKind.UPDATE,
                        fields=fields, **common))
    if issue.state == "closed" and issue.closed_at is not None:
        if fresh.admits(issue.closed_at, n):
            events.append(Event(id=f"issue-{n}:closed@{_epoch(issue.closed_at)}",
                                at=issue.closed_at, kind=EventKind.STATUS,
                                status=Status.SOLVED, **common))
    elif issue.state == "open" and issue.updated_at > issue.created_at:
        events.append(Event(id=f"issue-{n}:open@{version}", at=issue.updated_at,
                            kind=EventKind.STATUS, status=Status.OPEN, **common))
    if issue.locked and issue.lock_reason == SPAM_LOCK:
        events.append(Event(id=f"issue-{n}:spam@{version}", at=issue.updated_at,
                            kind=EventKind.DISMISSED, **common))
    return tuple(events)


def comment_event(
    comment: Comment,
    *,
    source: str,
    fresh: Fresh,
    people: People | None = None,
    channel: str = CHANNEL,
) -> Event | None:
    """The message of a comment, or None (a PR's comment, or one an earlier run returned)."""
    if comment.on_pull_request or not fresh.admits(comment.created_at, comment.id):
        return None
    people = people or People()
    return Event(
        source=source, conversation=str(comment.issue_number), id=f"comment-{comment.id}",
        at=comment.created_at, kind=EventKind.MESSAGE,
        actor=people.actor(comment.user, comment.association), public=True,
        channel=channel, url=comment.url, author=comment.user.login,
        text=clip(comment.body or None),
    )


# --- rate limits: pure ---------------------------------------------------------------------


def reset_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (epoch seconds), measured on the server's clock."""
    return epoch_reset_wait(headers, "X-RateLimit-Reset", now)


def limit_wait(headers: Mapping[str, str], body: bytes, now: datetime) -> float | None:
    """For a 403/429: seconds to wait if it is a rate limit, None if it is a real refusal.

    GitHub says "rate limit" three ways: ``Retry-After`` (secondary limits), remaining 0
    (the primary limit: wait for the reset), or only its message (secondary limits
    without a header: GitHub asks for at least a minute).
    """
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    if retry_after is not None:
        return retry_after
    if headers.get("X-RateLimit-Remaining", "").strip() == "0":
        wait = reset_wait(headers, now)
        return DEFAULT_RETRY_AFTER if wait is None else wait
    if _RATE_MESSAGE.search(body[:2000]):
        return DEFAULT_RETRY_AFTER
    return None


# --- the cursor ----------------------------------------------------------------------------


def _ints(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        return None
    return tuple(value)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime(ISO_SECOND)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """One stream's place: the second read up to, ids returned there, the run's start."""

    since: datetime
    seen: tuple[int, ...] = ()
    page: int = 1
    fresh: datetime | None = None
    fresh_seen: tuple[int, ...] = ()
    top: datetime | None = None
    at_top: bool = False

    @classmethod
    def load(cls, data: Any) -> StreamPosition | None:
        """A stored position, or None when it cannot be read."""
        if not isinstance(data, Mapping):
            return None
        since = cursor_instant(data.get("since"))
        seen = _ints(data.get("seen"))
        fresh_seen = _ints(data.get("fresh_seen"))
        page = data.get("page")
        if since is None or seen is None or fresh_seen is None or type(page) is not int:
            return None
        return cls(since=since, seen=seen, page=max(1, page),
                   fresh=cursor_instant(data.get("fresh")), fresh_seen=fresh_seen,
                   top=cursor_instant(data.get("top")),
                   at_top=data.get("at_top") is True)

    def dump(self) -> dict[str, Any]:
        """The JSON form stored in the cursor."""
        return {"since": _iso(self.since), "seen": list(self.seen), "page": self.page,
                "fresh": _iso(self.fresh), "fresh_seen": list(self.fresh_seen),
                "top": _iso(self.top), "at_top": self.at_top}

    def started(self) -> StreamPosition:
        """This position at the start of a poll: after a read to the top, a new run."""
        if self.at_top or self.fresh is None:
            return replace(self, fresh=self.since, fresh_seen=self.seen, at_top=False)
        return self

    @property
    def run(self) -> Fresh:
        """Where the current run started."""
        return Fresh(self.fresh or self.since, frozenset(self.fresh_seen))


@dataclass(frozen=True, slots=True)
class _State:
    """The whole cursor: both streams, whose turn it is, the watermark given so far."""

    next: Stream
    issues: StreamPosition
    comments: StreamPosition
    watermark: datetime | None = None

    @classmethod
    def load(cls, cursor: Cursor | None, start: datetime) -> _State:
        fresh = cls("issues", StreamPosition(start), StreamPosition(start))
        if not cursor:
            return fresh
        issues = StreamPosition.load(cursor.get("issues"))
        comments = StreamPosition.load(cursor.get("comments"))
        turn = cursor.get("next")
        if issues is None or comments is None or turn not in ("issues", "comments"):
            return fresh
        return cls(turn, issues, comments, cursor_instant(cursor.get("watermark")))

    def dump(self) -> dict[str, Any]:
        return {"next": self.next, "issues": self.issues.dump(),
                "comments": self.comments.dump(), "watermark": _iso(self.watermark)}

    def position(self, stream: Stream) -> StreamPosition:
        return self.issues if stream == "issues" else self.comments

    def moved(self, stream: Stream, position: StreamPosition) -> _State:
        """The state with ``stream`` at ``position``: the turn passes once it is at the top."""
        state = (replace(self, issues=position) if stream == "issues"
                 else replace(self, comments=position))
        if position.at_top:
            state = replace(state, next="comments" if stream == "issues" else "issues")
        tops = (state.issues.top, state.comments.top)
        if tops[0] is not None and tops[1] is not None:
            mark = min(tops[0], tops[1])
            if state.watermark is None or mark > state.watermark:
                state = replace(state, watermark=mark)
        return state


@dataclass(frozen=True, slots=True)
class PageItem:
    """What paging needs of an item: its id (number for issues) and version."""

    id: int
    updated_at: datetime


def advance(
    position: StreamPosition, items: Sequence[PageItem], *, has_next: bool, cutoff: datetime
) -> tuple[StreamPosition, tuple[int, ...]]:
    """Where a stream stands after a page, and the ids on it to return (pure).

    Items newer than ``cutoff`` are left for a later poll; items at the current second
    already returned are dropped. Raises ParseError for a page that cannot move us on.
    """
    taken: list[PageItem] = []
    reached_top = not has_next
    for item in items:
        if item.updated_at > cutoff:
            reached_top = True
            break
        if item.updated_at < position.since:
            continue  # older than asked for: read by an earlier page already
        if item.updated_at == position.since and item.id in position.seen:
            continue
        taken.append(item)
    last = max((i.updated_at for i in taken), default=position.since)
    if last > position.since:
        after = replace(position, since=last, page=1,
                        seen=tuple(dict.fromkeys(i.id for i in taken if i.updated_at == last)))
    else:
        seen = tuple(dict.fromkeys((*position.seen, *(i.id for i in taken))))
        whole_page_at_since = bool(items) and all(i.updated_at == position.since for i in items)
        page = position.page + 1 if (whole_page_at_since and not reached_top) else 1
        after = replace(position, seen=seen, page=page)
        if not reached_top and not taken and page == 1:
            raise fail("github", "a page announced more but did not move past "
                                 f"{_iso(position.since)}")
    if reached_top:
        after = replace(after, page=1, at_top=True,
                        top=max(cutoff, position.top) if position.top else cutoff)
    return after, tuple(i.id for i in taken)


def has_next_page(links: Mapping[str, str]) -> bool:
    """Whether the ``Link`` header announces a next page (its ``page`` must be a number)."""
    link = links.get("next")
    if link is None:
        return False
    try:
        pages = parse_qs(urlsplit(link).query).get("page", [])
    except ValueError:
        return False
    return bool(pages) and pages[0].isascii() and pages[0].isdigit()


# --- the connector -------------------------------------------------------------------------


class GitHubConnector:
    """Polls one repository's issues and issue comments (see the module doc)."""

    kind: ClassVar[str] = "github"
    settings_model: ClassVar[type[SourceSettings]] = GitHubSettings

    def __init__(self, settings: GitHubSettings | Mapping[str, Any]) -> None:
        self.settings = settings = validated(GitHubSettings, settings)
        self._people = People(frozenset(settings.agents), frozenset(settings.bots))
        self._headers = {"Accept": "application/vnd.github+json",
                         "X-GitHub-Api-Version": "2022-11-28"}
        if settings.token is not None:
            self._headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._budget = RateBudget()

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.settings.repo}"

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """One page of the stream whose turn it is; see the module doc for the round."""
        self._respect_budget(ctx)
        state = _State.load(cursor, ctx.since)
        stream = state.next
        position = state.position(stream).started()
        params = {"sort": "updated", "direction": "asc", "since": _iso(position.since) or "",
                  "per_page": str(self.settings.per_page)}
        if position.page > 1:
            params["page"] = str(position.page)
        if stream == "issues":
            params["state"] = "all"
            response = await self._get(ctx, f"{self._repo_path}/issues", params,
                                       "github issues")
            issues = parse_issues(response.data)
            items = [PageItem(i.number, i.updated_at) for i in issues]
        else:
            response = await self._get(ctx, f"{self._repo_path}/issues/comments", params,
                                       "github issue comments")
            comments = parse_comments(response.data)
            items = [PageItem(c.id, c.updated_at) for c in comments]
        cutoff = (response.server_time or ctx.now()) - timedelta(seconds=self.settings.settle)
        try:
            after, taken = advance(position, items, has_next=has_next_page(response.links),
                                   cutoff=cutoff)
        except ParseError as err:
            raise ParseError(f"{err} ({stream})") from None
        chosen = set(taken)
        common: dict[str, Any] = {"source": self.settings.name, "fresh": position.run,
                                  "people": self._people,
                                  "channel": self.settings.channel or CHANNEL}
        events: list[Event] = []
        if stream == "issues":
            for issue in issues:
                if issue.number in chosen:
                    events += issue_events(issue, priority_labels=self.settings.priority_labels,
                                           **common)
        else:
            for comment in comments:
                event = comment_event(comment, **common) if comment.id in chosen else None
                if event is not None:
                    events.append(event)
        new_state = state.moved(stream, after)
        round_done = stream == "comments" and after.at_top
        return Batch(tuple(events), new_state.dump(), new_state.watermark, more=not round_done)

    async def check(self, ctx: PollContext) -> str:
        """Read the repository: proves the token (if any) and that its issues are visible."""
        self._respect_budget(ctx)
        response = await self._get(ctx, self._repo_path, {}, "github repository")
        repo = parse_repository(response.data)
        who = "with the token" if self.settings.token is not None else "without a token"
        issues = "" if repo.has_issues else "; issues are disabled on this repository"
        left = response.headers.get("X-RateLimit-Remaining")
        budget = f" ({left} requests left this hour)" if left and left.isdigit() else ""
        return f"{repo.full_name} readable {who}{budget}{issues}"

    def _respect_budget(self, ctx: PollContext) -> None:
        self._budget.hold(f"github {self.settings.name}", ctx.now(), limit="hourly rate limit")

    async def _get(self, ctx: PollContext, path: str, params: Mapping[str, str],
                   what: str) -> JsonResponse:
        now = ctx.now()
        response = await get_json(
            ctx.session, self.settings.base_url + path, what=what, params=params,
            headers=self._headers, timeout=self.settings.timeout,
            wait_hint=partial(reset_wait, now=now),
            forbidden_wait=partial(limit_wait, now=now),
        )
        self._budget.note(header_count(response.headers, "X-RateLimit-Remaining"),
                          reset_wait(response.headers, now), now)
        return response

