"""Tests of the report read from the store, on every engine: the same as explain's clocks."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from conftest import database_urls
from sqlalchemy import create_engine, text
from test_report import NOW, WEEK, config, pure_report, two_weeks_of_events

from monitor.events import Actor, Clock, ClockState, Conversation, Event, EventKind, Metric
from monitor.explain import explain_events
from monitor.pipeline import Evaluator
from monitor.reports.tabular import report_json
from monitor.reports.weekly import make_report
from monitor.storage import EvaluationRecord, Store
from monitor.storage.models import NAME_LIMIT
from monitor.storage.store import migrations_config


def _engine_url(url: str) -> str:
    """Return a SQLAlchemy URL the tests can use directly (psycopg for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    schema = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_engine_url(request.param))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in request.param else "?"
    try:
        yield f"{request.param}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _fill(store: Store, events: list[Event]) -> None:
    """Ingest the events as the runner would (watermark = NOW), then evaluate them."""
    settings = config()
    store.register_sources([(s.name, s.kind) for s in settings.sources])
    by_source: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_source[event.source].append(event)
    for source, batch in by_source.items():
        store.ingest(source, batch, {"page": 1}, NOW, now=NOW)
    Evaluator(settings, store).evaluate_dirty(now=NOW)


def test_the_stores_report_is_the_report_of_explains_clocks(database_url: str) -> None:
    """Ingested, evaluated, stored, read back: every figure equals the one from explain."""
    events = two_weeks_of_events()
    expected = report_json(pure_report(explain_events(events, config(), now=NOW)))
    with Store.open(database_url) as store:
        _fill(store, events)
        got = report_json(make_report(store, config(), WEEK, now=NOW))
    assert got["totals"] == expected["totals"]
    assert got["policies"] == expected["policies"]
    assert got["agents"] == expected["agents"]
    assert got["longest_breaches"] == expected["longest_breaches"]
    assert got["open_breaches"] == expected["open_breaches"]
    assert got == expected


def test_an_empty_store_gives_an_empty_report(database_url: str) -> None:
    """A store with nothing in the period reports an empty week, not an error."""
    with Store.open(database_url) as store:
        report = make_report(store, config(), WEEK, now=NOW)
    assert report.empty
    assert report.totals.open_breaches == 0


def _clock(conversation: str, state: ClockState, *, due: datetime,
           stopped: datetime | None, **extra: Any) -> Clock:
    return Clock(source="acme-desk", conversation=conversation, policy="desk",
                 metric=Metric.FIRST_RESPONSE, cycle=0, state=state,
                 started_at=due - timedelta(hours=1), due_at=due, stopped_at=stopped,
                 target_seconds=3600, elapsed_seconds=5400, paused_seconds=0, **extra)


@pytest.mark.parametrize(
    ("state", "due", "stopped", "is_open"),
    [
        pytest.param(ClockState.BREACHED, -2, None, True, id="still-running"),
        pytest.param(ClockState.BREACHED, -2, 3, True, id="answered-after-the-end"),
        pytest.param(ClockState.BREACHED, -2, 0, True, id="answered-exactly-at-the-end"),
        pytest.param(ClockState.BREACHED, -2, -1, False, id="answered-before-the-end"),
        pytest.param(ClockState.BREACHED, 2, None, False, id="due-after-the-end"),
        pytest.param(ClockState.OVERDUE, -2, None, False, id="not-confirmed"),
        pytest.param(ClockState.CANCELLED, -2, 3, False, id="dismissed-later"),
        pytest.param(ClockState.MET, -2, -3, False, id="met"),
    ],
)
def test_open_breaches_at_the_end(
    database_url: str, state: ClockState, due: int, stopped: int | None, is_open: bool
) -> None:
    """Breached, due before the end and unanswered at it: that, and only that, is open."""
    end = WEEK.end
    clock = _clock("c1", state, due=end + timedelta(hours=due),
                   stopped=None if stopped is None else end + timedelta(hours=stopped))
    with Store.open(database_url) as store:
        store.register_sources([("acme-desk", "zendesk")])
        record = EvaluationRecord(("acme-desk", "c1"),
                                  Conversation(source="acme-desk", id="c1", channel="email"),
                                  "desk", (clock,))
        store.save_evaluations([record], now=end + timedelta(hours=5))
        rows = store.open_breaches(end)
    assert bool(rows) == is_open
    if is_open:
        assert rows[0].channel == "email"
        assert rows[0].due_at is not None


def test_people_and_channel_are_stored_bounded(database_url: str) -> None:
    """stopped_by, assignee and channel round-trip; absurdly long ones are cut, kept apart."""
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    stopped = WEEK.start + timedelta(days=1)
    clocks = (
        _clock("c1", ClockState.BREACHED, due=stopped - timedelta(minutes=30), stopped=stopped,
               stopped_by="kim <b>", assignee="lee"),
        _clock("c2", ClockState.BREACHED, due=stopped - timedelta(minutes=30), stopped=stopped,
               stopped_by=long_a, assignee=long_b),
    )
    with Store.open(database_url) as store:
        store.register_sources([("acme-desk", "zendesk")])
        store.save_evaluations([
            EvaluationRecord(("acme-desk", c.conversation),
                             Conversation(source="acme-desk", id=c.conversation,
                                          channel="x" * 500),
                             "desk", (c,))
            for c in clocks
        ], now=stopped)
        read = {c.conversation: c for c in store.clocks()}
        rows = list(store.report_rows(WEEK.start, WEEK.end))
    assert (read["c1"].stopped_by, read["c1"].assignee) == ("kim <b>", "lee")
    cut_by, cut_assignee = read["c2"].stopped_by or "", read["c2"].assignee or ""
    assert len(cut_by) == len(cut_assignee) == NAME_LIMIT
    assert cut_by != cut_assignee
    assert {len(row[2] or "") for row in rows} == {NAME_LIMIT}


def test_transition_snapshots_carry_the_people(database_url: str) -> None:
    """The clock kept with a transition has stopped_by and assignee too."""
    stopped = WEEK.start + timedelta(days=1)
    clock = _clock("c1", ClockState.MET, due=stopped + timedelta(minutes=1), stopped=stopped,
                   stopped_by="kim", assignee="lee")
    with Store.open(database_url) as store:
        store.register_sources([("acme-desk", "zendesk")])
        store.save_evaluations([EvaluationRecord(
            ("acme-desk", "c1"), Conversation(source="acme-desk", id="c1"), "desk", (clock,)
        )], now=stopped)
        (transition,) = store.transitions()
    assert (transition.clock.stopped_by, transition.clock.assignee) == ("kim", "lee")


def _migrate(database_url: str, action: Any, revision: str) -> None:
    engine = create_engine(_engine_url(database_url))
    settings = migrations_config()
    try:
        with engine.begin() as connection:
            settings.attributes["connection"] = connection
            action(settings, revision)
    finally:
        engine.dispose()


def test_migration_0002_keeps_clocks_and_reverts(database_url: str) -> None:
    """A store at 0001 with clocks is upgraded in place (new columns empty) and reverts."""
    _migrate(database_url, command.upgrade, "0001")
    engine = create_engine(_engine_url(database_url))
    stopped = "2026-11-17 10:00:00+00" if "postgresql" in database_url else (
        "2026-11-17T10:00:00.000000Z")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO sources (name, kind) VALUES ('s', 'zendesk')"))
        connection.execute(text("INSERT INTO conversations (source, conversation) "
                                "VALUES ('s', 'c')"))
        connection.execute(text(
            "INSERT INTO clocks (source, conversation, metric, cycle, policy, state, "
            "started_at, stopped_at, due_at, target_seconds, elapsed_seconds, paused_seconds, "
            "updated_at) VALUES ('s', 'c', 'first_response', 0, 'desk', 'met', :at, :at, "
            ":at, 60, 30, 0, :at)"), {"at": stopped})
    engine.dispose()
    with Store.open(database_url) as store:
        (clock,) = store.clocks()
        assert (clock.stopped_by, clock.assignee) == (None, None)
        rows = list(store.report_rows(WEEK.start, WEEK.end))
    assert [(row[0], row[2], row[6]) for row in rows] == [("desk", None, 30)]
    _migrate(database_url, command.downgrade, "0001")
    engine = create_engine(_engine_url(database_url))
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM clocks")).scalar()
    engine.dispose()
    assert count == 1


def test_a_reply_after_the_week_keeps_the_breach_open(tmp_path: Path) -> None:
    """A mention unanswered at the end and answered on Monday is an open breach of the week."""
    due = WEEK.end - timedelta(hours=1)
    events = [
        Event(source="acme-mastodon", conversation="m1", id="1", at=due - timedelta(minutes=6),
              kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, url="https://m.example/@a/1"),
        Event(source="acme-mastodon", conversation="m1", id="2", at=WEEK.end + timedelta(hours=2),
              kind=EventKind.MESSAGE, actor=Actor.AGENT, author="kim"),
    ]
    with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
        _fill(store, events)
        report = make_report(store, config(), WEEK, now=NOW)
    (breach,) = report.open_breaches
    assert breach.stopped_at == WEEK.end + timedelta(hours=2)
    assert breach.url == "https://m.example/@a/1"
    assert report.totals.clocks.current == 0
    assert NOW.tzinfo is UTC
