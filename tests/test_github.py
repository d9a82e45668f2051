"""Tests of the GitHub Issues connector: recorded payloads, and the fake served for real."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from conftest import fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from pydantic import ValidationError

from connectors import registry
from connectors._text import TEXT_LIMIT
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.github import GitHubFake, GitHubWorld
from connectors.github import (
    Fresh,
    GitHubConnector,
    GitHubSettings,
    GitHubUser,
    PageItem,
    People,
    StreamPosition,
    advance,
    comment_event,
    has_next_page,
    issue_events,
    limit_wait,
    parse_comment,
    parse_comments,
    parse_issue,
    parse_issues,
    parse_repository,
    reset_wait,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, FatalError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind, Priority, Status

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-github"
TOKEN = "ghp_fake_5f3c9a1e_very_secret"
LONG_AGO = Fresh(datetime(2000, 1, 1, tzinfo=UTC))
ISSUES_PATH = "/repos/acme/widgets/issues"
COMMENTS_PATH = "/repos/acme/widgets/issues/comments"


def load(name: str) -> Any:
    """A recorded payload."""
    return json.loads(fixture_path("github", name).read_text())


def meta_headers(name: str) -> CIMultiDict[str]:
    """The recorded response headers of a payload, case-insensitive as on the wire."""
    meta = json.loads(fixture_path("github", name.replace(".json", ".meta.json")).read_text())
    return CIMultiDict(meta["response"]["headers"])


def link_rels(header: str) -> dict[str, str]:
    """A ``Link`` header as ``{rel: url}``."""
    return {rel: url for url, rel in re.findall(r'<([^>]+)>;\s*rel="(\w+)"', header)}


def at(text: str) -> datetime:
    """An aware UTC instant from ``2012-05-19T10:38:23``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


def epoch(value: datetime) -> int:
    """Whole epoch seconds."""
    return int(value.timestamp())


# --- recorded payloads ---------------------------------------------------------------------

PAGES = [f"GET_repos_issues_paginate_page{n}.json" for n in range(1, 6)]


def test_recorded_pages_hold_thirteen_issues_and_announce_next_until_the_last() -> None:
    """The five recorded pages parse into issues 13..1; the Link header says next on 1-4."""
    numbers = [issue.number for page in PAGES for issue in parse_issues(load(page))]
    assert numbers == list(range(13, 0, -1))
    nexts = [has_next_page(link_rels(meta_headers(page)["link"])) for page in PAGES]
    assert nexts == [True, True, True, True, False]


def test_recorded_member_issue_is_an_outbound_agent_message() -> None:
    """An issue opened by a MEMBER with no body opens the conversation as agent, with its title."""
    [first, *_] = parse_issues(load(PAGES[0]))
    events = issue_events(first, source=SOURCE, fresh=LONG_AGO)
    url = "https://github.com/octokit-fixture-org/paginate-issues/issues/13"
    assert events == (
        Event(source=SOURCE, conversation="13", id="issue-13", at=at("2017-10-10T16:00:00"),
              kind=EventKind.MESSAGE, actor=Actor.AGENT, public=True, channel="github",
              url=url, author="octokit-fixture-user-a", text="Test issue 13"),
        Event(source=SOURCE, conversation="13", id=f"issue-13@{epoch(at('2017-10-10T16:00:00'))}",
              at=at("2017-10-10T16:00:00"), kind=EventKind.UPDATE, channel="github", url=url,
              fields={"subject": "Test issue 13", "assignee": None, "tags": []}),
    )


def test_recorded_closed_issue_gives_opening_version_and_close() -> None:
    """Issue #28: the opening post, its labelled and assigned version, solved at closed_at."""
    issue = parse_issue(load("GET_repos_PyGithub_PyGithub_issues_28.json"))
    assert (issue.state_reason, issue.labels, issue.assignee) == (
        "completed", ("bug", "question"), "jacquev6")
    events = issue_events(issue, source=SOURCE, fresh=LONG_AGO)
    url = "https://github.com/PyGithub/PyGithub/issues/28"
    common: dict[str, Any] = {"source": SOURCE, "conversation": "28", "channel": "github",
                              "url": url}
    assert events == (
        Event(id="issue-28", at=at("2012-05-19T10:38:23"), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, public=True, author="jacquev6",
              text="Body edited by PyGithub\n", **common),
        Event(id=f"issue-28@{epoch(at('2019-05-03T09:44:22'))}", at=at("2019-05-03T09:44:22"),
              kind=EventKind.UPDATE, fields={"subject": "Issue created by PyGithub",
                                             "assignee": "jacquev6", "tags": ["bug", "question"]},
              **common),
        Event(id=f"issue-28:closed@{epoch(at('2012-05-26T14:59:33'))}",
              at=at("2012-05-26T14:59:33"), kind=EventKind.STATUS, status=Status.SOLVED,
              **common),
    )


def test_later_run_of_a_recorded_issue_gives_only_its_version() -> None:
    """Read in a run that started after it opened and closed, #28 repeats neither event."""
    issue = parse_issue(load("GET_repos_PyGithub_PyGithub_issues_28.json"))
    events = issue_events(issue, source=SOURCE, fresh=Fresh(at("2019-01-01T00:00:00")))
    assert [e.kind for e in events] == [EventKind.UPDATE]


@pytest.mark.parametrize("reason", ["completed", "not_planned", "duplicate"])
def test_every_close_reason_solves(reason: str) -> None:
    """Closed as completed, not planned or duplicate: the conversation is solved."""
    data = load("GET_repos_PyGithub_PyGithub_issues_28.json") | {"state_reason": reason}
    statuses = [e.status for e in issue_events(parse_issue(data), source=SOURCE, fresh=LONG_AGO)
                if e.kind is EventKind.STATUS]
    assert statuses == [Status.SOLVED]


def test_reopened_issue_says_open_at_its_version() -> None:
    """An open issue changed since it opened gives status open at updated_at (a reopen)."""
    data = load("GET_repos_PyGithub_PyGithub_issues_28.json") | {
        "state": "open", "state_reason": "reopened", "closed_at": None}
    [status] = [e for e in issue_events(parse_issue(data), source=SOURCE, fresh=LONG_AGO)
                if e.kind is EventKind.STATUS]
    assert (status.status, status.at, status.id) == (
        Status.OPEN, at("2019-05-03T09:44:22"), f"issue-28:open@{epoch(at('2019-05-03T09:44:22'))}")


def test_issue_locked_as_spam_is_dismissed() -> None:
    """A lock with reason spam dismisses the conversation."""
    data = load("GET_repos_PyGithub_PyGithub_issues_28.json") | {
        "locked": True, "active_lock_reason": "spam"}
    kinds = [e.kind for e in issue_events(parse_issue(data), source=SOURCE, fresh=LONG_AGO)]
    assert EventKind.DISMISSED in kinds


@pytest.mark.parametrize(
    ("labels", "expected"),
    [(["bug", "P0"], "urgent"), (["Needs-Triage"], "low"), (["bug"], None)],
    ids=["first-known-label", "case-insensitive", "no-priority-label"],
)
def test_priority_comes_from_configured_labels(labels: list[str], expected: str | None) -> None:
    """With priority_labels, the first matching label sets the priority; none gives None."""
    data = load("GET_repos_PyGithub_PyGithub_issues_28.json") | {
        "labels": [{"name": name} for name in labels]}
    [update] = [e for e in issue_events(
        parse_issue(data), source=SOURCE, fresh=Fresh(at("2020-01-01T00:00:00")),
        priority_labels={"p0": Priority.URGENT, "needs-triage": Priority.LOW})]
    assert update.fields["priority"] == expected


def test_recorded_comment_is_a_customer_message() -> None:
    """A CONTRIBUTOR's comment is a public customer message in the issue's conversation."""
    comment = parse_comment(load("GET_repos_PyGithub_PyGithub_issues_comments_20227753.json"))
    assert comment_event(comment, source=SOURCE, fresh=LONG_AGO) == Event(
        source=SOURCE, conversation="28", id="comment-20227753", at=at("2013-06-29T10:31:38"),
        kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, public=True, channel="github",
        url="https://github.com/PyGithub/PyGithub/issues/28#issuecomment-20227753",
        author="stuglaser", text="Comment created by PyGithub\n",
    )


def test_comment_on_a_pull_request_or_from_an_earlier_run_is_no_event() -> None:
    """A comment whose html_url is a PR's, or older than the run, gives nothing."""
    data = load("GET_repos_PyGithub_PyGithub_issues_comments_20227753.json")
    on_pr = data | {"html_url": "https://github.com/PyGithub/PyGithub/pull/28#issuecomment-1"}
    assert comment_event(parse_comment(on_pr), source=SOURCE, fresh=LONG_AGO) is None
    late = Fresh(at("2014-01-01T00:00:00"))
    assert comment_event(parse_comment(data), source=SOURCE, fresh=late) is None


@pytest.mark.parametrize(
    ("login", "kind", "association", "agents", "bots", "actor"),
    [
        ("pat", "User", "NONE", (), (), Actor.CUSTOMER),
        ("pat", "User", "CONTRIBUTOR", (), (), Actor.CUSTOMER),
        ("pat", "User", "FIRST_TIME_CONTRIBUTOR", (), (), Actor.CUSTOMER),
        ("kim", "User", "OWNER", (), (), Actor.AGENT),
        ("kim", "User", "MEMBER", (), (), Actor.AGENT),
        ("kim", "User", "COLLABORATOR", (), (), Actor.AGENT),
        ("kim", "User", "CONTRIBUTOR", ("kim",), (), Actor.AGENT),
        ("github-actions[bot]", "Bot", "NONE", (), (), Actor.BOT),
        ("renovate[bot]", "User", "MEMBER", (), (), Actor.BOT),
        ("stale-helper", "User", "COLLABORATOR", (), ("stale-helper",), Actor.BOT),
    ],
    ids=["none", "contributor", "first-timer", "owner", "member", "collaborator",
         "listed-agent", "app-bot", "bot-login-wins", "listed-bot"],
)
def test_actor_follows_association_and_account_type(
    login: str, kind: str, association: str, agents: tuple[str, ...], bots: tuple[str, ...],
    actor: Actor,
) -> None:
    """Maintainers answer, bots are bots whatever their association, everyone else asks."""
    people = People(frozenset(agents), frozenset(bots))
    bot = kind == "Bot" or login.endswith("[bot]")
    assert people.actor(GitHubUser(login, bot), association) is actor


def test_hostile_text_is_kept_as_clipped_inert_data() -> None:
    """Markup, escapes and a javascript: link survive as data; the body is clipped."""
    hostile = "[bold red]x[/] \x1b[2J <script>alert(1)</script>" + "y" * 10_000
    data = load("GET_repos_PyGithub_PyGithub_issues_28.json") | {
        "body": hostile, "title": "\u202eevil", "html_url": "javascript:alert(1)"}
    message, update, _ = issue_events(parse_issue(data), source=SOURCE, fresh=LONG_AGO)
    assert message.text is not None
    assert len(message.text) == TEXT_LIMIT
    assert message.text.startswith("[bold red]x[/] \x1b[2J <script>")
    assert message.url is None
    assert update.fields["subject"] == "\u202eevil"


def _issue(**changes: Any) -> dict[str, Any]:
    issue: dict[str, Any] = load("GET_repos_PyGithub_PyGithub_issues_28.json")
    return issue | changes


@pytest.mark.parametrize(
    "page",
    [
        pytest.param({"message": "Not Found"}, id="object-not-list"),
        pytest.param(["issue"], id="item-not-object"),
        pytest.param([_issue(number="28")], id="number-as-text"),
        pytest.param([_issue(number=True)], id="number-as-bool"),
        pytest.param([_issue(state="merged")], id="unknown-state"),
        pytest.param([_issue(updated_at="yesterday")], id="bad-time"),
        pytest.param([_issue(updated_at="2019-05-03T09:44:22")], id="naive-time"),
        pytest.param([_issue(created_at="9999-12-31T23:59:59-23:00")], id="overflowing-time"),
        pytest.param([_issue(user={"id": 1})], id="user-without-login"),
        pytest.param([_issue(labels="bug")], id="labels-not-list"),
        pytest.param([_issue(labels=[{"id": 1}])], id="label-without-name"),
        pytest.param([_issue(title=None)], id="no-title"),
        pytest.param([_issue(locked="yes")], id="locked-as-text"),
    ],
)
def test_malformed_issue_pages_are_parse_errors(page: Any) -> None:
    """Whatever is wrong with an issues page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError, match="github"):
        parse_issues(page)


def _comment(**changes: Any) -> dict[str, Any]:
    comment: dict[str, Any] = load("GET_repos_PyGithub_PyGithub_issues_comments_20227753.json")
    return comment | changes


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("<html>", id="string"),
        pytest.param([_comment(issue_url=None)], id="no-issue-url"),
        pytest.param([_comment(issue_url="https://api.github.com/repos/a/b/pulls/x")],
                     id="issue-url-not-an-issue"),
        pytest.param([_comment(id=-5)], id="negative-id"),
        pytest.param([_comment(body=["x"])], id="body-not-text"),
        pytest.param([_comment(author_association=7)], id="association-not-text"),
    ],
)
def test_malformed_comment_pages_are_parse_errors(page: Any) -> None:
    """Whatever is wrong with a comments page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError, match="github"):
        parse_comments(page)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-5, max_value=10**12)
    | st.text(max_size=20)
    | st.sampled_from(["9999-12-31T23:59:59-23:00", "2019-05-03T09:44:22Z", "closed",
                       "https://github.com/a/b/pull/1", "https://api.github.com/repos/a/b/issues/1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_corruption_of_a_recorded_payload_is_parsed_or_a_parse_error(
    data: st.DataObject,
) -> None:
    """Replace any part of a recorded issue or comment with any JSON: only ParseError fails."""
    page = [load("GET_repos_PyGithub_PyGithub_issues_28.json"),
            load("GET_repos_PyGithub_PyGithub_issues_comments_20227753.json")]
    path = data.draw(st.sampled_from(_paths(page)[1:]))
    target: Any = page
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    for parse in (parse_issues, parse_comments):
        with contextlib.suppress(ParseError):
            for item in page:
                parse([item])


@pytest.mark.parametrize(
    ("name", "wait"),
    [("GET_repos_PyGithub_PyGithub.json", 3556.0), (PAGES[0], 0.0)],
    ids=["seconds-against-date", "octokit-milliseconds"],
)
def test_reset_wait_reads_recorded_headers(name: str, wait: float) -> None:
    """The wait until X-RateLimit-Reset is measured against the response's Date."""
    assert reset_wait(meta_headers(name), T0) == wait


@pytest.mark.parametrize(
    ("headers", "body", "wait"),
    [
        ({"Retry-After": "30"}, b"{}", 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(epoch(T0) + 120)},
         b'{"message": "API rate limit exceeded for user ID 1."}', 120.0),
        ({"X-RateLimit-Remaining": "12"},
         b'{"message": "You have exceeded a secondary rate limit."}', 60.0),
        ({"X-RateLimit-Remaining": "4999"},
         b'{"message": "Resource not accessible by personal access token"}', None),
    ],
    ids=["retry-after", "primary-exhausted", "secondary-message-only", "real-refusal"],
)
def test_limit_wait_tells_rate_limits_from_refusals(
    headers: dict[str, str], body: bytes, wait: float | None
) -> None:
    """A 403 is a rate limit by Retry-After, remaining 0 or its message; else a refusal."""
    assert limit_wait(CIMultiDict(headers), body, T0) == wait


def test_advance_drops_the_repeated_boundary_and_leaves_what_is_too_new() -> None:
    """Items already returned at ``since`` are dropped; items past the cutoff wait."""
    since = minutes(-10)
    position = StreamPosition(since=since, seen=(1,))
    items = [PageItem(1, since), PageItem(2, since), PageItem(3, minutes(-5)),
             PageItem(4, minutes(-1))]
    after, taken = advance(position, items, has_next=True, cutoff=minutes(-2))
    assert taken == (2, 3)
    assert (after.since, after.seen, after.at_top, after.top) == (
        minutes(-5), (3,), True, minutes(-2))


def test_advance_pages_within_a_crowded_second_and_refuses_a_stuck_page() -> None:
    """A whole page at ``since`` moves to the next page; a page that cannot advance is refused."""
    since = minutes(-10)
    crowded = [PageItem(n, since) for n in (1, 2)]
    after, taken = advance(StreamPosition(since=since), crowded, has_next=True, cutoff=T0)
    assert (taken, after.page, after.seen) == ((1, 2), 2, (1, 2))
    with pytest.raises(ParseError, match="did not move"):
        advance(StreamPosition(since=since), [PageItem(9, minutes(-20))], has_next=True,
                cutoff=T0)


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        ({}, True),
        ({"repo": "acme"}, False),
        ({"repo": "acme/widgets/extra"}, False),
        ({"base_url": "http://api.github.example"}, False),
        ({"base_url": "https://ghe.example/api/v3"}, True),
        ({"base_url": "https://user:pw@api.github.com"}, False),
        ({"per_page": 101}, False),
        ({"agents": ["not a login"]}, False),
        ({"priority_labels": {"P0": "critical"}}, False),
        ({"token": None}, True),
        ({"settle": "0s"}, False),
    ],
    ids=["defaults", "no-name", "too-many-parts", "plain-http", "enterprise", "credentials",
         "per-page", "bad-agent", "unknown-priority", "no-token", "zero-settle"],
)
def test_settings_validation(changes: dict[str, Any], accepted: bool) -> None:
    """Settings name the repository and refuse what would leak a token or break paging."""
    values = {"name": SOURCE, "repo": "acme/widgets", "token": TOKEN} | changes
    if accepted:
        GitHubSettings.model_validate(values)
    else:
        with pytest.raises(ValidationError):
            GitHubSettings.model_validate(values)


def test_registered_and_keeps_its_token_secret() -> None:
    """The registry maps "github" to this connector; settings never print the token."""
    assert registry()["github"] is GitHubConnector
    settings_ = GitHubSettings(name=SOURCE, repo="acme/widgets", token=TOKEN)
    assert isinstance(GitHubConnector(settings_), Connector)
    assert TOKEN not in repr(settings_)


def test_repository_payload_is_read_for_check() -> None:
    """The recorded repository object gives its full name and visibility."""
    repo = parse_repository(load("GET_repos_PyGithub_PyGithub.json"))
    assert (repo.full_name, repo.private, repo.has_issues) == ("PyGithub/PyGithub", False, True)


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Repo:
    """A served fake, a client session, and helpers to poll it."""

    fake: GitHubFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    @property
    def world(self) -> GitHubWorld:
        """The fake's world."""
        return self.fake.world

    def connector(self, **overrides: Any) -> GitHubConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {"name": SOURCE, "repo": "acme/widgets", "token": TOKEN,
                                  "base_url": self.base_url} | overrides
        return GitHubConnector(GitHubSettings.model_validate(values))

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def list_requests(self) -> list[tuple[str, dict[str, str]]]:
        """The list requests the fake received, in order."""
        return [(r.path, r.query) for r in self.fake.controls.requests
                if r.path in (ISSUES_PATH, COMMENTS_PATH)]

    async def drain(self, connector: GitHubConnector, cursor: Cursor | None, *,
                    limit: int = 60) -> tuple[list[Event], Cursor, list[Batch]]:
        """Poll until ``more`` is False, as the runner does."""
        events: list[Event] = []
        batches: list[Batch] = []
        for _ in range(limit):
            batch = await connector.poll(cursor, self.ctx())
            batches.append(batch)
            events += batch.events
            cursor = batch.cursor
            if not batch.more:
                return events, cursor, batches
        raise AssertionError("the connector never finished its round")


@contextlib.asynccontextmanager
async def open_repo(world: GitHubWorld, clock: SteppedClock,
                    **options: Any) -> AsyncIterator[Repo]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = GitHubFake(world, token=TOKEN, **options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Repo(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """Pat asks in issue #1, Kim (a member) answers, Pat follows up."""

    world: GitHubWorld
    pat: str
    kim: str
    issue: int


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """One worked issue."""
    world = GitHubWorld(now=clock)
    pat = world.add_user("pat")
    kim = world.add_user("kim", "MEMBER")
    issue = world.open_issue(pat, "App crashes", "It crashes on start", at=minutes(-30),
                             labels=["bug"])
    world.comment(issue, kim, "Which version?", at=minutes(-20))
    world.comment(issue, pat, "2.1", at=minutes(-10))
    return Scene(world, pat, kim, issue)


def summary(event: Event) -> tuple[Any, ...]:
    """An event as (kind, minutes from T0, what it says)."""
    offset = (event.at - T0).total_seconds() / 60
    if event.kind is EventKind.STATUS:
        return ("status", offset, event.status)
    if event.kind is EventKind.MESSAGE:
        return ("message", offset, event.actor, event.text)
    if event.kind is EventKind.UPDATE:
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in event.fields.items()}
        return ("update", offset, fields)
    return (str(event.kind), offset)


async def test_first_round_reads_issues_then_comments(scene: Scene, clock: SteppedClock) -> None:
    """Without a cursor: issues then comments since ctx.since, exact events, then the mark."""
    async with open_repo(scene.world, clock) as repo:
        events, _, batches = await repo.drain(repo.connector(), None)
    since = (T0 - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"sort": "updated", "direction": "asc", "since": since, "per_page": "100"}
    assert repo.list_requests() == [(ISSUES_PATH, common | {"state": "all"}),
                                    (COMMENTS_PATH, common)]
    assert [b.more for b in batches] == [True, False]
    assert [b.watermark for b in batches] == [None, T0 - timedelta(seconds=10)]
    assert [summary(e) for e in batches[0].events] == [
        ("message", -30, Actor.CUSTOMER, "It crashes on start"),
        ("update", -10, {"subject": "App crashes", "assignee": None, "tags": ["bug"],
                         "customer": "pat"}),
        ("status", -10, Status.OPEN),
    ]
    assert [summary(e) for e in batches[1].events] == [
        ("message", -20, Actor.AGENT, "Which version?"),
        ("message", -10, Actor.CUSTOMER, "2.1"),
    ]
    assert {e.conversation for e in events} == {str(scene.issue)}
    assert all(e.source == SOURCE and e.channel == "github" for e in events)


async def test_pages_forward_with_since_without_duplicates(clock: SteppedClock) -> None:
    """Small pages move ``since`` to the last item read; each issue opens exactly once."""
    world = GitHubWorld(now=clock)
    pat = world.add_user("pat")
    numbers = [world.open_issue(pat, f"#{n}", f"help {n}", at=minutes(-50 + 10 * n))
               for n in range(5)]
    async with open_repo(world, clock) as repo:
        events, _, _ = await repo.drain(repo.connector(per_page=2), None)
    openings = [e.conversation for e in events if e.kind is EventKind.MESSAGE]
    assert openings == [str(n) for n in numbers]
    assert len({e.id for e in events}) == len(events)
    sinces = [q["since"] for path, q in repo.list_requests() if path == ISSUES_PATH]
    assert sinces[1:] == [minutes(m).strftime("%Y-%m-%dT%H:%M:%SZ") for m in (-40, -30, -20)]


async def test_crowded_second_is_read_with_numbered_pages(clock: SteppedClock) -> None:
    """More issues in one second than fit a page are read with page=2, 3, once each."""
    world = GitHubWorld(now=clock)
    pat = world.add_user("pat")
    for n in range(5):
        world.open_issue(pat, f"#{n}", "same second", at=minutes(-5))
    async with open_repo(world, clock) as repo:
        events, _, _ = await repo.drain(repo.connector(per_page=2), None)
    pages = [q.get("page") for path, q in repo.list_requests() if path == ISSUES_PATH]
    assert pages == [None, None, "2", "3"]
    assert sorted(int(e.conversation) for e in events if e.kind is EventKind.MESSAGE) == [
        1, 2, 3, 4, 5]
    assert len({e.id for e in events}) == len(events)


async def test_repoll_of_an_unchanged_repo_returns_nothing(
    scene: Scene, clock: SteppedClock
) -> None:
    """The boundary items the inclusive ``since`` repeats are dropped."""
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        first, cursor, _ = await repo.drain(connector, None)
        clock.advance(60)
        again, _, batches = await repo.drain(connector, cursor)
    assert first
    assert again == []
    assert batches[-1].watermark == T0 + timedelta(seconds=50)


async def test_activity_on_an_old_issue_repeats_no_one_time_event(
    scene: Scene, clock: SteppedClock
) -> None:
    """A later comment gives the new comment and a new version, not the opening again."""
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        first, cursor, _ = await repo.drain(connector, None)
        scene.world.comment(scene.issue, scene.kim, "Fixed in 2.2", at=T0)
        scene.world.edit_comment(min(scene.world.comments), "Which version are you on?", at=T0)
        clock.advance(60)
        later, _, _ = await repo.drain(connector, cursor)
    assert {e.id for e in later}.isdisjoint({e.id for e in first})
    assert [summary(e) for e in later] == [
        ("update", 0, {"subject": "App crashes", "assignee": None, "tags": ["bug"],
                       "customer": "pat"}),
        ("status", 0, Status.OPEN),
        ("message", 0, Actor.AGENT, "Fixed in 2.2"),
    ]


async def test_cursor_survives_a_restart(scene: Scene, clock: SteppedClock) -> None:
    """A new connector resumes from the stored JSON cursor and sees only what is new."""
    async with open_repo(scene.world, clock) as repo:
        first, cursor, _ = await repo.drain(repo.connector(), None)
        scene.world.comment(scene.issue, scene.pat, "Still crashing", at=T0)
        clock.advance(60)
        later, _, _ = await repo.drain(repo.connector(), json.loads(json.dumps(cursor)))
    messages = [summary(e) for e in later if e.kind is EventKind.MESSAGE]
    assert messages == [("message", 0, Actor.CUSTOMER, "Still crashing")]
    assert {e.id for e in later}.isdisjoint({e.id for e in first})


async def test_unreadable_cursor_starts_again_from_since(
    scene: Scene, clock: SteppedClock
) -> None:
    """A cursor this version cannot read is no cursor: the same stable ids come back."""
    async with open_repo(scene.world, clock) as repo:
        first, _, _ = await repo.drain(repo.connector(), None)
        again, _, _ = await repo.drain(repo.connector(), {"next": "issues", "issues": 7})
    assert [e.id for e in again] == [e.id for e in first]


@pytest.mark.parametrize("reason", ["completed", "not_planned"])
async def test_close_then_reopen(scene: Scene, clock: SteppedClock, reason: str) -> None:
    """A close is solved at closed_at (whatever the reason); a reopen is open at its time."""
    scene.world.close(scene.issue, scene.kim, at=minutes(-5), reason=reason)
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        first, cursor, _ = await repo.drain(connector, None)
        scene.world.reopen(scene.issue, scene.pat, at=T0)
        clock.advance(60)
        later, _, _ = await repo.drain(connector, cursor)
    assert [summary(e) for e in first if e.kind is EventKind.STATUS] == [
        ("status", -5, Status.SOLVED)]
    assert [summary(e) for e in later if e.kind is EventKind.STATUS] == [
        ("status", 0, Status.OPEN)]


async def test_pull_requests_are_left_out(scene: Scene, clock: SteppedClock) -> None:
    """A PR and a comment on it give no event, yet paging moves past them."""
    pr = scene.world.open_issue(scene.pat, "Fix crash", "Patch", at=minutes(-3),
                                pull_request=True)
    scene.world.comment(pr, scene.kim, "LGTM", at=minutes(-2))
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        events, cursor, _ = await repo.drain(connector, None)
    assert str(pr) not in {e.conversation for e in events}
    assert "LGTM" not in {e.text for e in events}
    assert cursor["issues"]["since"] == minutes(-2).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_changes_younger_than_settle_wait_for_the_next_poll(
    scene: Scene, clock: SteppedClock
) -> None:
    """A comment 5 s old is left out and the mark stays 10 s behind; later it comes."""
    scene.world.comment(scene.issue, scene.pat, "hello?", at=T0 - timedelta(seconds=5))
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        early, cursor, batches = await repo.drain(connector, None)
        assert "hello?" not in {e.text for e in early}
        assert batches[-1].watermark == T0 - timedelta(seconds=10)
        clock.advance(10)
        late, _, batches = await repo.drain(connector, cursor)
    assert "hello?" in {e.text for e in late}
    assert batches[-1].watermark == T0


async def test_watermark_stays_behind_server_time_and_never_moves_back(
    scene: Scene, clock: SteppedClock
) -> None:
    """Every watermark is at most server time - settle, and they never decrease."""
    marks: list[datetime] = []
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector(per_page=1)
        cursor: Cursor | None = None
        for step in range(8):
            scene.world.comment(scene.issue, scene.pat, f"ping {step}", at=clock())
            for _ in range(3):
                batch = await connector.poll(cursor, repo.ctx())
                cursor = batch.cursor
                if batch.watermark is not None:
                    assert batch.watermark <= clock() - timedelta(seconds=10)
                    marks.append(batch.watermark)
            clock.advance(7)
    assert marks == sorted(marks)
    assert len(set(marks)) > 3


async def test_spent_hourly_limit_is_waited_out_before_requesting(
    scene: Scene, clock: SteppedClock
) -> None:
    """Remaining 0 makes the next poll wait for the reset without a request; GitHub's 403 too."""
    async with open_repo(scene.world, clock, rate_limit=2) as repo:
        connector = repo.connector()
        first = await connector.poll(None, repo.ctx())
        second = await connector.poll(first.cursor, repo.ctx())
        clock.advance(100)
        with pytest.raises(RateLimited) as waited:
            await connector.poll(second.cursor, repo.ctx())
        assert waited.value.retry_after == 3500
        assert len(repo.fake.controls.requests) == 2
        with pytest.raises(RateLimited) as refused:
            await repo.connector().poll(second.cursor, repo.ctx())
        assert refused.value.retry_after == 3500
        assert "403" in str(refused.value)


async def test_scripted_429_then_503_then_success(scene: Scene, clock: SteppedClock) -> None:
    """[429 Retry-After: 2, 503, 200] gives RateLimited(2), TransientError, then a batch."""
    async with open_repo(scene.world, clock) as repo:
        repo.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
        connector = repo.connector()
        with pytest.raises(RateLimited) as limited:
            await connector.poll(None, repo.ctx())
        assert limited.value.retry_after == 2
        with pytest.raises(TransientError) as failed:
            await connector.poll(None, repo.ctx())
        assert not isinstance(failed.value, RateLimited)
        batch = await connector.poll(None, repo.ctx())
    assert {e.conversation for e in batch.events} == {str(scene.issue)}


@pytest.mark.parametrize(
    ("fault", "expected", "wait"),
    [
        (Fault(403, retry_after=30), RateLimited, 30.0),
        (Fault(403, body=json.dumps({"message": "You have exceeded a secondary rate limit."})),
         RateLimited, 60.0),
        (Fault(403, body=json.dumps({"message": "Resource not accessible by integration"})),
         AuthError, None),
    ],
    ids=["secondary-retry-after", "secondary-message", "forbidden"],
)
async def test_403_is_a_rate_limit_only_when_github_says_so(
    scene: Scene, clock: SteppedClock, fault: Fault, expected: type[Exception],
    wait: float | None,
) -> None:
    """Secondary limits are RateLimited; any other 403 is an AuthError."""
    async with open_repo(scene.world, clock) as repo:
        repo.fake.controls.faults.append(fault)
        with pytest.raises(expected) as caught:
            await repo.connector().poll(None, repo.ctx())
    assert type(caught.value) is expected
    if wait is not None:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == wait


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Unicorn!</body></html>", content_type="text/html"),
        Fault(200, body=json.dumps({"message": "not a list"})),
        Fault(200, body="[{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(
    scene: Scene, clock: SteppedClock, fault: Fault
) -> None:
    """A malformed comments page is a ParseError; the retry from the same cursor is whole."""
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector()
        issues = await connector.poll(None, repo.ctx())
        repo.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(issues.cursor, repo.ctx())
        recovered = await connector.poll(issues.cursor, repo.ctx())
        reference, _, _ = await repo.drain(repo.connector(), None)
    assert recovered.more is False
    assert [e.id for e in recovered.events] == [
        e.id for e in reference if e.id.startswith("comment-")]


async def test_bad_token_is_an_auth_error_without_the_token(
    scene: Scene, clock: SteppedClock
) -> None:
    """A 401 is AuthError for poll and check, and no message shows the token."""
    async with open_repo(scene.world, clock) as repo:
        connector = repo.connector(token="ghp_wrong_token_123")
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, repo.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(repo.ctx())
    for message in (str(polled.value), str(checked.value)):
        assert "ghp_wrong_token_123" not in message
        assert "Bearer" not in message
        assert "401" in message


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_repo(scene.world, clock) as repo:
        repo.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await repo.connector().poll(None, repo.ctx())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "acme/widgets readable with the token (4999 requests left this hour)"),
        ({"token": None}, "acme/widgets readable without a token (59 requests left this hour)"),
    ],
    ids=["token", "anonymous"],
)
async def test_check_reads_the_repository(
    scene: Scene, clock: SteppedClock, overrides: dict[str, Any], expected: str
) -> None:
    """check() reads the repository once and says how it was reached."""
    async with open_repo(scene.world, clock) as repo:
        assert await repo.connector(**overrides).check(repo.ctx()) == expected
    repo.fake.controls.assert_called("/repos/acme/widgets", times=1)


async def test_check_of_an_unknown_or_private_repo_is_fatal(clock: SteppedClock) -> None:
    """A repository that does not exist, or is private without a token, is a 404: fatal."""
    world = GitHubWorld(now=clock, private=True)
    async with open_repo(world, clock) as repo:
        with pytest.raises(FatalError, match="404"):
            await repo.connector(repo="acme/nothing").check(repo.ctx())
        with pytest.raises(FatalError, match="404"):
            await repo.connector(token=None).check(repo.ctx())
        assert "readable" in await repo.connector().check(repo.ctx())


async def test_hostile_content_is_kept_as_inert_text(scene: Scene, clock: SteppedClock) -> None:
    """Markup, terminal escapes and bidi controls from the public arrive verbatim as data."""
    hostile = "<img src=x onerror=alert(1)> [red]boom[/] \x1b]52;c;AAAA\x07 \u202etxt.exe"
    scene.world.comment(scene.issue, scene.pat, hostile, at=minutes(-1))
    async with open_repo(scene.world, clock) as repo:
        events, _, _ = await repo.drain(repo.connector(), None)
    assert hostile in {e.text for e in events}


async def test_bots_and_listed_agents_are_classified(scene: Scene, clock: SteppedClock) -> None:
    """A [bot] account's comment is a bot message; a login in ``agents`` answers as agent."""
    bot = scene.world.add_user("github-actions[bot]", bot=True)
    triager = scene.world.add_user("tri", "CONTRIBUTOR")
    scene.world.comment(scene.issue, bot, "This issue is stale", at=minutes(-4))
    scene.world.comment(scene.issue, triager, "Reproduced", at=minutes(-3))
    async with open_repo(scene.world, clock) as repo:
        events, _, _ = await repo.drain(repo.connector(agents=["tri"]), None)
    actors = {e.text: e.actor for e in events if e.kind is EventKind.MESSAGE}
    assert actors["This issue is stale"] is Actor.BOT
    assert actors["Reproduced"] is Actor.AGENT


async def test_fake_pages_like_the_recording(clock: SteppedClock) -> None:
    """Thirteen issues at per_page=3 page like the recorded Link headers, rel for rel."""
    world = GitHubWorld(now=clock)
    pat = world.add_user("pat")
    for n in range(13):
        world.open_issue(pat, f"Test issue {n + 1}", at=minutes(-60 + n))
    async with open_repo(world, clock) as repo:
        for number, page in enumerate(PAGES, start=1):
            async with repo.session.get(
                repo.base_url + ISSUES_PATH, params={"per_page": "3", "page": str(number)},
                headers={"Authorization": f"token {TOKEN}"},
            ) as response:
                served = link_rels(response.headers.get("Link", ""))
                body = await response.json()
            recorded = link_rels(meta_headers(page)["link"])
            assert {rel: url.rsplit("page=", 1)[1] for rel, url in served.items()} == {
                rel: url.rsplit("page=", 1)[1] for rel, url in recorded.items()}
            assert [i["number"] for i in body] == [i["number"] for i in load(page)]
            assert set(body[0]) >= set(load(page)[0])


async def test_fake_speaks_github_errors(clock: SteppedClock) -> None:
    """Bad credentials 401, anonymous 60/hour, and a 403 with remaining 0 when spent."""
    world = GitHubWorld(now=clock)
    async with open_repo(world, clock, rate_limit=1) as repo:
        url = repo.base_url + "/repos/acme/widgets"
        async with repo.session.get(url, headers={"Authorization": "Bearer nope"}) as response:
            assert response.status == 401
            assert (await response.json())["message"] == "Bad credentials"
        async with repo.session.get(url) as response:
            assert response.headers["X-RateLimit-Limit"] == "60"
            assert "permissions" not in await response.json()
        good = {"Authorization": f"Bearer {TOKEN}"}
        async with repo.session.get(url, headers=good) as response:
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert response.headers["Date"] == "Mon, 23 Nov 2026 09:00:00 GMT"
        async with repo.session.get(url, headers=good) as response:
            assert response.status == 403
            assert "rate limit exceeded" in (await response.json())["message"]


def test_fake_payloads_have_the_recorded_shape(clock: SteppedClock) -> None:
    """The fake's issue and comment objects carry every key the recordings carry."""
    world = GitHubWorld(now=clock)
    pat = world.add_user("pat")
    number = world.open_issue(pat, "t", "b", at=minutes(-1))
    comment_id = world.comment(number, pat, "c", at=minutes(-1))
    world.close(number, world.owner, at=T0)
    issue = world.issue_json("https://api.github.com", world.issues[number])
    comment = world.comment_json("https://api.github.com", world.comments[comment_id])
    recorded_issue = copy.deepcopy(load("GET_repos_PyGithub_PyGithub_issues_28.json"))
    assert set(issue) >= set(recorded_issue) - {"milestone"} | {"state_reason"}
    assert set(comment) >= set(load("GET_repos_PyGithub_PyGithub_issues_comments_20227753.json"))
    assert parse_issue(issue).state == "closed"
