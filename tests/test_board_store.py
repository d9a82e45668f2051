"""Tests of the board's queries on a recorded store: queue, today, log, markers, dismissals.

The recorded store (:func:`recorded_store`) is built from fixed events through the real
pipeline (ingest, the SLA engine, save) with a frozen clock; the board's TUI tests and
snapshots read the same store.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import database_urls
from sqlalchemy import create_engine

from monitor.config import Config, parse_config
from monitor.errors import StorageError
from monitor.events import Actor, ClockState, Event, EventKind, Metric, Status
from monitor.pipeline import Evaluator
from monitor.storage import Store
from monitor.storage.board import (
    DISMISS_PREFIX,
    NO_POLICY,
    UNDO_PREFIX,
    WAITING,
    LogKind,
    QueueFilter,
    QueueIndex,
    QueueRow,
    QueueSort,
    count_states,
    local_midnight,
    percentile,
    queue_state,
    select_rows,
)

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
"""The recorded store's present: a Wednesday, 10:00 in New York."""
ZONE = ZoneInfo("America/New_York")
HOSTILE_NAME = "[bold red]Mallory[/] [@click=app.quit]x\x1b[31m\u202egnp.exe"
HOSTILE_TEXT = (
    "[link=https://evil.example]click[/link] \x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c "
    "NUL\x00here [@click=app.quit]quit " + "A" * 10_000
)
CONFIG: dict[str, Any] = {
    "monitor": {"timezone": "America/New_York"},
    "sources": [
        {
            "name": "desk",
            "kind": "zendesk",
            "subdomain": "acme",
            "email": "ops@acme.example",
            "token": "recorded",
        },
        {
            "name": "social",
            "kind": "mastodon",
            "base_url": "http://127.0.0.1:9",
            "token": "recorded",
        },
        {"name": "forum", "kind": "github", "repo": "acme/forum", "base_url": "http://127.0.0.1:9"},
    ],
    "policies": [
        {
            "name": "social",
            "match": {"kinds": ["mastodon"]},
            "first_response": "6m",
            "next_response": "6m",
        },
        {
            "name": "desk",
            "match": {"kinds": ["zendesk"]},
            "first_response": {"urgent": "15m", "high": "1h", "normal": "4h", "low": "8h"},
            "resolution": {"urgent": "4h", "high": "1d", "normal": "3d", "low": "5d"},
        },
        {
            "name": "forum-support",
            "match": {"kinds": ["github"], "tags": ["support"]},
            "first_response": "1d",
        },
    ],
}


def config() -> Config:
    """The recorded store's configuration."""
    return parse_config(CONFIG)


def _ago(**delta: float) -> datetime:
    """An instant before NOW."""
    return NOW - timedelta(**delta)


def _mention(
    conversation: str,
    event_id: str,
    at: datetime,
    text: str,
    author: str,
    *,
    actor: Actor = Actor.CUSTOMER,
) -> Event:
    """A public Mastodon message."""
    return Event(
        "social",
        conversation,
        event_id,
        at,
        EventKind.MESSAGE,
        actor=actor,
        author=author,
        text=text,
        channel="mastodon",
        url=f"https://mastodon.example/@{author.split()[0]}/{event_id}",
    )


def _ticket(
    conversation: str,
    at: datetime,
    *,
    priority: str,
    subject: str,
    customer: str,
    text: str,
    assignee: str | None = None,
    group: str | None = None,
    url: str | None = None,
) -> list[Event]:
    """The first events of a Zendesk ticket: status, fields, the customer's message."""
    fields: dict[str, Any] = {"priority": priority, "subject": subject, "customer": customer}
    if assignee is not None:
        fields["assignee"] = assignee
    if group is not None:
        fields["group"] = group
    link = url if url is not None else f"https://acme.zendesk.com/agent/tickets/{conversation}"
    return [
        Event("desk", conversation, f"{conversation}-new", at, EventKind.STATUS, status=Status.NEW),
        Event("desk", conversation, f"{conversation}-fields", at, EventKind.UPDATE, fields=fields),
        Event(
            "desk",
            conversation,
            f"{conversation}-m1",
            at,
            EventKind.MESSAGE,
            actor=Actor.CUSTOMER,
            author=customer,
            text=text,
            channel="email",
            url=link,
        ),
    ]


def _issue(conversation: str, at: datetime, author: str, text: str) -> Event:
    """The opening post of a forum (GitHub) issue."""
    return Event(
        "forum",
        conversation,
        f"{conversation}-m1",
        at,
        EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
        author=author,
        text=text,
        url=f"https://forum.example/{conversation[1:]}",
    )


def _reply(
    source: str,
    conversation: str,
    event_id: str,
    at: datetime,
    author: str,
    text: str = "Thanks, looking into it.",
    *,
    public: bool = True,
) -> Event:
    """An agent's message: a public reply or an internal note."""
    return Event(
        source,
        conversation,
        event_id,
        at,
        EventKind.MESSAGE,
        actor=Actor.AGENT,
        public=public,
        author=author,
        text=text,
    )


def recorded_events() -> dict[str, list[Event]]:
    """Every event of the recorded store, by source."""
    social = [
        # s1: a hostile mention, never answered: breached 14 minutes ago.
        _mention("s1", "s1-m1", _ago(minutes=20), HOSTILE_TEXT, HOSTILE_NAME),
        # s2: at risk (warning 30 s ago, due in a minute).
        _mention("s2", "s2-m1", _ago(minutes=5), "is your app down? I can't log in", "ava"),
        # s3: running, due in five minutes.
        _mention("s3", "s3-m1", _ago(minutes=1), "my order #4711 still hasn't shipped", "ben"),
        # s4: answered in time; waiting on the customer.
        _mention("s4", "s4-m1", _ago(hours=3), "love the new update!", "chloe"),
        _reply("social", "s4", "s4-r1", _ago(hours=2, minutes=58), "acme"),
        # s5: answered four minutes late (a recovery), then waiting.
        _mention("s5", "s5-m1", _ago(hours=2), "charged twice again??", "dmitri"),
        _reply("social", "s5", "s5-r1", _ago(hours=1, minutes=50), "Kim Alvarez"),
        # s6: dismissed as spam before its deadline (see recorded_store).
        _mention("s6", "s6-m1", _ago(minutes=10), "buy followers at spam.example", "spammer"),
        # s7: a follow-up after a reply: next reply running.
        _mention("s7", "s7-m1", _ago(minutes=30), "how do I export my data?", "elena"),
        _reply("social", "s7", "s7-r1", _ago(minutes=28), "acme"),
        _mention("s7", "s7-m2", _ago(minutes=2), "that didn't help at all", "elena"),
        # s8: dismissed, then the dismissal undone: breached again.
        _mention("s8", "s8-m1", _ago(minutes=50), "third email, no answer", "farid"),
    ]
    desk = [
        # d1: urgent, past due 30 s ago, breach not confirmed (the watermark trails).
        *_ticket(
            "d1",
            _ago(minutes=15, seconds=30),
            priority="urgent",
            subject="API returns 500 on /v2/orders",
            customer="Grace Hopper",
            text="Every call fails since 14:00 UTC. Our checkout is down!",
            assignee="Sam Okafor",
            group="technical",
        ),
        # d2: high, due in 50 minutes.
        *_ticket(
            "d2",
            _ago(minutes=10),
            priority="high",
            subject="Charged twice for #4711",
            customer="Hiro Tanaka",
            text="Two charges for order #4711, please refund one.",
            assignee="Kim Alvarez",
            group="billing",
        ),
        # d3: answered, then pending for a day: resolution paused.
        *_ticket(
            "d3",
            _ago(days=2),
            priority="normal",
            subject="Invoice copy for March",
            customer="Ines Dubois",
            text="Could you send me a PDF copy of invoice 88?",
            assignee="Priya Raman",
            group="billing",
        ),
        _reply("desk", "d3", "d3-r1", _ago(days=2) + timedelta(minutes=10), "Priya Raman"),
        Event("desk", "d3", "d3-pending", _ago(days=1), EventKind.STATUS, status=Status.PENDING),
        # d4: solved this morning.
        *_ticket(
            "d4",
            _ago(hours=5),
            priority="normal",
            subject="Can't log in",
            customer="Jamal Reyes",
            text="The reset email never arrives.",
            assignee="Kim Alvarez",
            group="accounts",
        ),
        _reply("desk", "d4", "d4-r1", _ago(hours=4, minutes=50), "Kim Alvarez"),
        Event("desk", "d4", "d4-solved", _ago(hours=4), EventKind.STATUS, status=Status.SOLVED),
        # d5: low, answered yesterday; resolution running.
        *_ticket(
            "d5",
            _ago(days=1),
            priority="low",
            subject="Feature request: dark mode",
            customer="Keiko Ito",
            text="Any plans for a dark mode?",
        ),
        _reply("desk", "d5", "d5-r1", _ago(hours=23), "Noah Fischer"),
        # d6: an internal note only: the first reply clock still runs.
        *_ticket(
            "d6",
            _ago(minutes=40),
            priority="normal",
            subject="Where is my order #9001?",
            customer="Liam O'Brien",
            text="Tracking has said 'label created' for days.",
            assignee="Aiko Tanaka",
            group="billing",
        ),
        _reply(
            "desk",
            "d6",
            "d6-note",
            _ago(minutes=30),
            "Aiko Tanaka",
            "Asked the warehouse; do not promise a date.",
            public=False,
        ),
        # d7: hostile fields and a link that must never be opened.
        *_ticket(
            "d7",
            _ago(hours=3),
            priority="normal",
            subject="Invoice \u202efdp.exe [b]now[/b]",
            customer="Trudy <img src=x>",
            text="<script>alert(1)</script> refund please",
            assignee="[b]Eve[/b]",
            group="billing",
            url="javascript:alert(1)",
        ),
    ]
    forum = [
        # f1: a source no policy covers: no clocks, and the board says so.
        _issue("f1", _ago(hours=1), "octocat", "The docs link is broken."),
        # f2: labelled support and answered, still open: waiting on the customer.
        Event("forum", "f2", "f2-open", _ago(hours=3), EventKind.STATUS, status=Status.OPEN),
        Event(
            "forum",
            "f2",
            "f2-labels",
            _ago(hours=3),
            EventKind.UPDATE,
            fields={"tags": ["support"]},
        ),
        _issue("f2", _ago(hours=3), "hubot", "Export to CSV drops the last row."),
        _reply("forum", "f2", "f2-r1", _ago(hours=2), "Noah Fischer"),
    ]
    return {"social": social, "desk": desk, "forum": forum}


def recorded_store(url: str) -> Store:
    """Build the recorded store at ``url`` (an empty database); return it open."""
    store = Store.open(url)
    store.register_sources([("desk", "zendesk"), ("social", "mastodon"), ("forum", "github")])
    watermarks = {"desk": _ago(seconds=60), "social": NOW, "forum": _ago(minutes=10)}
    for source, events in recorded_events().items():
        store.ingest(source, events, {"page": 1}, watermarks[source], now=watermarks[source])
    evaluator = Evaluator(config(), store)
    evaluator.evaluate_dirty(now=_ago(minutes=46))
    store.dismiss(("social", "s8"), reason="duplicate", by="lead", now=_ago(minutes=45))
    evaluator.evaluate_dirty(now=_ago(minutes=45))
    store.undo_dismiss(("social", "s8"), by="kim", now=_ago(minutes=40))
    evaluator.evaluate_dirty(now=_ago(minutes=40))
    store.dismiss(("social", "s6"), reason="spam", by="lead", now=_ago(minutes=8))
    evaluator.evaluate_dirty(now=_ago(minutes=8))
    keys = [(e.source, e.conversation) for events in recorded_events().values() for e in events]
    evaluator.evaluate_keys(list(dict.fromkeys(keys)), now=NOW)
    store.record_failure(
        "forum",
        "HTTP 503 from forum.example [@click=app.quit]\x1b[31m",
        degraded=False,
        now=_ago(minutes=3),
    )
    return store


def _engine_url(url: str) -> str:
    """A SQLAlchemy URL for ``url`` (psycopg for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def fresh_database(engine: str, folder: Path) -> Iterator[str]:
    """Yield the URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if engine == "sqlite":
        yield f"sqlite:///{folder}/board-{uuid.uuid4().hex[:8]}.db"
        return
    schema = f"rw_board_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_engine_url(engine))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in engine else "?"
    try:
        yield f"{engine}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine, for one test."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The recorded store on each engine, for a test that writes to it."""
    opened = recorded_store(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module", params=database_urls())
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """The recorded store on each engine, shared by the tests that only read it."""
    with fresh_database(request.param, tmp_path_factory.mktemp("recorded")) as url:
        opened = recorded_store(url)
        try:
            yield opened
        finally:
            opened.close()


# -- the queue ---------------------------------------------------------------------------


def test_queue_orders_open_conversations_by_time_left(recorded: Store) -> None:
    """Breached and overdue first, then the soonest due, paused, waiting, no policy."""
    rows = recorded.queue(now=NOW)
    assert [(row.conversation, queue_state(row, NOW)) for row in rows] == [
        ("s8", "breached"),  # due 44 minutes ago
        ("s1", "breached"),  # due 14 minutes ago
        ("d1", "overdue"),  # due 30 seconds ago, not confirmed
        ("s2", "at_risk"),  # due in 1 minute
        ("s7", "running"),  # next reply due in 4 minutes
        ("s3", "running"),  # due in 5 minutes
        ("d2", "running"),  # due in 50 minutes
        ("d7", "at_risk"),  # due in 1 hour: 3 of its 4 hours gone
        ("d6", "running"),  # due in 3h 20m
        ("d5", "running"),  # resolution due in 4 days
        ("d3", "paused"),  # resolution paused in pending
        ("f2", WAITING),  # answered 2h ago, still open
        ("f1", NO_POLICY),
        # s4 and s5, mentions the team answered, have nothing at stake: not open
    ]


def test_queue_row_carries_the_most_urgent_clock(recorded: Store) -> None:
    """A row names the clock at stake: metric, cycle, due, warning, target."""
    rows = {row.conversation: row for row in recorded.queue(now=NOW)}
    d1 = rows["d1"]
    assert (d1.metric, d1.state, d1.priority, d1.kind) == (
        Metric.FIRST_RESPONSE,
        ClockState.OVERDUE,
        "urgent",
        "zendesk",
    )
    assert d1.due_at == NOW - timedelta(seconds=30)
    assert (d1.assignee, d1.group, d1.channel, d1.customer) == (
        "Sam Okafor",
        "technical",
        "email",
        "Grace Hopper",
    )
    s7 = rows["s7"]
    assert (s7.metric, s7.cycle, s7.due_at) == (
        Metric.NEXT_RESPONSE,
        1,
        _ago(minutes=2) + timedelta(minutes=6),
    )
    d3 = rows["d3"]
    assert (d3.metric, d3.state, d3.due_at) == (Metric.RESOLUTION, ClockState.PAUSED, None)
    assert rows["f2"].metric is None
    assert "s4" not in rows
    assert "s5" not in rows
    assert rows["f1"].policy is None


def test_queue_snippet_is_the_last_public_customer_message(recorded: Store) -> None:
    """The snippet skips agent replies and internal notes; long text is cut in SQL."""
    rows = {row.conversation: row for row in recorded.queue(now=NOW)}
    assert rows["s7"].snippet == "that didn't help at all"
    assert rows["d6"].snippet == "Tracking has said 'label created' for days."
    assert rows["s1"].snippet is not None
    assert len(rows["s1"].snippet) == 400
    assert rows["s1"].snippet.startswith("[link=https://evil.example]click[/link] \x1b[2J")


def test_queue_keeps_public_text_as_stored(recorded: Store) -> None:
    """Markup, escapes and bidi controls come back as they were written (NUL: U+FFFD)."""
    rows = {row.conversation: row for row in recorded.queue(now=NOW)}
    assert rows["s1"].customer == HOSTILE_NAME
    assert "NUL\ufffdhere" in (rows["s1"].snippet or "")
    assert rows["d7"].assignee == "[b]Eve[/b]"
    assert rows["d7"].url == "javascript:alert(1)"


FILTERS = [
    pytest.param(QueueFilter(source="desk"), ["d1", "d2", "d7", "d6", "d5", "d3"], id="source"),
    pytest.param(QueueFilter(kind="github"), ["f2", "f1"], id="kind"),
    pytest.param(QueueFilter(priority="urgent"), ["d1"], id="priority"),
    pytest.param(
        QueueFilter(priority=""), ["s8", "s1", "s2", "s7", "s3", "f2", "f1"], id="no-priority"
    ),
    pytest.param(QueueFilter(assignee="Kim Alvarez"), ["d2"], id="assignee"),
    pytest.param(QueueFilter(assignee="", source="desk"), ["d5"], id="unassigned"),
    pytest.param(QueueFilter(group="billing"), ["d2", "d7", "d6", "d3"], id="group"),
    pytest.param(QueueFilter(channel="mastodon"), ["s8", "s1", "s2", "s7", "s3"], id="channel"),
    pytest.param(QueueFilter(state="breached"), ["s8", "s1"], id="state-breached"),
    pytest.param(QueueFilter(state="overdue"), ["d1"], id="state-overdue"),
    pytest.param(QueueFilter(state="at_risk"), ["s2", "d7"], id="state-at-risk"),
    pytest.param(QueueFilter(state="paused"), ["d3"], id="state-paused"),
    pytest.param(QueueFilter(state=WAITING), ["f2"], id="state-waiting"),
    pytest.param(QueueFilter(state=NO_POLICY), ["f1"], id="state-no-policy"),
    pytest.param(QueueFilter(search="ORDER #4711"), ["s3", "d2"], id="search-case"),
    pytest.param(QueueFilter(search="[b]eve"), ["d7"], id="search-markup-literal"),
    pytest.param(QueueFilter(search="%"), [], id="search-like-escaped"),
    pytest.param(QueueFilter(search="s7"), ["s7"], id="search-id"),
    pytest.param(
        QueueFilter(sort=QueueSort.PRIORITY, source="desk"),
        ["d1", "d2", "d7", "d6", "d3", "d5"],
        id="sort-priority",
    ),
    pytest.param(
        QueueFilter(sort=QueueSort.AGE, source="desk"),
        ["d3", "d5", "d7", "d6", "d1", "d2"],
        id="sort-age",
    ),
    pytest.param(
        QueueFilter(sort=QueueSort.RECENT, group="billing"),
        ["d2", "d6", "d7", "d3"],
        id="sort-recent",
    ),
]


@pytest.mark.parametrize(("filters", "expected"), FILTERS)
def test_queue_filters_and_sorts_in_sql(
    recorded: Store, filters: QueueFilter, expected: list[str]
) -> None:
    """Each filter and order selects the conversations a lead would expect."""
    assert [row.conversation for row in recorded.queue(filters, now=NOW)] == expected


@pytest.mark.parametrize(("filters", "expected"), FILTERS)
def test_python_filters_agree_with_sql(
    recorded: Store, filters: QueueFilter, expected: list[str]
) -> None:
    """The board's in-memory filtering gives exactly what the SQL gives."""
    everything = recorded.queue(now=NOW)
    assert select_rows(everything, filters, NOW, ordered_by=QueueSort.URGENCY) == recorded.queue(
        filters, now=NOW
    )


@pytest.mark.parametrize(("filters", "expected"), FILTERS)
def test_queue_index_agrees_with_sql(
    recorded: Store, filters: QueueFilter, expected: list[str]
) -> None:
    """The index the board filters with on each key gives what the SQL gives."""
    index = QueueIndex(recorded.queue(now=NOW), ordered_by=QueueSort.URGENCY)
    assert [row.conversation for row in index.select(filters, NOW)] == expected


def test_queue_index_narrows_as_a_search_is_typed(recorded: Store) -> None:
    """Typing, deleting and changing filters mid-search always match select_rows."""
    rows = recorded.queue(now=NOW)
    index = QueueIndex(rows, ordered_by=QueueSort.URGENCY)
    steps = [QueueFilter(search="order #4711"[:length]) for length in range(12)]
    steps += [
        QueueFilter(search="ord"),
        QueueFilter(search="ORD", source="desk"),
        QueueFilter(search="ORDE", source="desk"),
        QueueFilter(search="orde"),
        QueueFilter(search="o", state="running"),
        QueueFilter(search="or", state="running"),
        QueueFilter(search="a\x00b"),
        QueueFilter(sort=QueueSort.AGE, search="e"),
    ]
    for filters in steps:
        assert index.select(filters, NOW) == select_rows(rows, filters, NOW), filters
    later = NOW + timedelta(minutes=4)
    index.select(QueueFilter(state="at_risk", search="a"), NOW)
    assert index.select(QueueFilter(state="at_risk", search="ab"), later) == select_rows(
        rows, QueueFilter(state="at_risk", search="ab"), later
    )


@pytest.mark.parametrize("minutes", [0, 4, 60])
def test_counts_in_python_agree_with_sql(recorded: Store, minutes: int) -> None:
    """The board recounts its loaded queue as time passes exactly as the SQL counts."""
    now = NOW + timedelta(minutes=minutes)
    assert count_states(recorded.queue(now=NOW), now) == recorded.queue_counts(now=now)


def test_state_filter_follows_the_clock(recorded: Store) -> None:
    """A running clock past its warning counts as at risk before any re-evaluation."""
    later = _ago(minutes=-4)  # s3's warning (3m 30s after NOW) has passed; s7 is due.
    at_risk = [row.conversation for row in recorded.queue(QueueFilter(state="at_risk"), now=later)]
    assert at_risk == ["s3", "d7"]
    overdue = [row.conversation for row in recorded.queue(QueueFilter(state="overdue"), now=later)]
    assert overdue == ["d1", "s2", "s7"]
    assert select_rows(recorded.queue(now=later), QueueFilter(state="overdue"), later) == [
        row for row in recorded.queue(now=later) if row.conversation in ("d1", "s2", "s7")
    ]


def test_answered_mention_leaves_the_queue_and_a_follow_up_brings_it_back(store: Store) -> None:
    """A thread without statuses is open while a clock of it is at stake, not forever."""
    evaluator = Evaluator(config(), store)

    def add_and_list(*events: Event, now: datetime) -> list[str]:
        store.ingest("social", list(events), {"page": 2}, now, now=now)
        evaluator.evaluate_dirty(now=now)
        evaluator.evaluate_due("social", now=now)
        rows = store.queue(QueueFilter(search="s9"), now=now)
        return [f"{row.conversation} {queue_state(row, now)}" for row in rows]

    assert add_and_list(_mention("s9", "s9-m1", NOW, "hello?", "gus"), now=NOW) == ["s9 running"]
    answered = NOW + timedelta(minutes=2)
    assert add_and_list(_reply("social", "s9", "s9-r1", answered, "acme"), now=answered) == []
    follow_up = NOW + timedelta(minutes=30)
    assert add_and_list(_mention("s9", "s9-m2", follow_up, "?", "gus"), now=follow_up) == [
        "s9 running"
    ]
    # Unanswered past due, the breach keeps it in the queue until the reply.
    late = follow_up + timedelta(minutes=10)
    assert add_and_list(now=late) == ["s9 breached"]
    assert add_and_list(_reply("social", "s9", "s9-r2", late, "acme"), now=late) == []


def test_queue_limit_keeps_the_most_urgent(recorded: Store) -> None:
    """A limit returns the head of the order."""
    assert [row.conversation for row in recorded.queue(now=NOW, limit=3)] == ["s8", "s1", "d1"]


def test_queue_counts_count_effective_states(recorded: Store) -> None:
    """The header's counts: every open conversation, in the state it shows now."""
    assert recorded.queue_counts(now=NOW) == {
        "breached": 2,
        "overdue": 1,
        "at_risk": 2,
        "running": 5,
        "paused": 1,
        WAITING: 1,
        NO_POLICY: 1,
        "open": 13,
    }


def test_facets_list_the_values_of_open_conversations(recorded: Store) -> None:
    """The filter picker offers what open conversations have, priorities by rank."""
    facets = recorded.facets()
    assert facets.sources == ("desk", "forum", "social")
    assert facets.kinds == ("github", "mastodon", "zendesk")
    assert facets.priorities == ("urgent", "high", "normal", "low")
    assert facets.groups == ("billing", "technical")
    assert "Kim Alvarez" in facets.assignees
    assert "Jamal Reyes" not in facets.assignees  # d4 is solved


# -- today, sparkline, log ---------------------------------------------------------------


def test_today_counts_since_local_midnight(recorded: Store) -> None:
    """Met and breached since 00:00 New York; percentiles of first replies stopped today."""
    today = {item.policy: item for item in recorded.today(now=NOW, zone=ZONE)}
    social = today["social"]
    # s4 met, s7 first reply met; s5 breached (replied late); s1 and s8 breached and
    # still waiting (due today); s6 cancelled counts nowhere.
    assert (social.met, social.breached) == (2, 3)
    assert social.open == 5  # s1, s2, s3, s8 and s7's next reply
    assert social.percent_met == pytest.approx(40.0)
    assert (social.first_response_p50, social.first_response_p90) == (120, 600)
    desk = today["desk"]
    # d4's first reply (10m) and resolution (1h) are met today; d3 and d5 replied
    # before midnight; d1 is overdue, not breached yet.
    assert (desk.met, desk.breached) == (2, 0)
    assert desk.open == 10  # first reply and resolution of d1, d2, d6, d7; d3; d5
    assert (desk.first_response_p50, desk.first_response_p90) == (600, 600)


def test_today_moves_with_the_timezone(recorded: Store) -> None:
    """The same instant has a different "today" in another timezone."""
    tokyo = {item.policy: item for item in recorded.today(now=NOW, zone=ZoneInfo("Asia/Tokyo"))}
    # In Tokyo it is 00:00 on Thursday: nothing has stopped today yet.
    assert (tokyo["social"].met, tokyo["desk"].met) == (0, 0)


def test_first_response_times_for_the_sparkline(recorded: Store) -> None:
    """Stopped first replies of the window, oldest first, with their counted seconds."""
    times = recorded.first_response_times(since=_ago(hours=24), until=NOW)
    # d5 (yesterday, within 24 h), d4, s4, f2, s5 (late), s7.
    assert times == [
        (_ago(hours=23), 3600),
        (_ago(hours=4, minutes=50), 600),
        (_ago(hours=2, minutes=58), 120),
        (_ago(hours=2), 3600),
        (_ago(hours=1, minutes=50), 600),
        (_ago(minutes=28), 120),
    ]
    assert recorded.first_response_times(since=_ago(hours=1), until=NOW) == [
        (_ago(minutes=28), 120)
    ]


def test_breach_log_tells_breaches_recoveries_and_dismissals(recorded: Store) -> None:
    """Newest first: when, what, to whom, by whom, why."""
    entries = recorded.breach_log(since=_ago(hours=24))
    assert [(entry.kind, entry.conversation, entry.at) for entry in entries] == [
        (LogKind.DISMISSED, "s6", _ago(minutes=8)),
        (LogKind.BREACHED, "s1", _ago(minutes=14)),
        (LogKind.UNDONE, "s8", _ago(minutes=40)),
        (LogKind.BREACHED, "s8", _ago(minutes=44)),
        (LogKind.DISMISSED, "s8", _ago(minutes=45)),
        (LogKind.RECOVERED, "s5", _ago(hours=1, minutes=50)),
        (LogKind.BREACHED, "s5", _ago(hours=1, minutes=54)),
    ]
    by_kind = {(entry.kind, entry.conversation): entry for entry in entries}
    recovery = by_kind[(LogKind.RECOVERED, "s5")]
    assert (recovery.by, recovery.late_seconds) == ("Kim Alvarez", 240)
    dismissal = by_kind[(LogKind.DISMISSED, "s6")]
    assert (dismissal.by, dismissal.reason, dismissal.customer) == ("lead", "spam", "spammer")
    assert by_kind[(LogKind.UNDONE, "s8")].by == "kim"
    assert by_kind[(LogKind.BREACHED, "s1")].customer == HOSTILE_NAME
    assert by_kind[(LogKind.BREACHED, "s8")].target_seconds == 360


def test_breach_log_window_and_limit(recorded: Store) -> None:
    """Older entries fall out of the window; the limit keeps the newest."""
    assert [e.conversation for e in recorded.breach_log(since=_ago(minutes=20))] == ["s6", "s1"]
    assert len(recorded.breach_log(since=_ago(hours=24), limit=2)) == 2


# -- change markers ----------------------------------------------------------------------


def test_change_marker_is_stable_when_nothing_happens(recorded: Store) -> None:
    """Two reads with nothing stored in between are equal."""
    assert recorded.change_marker() == recorded.change_marker()


def test_change_marker_moves_on_every_kind_of_write(store: Store) -> None:
    """An ingest, an evaluation, a poll and a transition each move the marker."""
    first = store.change_marker()
    store.ingest(
        "social", [_mention("s9", "s9-m1", NOW, "hello?", "zoe")], {"page": 2}, NOW, now=NOW
    )
    after_ingest = store.change_marker()
    assert after_ingest != first
    Evaluator(config(), store).evaluate_dirty(now=NOW)
    after_evaluation = store.change_marker()
    assert after_evaluation != after_ingest
    store.ingest("social", [], {"page": 3}, NOW, now=NOW + timedelta(seconds=5))
    assert store.change_marker() != after_evaluation


def test_change_marker_sees_another_process(database_url: str, store: Store) -> None:
    """A second store on the same database (another process, another machine) sees it."""
    before = store.change_marker()
    with Store.open(database_url) as other:
        other.dismiss(("social", "s2"), reason="resolved in DM", by="sam", now=NOW)
    assert store.change_marker() != before


# -- dismissals --------------------------------------------------------------------------


def test_dismiss_stores_an_audited_event_and_marks_dirty(store: Store) -> None:
    """The dismissal is an event with a board id, who and why; the pipeline re-evaluates."""
    stored = store.dismiss(("social", "s2"), reason="resolved in DM", by="sam", now=NOW)
    assert stored.id.startswith(DISMISS_PREFIX)
    assert stored.at == NOW
    _, events, _ = store.conversation(("social", "s2")) or (None, [], [])
    dismissal = events[-1]
    assert (dismissal.id, dismissal.kind, dismissal.author) == (
        stored.id,
        EventKind.DISMISSED,
        "sam",
    )
    assert dict(dismissal.fields) == {"reason": "resolved in DM", "by": "sam"}
    assert ("social", "s2") in store.dirty_conversations()


def test_dismissal_leaves_the_queue_and_undo_brings_it_back(store: Store) -> None:
    """Evaluated, a dismissal cancels the clocks; undoing it restores them."""
    evaluator = Evaluator(config(), store)
    store.dismiss(("social", "s2"), reason="resolved in DM", by="sam", now=NOW)
    evaluator.evaluate_dirty(now=NOW)
    assert "s2" not in [row.conversation for row in store.queue(now=NOW)]
    assert store.dismissed(("social", "s2"))
    undo = store.undo_dismiss(("social", "s2"), by="sam", now=NOW + timedelta(seconds=1))
    assert undo.id.startswith(UNDO_PREFIX)
    evaluator.evaluate_dirty(now=NOW + timedelta(seconds=1))
    rows = {row.conversation: row for row in store.queue(now=NOW + timedelta(seconds=1))}
    assert rows["s2"].state is ClockState.AT_RISK
    assert not store.dismissed(("social", "s2"))


def test_undo_is_dated_after_the_dismissal_even_from_a_slow_clock(store: Store) -> None:
    """A board whose clock is behind still undoes: the undo sorts after the dismissal."""
    evaluator = Evaluator(config(), store)
    store.dismiss(("social", "s3"), reason="thanks only", by="sam", now=NOW)
    stored = store.undo_dismiss(("social", "s3"), by="kim", now=NOW - timedelta(minutes=1))
    assert stored.at == NOW + timedelta(microseconds=1)
    _, events, _ = store.conversation(("social", "s3")) or (None, [], [])
    undo = events[-1]
    assert (undo.kind, undo.id, undo.at) == (EventKind.UPDATE, stored.id, stored.at)
    evaluator.evaluate_dirty(now=NOW + timedelta(seconds=1))
    assert not store.dismissed(("social", "s3"))


def test_dismissing_an_unknown_conversation_is_refused(store: Store) -> None:
    """Nothing is stored for a conversation the store does not know."""
    before = store.change_marker()
    with pytest.raises(StorageError, match="is not stored"):
        store.dismiss(("social", "nope"), reason="x", by="sam", now=NOW)
    assert store.change_marker() == before


def test_hostile_reason_is_stored_literally(store: Store) -> None:
    """A reason with markup and controls is data (NUL becomes U+FFFD)."""
    store.dismiss(("social", "s3"), reason="[@click=app.quit]\x00", by="[b]x[/b]", now=NOW)
    _, events, _ = store.conversation(("social", "s3")) or (None, [], [])
    assert dict(events[-1].fields) == {"reason": "[@click=app.quit]\ufffd", "by": "[b]x[/b]"}


# -- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        pytest.param([], 0.5, None, id="empty"),
        pytest.param([7], 0.9, 7, id="one"),
        pytest.param([4, 1, 3, 2], 0.5, 2, id="median-even-nearest-rank"),
        pytest.param([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, 9, id="p90"),
        pytest.param([1, 2, 3], 1.0, 3, id="max"),
    ],
)
def test_percentile_is_nearest_rank(
    values: list[int], fraction: float, expected: int | None
) -> None:
    """Percentiles are exact nearest-rank values, as in the reports (SLA.md §7)."""
    assert percentile(values, fraction) == expected


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        pytest.param(NOW, "America/New_York", datetime(2026, 3, 4, 5, 0, tzinfo=UTC), id="est"),
        pytest.param(
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
            id="dst-day-est-midnight",
        ),
        pytest.param(
            datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
            id="after-dst-edt",
        ),
        pytest.param(NOW, "UTC", datetime(2026, 3, 4, 0, 0, tzinfo=UTC), id="utc"),
        pytest.param(
            datetime(2026, 3, 4, 23, 30, tzinfo=UTC),
            "Asia/Tokyo",
            datetime(2026, 3, 4, 15, 0, tzinfo=UTC),
            id="ahead-of-utc",
        ),
    ],
)
def test_local_midnight(now: datetime, zone: str, expected: datetime) -> None:
    """Today starts at the last local midnight of the team's timezone."""
    assert local_midnight(now, ZoneInfo(zone)) == expected


def sample_row(**changes: Any) -> QueueRow:
    """A social mention's row: first reply started at NOW, at risk at +4m, due at +6m."""
    row = QueueRow(
        source="social",
        kind="mastodon",
        conversation="x",
        channel=None,
        customer=None,
        subject=None,
        snippet=None,
        priority=None,
        assignee=None,
        group=None,
        status=None,
        url=None,
        policy="social",
        first_event_at=NOW,
        last_event_at=NOW,
        metric=Metric.FIRST_RESPONSE,
        cycle=0,
        state=ClockState.RUNNING,
        started_at=NOW,
        due_at=NOW + timedelta(minutes=6),
        at_risk_at=NOW + timedelta(minutes=4),
        target_seconds=360,
        elapsed_seconds=0,
        evaluated_at=NOW,
    )
    return replace(row, **changes)


@pytest.mark.parametrize(
    ("changes", "minutes", "expected"),
    [
        pytest.param({}, 0, "running", id="running"),
        pytest.param({}, 4, "at_risk", id="warning-reached-by-time"),
        pytest.param({}, 6, "overdue", id="due-reached-by-time"),
        pytest.param({"state": ClockState.AT_RISK}, 7, "overdue", id="at-risk-then-due"),
        pytest.param({"state": ClockState.OVERDUE}, 7, "overdue", id="overdue-stays"),
        pytest.param({"state": ClockState.BREACHED}, 7, "breached", id="breached-stays"),
        pytest.param({"state": ClockState.PAUSED, "due_at": None}, 9, "paused", id="paused"),
        pytest.param({"state": None}, 0, WAITING, id="waiting"),
        pytest.param({"state": None, "policy": None}, 0, NO_POLICY, id="no-policy"),
    ],
)
def test_queue_state_moves_with_time_as_the_engine_will(
    changes: dict[str, Any], minutes: int, expected: str
) -> None:
    """A row's state at an instant: time turns running into at risk and overdue, never
    into breached (only the engine confirms a breach)."""
    assert queue_state(sample_row(**changes), NOW + timedelta(minutes=minutes)) == expected
