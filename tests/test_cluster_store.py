"""Tests of the store's cluster side: leases and fencing, heartbeats, job claims, change
push, status and ``db copy``, in one process (the workers as processes: test_cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cluster_env import ROOT, engine_url, fresh_schema
from conftest import database_urls
from sqlalchemy import create_engine, text

from monitor.cli import main
from monitor.errors import LeaseLost, StorageError
from monitor.events import Actor, Clock, ClockState, Conversation, Event, EventKind, Metric
from monitor.storage import (
    ChangeNotice,
    EvaluationRecord,
    Lease,
    OutboxItem,
    Store,
    WorkerSession,
    fenced,
)
from monitor.storage.cluster import _FENCE, LOST, RESYNC, notice_payload, parse_notice
from monitor.storage.copy import copied_tables

POSTGRES = os.environ.get("REPLYWATCH_TEST_DATABASE_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="REPLYWATCH_TEST_DATABASE_URL is not set; .ci/run sets it"
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SOURCES = ("desk", "social")
TTL = 30.0


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    with fresh_schema(request.param) as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (the test is skipped without a server)."""
    if not POSTGRES:
        pytest.skip("REPLYWATCH_TEST_DATABASE_URL is not set; .ci/run sets it")
    with fresh_schema(POSTGRES) as url:
        yield url


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    """An open PostgreSQL store with two sources registered."""
    with Store.open(pg_url) as opened:
        opened.register_sources([("desk", "zendesk"), ("social", "mastodon")])
        yield opened


def _join(store: Store, pid: int) -> WorkerSession:
    return store.join_cluster(host="test", pid=pid, sources=SOURCES,
                              application_name=f"replywatch test {pid}")


@pytest.fixture
def sessions(store: Store) -> Iterator[list[WorkerSession]]:
    """Two workers joined to the store (in this process, each with its own session)."""
    joined = [_join(store, 1), _join(store, 2)]
    try:
        yield joined
    finally:
        for session in joined:
            session.close()


def message(number: int, source: str = "desk", at: datetime = T0) -> Event:
    """A public customer message opening conversation ``c<number>``."""
    return Event(source=source, conversation=f"c{number}", id=f"e{number}", at=at,
                 kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, text="hello")


def _ingest(store: Store, number: int, source: str = "desk") -> int:
    return store.ingest(source, [message(number, source)], {"page": number}, T0,
                        now=T0 + timedelta(seconds=number)).new_events


def _wait_until_gone(store: Store, session: WorkerSession) -> None:
    """Wait (briefly) for the server to end a closed session's backend, and its lock."""
    for _ in range(100):
        alive = {worker.id for worker in store.cluster_status().workers if worker.alive}
        if session.worker_id not in alive:
            return
        time.sleep(0.02)
    raise AssertionError("the closed session's lock is still held")


def _check_lease(connection: Any, lease: Lease) -> bool:
    """Run the lease check of a write in ``connection``'s open transaction (its row lock
    then lasts until that transaction ends, as a write in flight would hold it)."""
    rows = connection.exec_driver_sql(_FENCE, (lease.source, lease.worker, lease.epoch)).all()
    return bool(rows)


def _sql(url: str, statement: str, **parameters: Any) -> list[Any]:
    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), parameters)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


# -- fencing ----------------------------------------------------------------------------------


@needs_postgres
def test_a_write_under_a_stale_epoch_is_refused_and_stores_nothing(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """After a lease moves to another worker, the old holder's ingest raises LeaseLost,
    its events, cursor and health are not stored, and the refusal is counted."""
    first, second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    with fenced(old):
        assert _ingest(store, 1) == 1
    store.release_leases(first, ["desk"])
    [new] = store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL)
    assert (new.worker, new.epoch) == (second.worker_id, old.epoch + 1)
    refused = store.fenced_writes
    with fenced(old), pytest.raises(LeaseLost, match="epoch 1 of worker") as caught:
        _ingest(store, 2)
    assert caught.value.source == "desk"
    assert store.fenced_writes == refused + 1
    assert store.source_state("desk").cursor == {"page": 1}
    assert store.counts()["events"] == 1
    with fenced(new):
        assert _ingest(store, 3) == 1


@needs_postgres
def test_every_write_of_a_source_is_fenced(store: Store, sessions: list[WorkerSession]) -> None:
    """record_failure and save_evaluations are refused under a lost lease too."""
    first, _second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    store.release_leases(first, ["desk"])
    record = EvaluationRecord(("desk", "c1"), Conversation(source="desk", id="c1"), None, ())
    with fenced(old):
        with pytest.raises(LeaseLost):
            store.record_failure("desk", "503", degraded=False, now=T0)
        with pytest.raises(LeaseLost):
            store.save_evaluations([record], now=T0)
    assert store.source_state("desk").last_error is None
    assert store.counts()["conversations"] == 0


@needs_postgres
def test_an_expired_lease_refuses_writes_and_can_be_taken(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """A lease not renewed within its timeout refuses its holder's writes, and another
    worker takes it (a frozen worker's sources move)."""
    first, second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=1.0)
    assert store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL) == []
    time.sleep(1.1)
    with fenced(old), pytest.raises(LeaseLost):
        _ingest(store, 1)
    [taken] = store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL)
    assert taken.epoch == old.epoch + 1


@needs_postgres
def test_the_leases_of_a_worker_whose_session_died_are_refused_and_taken_at_once(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """Closing a worker's session (its process died) voids its unexpired leases at once."""
    first, second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    first.close()
    _wait_until_gone(store, first)
    with fenced(old), pytest.raises(LeaseLost):
        _ingest(store, 1)
    [taken] = store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL)
    assert taken.worker == second.worker_id


@needs_postgres
def test_a_lease_locked_by_a_write_in_flight_is_skipped_not_waited_for(
    store: Store, sessions: list[WorkerSession], pg_url: str
) -> None:
    """Taking over never blocks behind the old owner's open transaction (SKIP LOCKED)."""
    first, second = sessions
    [lease] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=1.5)
    engine = create_engine(engine_url(pg_url))
    try:
        with engine.begin() as connection:
            assert _check_lease(connection, lease)
            time.sleep(1.6)
            started = time.monotonic()
            assert store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL) == []
            assert time.monotonic() - started < 1.0
        assert len(store.acquire_leases(second, ["desk"], limit=1, lease_timeout=TTL)) == 1
    finally:
        engine.dispose()


@needs_postgres
def test_a_write_in_flight_never_holds_up_its_owners_heartbeat(
    store: Store, sessions: list[WorkerSession], pg_url: str
) -> None:
    """The lease check's row lock does not block the renewal: a slow write cannot make
    its own worker's leases expire."""
    first, _second = sessions
    [lease] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    engine = create_engine(engine_url(pg_url))
    try:
        with engine.begin() as connection:
            assert _check_lease(connection, lease)
            started = time.monotonic()
            assert store.heartbeat(first, lease_timeout=TTL).held == {"desk": lease.epoch}
            assert time.monotonic() - started < 1.0
    finally:
        engine.dispose()


def test_writes_without_a_lease_are_not_fenced(database_url: str) -> None:
    """With no lease in the context (SQLite, backfill) writes go through as before."""
    with Store.open(database_url) as store:
        store.register_sources([("desk", "zendesk")])
        assert _ingest(store, 1) == 1
        assert store.fenced_writes == 0


def test_a_lease_covers_only_its_own_source(database_url: str) -> None:
    """A write for another source than the lease's is refused, on every engine."""
    with Store.open(database_url) as store:
        store.register_sources([("desk", "zendesk"), ("social", "mastodon")])
        with fenced(Lease("social", 1, 1)), pytest.raises(LeaseLost, match="'social'"):
            _ingest(store, 1, source="desk")


def test_sqlite_ignores_the_lease_of_its_own_source(tmp_path: Path) -> None:
    """One process on SQLite needs no leases: a lease in the context changes nothing."""
    with Store.open(f"sqlite:///{tmp_path}/one.db") as store:
        store.register_sources([("desk", "zendesk")])
        with fenced(Lease("desk", 1, 1)):
            assert _ingest(store, 1) == 1


# -- heartbeats and membership -------------------------------------------------------------


@needs_postgres
def test_heartbeat_renews_counts_live_workers_and_forgets_the_dead(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """A heartbeat renews its leases and counts workers whose session is alive."""
    first, second = sessions
    [lease] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    beat = store.heartbeat(first, lease_timeout=TTL)
    assert beat.held == {"desk": lease.epoch}
    assert beat.live_workers == 2
    second.close()
    _wait_until_gone(store, second)
    assert store.heartbeat(first, lease_timeout=TTL).live_workers == 1
    status = store.cluster_status()
    assert [(w.id, w.alive, w.sources) for w in status.workers] == [
        (first.worker_id, True, 1), (second.worker_id, False, 0)
    ]
    assert [(s.name, s.owner) for s in status.sources] == [
        ("desk", first.worker_id), ("social", None)
    ]


@needs_postgres
def test_a_rejoining_worker_gives_up_its_old_epochs_first(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """After its session was lost a worker comes back with the same id but no lease:
    a write begun under an old epoch cannot pass the fence any more."""
    first, _second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    worker_id = first.worker_id
    first.close()
    assert not first.alive()
    store.rejoin_cluster(first, host="test", pid=1)
    assert first.alive()
    assert first.worker_id == worker_id
    with fenced(old), pytest.raises(LeaseLost):
        _ingest(store, 1)
    [again] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    assert again.epoch == old.epoch + 1


# -- once per deployment -------------------------------------------------------------------


def test_claim_once_is_true_once_per_job_and_period(database_url: str) -> None:
    """The weekly report's claim: the first caller of a period gets it, nobody else."""
    with Store.open(database_url) as store:
        assert store.claim_once("weekly-report", "2026-W10", by="worker 1")
        assert not store.claim_once("weekly-report", "2026-W10", by="worker 2")
        assert store.claim_once("weekly-report", "2026-W11")
        assert store.claim_once("other-job", "2026-W10")


@needs_postgres
def test_claim_once_among_racing_workers(pg_url: str) -> None:
    """Eight threads with their own stores claim one period at once: exactly one wins."""
    stores = [Store.open(pg_url) for _ in range(8)]
    results: list[bool] = []
    gate = threading.Barrier(len(stores))

    def claim(store: Store) -> None:
        gate.wait()
        results.append(store.claim_once("weekly-report", "2026-W12"))

    threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(results) == [False] * 7 + [True]


# -- change push ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"table":"events","source":"desk","ids":["c1"]}',
         ChangeNotice("events", "desk", ("c1",))),
        ('{"table":"clocks","source":"desk","ids":null}', ChangeNotice("clocks", "desk", None)),
        ("not json", None),
        ('["a list"]', None),
        ('{"table": 3}', None),
        ('{"table":"events","source":{"x":1}}', None),
        ('{"table":"events","source":"desk","ids":[1, 2]}', None),
        ('{"table":"!","source":null,"ids":null}', None),
        ('{"table":"*","source":null,"ids":null}', None),
    ],
    ids=["ids", "all", "garbage", "list", "bad-table", "bad-source", "bad-ids", "forged-lost",
         "forged-resync"],
)
def test_notice_payloads_from_anyone_never_crash(payload: str, expected: Any) -> None:
    """Anyone may NOTIFY the channel: only well-formed notices are taken."""
    assert parse_notice(payload) == expected


def test_a_notice_too_large_for_postgresql_drops_its_ids() -> None:
    """Past PostgreSQL's payload limit a notice names the source only (reload it all)."""
    payload = notice_payload("events", "desk", [f"conversation-{n:06d}" for n in range(2000)])
    assert len(payload) < 8000
    assert parse_notice(payload) == ChangeNotice("events", "desk", None)


_INGEST_SCRIPT = """
import sys, time
from datetime import UTC, datetime
from monitor.events import Actor, Event, EventKind
from monitor.storage import Store
store = Store.open(sys.argv[1])
event = Event(source="desk", conversation="pushed", id="pushed-1", at=datetime.now(UTC),
              kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, text="hi")
print("ready", flush=True)
sys.stdin.readline()
store.ingest("desk", [event], {}, None, now=datetime.now(UTC))
print(time.time(), flush=True)
"""


@needs_postgres
async def test_a_listener_sees_an_ingest_of_another_process_within_a_second(
    store: Store, pg_url: str
) -> None:
    """LISTEN/NOTIFY: the event another process stores reaches a listener in < 1 s."""
    notices = store.listen()
    assert await anext(notices) == RESYNC
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _INGEST_SCRIPT, pg_url, cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert writer.stdin is not None
    assert writer.stdout is not None
    try:
        assert await asyncio.wait_for(writer.stdout.readline(), 60) == b"ready\n"
        writer.stdin.write(b"go\n")
        await writer.stdin.drain()
        seen: list[tuple[ChangeNotice, float]] = []

        async def collect() -> None:
            async for notice in notices:
                seen.append((notice, time.time()))
                if notice.table == "events":
                    return

        await asyncio.wait_for(collect(), 10)
        committed = float((await asyncio.wait_for(writer.stdout.readline(), 10)).decode())
    finally:
        await notices.aclose()
        if writer.returncode is None:
            writer.kill()
        await writer.wait()
    notice, received = seen[-1]
    assert notice == ChangeNotice("events", "desk", ("pushed",))
    assert ChangeNotice("sources", "desk", ()) in [n for n, _ in seen]
    assert received - committed < 1.0


@needs_postgres
async def test_a_listener_reconnects_and_asks_for_a_resync(store: Store, pg_url: str) -> None:
    """A listener whose connection is killed says so (LOST), comes back by itself and says
    RESYNC first."""
    notices = store.listen(retry_every=0.1)
    try:
        assert await anext(notices) == RESYNC
        _sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'replywatch listener' AND pid <> pg_backend_pid()")
        assert await asyncio.wait_for(anext(notices), 10) == LOST
        assert await asyncio.wait_for(anext(notices), 10) == RESYNC
        await asyncio.to_thread(_ingest, store, 1)
        assert await asyncio.wait_for(anext(notices), 5) == ChangeNotice("sources", "desk", ())
        assert await asyncio.wait_for(anext(notices), 5) == ChangeNotice(
            "events", "desk", ("c1",)
        )
    finally:
        await notices.aclose()


@needs_postgres
async def test_a_refused_write_sends_no_notice(
    store: Store, sessions: list[WorkerSession]
) -> None:
    """Notices go out at commit: a write the fence refused announces nothing."""
    first, _second = sessions
    [old] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    store.release_leases(first, ["desk"])
    notices = store.listen()
    try:
        assert await anext(notices) == RESYNC
        with fenced(old), pytest.raises(LeaseLost):
            await asyncio.to_thread(_ingest, store, 1)
        await asyncio.to_thread(_ingest, store, 2, "social")
        assert await asyncio.wait_for(anext(notices), 5) == ChangeNotice("sources", "social", ())
    finally:
        await notices.aclose()


def test_listen_needs_postgresql(tmp_path: Path) -> None:
    """On SQLite there is no one to push changes: listen() says so in one line."""

    async def first() -> Any:
        with Store.open(f"sqlite:///{tmp_path}/one.db") as store:
            return await anext(store.listen())

    with pytest.raises(StorageError, match="needs PostgreSQL"):
        asyncio.run(first())


# -- status ----------------------------------------------------------------------------------


@needs_postgres
def test_status_json_names_owners_and_lag(
    store: Store, sessions: list[WorkerSession], pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --format json``: workers and sources, with owner, last success and lag."""
    first, _second = sessions
    [lease] = store.acquire_leases(first, ["desk"], limit=1, lease_timeout=TTL)
    with fenced(lease):
        store.ingest("desk", [message(1)], {}, datetime.now(UTC) - timedelta(seconds=30),
                     now=datetime.now(UTC))
    assert main(["--database", pg_url, "status", "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(w["id"], w["pid"], w["alive"], w["sources"]) for w in status["workers"]] == [
        (first.worker_id, 1, True, 1), (sessions[1].worker_id, 2, True, 0)
    ]
    desk, social = status["sources"]
    assert (desk["name"], desk["owner"], desk["owner_id"]) == ("desk", "test:1", first.worker_id)
    assert desk["last_success_at"] is not None
    assert 29 <= desk["lag_seconds"] < 60
    assert 0 <= desk["lease_age_seconds"] < 60
    assert (social["name"], social["owner"], social["last_success_at"], social["lag_seconds"]) == (
        "social", None, None, None
    )


def test_status_table_on_a_single_process_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SQLite there are no workers; every source is listed with its health and lag."""
    url = f"sqlite:///{tmp_path}/one.db"
    with Store.open(url) as store:
        store.register_sources([("desk", "zendesk"), ("bad\x1b[31mname", "mastodon")])
        store.ingest("desk", [message(1)], {}, datetime.now(UTC), now=datetime.now(UTC))
    assert main(["--database", url, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("workers: 0 alive\nsources: 2\n")
    assert "\x1b" not in out
    desk = next(line for line in out.splitlines() if line.strip().startswith("desk"))
    assert desk.split()[:3] == ["desk", "zendesk", "-"]
    assert desk.rstrip().endswith("ok")


# -- db copy -----------------------------------------------------------------------------------


def _fill(store: Store) -> None:
    """Put one of everything in a store: events, clocks, transitions, outbox, claims."""
    store.register_sources([("desk", "zendesk"), ("social", "mastodon")])
    store.ingest("desk", [message(1), message(2, at=T0 + timedelta(minutes=1))],
                 {"cursor": "é\x00", "n": [1, 2]}, T0 + timedelta(minutes=5), now=T0)
    store.ingest("social", [message(3, "social")], {}, None, now=T0)
    store.record_failure("social", "503 upstream", degraded=False, now=T0)
    keys = store.dirty_conversations()
    store.load_events(keys)
    clock = Clock(source="desk", conversation="c1", policy="desk", metric=Metric.FIRST_RESPONSE,
                  cycle=0, state=ClockState.BREACHED, started_at=T0, due_at=T0 + timedelta(hours=1),
                  stopped_at=None, target_seconds=3600, elapsed_seconds=4000, paused_seconds=0,
                  reasons=("first public customer message",))
    store.save_evaluations(
        [EvaluationRecord(("desk", "c1"), Conversation(source="desk", id="c1"), "desk",
                          (clock,))],
        now=T0 + timedelta(hours=2),
        decide=lambda transitions: [
            OutboxItem("breach:c1", "chat", "breached", {"text": "late \u202e"}, T0)
        ],
    )
    store.claim_once("weekly-report", "2026-W10", now=T0, by="worker 1")


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table's rows, in key order, as comparable tuples."""
    store = Store.open(url, upgrade=False)
    try:
        dumped = {}
        with store._read("dumping") as connection:
            for table in copied_tables():
                rows = connection.execute(table.select().order_by(*table.primary_key.columns))
                dumped[table.name] = [tuple(row) for row in rows]
        return dumped
    finally:
        store.close()


@needs_postgres
def test_db_copy_moves_everything_there_and_back(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite -> PostgreSQL -> SQLite: every table arrives equal, counts verified, and
    the PostgreSQL store keeps working (its ids continue after the copied ones)."""
    origin = f"sqlite:///{tmp_path}/origin.db"
    with Store.open(origin) as store:
        _fill(store)
    assert main(["db", "copy", "--from", origin, "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert "copied events: 3 rows" in out
    assert out.rstrip().endswith("counts verified")
    back = f"sqlite:///{tmp_path}/back.db"
    assert main(["db", "copy", "--from", pg_url, "--to", back]) == 0
    original = _dump(origin)
    assert _dump(pg_url) == original
    assert _dump(back) == original
    assert original["events"]
    assert original["clocks"]
    assert original["clock_transitions"]
    assert original["alert_outbox"]
    assert original["job_claims"]
    with Store.open(pg_url) as moved:
        assert moved.source_state("desk").cursor == {"cursor": "é\ufffd", "n": [1, 2]}
        assert moved.source_state("social").failing_since == T0
        moved.ingest("desk", [message(4)], {}, None, now=T0)
        assert moved.counts()["events"] == 4
        assert moved.claim_once("weekly-report", "2026-W10") is False


@needs_postgres
def test_db_copy_refuses_a_target_that_is_not_empty(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copying onto a store that has data changes nothing and says why in one line."""
    origin = f"sqlite:///{tmp_path}/origin.db"
    with Store.open(origin) as store:
        _fill(store)
    with Store.open(pg_url) as target:
        target.register_sources([("other", "zendesk")])
    assert main(["db", "copy", "--from", origin, "--to", pg_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not empty (sources has 1 rows)" in err
    assert _dump(pg_url)["events"] == []


@pytest.mark.parametrize(
    ("arguments", "message_part"),
    [
        (["--from", "sqlite:///{tmp}/absent/x.db", "--to", "sqlite:///{tmp}/t.db"],
         "cannot open database"),
        (["--from", "sqlite:///{tmp}/empty.db", "--to", "sqlite:///{tmp}/t.db"],
         "behind this replywatch"),
        (["--from", "sqlite:///{tmp}/full.db", "--to", "sqlite:///{tmp}/full.db"],
         "onto itself"),
        (["--from", "sqlite:///{tmp}/full.db", "--to", "mysql://x/y"], "unsupported database"),
    ],
    ids=["unreadable-source", "source-not-a-store", "same-store", "unsupported-target"],
)
def test_db_copy_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message_part: str
) -> None:
    """Each way a copy can be refused ends in one clear line and exit code 1."""
    with Store.open(f"sqlite:///{tmp_path}/full.db") as store:
        _fill(store)
    (tmp_path / "empty.db").touch()
    assert main(["db", "copy", *[a.format(tmp=tmp_path) for a in arguments]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message_part in err


async def test_a_cluster_worker_runs_alert_delivery_and_the_shared_jobs(pg_url: str) -> None:
    """A worker polls only its leased sources but still drains alerts and evaluates dismissals."""
    from monitor.cluster import cluster_worker
    from monitor.config import parse_config
    from monitor.service import Service

    config = parse_config({
        "monitor": {"database": pg_url},
        "cluster": {"lease_timeout": "3s"},
        "alerts": [{"name": "chat", "kind": "slack", "url": "http://127.0.0.1:9/hook"}],
    })
    with Store.open(pg_url) as opened:
        async with Service(config, opened) as service, cluster_worker(service) as worker:
            assert worker is not None
            jobs = {job.id for job in worker.scheduler.scheduler.get_jobs()}
    assert {"alerts:deliver", "evaluate-dirty"} <= jobs


async def test_a_worker_evaluates_only_the_sources_it_leases(pg_url: str) -> None:
    """Dirty conversations are evaluated by their source's owner alone: two workers
    evaluating one conversation at once would both record its breach."""
    from monitor.cluster import cluster_worker
    from monitor.config import parse_config
    from monitor.service import Service

    sources = [
        {"name": name, "kind": "mastodon", "base_url": "http://127.0.0.1:9",
         "token": "t", "account": "brand", "poll_every": "1h"}
        for name in SOURCES
    ]
    config = parse_config({
        "monitor": {"database": pg_url},
        "cluster": {"lease_timeout": "3s"},
        "policies": [{"name": "social", "first_response": "6m"}],
        "sources": sources,
    })
    with Store.open(pg_url) as opened:
        opened.register_sources([(name, "mastodon") for name in SOURCES])
        other = _join(opened, 2)
        try:
            # The other worker holds "social"; ours gets its fair share, "desk".
            assert [lease.source for lease in opened.acquire_leases(
                other, ["social"], limit=1, lease_timeout=TTL)] == ["social"]
            async with Service(config, opened) as service, cluster_worker(service) as worker:
                assert worker is not None
                for _ in range(100):
                    if set(worker.leases) == {"desk"}:
                        break
                    await asyncio.sleep(0.05)
                assert set(worker.leases) == {"desk"}
                _ingest(opened, 1, "desk")
                _ingest(opened, 2, "social")
                for _ in range(100):
                    if not opened.dirty_conversations("desk"):
                        break
                    await asyncio.sleep(0.05)
                assert opened.dirty_conversations("desk") == []
                await asyncio.sleep(1.5)  # the evaluate-dirty job runs every second
                assert opened.dirty_conversations("social") == [("social", "c2")]
            assert _sql(pg_url, "SELECT source FROM clocks GROUP BY source") == [("desk",)]
        finally:
            other.close()
