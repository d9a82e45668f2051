"""Tests of the store on every engine: ingest, evaluations, deadlines, schema, failures."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from conftest import database_urls
from sqlalchemy import create_engine, text

from monitor.errors import StorageError
from monitor.events import (
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Metric,
    Priority,
    Status,
    Transition,
)
from monitor.storage import EvaluationRecord, OutboxItem, Store
from monitor.storage.store import migrations_config

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)
SOURCE = "desk"
HEAD = ScriptDirectory.from_config(migrations_config()).get_current_head()


def _engine_url(url: str) -> str:
    """Return a SQLAlchemy URL the tests can use directly (psycopg for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
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


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """An open store with the source ``desk`` registered."""
    opened = Store.open(database_url)
    opened.register_sources([(SOURCE, "zendesk"), ("social", "mastodon")])
    try:
        yield opened
    finally:
        opened.close()


def _sql(database_url: str, statement: str) -> list[Any]:
    """Run one SQL statement on the database behind the store's back; return its rows."""
    engine = create_engine(_engine_url(database_url))
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def message(
    conversation: str,
    event_id: str,
    at: datetime = T0,
    *,
    actor: Actor = Actor.CUSTOMER,
    text_: str | None = "hello",
    source: str = SOURCE,
) -> Event:
    """A public message event."""
    return Event(
        source=source,
        conversation=conversation,
        id=event_id,
        at=at,
        kind=EventKind.MESSAGE,
        actor=actor,
        text=text_,
    )


def clock(
    conversation: str,
    state: ClockState = ClockState.RUNNING,
    *,
    metric: Metric = Metric.FIRST_RESPONSE,
    cycle: int = 0,
    due_at: datetime | None = T0 + timedelta(hours=1),
    at_risk_at: datetime | None = T0 + timedelta(minutes=45),
    stopped_at: datetime | None = None,
    source: str = SOURCE,
) -> Clock:
    """A clock of ``conversation`` started at T0 with a one-hour target."""
    return Clock(
        source=source,
        conversation=conversation,
        policy="desk",
        metric=metric,
        cycle=cycle,
        state=state,
        started_at=T0,
        due_at=due_at,
        stopped_at=stopped_at,
        target_seconds=3600,
        elapsed_seconds=60,
        paused_seconds=0,
        priority=Priority.HIGH,
        at_risk_at=at_risk_at,
        reasons=("first public customer message",),
    )


def record(conversation: str, *clocks: Clock, source: str = SOURCE, **attributes: Any) -> Any:
    """An evaluation record of ``conversation`` with these clocks."""
    return EvaluationRecord(
        key=(source, conversation),
        conversation=Conversation(source=source, id=conversation, **attributes),
        policy="desk",
        clocks=tuple(clocks),
    )


# -- opening and schema ------------------------------------------------------------------


def test_open_creates_the_schema_and_reports_it(database_url: str) -> None:
    """An empty database is migrated to head at open, and upgrade() says from what."""
    head = ScriptDirectory.from_config(migrations_config()).get_current_head()
    with Store.open(database_url) as store:
        assert store.upgrade() == (None, head)
        assert store.counts() == {
            "events": 0,
            "conversations": 0,
            "open_conversations": 0,
            "open_clocks": 0,
        }
    with Store.open(database_url) as again:
        assert again.upgrade() == (head, head)


def test_open_reports_dialect_and_display_url(database_url: str) -> None:
    """The store names its engine and a printable URL."""
    with Store.open(database_url) as store:
        assert store.dialect == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
        assert store.display_url.split("://")[0] == database_url.split("://")[0]


def test_upgrade_false_refuses_an_empty_database(database_url: str) -> None:
    """A store that is behind is refused without upgrade, and is left untouched."""
    behind = rf"behind this replywatch \({HEAD}\); run `replywatch db"
    with pytest.raises(StorageError, match=behind):
        Store.open(database_url, upgrade=False)
    with Store.open(database_url) as store:
        assert store.upgrade() == (None, HEAD)


def test_a_store_behind_head_is_upgraded(database_url: str) -> None:
    """A database migrated down to base is brought back to head at open."""
    Store.open(database_url).close()
    engine = create_engine(_engine_url(database_url))
    config = migrations_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    engine.dispose()
    with pytest.raises(StorageError, match="behind"):
        Store.open(database_url, upgrade=False)
    with Store.open(database_url) as store:
        store.register_sources([(SOURCE, "zendesk")])
        assert store.upgrade() == (None, HEAD)
        assert [state.name for state in store.sources()] == [SOURCE]


def test_a_store_at_a_newer_schema_is_refused(database_url: str) -> None:
    """A database migrated by a newer replywatch is refused, even with upgrade allowed."""
    Store.open(database_url).close()
    _sql(database_url, "UPDATE alembic_version SET version_num = '0099_future'")
    for upgrade in (True, False):
        with pytest.raises(StorageError) as caught:
            Store.open(database_url, upgrade=upgrade)
        assert str(caught.value).endswith(
            f"database is at schema 0099_future, newer than this replywatch ({HEAD}); "
            "upgrade replywatch"
        )


@pytest.mark.parametrize(
    ("url", "shown", "reason"),
    [
        pytest.param(
            "postgresql://postgres:s3cret@127.0.0.1:1/test",
            "postgresql://postgres@127.0.0.1:1/test",
            "Connection refused",
            id="postgresql-refused",
        ),
        pytest.param(
            "postgres://postgres:s3cret@127.0.0.1:1/test?sslmode=disable&password=s3cret",
            "postgres://postgres@127.0.0.1:1/test?sslmode=disable",
            "Connection refused",
            id="postgres-scheme-password-in-query",
        ),
        pytest.param(
            "sqlite:////nonexistent-dir-s3cret/store.db",
            "sqlite:////nonexistent-dir-s3cret/store.db",
            "unable to open database file",
            id="sqlite-missing-directory",
        ),
        pytest.param(
            "mysql://root:s3cret@127.0.0.1/replywatch",
            "mysql://root@127.0.0.1/replywatch",
            "unsupported database 'mysql'",
            id="unsupported-engine",
        ),
        pytest.param(
            "::not a url s3cret::",
            "the configured database URL",
            "not a database URL",
            id="not-a-url",
        ),
    ],
)
def test_an_unusable_database_is_one_line_without_password(
    url: str, shown: str, reason: str
) -> None:
    """Failing to open a database is one StorageError line naming it, password removed."""
    with pytest.raises(StorageError) as caught:
        Store.open(url)
    message_ = str(caught.value)
    assert message_.startswith(f"cannot open database {shown}: ")
    assert reason in message_
    assert "\n" not in message_
    assert "s3cret" not in message_ or "nonexistent-dir-s3cret" in shown


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_store_runs_in_wal_mode(database_url: str) -> None:
    """A SQLite store is left in WAL mode, so readers never block its writer."""
    Store.open(database_url).close()
    assert _sql(database_url, "PRAGMA journal_mode") == [("wal",)]


# -- sources -----------------------------------------------------------------------------


def test_register_sources_is_idempotent_and_keeps_state(store: Store) -> None:
    """Registering again keeps a source's cursor and watermark and updates its kind."""
    store.ingest(SOURCE, [], {"page": 3}, T0, now=T0)
    store.register_sources([(SOURCE, "freshdesk"), (SOURCE, "freshdesk")])
    state = store.source_state(SOURCE)
    assert (state.kind, state.cursor, state.watermark) == ("freshdesk", {"page": 3}, T0)
    assert [s.name for s in store.sources()] == [SOURCE, "social"]


def test_unknown_source_is_refused(store: Store) -> None:
    """Reading, ingesting or failing an unregistered source is a StorageError."""
    with pytest.raises(StorageError, match="'nope' is not registered"):
        store.source_state("nope")
    with pytest.raises(StorageError, match="'nope' is not registered"):
        store.ingest("nope", [message("1", "e1", source="nope")], {}, None, now=T0)
    with pytest.raises(StorageError, match="'nope' is not registered"):
        store.record_failure("nope", "boom", degraded=False, now=T0)
    assert store.counts()["events"] == 0


# -- ingest ------------------------------------------------------------------------------


def test_ingest_is_idempotent(store: Store) -> None:
    """The same batch twice is stored once; only new events count and dirty conversations."""
    batch = [message("1", "e1"), message("1", "e2"), message("2", "e3")]
    first = store.ingest(SOURCE, batch, {"page": 1}, None, now=T0)
    assert (first.new_events, first.conversations) == (3, frozenset({"1", "2"}))
    again = store.ingest(SOURCE, batch, {"page": 1}, None, now=T0)
    assert (again.new_events, again.conversations) == (0, frozenset())
    overlap = store.ingest(SOURCE, [*batch, message("3", "e4")], {"page": 2}, None, now=T0)
    assert (overlap.new_events, overlap.conversations) == (1, frozenset({"3"}))
    assert store.counts()["events"] == 4
    assert store.counts()["conversations"] == 3


def test_an_id_repeated_in_one_batch_is_stored_once(store: Store) -> None:
    """Within a batch the first event of an id wins."""
    result = store.ingest(
        SOURCE,
        [message("1", "e1", text_="first"), message("1", "e1", text_="second")],
        {},
        None,
        now=T0,
    )
    assert result.new_events == 1
    assert [e.text for e in store.load_events([(SOURCE, "1")])[(SOURCE, "1")]] == ["first"]


def test_same_event_id_in_two_sources_is_two_events(store: Store) -> None:
    """Event ids are unique per source, not across sources."""
    store.ingest(SOURCE, [message("1", "e1")], {}, None, now=T0)
    result = store.ingest("social", [message("1", "e1", source="social")], {}, None, now=T0)
    assert result.new_events == 1
    assert store.counts()["events"] == 2


def test_an_event_of_another_source_is_refused(store: Store) -> None:
    """ingest() refuses an event whose source is not the one being ingested."""
    with pytest.raises(ValueError, match="belongs to source 'social'"):
        store.ingest(SOURCE, [message("1", "e1", source="social")], {}, None, now=T0)
    assert store.counts()["events"] == 0


def _install_failing_trigger(database_url: str) -> None:
    """Make the database itself refuse any event whose id is 'boom'."""
    if database_url.startswith("sqlite"):
        _sql(
            database_url,
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON events WHEN NEW.event_id = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
        )
        return
    _sql(
        database_url,
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event_id = 'boom' THEN RAISE EXCEPTION 'refused by test trigger'; END IF; "
        "RETURN NEW; END $$",
    )
    _sql(
        database_url,
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    )


def test_events_cursor_and_watermark_are_one_transaction(store: Store, database_url: str) -> None:
    """A failing insert leaves cursor, watermark, health and every event of the batch untouched."""
    store.ingest(SOURCE, [message("1", "e1")], {"page": 1}, T0, now=T0)
    store.record_failure(SOURCE, "earlier failure", degraded=True, now=T0)
    _install_failing_trigger(database_url)
    later = T0 + timedelta(hours=1)
    with pytest.raises(StorageError) as caught:
        store.ingest(
            SOURCE, [message("2", "e2"), message("2", "boom")], {"page": 2}, later, now=later
        )
    assert "refused by test trigger" in str(caught.value)
    assert "\n" not in str(caught.value)
    state = store.source_state(SOURCE)
    assert (state.cursor, state.watermark, state.last_error) == ({"page": 1}, T0, "earlier failure")
    assert store.counts()["events"] == 1
    assert store.dirty_conversations() == [(SOURCE, "1")]


@pytest.mark.parametrize(
    ("watermarks", "expected"),
    [
        pytest.param([T0], T0, id="first"),
        pytest.param([T0, T0 + timedelta(seconds=1)], T0 + timedelta(seconds=1), id="forward"),
        pytest.param([T0, T0 - timedelta(microseconds=1)], T0, id="backwards-ignored"),
        pytest.param([T0, None], T0, id="none-keeps"),
        pytest.param([None, None], None, id="never-known"),
    ],
)
def test_watermark_never_moves_backwards(
    store: Store, watermarks: list[datetime | None], expected: datetime | None
) -> None:
    """The stored watermark is the latest one given; earlier or None ones do not move it."""
    for page, watermark in enumerate(watermarks):
        store.ingest(SOURCE, [], {"page": page}, watermark, now=T0)
    state = store.source_state(SOURCE)
    assert state.watermark == expected
    assert state.cursor == {"page": len(watermarks) - 1}


NAIVE = datetime(2026, 3, 2, 9, 0)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.ingest(SOURCE, [], {}, None, now=NAIVE), id="ingest-now"),
        pytest.param(lambda s: s.ingest(SOURCE, [], {}, NAIVE, now=T0), id="ingest-watermark"),
        pytest.param(
            lambda s: s.record_failure(SOURCE, "x", degraded=False, now=NAIVE), id="failure-now"
        ),
        pytest.param(lambda s: s.due_conversations(SOURCE, NAIVE), id="due-until"),
        pytest.param(lambda s: s.next_deadline(SOURCE, NAIVE), id="next-deadline-after"),
        pytest.param(lambda s: s.save_evaluations([record("1")], now=NAIVE), id="save-now"),
        pytest.param(lambda s: s.clocks(stopped_from=NAIVE), id="clocks-from"),
        pytest.param(lambda s: s.transitions(since=NAIVE), id="transitions-since"),
        pytest.param(
            lambda s: s.save_evaluations([record("1", clock("1", due_at=NAIVE))], now=T0),
            id="clock-due-at",
        ),
    ],
)
def test_naive_datetimes_are_refused(store: Store, call: Any) -> None:
    """Every way into the store refuses a naive datetime and stores nothing."""
    with pytest.raises((ValueError, StorageError), match=r"timezone|naive"):
        call(store)
    assert store.counts()["conversations"] == 0
    assert store.source_state(SOURCE).cursor is None


def test_every_event_field_round_trips(store: Store) -> None:
    """load_events and conversation() return the events exactly as ingested, sorted."""
    events = [
        Event(
            SOURCE,
            "7",
            "m1",
            T0 + timedelta(minutes=5),
            EventKind.MESSAGE,
            actor=Actor.AGENT,
            public=False,
            channel="email",
            url="https://x.example/7",
            author="kim",
            text="internal note",
        ),
        Event(SOURCE, "7", "s1", T0, EventKind.STATUS, status=Status.ON_HOLD),
        Event(
            SOURCE,
            "7",
            "u1",
            T0,
            EventKind.UPDATE,
            fields={
                "priority": "high",
                "tags": ["vip", "billing"],
                "n": 3,
                "x": None,
                "nested": {"deep": [1, 2.5, True]},
            },
        ),
        Event(SOURCE, "7", "b1", T0 + timedelta(minutes=9), EventKind.MESSAGE, actor=Actor.BOT),
        Event(SOURCE, "7", "d1", T0 + timedelta(minutes=9), EventKind.DISMISSED, author="lead"),
    ]
    store.ingest(SOURCE, list(reversed(events)), {}, None, now=T0)
    expected = sorted(events, key=lambda e: e.sort_key)
    assert store.load_events([(SOURCE, "7")]) == {(SOURCE, "7"): expected}
    found = store.conversation((SOURCE, "7"))
    assert found is not None
    assert found[1] == expected
    assert found[0] == Conversation(SOURCE, "7")
    assert all(e.at.tzinfo is UTC for e in found[1])


@pytest.mark.parametrize(
    ("hostile", "stored"),
    [
        pytest.param("a\x00b", "a\ufffdb", id="nul"),
        pytest.param("x\ud800y", "x\ufffdy", id="lone-surrogate"),
        pytest.param("\U0001f600 caf\u00e9 \u05e9\u05dc\u05d5\u05dd", None, id="emoji-rtl"),
        pytest.param("\u202eevil\u202c \x1b[31mred\x1b[0m \x07", None, id="bidi-ansi-bell"),
        pytest.param("'); DROP TABLE events; --", None, id="sql"),
        pytest.param("[bold]markup[/] ${HOME} %s %(x)s ?", None, id="placeholders"),
        pytest.param("\\u0000 is not a NUL", None, id="escaped-nul-text"),
        pytest.param("long " * 200_000, None, id="one-megabyte"),
    ],
)
def test_hostile_text_is_stored_safely(store: Store, hostile: str, stored: str | None) -> None:
    """Public text never breaks a write; NUL and lone surrogates become U+FFFD everywhere."""
    expected = hostile if stored is None else stored
    event = Event(
        SOURCE,
        hostile,
        hostile,
        T0,
        EventKind.MESSAGE,
        actor=Actor.CUSTOMER,
        channel=hostile,
        url=hostile,
        author=hostile,
        text=hostile,
        fields={hostile: [hostile, {"k": hostile}], "nan": float("nan")},
    )
    result = store.ingest(SOURCE, [event], {"since": hostile}, None, now=T0)
    (stored_id,) = result.conversations
    if len(expected) <= 255:
        assert stored_id == expected
    else:  # an id too long to index is shortened to a stable, bounded form
        assert len(stored_id) <= 255
        assert stored_id.startswith(expected[:200])
    # The id as the source gave it, or as the store gave it back, finds the events.
    for key in ((SOURCE, hostile), (SOURCE, stored_id)):
        (loaded,) = store.load_events([key])[key]
        assert (loaded.conversation, loaded.id) == (stored_id, stored_id)
        assert (loaded.text, loaded.author, loaded.channel, loaded.url) == (expected,) * 4
        assert dict(loaded.fields) == {expected: (expected, {"k": expected}), "nan": None}
    assert store.source_state(SOURCE).cursor == {"since": expected}
    store.record_failure(SOURCE, hostile, degraded=False, now=T0)
    assert store.source_state(SOURCE).last_error == expected[:2000]
    store.save_evaluations(
        [record(hostile, clock(hostile), assignee=hostile, tags=(hostile,), subject=hostile)],
        now=T0,
    )
    found = store.conversation((SOURCE, hostile))
    assert found is not None
    assert (found[0].assignee, found[0].tags, found[0].subject) == (expected, (expected,), expected)
    assert [c.conversation for c in found[2]] == [stored_id]
    assert store.dirty_conversations() == []


@pytest.mark.parametrize(
    "instant",
    [
        pytest.param(datetime(2026, 3, 2, 9, 0, 0, 1, tzinfo=UTC), id="one-microsecond"),
        pytest.param(datetime(2026, 3, 2, 9, 0, 0, 999999, tzinfo=UTC), id="last-microsecond"),
        pytest.param(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), id="whole-second"),
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), id="epoch"),
        pytest.param(datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="far-future"),
        pytest.param(
            datetime(2026, 3, 2, 14, 30, 0, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            id="offset-input",
        ),
    ],
)
def test_instants_round_trip_as_aware_utc_to_the_microsecond(
    store: Store, instant: datetime
) -> None:
    """Every instant read back equals the one stored, in UTC, microseconds kept."""
    store.ingest(SOURCE, [message("1", "e1", instant)], {}, instant, now=instant)
    (loaded,) = store.load_events([(SOURCE, "1")])[(SOURCE, "1")]
    state = store.source_state(SOURCE)
    for value in (loaded.at, state.watermark, state.last_poll_at):
        assert value == instant
        assert value is not None
        assert value.tzinfo is UTC


def test_instants_sort_in_sql_as_in_time(store: Store) -> None:
    """SQL comparisons of stored instants follow time, microseconds and whole seconds alike."""
    whole = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    candidates = [whole + timedelta(microseconds=1), whole, whole - timedelta(microseconds=1)]
    store.save_evaluations(
        [
            record(str(number), clock(str(number), due_at=due, at_risk_at=None))
            for number, due in enumerate(candidates)
        ],
        now=T0,
    )
    assert store.next_deadline(SOURCE, T0) == whole - timedelta(microseconds=1)
    assert store.next_deadline(SOURCE, whole - timedelta(microseconds=1)) == whole
    assert store.due_conversations(SOURCE, whole) == [(SOURCE, "1"), (SOURCE, "2")]


# -- evaluations -------------------------------------------------------------------------


def test_save_evaluations_records_transitions(store: Store) -> None:
    """A new clock, a changed state and an unchanged one make exactly the right transitions."""
    created = store.save_evaluations([record("1", clock("1"))], now=T0)
    assert created == [Transition(clock("1"), None, T0)]
    later = T0 + timedelta(minutes=1)
    assert store.save_evaluations([record("1", clock("1"))], now=later) == []
    at_risk = clock("1", ClockState.AT_RISK)
    latest = T0 + timedelta(minutes=50)
    assert store.save_evaluations([record("1", at_risk)], now=latest) == [
        Transition(at_risk, ClockState.RUNNING, latest)
    ]
    assert store.transitions() == [
        Transition(clock("1"), None, T0),
        Transition(at_risk, ClockState.RUNNING, latest),
    ]
    assert store.transitions(since=later) == [Transition(at_risk, ClockState.RUNNING, latest)]
    assert store.transitions(limit=1) == [Transition(at_risk, ClockState.RUNNING, latest)]
    assert store.open_clocks() == [at_risk]


def test_clocks_no_longer_produced_are_deleted(store: Store) -> None:
    """Saving an evaluation replaces the conversation's clocks with the ones produced."""
    resolution = clock("1", metric=Metric.RESOLUTION)
    store.save_evaluations([record("1", clock("1"), resolution)], now=T0)
    store.save_evaluations([record("1", resolution)], now=T0)
    found = store.conversation((SOURCE, "1"))
    assert found is not None
    assert found[2] == [resolution]


def test_save_evaluations_clears_dirty(store: Store) -> None:
    """Evaluated conversations are no longer dirty; the others still are."""
    store.ingest(SOURCE, [message("1", "e1"), message("2", "e2")], {}, None, now=T0)
    store.ingest("social", [message("9", "e9", source="social")], {}, None, now=T0)
    assert store.dirty_conversations() == [(SOURCE, "1"), (SOURCE, "2"), ("social", "9")]
    assert store.dirty_conversations("social") == [("social", "9")]
    assert store.dirty_conversations(limit=1) == [(SOURCE, "1")]
    assert store.dirty_sources() == {SOURCE, "social"}
    store.load_events([(SOURCE, "1")])
    store.save_evaluations([record("1", clock("1"))], now=T0)
    assert store.dirty_conversations() == [(SOURCE, "2"), ("social", "9")]
    store.load_events([(SOURCE, "2")])
    store.save_evaluations([record("2", clock("2"))], now=T0)
    assert store.dirty_sources() == {"social"}


def test_an_ingest_racing_an_evaluation_keeps_the_conversation_dirty(store: Store) -> None:
    """Events ingested after load_events leave the conversation dirty after the save."""
    store.ingest(SOURCE, [message("1", "e1")], {}, None, now=T0)
    store.load_events([(SOURCE, "1")])
    store.ingest(SOURCE, [message("1", "e2", T0 + timedelta(minutes=1))], {}, None, now=T0)
    store.save_evaluations([record("1", clock("1"))], now=T0)
    assert store.dirty_conversations() == [(SOURCE, "1")]
    store.load_events([(SOURCE, "1")])
    store.save_evaluations([record("1", clock("1"))], now=T0)
    assert store.dirty_conversations() == []


def test_an_evaluation_of_events_added_to_since_is_not_saved(store: Store) -> None:
    """An evaluation made before an ingest, saved after a newer one, is dropped: the
    newer clocks stay, and no transition goes back to the older state."""
    store.ingest(SOURCE, [message("1", "e1")], {}, None, now=T0)
    stale = Store.open(store.shared_url or "")  # another process, say
    try:
        stale.load_events([(SOURCE, "1")])
        store.ingest(SOURCE, [message("1", "e2", T0 + timedelta(minutes=1))], {}, None, now=T0)
        store.load_events([(SOURCE, "1")])
        met = clock("1", ClockState.MET, stopped_at=T0 + timedelta(minutes=1))
        assert store.save_evaluations([record("1", met)], now=T0) == [
            Transition(met, None, T0)
        ]
        assert stale.save_evaluations([record("1", clock("1"))], now=T0) == []
    finally:
        stale.close()
    assert [c.state for c in store.clocks()] == [ClockState.MET]
    assert [t.clock.state for t in store.transitions()] == [ClockState.MET]
    assert store.dirty_conversations() == []


def test_summary_open_flag_and_counts(store: Store) -> None:
    """A conversation is open with an open clock, or unsolved and not dismissed."""
    met = clock("solved", ClockState.MET, stopped_at=T0 + timedelta(minutes=5))
    store.save_evaluations(
        [
            record("running", clock("running")),
            record("solved", met, status=Status.SOLVED),
            record("dismissed", dismissed=True),
            record("new", status=Status.NEW),
        ],
        now=T0,
    )
    assert store.counts() == {
        "events": 0,
        "conversations": 4,
        "open_conversations": 2,
        "open_clocks": 1,
    }
    found = store.conversation((SOURCE, "solved"))
    assert found is not None
    assert found[0] == Conversation(SOURCE, "solved", status=Status.SOLVED)
    assert store.conversation((SOURCE, "missing")) is None


DEADLINE_CLOCKS = [
    clock("running", at_risk_at=T0 + timedelta(minutes=45), due_at=T0 + timedelta(minutes=60)),
    clock("at-risk", ClockState.AT_RISK, at_risk_at=T0, due_at=T0 + timedelta(minutes=30)),
    clock("overdue", ClockState.OVERDUE, due_at=T0 - timedelta(minutes=5)),
    clock("paused", ClockState.PAUSED, due_at=None, at_risk_at=None),
    clock("met", ClockState.MET, stopped_at=T0, due_at=T0 - timedelta(hours=1)),
    clock("breached", ClockState.BREACHED, due_at=T0 - timedelta(hours=2)),
]


@pytest.mark.parametrize(
    ("until", "due"),
    [
        pytest.param(T0 - timedelta(hours=1), [], id="before-everything"),
        pytest.param(T0, ["overdue"], id="now-overdue-unconfirmed"),
        pytest.param(T0 + timedelta(minutes=30), ["at-risk", "overdue"], id="at-risk-due"),
        pytest.param(
            T0 + timedelta(minutes=45), ["at-risk", "overdue", "running"], id="running-warns"
        ),
        pytest.param(T0 + timedelta(days=9), ["at-risk", "overdue", "running"], id="far-later"),
    ],
)
def test_due_conversations(store: Store, until: datetime, due: list[str]) -> None:
    """Conversations are due when an open clock's own next change has come."""
    store.save_evaluations([record(c.conversation, c) for c in DEADLINE_CLOCKS], now=T0)
    assert store.due_conversations(SOURCE, until) == [(SOURCE, name) for name in due]
    assert store.due_conversations("social", until) == []


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(T0 - timedelta(hours=3), T0 - timedelta(minutes=5), id="overdue-first"),
        pytest.param(T0, T0 + timedelta(minutes=30), id="at-risk-due-at"),
        pytest.param(T0 + timedelta(minutes=30), T0 + timedelta(minutes=45), id="running-warn"),
        pytest.param(T0 + timedelta(minutes=45), None, id="nothing-left"),
    ],
)
def test_next_deadline(store: Store, after: datetime, expected: datetime | None) -> None:
    """next_deadline is the earliest at_risk_at/due_at still to come among open clocks."""
    store.save_evaluations([record(c.conversation, c) for c in DEADLINE_CLOCKS], now=T0)
    assert store.next_deadline(SOURCE, after) == expected
    assert store.next_deadline("social", after) is None


def test_clock_reads(store: Store) -> None:
    """open_clocks, clocks() by source and stop period, and state_counts agree."""
    store.save_evaluations([record(c.conversation, c) for c in DEADLINE_CLOCKS], now=T0)
    other = clock("x", ClockState.MET, stopped_at=T0 + timedelta(days=1), source="social")
    store.save_evaluations([record("x", other, source="social")], now=T0)
    assert [c.conversation for c in store.open_clocks()] == [
        "overdue",
        "at-risk",
        "running",
        "paused",
    ]
    assert store.clocks(stopped_from=T0, stopped_to=T0 + timedelta(days=1)) == [DEADLINE_CLOCKS[4]]
    assert store.clocks(source="social") == [other]
    assert len(store.clocks()) == len(DEADLINE_CLOCKS) + 1
    assert store.state_counts() == {
        ClockState.RUNNING: 1,
        ClockState.AT_RISK: 1,
        ClockState.OVERDUE: 1,
        ClockState.PAUSED: 1,
        ClockState.BREACHED: 1,
    }


def _outbox(database_url: str) -> list[tuple[str, str, str]]:
    """Return the outbox as (key, target, status) rows."""
    rows = _sql(database_url, "SELECT idempotency_key, target, status FROM alert_outbox")
    return sorted((row[0], row[1], row[2]) for row in rows)


def test_decide_fills_the_outbox_in_the_same_transaction(store: Store, database_url: str) -> None:
    """decide's items are queued once per key; if decide fails nothing of the save lands."""

    def decide(transitions: Sequence[Transition]) -> list[OutboxItem]:
        return [
            OutboxItem(
                key=f"{t.clock.conversation}:{t.clock.state}",
                target="chat",
                kind=str(t.clock.state),
                payload={"text": "\x00 customer wrote this"},
                created_at=t.at,
            )
            for t in transitions
        ]

    store.save_evaluations([record("1", clock("1"))], now=T0, decide=decide)
    store.save_evaluations([record("1", clock("1", ClockState.AT_RISK))], now=T0, decide=decide)
    store.save_evaluations([record("1", clock("1"))], now=T0, decide=decide)
    assert _outbox(database_url) == [
        ("1:at_risk", "chat", "pending"),
        ("1:running", "chat", "pending"),
    ]

    def broken(transitions: Sequence[Transition]) -> list[OutboxItem]:
        raise RuntimeError("alert rules crashed")

    store.ingest(SOURCE, [message("2", "e2")], {}, None, now=T0)
    store.load_events([(SOURCE, "2")])
    with pytest.raises(RuntimeError, match="alert rules crashed"):
        store.save_evaluations([record("2", clock("2"))], now=T0, decide=broken)
    assert store.conversation((SOURCE, "2")) is not None
    assert store.dirty_conversations() == [(SOURCE, "2")]
    assert store.clocks(source=SOURCE) == [clock("1")]


def test_a_breach_that_gets_its_reply_makes_a_recovery_transition(store: Store) -> None:
    """A breached clock that stops stays breached, yet its stop is one transition, once."""
    due = T0 + timedelta(hours=1)
    waiting = clock("1", ClockState.BREACHED, due_at=due)
    answered = clock("1", ClockState.BREACHED, due_at=due, stopped_at=due + timedelta(minutes=7))
    first, second, third = (T0 + timedelta(hours=h) for h in (2, 3, 4))
    assert store.save_evaluations([record("1", waiting)], now=first) == [
        Transition(waiting, None, first)
    ]
    assert store.save_evaluations([record("1", waiting)], now=first) == []
    assert store.save_evaluations([record("1", answered)], now=second) == [
        Transition(answered, ClockState.BREACHED, second)
    ]
    assert store.save_evaluations([record("1", answered)], now=third) == []
    assert store.transitions()[-1] == Transition(answered, ClockState.BREACHED, second)


def test_record_failure_queues_its_alerts_only_when_the_source_starts_failing(
    store: Store, database_url: str
) -> None:
    """decide runs in record_failure's transaction for the first failure of a run only."""
    calls: list[datetime] = []

    def decide(since: datetime) -> list[OutboxItem]:
        calls.append(since)
        return [OutboxItem(f"down:{since.isoformat()}", "chat", "source_down", {}, since)]

    first, second = T0, T0 + timedelta(minutes=1)
    store.record_failure(SOURCE, "503", degraded=False, now=first, decide=decide)
    store.record_failure(SOURCE, "503", degraded=False, now=second, decide=decide)
    assert calls == [first]
    assert _outbox(database_url) == [(f"down:{first.isoformat()}", "chat", "pending")]


def test_evaluations_of_an_unregistered_source_are_refused(store: Store) -> None:
    """Foreign keys hold on every engine: no conversation without its source."""
    with pytest.raises(StorageError, match="saving evaluations failed"):
        store.save_evaluations([record("1", clock("1", source="ghost"), source="ghost")], now=T0)
    assert store.counts()["conversations"] == 0


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([record("1"), record("1")], id="same-conversation-twice"),
        pytest.param([record("1", clock("2"))], id="clock-of-another-conversation"),
        pytest.param([record("1", clock("1"), clock("1"))], id="same-clock-twice"),
    ],
)
def test_inconsistent_evaluations_are_refused(store: Store, records: list[Any]) -> None:
    """save_evaluations refuses records that contradict themselves, saving nothing."""
    with pytest.raises(ValueError, match=r"twice|does not belong|duplicate"):
        store.save_evaluations(records, now=T0)
    assert store.counts()["conversations"] == 0


def test_load_events_spans_sources_and_chunks(store: Store) -> None:
    """Many keys over two sources load completely; unknown keys map to no events."""
    desk = [message(str(n), f"d{n}") for n in range(1200)]
    social = [message(str(n), f"s{n}", source="social") for n in range(30)]
    store.ingest(SOURCE, desk, {}, None, now=T0)
    store.ingest("social", social, {}, None, now=T0)
    keys = [(e.source, e.conversation) for e in desk + social] + [(SOURCE, "unknown")]
    loaded = store.load_events(keys)
    assert len(loaded) == len(keys)
    assert loaded[(SOURCE, "unknown")] == []
    assert loaded[(SOURCE, "1199")] == [desk[1199]]
    assert loaded[("social", "7")] == [social[7]]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plain", id="plain"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("x\ud800y", id="lone-surrogate"),
        pytest.param("long " * 100, id="long-id"),
    ],
)
def test_ingest_returns_its_new_events_as_load_events_reads_them(store: Store, value: str) -> None:
    """IngestResult.events are the new events exactly as stored; repeats are left out."""
    events = [
        message(value, value, T0 + timedelta(minutes=1)),
        Event(SOURCE, value, "u1", T0, EventKind.UPDATE, channel=value, url=value,
              fields={value: [value, 2.5, None, True], "nan": float("nan"), "n": 2**80}),
        Event(SOURCE, value, "s1", T0, EventKind.STATUS, status=Status.OPEN, author=value),
        message(value, value, T0 + timedelta(minutes=2)),  # the same id again: not stored
    ]
    result = store.ingest(SOURCE, events, {}, None, now=T0)
    (conversation,) = result.conversations
    loaded = store.load_events([(SOURCE, conversation)])[(SOURCE, conversation)]
    assert sorted(result.events, key=lambda e: e.sort_key) == loaded
    assert len(loaded) == 3
    assert store.ingest(SOURCE, events, {}, None, now=T0).events == ()


def test_complete_events_reads_back_only_what_memory_lacks(store: Store) -> None:
    """Conversations with older stored events are read; the others come from memory."""
    older = message("1", "e1")
    store.ingest(SOURCE, [older], {}, None, now=T0)
    second = store.ingest(
        SOURCE,
        [message("1", "e2", T0 + timedelta(minutes=1)), message("2", "e3"), message("3", "e4")],
        {},
        None,
        now=T0,
    )
    fresh: dict[tuple[str, str], list[Event]] = {}
    for event in second.events:
        fresh.setdefault((event.source, event.conversation), []).append(event)
    del fresh[(SOURCE, "3")]  # not in memory: read from the store
    keys = [(SOURCE, "1"), (SOURCE, "2"), (SOURCE, "3"), (SOURCE, "unknown")]
    completed = store.complete_events(keys, fresh)
    assert completed == store.load_events(keys)
    assert [e.id for e in completed[(SOURCE, "1")]] == ["e1", "e2"]
    # Like load_events, it remembers what it saw: the save clears dirty unless raced.
    store.ingest(SOURCE, [message("2", "e5", T0 + timedelta(minutes=3))], {}, None, now=T0)
    store.save_evaluations([record("1"), record("2"), record("3")], now=T0)
    assert store.dirty_conversations() == [(SOURCE, "2")]


def test_complete_events_counts_distinct_fresh_ids(store: Store) -> None:
    """Fresh events repeating one id cannot stand for a conversation's other events."""
    store.ingest(SOURCE, [message("1", "e1"), message("1", "e2")], {}, None, now=T0)
    twice = [message("1", "e1"), message("1", "e1")]
    completed = store.complete_events([(SOURCE, "1")], {(SOURCE, "1"): twice})
    assert [e.id for e in completed[(SOURCE, "1")]] == ["e1", "e2"]


# -- failures ----------------------------------------------------------------------------


def test_record_failure_reports_the_first_failure_once(store: Store) -> None:
    """record_failure is True only when a healthy source starts failing; success heals it."""
    first, second = T0, T0 + timedelta(minutes=1)
    assert store.record_failure(SOURCE, "503 from API", degraded=False, now=first) is True
    assert store.record_failure(SOURCE, "timeout", degraded=True, now=second) is False
    state = store.source_state(SOURCE)
    assert (state.failing_since, state.last_error, state.last_error_at) == (
        first,
        "timeout",
        second,
    )
    assert state.degraded is True
    assert state.last_success_at is None
    store.ingest(SOURCE, [], {}, None, now=second)
    healed = store.source_state(SOURCE)
    assert (healed.failing_since, healed.last_error, healed.degraded) == (None, None, False)
    assert healed.last_success_at == second
    assert store.record_failure(SOURCE, "again", degraded=False, now=second) is True


# -- concurrency -------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_concurrent_writers_on_sqlite_do_not_fail(database_url: str) -> None:
    """Two stores on one SQLite file, writing from threads, never see 'database is locked'."""
    first, second = Store.open(database_url), Store.open(database_url)
    first.register_sources([(SOURCE, "zendesk"), ("social", "mastodon")])
    errors: list[BaseException] = []

    def ingest_and_fail(store: Store, source: str) -> None:
        try:
            for batch in range(40):
                events = [message(f"{batch}", f"{batch}-{n}", source=source) for n in range(20)]
                store.ingest(source, events, {"batch": batch}, None, now=T0)
                store.record_failure(source, "flaky", degraded=False, now=T0)
        except BaseException as err:
            errors.append(err)

    def evaluate(store: Store) -> None:
        try:
            for _ in range(40):
                keys = store.dirty_conversations(limit=10)
                store.load_events(keys)
                store.save_evaluations(
                    [record(c, clock(c, source=s), source=s) for s, c in keys], now=T0
                )
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=ingest_and_fail, args=(first, SOURCE)),
        threading.Thread(target=ingest_and_fail, args=(second, "social")),
        threading.Thread(target=evaluate, args=(second,)),
        threading.Thread(target=evaluate, args=(first,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.close()
    second.close()
    assert errors == []
    with Store.open(database_url) as store:
        assert store.counts()["events"] == 2 * 40 * 20
