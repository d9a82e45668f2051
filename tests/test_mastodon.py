"""Tests of the Mastodon connector: pure parsing on recorded payloads, polling the served fake."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from conftest import fixture_path
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors import registry
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.mastodon import MastodonFake, MastodonWorld, snowflake
from connectors.mastodon import (
    MAX_CONTEXT_LOOKUPS,
    UNRESOLVED,
    MastodonConnector,
    MastodonSettings,
    Post,
    Resolution,
    ThreadLink,
    chain_conversations,
    conversation_of,
    html_to_text,
    parse_context,
    parse_notifications,
    parse_status,
    parse_statuses,
    post_event,
    reset_wait,
    snowflake_floor,
)
from monitor.connector import Batch, Connector, Cursor, PollContext
from monitor.errors import AuthError, FatalError, ParseError, RateLimited, TransientError
from monitor.events import Actor, Event, EventKind

TOKEN = "tok-5f3c9a1e-very-secret"
START = datetime(2026, 3, 2, 15, 0, 10, tzinfo=UTC)
SOURCE = "acme-mastodon"
CONTEXT = "/api/v1/statuses/{}/context"


def _load(name: str) -> Any:
    return json.loads(fixture_path("mastodon", name).read_text())


# Pure parsing of recorded payloads ---------------------------------------------------


def test_recorded_notifications_give_the_mention_event() -> None:
    """The recorded page's mention becomes exactly one customer message; the follow none."""
    notes = parse_notifications(_load("GET_api_v1_notifications.json"))
    assert [(n.id, n.post is not None) for n in notes] == [("17", True), ("14", False)]
    post = notes[0].post
    assert post is not None
    event = post_event(post, source=SOURCE, conversation=post.id, actor=Actor.CUSTOMER)
    assert event == Event(
        source=SOURCE,
        conversation="109440144213643619",
        id="109440144213643619",
        at=datetime(2022, 12, 1, 19, 47, 55, 526000, tzinfo=UTC),
        kind=EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
        public=True,
        channel="mastodon",
        url="http://localhost:3000/@admin/109440144213643619",
        author="admin",
        text="@mastodonpy_test hello!",
    )


def test_single_notification_object_is_not_a_page() -> None:
    """The recorded single-notification body is an object, so as a page it is a ParseError."""
    with pytest.raises(ParseError, match="expected a list"):
        parse_notifications(_load("GET_api_v1_notifications_17.json"))


def test_mention_whose_status_is_null_is_skipped() -> None:
    """A mention notification whose status is gone (null) carries no post."""
    page = _load("GET_api_v1_notifications.json")
    page[0] = copy.deepcopy(page[0]) | {"status": None}
    assert [n.post for n in parse_notifications(page)] == [None, None]


def test_recorded_brand_reply_lands_in_the_conversation_it_answers() -> None:
    """The recorded reply, as the brand answering the recorded toot, is in the toot's thread."""
    posts = parse_statuses([_load("POST_api_v1_statuses_toot.json"),
                            _load("POST_api_v1_statuses_reply.json")])
    toot, reply = posts
    links = {toot.id: ThreadLink(toot.in_reply_to_id, by_brand=False),
             reply.id: ThreadLink(reply.in_reply_to_id, by_brand=True)}
    conversation = conversation_of(reply.id, links, {})
    assert (toot.id, conversation) == ("109440142472665266", "109440142472665266")
    assert isinstance(conversation, str)
    assert post_event(reply, source=SOURCE, conversation=conversation,
                      actor=Actor.AGENT) == Event(
        source=SOURCE,
        conversation="109440142472665266",
        id="109440142475488149",
        at=datetime(2022, 12, 1, 19, 47, 29, 4000, tzinfo=UTC),
        kind=EventKind.MESSAGE,
        actor=Actor.AGENT,
        public=True,
        channel="mastodon",
        url="http://localhost:3000/@mastodonpy_test/109440142475488149",
        author="mastodonpy_test",
        text="Reply!",
    )


def test_deleted_status_keeps_its_source_text() -> None:
    """A recorded deleted status (source ``text``, no ``content``) still parses."""
    post = parse_status(_load("DELETE_api_v1_statuses_109440142475488149.json"))
    assert (post.text, post.in_reply_to_id) == ("Reply!", "109440142472665266")


def test_recorded_empty_context_makes_the_status_its_own_conversation() -> None:
    """A context with no ancestors (the recording): a customer's status is its own conversation."""
    data = _load("GET_api_v1_statuses_109440146735213821_context.json")
    assert parse_context(data, "109440146735213821") == ()
    assert chain_conversations([("109440146735213821", False)]) == {
        "109440146735213821": "109440146735213821"}


@pytest.mark.parametrize(
    ("brand_wrote", "conversations"),
    [
        pytest.param(set(), {"toot": "toot", "reply": "toot", "status": "toot"},
                     id="customer-thread-top-is-the-root"),
        pytest.param({"toot"}, {"toot": None, "reply": "reply", "status": "reply"},
                     id="under-a-brand-announcement-top-is-the-first-customer"),
        pytest.param({"toot", "reply", "status"}, {"toot": None, "reply": None, "status": None},
                     id="brand-only-thread-has-none"),
    ],
)
def test_context_ancestors_give_the_conversation(
    brand_wrote: set[str], conversations: dict[str, str | None]
) -> None:
    """A context's ancestors, oldest first, give the top-most status not written by the brand."""
    toot = _load("POST_api_v1_statuses_toot.json")
    reply = _load("POST_api_v1_statuses_reply.json")
    reply["account"] = reply["account"] | {"id": "2"}
    data = {"ancestors": [toot, reply], "descendants": []}
    ancestors = parse_context(data, "1")
    assert ancestors == ((toot["id"], toot["account"]["id"]), (reply["id"], "2"))
    names = {toot["id"]: "toot", reply["id"]: "reply", "1": "status"}
    chain = [(status_id, names[status_id] in brand_wrote) for status_id, _ in ancestors]
    found = chain_conversations([*chain, ("1", "status" in brand_wrote)])
    assert {names[k]: None if v is None else names[v] for k, v in found.items()} == conversations


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="list-not-object"),
        pytest.param({"ancestors": None}, id="no-ancestors"),
        pytest.param({"ancestors": ["1"]}, id="ancestor-not-object"),
        pytest.param({"ancestors": [{"id": "1"}]}, id="ancestor-without-account"),
        pytest.param({"ancestors": [{"id": "../1", "account": {"id": "2"}}]}, id="bad-id"),
    ],
)
def test_malformed_context_is_a_parse_error(data: Any) -> None:
    """Whatever is wrong with a context, the error is ParseError and nothing else."""
    with pytest.raises(ParseError):
        parse_context(data, "1")


def _status(**changes: Any) -> dict[str, Any]:
    recorded: dict[str, Any] = _load("POST_api_v1_statuses_toot.json")
    return recorded | changes


@pytest.mark.parametrize(
    "page",
    [
        pytest.param({"error": "nope"}, id="object-not-list"),
        pytest.param(["status"], id="item-not-object"),
        pytest.param([_status(id=None)], id="missing-id"),
        pytest.param([_status(id="../../admin")], id="id-with-path"),
        pytest.param([_status(created_at="yesterday")], id="bad-created-at"),
        pytest.param([_status(created_at="2022-12-01T19:47:28")], id="naive-created-at"),
        pytest.param([_status(created_at="9999-12-31T23:59:59-23:00")], id="overflowing-time"),
        pytest.param([_status(account=None)], id="missing-account"),
        pytest.param([_status(account={"id": "1"})], id="account-without-acct"),
        pytest.param([_status(content=["<p>x</p>"])], id="content-not-string"),
        pytest.param([_status(in_reply_to_id={"id": 1})], id="reply-to-not-id"),
    ],
)
def test_malformed_status_page_is_a_parse_error(page: Any) -> None:
    """Whatever is wrong with a statuses page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError):
        parse_statuses(page)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("<html>", id="string"),
        pytest.param([{"id": "1", "created_at": "2022-12-01T19:47:55Z"}], id="missing-type"),
        pytest.param([{"id": "1", "type": "mention", "created_at": "2022-12-01T19:47:55Z",
                       "status": "gone"}], id="status-not-object"),
        pytest.param([{"id": "1", "type": "follow"}], id="missing-created-at"),
    ],
)
def test_malformed_notification_page_is_a_parse_error(page: Any) -> None:
    """Whatever is wrong with a notifications page, the error is ParseError and nothing else."""
    with pytest.raises(ParseError):
        parse_notifications(page)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["9999-12-31T23:59:59-23:00", "http://[::1", "7"]),
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
    page = _load("GET_api_v1_notifications.json")
    path = data.draw(st.sampled_from(_paths(page)[1:]))
    target = page
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(_JSON)
    try:
        notes = parse_notifications(page)
    except ParseError:
        return
    for note in notes:
        if note.post is not None:
            post_event(note.post, source=SOURCE, conversation=note.post.id, actor=Actor.CUSTOMER)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        pytest.param("<p>Hello</p><p>World</p>", "Hello\n\nWorld", id="paragraphs"),
        pytest.param("<p>one<br />two<br>three</p>", "one\ntwo\nthree", id="line-breaks"),
        pytest.param("<p>a &amp; b &lt;c&gt; &#39;d&#39;</p>", "a & b <c> 'd'", id="entities"),
        pytest.param('<p><span class="h-card"><a href="https://m.example/@acme" class="u-url '
                     'mention">@<span>acme</span></a></span> hi</p>', "@acme hi", id="mention"),
        pytest.param('<p><a href="https://example.com/a/very/long/path/to/a/page"><span '
                     'class="invisible">https://</span><span class="ellipsis">example.com/a/'
                     'very/long/path/to/</span><span class="invisible">a/page</span></a></p>',
                     "https://example.com/a/very/long/path/to/a/page", id="shortened-link"),
        pytest.param("<p>hi</p><script>alert(1)</script><style>p{}</style><p>there</p>",
                     "hi\n\nthere", id="script-and-style-dropped"),
        pytest.param("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
                     "<script>alert(1)</script>", id="escaped-script-is-text"),
        pytest.param("<p>x</p>\n<p>y</p>", "x\n\ny", id="whitespace-between-blocks"),
        pytest.param("<ul><li>a</li><li>b</li></ul><p>c</p>", "a\nb\n\nc", id="list"),
        pytest.param("<p>bad<![ cdata</p>", "bad", id="hostile-markup-no-crash"),
        pytest.param("<p>nul\x00here</p>", "nul\ufffdhere", id="nul-replaced"),
        pytest.param("", "", id="empty"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    """Status HTML becomes its plain text, paragraphs and breaks kept, markup gone."""
    assert html_to_text(html) == text


_WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Co", "Cn"),
                           blacklist_characters="@"),
    min_size=1, max_size=12,
)
_LINE = st.lists(_WORD, min_size=1, max_size=5).map(" ".join)
_PARAGRAPH = st.lists(_LINE, min_size=1, max_size=3).map("\n".join)
_TEXT = st.lists(_PARAGRAPH, min_size=1, max_size=3).map("\n\n".join)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_fake_html_reads_back_as_the_text_written(text: str) -> None:
    """Whatever plain text is posted, the connector reads back exactly that text."""
    world = MastodonWorld(now=lambda: START)
    status_id = world.post(world.add_account("casey"), text, at=START)
    assert html_to_text(world.statuses[status_id].content) == text


def _links(**statuses: tuple[str | None, bool]) -> dict[str, ThreadLink]:
    """Thread links by status id: ``id=(in_reply_to_id, by_brand)``."""
    return {key: ThreadLink(parent, by_brand) for key, (parent, by_brand) in statuses.items()}


BRAND, CUSTOMER = True, False


@pytest.mark.parametrize(
    ("status_id", "links", "known", "conversation"),
    [
        pytest.param("m", _links(m=(None, CUSTOMER)), {}, "m", id="mention-is-its-own"),
        pytest.param("y", _links(x=(None, CUSTOMER), y=("x", CUSTOMER)), {}, "x",
                     id="customer-thread-is-its-root"),
        pytest.param("c", _links(a=(None, BRAND), c=("a", CUSTOMER)), {}, "c",
                     id="reply-under-brand-announcement-is-its-own"),
        pytest.param("c2", _links(a=(None, BRAND), c1=("a", CUSTOMER), c2=("a", CUSTOMER)), {},
                     "c2", id="second-reply-under-announcement-is-its-own"),
        pytest.param("r", _links(m=(None, CUSTOMER), r=("m", BRAND)), {}, "m",
                     id="brand-reply-is-in-the-answered-conversation"),
        pytest.param("f", _links(m=(None, CUSTOMER), r=("m", BRAND), f=("r", CUSTOMER)), {}, "m",
                     id="follow-up-to-brand-reply-stays-in-the-mention"),
        pytest.param("r", _links(a=(None, BRAND), c=("a", CUSTOMER), r=("c", BRAND)), {}, "c",
                     id="brand-reply-under-announcement-is-the-customers"),
        pytest.param("f", _links(a=(None, BRAND), c=("a", CUSTOMER), r=("c", BRAND),
                                 f=("r", CUSTOMER)), {}, "c",
                     id="follow-up-under-announcement-is-the-customers"),
        pytest.param("a", _links(a=(None, BRAND)), {}, None, id="brand-announcement-has-none"),
        pytest.param("a2", _links(a=(None, BRAND), a2=("a", BRAND)), {}, None,
                     id="brand-self-thread-has-none"),
        pytest.param("f", _links(f=("r", CUSTOMER)), {"r": "m"}, "m", id="parent-known"),
        pytest.param("c", _links(c=("a", CUSTOMER)), {"a": None}, "c",
                     id="parent-known-as-brand-only"),
        pytest.param("r", _links(r=("c", BRAND)), {"c": "c"}, "c", id="brand-reply-parent-known"),
        pytest.param("x", {}, {"x": "m"}, "m", id="itself-known"),
        pytest.param("f", _links(f=("r", CUSTOMER)), {}, UNRESOLVED, id="parent-unknown"),
        pytest.param("f", _links(r=("m", BRAND), f=("r", CUSTOMER)), {}, UNRESOLVED,
                     id="grandparent-unknown"),
        pytest.param("1", _links(**{"1": ("2", CUSTOMER), "2": ("1", CUSTOMER)}), {},
                     UNRESOLVED, id="cycle"),
    ],
)
def test_conversation_of(status_id: str, links: dict[str, ThreadLink],
                         known: dict[str, str | None], conversation: Resolution) -> None:
    """A conversation is the top-most status at or above, not the brand's, else left unresolved."""
    assert conversation_of(status_id, links, known) == conversation


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"X-RateLimit-Reset": "2026-03-02T15:05:00.000000Z",
                      "Date": "Mon, 02 Mar 2026 15:00:10 GMT"}, 290.0, id="against-date"),
        pytest.param({"X-RateLimit-Reset": "2026-03-02T15:05:00Z"}, 230.0, id="no-date-uses-now"),
        pytest.param({"X-RateLimit-Reset": "2026-03-02T15:05:00Z", "Date": "soon"}, 230.0,
                     id="bad-date-uses-now"),
        pytest.param({"X-RateLimit-Reset": "2026-03-02T14:00:00Z",
                      "Date": "Mon, 02 Mar 2026 15:00:10 GMT"}, 0.0, id="past-reset-is-now"),
        pytest.param({"X-RateLimit-Reset": "in five minutes"}, None, id="unreadable-reset"),
        pytest.param({"X-RateLimit-Reset": "2026-03-02T15:05:00"}, None, id="naive-reset"),
        pytest.param({}, None, id="no-reset"),
    ],
)
def test_reset_wait(headers: dict[str, str], wait: float | None) -> None:
    """Seconds to X-RateLimit-Reset by the server's Date, else by our clock; None if unreadable."""
    assert reset_wait(headers, datetime(2026, 3, 2, 15, 1, 10, tzinfo=UTC)) == wait


def test_snowflake_floor_is_just_below_the_instant() -> None:
    """The first page of replies starts right below the first id of ``since``."""
    floor = int(snowflake_floor(START))
    assert snowflake(START) > floor >= snowflake(START - timedelta(milliseconds=1), 0xFFFF)


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [
        pytest.param({}, True, id="minimal"),
        pytest.param({"base_url": "http://mastodon.example"}, False, id="plain-http-remote"),
        pytest.param({"base_url": "http://127.0.0.1:8080"}, True, id="plain-http-loopback"),
        pytest.param({"base_url": "https://m.example/?x=1"}, False, id="query"),
        pytest.param({"base_url": "mastodon.example"}, False, id="no-scheme"),
        pytest.param({"limit": 80}, True, id="limit-80"),
        pytest.param({"limit": 81}, False, id="limit-81"),
        pytest.param({"limit": 0}, False, id="limit-0"),
        pytest.param({"account": "@acme@mastodon.example"}, True, id="account-full"),
        pytest.param({"account": "ac me"}, False, id="account-space"),
        pytest.param({"kind": "zendesk"}, False, id="wrong-kind"),
        pytest.param({"tokens": "x"}, False, id="unknown-key"),
    ],
)
def test_settings_validation(changes: dict[str, Any], accepted: bool) -> None:
    """Settings are checked: https unless loopback, page limit 1..80, a plausible acct."""
    data = {"name": SOURCE, "kind": "mastodon", "base_url": "https://mastodon.example/",
            "token": TOKEN} | changes
    if accepted:
        assert MastodonSettings.model_validate(data).base_url.endswith(("example", "8080"))
    else:
        with pytest.raises(ValidationError):
            MastodonSettings.model_validate(data)


def test_registered_under_its_kind() -> None:
    """The registry maps "mastodon" to this connector, which satisfies the protocol."""
    cls = registry()["mastodon"]
    assert cls is MastodonConnector
    connector = MastodonConnector({"name": SOURCE, "kind": "mastodon",
                                   "base_url": "https://m.example", "token": TOKEN})
    assert isinstance(connector, Connector)


# Against the fake, served for real ---------------------------------------------------


@dataclass
class Served:
    """A world, its fake served on loopback, and a poll context on the world's clock."""

    world: MastodonWorld
    fake: MastodonFake
    clock: SteppedClock
    base_url: str
    ctx: PollContext

    def connector(self, **changes: Any) -> MastodonConnector:
        """A connector pointed at the fake."""
        data = {"name": SOURCE, "kind": "mastodon", "base_url": self.base_url,
                "token": TOKEN} | changes
        return MastodonConnector(MastodonSettings.model_validate(data))

    def paths(self, prefix: str) -> list[dict[str, str]]:
        """The queries of the requests whose path starts with ``prefix``."""
        return [r.query for r in self.fake.controls.requests if r.path.startswith(prefix)]

    def context_calls(self) -> int:
        """How many thread-context lookups the fake served."""
        return sum(1 for r in self.fake.controls.requests if r.path.endswith("/context"))


async def drain(connector: MastodonConnector, cursor: Cursor | None, ctx: PollContext,
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
    """The fake Mastodon served on loopback with a stepped clock."""
    clock = SteppedClock(START)
    world = MastodonWorld(now=clock)
    fake = MastodonFake(world, token=TOKEN)
    async with serve(fake.app()) as base_url, aiohttp.ClientSession() as session:
        ctx = PollContext(session=session, now=clock, since=START - timedelta(days=1))
        yield Served(world, fake, clock, base_url, ctx)


def _summary(events: list[Event]) -> list[tuple[str, Actor | None, str, str | None, str | None]]:
    return sorted((e.id, e.actor, e.conversation, e.author, e.text) for e in events)


@pytest.mark.parametrize(
    ("max_held", "lookups"),
    [pytest.param(10, 0, id="follow-up-held-until-replies-read"),
     pytest.param(0, 1, id="no-room-to-hold-looks-it-up")],
)
async def test_mentions_and_replies_share_the_thread_conversation(
    served: Served, max_held: int, lookups: int
) -> None:
    """Brand replies and a follow-up mention to a reply all land in the first mention's thread."""
    world, at = served.world, START - timedelta(hours=1)
    casey = world.add_account("casey")
    mention = world.post(casey, "@acme my parcel is lost", at=at)
    reply = world.post(world.brand_id, "@casey sorry, checking", at=at + timedelta(minutes=3),
                       in_reply_to_id=mention)
    follow_up = world.post(casey, "@acme any news?", at=at + timedelta(minutes=9),
                           in_reply_to_id=reply, visibility="direct")
    second = world.post(world.brand_id, "@casey found it", at=at + timedelta(minutes=12),
                        in_reply_to_id=follow_up, visibility="direct")
    world.post(world.brand_id, "Spring sale starts today", at=at + timedelta(minutes=20))
    events, _, _ = await drain(MastodonConnector(served.connector().settings,
                                                 max_held=max_held), None, served.ctx)
    assert _summary(events) == [
        (mention, Actor.CUSTOMER, mention, "casey", "@acme my parcel is lost"),
        (reply, Actor.AGENT, mention, "acme", "@casey sorry, checking"),
        (follow_up, Actor.CUSTOMER, mention, "casey", "@acme any news?"),
        (second, Actor.AGENT, mention, "acme", "@casey found it"),
    ]
    assert all(e.public and e.channel == "mastodon" and e.source == SOURCE for e in events)
    assert {e.url for e in events if e.id == mention} == {
        f"https://mastodon.example/@casey/{mention}"}
    assert served.context_calls() == lookups


async def test_pages_up_with_min_id_from_the_link_header(served: Served) -> None:
    """New mentions are read upward in full pages, each from the previous page's Link prev."""
    world = served.world
    casey = world.add_account("casey")
    world.post(casey, "@acme first", at=START - timedelta(minutes=10))
    connector = served.connector(limit=2)
    first, cursor, _ = await drain(connector, None, served.ctx)
    ids = [world.post(casey, f"@acme question {n}", at=START + timedelta(seconds=n))
           for n in range(5)]
    served.clock.advance(10)
    served.fake.controls.requests.clear()
    events, _, batches = await drain(connector, cursor, served.ctx)
    assert sorted(e.id for e in events) == sorted(ids)
    assert [q.get("min_id") for q in served.paths("/api/v1/notifications")] == ["1", "3", "5"]
    assert [b.more for b in batches] == [True, True, True, False]
    assert len(first) == 1


async def test_first_poll_pages_down_to_since(served: Served) -> None:
    """Without a cursor, mentions are read newest first with max_id, down to ``since`` only."""
    world = served.world
    casey = world.add_account("casey")
    world.post(casey, "@acme too old", at=served.ctx.since - timedelta(hours=2))
    recent = [world.post(casey, f"@acme recent {n}", at=START - timedelta(hours=5 - n))
              for n in range(5)]
    events, _, _ = await drain(served.connector(limit=2), None, served.ctx)
    assert sorted(e.id for e in events) == sorted(recent)
    queries = served.paths("/api/v1/notifications")
    assert [(q.get("max_id"), q.get("min_id")) for q in queries] == [
        (None, None), ("5", None), ("3", None), (None, "6")]


async def test_repoll_finds_nothing_new(served: Served) -> None:
    """Polling again after everything was read returns no event."""
    casey = served.world.add_account("casey")
    served.world.post(casey, "@acme hello", at=START - timedelta(minutes=5))
    connector = served.connector()
    events, cursor, _ = await drain(connector, None, served.ctx)
    served.clock.advance(60)
    again, _, _ = await drain(connector, cursor, served.ctx)
    assert len(events) == 1
    assert again == []


async def test_cursor_survives_a_restart(served: Served) -> None:
    """A new instance resumes from the stored cursor and rebuilds thread roots by lookup."""
    world = served.world
    casey = world.add_account("casey")
    mention = world.post(casey, "@acme hello", at=START - timedelta(minutes=5))
    reply = world.post(world.brand_id, "@casey hi", at=START - timedelta(minutes=4),
                       in_reply_to_id=mention)
    events, cursor, _ = await drain(served.connector(), None, served.ctx)
    stored = json.loads(json.dumps(cursor))
    follow_up = world.post(casey, "@acme still broken", at=START + timedelta(seconds=5),
                           in_reply_to_id=reply)
    served.clock.advance(30)
    later, _, _ = await drain(served.connector(), stored, served.ctx)
    assert [(e.id, e.conversation) for e in later] == [(follow_up, mention)]
    served.fake.controls.assert_called(CONTEXT.format(follow_up), times=1)
    assert {e.id for e in events} == {mention, reply}


async def test_watermark_is_the_older_stream_top(served: Served) -> None:
    """No watermark while paging; then the server time of the older of the two tops."""
    casey = served.world.add_account("casey")
    for n in range(3):
        served.world.post(casey, f"@acme q{n}", at=START - timedelta(minutes=3 - n))
    connector = served.connector(limit=2)
    cursor: Cursor | None = None
    watermarks = []
    for _ in range(6):
        batch = await connector.poll(cursor, served.ctx)
        watermarks.append(batch.watermark)
        cursor = batch.cursor
        served.clock.advance(7)
    # mentions newest page, page down, top (+14s); verify; statuses top (+28s); mentions (+35s)
    assert watermarks == [None, None, None, None, START + timedelta(seconds=14),
                          START + timedelta(seconds=28)]


async def test_rate_limited_then_server_error_then_success(served: Served) -> None:
    """[429 Retry-After: 2, 503, 200]: RateLimited(2), TransientError, then the page."""
    casey = served.world.add_account("casey")
    served.world.post(casey, "@acme hello", at=START - timedelta(minutes=5))
    connector = served.connector()
    served.fake.controls.faults.extend([Fault(429, retry_after=2), Fault(503)])
    with pytest.raises(RateLimited) as limited:
        await connector.poll(None, served.ctx)
    assert limited.value.retry_after == 2
    with pytest.raises(TransientError):
        await connector.poll(None, served.ctx)
    batch = await connector.poll(None, served.ctx)
    assert len(batch.events) == 1


async def test_429_without_retry_after_waits_for_the_reset(served: Served) -> None:
    """Mastodon's own 429 has no Retry-After: wait until X-RateLimit-Reset instead."""
    served.fake.rate_limit = 1
    await served.connector().check(served.ctx)  # another instance spends the window
    with pytest.raises(RateLimited) as limited:
        await served.connector().poll(None, served.ctx)
    assert limited.value.retry_after == pytest.approx(290, abs=1)


async def test_spent_budget_is_waited_out_before_requesting(served: Served) -> None:
    """When Remaining hits 0 the next poll raises RateLimited without calling the server."""
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


async def test_html_page_then_continue_from_the_last_good_cursor(served: Served) -> None:
    """An HTML page is a ParseError with nothing returned; the same cursor then works."""
    casey = served.world.add_account("casey")
    connector = served.connector()
    _, cursor, _ = await drain(connector, None, served.ctx)
    mention = served.world.post(casey, "@acme hello?", at=START + timedelta(seconds=1))
    served.clock.advance(5)
    served.fake.controls.faults.append(
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html"))
    with pytest.raises(ParseError):
        await connector.poll(cursor, served.ctx)
    events, _, _ = await drain(connector, cursor, served.ctx)
    assert [e.id for e in events] == [mention]


async def test_refused_token_is_auth_error_without_the_token(served: Served) -> None:
    """A 401 is an AuthError whose message names the call but not the token."""
    served.fake.token = "another-token"
    with pytest.raises(AuthError) as refused:
        await served.connector().poll(None, served.ctx)
    assert "notifications" in str(refused.value)
    assert TOKEN not in str(refused.value)


async def test_connection_reset_is_transient(served: Served) -> None:
    """A connection dropped mid-response is a TransientError."""
    served.fake.controls.faults.append(Fault(reset=True))
    with pytest.raises(TransientError):
        await served.connector().poll(None, served.ctx)


async def test_hostile_content_is_kept_as_inert_text(served: Served) -> None:
    """Markup, Rich markup, ANSI escapes and 10 kB of text come back as the same plain text."""
    world = served.world
    text = ("@acme <script>alert('x')</script> [bold red]PAY NOW[/] \x1b[31mred\x1b[0m "
            + "A" * 10_000)
    mention = world.post(world.add_account("mallory", "<b>[link=evil]</b>"), text,
                         at=START - timedelta(minutes=1))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert [(e.id, e.text) for e in events] == [(mention, text)]


async def test_a_truncated_emoji_does_not_stop_the_source(served: Served) -> None:
    """A post cut in the middle of an emoji (a lone surrogate escape, which orjson refuses)
    is read as the standard library reads it, not refused as a page that is not JSON."""
    world = served.world
    mention = world.post(world.add_account("casey", "Casey"), "@acme help \ud83d",
                         at=START - timedelta(minutes=1))
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert [(e.id, e.text) for e in events] == [(mention, "@acme help \ud83d")]


async def test_deleted_mention_is_not_reported(served: Served) -> None:
    """A mention deleted before the poll is gone from the API and from the events."""
    casey = served.world.add_account("casey")
    kept = served.world.post(casey, "@acme one", at=START - timedelta(minutes=2))
    gone = served.world.post(casey, "@acme two", at=START - timedelta(minutes=1))
    served.world.delete(gone)
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert [e.id for e in events] == [kept]


async def test_status_deleted_before_its_lookup_is_skipped(served: Served) -> None:
    """A held mention whose thread lookup finds it deleted (404) is skipped; the page goes on."""
    world = served.world
    casey = world.add_account("casey")
    root = world.post(casey, "my thread", at=START - timedelta(minutes=9))
    held = world.post(casey, "@acme see above", at=START - timedelta(minutes=8),
                      in_reply_to_id=root)
    other = world.post(casey, "@acme and this", at=START - timedelta(minutes=7))
    connector = served.connector()
    batch = await connector.poll(None, served.ctx)
    assert [e.id for e in batch.events] == [other]
    assert batch.cursor["mentions"]["min_id"] == "2"
    world.delete(held)
    rest, _, _ = await drain(connector, batch.cursor, served.ctx)
    assert rest == []
    served.fake.controls.assert_called(CONTEXT.format(held), times=1)


async def test_context_lookups_are_bounded_per_poll(served: Served) -> None:
    """Mentions in unknown threads cost at most MAX_CONTEXT_LOOKUPS lookups a poll, none lost."""
    world = served.world
    expected = {}
    for n in range(MAX_CONTEXT_LOOKUPS + 3):
        author = world.add_account(f"user{n}")
        root = world.post(author, f"thread {n}", at=START - timedelta(minutes=30 - n))
        mention = world.post(author, f"@acme about thread {n}",
                             at=START - timedelta(minutes=20 - n), in_reply_to_id=root)
        expected[mention] = root
    connector = served.connector()
    cursor: Cursor | None = None
    events: list[Event] = []
    for _ in range(10):
        before = served.context_calls()
        batch = await connector.poll(cursor, served.ctx)
        assert served.context_calls() - before <= MAX_CONTEXT_LOOKUPS
        events += batch.events
        cursor = batch.cursor
        if not batch.more:
            break
    assert {e.id: e.conversation for e in events} == expected
    assert served.context_calls() == len(expected)


async def test_replies_under_a_brand_announcement_are_separate_conversations(
    served: Served,
) -> None:
    """Two customers replying under a brand announcement make two conversations, no lookups."""
    world, at = served.world, START - timedelta(hours=2)
    brand = world.brand_id
    casey, dana = world.add_account("casey"), world.add_account("dana")
    announcement = world.post(brand, "Spring sale starts today!", at=at)
    sequel = world.post(brand, "2/2 and shipping is free", at=at + timedelta(seconds=30),
                        in_reply_to_id=announcement)
    first = world.post(casey, "@acme does it include shoes?", at=at + timedelta(minutes=5),
                       in_reply_to_id=announcement)
    second = world.post(dana, "@acme in the EU too?", at=at + timedelta(minutes=6),
                        in_reply_to_id=sequel)
    answer = world.post(brand, "@casey yes, shoes too", at=at + timedelta(minutes=8),
                        in_reply_to_id=first)
    again = world.post(casey, "@acme great, and bags?", at=at + timedelta(minutes=12),
                       in_reply_to_id=answer)
    other = world.post(brand, "@dana EU included", at=at + timedelta(minutes=13),
                       in_reply_to_id=second)
    events, _, _ = await drain(served.connector(), None, served.ctx)
    assert {e.id: (e.conversation, e.actor) for e in events} == {
        first: (first, Actor.CUSTOMER),
        answer: (first, Actor.AGENT),
        again: (first, Actor.CUSTOMER),
        second: (second, Actor.CUSTOMER),
        other: (second, Actor.AGENT),
    }
    assert served.context_calls() == 0


@dataclass(frozen=True)
class Planned:
    """A status to post: when, its key, who writes it, and what the connector must make of it.

    ``conversation`` is None for a status that must be no event (a brand announcement, a
    customer's post that does not mention the brand).
    """

    at: datetime
    key: str
    author: str
    reply_to: str | None
    conversation: str | None
    follow_up: bool = False


def week_of_history(world: MastodonWorld, seed: int = 3) -> list[Planned]:
    """A week of mention threads like the demo's, plus replies under brand announcements.

    Most mentions are answered, many get a follow-up to the brand's reply, most of those
    are answered again; a few mention the brand under a customer's own post, whose
    thread only a context lookup can tell. Statuses are posted in time order; the
    result carries the ids the world gave them.
    """
    rng = random.Random(seed)
    brand = world.brand_id
    customers = [world.add_account(f"customer{n}") for n in range(40)]
    end = START - timedelta(minutes=30)
    plan: list[Planned] = []

    def add(at: datetime, author: str, reply_to: str | None, conversation: str | None,
            *, follow_up: bool = False) -> str:
        key = f"s{len(plan)}"
        plan.append(Planned(at, key, author, reply_to, conversation, follow_up))
        return key

    def mention(at: datetime, author: str, reply_to: str | None) -> str:
        key = f"s{len(plan)}"
        return add(at, author, reply_to, key)

    for _ in range(320):
        at = end - timedelta(seconds=rng.uniform(0, 7 * 86400))
        who = rng.choice(customers)
        first = mention(at, who, None)
        if rng.random() < 0.9:
            at += timedelta(seconds=rng.lognormvariate(5.3, 0.5))
            reply = add(at, brand, first, first)
            if rng.random() < 0.4:
                at += timedelta(seconds=rng.lognormvariate(6.2, 0.8))
                again = add(at, who, reply, first, follow_up=True)
                if rng.random() < 0.8:
                    at += timedelta(seconds=rng.lognormvariate(5.3, 0.5))
                    add(at, brand, again, first)
    for _ in range(3):
        at = end - timedelta(seconds=rng.uniform(86400, 6 * 86400))
        announcement = add(at, brand, None, None)
        for _ in range(3):
            at += timedelta(seconds=rng.uniform(60, 600))
            question = mention(at, rng.choice(customers), announcement)
            add(at + timedelta(seconds=90), brand, question, question)
    for _ in range(5):
        at = end - timedelta(seconds=rng.uniform(0, 6 * 86400))
        thread = add(at, rng.choice(customers), None, None)
        add(at + timedelta(seconds=60), rng.choice(customers), thread, thread)
    ids: dict[str, str] = {}
    for item in sorted(plan, key=lambda p: p.at):
        text = "news" if item.author == brand else "@acme help" if item.conversation else "hm"
        ids[item.key] = world.post(item.author, text, at=item.at, in_reply_to_id=(
            None if item.reply_to is None else ids[item.reply_to]))
    return [replace(p, key=ids[p.key], reply_to=ids.get(p.reply_to or ""),
                    conversation=ids.get(p.conversation or "")) for p in plan]


async def test_week_backfill_resolves_threads_without_lookups(served: Served) -> None:
    """A week's backfill looks up only threads no stream shows; follow-ups stay in their thread."""
    world = served.world
    plan = week_of_history(world)
    ctx = PollContext(session=served.ctx.session, now=served.clock,
                      since=START - timedelta(days=8))
    events, _, _ = await drain(served.connector(), None, ctx, limit=200)
    conversations = {e.id: e.conversation for e in events}
    assert conversations == {p.key: p.conversation for p in plan if p.conversation}
    assert len(events) == len(conversations)
    follow_ups = [p for p in plan if p.follow_up]
    assert len(follow_ups) > 80
    assert all(conversations[p.key] == p.conversation != p.key for p in follow_ups)
    mentions = len(world.notifications)
    assert mentions > 400
    customer_threads = 5  # a mention under a customer's own post: only its context tells
    assert served.context_calls() == customer_threads < 0.05 * mentions


async def test_watermark_waits_for_a_held_mention(served: Served) -> None:
    """While a mention is held back, the watermark stays at its time; then it is emitted."""
    world = served.world
    casey = world.add_account("casey")
    mention = world.post(casey, "@acme broken", at=START - timedelta(minutes=10))
    reply = world.post(world.brand_id, "@casey on it", at=START - timedelta(minutes=9),
                       in_reply_to_id=mention)
    _, cursor, batches = await drain(served.connector(), None, served.ctx)
    assert batches[-1].watermark == START
    served.clock.advance(60)
    # Federated late: stamped before what was read; a restarted connector has no cache.
    late = world.post(casey, "@acme still broken", at=START - timedelta(seconds=30),
                      in_reply_to_id=reply)
    connector = served.connector()
    held = await connector.poll(json.loads(json.dumps(cursor)), served.ctx)
    assert (held.events, held.more) == ((), True)
    assert held.watermark == START - timedelta(seconds=30)
    rest, _, batches = await drain(connector, held.cursor, served.ctx)
    assert [(e.id, e.conversation) for e in rest] == [(late, mention)]
    assert batches[-1].watermark == START + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("restart", "first_pages"),
    [pytest.param(False, 1, id="same-instance-goes-on"),
     pytest.param(True, 2, id="restart-re-reads-held")],
)
async def test_held_mentions_survive_a_restart(served: Served, restart: bool,
                                               first_pages: int) -> None:
    """A cursor taken while mentions are held re-reads them in a new instance: none is lost."""
    world = served.world
    casey = world.add_account("casey")
    mention = world.post(casey, "@acme broken", at=START - timedelta(minutes=10))
    reply = world.post(world.brand_id, "@casey on it", at=START - timedelta(minutes=9),
                       in_reply_to_id=mention)
    follow_up = world.post(casey, "@acme still broken", at=START - timedelta(minutes=5),
                           in_reply_to_id=reply)
    connector = served.connector()
    first = await connector.poll(None, served.ctx)
    assert [e.id for e in first.events] == [mention]
    assert first.cursor["mentions"]["resume"] == {"min_id": None, "max_id": None, "floor": None}
    if restart:
        connector = served.connector()
    rest, cursor, _ = await drain(connector, json.loads(json.dumps(first.cursor)), served.ctx)
    assert {(e.id, e.conversation) for e in rest} >= {(reply, mention), (follow_up, mention)}
    assert cursor["mentions"]["resume"] is None
    newest_pages = [q for q in served.paths("/api/v1/notifications")
                    if "min_id" not in q and "max_id" not in q]
    assert len(newest_pages) == first_pages
    assert served.context_calls() == 0


async def test_check_names_the_account(served: Served) -> None:
    """check() proves the token by naming its account."""
    assert await served.connector().check(served.ctx) == "authenticated as @acme"
    assert await served.connector(account="acme@mastodon.example").check(served.ctx) == (
        "authenticated as @acme")


async def test_check_refuses_a_token_of_another_account(served: Served) -> None:
    """A configured account that is not the token's owner is a FatalError."""
    with pytest.raises(FatalError, match="belongs to @acme, not @helpdesk"):
        await served.connector(account="helpdesk").check(served.ctx)


# The fake itself behaves like Mastodon -----------------------------------------------


async def _get(served: Served, path: str, token: str = TOKEN) -> aiohttp.ClientResponse:
    return await served.ctx.session.get(served.base_url + path,
                                        headers={"Authorization": f"Bearer {token}"})


async def test_fake_notifications_page_like_mastodon(served: Served) -> None:
    """Newest first; min_id reads the items right above it; Link carries next and prev."""
    casey = served.world.add_account("casey")
    for n in range(5):
        served.world.post(casey, f"@acme n{n}", at=START + timedelta(seconds=n))
    served.world.post(casey, "no mention here", at=START + timedelta(seconds=9))
    response = await _get(served, "/api/v1/notifications?types[]=mention&min_id=1&limit=2")
    body = await response.json()
    assert [n["id"] for n in body] == ["3", "2"]
    assert response.links["next"]["url"].query["max_id"] == "2"  # type: ignore[union-attr]
    assert response.links["prev"]["url"].query["min_id"] == "3"  # type: ignore[union-attr]
    newest = await (await _get(served, "/api/v1/notifications?limit=2")).json()
    assert [n["id"] for n in newest] == ["5", "4"]
    follows = await (await _get(served, "/api/v1/notifications?types[]=follow")).json()
    assert follows == []


async def test_fake_refuses_a_bad_token_like_mastodon(served: Served) -> None:
    """A wrong Bearer token gets 401 and Mastodon's error body."""
    response = await _get(served, "/api/v1/accounts/verify_credentials", token="nope")
    assert response.status == 401
    assert await response.json() == {"error": "The access token is invalid"}


async def test_fake_reports_rate_limit_and_server_time(served: Served) -> None:
    """Each answer carries X-RateLimit-* (ISO reset on the 5-minute grid) and the world's Date."""
    response = await _get(served, "/api/v1/accounts/verify_credentials")
    assert response.headers["X-RateLimit-Limit"] == "300"
    assert response.headers["X-RateLimit-Remaining"] == "299"
    assert response.headers["X-RateLimit-Reset"] == "2026-03-02T15:05:00.000000Z"
    assert response.headers["Date"] == "Mon, 02 Mar 2026 15:00:10 GMT"


async def test_fake_context_lists_the_thread(served: Served) -> None:
    """A status's context lists its ancestors oldest first and its replies depth first."""
    world = served.world
    casey = world.add_account("casey")
    root = world.post(casey, "root", at=START)
    middle = world.post(world.brand_id, "@casey middle", at=START, in_reply_to_id=root)
    leaf = world.post(casey, "@acme leaf", at=START, in_reply_to_id=middle)
    context = await (await _get(served, CONTEXT.format(middle))).json()
    assert [s["id"] for s in context["ancestors"]] == [root]
    assert [s["id"] for s in context["descendants"]] == [leaf]
    world.delete(leaf)
    assert (await _get(served, f"/api/v1/statuses/{leaf}")).status == 404


def test_fake_statuses_have_the_recorded_shape() -> None:
    """The fake's status JSON has every key of the recorded one, and its account too."""
    world = MastodonWorld(now=lambda: START)
    status_id = world.post(world.brand_id, "hello", at=START)
    served_status = world.status_json(world.statuses[status_id], world.brand_id)
    recorded = _load("POST_api_v1_statuses_toot.json")
    assert set(recorded) <= set(served_status)
    assert set(recorded["account"]) <= set(served_status["account"])
    assert isinstance(parse_status(served_status), Post)


@pytest.mark.parametrize(
    ("started", "server", "expected"),
    [
        ("12:00:00.400", "12:00:00", "12:00:00.400"),
        ("12:00:00.400", None, "12:00:00.400"),
        ("12:00:05.400", "12:00:02", "12:00:03"),
    ],
    ids=["in-sync-keeps-subsecond", "no-date-header", "server-behind-is-bounded"],
)
def test_seen_until(started: str, server: str | None, expected: str) -> None:
    """The watermark is our send time, never more than a second past the server's Date."""
    from connectors.mastodon import seen_until

    def at(clock: str) -> datetime:
        return datetime.fromisoformat(f"2026-11-23T{clock}+00:00")

    assert seen_until(at(started), None if server is None else at(server)) == at(expected)
