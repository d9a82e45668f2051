"""Tests of the Reddit connector: recorded payloads, and the faithful fake served for real."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
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
from connectors.fakes.reddit import RedditFake, RedditWorld
from connectors.reddit import (
    MAX_HELD,
    FeedState,
    Listing,
    People,
    RedditConnector,
    RedditSettings,
    Thing,
    Token,
    parse_listing,
    parse_me,
    parse_token,
    reset_wait,
    step,
    thing_events,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.demo import RedditSocial, TrafficModel, make_sources
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOURCE = "acme-reddit"
BRAND = "acme_support"
SECRET = "app-secret-5f3c9a1e"
PASSWORD = "hunter2-very-secret"
PEOPLE = People(BRAND)
MENTIONS, FOLLOWUPS = "/message/mentions", "/message/comments"
BRAND_PATH = f"/user/{BRAND}/comments"


def load(name: str) -> Any:
    """A recorded payload."""
    return json.loads(fixture_path("reddit", name).read_text())


def minutes(delta: float) -> datetime:
    """T0 shifted by ``delta`` minutes."""
    return T0 + timedelta(minutes=delta)


# --- recorded payloads ---------------------------------------------------------------------


def test_recorded_mention_opens_a_conversation() -> None:
    """The recorded mention is a customer message with its thread's subject and subreddit."""
    listing = parse_listing(load("GET_message_mentions.json"))
    assert (listing.after, listing.before) == (None, None)
    [mention] = listing.things
    assert mention.parent_id == "t3_5d7tk7"
    at = datetime(2016, 11, 16, 6, 37, 33, tzinfo=UTC)
    url = "https://www.reddit.com/r/PRAW_73oy54eo3a/comments/5d7tk7/calling_test/da2g9oh/?context=3"
    common: dict[str, Any] = {"source": SOURCE, "conversation": "t1_da2g9oh", "at": at,
                              "channel": "reddit", "url": url}
    assert thing_events(mention, source=SOURCE, conversation="t1_da2g9oh", people=PEOPLE) == (
        Event(id="t1_da2g9oh:about", kind=EventKind.UPDATE,
              fields={"subject": "Calling test", "customer": "PyAPITestUser3",
                      "tags": ["r/PRAW_73oy54eo3a"]}, **common),
        Event(id="t1_da2g9oh", kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, public=True,
              author="PyAPITestUser3", text="But seriously, /u/pyapitestuser2, donde esta?",
              **common),
    )


def test_recorded_mention_inside_a_conversation_is_only_a_message() -> None:
    """An item that joins another conversation gives its message, no subject update."""
    [mention] = parse_listing(load("GET_message_mentions.json")).things
    events = thing_events(mention, source=SOURCE, conversation="t1_other", people=PEOPLE)
    assert [(e.kind, e.conversation) for e in events] == [(EventKind.MESSAGE, "t1_other")]


def test_recorded_token_answer_and_refusals() -> None:
    """The recorded grant gives a token and its lifetime; a wrong password is an error answer."""
    assert parse_token(load("POST_api_v1_access_token.json")) == Token("REDACTED", 3600)
    assert parse_token({"error": "invalid_grant"}) == Token(None, 0, "invalid_grant")
    with pytest.raises(ParseError):
        parse_token({"access_token": "x", "expires_in": "soon"})


def test_recorded_rate_limit_headers_give_the_reset() -> None:
    """x-ratelimit-reset of the recording is the wait in seconds."""
    meta = json.loads(fixture_path("reddit", "GET_message_mentions.meta.json").read_text())
    assert reset_wait(CIMultiDict(meta["response"]["headers"])) == 116.0
    assert reset_wait(CIMultiDict({"x-ratelimit-reset": "soon"})) is None


def _mention(**changes: Any) -> dict[str, Any]:
    page: dict[str, Any] = load("GET_message_mentions.json")
    page["data"]["children"][0]["data"].update(changes)
    return page


@pytest.mark.parametrize(
    "changes",
    [{"body": "[removed]"}, {"body": "[deleted]", "author": "[deleted]"}],
    ids=["removed", "deleted"],
)
def test_removed_or_deleted_mention_is_dismissed(changes: dict[str, Any]) -> None:
    """A mention read as [removed] or [deleted] dismisses its conversation, no message."""
    [thing] = parse_listing(_mention(**changes)).things
    [event] = thing_events(thing, source=SOURCE, conversation=thing.fullname, people=PEOPLE)
    assert (event.kind, event.id) == (EventKind.DISMISSED, "t1_da2g9oh:removed")


@pytest.mark.parametrize(
    ("author", "actor"),
    [("PyAPITestUser3", Actor.CUSTOMER), ("Acme_Support", Actor.AGENT),
     ("kim_at_acme", Actor.AGENT), ("AutoModerator", Actor.BOT), ("helper_bot", Actor.BOT)],
    ids=["public", "brand-any-case", "listed-agent", "automoderator", "listed-bot"],
)
def test_actor_of_an_author(author: str, actor: Actor) -> None:
    """The brand and its agents answer; AutoModerator and listed bots are bots."""
    people = People(BRAND, frozenset({"kim_at_acme"}), frozenset({"automoderator", "helper_bot"}))
    assert people.actor(author) is actor


def test_hostile_text_is_kept_as_clipped_inert_data() -> None:
    """Markup and escapes stay as text; a body is clipped; a foreign link is no url."""
    hostile = "[bold]x[/] \x1b[2J <script>alert(1)</script>" + "y" * 10_000
    page = _mention(body=hostile, context="javascript:alert(1)", permalink="//evil.example/x")
    [thing] = parse_listing(page).things
    [_, message] = thing_events(thing, source=SOURCE, conversation=thing.fullname,
                                people=PEOPLE)
    assert message.text is not None
    assert len(message.text) == TEXT_LIMIT
    assert message.text.startswith("[bold]x[/] \x1b[2J <script>")
    assert message.url is None


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("<html>", id="string"),
        pytest.param({"kind": "t1", "data": {}}, id="not-a-listing"),
        pytest.param({"kind": "Listing", "data": {"children": {}}}, id="children-not-list"),
        pytest.param(_mention(name="t1_../../x"), id="bad-fullname"),
        pytest.param(_mention(name="t3_da2g9oh"), id="name-of-another-kind"),
        pytest.param(_mention(created_utc="yesterday"), id="created-not-number"),
        pytest.param(_mention(created_utc=1e20), id="created-out-of-range"),
        pytest.param(_mention(body=None), id="no-body"),
        pytest.param(_mention(author=7), id="author-not-text"),
        pytest.param(_mention(parent_id="da2g"), id="parent-not-fullname"),
        pytest.param({"kind": "Listing", "data": {"children": [{"kind": "t4", "data": {}}]}},
                     id="private-message"),
        pytest.param({"kind": "Listing", "data": {"children": [], "after": 5}}, id="after-number"),
    ],
)
def test_malformed_listings_are_parse_errors(page: Any) -> None:
    """Whatever is wrong with a Listing, the error is ParseError and nothing else."""
    with pytest.raises(ParseError, match="reddit"):
        parse_listing(page)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["t1_abc", "t3_x", "Listing", "[removed]", "/r/a/comments/x/"]),
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
def test_any_corruption_of_a_recorded_page_is_parsed_or_a_parse_error(
    data: st.DataObject,
) -> None:
    """Replace any part of the recorded Listing or token with any JSON: only ParseError fails."""
    listing = load("GET_message_mentions.json")
    token = load("POST_api_v1_access_token.json")
    page: list[Any] = [listing, token]
    path = data.draw(st.sampled_from(_paths(page)[1:]))
    target: Any = page
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    with contextlib.suppress(ParseError):
        parse_listing(listing)
    with contextlib.suppress(ParseError):
        parse_token(token)
    with contextlib.suppress(ParseError):
        parse_me(token)


def _thing(name: str, created: datetime) -> Thing:
    return Thing(fullname=name, author="pat", created=created, parent_id=None, subreddit="acme",
                 title="t", text="x", path=None, removed=False)


def test_step_scans_down_to_since_and_anchors_on_the_newest() -> None:
    """Without an anchor the feed pages down until an item older than since, then anchors."""
    since = minutes(-30)
    first = Listing((_thing("t1_c", minutes(-5)), _thing("t1_b", minutes(-20))), "t1_b", None)
    state, fresh = step(FeedState(), first, since=since, limit=2, server_time=T0,
                        verify_every=60)
    assert ([t.fullname for t in fresh], state.scan_after, state.at_top) == (
        ["t1_c", "t1_b"], "t1_b", False)
    second = Listing((_thing("t1_a", minutes(-40)),), None, None)
    state, fresh = step(state, second, since=since, limit=2, server_time=T0 + timedelta(seconds=1),
                        verify_every=60)
    assert fresh == ()
    assert (state.anchor, state.anchor_at, state.scanning) == ("t1_c", minutes(-5), False)
    assert (state.at_top, state.top, state.verified_at) == (True, T0, T0)


def test_step_trusts_an_empty_page_only_as_far_as_the_last_check() -> None:
    """An empty ``before`` page keeps the top at the last check, then asks for a new check."""
    state = FeedState(anchor="t1_c", anchor_at=minutes(-5), verified_at=T0, top=T0)
    empty = Listing((), None, None)
    later = T0 + timedelta(seconds=30)
    trusted, _ = step(state, empty, since=minutes(-60), limit=100, server_time=later,
                      verify_every=60)
    assert (trusted.at_top, trusted.top) == (True, T0)
    stale, _ = step(state, empty, since=minutes(-60), limit=100,
                    server_time=T0 + timedelta(seconds=61), verify_every=60)
    assert (stale.at_top, stale.scanning, stale.scan_floor) == (False, True, minutes(-5))
    assert stale.request(minutes(-60), 100) == {"limit": "100", "raw_json": "1"}


def test_step_up_full_page_keeps_reading_up() -> None:
    """A full ``before`` page moves the anchor to its newest item and asks for more."""
    state = FeedState(anchor="t1_a", anchor_at=minutes(-9), verified_at=T0, top=T0)
    page = Listing((_thing("t1_c", minutes(-1)), _thing("t1_b", minutes(-2))), None, None)
    after, fresh = step(state, page, since=minutes(-60), limit=2, server_time=T0,
                        verify_every=60)
    assert [t.fullname for t in fresh] == ["t1_c", "t1_b"]
    assert (after.anchor, after.at_top) == ("t1_c", False)
    assert after.request(minutes(-60), 2)["before"] == "t1_c"
    assert replace(after, at_top=True).dump()["anchor"] == "t1_c"


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        ({}, True),
        ({"username": "u/acme_support"}, True),
        ({"username": "no spaces allowed"}, False),
        ({"subreddits": ["r/acme", "gadgets"]}, True),
        ({"subreddits": ["not a sub!"]}, False),
        ({"base_url": "http://oauth.reddit.example"}, False),
        ({"auth_url": "https://user:pw@www.reddit.com"}, False),
        ({"limit": 0}, False),
        ({"user_agent": "bad\nagent"}, False),
        ({"client_id": ""}, False),
        ({"unknown": 1}, False),
    ],
    ids=["defaults", "u-prefix", "bad-username", "subreddits", "bad-subreddit", "plain-http",
         "credentials-in-url", "zero-limit", "agent-with-newline", "empty-client-id",
         "unknown-key"],
)
def test_settings_validation(changes: dict[str, Any], accepted: bool) -> None:
    """Settings name the brand account and refuse what would leak credentials."""
    values = {"name": SOURCE, "client_id": "app", "client_secret": SECRET, "username": BRAND,
              "password": PASSWORD} | changes
    if accepted:
        RedditSettings.model_validate(values)
    else:
        with pytest.raises(ValidationError):
            RedditSettings.model_validate(values)


def test_registered_and_keeps_its_secrets() -> None:
    """The registry maps "reddit" to this connector; settings never print the secrets."""
    assert registry()["reddit"] is RedditConnector
    settings_ = RedditSettings.model_validate({
        "name": SOURCE, "client_id": "app", "client_secret": SECRET, "username": BRAND,
        "password": PASSWORD})
    assert isinstance(RedditConnector(settings_), Connector)
    assert SECRET not in repr(settings_)
    assert PASSWORD not in repr(settings_)


# --- against the fake, served for real -----------------------------------------------------


@dataclass
class Served:
    """A served fake, a client session, and helpers to poll it."""

    fake: RedditFake
    base_url: str
    session: aiohttp.ClientSession
    clock: SteppedClock

    @property
    def world(self) -> RedditWorld:
        """The fake's world."""
        return self.fake.world

    def connector(self, *, max_held: int = MAX_HELD, **overrides: Any) -> RedditConnector:
        """A connector pointed at the fake."""
        values: dict[str, Any] = {
            "name": SOURCE, "client_id": "app", "client_secret": SECRET, "username": BRAND,
            "password": PASSWORD, "base_url": self.base_url, "auth_url": self.base_url,
        } | overrides
        return RedditConnector(RedditSettings.model_validate(values), max_held=max_held)

    def ctx(self, since: datetime = T0 - timedelta(days=1)) -> PollContext:
        """A poll context on the shared clock."""
        return PollContext(session=self.session, now=self.clock, since=since)

    def requests(self, path: str) -> list[dict[str, str]]:
        """The queries of the requests the fake received on ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]

    async def drain(self, connector: RedditConnector, cursor: Cursor | None, *,
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
async def open_reddit(world: RedditWorld, clock: SteppedClock,
                      **options: Any) -> AsyncIterator[Served]:
    """Serve a fake of ``world`` on loopback for one test."""
    fake = RedditFake(world, client_id="app", client_secret=SECRET, password=PASSWORD,
                      **options)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        yield Served(fake, base_url, session, clock)


@pytest.fixture
def clock() -> SteppedClock:
    """The test's clock, at T0."""
    return SteppedClock(T0)


@dataclass
class Scene:
    """Pat mentions the brand under a post, the brand answers, Pat follows up."""

    world: RedditWorld
    pat: str
    post: str
    mention: str
    reply: str
    followup: str


@pytest.fixture
def scene(clock: SteppedClock) -> Scene:
    """One worked thread."""
    world = RedditWorld(now=clock, brand=BRAND)
    pat = world.add_account("pat_k")
    post = world.post(pat, "gadgets", "Widget broke", "Help", at=minutes(-60))
    mention = world.comment(pat, post, "u/acme_support my widget broke", at=minutes(-30))
    reply = world.comment(BRAND, mention, "Sorry! DM us your order number.", at=minutes(-20))
    followup = world.comment(pat, reply, "Sent!", at=minutes(-10))
    return Scene(world, pat, post, mention, reply, followup)


def summary(event: Event) -> tuple[Any, ...]:
    """An event as (kind, minutes from T0, conversation, what it says)."""
    offset = (event.at - T0).total_seconds() / 60
    if event.kind is EventKind.MESSAGE:
        return ("message", offset, event.conversation, event.actor, event.text)
    if event.kind is EventKind.UPDATE:
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in event.fields.items()}
        return ("update", offset, event.conversation, fields)
    return (str(event.kind), offset, event.conversation)


async def test_first_round_threads_mention_reply_and_followup(
    scene: Scene, clock: SteppedClock
) -> None:
    """One token, then mentions, brand comments, follow-ups: one conversation, exact events."""
    async with open_reddit(scene.world, clock) as served:
        events, _, batches = await served.drain(served.connector(), None)
    assert len(served.requests("/api/v1/access_token")) == 1
    assert served.requests(MENTIONS) == [{"limit": "100", "raw_json": "1"}]
    assert served.requests(BRAND_PATH) == [{"limit": "100", "raw_json": "1", "sort": "new"}]
    assert served.requests(FOLLOWUPS) == [{"limit": "100", "raw_json": "1"}]
    agents = {r.headers["User-Agent"] for r in served.fake.controls.requests}
    assert agents == {f"python:replywatch:0.1 (by /u/{BRAND})"}
    assert [b.more for b in batches] == [True, True, False]
    assert [b.watermark for b in batches] == [None, None, T0]
    m = scene.mention
    assert [summary(e) for e in events] == [
        ("update", -30, m, {"subject": "Widget broke", "customer": "pat_k",
                            "tags": ["r/gadgets"]}),
        ("message", -30, m, Actor.CUSTOMER, "u/acme_support my widget broke"),
        ("message", -20, m, Actor.AGENT, "Sorry! DM us your order number."),
        ("message", -10, m, Actor.CUSTOMER, "Sent!"),
    ]
    assert [e.id for e in events if e.kind is EventKind.MESSAGE] == [
        scene.mention, scene.reply, scene.followup]


async def test_first_scan_stops_at_since(scene: Scene, clock: SteppedClock) -> None:
    """Mentions older than ctx.since are not reported."""
    scene.world.comment(scene.pat, scene.post, "u/acme_support ancient", at=minutes(-60 * 50))
    async with open_reddit(scene.world, clock) as served:
        events, _, _ = await served.drain(served.connector(), None)
    assert "u/acme_support ancient" not in {e.text for e in events}


async def test_pages_down_then_up_without_duplicates(clock: SteppedClock) -> None:
    """With small pages: down with after= on the first read, up with before= afterwards."""
    world = RedditWorld(now=clock, brand=BRAND)
    pat = world.add_account("pat_k")
    post = world.post(pat, "gadgets", "Thread", at=minutes(-90))
    for n in range(5):
        world.comment(pat, post, f"u/acme_support #{n}", at=minutes(-50 + n))
    async with open_reddit(world, clock) as served:
        connector = served.connector(limit=2)
        first, cursor, _ = await served.drain(connector, None)
        for n in range(5, 10):
            world.comment(pat, post, f"u/acme_support #{n}", at=minutes(-40 + n))
        clock.advance(30)
        later, _, _ = await served.drain(connector, cursor)
    texts = [e.text or "" for e in [*first, *later] if e.kind is EventKind.MESSAGE]
    assert sorted(texts) == sorted(f"u/acme_support #{n}" for n in range(10))
    assert len(texts) == 10
    queries = served.requests(MENTIONS)
    assert [("after" in q, "before" in q) for q in queries[:3]] == [
        (False, False), (True, False), (True, False)]
    assert all("before" in q for q in queries[3:])


async def test_repoll_returns_nothing_and_checks_only_when_due(
    scene: Scene, clock: SteppedClock
) -> None:
    """Quiet polls return nothing; the newest page is re-read only after verify_every."""
    async with open_reddit(scene.world, clock) as served:
        connector = served.connector()
        _, cursor, _ = await served.drain(connector, None)
        clock.advance(30)
        quiet, cursor, batches = await served.drain(connector, cursor)
        assert (quiet, batches[-1].watermark) == ([], T0)
        assert [("before" in q) for q in served.requests(MENTIONS)] == [False, True]
        clock.advance(40)
        quiet, _, batches = await served.drain(connector, cursor)
    assert quiet == []
    assert [("before" in q) for q in served.requests(MENTIONS)] == [False, True, True, False]
    assert batches[-1].watermark == T0 + timedelta(seconds=70)


async def test_deleted_anchor_is_healed_by_the_check(scene: Scene, clock: SteppedClock) -> None:
    """A mention deleted under the anchor blinds before=; the check finds what came since."""
    async with open_reddit(scene.world, clock, rate_limit=10_000) as served:
        connector = served.connector()
        _, cursor, _ = await served.drain(connector, None)
        scene.world.delete(scene.mention)
        fresh = scene.world.comment(scene.pat, scene.post, "u/acme_support again", at=T0)
        clock.advance(30)
        blind, cursor, batches = await served.drain(connector, cursor)
        assert fresh not in {e.id for e in blind}
        assert batches[-1].watermark == T0  # not past the last time the anchor was seen
        clock.advance(40)
        healed, cursor, _ = await served.drain(connector, cursor)
        assert fresh in {e.id for e in healed}
        newer = scene.world.comment(scene.pat, scene.post, "u/acme_support thrice",
                                    at=clock())
        clock.advance(5)
        after, _, _ = await served.drain(connector, cursor)
    assert [e.id for e in after if e.kind is EventKind.MESSAGE] == [newer]


async def test_cursor_survives_a_restart_with_its_threads(
    scene: Scene, clock: SteppedClock
) -> None:
    """A new connector resumes from the stored cursor; a follow-up keeps its conversation."""
    async with open_reddit(scene.world, clock) as served:
        first, cursor, _ = await served.drain(served.connector(), None)
        later_reply = scene.world.comment(scene.pat, scene.reply, "Any news?", at=T0)
        clock.advance(30)
        later, _, _ = await served.drain(served.connector(), json.loads(json.dumps(cursor)))
    assert [summary(e) for e in later] == [
        ("message", 0, scene.mention, Actor.CUSTOMER, "Any news?")]
    assert later[0].id == later_reply
    assert {e.id for e in later}.isdisjoint({e.id for e in first})


async def test_subreddit_posts_are_conversations_answered_by_the_brand(
    clock: SteppedClock,
) -> None:
    """A new post in a watched subreddit opens a conversation; the brand's comment answers it."""
    world = RedditWorld(now=clock, brand=BRAND)
    pat = world.add_account("pat_k")
    post = world.post(pat, "acme", "Login loop", "Can't sign in", at=minutes(-15))
    world.comment(BRAND, post, "Looking into it", at=minutes(-5))
    async with open_reddit(world, clock) as served:
        events, _, _ = await served.drain(served.connector(subreddits=["acme", "gadgets"]), None)
    assert served.requests("/r/acme+gadgets/new")
    assert [summary(e) for e in events] == [
        ("update", -15, post, {"subject": "Login loop", "customer": "pat_k",
                               "tags": ["r/acme"]}),
        ("message", -15, post, Actor.CUSTOMER, "Login loop\n\nCan't sign in"),
        ("message", -5, post, Actor.AGENT, "Looking into it"),
    ]


async def test_removed_mention_is_dismissed(scene: Scene, clock: SteppedClock) -> None:
    """A mention a moderator removed before we read it dismisses its conversation."""
    spam = scene.world.comment(scene.pat, scene.post, "u/acme_support buy cheap pills",
                               at=minutes(-2))
    scene.world.remove(spam)
    async with open_reddit(scene.world, clock) as served:
        events, _, _ = await served.drain(served.connector(), None)
    assert [summary(e) for e in events if e.conversation == spam] == [
        ("dismissed", -2, spam)]


async def test_token_is_reused_then_renewed(scene: Scene, clock: SteppedClock) -> None:
    """One token serves until a minute before it expires; a revoked one is replaced once."""
    async with open_reddit(scene.world, clock, token_lifetime=300) as served:
        connector = served.connector()
        _, cursor, _ = await served.drain(connector, None)
        clock.advance(200)
        _, cursor, _ = await served.drain(connector, cursor)
        assert len(served.requests("/api/v1/access_token")) == 1
        clock.advance(50)
        _, cursor, _ = await served.drain(connector, cursor)
        assert len(served.requests("/api/v1/access_token")) == 2
        served.fake.revoke_tokens()
        await connector.poll(cursor, served.ctx())
    assert len(served.requests("/api/v1/access_token")) == 3


@pytest.mark.parametrize(
    ("fake_options", "reason"),
    [({"password": "other"}, "invalid_grant"), ({"client_secret": "other"}, "401")],
    ids=["wrong-password", "wrong-app-secret"],
)
async def test_refused_credentials_are_auth_errors_without_secrets(
    scene: Scene, clock: SteppedClock, fake_options: dict[str, str], reason: str
) -> None:
    """A wrong password (a 200 error answer) or app secret (401) is an AuthError, secret-free."""
    async with open_reddit(scene.world, clock) as served:
        for key, value in fake_options.items():
            setattr(served.fake, key, value)
        connector = served.connector()
        with pytest.raises(AuthError) as polled:
            await connector.poll(None, served.ctx())
        with pytest.raises(AuthError) as checked:
            await connector.check(served.ctx())
    for message in (str(polled.value), str(checked.value)):
        assert reason in message
        assert SECRET not in message
        assert PASSWORD not in message


async def test_spent_budget_is_waited_out_before_requesting(
    scene: Scene, clock: SteppedClock
) -> None:
    """x-ratelimit-remaining 0 makes the next poll wait for the reset, sending nothing."""
    async with open_reddit(scene.world, clock, rate_limit=2) as served:
        connector = served.connector()
        first = await connector.poll(None, served.ctx())
        second = await connector.poll(first.cursor, served.ctx())
        sent = len(served.fake.controls.requests)
        with pytest.raises(RateLimited) as waited:
            await connector.poll(second.cursor, served.ctx())
        assert waited.value.retry_after == 600 - int(T0.timestamp()) % 600
        assert len(served.fake.controls.requests) == sent
        with pytest.raises(RateLimited) as limited:
            await served.connector().poll(second.cursor, served.ctx())
    assert "429" in str(limited.value)
    assert limited.value.retry_after == waited.value.retry_after


async def test_scripted_429_then_503_then_success(scene: Scene, clock: SteppedClock) -> None:
    """[429 Retry-After: 2, 503, 200] gives RateLimited(2), TransientError, then a batch."""
    async with open_reddit(scene.world, clock) as served:
        served.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
        connector = served.connector()
        with pytest.raises(RateLimited) as limited:
            await connector.poll(None, served.ctx())
        assert limited.value.retry_after == 2
        with pytest.raises(TransientError) as failed:
            await connector.poll(None, served.ctx())
        assert not isinstance(failed.value, RateLimited)
        batch = await connector.poll(None, served.ctx())
    assert scene.mention in {e.id for e in batch.events}


@pytest.mark.parametrize(
    "fault",
    [
        Fault(200, body="<html><body>Our CDN was unable to reach our servers</body></html>",
              content_type="text/html"),
        Fault(200, body=json.dumps({"kind": "Listing", "data": {"children": "nope"}})),
        Fault(200, body="{not json"),
    ],
    ids=["html", "wrong-shape", "broken-json"],
)
async def test_malformed_page_loses_nothing(
    scene: Scene, clock: SteppedClock, fault: Fault
) -> None:
    """A malformed brand page is a ParseError; the retry from the same cursor is whole."""
    async with open_reddit(scene.world, clock) as served:
        connector = served.connector()
        mentions = await connector.poll(None, served.ctx())
        served.fake.controls.faults.append(fault)
        with pytest.raises(ParseError):
            await connector.poll(mentions.cursor, served.ctx())
        recovered = await connector.poll(mentions.cursor, served.ctx())
    assert [e.id for e in recovered.events] == [scene.reply]


async def test_connection_reset_mid_page_is_transient(scene: Scene, clock: SteppedClock) -> None:
    """A connection dropped in the middle of a page is a TransientError."""
    async with open_reddit(scene.world, clock) as served:
        served.fake.controls.faults.append(Fault(reset=True))
        with pytest.raises(TransientError):
            await served.connector().poll(None, served.ctx())


async def test_check_names_the_account(scene: Scene, clock: SteppedClock) -> None:
    """check() proves app and password with /api/v1/me and refuses another account's app."""
    async with open_reddit(scene.world, clock) as served:
        connector = served.connector()
        assert await connector.check(served.ctx()) == f"authenticated as u/{BRAND}"
        served.fake.controls.faults.append(Fault(200, body=json.dumps({"name": "someone_else"})))
        with pytest.raises(AuthError, match=f"u/someone_else, not u/{BRAND}"):
            await connector.check(served.ctx())


async def test_hostile_content_is_kept_as_inert_text(scene: Scene, clock: SteppedClock) -> None:
    """Markup, escapes and bidi controls from the public arrive verbatim, never unescaped twice."""
    hostile = "u/acme_support <b>&amp;</b> [red]x[/] \x1b]52;c;AAAA\x07 \u202etxt"
    scene.world.comment(scene.pat, scene.post, hostile, at=minutes(-1))
    async with open_reddit(scene.world, clock) as served:
        events, _, _ = await served.drain(served.connector(), None)
    assert hostile in {e.text for e in events}


async def test_fake_speaks_reddit(scene: Scene, clock: SteppedClock) -> None:
    """The fake refuses generic agents and missing tokens, escapes without raw_json, pages."""
    async with open_reddit(scene.world, clock) as served:
        url = served.base_url + MENTIONS
        agent = {"User-Agent": "test:replywatch:1 (by /u/tester)"}
        async with served.session.get(url) as response:
            assert response.status == 429  # aiohttp's default User-Agent
        async with served.session.get(url, headers=agent) as response:
            assert (response.status, await response.json()) == (
                401, {"message": "Unauthorized", "error": 401})
        async with served.session.post(
            served.base_url + "/api/v1/access_token",
            headers=agent | {"Authorization": aiohttp.encode_basic_auth("app", SECRET)},
            data={"grant_type": "password", "username": BRAND, "password": PASSWORD},
        ) as response:
            token = (await response.json())["access_token"]
        authed = agent | {"Authorization": f"bearer {token}"}
        scene.world.comment(scene.pat, scene.post, "u/acme_support a < b & c", at=T0)
        async with served.session.get(url, headers=authed, params={"limit": "1"}) as response:
            page = await response.json()
            assert float(response.headers["x-ratelimit-remaining"]) == 999.0
        assert page["data"]["children"][0]["data"]["body"] == "u/acme_support a &lt; b &amp; c"
        assert page["data"]["after"] == page["data"]["children"][0]["data"]["name"]
        assert set(page["data"]["children"][0]["data"]) >= set(
            load("GET_message_mentions.json")["data"]["children"][0]["data"])
        async with served.session.get(url, headers=authed,
                                      params={"before": "t1_gone"}) as response:
            assert (await response.json())["data"]["children"] == []


# --- brand replies to follow-ups: held until the follow-ups are read -----------------------


@dataclass
class Chains:
    """Mentions, each answered by the brand, followed up, answered again, twice over."""

    world: RedditWorld
    mentions: list[str]
    brand_replies: list[str]
    followups: list[str]


@pytest.fixture
def chains(clock: SteppedClock) -> Chains:
    """Three interleaved threads: mention, then brand and customer in turn, brand last."""
    world = RedditWorld(now=clock, brand=BRAND)
    post = world.post(world.add_account("op_user"), "gadgets", "Acme?", at=minutes(-600))
    found = Chains(world, [], [], [])
    for n in range(3):
        customer = world.add_account(f"customer_{n}")
        at = minutes(-300 + 7 * n)
        parent = world.comment(customer, post, f"u/{BRAND} help #{n}", at=at)
        found.mentions.append(parent)
        for turn in range(5):
            at += timedelta(minutes=20)
            by_brand = turn % 2 == 0
            parent = world.comment(BRAND if by_brand else customer, parent,
                                   f"#{n} turn {turn}", at=at)
            (found.brand_replies if by_brand else found.followups).append(parent)
    return found


def threading_problems(world: RedditWorld, events: list[Event]) -> list[str]:
    """Each reply not in the conversation of what it answers, or read again in another."""
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    where = {e.id: e.conversation for e in messages}
    problems = [f"{e.id} read again in {e.conversation}" for e in messages
                if where[e.id] != e.conversation]
    for event in messages:
        parent = world.things[event.id].parent_id
        if parent in where and where[parent] != event.conversation:
            problems.append(f"{event.id} ({event.actor}) in {event.conversation}, "
                            f"what it answers in {where[parent]}")
    return problems


def agent_only(events: list[Event]) -> set[str]:
    """The conversations whose messages are all the brand's."""
    actors: dict[str, set[Actor | None]] = {}
    for event in events:
        if event.kind is EventKind.MESSAGE:
            actors.setdefault(event.conversation, set()).add(event.actor)
    return {conversation for conversation, seen in actors.items() if seen == {Actor.AGENT}}


@pytest.mark.parametrize("limit", [100, 2], ids=["one-page", "two-per-page"])
async def test_backfill_puts_brand_replies_to_followups_in_their_conversation(
    chains: Chains, clock: SteppedClock, limit: int
) -> None:
    """A backfill reads brand comments before follow-ups; each reply still joins its thread."""
    async with open_reddit(chains.world, clock) as served:
        events, cursor, batches = await served.drain(served.connector(limit=limit), None)
    messages = {e.id: e for e in events if e.kind is EventKind.MESSAGE}
    assert len(messages) == len([e for e in events if e.kind is EventKind.MESSAGE])
    assert set(messages) == {*chains.mentions, *chains.brand_replies, *chains.followups}
    assert threading_problems(chains.world, events) == []
    assert agent_only(events) == set()
    assert {e.conversation for e in messages.values()} == set(chains.mentions)
    for n, mention in enumerate(chains.mentions):
        thread = [*chains.brand_replies[3 * n:3 * n + 3], *chains.followups[2 * n:2 * n + 2]]
        assert {messages[name].conversation for name in thread} == {mention}
    assert cursor["resume"] is None
    assert [b.watermark for b in batches[:-1]] == [None] * (len(batches) - 1)
    assert batches[-1].watermark == T0


async def test_demo_backfill_has_no_agent_only_conversations(clock: SteppedClock) -> None:
    """The demo's Reddit traffic, backfilled: every brand reply lands in its customer's thread."""
    [source] = make_sources(("reddit",), clock)
    model = TrafficModel([source], seed=5)
    model.generate_history(T0 - timedelta(days=1), T0)
    assert isinstance(source, RedditSocial)
    world = source.world
    replies = [t for t in world.things.values() if t.author == world.brand]
    followed = {t.parent_id for t in world.things.values() if t.author != world.brand}
    assert any(t.fullname in followed for t in replies)  # the case the bug was about
    async with serve(source.app()) as url, aiohttp.ClientSession() as session:
        connector = RedditConnector(source.settings(url))
        events: list[Event] = []
        cursor: Cursor | None = None
        for _ in range(60):
            batch = await connector.poll(cursor, PollContext(session=session, now=clock,
                                                             since=T0 - timedelta(days=2)))
            events += batch.events
            cursor = batch.cursor
            if not batch.more:
                break
    assert not batch.more
    assert {e.id for e in events if e.actor is Actor.AGENT} == {t.fullname for t in replies}
    assert threading_problems(world, events) == []
    assert agent_only(events) == set()


@pytest.mark.parametrize("how", ["restart", "stale-cursor"])
async def test_held_replies_are_read_again_by_a_connector_without_them(
    chains: Chains, clock: SteppedClock, how: str
) -> None:
    """A cursor polled by a connector that does not hold its replies re-reads from resume."""
    async with open_reddit(chains.world, clock) as served:
        first = served.connector(limit=2)
        cursors: list[Cursor] = []
        events: list[Event] = []
        batch = await first.poll(None, served.ctx())
        # Poll until the brand feed is read to the top with replies held, follow-ups to go.
        while not (batch.cursor["resume"] and batch.cursor["next"] == "followups"):
            events += batch.events
            cursors.append(batch.cursor)
            batch = await first.poll(batch.cursor, served.ctx())
        events += batch.events
        assert batch.watermark is None
        held = {*chains.brand_replies, *chains.followups} - {e.id for e in events}
        assert held >= set(chains.brand_replies[1::3] + chains.brand_replies[2::3])
        polled = len(served.requests(BRAND_PATH))
        second, cursor = {
            "restart": (served.connector(limit=2), batch.cursor),
            "stale-cursor": (first, cursors[-1]),
        }[how]
        rest, end, _ = await served.drain(second, json.loads(json.dumps(cursor)))
    again = served.requests(BRAND_PATH)[polled:]
    assert again[0] == {"limit": "2", "raw_json": "1", "sort": "new"}  # from the top again
    assert end["resume"] is None
    assert threading_problems(chains.world, [*events, *rest]) == []
    assert held <= {e.id for e in rest}
    assert {e.conversation for e in [*events, *rest] if e.kind is EventKind.MESSAGE} == set(
        chains.mentions)


async def test_watermark_stays_below_a_held_reply(clock: SteppedClock) -> None:
    """A reply held until the follow-ups are read keeps the watermark at its time, then goes."""
    world = RedditWorld(now=clock, brand=BRAND)
    pat = world.add_account("pat_k")
    post = world.post(pat, "gadgets", "Widget broke", at=minutes(-60))
    unread = world.comment(pat, post, "no mention of anyone here", at=minutes(-30))
    world.comment(pat, post, "u/acme_support hello", at=minutes(-20))
    async with open_reddit(world, clock) as served:
        connector = served.connector()
        mentions = await connector.poll(None, served.ctx())
        brand = await connector.poll(mentions.cursor, served.ctx())
        # The brand answers a comment no feed brings, after its feed was read this round.
        reply = world.comment(BRAND, unread, "We saw this, DM us", at=T0 + timedelta(seconds=10))
        clock.advance(30)
        _, cursor, first = await served.drain(connector, brand.cursor)
        assert first[-1].watermark == T0
        clock.advance(40)
        events, _, batches = await served.drain(connector, cursor)
    assert [(b.cursor["next"], b.watermark) for b in batches] == [
        ("mentions", T0), ("brand", T0), ("followups", T0 + timedelta(seconds=10)),
        ("mentions", T0 + timedelta(seconds=70))]
    assert [(e.id, e.conversation, e.actor) for e in batches[-1].events] == [
        (reply, unread, Actor.AGENT)]
    assert [e.id for e in events] == [reply]


async def test_no_room_to_hold_sends_replies_at_once(chains: Chains, clock: SteppedClock) -> None:
    """With nowhere to hold them, replies go at once to what they answer; none is lost."""
    async with open_reddit(chains.world, clock) as served:
        events, cursor, _ = await served.drain(served.connector(limit=2, max_held=0), None)
    messages = {e.id: e.conversation for e in events if e.kind is EventKind.MESSAGE}
    assert len(messages) == len([e for e in events if e.kind is EventKind.MESSAGE])
    assert set(messages) == {*chains.mentions, *chains.brand_replies, *chains.followups}
    answers = {reply: chains.world.things[reply].parent_id for reply in chains.brand_replies}
    assert {reply: messages[reply] for reply in chains.brand_replies[1::3]} == {
        reply: answers[reply] for reply in chains.brand_replies[1::3]}
    assert cursor["resume"] is None
