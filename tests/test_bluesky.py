"""Tests of the Bluesky connector: pure parsing on recorded payloads, polling the served fake."""

from __future__ import annotations

import base64
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
from connectors._passes import Pass
from connectors.bluesky import (
    MAX_THREAD_LOOKUPS,
    BlueskyConnector,
    BlueskySettings,
    PostNotFound,
    SessionExpired,
    conversation_chain,
    jwt_expiry,
    parse_author_feed,
    parse_notifications,
    parse_post_view,
    parse_session,
    parse_thread,
    post_event,
    xrpc_error,
)
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.bluesky import BlueskyFake, BlueskyWorld, tid
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind

PASSWORD = "sesame-7f3c-9a1e-secret"
START = datetime(2026, 3, 2, 15, 0, 10, tzinfo=UTC)
SOURCE = "acme-bluesky"
BRAND = "acme.bsky.social"
RECORDED_BRAND = "did:plc:iijrtk7ocored6zuziwmqq3c"  # the account of the recorded notifications
DOCS_BRAND = "did:plc:z72i7hdynmk6r22z27h6tvur"  # bsky.app, the account of the docs-derived pages
NOTIFICATIONS = "/xrpc/app.bsky.notification.listNotifications"
FEED = "/xrpc/app.bsky.feed.getAuthorFeed"
THREAD = "/xrpc/app.bsky.feed.getPostThread"
CREATE = "/xrpc/com.atproto.server.createSession"
REFRESH = "/xrpc/com.atproto.server.refreshSession"


def _load(name: str) -> Any:
    return json.loads(fixture_path("bluesky", name).read_text())


def _recorded_notifications() -> Any:
    return _load("GET_xrpc_app.bsky.notification.listNotifications_excerpt.json")


# Pure parsing of recorded payloads ---------------------------------------------------


def test_recorded_notifications_keep_every_reason_and_the_cursor() -> None:
    """The recorded page parses whole; only its two replies carry a post; the cursor is kept."""
    page = parse_notifications(_recorded_notifications())
    assert [n.reason for n in page.notifications] == [
        "like", "like", "reply", "reply", "follow", "like", "like", "follow", "like", "like",
        "follow"]
    assert [n.post is not None for n in page.notifications].count(True) == 2
    assert page.cursor == (
        "1693647073508::bafyreif5ion4zgoeksmefhyjf6fbpsjpojbcw33vxhqlh3rc7u33hdde3i")


def test_recorded_reply_is_a_customer_message_in_its_authors_thread() -> None:
    """A recorded reply whose thread root is the replier's own post lands in that root."""
    post = parse_notifications(_recorded_notifications()).notifications[2].post
    assert post is not None
    root = "at://did:plc:wpmuup4caccl3a726wdni6wj/app.bsky.feed.post/3k6k3k3gwjt2q"
    assert conversation_chain(post.uri, post.root, {}, {}, RECORDED_BRAND) == {post.uri: root}
    event = post_event(post, source=SOURCE, conversation=root, actor=Actor.CUSTOMER)
    assert event == Event(
        source=SOURCE,
        conversation="at://did:plc:wpmuup4caccl3a726wdni6wj/app.bsky.feed.post/3k6k3k3gwjt2q",
        id="at://did:plc:wpmuup4caccl3a726wdni6wj/app.bsky.feed.post/3k6k4as23yu2g",
        at=datetime(2023, 9, 4, 4, 0, 35, 516000, tzinfo=UTC),
        kind=EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
        public=True,
        channel="bluesky",
        url="https://bsky.app/profile/maccalennon.bsky.social/post/3k6k4as23yu2g",
        author="maccalennon.bsky.social",
        text="あ、なるほどそういうことだったんですね\uff01ご親切にありがとうございます😊",
    )


def test_recorded_clock_skew_keeps_the_indexed_time() -> None:
    """The recorded like "created" 45 minutes after it was indexed sorts at its index time."""
    note = parse_notifications(_recorded_notifications()).notifications[6]
    assert note.at == datetime(2023, 9, 3, 23, 17, 30, 788000, tzinfo=UTC)


def test_post_time_is_the_earlier_of_created_and_indexed() -> None:
    """A post record dated in the future sorts at its indexing; one dated earlier at its date."""
    data = _recorded_notifications()
    data["notifications"][2]["record"]["createdAt"] = "2099-01-01T00:00:00Z"
    data["notifications"][3]["record"]["createdAt"] = "2023-09-04T02:57:49.000Z"
    data["notifications"][3]["record"]["reply"]["root"]["uri"] = "not a uri"
    with pytest.raises(ParseError, match="AT URI"):
        parse_notifications(data)
    data["notifications"][3]["record"]["reply"]["root"]["uri"] = (
        "at://did:plc:aajyn6qzw67cnmwf7zxzbjdy/app.bsky.feed.post/3k6jygcpsfz23")
    posts = [n.post for n in parse_notifications(data).notifications if n.post is not None]
    assert [p.at for p in posts] == [datetime(2023, 9, 4, 4, 0, 35, 516000, tzinfo=UTC),
                                     datetime(2023, 9, 4, 2, 57, 49, tzinfo=UTC)]


def test_docs_mentions_page_carries_labels_and_quotes() -> None:
    """Mentions parse with their author's labels; a quote is a post of its own thread."""
    page = parse_notifications(_load(
        "GET_xrpc_app.bsky.notification.listNotifications_mentions.json"))
    spam, mention, quote = (n.post for n in page.notifications)
    assert spam is not None
    assert mention is not None
    assert quote is not None
    assert spam.labels == {"spam"}
    assert (mention.text, mention.root, mention.labels) == (
        "@bsky.app my custom domain handle stopped resolving, can you help?", None, frozenset())
    assert conversation_chain(quote.uri, quote.root, {}, {}, DOCS_BRAND) == {quote.uri: quote.uri}


def test_docs_author_feed_places_every_reply() -> None:
    """The brand's replies resolve from the page alone; the repost and the announcement do not."""
    page = parse_author_feed(_load("GET_xrpc_app.bsky.feed.getAuthorFeed.json"))
    assert [(i.repost, i.pinned) for i in page.items] == [
        (False, False), (True, False), (False, False), (False, False)]
    assert page.items[1].sort_at == datetime(2024, 1, 9, 17, 2, 55, 198000, tzinfo=UTC)
    parents: dict[str, str | None] = {}
    for item in page.items:
        parents.update(item.parents)
        parents[item.post.uri] = item.post.parent
    answer, _, under, announcement = (i.post for i in page.items)
    customer = "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/"
    assert conversation_chain(answer.uri, answer.root, parents, {}, DOCS_BRAND) == {
        answer.uri: customer + "3kilqi7ibxk2e"}
    question = customer + "3kilonmuzrk2u"
    assert conversation_chain(under.uri, under.root, parents, {}, DOCS_BRAND) == {
        under.uri: question, question: question}
    assert conversation_chain(announcement.uri, None, parents, {}, DOCS_BRAND) == {
        announcement.uri: None}
    assert page.cursor == "2024-01-09T16:00:11.804Z"


def test_recorded_thread_is_its_own_root() -> None:
    """The recorded getPostThread (a post with an image and a quote) has no parent."""
    data = _load("GET_xrpc_app.bsky.feed.getPostThread_embed_media.json")
    uri = "at://did:plc:kvwvcn5iqfooopmyzvb4qzba/app.bsky.feed.post/3kaheyt6vpc22"
    assert parse_thread(data, uri) == {uri: None}
    post = parse_post_view(data["thread"]["post"])
    assert (post.text, post.handle, post.at) == (
        "", "test.marshal.dev", datetime(2023, 9, 28, 12, 49, 36, 735000, tzinfo=UTC))


def test_docs_session_expiry_comes_from_the_jwt() -> None:
    """createSession's access token says when it expires: two hours after it was issued."""
    session = parse_session(_load("POST_xrpc_com.atproto.server.createSession.json"))
    assert (session.did, session.handle) == (DOCS_BRAND, "bsky.app")
    assert session.access_expires == datetime(2023, 5, 9, 22, 3, 28, tzinfo=UTC)
    assert "eyJ" not in repr(session)


def _jwt(claims: Any) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.sig"


@pytest.mark.parametrize(
    ("token", "expires"),
    [
        pytest.param(_jwt({"exp": 1683669808}), datetime(2023, 5, 9, 22, 3, 28, tzinfo=UTC),
                     id="exp"),
        pytest.param(_jwt({"sub": "did:plc:x"}), None, id="no-exp"),
        pytest.param(_jwt({"exp": "tomorrow"}), None, id="exp-not-a-number"),
        pytest.param(_jwt({"exp": 10**30}), None, id="exp-overflows"),
        pytest.param(_jwt(["exp"]), None, id="claims-not-an-object"),
        pytest.param("not-a-jwt", None, id="no-dots"),
        pytest.param("a.!!!.c", None, id="bad-base64"),
    ],
)
def test_jwt_expiry(token: str, expires: datetime | None) -> None:
    """The access token's expiry is read when it is there, and never raises."""
    assert jwt_expiry(token) == expires


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        pytest.param(400, b'{"error":"ExpiredToken","message":"Token has expired"}',
                     SessionExpired, id="expired"),
        pytest.param(400, b'{"error":"ExpiredToken","message":"Token has been revoked"}',
                     SessionExpired, id="revoked-refresh"),
        pytest.param(401, b'{"error":"InvalidToken"}', AuthError, id="invalid-token"),
        pytest.param(400, b'{"error":"AccountTakedown"}', AuthError, id="takedown"),
        pytest.param(400, b'{"error":"NotFound","message":"Post not found: at://x"}',
                     PostNotFound, id="not-found"),
        pytest.param(400, b'{"error":"InvalidRequest"}', None, id="other-400"),
        pytest.param(502, b"<html>bad gateway</html>", None, id="html"),
        pytest.param(400, b'{"error":"Expired Token <script>"}', None, id="odd-name"),
    ],
)
def test_xrpc_errors_are_named_from_the_body(status: int, body: bytes,
                                             error: type[Exception] | None) -> None:
    """An XRPC error body names the precise error; others fall back to the status."""
    found = xrpc_error(status, body, "bluesky call (https://pds.example/xrpc/x)")
    if error is None:
        assert found is None
    else:
        assert type(found) is error
        assert "https://pds.example/xrpc/x" in str(found)


def _notification_page(**changes: Any) -> Any:
    page = _recorded_notifications()
    page["notifications"][2] |= changes
    return page


@pytest.mark.parametrize(
    "page",
    [
        pytest.param([], id="list-not-object"),
        pytest.param({"cursor": "x"}, id="no-notifications"),
        pytest.param({"notifications": [], "cursor": 7}, id="cursor-not-string"),
        pytest.param({"notifications": ["x"]}, id="item-not-object"),
        pytest.param(_notification_page(uri="https://bsky.app/post/1"), id="uri-not-at-uri"),
        pytest.param(_notification_page(uri="at://did:plc:x/../../admin"), id="uri-with-path"),
        pytest.param(_notification_page(indexedAt="yesterday"), id="bad-indexed-at"),
        pytest.param(_notification_page(indexedAt="2023-09-04T04:00:35"), id="naive-time"),
        pytest.param(_notification_page(reason=None), id="no-reason"),
        pytest.param(_notification_page(author={"handle": "x"}), id="author-without-did"),
        pytest.param(_notification_page(author={"did": "did:plc:someoneelse"}),
                     id="author-not-the-repository"),
        pytest.param(_notification_page(record={"$type": "app.bsky.feed.like"}),
                     id="reply-record-not-a-post"),
        pytest.param(_notification_page(record={"text": "hi", "reply": {"root": {}}}),
                     id="reply-ref-without-uri"),
    ],
)
def test_malformed_notification_page_is_a_parse_error(page: Any) -> None:
    """Whatever is wrong with a notifications page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError):
        parse_notifications(page)


def test_client_fields_never_fail_a_page() -> None:
    """Unreadable client-written text or createdAt fall back instead of blocking the stream."""
    page = _notification_page(record={"$type": "app.bsky.feed.post", "text": ["x"],
                                      "createdAt": "9999-12-31T23:59:59-23:00"})
    post = parse_notifications(page).notifications[2].post
    assert post is not None
    assert (post.text, post.at) == ("", datetime(2023, 9, 4, 4, 0, 35, 516000, tzinfo=UTC))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["9999-12-31T23:59:59-23:00", "at://did:plc:x/a/b"]),
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
    name = data.draw(st.sampled_from([
        "GET_xrpc_app.bsky.notification.listNotifications_excerpt.json",
        "GET_xrpc_app.bsky.feed.getAuthorFeed.json"]))
    page = _load(name)
    path = data.draw(st.sampled_from(_paths(page)[1:]))
    target = page
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    try:
        if "Notifications" in name or "notification" in name:
            posts = [n.post for n in parse_notifications(page).notifications
                     if n.post is not None]
        else:
            posts = [i.post for i in parse_author_feed(page).items]
    except ParseError:
        return
    for post in posts:
        post_event(post, source=SOURCE, conversation=post.uri, actor=Actor.CUSTOMER)


B = "did:plc:brand"
C = "did:plc:customer"
D = "did:plc:dana"


def _uri(did: str, rkey: str) -> str:
    return f"at://{did}/app.bsky.feed.post/{rkey}"


@pytest.mark.parametrize(
    ("uri", "root", "parents", "known", "expected"),
    [
        pytest.param(_uri(C, "1"), None, {}, {}, {_uri(C, "1"): _uri(C, "1")}, id="fresh-post"),
        pytest.param(_uri(B, "1"), None, {}, {}, {_uri(B, "1"): None}, id="brand-announcement"),
        pytest.param(_uri(B, "2"), _uri(C, "1"), {}, {}, {_uri(B, "2"): _uri(C, "1")},
                     id="root-by-customer"),
        pytest.param(_uri(C, "2"), _uri(B, "1"), {_uri(C, "2"): _uri(B, "1")}, {},
                     {_uri(C, "2"): _uri(C, "2")}, id="customer-under-announcement"),
        pytest.param(_uri(B, "3"), _uri(B, "1"), {_uri(B, "3"): _uri(C, "2"),
                                                  _uri(C, "2"): _uri(B, "1")}, {},
                     {_uri(B, "3"): _uri(C, "2"), _uri(C, "2"): _uri(C, "2")},
                     id="brand-answer-under-announcement"),
        pytest.param(_uri(D, "1"), _uri(B, "1"), {_uri(D, "1"): _uri(B, "3")},
                     {_uri(B, "3"): _uri(C, "2")}, {_uri(D, "1"): _uri(C, "2")},
                     id="follow-up-from-cache"),
        pytest.param(_uri(B, "2"), _uri(B, "1"), {_uri(B, "2"): _uri(B, "1")}, {},
                     {_uri(B, "2"): None}, id="brand-self-thread"),
        pytest.param(_uri(C, "3"), _uri(B, "1"), {_uri(C, "3"): _uri(B, "2")},
                     {_uri(B, "2"): None}, {_uri(C, "3"): _uri(C, "3")},
                     id="customer-under-brand-self-thread"),
        pytest.param(_uri(C, "3"), _uri(B, "1"), {_uri(C, "3"): _uri(B, "2")}, {}, None,
                     id="parent-unknown"),
        pytest.param(_uri(C, "3"), _uri(B, "1"), {_uri(C, "3"): _uri(C, "4"),
                                                  _uri(C, "4"): _uri(C, "3")}, {}, None,
                     id="cycle"),
    ],
)
def test_conversation_is_the_top_most_post_not_by_the_brand(
        uri: str, root: str | None, parents: dict[str, str | None],
        known: dict[str, str | None], expected: dict[str, str | None] | None) -> None:
    """Conversations come from the root's author, the page and the cache, or need a lookup."""
    assert conversation_chain(uri, root, parents, known, B) == expected


T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LAG = timedelta(seconds=60)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("before", "items", "next_page", "fresh", "finished", "after_floor", "top"),
    [
        pytest.param(Pass(), [("a", _at(-30)), ("b", _at(-4000))], "c1", ["a"], True,
                     _at(-60), _at(-60), id="first-pass-reaches-since"),
        pytest.param(Pass(), [("a", _at(-30)), ("b", _at(-40))], "c1", ["a", "b"], False,
                     None, None, id="first-page-of-a-long-pass"),
        pytest.param(Pass(floor=_at(-120), seen=(("a", _at(-30)),), top=_at(-120)),
                     [("b", _at(-10)), ("a", _at(-30)), ("z", _at(-200))], "c1", ["b"], True,
                     _at(-60), _at(-60), id="overlap-re-read-without-repeats"),
        pytest.param(Pass(floor=_at(-120)), [], None, [], True, _at(-60), _at(-60),
                     id="empty-list"),
        pytest.param(Pass(floor=_at(-120)), [("b", _at(-10))], None, ["b"], True,
                     _at(-60), _at(-60), id="no-older-page"),
    ],
)
def test_pass_reads_down_to_its_floor(before: Pass, items: list[tuple[str, datetime]],
                                      next_page: str | None, fresh: list[str], finished: bool,
                                      after_floor: datetime | None, top: datetime | None) -> None:
    """A pass returns what is new above its floor; a finished one moves the floor to start - lag."""
    wanted = {key for key, _ in items}
    after, found, done = before.advance(items, wanted, next_page, T0,
                                        since=_at(-3600), lag=LAG)
    assert (found, done) == (fresh, finished)
    if finished:
        assert (after.floor, after.top, after.page) == (after_floor, top, None)
        assert all(at >= after.floor for _, at in after.seen)  # type: ignore[operator]
    else:
        assert (after.page, after.started) == (next_page, T0)


def test_pass_survives_json() -> None:
    """A pass written to the cursor reads back equal; garbage reads back as a fresh pass."""
    state = Pass(floor=_at(-60), page="c::1", started=_at(0), seen=(("a", _at(-5)),),
                 top=_at(-90))
    assert Pass.load(json.loads(json.dumps(state.dump()))) == state
    assert Pass.load({"floor": 7, "seen": [["a"], "b", ["c", "nope"]], "page": ""}) == Pass()


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        pytest.param({}, True, id="minimal"),
        pytest.param({"handle": "@acme.bsky.social"}, True, id="leading-at"),
        pytest.param({"handle": "did:plc:z72i7hdynmk6r22z27h6tvur"}, True, id="did"),
        pytest.param({"handle": "acme"}, False, id="not-a-domain"),
        pytest.param({"handle": "acme bsky.social"}, False, id="space"),
        pytest.param({"base_url": "http://bsky.social"}, False, id="plain-http-remote"),
        pytest.param({"base_url": "http://127.0.0.1:8080"}, True, id="plain-http-loopback"),
        pytest.param({"base_url": "https://u:p@bsky.social"}, False, id="credentials-in-url"),
        pytest.param({"reasons": ["mention", "quote"]}, True, id="quotes"),
        pytest.param({"reasons": []}, False, id="no-reasons"),
        pytest.param({"reasons": ["like"]}, False, id="like-is-not-a-message"),
        pytest.param({"limit": 100}, True, id="limit-100"),
        pytest.param({"limit": 101}, False, id="limit-101"),
        pytest.param({"lag": "2h"}, False, id="lag-too-long"),
        pytest.param({"lag": "30s"}, True, id="lag-30s"),
        pytest.param({"password": "x"}, False, id="unknown-key"),
    ],
)
def test_settings_validation(changes: dict[str, Any], accepted: bool) -> None:
    """Settings are checked: a handle or DID, https unless loopback, known reasons, limits."""
    data = {"name": SOURCE, "kind": "bluesky", "handle": BRAND, "app_password": PASSWORD} | changes
    if accepted:
        parsed = BlueskySettings.model_validate(data)
        assert not parsed.handle.startswith("@")
        assert PASSWORD not in repr(parsed)
    else:
        with pytest.raises(ValidationError):
            BlueskySettings.model_validate(data)


def test_registered_under_its_kind() -> None:
    """The registry maps "bluesky" to this connector, which satisfies the protocol."""
    assert registry()["bluesky"] is BlueskyConnector
    connector = BlueskyConnector({"name": SOURCE, "kind": "bluesky", "handle": BRAND,
                                  "app_password": PASSWORD})
    assert isinstance(connector, Connector)


# Against the fake, served for real ---------------------------------------------------


@dataclass
class Served:
    """A world, its fake served on loopback, and a poll context on the world's clock."""

    world: BlueskyWorld
    fake: BlueskyFake
    clock: SteppedClock
    base_url: str
    ctx: PollContext

    def connector(self, **changes: Any) -> BlueskyConnector:
        """A connector pointed at the fake."""
        data = {"name": SOURCE, "kind": "bluesky", "handle": BRAND, "app_password": PASSWORD,
                "base_url": self.base_url} | changes
        return BlueskyConnector(BlueskySettings.model_validate(data))

    def calls(self, path: str) -> int:
        """How many requests the fake served on ``path``."""
        return sum(1 for r in self.fake.controls.requests if r.path == path)

    def queries(self, path: str) -> list[dict[str, str]]:
        """The queries of the requests on ``path``."""
        return [r.query for r in self.fake.controls.requests if r.path == path]


async def drain(connector: BlueskyConnector, cursor: Cursor | None, ctx: PollContext,
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
    """The fake Bluesky served on loopback with a stepped clock."""
    clock = SteppedClock(START)
    world = BlueskyWorld(now=clock, brand=BRAND, app_password=PASSWORD)
    fake = BlueskyFake(world)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        ctx = PollContext(session=session, now=clock, since=START - timedelta(days=1))
        yield Served(world, fake, clock, base_url, ctx)


def _summary(events: list[Event]) -> list[tuple[str, EventKind, Actor | None, str, str | None]]:
    return sorted((e.id, e.kind, e.actor, e.conversation, e.text) for e in events)


async def test_mentions_and_replies_land_in_their_conversations(served: Served) -> None:
    """Each post lands in the top-most non-brand post of its thread; the brand's own do not."""
    world, at = served.world, START - timedelta(hours=1)
    brand = world.brand_did
    casey = world.add_account("casey.bsky.social")
    dana = world.add_account("dana.bsky.social")
    mention = world.post(casey, "@acme.bsky.social my parcel is lost", at=at)
    reply = world.post(brand, "sorry, checking", at=at + timedelta(minutes=3), reply_to=mention)
    follow = world.post(casey, "any news?", at=at + timedelta(minutes=9), reply_to=reply)
    news = world.post(brand, "Spring sale starts today", at=at + timedelta(minutes=20))
    world.post(brand, "(2/2) and free shipping", at=at + timedelta(minutes=21), reply_to=news)
    under = world.post(dana, "does it include shoes?", at=at + timedelta(minutes=25),
                       reply_to=news)
    answer = world.post(brand, "yes!", at=at + timedelta(minutes=27), reply_to=under)
    thanks = world.post(dana, "great, thanks", at=at + timedelta(minutes=30), reply_to=answer)
    events, _, _ = await drain(served.connector(), None, served.ctx)
    message = EventKind.MESSAGE
    assert _summary(events) == sorted([
        (mention, message, Actor.CUSTOMER, mention, "@acme.bsky.social my parcel is lost"),
        (reply, message, Actor.AGENT, mention, "sorry, checking"),
        (follow, message, Actor.CUSTOMER, mention, "any news?"),
        (under, message, Actor.CUSTOMER, under, "does it include shoes?"),
        (answer, message, Actor.AGENT, under, "yes!"),
        (thanks, message, Actor.CUSTOMER, under, "great, thanks"),
    ])
    assert {e.url for e in events if e.id == mention} == {
        f"https://bsky.app/profile/casey.bsky.social/post/{mention.rsplit('/', 1)[1]}"}
    assert all(e.public and e.channel == "bluesky" and e.source == SOURCE for e in events)
    # Only the follow-up under the brand's reply needed its thread looked up.
    assert served.queries(THREAD) == [{"uri": thanks, "depth": "0", "parentHeight": "1000"}]


async def test_reposts_likes_and_follows_are_not_messages(served: Served) -> None:
    """The brand reposting, or people liking the brand, makes no event."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    post = world.post(casey, "look what I built", at=START - timedelta(minutes=9))
    world.repost(world.brand_did, post, at=START - timedelta(minutes=8))
    news = world.post(world.brand_did, "We're hiring", at=START - timedelta(minutes=7))
    world.like(casey, news, at=START - timedelta(minutes=6))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert events == []


async def test_quotes_are_read_only_when_asked_for(served: Served) -> None:
    """A quote-post of the brand is a customer message when ``quote`` is a configured reason."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    news = world.post(world.brand_did, "We're hiring", at=START - timedelta(minutes=9))
    quote = world.post(casey, "they never answer applications", quote=news,
                       at=START - timedelta(minutes=8))
    plain, _, _ = await drain(served.connector(), None, served.ctx)
    quoted, _, _ = await drain(served.connector(reasons=["mention", "reply", "quote"]), None,
                               served.ctx)
    assert plain == []
    assert [(e.id, e.conversation, e.actor) for e in quoted] == [(quote, quote, Actor.CUSTOMER)]


async def test_pages_down_with_the_cursor_to_since(served: Served) -> None:
    """Without a cursor, mentions are read newest first page by page, down to ``since`` only."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    world.post(casey, "@acme.bsky.social too old", at=served.ctx.since - timedelta(hours=2))
    recent = [world.post(casey, f"@acme.bsky.social recent {n}",
                         at=START - timedelta(hours=5 - n)) for n in range(5)]
    events, _, _ = await drain(served.connector(limit=2), None, served.ctx)
    assert sorted(e.id for e in events) == sorted(recent)
    cursors = [q.get("cursor") for q in served.queries(NOTIFICATIONS)]
    assert len(cursors) == 3
    assert cursors[0] is None
    assert all(cursors[1:])
    assert all(q["limit"] == "2" for q in served.queries(NOTIFICATIONS))


async def test_repoll_repeats_nothing_even_in_the_overlap(served: Served) -> None:
    """A re-poll re-reads the last ``lag`` but returns nothing it returned before."""
    casey = served.world.add_account("casey.bsky.social")
    served.world.post(casey, "@acme.bsky.social hello", at=START - timedelta(seconds=20))
    connector = served.connector()
    events, cursor, _ = await drain(connector, None, served.ctx)
    served.clock.advance(15)
    again, _, _ = await drain(connector, cursor, served.ctx)
    assert len(events) == 1
    assert again == []


async def test_late_indexed_post_is_found_by_the_overlap(served: Served) -> None:
    """A post written before the last pass but indexed after it sorts below it, and is found."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    world.post(casey, "@acme.bsky.social first", at=START - timedelta(minutes=10))
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    served.clock.advance(20)
    late = world.post(casey, "@acme.bsky.social written earlier", at=served.clock(),
                      created_at=START - timedelta(seconds=5))
    later, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in later] == [late]
    assert later[0].at == START - timedelta(seconds=5)


async def test_cursor_survives_a_restart(served: Served) -> None:
    """A new instance resumes from the stored cursor with a new session; nothing repeats."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    mention = world.post(casey, "@acme.bsky.social hello", at=START - timedelta(minutes=5))
    reply = world.post(world.brand_did, "hi!", at=START - timedelta(minutes=4), reply_to=mention)
    events, cursor, _ = await drain(served.connector(), None, served.ctx)
    stored = json.loads(json.dumps(cursor))
    follow = world.post(casey, "still broken", at=START + timedelta(seconds=5), reply_to=reply)
    served.clock.advance(30)
    later, _, _ = await drain(served.connector(), stored, served.ctx)
    assert [(e.id, e.conversation) for e in later] == [(follow, mention)]
    assert {e.id for e in events} == {mention, reply}
    assert served.calls(CREATE) == 2


async def test_watermark_is_the_older_finished_pass_minus_lag(served: Served) -> None:
    """No watermark until both streams finished a pass; then their older start minus lag."""
    casey = served.world.add_account("casey.bsky.social")
    served.world.post(casey, "@acme.bsky.social q", at=START - timedelta(minutes=3))
    connector = served.connector()
    cursor: Cursor | None = None
    watermarks = []
    for _ in range(5):
        batch = await connector.poll(cursor, served.ctx)
        watermarks.append(batch.watermark)
        cursor = batch.cursor
        served.clock.advance(7)
    # session; mentions pass from +7s (2 pages); feed pass at +21s; mentions again at +28s
    assert watermarks == [None, None, None, START + timedelta(seconds=7 - 60),
                          START + timedelta(seconds=21 - 60)]


async def test_rate_limited_then_server_error_then_success(served: Served) -> None:
    """[429 Retry-After: 2, 503, 200]: RateLimited(2), TransientError, then the session."""
    connector = served.connector()
    served.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
    with pytest.raises(RateLimited) as limited:
        await connector.poll(None, served.ctx)
    assert limited.value.retry_after == 2
    with pytest.raises(TransientError):
        await connector.poll(None, served.ctx)
    batch = await connector.poll(None, served.ctx)
    assert (batch.events, batch.more) == ((), True)
    assert served.calls(CREATE) == 3


async def test_429_without_retry_after_waits_for_the_reset(served: Served) -> None:
    """The PDS's own 429 has no Retry-After: wait until ratelimit-reset (epoch seconds)."""
    served.fake.rate_limit = 1
    await served.connector().check(served.ctx)  # another client spends the window
    with pytest.raises(RateLimited) as limited:
        await served.connector().poll(None, served.ctx)
    assert limited.value.retry_after == pytest.approx(290, abs=1)


async def test_spent_budget_is_waited_out_before_requesting(served: Served) -> None:
    """When ratelimit-remaining hits 0 the next poll raises RateLimited without a request."""
    served.fake.rate_limit = 1
    connector = served.connector()
    batch = await connector.poll(None, served.ctx)
    requests = len(served.fake.controls.requests)
    with pytest.raises(RateLimited) as limited:
        await connector.poll(batch.cursor, served.ctx)
    assert limited.value.retry_after == pytest.approx(290, abs=1)
    assert len(served.fake.controls.requests) == requests
    served.clock.advance(limited.value.retry_after + 1)
    await connector.poll(batch.cursor, served.ctx)
    assert len(served.fake.controls.requests) == requests + 1


async def test_session_budget_is_kept_locally(served: Served) -> None:
    """createSession is never called more than 30 times in 5 minutes, whatever happens."""
    served.fake.session_limit = 1000  # only the connector's own budget can stop it here
    connector = served.connector()
    stopped: RateLimited | None = None
    for _ in range(200):
        requests = len(served.fake.controls.requests)
        try:
            batch = await connector.poll(None, served.ctx)
        except RateLimited as limited:
            stopped = limited
            break
        if served.calls(CREATE) and batch.more:
            for token in served.fake.tokens.values():
                token.revoked = True  # every session dies at once: a new one is needed
    assert stopped is not None, "the session budget never stopped the connector"
    assert len(served.fake.controls.requests) == requests
    assert served.calls(CREATE) == 30
    assert stopped.retry_after == pytest.approx(300, abs=1)


async def test_html_page_then_continue_from_the_last_good_cursor(served: Served) -> None:
    """An HTML page is a ParseError with nothing returned; the same cursor then works."""
    casey = served.world.add_account("casey.bsky.social")
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    mention = served.world.post(casey, "@acme.bsky.social hello?",
                                at=START + timedelta(seconds=1))
    served.clock.advance(5)
    served.fake.controls.faults.append(
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"))
    with pytest.raises(ParseError):
        await connector.poll(cursor, served.ctx)
    events, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in events] == [mention]


async def test_refused_password_is_auth_error_without_the_password(served: Served) -> None:
    """A wrong app password is an AuthError whose message names the call but not the password."""
    with pytest.raises(AuthError) as refused:
        await served.connector(app_password="wrong-9b2d-4c1e-pass").poll(None, served.ctx)
    assert "createSession" in str(refused.value)
    assert "wrong-9b2d" not in str(refused.value)
    assert PASSWORD not in str(refused.value)


async def test_revoked_app_password_stops_a_running_connector(served: Served) -> None:
    """Revoking the app password ends the session: the connector reports AuthError."""
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    served.fake.revoke_app_password()
    ended = await connector.poll(cursor, served.ctx)  # refused token, refused refresh
    assert (ended.events, ended.more) == ((), True)
    with pytest.raises(AuthError):
        await connector.poll(ended.cursor, served.ctx)


async def test_expired_token_is_refreshed_and_polling_goes_on(served: Served) -> None:
    """A 400 ExpiredToken costs one refreshSession; nothing is lost, no new session is made."""
    casey = served.world.add_account("casey.bsky.social")
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    served.fake.expire_sessions()
    mention = served.world.post(casey, "@acme.bsky.social hi", at=START + timedelta(seconds=1))
    served.clock.advance(5)
    events, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in events] == [mention]
    assert (served.calls(CREATE), served.calls(REFRESH)) == (1, 1)


async def test_token_is_refreshed_before_it_expires(served: Served) -> None:
    """Close to the JWT's exp, the connector refreshes first instead of failing a call."""
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    served.clock.advance(2 * 3600 - 60)
    lists = served.calls(NOTIFICATIONS)
    batch = await connector.poll(cursor, served.ctx)
    assert (batch.more, served.calls(REFRESH), served.calls(NOTIFICATIONS)) == (True, 1, lists)
    await drain(connector, batch.cursor, served.ctx)
    assert served.calls(REFRESH) == 1


async def test_spent_refresh_token_means_a_new_session(served: Served) -> None:
    """When the refresh token is refused too, the next poll signs in again."""
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    served.fake.expire_sessions()
    for token in served.fake.tokens.values():
        token.revoked = token.kind == "refresh" or token.revoked
    await drain(connector, cursor, served.ctx)
    assert (served.calls(CREATE), served.calls(REFRESH)) == (2, 1)


async def test_connection_reset_is_transient(served: Served) -> None:
    """A connection dropped mid-response is a TransientError."""
    served.fake.controls.faults.append(Fault(reset=True))
    with pytest.raises(TransientError):
        await served.connector().poll(None, served.ctx)


async def test_check_names_the_account(served: Served) -> None:
    """check() signs in, then proves the session with getSession."""
    connector = served.connector()
    expected = f"authenticated as @{BRAND} ({served.world.brand_did})"
    assert await connector.check(served.ctx) == expected
    assert await connector.check(served.ctx) == expected
    served.fake.controls.assert_called("/xrpc/com.atproto.server.getSession", times=1)
    served.fake.controls.assert_called(CREATE, times=1)


async def test_hostile_text_is_kept_as_inert_data(served: Served) -> None:
    """Markup, Rich markup, ANSI escapes and 10 kB of text come back exactly as written."""
    world = served.world
    text = ("@acme.bsky.social <script>alert('x')</script> [bold red]PAY NOW[/] "
            "\x1b[31mred\x1b[0m \u202eevil" + "A" * 10_000)
    mallory = world.add_account("mallory.bsky.social", "<b>[link=evil]</b>")
    mention = world.post(mallory, text, at=START - timedelta(minutes=1))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert [(e.id, e.text, e.author) for e in events] == [(mention, text, "mallory.bsky.social")]


async def test_spam_opens_a_dismissed_conversation_and_never_joins_another(
        served: Served) -> None:
    """A labelled spammer's mention is dismissed at once; their reply in a thread is dropped."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    spammer = world.add_account("free-followers.example.net")
    world.label(spammer, "spam")
    thread = world.post(casey, "@acme.bsky.social my card was charged twice",
                        at=START - timedelta(minutes=9))
    answer = world.post(world.brand_did, "DM us please", at=START - timedelta(minutes=8),
                        reply_to=thread)
    world.post(spammer, "get 10k followers!!", at=START - timedelta(minutes=7), reply_to=answer)
    spam = world.post(spammer, "@acme.bsky.social get 10k followers!!",
                      at=START - timedelta(minutes=6))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert sorted((e.id, e.kind, e.conversation) for e in events) == sorted([
        (thread, EventKind.MESSAGE, thread),
        (answer, EventKind.MESSAGE, thread),
        (spam, EventKind.MESSAGE, spam),
        (f"{spam}#dismissed", EventKind.DISMISSED, spam),
    ])


async def test_thread_lookups_are_bounded_and_nothing_is_lost(served: Served) -> None:
    """Posts in unknown threads cost at most MAX_THREAD_LOOKUPS lookups a poll; the page waits."""
    world = served.world
    expected = {}
    for n in range(MAX_THREAD_LOOKUPS + 3):
        author = world.add_account(f"user{n}.bsky.social")
        news = world.post(world.brand_did, f"news {n}", at=START - timedelta(minutes=40 - n))
        more = world.post(world.brand_did, f"more news {n}", at=START - timedelta(minutes=30 - n),
                          reply_to=news)
        question = world.post(author, f"question {n}", at=START - timedelta(minutes=20 - n),
                              reply_to=more)
        expected[question] = question
    connector = served.connector()
    cursor: Cursor | None = None
    events: list[Event] = []
    held = []
    for _ in range(12):
        before = served.calls(THREAD)
        batch = await connector.poll(cursor, served.ctx)
        assert served.calls(THREAD) - before <= MAX_THREAD_LOOKUPS
        if batch.cursor == cursor and batch.more:
            held.append(batch)
        events += batch.events
        cursor = batch.cursor
        if not batch.more:
            break
    assert {e.id: e.conversation for e in events} == expected
    assert served.calls(THREAD) == len(expected)
    assert [b.events for b in held] == [()]


async def test_post_deleted_before_its_lookup_is_skipped(served: Served) -> None:
    """A post whose thread lookup finds it deleted is skipped; the page goes on."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    news = world.post(world.brand_did, "news", at=START - timedelta(minutes=9))
    more = world.post(world.brand_did, "more", at=START - timedelta(minutes=8), reply_to=news)
    gone = world.post(casey, "@acme.bsky.social ?", at=START - timedelta(minutes=7),
                      reply_to=more)
    kept = world.post(casey, "@acme.bsky.social hello", at=START - timedelta(minutes=6))
    connector = served.connector()
    first = await connector.poll(None, served.ctx)
    listed = [world.notification_json(n) for n in reversed(world.notifications)]
    world.delete(gone)
    served.fake.controls.faults.append(Fault(200, body=json.dumps({"notifications": listed})))
    batch = await connector.poll(first.cursor, served.ctx)
    assert [e.id for e in batch.events] == [kept]
    served.fake.controls.assert_called(THREAD, times=1)


# The fake itself behaves like Bluesky ------------------------------------------------


async def _get(served: Served, nsid: str, params: dict[str, str] | None = None,
               token: str | None = None) -> aiohttp.ClientResponse:
    if token is None:
        async with served.ctx.session.post(
                f"{served.base_url}/xrpc/com.atproto.server.createSession",
                json={"identifier": BRAND, "password": PASSWORD}) as response:
            token = (await response.json())["accessJwt"]
    return await served.ctx.session.get(f"{served.base_url}/xrpc/{nsid}", params=params,
                                        headers={"Authorization": f"Bearer {token}"})


async def test_fake_notifications_page_with_a_keyset_cursor(served: Served) -> None:
    """Newest first; the cursor is ``<ms>::<cid>`` of the last item; reasons filter."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    posts = [world.post(casey, f"@acme.bsky.social n{n}", at=START + timedelta(seconds=n))
             for n in range(3)]
    world.like(casey, world.post(world.brand_did, "hi", at=START), at=START + timedelta(seconds=9))
    first = await (await _get(served, "app.bsky.notification.listNotifications",
                              {"limit": "2", "reasons": "mention"})).json()
    assert [n["uri"] for n in first["notifications"]] == [posts[2], posts[1]]
    assert first["cursor"].startswith(str(int((START + timedelta(seconds=1)).timestamp() * 1000)))
    rest = await (await _get(served, "app.bsky.notification.listNotifications",
                             {"limit": "2", "reasons": "mention",
                              "cursor": first["cursor"]})).json()
    assert [n["uri"] for n in rest["notifications"]] == [posts[0]]
    every = await (await _get(served, "app.bsky.notification.listNotifications")).json()
    assert [n["reason"] for n in every["notifications"]] == ["like", "mention", "mention",
                                                             "mention"]


async def test_fake_refuses_bad_and_expired_tokens_like_a_pds(served: Served) -> None:
    """An unknown token is 401 InvalidToken; an expired one 400 ExpiredToken."""
    unknown = await _get(served, "app.bsky.feed.getAuthorFeed", {"actor": BRAND}, token="nope")
    assert (unknown.status, (await unknown.json())["error"]) == (401, "InvalidToken")
    response = await _get(served, "app.bsky.feed.getAuthorFeed", {"actor": BRAND})
    assert response.status == 200
    served.fake.expire_sessions()
    expired = await _get(served, "app.bsky.feed.getAuthorFeed", {"actor": BRAND},
                         token=response.request_info.headers["Authorization"][7:])
    assert (expired.status, await expired.json()) == (
        400, {"error": "ExpiredToken", "message": "Token has expired"})


async def test_fake_reports_rate_limit_and_server_time(served: Served) -> None:
    """Each answer carries ratelimit-* (epoch reset on the 5-minute grid) and the world's Date."""
    response = await _get(served, "com.atproto.server.getSession")
    assert response.headers["ratelimit-limit"] == "3000"
    assert response.headers["ratelimit-remaining"] == "2998"
    assert response.headers["ratelimit-reset"] == str(int(START.timestamp()) // 300 * 300 + 300)
    assert response.headers["ratelimit-policy"] == "3000;w=300"
    assert response.headers["Date"] == "Mon, 02 Mar 2026 15:00:10 GMT"


async def test_fake_thread_shows_a_deleted_ancestor_as_not_found(served: Served) -> None:
    """getPostThread nests parents; a deleted one is a notFoundPost that ends the chain."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    root = world.post(casey, "root", at=START)
    middle = world.post(world.brand_did, "middle", at=START, reply_to=root)
    leaf = world.post(casey, "leaf", at=START, reply_to=middle)
    data = await (await _get(served, "app.bsky.feed.getPostThread", {"uri": leaf})).json()
    assert parse_thread(data, leaf) == {leaf: middle, middle: root, root: None}
    world.delete(middle)
    data = await (await _get(served, "app.bsky.feed.getPostThread", {"uri": leaf})).json()
    assert parse_thread(data, leaf) == {leaf: middle, middle: None}
    missing = await _get(served, "app.bsky.feed.getPostThread", {"uri": middle})
    assert (missing.status, (await missing.json())["error"]) == (400, "NotFound")


def test_fake_post_views_have_the_recorded_shape() -> None:
    """The fake's post view has every key of the recorded one, and its author too."""
    world = BlueskyWorld(now=lambda: START)
    uri = world.post(world.brand_did, "hello", at=START)
    served_view = world.post_view(world.posts[uri])
    recorded = _load("GET_xrpc_app.bsky.feed.getPostThread_embed_media.json")["thread"]["post"]
    assert set(recorded) - {"embed"} <= set(served_view)
    assert set(recorded["author"]) <= set(served_view["author"])
    assert parse_post_view(served_view).uri == uri


def test_fake_record_keys_are_sortable_tids() -> None:
    """Record keys are 13-character TIDs that sort like the times they were made at."""
    keys = [tid(START + timedelta(microseconds=n)) for n in (0, 1, 10**6)]
    assert all(len(k) == 13 for k in keys)
    assert keys == sorted(keys)


async def test_thread_that_explains_nothing_leaves_the_post_standing_alone(
        served: Served) -> None:
    """If even its own thread does not place a post, it opens its own conversation: no loop."""
    world = served.world
    casey = world.add_account("casey.bsky.social")
    news = world.post(world.brand_did, "news", at=START - timedelta(minutes=9))
    more = world.post(world.brand_did, "more", at=START - timedelta(minutes=8), reply_to=news)
    question = world.post(casey, "@acme.bsky.social ?", at=START - timedelta(minutes=7),
                          reply_to=more)
    connector = served.connector()
    first = await connector.poll(None, served.ctx)
    alone = {"thread": {"$type": "app.bsky.feed.defs#threadViewPost",
                        "post": world.post_view(world.posts[question]), "replies": []}}
    served.fake.controls.faults.extend([Fault(200, body=json.dumps(
        {"notifications": [world.notification_json(world.notifications[0])]})),
        Fault(200, body=json.dumps(alone))])
    batch = await connector.poll(first.cursor, served.ctx)
    assert [(e.id, e.conversation) for e in batch.events] == [(question, question)]
    served.fake.controls.assert_called(THREAD, times=1)
