"""Tests of workers sharing one PostgreSQL store, as real processes over faked sources.

Each test serves its faked Mastodon sources in this process, runs ``replywatch run
--headless`` workers on its own schema with a 3-second lease timeout, does something
nasty to one of them (kill -9, a cut connection, SIGSTOP), and then checks that every
mention the fakes hold is stored exactly once and every breach confirmed once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_env import (
    ROOT,
    Database,
    Farm,
    WorkerProcess,
    eventually,
    farm,
    fresh_schema,
    worker_application_name,
    workers,
    write_config,
)
from receivers import Received, Reply, receive

POSTGRES = os.environ.get("REPLYWATCH_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not POSTGRES, reason="REPLYWATCH_TEST_DATABASE_URL is not set; .ci/run sets it"
)

LEASE_TIMEOUT = 3.0
STARTUP = 60.0
"""Seconds a worker may take to start: the interpreter imports the whole stack first."""


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test."""
    assert POSTGRES is not None
    with fresh_schema(POSTGRES) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """Plain SQL on the test's schema."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.dispose()


async def _joined(database: Database, running: list[WorkerProcess]) -> list[int]:
    """Wait until every worker registered; return their ids in process order."""
    await eventually(
        lambda: all(database.worker_id(worker.pid) for worker in running), STARTUP, every=0.25
    )
    return [database.worker_id(worker.pid) or 0 for worker in running]


def _balanced(database: Database, ids: list[int], sources: int) -> bool:
    """Every source owned by one of ``ids``, each holding its fair share or one less."""
    owners = database.owners()
    if len(owners) != sources or any(owner not in ids for owner in owners.values()):
        return False
    counts = [list(owners.values()).count(worker) for worker in ids]
    share = -(-sources // len(ids))
    return all(share - 1 <= count <= share for count in counts)


async def _all_stored(database: Database, served: Farm, within: float = 30.0) -> None:
    """Wait until the store holds every mention the fakes hold, and every breach."""
    expected = served.held
    await eventually(lambda: database.event_counts()[0] >= expected, within)
    await eventually(
        lambda: database.scalar("SELECT count(*) FROM clocks WHERE state = 'breached'")
        == expected, within,
    )


def _assert_exact(database: Database, served: Farm) -> None:
    """Every mention stored once, every clock breached once (one breach transition each)."""
    expected = served.held
    assert database.event_counts() == (expected, expected)
    assert database.scalar("SELECT count(*) FROM conversations") == expected
    repeated = database.rows(
        "SELECT source, conversation, count(*) FROM clock_transitions WHERE state = 'breached'"
        " GROUP BY source, conversation, metric, cycle HAVING count(*) <> 1"
    )
    assert repeated == []
    assert database.scalar(
        "SELECT count(*) FROM clock_transitions WHERE state = 'breached'"
    ) == expected


def _no_traceback(running: list[WorkerProcess]) -> None:
    for worker in running:
        assert "Traceback" not in worker.output(), worker.output()


async def _in_flight(served: Farm, source: str, latency: float) -> None:
    """Return once the next request to ``source``'s fake is in flight (held ``latency`` s)."""
    controls = served.by_name(source).fake.controls
    before = len(controls.requests)
    controls.latency = latency
    await eventually(lambda: len(controls.requests) > before, 10, every=0.01)
    controls.latency = 0.0


@pytest.mark.parametrize(("count", "sources"), [(2, 6), (3, 9)], ids=["two", "three"])
async def test_kill_9_moves_the_sources_within_the_lease_timeout(
    tmp_path: Path, database_url: str, database: Database, count: int, sources: int
) -> None:
    """Workers split the sources evenly; kill -9 one and the others take its sources
    within the lease timeout, resuming from the stored cursors: nothing lost or doubled."""
    async with farm(sources) as served:
        config = write_config(tmp_path / "config.toml", database_url, served.sources)
        async with workers(config, tmp_path, count) as running:
            ids = await _joined(database, running)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            stop = asyncio.Event()
            traffic = asyncio.create_task(served.traffic(stop))
            await asyncio.sleep(1.5)
            victim, survivors = running[0], running[1:]
            lost = [name for name, owner in database.owners().items() if owner == ids[0]]
            victim.signal(signal.SIGKILL)
            took = await eventually(
                lambda: _balanced(database, ids[1:], sources), LEASE_TIMEOUT * 2, every=0.05
            )
            assert lost
            assert took < LEASE_TIMEOUT, took
            await asyncio.sleep(1.0)
            stop.set()
            await traffic
            await _all_stored(database, served)
            _assert_exact(database, served)
            _no_traceback(survivors)


async def test_a_joining_worker_gets_its_share_and_status_shows_everyone(
    tmp_path: Path, database_url: str, database: Database
) -> None:
    """A third worker joining two takes a third of the sources; ``status --format json``
    lists the three workers and every source with its owner, last success and lag."""
    sources = 6
    async with farm(sources) as served:
        config = write_config(tmp_path / "config.toml", database_url, served.sources)
        async with workers(config, tmp_path, 2) as running:
            ids = await _joined(database, running)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            (tmp_path / "late").mkdir()
            async with workers(config, tmp_path / "late", 1) as late:
                ids += await _joined(database, late)
                await eventually(lambda: _balanced(database, ids, sources), 20)
                served.mention_all()
                await _all_stored(database, served)
                result = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "monitor", "--database", database_url, "status",
                    "--format", "json", cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await result.communicate()
                assert result.returncode == 0, err.decode()
                status = json.loads(out)
                _no_traceback(running + late)
    by_id = {worker["id"]: worker for worker in status["workers"]}
    assert sorted(by_id) == sorted(ids)
    assert all(worker["alive"] for worker in status["workers"])
    assert sorted(worker["sources"] for worker in status["workers"]) == [2, 2, 2]
    labels = {f"{worker['host']}:{worker['pid']}" for worker in status["workers"]}
    assert [source["name"] for source in status["sources"]] == [f"m{n}" for n in range(sources)]
    for source in status["sources"]:
        assert source["owner"] in labels
        assert source["last_success_at"] is not None
        assert 0 <= source["lag_seconds"] < 10
        assert source["lease_age_seconds"] >= 0


async def test_a_worker_whose_connection_is_cut_stops_writing_at_once(
    tmp_path: Path, database_url: str, database: Database
) -> None:
    """pg_terminate_backend on a worker's connections: its write in flight is refused
    although its leases had not expired, the other worker takes its sources at once,
    and the cut worker rejoins with new epochs; nothing is lost or doubled."""
    sources = 4
    async with farm(sources) as served:
        config = write_config(tmp_path / "config.toml", database_url, served.sources)
        async with workers(config, tmp_path, 2) as running:
            ids = await _joined(database, running)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            served.mention_all()
            victim = running[0]
            held = {name: epoch for name, epoch in database.epochs().items()
                    if database.owners()[name] == ids[0]}
            await _in_flight(served, next(iter(held)), latency=1.0)
            cut = database.rows(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name", name=worker_application_name(victim.pid),
            )
            assert cut
            assert all(row[0] for row in cut)
            took = await eventually(
                lambda: all(database.epochs()[name] > epoch for name, epoch in held.items()),
                LEASE_TIMEOUT, every=0.05,
            )
            assert took < LEASE_TIMEOUT, took
            await eventually(lambda: database.fenced_writes(ids[0]) >= 1, 10)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            served.mention_all()
            await _all_stored(database, served)
            _assert_exact(database, served)
            assert victim.process.returncode is None
            assert "database session lost" in victim.output()
            _no_traceback(running)


async def test_a_paused_worker_writes_nothing_stale_when_it_wakes(
    tmp_path: Path, database_url: str, database: Database
) -> None:
    """SIGSTOP a worker mid-poll, let its leases expire and move, SIGCONT it: the page it
    was fetching is refused by the fence (counted), it rejoins, and the store is exact."""
    sources = 4
    async with farm(sources) as served:
        config = write_config(tmp_path / "config.toml", database_url, served.sources)
        async with workers(config, tmp_path, 2) as running:
            ids = await _joined(database, running)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            victim = running[0]
            mine = [name for name, owner in database.owners().items() if owner == ids[0]]
            await _in_flight(served, mine[0], latency=0.5)
            victim.signal(signal.SIGSTOP)
            served.by_name(mine[0]).mention(10_000)
            took = await eventually(
                lambda: _balanced(database, ids[1:], sources), LEASE_TIMEOUT * 3, every=0.05
            )
            # Its leases stay valid up to a timeout after its last renewal; the survivor,
            # seeing it silent, wakes as they expire (the second is for a loaded machine).
            assert took <= LEASE_TIMEOUT + 1.0, took
            await eventually(lambda: database.event_counts()[0] == served.held, 10)
            before = database.event_counts()
            victim.signal(signal.SIGCONT)
            await eventually(lambda: database.fenced_writes(ids[0]) >= 1, 10)
            assert database.event_counts() == before
            await eventually(lambda: _balanced(database, ids, sources), 20)
            served.mention_all()
            await _all_stored(database, served)
            _assert_exact(database, served)
            # Whichever comes first on waking, its heartbeat or the refused write, says so.
            said = victim.output()
            assert f"source {mine[0]}: lease lost" in said or f"source {mine[0]} dropped" in said
            _no_traceback(running)


def _delivered(requests: list[Received]) -> dict[str, list[tuple[str, str]]]:
    """Idempotency key -> the (source, conversation) of each breach its message carried."""
    messages: dict[str, list[tuple[str, str]]] = {}
    for request in requests:
        key = request.header("Idempotency-Key") or ""
        items = [(item["source"], item["conversation"]) for item in request.json()["items"]]
        assert messages.setdefault(key, items) == items, "a retry carried other alerts"
    return messages


async def test_three_workers_drain_one_outbox_exactly_once(
    tmp_path: Path, database_url: str, database: Database
) -> None:
    """Three workers deliver from one outbox; the receiver answers slowly, so their claims
    overlap. Every breach reaches chat in exactly one message, and after a worker is killed
    the two left deliver the next breaches the same way."""
    sources = 6
    async with farm(sources) as served, receive("webhook", ok=Reply(204, delay=0.3)) as chat:
        config = write_config(
            tmp_path / "config.toml", database_url, served.sources, alert_url=chat.url
        )
        async with workers(config, tmp_path, 3) as running:
            ids = await _joined(database, running)
            await eventually(lambda: _balanced(database, ids, sources), 20)
            for round_ in range(2):
                for _wave in range(4):  # breaches due in waves: several groups, several claims
                    served.mention_all()
                    await asyncio.sleep(1.5)
                await _all_stored(database, served)
                await eventually(
                    lambda: database.scalar(
                        "SELECT count(*) FROM alert_outbox WHERE status = 'delivered'"
                    ) == served.held, 30,
                )
                messages = _delivered(chat.requests)
                carried = [alert for items in messages.values() for alert in items]
                assert len(carried) == len(set(carried)) == served.held
                if round_ == 0:
                    assert len(messages) > 1
                    assert len(chat.requests) == len(messages)  # no retry either
                    running[0].signal(signal.SIGKILL)
                    await eventually(lambda: _balanced(database, ids[1:], sources), 20)
            assert database.scalar("SELECT count(*) FROM alert_outbox") == served.held
            _assert_exact(database, served)
            _no_traceback(running[1:])
