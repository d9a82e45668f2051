"""Tests of the X connector: pure parsing on recorded payloads, polling the served fake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from conftest import fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors import registry
from connectors._passes import Rounds
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.x import XFake, XWorld, snowflake
from connectors.x import (
    MAX_LOOKUP_ROUNDS,
    Threads,
    Tweet,
    XConnector,
    XSettings,
    conversation_chain,
    missing_user,
    parse_tweets,
    parse_user,
    reset_wait,
    snowflake_floor,
    snowflake_time,
    tweet_event,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, FatalError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind

TOKEN = "user-token-5f3c9a1e-very-secret"
APP_TOKEN = "app-token-77d1-also-secret"
START = datetime(2026, 3, 2, 15, 0, 10, tzinfo=UTC)
SOURCE = "acme-x"
DOCS_BRAND = "2244994945"
MENTIONS = "/2/users/{}/mentions"
LOOKUP = "/2/tweets"


def _load(name: str) -> Any:
    return json.loads(fixture_path("x", name).read_text())


def _page_of(tweets: list[Tweet]) -> Threads:
    threads = Threads()
    threads.add(tweets)
    return threads


# Pure parsing of recorded payloads ---------------------------------------------------


def test_recorded_mentions_page_parses_without_requested_fields() -> None:
    """The recorded page asked for no fields: times come from the snowflake ids."""
    page = parse_tweets(_load("GET_2_users_783214_mentions.json"))
    assert len(page.tweets) == 10
    assert page.next_token == "7140dibdnow9c7btw423i3sy3u5zupmkcpofxcsmxj48j"
    first = page.tweets[0]
    assert (first.id, first.author, first.conversation, first.parent) == (
        "1578516295611748353", None, None, None)
    assert first.at == datetime(2022, 10, 7, 22, 43, 6, 945000, tzinfo=UTC)
    chain = conversation_chain(first, _page_of(list(page.tweets)), {}, "783214")
    assert chain == {first.id: first.id}
    assert tweet_event(first, source=SOURCE, conversation=first.id, actor=Actor.CUSTOMER) == Event(
        source=SOURCE,
        conversation="1578516295611748353",
        id="1578516295611748353",
        at=datetime(2022, 10, 7, 22, 43, 6, 945000, tzinfo=UTC),
        kind=EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
        public=True,
        channel="x",
        url="https://x.com/i/web/status/1578516295611748353",
        author=None,
        text="@Twitter @TwitterSupport this is my ENTIRE feed, why do you think i want this. "
             "respond to my ticket. https://t.co/W5GxALkkZd",
    )


def test_recorded_rate_limit_headers_say_when_to_come_back() -> None:
    """The recorded x-rate-limit-reset is 630 s after the recorded date."""
    meta = _load("GET_2_users_783214_mentions.meta.json")
    headers = {"Date" if k == "date" else k: v for k, v in meta["response"]["headers"].items()}
    assert reset_wait(headers, START) == 630


def test_docs_user_tweets_land_in_their_conversations() -> None:
    """A reply to a customer's thread lands in it; one under the brand's own tweet, in the
    customer's reply; the brand's own tweet in none. Escaped text reads as typed."""
    page = parse_tweets(_load("GET_2_users_2244994945_tweets.json"))
    threads = Threads()
    threads.add(page.included)
    threads.add(page.tweets)
    answer, under_own, own = page.tweets
    customer_question, customer_reply = (t.id for t in page.included)
    assert conversation_chain(answer, threads, {}, DOCS_BRAND) == {answer.id: customer_question}
    assert conversation_chain(under_own, threads, {}, DOCS_BRAND) == {
        customer_reply: customer_reply, under_own.id: customer_reply}
    assert conversation_chain(own, threads, {}, DOCS_BRAND) == {own.id: None}
    assert "per 15 minutes on this endpoint & the limit" in answer.text
    assert answer.username == "XDevelopers"
    assert page.next_token == "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"


def test_docs_lookup_reports_deleted_tweets_as_gone() -> None:
    """A lookup's partial resource-not-found errors name the tweets that are gone."""
    page = parse_tweets(_load("GET_2_tweets_ids.json"), "tweets lookup")
    assert [t.id for t in page.tweets] == ["1762398165136486905"]
    assert page.gone == {"1760967735505850368"}


def test_docs_empty_timeline_and_me() -> None:
    """An empty timeline has no data; users/me names the account."""
    assert parse_tweets(_load("GET_2_users_2244994945_mentions_empty.json")).tweets == ()
    user = parse_user(_load("GET_2_users_me.json"))
    assert (user.id, user.username, user.name) == (DOCS_BRAND, "XDevelopers", "Developers")


def test_missing_user_is_recognised() -> None:
    """A 200 answer that is only a user-not-found error means the user id is wrong."""
    body = {"errors": [{"resource_type": "user", "title": "Not Found Error"}]}
    assert missing_user(body)
    assert not missing_user(_load("GET_2_tweets_ids.json"))
    assert not missing_user(_load("GET_2_users_2244994945_mentions_empty.json"))


def _tweets_page(**changes: Any) -> Any:
    page = _load("GET_2_users_2244994945_tweets.json")
    page["data"][0] |= changes
    return page


@pytest.mark.parametrize(
    "page",
    [
        pytest.param([], id="list-not-object"),
        pytest.param({"data": {"id": "1"}}, id="data-not-list"),
        pytest.param({"data": ["x"]}, id="tweet-not-object"),
        pytest.param(_tweets_page(id=1762533683098885132), id="id-not-string"),
        pytest.param(_tweets_page(id="../../2/users/me"), id="id-with-path"),
        pytest.param(_tweets_page(text=None), id="no-text"),
        pytest.param(_tweets_page(created_at="yesterday"), id="bad-created-at"),
        pytest.param(_tweets_page(created_at="2024-02-27T17:42:31"), id="naive-created-at"),
        pytest.param(_tweets_page(author_id=["1"]), id="author-not-id"),
        pytest.param(_tweets_page(referenced_tweets={"id": "1"}), id="references-not-list"),
        pytest.param(_tweets_page(referenced_tweets=[{"type": "replied_to"}]),
                     id="reference-without-id"),
        pytest.param({"meta": {"next_token": 7}}, id="token-not-string"),
        pytest.param({"meta": []}, id="meta-not-object"),
        pytest.param({"includes": {"users": [{"id": "x", "username": "y"}]}}, id="bad-user-id"),
    ],
)
def test_malformed_page_is_a_parse_error(page: Any) -> None:
    """Whatever is wrong with a timeline page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError):
        parse_tweets(page)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["9999-12-31T23:59:59-23:00", "123", "replied_to"]),
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
def test_any_corruption_of_a_recorded_page_is_parsed_or_a_parse_error(data: st.DataObject) -> None:
    """Replace any part of a recorded page with any JSON: the only failure is ParseError."""
    page = _load(data.draw(st.sampled_from(["GET_2_users_783214_mentions.json",
                                            "GET_2_users_2244994945_tweets.json"])))
    path = data.draw(st.sampled_from(_paths(page)[1:]))
    target = page
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    try:
        parsed = parse_tweets(page)
    except ParseError:
        return
    threads = Threads()
    threads.add(parsed.included + parsed.tweets)
    for tweet in parsed.tweets:
        chain = conversation_chain(tweet, threads, {}, DOCS_BRAND)
        conversation = chain.get(tweet.id) if isinstance(chain, dict) else None
        tweet_event(tweet, source=SOURCE, conversation=conversation or tweet.id,
                    actor=Actor.CUSTOMER)


def _tweet(tweet_id: str, author: str, *, root: str | None = None, parent: str | None = None,
           parent_author: str | None = None) -> Tweet:
    return Tweet(tweet_id, author, None, START, "", root or tweet_id, parent, parent_author)


B, C, D = "100", "200", "300"


@pytest.mark.parametrize(
    ("tweet", "known_tweets", "known", "gone", "expected"),
    [
        pytest.param(_tweet("1", C), [], {}, [], {"1": "1"}, id="fresh-mention"),
        pytest.param(_tweet("1", B), [], {}, [], {"1": None}, id="brand-announcement"),
        pytest.param(_tweet("2", B, root="1", parent="1", parent_author=C), [], {}, [],
                     {"2": "1"}, id="reply-to-root-by-customer"),
        pytest.param(_tweet("3", B, root="1", parent="2", parent_author=C), [], {}, [], "2",
                     id="deep-reply-root-author-unknown"),
        pytest.param(_tweet("3", C, root="1", parent="2", parent_author=B),
                     [_tweet("2", B, root="1", parent="1", parent_author=B)], {}, [],
                     {"2": None, "3": "3"}, id="customer-under-brand-self-thread"),
        pytest.param(_tweet("2", C, root="1", parent="1", parent_author=B), [], {}, [],
                     {"2": "2"}, id="customer-under-announcement"),
        pytest.param(_tweet("4", D, root="1", parent="3", parent_author=B), [],
                     {"3": "2"}, [], {"4": "2"}, id="follow-up-from-cache"),
        pytest.param(_tweet("4", D, root="1", parent="3", parent_author=B),
                     [_tweet("1", B)], {}, [], "3", id="parent-unknown"),
        pytest.param(_tweet("4", D, root="1", parent="3", parent_author=B),
                     [_tweet("1", B)], {}, ["3"], {"4": "4"}, id="deleted-parent-ends-walk"),
        pytest.param(_tweet("4", D, root="1", parent="3", parent_author=C),
                     [_tweet("3", C, root="1", parent="2"), _tweet("2", C, root="1", parent="1")],
                     {}, ["1"], {"2": "2", "3": "2", "4": "2"}, id="deleted-root"),
    ],
)
def test_conversation_is_the_top_most_tweet_not_by_the_brand(
        tweet: Tweet, known_tweets: list[Tweet], known: dict[str, str | None], gone: list[str],
        expected: dict[str, str | None] | str) -> None:
    """Conversations come from the root's author, the page and the cache, or name what to fetch."""
    threads = _page_of([*known_tweets, tweet])
    threads.end(gone)
    assert conversation_chain(tweet, threads, known, B) == expected


def test_snowflakes_carry_their_time() -> None:
    """A since_id from a time lets through every tweet made at or after it, nothing before."""
    at = datetime(2026, 3, 2, 15, 0, 10, 123000, tzinfo=UTC)
    floor = int(snowflake_floor(at))
    assert snowflake(at, 0) > floor >= snowflake(at - timedelta(milliseconds=1), 0xFFF)
    assert snowflake_time(str(snowflake(at, 77))) == at


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        pytest.param({}, True, id="minimal"),
        pytest.param({"user_id": "2244994945"}, True, id="user-id"),
        pytest.param({"user_id": "@XDevelopers"}, False, id="user-id-not-numeric"),
        pytest.param({"base_url": "http://api.x.com"}, False, id="plain-http-remote"),
        pytest.param({"base_url": "http://127.0.0.1:8080"}, True, id="plain-http-loopback"),
        pytest.param({"base_url": "https://api.x.com/?token=1"}, False, id="query"),
        pytest.param({"max_results": 5}, True, id="max-results-5"),
        pytest.param({"max_results": 4}, False, id="max-results-4"),
        pytest.param({"max_results": 101}, False, id="max-results-101"),
        pytest.param({"lag": "2h"}, False, id="lag-too-long"),
        pytest.param({"bearer": "x"}, False, id="unknown-key"),
    ],
)
def test_settings_validation(changes: dict[str, Any], accepted: bool) -> None:
    """Settings are checked: a numeric user id, https unless loopback, 5-100 per page."""
    data = {"name": SOURCE, "kind": "x", "token": TOKEN} | changes
    if accepted:
        assert TOKEN not in repr(XSettings.model_validate(data))
    else:
        with pytest.raises(ValidationError):
            XSettings.model_validate(data)


def test_registered_under_its_kind() -> None:
    """The registry maps "x" to this connector, which satisfies the protocol."""
    assert registry()["x"] is XConnector
    assert isinstance(XConnector({"name": SOURCE, "kind": "x", "token": TOKEN}), Connector)


# Against the fake, served for real ---------------------------------------------------


@dataclass
class Served:
    """A world, its fake served on loopback, and a poll context on the world's clock."""

    world: XWorld
    fake: XFake
    clock: SteppedClock
    base_url: str
    ctx: PollContext

    def connector(self, **changes: Any) -> XConnector:
        """A connector pointed at the fake."""
        data = {"name": SOURCE, "kind": "x", "token": TOKEN, "base_url": self.base_url} | changes
        return XConnector(XSettings.model_validate(data))

    def calls(self, path: str) -> int:
        """How many requests the fake served on ``path``."""
        return sum(1 for r in self.fake.controls.requests if r.path == path)

    def queries(self, path: str) -> list[dict[str, str]]:
        """The queries of the requests on ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]

    @property
    def mentions(self) -> str:
        """The brand's mentions path."""
        return MENTIONS.format(self.world.brand_id)


async def drain(connector: XConnector, cursor: Cursor | None, ctx: PollContext,
                limit: int = 60) -> tuple[list[Event], Cursor, list[Batch]]:
    """Poll until the connector says there is nothing more; return events, cursor, batches."""
    events: list[Event] = []
    batches: list[Batch] = []
    for _ in range(limit):
        batch = await connector.poll(cursor, ctx)
        batches.append(batch)
        events += batch.events
        cursor = batch.cursor
        if not batch.more:
            return events, cursor, batches
    raise AssertionError("the connector never stopped paging")


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The fake X served on loopback with a stepped clock."""
    clock = SteppedClock(START)
    world = XWorld(now=clock)
    fake = XFake(world, tokens={TOKEN: world.brand_id, APP_TOKEN: None})
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        ctx = PollContext(session=session, now=clock, since=START - timedelta(days=1))
        yield Served(world, fake, clock, base_url, ctx)


def _summary(events: list[Event]) -> list[tuple[str, Actor | None, str, str | None]]:
    return sorted((e.id, e.actor, e.conversation, e.text) for e in events)


async def test_mentions_and_replies_land_in_their_conversations(served: Served) -> None:
    """Each tweet lands in the top-most non-brand tweet of its thread; the brand's own do not."""
    world, at = served.world, START - timedelta(hours=1)
    brand = world.brand_id
    casey, dana = world.add_user("casey"), world.add_user("dana")
    mention = world.tweet(casey, "@acme my parcel is lost", at=at)
    reply = world.tweet(brand, "sorry, checking", at=at + timedelta(minutes=3), reply_to=mention)
    follow = world.tweet(casey, "any news?", at=at + timedelta(minutes=9), reply_to=reply)
    news = world.tweet(brand, "Spring sale starts today", at=at + timedelta(minutes=20))
    world.tweet(brand, "(2/2) and free shipping", at=at + timedelta(minutes=21), reply_to=news)
    under = world.tweet(dana, "shoes too?", at=at + timedelta(minutes=25), reply_to=news)
    answer = world.tweet(brand, "yes!", at=at + timedelta(minutes=27), reply_to=under)
    thanks = world.tweet(dana, "great", at=at + timedelta(minutes=30), reply_to=answer)
    world.retweet(brand, mention, at=at + timedelta(minutes=31))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert _summary(events) == sorted([
        (mention, Actor.CUSTOMER, mention, "@acme my parcel is lost"),
        (reply, Actor.AGENT, mention, "@casey sorry, checking"),
        (follow, Actor.CUSTOMER, mention, "@acme any news?"),
        (under, Actor.CUSTOMER, under, "@acme shoes too?"),
        (answer, Actor.AGENT, under, "@dana yes!"),
        (thanks, Actor.CUSTOMER, under, "@acme great"),
    ])
    assert {e.url for e in events if e.id == mention} == {f"https://x.com/casey/status/{mention}"}
    assert all(e.public and e.channel == "x" and e.source == SOURCE for e in events)
    assert served.calls(LOOKUP) == 0  # the expansions showed every parent needed


async def test_pages_down_with_next_token_to_since(served: Served) -> None:
    """Without a cursor, mentions are read from since_id = since, newest first, token by token."""
    world = served.world
    casey = world.add_user("casey")
    world.tweet(casey, "@acme too old", at=served.ctx.since - timedelta(hours=2))
    recent = [world.tweet(casey, f"@acme recent {n}", at=START - timedelta(hours=5, minutes=-n))
              for n in range(12)]
    events, _, _ = await drain(served.connector(max_results=5), None, served.ctx)
    assert sorted(e.id for e in events) == sorted(recent)
    queries = served.queries(served.mentions)
    assert [q.get("pagination_token") is None for q in queries] == [True, False, False]
    assert {q["since_id"] for q in queries} == {snowflake_floor(served.ctx.since)}
    assert {q["max_results"] for q in queries} == {"5"}


async def test_repoll_repeats_nothing_even_in_the_overlap(served: Served) -> None:
    """A re-poll re-reads the last ``lag`` but returns nothing it returned before."""
    casey = served.world.add_user("casey")
    served.world.tweet(casey, "@acme hello", at=START - timedelta(seconds=10))
    connector = served.connector()
    events, cursor, _ = await drain(connector, None, served.ctx)
    served.clock.advance(15)
    again, _, _ = await drain(connector, cursor, served.ctx)
    assert len(events) == 1
    assert again == []
    since_ids = [q["since_id"] for q in served.queries(served.mentions)]
    assert since_ids[-1] == snowflake_floor(START - timedelta(seconds=30))


async def test_tweet_that_shows_up_late_is_found_by_the_overlap(served: Served) -> None:
    """A tweet made before the last pass but shown in the timeline after it is still found."""
    world = served.world
    casey = world.add_user("casey")
    world.tweet(casey, "@acme first", at=START - timedelta(minutes=10))
    connector = served.connector()
    late = world.tweet(casey, "@acme slow to show", at=START - timedelta(seconds=5),
                       visible_after=15)
    _, cursor, first = await drain(connector, None, served.ctx)
    assert late not in {e.id for b in first for e in b.events}
    served.clock.advance(20)
    later, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in later] == [late]


async def test_cursor_survives_a_restart(served: Served) -> None:
    """A new instance resumes from the stored cursor; thread roots come back by lookup."""
    world = served.world
    casey = world.add_user("casey")
    news = world.tweet(world.brand_id, "news", at=START - timedelta(minutes=9))
    under = world.tweet(casey, "question", at=START - timedelta(minutes=8), reply_to=news)
    answer = world.tweet(world.brand_id, "answer", at=START - timedelta(minutes=7),
                         reply_to=under)
    events, cursor, _ = await drain(served.connector(), None, served.ctx)
    stored = json.loads(json.dumps(cursor))
    follow = world.tweet(casey, "thanks!", at=START + timedelta(seconds=5), reply_to=answer)
    served.clock.advance(40)
    later, _, _ = await drain(served.connector(), stored, served.ctx)
    assert [(e.id, e.conversation) for e in later] == [(follow, under)]
    assert {e.id for e in events} == {under, answer}
    assert served.calls(LOOKUP) == 1  # the new instance had no cache: one level looked up


async def test_watermark_is_the_older_finished_pass_minus_lag(served: Served) -> None:
    """No watermark until both streams finished a pass; then their older start minus lag."""
    casey = served.world.add_user("casey")
    served.world.tweet(casey, "@acme q", at=START - timedelta(minutes=3))
    connector = served.connector()
    cursor: Cursor | None = None
    watermarks = []
    for _ in range(4):
        batch = await connector.poll(cursor, served.ctx)
        watermarks.append(batch.watermark)
        cursor = batch.cursor
        served.clock.advance(7)
    # users/me; mentions pass at +7s; tweets pass at +14s; mentions again at +21s
    assert watermarks == [None, None, START + timedelta(seconds=7 - 30),
                          START + timedelta(seconds=14 - 30)]


async def test_rate_limited_then_server_error_then_success(served: Served) -> None:
    """[429 Retry-After: 2, 503, 200]: RateLimited(2), TransientError, then the page."""
    casey = served.world.add_user("casey")
    served.world.tweet(casey, "@acme hello", at=START - timedelta(minutes=5))
    connector = served.connector(user_id=served.world.brand_id)
    served.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
    with pytest.raises(RateLimited) as limited:
        await connector.poll(None, served.ctx)
    assert limited.value.retry_after == 2
    with pytest.raises(TransientError):
        await connector.poll(None, served.ctx)
    batch = await connector.poll(None, served.ctx)
    assert len(batch.events) == 1


async def test_429_without_retry_after_waits_for_the_reset(served: Served) -> None:
    """X's own 429 has no Retry-After: wait until x-rate-limit-reset (epoch seconds)."""
    served.fake.rate_limits["mentions"] = 1
    connector = served.connector(user_id=served.world.brand_id)
    await connector.poll(None, served.ctx)
    with pytest.raises(RateLimited) as limited:
        await served.connector(user_id=served.world.brand_id).poll(None, served.ctx)
    assert limited.value.retry_after == pytest.approx(15 * 60 - 10, abs=1)


async def test_spent_budget_is_waited_out_before_requesting(served: Served) -> None:
    """When x-rate-limit-remaining hits 0 the next poll raises RateLimited without a request."""
    served.fake.rate_limits["me"] = 1
    connector = served.connector()
    batch = await connector.poll(None, served.ctx)
    requests = len(served.fake.controls.requests)
    with pytest.raises(RateLimited) as limited:
        await connector.poll(batch.cursor, served.ctx)
    assert limited.value.retry_after == pytest.approx(15 * 60 - 10, abs=1)
    assert len(served.fake.controls.requests) == requests
    served.clock.advance(limited.value.retry_after + 1)
    await connector.poll(batch.cursor, served.ctx)
    assert len(served.fake.controls.requests) == requests + 1


async def test_html_page_then_continue_from_the_last_good_cursor(served: Served) -> None:
    """An HTML page is a ParseError with nothing returned; the same cursor then works."""
    casey = served.world.add_user("casey")
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    mention = served.world.tweet(casey, "@acme hello?", at=START + timedelta(seconds=1))
    served.clock.advance(5)
    served.fake.controls.faults.append(
        Fault(200, body="<html><body>Over capacity</body></html>", content_type="text/html"))
    with pytest.raises(ParseError):
        await connector.poll(cursor, served.ctx)
    events, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in events] == [mention]


async def test_refused_token_is_auth_error_without_the_token(served: Served) -> None:
    """A 401 is an AuthError whose message names the call but not the token."""
    with pytest.raises(AuthError) as refused:
        await served.connector(token="not-a-real-token-4242").poll(None, served.ctx)
    assert "users/me" in str(refused.value)
    assert "not-a-real-token" not in str(refused.value)


async def test_app_only_token_needs_the_user_id(served: Served) -> None:
    """An app-only token cannot ask users/me (403): configured with user_id, it polls fine."""
    casey = served.world.add_user("casey")
    mention = served.world.tweet(casey, "@acme hi", at=START - timedelta(minutes=1))
    with pytest.raises(AuthError):
        await served.connector(token=APP_TOKEN).poll(None, served.ctx)
    connector = served.connector(token=APP_TOKEN, user_id=served.world.brand_id)
    events, _, _ = await drain(connector, None, served.ctx)
    assert [e.id for e in events] == [mention]
    assert await connector.check(served.ctx) == f"authenticated as @acme ({served.world.brand_id})"


async def test_unknown_user_id_is_fatal(served: Served) -> None:
    """A user id X does not know is a FatalError, for polls and checks alike."""
    connector = served.connector(user_id="999")
    with pytest.raises(FatalError, match="no user with id 999"):
        await connector.poll(None, served.ctx)
    with pytest.raises(FatalError, match="no user with id 999"):
        await connector.check(served.ctx)


async def test_connection_reset_is_transient(served: Served) -> None:
    """A connection dropped mid-response is a TransientError."""
    served.fake.controls.faults.append(Fault(reset=True))
    with pytest.raises(TransientError):
        await served.connector().poll(None, served.ctx)


async def test_check_names_the_account(served: Served) -> None:
    """check() proves the token by naming its account."""
    expected = f"authenticated as @acme ({served.world.brand_id})"
    assert await served.connector().check(served.ctx) == expected
    served.fake.controls.assert_called("/2/users/me", times=1)


async def test_hostile_text_is_kept_as_inert_data(served: Served) -> None:
    """Markup, entities, Rich markup, ANSI escapes and 10 kB come back exactly as typed."""
    world = served.world
    text = ("@acme <script>alert('x')</script> &amp; [bold red]PAY NOW[/] "
            "\x1b[31mred\x1b[0m \u202eevil " + "A" * 10_000)
    mention = world.tweet(world.add_user("mallory"), text, at=START - timedelta(minutes=1))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert [(e.id, e.text, e.author) for e in events] == [(mention, text, "mallory")]


async def test_thread_lookups_are_bounded_and_nothing_is_lost(served: Served) -> None:
    """Deep threads cost at most MAX_LOOKUP_ROUNDS lookups a poll; the page waits, then lands."""
    world = served.world
    casey = world.add_user("casey")
    root = world.tweet(world.brand_id, "thread", at=START - timedelta(minutes=50))
    parent = root
    for n in range(12):  # a long self-thread of the brand: nobody to answer yet
        parent = world.tweet(world.brand_id, f"part {n}", at=START - timedelta(minutes=40 - n),
                             reply_to=parent)
    question = world.tweet(casey, "and part 7?", at=START - timedelta(minutes=20),
                           reply_to=parent)
    connector = served.connector(user_id=world.brand_id)
    cursor: Cursor = Rounds().dump()
    events: list[Event] = []
    held = []
    for _ in range(12):
        before = served.calls(LOOKUP)
        batch = await connector.poll(cursor, served.ctx)
        assert served.calls(LOOKUP) - before <= MAX_LOOKUP_ROUNDS
        if batch.cursor == cursor and batch.more:
            held.append(batch.events)
        events += batch.events
        cursor = batch.cursor
        if not batch.more:
            break
    assert [(e.id, e.conversation) for e in events] == [(question, question)]
    assert served.calls(LOOKUP) == 6  # each lookup shows two levels (the parent expanded)
    assert held == [()]


async def test_deleted_parent_ends_the_walk(served: Served) -> None:
    """A tweet whose parent was deleted opens its own conversation under the brand's root."""
    world = served.world
    casey, dana = world.add_user("casey"), world.add_user("dana")
    news = world.tweet(world.brand_id, "news", at=START - timedelta(minutes=9))
    first = world.tweet(casey, "hmm", at=START - timedelta(minutes=8), reply_to=news)
    middle = world.tweet(dana, "agreed", at=START - timedelta(minutes=7), reply_to=first)
    last = world.tweet(casey, "@acme so?", at=START - timedelta(minutes=6), reply_to=middle)
    world.delete(middle)
    world.delete(first)
    events, _, _ = await drain(served.connector(user_id=world.brand_id), None, served.ctx)
    assert [(e.id, e.conversation) for e in events] == [(last, last)]


# The fake itself behaves like X ------------------------------------------------------


async def _get(served: Served, path: str, params: dict[str, str] | None = None,
               token: str = TOKEN) -> aiohttp.ClientResponse:
    return await served.ctx.session.get(served.base_url + path, params=params,
                                        headers={"Authorization": f"Bearer {token}"})


async def test_fake_timeline_pages_like_x(served: Served) -> None:
    """Newest first; only asked-for fields; next_token pages older; empty is meta only."""
    casey = served.world.add_user("casey")
    ids = [served.world.tweet(casey, f"@acme n{n} & more", at=START - timedelta(seconds=9 - n))
           for n in range(7)]
    first = await (await _get(served, served.mentions, {"max_results": "5"})).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:5]
    assert set(first["data"][0]) == {"id", "text", "edit_history_tweet_ids"}
    assert first["data"][0]["text"] == "@acme n6 &amp; more"
    rest = await (await _get(served, served.mentions, {
        "max_results": "5", "pagination_token": first["meta"]["next_token"]})).json()
    assert [t["id"] for t in rest["data"]] == ids[1::-1]
    assert "next_token" not in rest["meta"]
    empty = await (await _get(served, served.mentions, {"since_id": ids[-1]})).json()
    assert empty == {"meta": {"result_count": 0}}
    small = await _get(served, served.mentions, {"max_results": "4"})
    assert small.status == 400


async def test_fake_refuses_like_x(served: Served) -> None:
    """A bad token is X's 401 problem; an app-only token on users/me is a 403."""
    refused = await _get(served, "/2/users/me", token="nope")
    assert (refused.status, await refused.json()) == (401, {
        "title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
    app_only = await _get(served, "/2/users/me", token=APP_TOKEN)
    assert app_only.status == 403


async def test_fake_reports_rate_limit_and_server_time(served: Served) -> None:
    """Each answer carries x-rate-limit-* (epoch reset on the 15-minute grid) and X's date."""
    response = await _get(served, served.mentions)
    assert response.headers["x-rate-limit-limit"] == "450"
    assert response.headers["x-rate-limit-remaining"] == "449"
    assert response.headers["x-rate-limit-reset"] == str(
        int(START.timestamp()) // 900 * 900 + 900)
    assert response.headers["date"] == "Mon, 02 Mar 2026 15:00:10 UTC"


def test_fake_tweets_have_the_recorded_shape() -> None:
    """A fake tweet without extra fields has exactly the recorded default keys."""
    world = XWorld(now=lambda: START)
    tweet_id = world.tweet(world.brand_id, "hello", at=START)
    served_tweet = world.tweet_json(world.tweets[tweet_id], frozenset())
    recorded = _load("GET_2_users_783214_mentions.json")["data"][0]
    assert set(served_tweet) == set(recorded)
    assert snowflake_time(tweet_id) == START


async def test_corrupt_thread_leaves_the_tweet_standing_alone(served: Served) -> None:
    """A reply cycle the API cannot untangle ends with the tweet in its own conversation."""
    world = served.world
    casey = world.add_user("casey")
    user = world.users[casey]
    loop = {"data": [{"id": "1900000000000000001", "text": "@acme a", "author_id": casey,
                      "conversation_id": "1900000000000000000",
                      "created_at": "2026-03-02T14:59:00.000Z",
                      "referenced_tweets": [{"type": "replied_to", "id": "1900000000000000002"}]}],
            "includes": {"users": [world.user_json(user)],
                         "tweets": [{"id": "1900000000000000002", "text": "b", "author_id": casey,
                                     "conversation_id": "1900000000000000000",
                                     "referenced_tweets": [{"type": "replied_to",
                                                            "id": "1900000000000000001"}]}]},
            "meta": {"result_count": 1}}
    served.fake.controls.faults.append(Fault(200, body=json.dumps(loop)))
    connector = served.connector(user_id=world.brand_id)
    batch = await connector.poll(None, served.ctx)
    assert [(e.id, e.conversation) for e in batch.events] == [
        ("1900000000000000001", "1900000000000000001")]
    served.fake.controls.assert_called(LOOKUP, times=1)
