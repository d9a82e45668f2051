"""Provides a faithful fake of GitHub's REST API for issues: a real aiohttp app over a world.

Served routes, in the shapes of the recorded payloads (octokit/fixtures, PyGithub
ReplayData; see tests/test_github.py):

- ``GET /repos/{owner}/{repo}`` (the repository, ``permissions`` when authenticated)
- ``GET /repos/{owner}/{repo}/issues``: ``state`` (open/closed/all, default open),
  ``sort`` (created/updated/comments, default created), ``direction`` (default desc),
  ``since`` (ISO 8601, inclusive, on ``updated_at``), ``per_page`` (default 30, max 100),
  ``page``. Pull requests are listed too, with a ``pull_request`` object.
- ``GET /repos/{owner}/{repo}/issues/comments``: ``sort`` (created/updated), ``direction``
  (ignored without ``sort``; ascending ids by default), ``since``, ``per_page``, ``page``.
- ``GET /repos/{owner}/{repo}/issues/{number}`` and ``…/issues/comments/{id}``.

Lists carry a ``Link`` header (next/last/first/prev) pointing at
``/repositories/{id}/…`` as GitHub's do; those paths are served too. Authentication is
``Authorization: Bearer`` (or ``token``); a wrong token is 401 ``Bad credentials``, no
token is anonymous. Each identity has an hourly primary limit (5000, anonymous 60)
reported in ``X-RateLimit-*`` (epoch reset) and enforced, like GitHub, with a 403
"API rate limit exceeded" with remaining 0. Every response has a ``Date`` from the
world's clock, and timestamps have second precision.

The world keeps GitHub's rules where they matter to replywatch: a comment updates its
issue's ``updated_at``, and so do closing, reopening, labelling, assigning and locking;
``author_association`` comes from the repository's owner, members and collaborators.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from yarl import URL

from connectors.fakes._base import (
    ContractCase,
    FakeControls,
    Handler,
    SteppedClock,
    fake_app,
    whole_seconds,
)
from monitor.events import parse_instant

RATE_LIMIT = 5000
ANONYMOUS_RATE_LIMIT = 60
RATE_WINDOW_SECONDS = 3600
DOCS = "https://docs.github.com/rest"
ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR",
                "FIRST_TIMER", "MANNEQUIN", "NONE")


def iso(at: datetime) -> str:
    """GitHub's timestamp format: UTC, whole seconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeUser:
    """An account: a person, or a bot (``type`` Bot, login ending ``[bot]``)."""

    id: int
    login: str
    association: str
    bot: bool = False


@dataclass
class FakeIssue:
    """An issue or pull request of the fake repository."""

    id: int
    number: int
    title: str
    body: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    locked: bool = False
    lock_reason: str | None = None
    pull_request: bool = False
    comments: int = 0


@dataclass
class FakeComment:
    """A comment on an issue or pull request."""

    id: int
    number: int
    user: str
    body: str
    created_at: datetime
    updated_at: datetime


class GitHubWorld:
    """The repository, its people, issues and comments, as the fake serves them."""

    def __init__(self, *, now: Callable[[], datetime], repo: str = "acme/widgets",
                 private: bool = False) -> None:
        self.now = now
        self.owner, _, self.name = repo.partition("/")
        self.repo_id = 1_296_269
        self.private = private
        self.users: dict[str, FakeUser] = {}
        self.issues: dict[int, FakeIssue] = {}
        self.comments: dict[int, FakeComment] = {}
        self._user_ids = itertools.count(583_231)
        self._issue_ids = itertools.count(1_000_001)
        self._comment_ids = itertools.count(2_000_000_001)
        self._numbers = itertools.count(1)
        self.add_user(self.owner, "OWNER")

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def add_user(self, login: str, association: str = "NONE", *, bot: bool = False) -> str:
        """Add an account and return its login; ``association`` is its tie to the repo."""
        if association not in ASSOCIATIONS:
            raise ValueError(f"association must be one of {ASSOCIATIONS}")
        if login in self.users:
            raise ValueError(f"user {login!r} exists")
        self.users[login] = FakeUser(next(self._user_ids), login, association,
                                     bot or login.endswith("[bot]"))
        return login

    def open_issue(self, author: str, title: str, body: str | None = None, *, at: datetime,
                   labels: Sequence[str] = (), pull_request: bool = False) -> int:
        """Open an issue (or a pull request) and return its number."""
        self._user(author)
        at = whole_seconds(at)
        number = next(self._numbers)
        self.issues[number] = FakeIssue(
            next(self._issue_ids), number, title, body, author, at, at,
            labels=list(dict.fromkeys(labels)), pull_request=pull_request)
        return number

    def comment(self, number: int, author: str, body: str, *, at: datetime) -> int:
        """Comment on an issue; return the comment's id."""
        issue = self._issue(number)
        self._user(author)
        at = whole_seconds(at)
        comment = FakeComment(next(self._comment_ids), number, author, body, at, at)
        self.comments[comment.id] = comment
        issue.comments += 1
        self._touch(issue, at)
        return comment.id

    def edit_comment(self, comment_id: int, body: str, *, at: datetime) -> None:
        """Edit a comment: its ``updated_at`` moves, its ``created_at`` stays."""
        comment = self.comments[comment_id]
        comment.body = body
        comment.updated_at = max(comment.updated_at, whole_seconds(at))

    def delete_comment(self, comment_id: int) -> None:
        """Delete a comment; like GitHub, it simply disappears from the lists."""
        comment = self.comments.pop(comment_id)
        self.issues[comment.number].comments -= 1

    def close(self, number: int, by: str, *, at: datetime, reason: str = "completed") -> None:
        """Close an issue as ``completed``, ``not_planned`` or ``duplicate``."""
        issue = self._issue(number)
        at = whole_seconds(at)
        issue.state, issue.state_reason = "closed", reason
        issue.closed_at, issue.closed_by = at, by
        self._touch(issue, at)

    def reopen(self, number: int, by: str, *, at: datetime) -> None:
        """Reopen a closed issue (GitHub clears ``closed_at``)."""
        issue = self._issue(number)
        at = whole_seconds(at)
        issue.state, issue.state_reason, issue.closed_at = "open", "reopened", None
        self._touch(issue, at)

    def set_labels(self, number: int, labels: Sequence[str], *, at: datetime) -> None:
        """Replace an issue's labels."""
        issue = self._issue(number)
        issue.labels = list(dict.fromkeys(labels))
        self._touch(issue, whole_seconds(at))

    def assign(self, number: int, login: str | None, *, at: datetime) -> None:
        """Assign an issue to ``login`` (None: unassign)."""
        issue = self._issue(number)
        issue.assignees = [] if login is None else [self._user(login).login]
        self._touch(issue, whole_seconds(at))

    def lock(self, number: int, *, at: datetime, reason: str | None = None) -> None:
        """Lock an issue (``reason`` off-topic, too heated, resolved or spam)."""
        issue = self._issue(number)
        issue.locked, issue.lock_reason = True, reason
        self._touch(issue, whole_seconds(at))

    def _touch(self, issue: FakeIssue, at: datetime) -> None:
        issue.updated_at = max(issue.updated_at, at)

    def _user(self, login: str) -> FakeUser:
        try:
            return self.users[login]
        except KeyError:
            raise KeyError(f"no user {login!r}") from None

    def _issue(self, number: int) -> FakeIssue:
        try:
            return self.issues[number]
        except KeyError:
            raise KeyError(f"no issue #{number}") from None

    # What the API serves --------------------------------------------------------------

    def api(self, origin: str) -> str:
        """The API root as the client reached it."""
        return f"{origin}/repos/{self.full_name}"

    def user_json(self, origin: str, login: str) -> dict[str, Any]:
        """A simple-user object."""
        user = self.users[login]
        return {
            "login": user.login, "id": user.id, "node_id": f"MDQ6VXNlcj{user.id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "", "url": f"{origin}/users/{user.login}",
            "html_url": f"https://github.com/{user.login}",
            "type": "Bot" if user.bot else "User", "user_view_type": "public",
            "site_admin": False,
        }

    def issue_json(self, origin: str, issue: FakeIssue) -> dict[str, Any]:
        """An issue object, as the issues list and the single-issue route give it."""
        api = self.api(origin)
        kind = "pull" if issue.pull_request else "issues"
        html = f"https://github.com/{self.full_name}/{kind}/{issue.number}"
        assignees = [self.user_json(origin, a) for a in issue.assignees]
        data: dict[str, Any] = {
            "url": f"{api}/issues/{issue.number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{issue.number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{issue.number}/comments",
            "events_url": f"{api}/issues/{issue.number}/events",
            "html_url": html,
            "id": issue.id,
            "node_id": f"MDU6SXNzdWU{issue.id}",
            "number": issue.number,
            "title": issue.title,
            "user": self.user_json(origin, issue.user),
            "labels": [{"id": 3_330_000 + i, "node_id": f"MDU6TGFiZWw{i}",
                        "url": f"{api}/labels/{name}", "name": name, "color": "e10c02",
                        "default": False, "description": None}
                       for i, name in enumerate(issue.labels)],
            "state": issue.state,
            "locked": issue.locked,
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "milestone": None,
            "comments": issue.comments,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": None if issue.closed_at is None else iso(issue.closed_at),
            "author_association": self.users[issue.user].association,
            "active_lock_reason": issue.lock_reason if issue.locked else None,
            "body": issue.body,
            "closed_by": (None if issue.closed_by is None
                          else self.user_json(origin, issue.closed_by)),
            "reactions": {"url": f"{api}/issues/{issue.number}/reactions", "total_count": 0,
                          "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0,
                          "heart": 0, "rocket": 0, "eyes": 0},
            "timeline_url": f"{api}/issues/{issue.number}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull_request:
            data["draft"] = False
            data["pull_request"] = {
                "url": f"{api}/pulls/{issue.number}", "html_url": html,
                "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "merged_at": None,
            }
        return data

    def comment_json(self, origin: str, comment: FakeComment) -> dict[str, Any]:
        """An issue comment object; a PR's comment links to ``/pull/``."""
        api = self.api(origin)
        issue = self.issues[comment.number]
        kind = "pull" if issue.pull_request else "issues"
        return {
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{self.full_name}/{kind}/{comment.number}"
                        f"#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{comment.number}",
            "id": comment.id,
            "node_id": f"MDEyOklzc3VlQ29tbWVudD{comment.id}",
            "user": self.user_json(origin, comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": self.users[comment.user].association,
            "body": comment.body,
            "reactions": {"url": f"{api}/issues/comments/{comment.id}/reactions",
                          "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                          "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
            "performed_via_github_app": None,
        }

    def repository_json(self, origin: str, authenticated: bool) -> dict[str, Any]:
        """The repository object (``permissions`` only for an authenticated caller)."""
        owner = self.users[self.owner]
        data: dict[str, Any] = {
            "id": self.repo_id, "node_id": f"MDEwOlJlcG9zaXRvcnk{self.repo_id}",
            "name": self.name, "full_name": self.full_name, "private": self.private,
            "owner": self.user_json(origin, owner.login),
            "html_url": f"https://github.com/{self.full_name}", "description": None,
            "fork": False, "url": self.api(origin), "has_issues": True,
            "open_issues_count": sum(1 for i in self.issues.values() if i.state == "open"),
            "default_branch": "main", "visibility": "private" if self.private else "public",
        }
        if authenticated:
            data["permissions"] = {"admin": False, "maintain": False, "push": False,
                                   "triage": True, "pull": True}
        return data


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), headers=headers,
                        content_type="application/json", charset="utf-8")


def _error(status: int, message: str) -> web.Response:
    return _json({"message": message, "documentation_url": DOCS, "status": str(status)}, status)


class _Invalid(Exception):
    """A query parameter GitHub would refuse with 422."""


def _since(request: web.Request) -> datetime | None:
    text = request.query.get("since")
    if text is None:
        return None
    try:
        return parse_instant(text, "since")
    except (ValueError, OverflowError):
        raise _Invalid("since") from None


def _paging(request: web.Request) -> tuple[int, int]:
    per_page_text = request.query.get("per_page", "30")
    page_text = request.query.get("page", "1")
    if not (per_page_text.isdigit() and page_text.isdigit()):
        raise _Invalid("per_page")
    return max(1, min(100, int(per_page_text))), max(1, int(page_text))


class GitHubFake:
    """The fake server: routes, token auth, the hourly limit and scripted faults."""

    def __init__(self, world: GitHubWorld, *, token: str = "fake-token",
                 rate_limit: int = RATE_LIMIT) -> None:
        self.world = world
        self.token = token
        self.rate_limit = rate_limit
        self.controls = FakeControls()
        self._windows: dict[str, tuple[datetime, int]] = {}

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = fake_app(self.controls, self.world.now, self._gate)
        for prefix in ("/repos/{owner}/{repo}", "/repositories/{repo_id}"):
            app.router.add_get(prefix, self._repository)
            app.router.add_get(prefix + "/issues", self._issues)
            app.router.add_get(prefix + "/issues/comments", self._comments)
            app.router.add_get(prefix + "/issues/comments/{id}", self._comment)
            app.router.add_get(prefix + "/issues/{number}", self._issue)
        return app

    def _identity(self, request: web.Request) -> str | None:
        """``"token"`` or ``"anonymous"``; None for a token that is not ours."""
        header = request.headers.get("Authorization")
        if header is None:
            return "anonymous"
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip() == self.token:
            return "token"
        return None

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = self._identity(request)
        if identity is None:
            return _error(401, "Bad credentials")
        limit = self.rate_limit if identity == "token" else ANONYMOUS_RATE_LIMIT
        now = self.world.now().astimezone(UTC).replace(microsecond=0)
        start, used = self._windows.get(identity, (now, 0))
        if now >= start + timedelta(seconds=RATE_WINDOW_SECONDS):
            start, used = now, 0
        used += 1
        self._windows[identity] = (start, used)
        reset = start + timedelta(seconds=RATE_WINDOW_SECONDS)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(int(reset.timestamp())),
            "X-RateLimit-Used": str(min(used, limit)),
            "X-RateLimit-Resource": "core",
        }
        response: web.StreamResponse
        if used > limit:
            who = "user ID 1" if identity == "token" else "127.0.0.1"
            response = _error(403, f"API rate limit exceeded for {who}.")
        elif not self._visible(request, identity):
            response = _error(404, "Not Found")
        else:
            try:
                response = await handler(request)
            except _Invalid as err:
                response = _error(422, f"Validation Failed: {err}")
            except web.HTTPNotFound:
                response = _error(404, "Not Found")
        response.headers.update(headers)
        return response

    def _visible(self, request: web.Request, identity: str) -> bool:
        match = request.match_info
        if "repo_id" in match:
            known = match["repo_id"] == str(self.world.repo_id)
        else:
            known = f"{match.get('owner')}/{match.get('repo')}".lower() \
                == self.world.full_name.lower()
        return known and (identity == "token" or not self.world.private)

    @staticmethod
    def _origin(request: web.Request) -> str:
        return str(request.url.origin())

    async def _repository(self, request: web.Request) -> web.Response:
        authenticated = "Authorization" in request.headers
        return _json(self.world.repository_json(self._origin(request), authenticated))

    def _listed(self, request: web.Request, items: list[Any], path: str,
                render: Callable[[Any], dict[str, Any]]) -> web.Response:
        per_page, page = _paging(request)
        chosen = items[(page - 1) * per_page: page * per_page]
        last = max(1, -(-len(items) // per_page))
        base = URL(f"{self._origin(request)}/repositories/{self.world.repo_id}{path}")
        kept = [(k, v) for k, v in request.query.items() if k != "page"]

        def link(number: int, rel: str) -> str:
            return f'<{base.with_query([*kept, ("page", str(number))])}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        headers = {"Link": ", ".join(links)} if links else None
        return _json([render(item) for item in chosen], headers=headers)

    async def _issues(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "open")
        sort = request.query.get("sort", "created")
        direction = request.query.get("direction", "desc")
        if state not in ("open", "closed", "all") or sort not in ("created", "updated",
                                                                  "comments") \
                or direction not in ("asc", "desc"):
            raise _Invalid("state, sort or direction")
        since = _since(request)
        chosen = [i for i in self.world.issues.values()
                  if (state == "all" or i.state == state)
                  and (since is None or i.updated_at >= since)]
        keys: dict[str, Callable[[FakeIssue], Any]] = {
            "created": lambda i: (i.created_at, i.id),
            "updated": lambda i: (i.updated_at, i.id),
            "comments": lambda i: (i.comments, i.id),
        }
        chosen.sort(key=keys[sort], reverse=direction == "desc")
        origin = self._origin(request)
        return self._listed(request, chosen, "/issues",
                            lambda i: self.world.issue_json(origin, i))

    async def _comments(self, request: web.Request) -> web.Response:
        sort = request.query.get("sort")
        direction = request.query.get("direction", "desc")
        if sort not in (None, "created", "updated") or direction not in ("asc", "desc"):
            raise _Invalid("sort or direction")
        since = _since(request)
        chosen = [c for c in self.world.comments.values()
                  if since is None or c.updated_at >= since]
        if sort is None:  # ascending ids, direction ignored
            chosen.sort(key=lambda c: c.id)
        else:
            attribute = "created_at" if sort == "created" else "updated_at"
            chosen.sort(key=lambda c: (getattr(c, attribute), c.id),
                        reverse=direction == "desc")
        origin = self._origin(request)
        return self._listed(request, chosen, "/issues/comments",
                            lambda c: self.world.comment_json(origin, c))

    async def _issue(self, request: web.Request) -> web.Response:
        number = request.match_info["number"]
        issue = self.world.issues.get(int(number)) if number.isdigit() else None
        if issue is None:
            return _error(404, "Not Found")
        return _json(self.world.issue_json(self._origin(request), issue))

    async def _comment(self, request: web.Request) -> web.Response:
        comment_id = request.match_info["id"]
        comment = self.world.comments.get(int(comment_id)) if comment_id.isdigit() else None
        if comment is None:
            return _error(404, "Not Found")
        return _json(self.world.comment_json(self._origin(request), comment))


def contract_case() -> ContractCase:
    """The GitHub fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = GitHubWorld(now=clock)
    fake = GitHubFake(world)
    casey = world.add_user("casey")
    kim = world.add_user("kim", "MEMBER")
    issues: list[int] = []

    def seed() -> None:
        number = world.open_issue(casey, "Crash on start", "It crashes when I start it",
                                  at=clock() - timedelta(minutes=30), labels=["bug"])
        world.comment(number, kim, "Thanks! Which version?", at=clock() - timedelta(minutes=20))
        issues.append(number)

    def add_activity() -> None:
        world.comment(issues[-1], casey, "Version 2.1, still crashing", at=clock())

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="github",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-github", "kind": "github",
                                   "repo": world.full_name, "token": "fake-token",
                                   "base_url": base_url},
        bad_settings={"name": "acme-github", "kind": "github", "repo": "not a repo",
                      "token": "t"},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )


__all__ = [
    "FakeComment",
    "FakeIssue",
    "FakeUser",
    "GitHubFake",
    "GitHubWorld",
    "contract_case",
    "iso",
]
