"""Provides what the cluster tests and benchmark share: a PostgreSQL schema per test, a farm
of faked Mastodon sources served in this process, and worker processes to start and kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from connectors.fakes._base import serve
from connectors.fakes.mastodon import MastodonFake, MastodonWorld
from monitor.storage.cluster import WORKER_LOCK

ROOT = Path(__file__).resolve().parent.parent


def engine_url(url: str) -> str:
    """Return a SQLAlchemy URL for direct use (psycopg for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL schema (dropped afterwards)."""
    schema = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(engine_url(base_url))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            # Sessions still in the schema (a worker that was not stopped) would block it.
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@dataclass
class FakeSource:
    """One faked Mastodon account: its world, its fake server, a customer who mentions it."""

    name: str
    world: MastodonWorld
    fake: MastodonFake
    customer: str
    url: str = ""

    def mention(self, number: int) -> None:
        """Post a mention of the brand now (one event, one conversation)."""
        self.world.post(self.customer, f"@acme question {number}", at=datetime.now(UTC))

    @property
    def held(self) -> int:
        """Mentions the fake holds: the events its source must end up with."""
        return len(self.world.notifications)


@dataclass
class Farm:
    """Faked sources served on loopback, and the traffic that mentions them."""

    sources: list[FakeSource] = field(default_factory=list)
    posted: int = 0

    def by_name(self, name: str) -> FakeSource:
        """The fake source called ``name``."""
        return next(source for source in self.sources if source.name == name)

    @property
    def held(self) -> int:
        """Mentions held across every fake."""
        return sum(source.held for source in self.sources)

    def mention_all(self, count: int = 1) -> None:
        """Post ``count`` mentions to every source."""
        for source in self.sources:
            for _ in range(count):
                source.mention(self.posted)
                self.posted += 1

    async def traffic(self, stop: asyncio.Event, *, every: float = 0.05) -> None:
        """Mention a random source every ``every`` seconds until ``stop`` is set."""
        chooser = random.Random(7)
        while not stop.is_set():
            chooser.choice(self.sources).mention(self.posted)
            self.posted += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


@contextlib.asynccontextmanager
async def farm(count: int, *, history: int = 0, prefix: str = "m") -> AsyncIterator[Farm]:
    """Serve ``count`` faked Mastodon sources, each with ``history`` mentions already made."""
    served = Farm()
    async with contextlib.AsyncExitStack() as stack:
        for index in range(count):
            world = MastodonWorld(now=lambda: datetime.now(UTC))
            fake = MastodonFake(world)
            fake.rate_limit = 10**9
            customer = world.add_account("casey", "Casey")
            start = datetime.now(UTC) - timedelta(minutes=30)
            for number in range(history):
                world.post(customer, f"@acme old question {number}",
                           at=start + timedelta(seconds=number * 1800 / max(1, history)))
            source = FakeSource(f"{prefix}{index}", world, fake, customer)
            source.url = await stack.enter_async_context(serve(fake.app()))
            served.sources.append(source)
        yield served


def write_config(
    path: Path, database: str, sources: list[FakeSource], *, lease_timeout: float = 3.0,
    poll_every: float = 0.5, first_response: str = "2s", cluster: bool = True, limit: int = 40,
    alert_url: str | None = None,
) -> Path:
    """Write a worker config: every source, one policy, the cluster settings, and with
    ``alert_url`` a signed webhook target for breaches, grouped over one second."""
    lines = [
        "[monitor]", f'database = "{database}"', 'lookback = "1h"',
        "[cluster]", f"enabled = {str(cluster).lower()}", f'lease_timeout = "{lease_timeout}s"',
    ]
    for source in sources:
        lines += [
            "[[sources]]", f'name = "{source.name}"', 'kind = "mastodon"',
            f'base_url = "{source.url}"', 'token = "fake-token"',
            f'poll_every = "{poll_every}s"', f"limit = {limit}",
        ]
    lines += ["[[policies]]", 'name = "social"', f'first_response = "{first_response}"']
    if alert_url is not None:
        lines += [
            "[[alerts]]", 'name = "chat"', 'kind = "webhook"', f'url = "{alert_url}"',
            'secret = "cluster-test-signing-key"', 'on = ["breached"]', 'group_window = "1s"',
        ]
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def worker_application_name(pid: int) -> str:
    """The ``application_name`` of the worker process ``pid`` (see monitor.cluster)."""
    return f"replywatch worker {pid}@{socket.gethostname()}"[:63]


@dataclass
class WorkerProcess:
    """A ``replywatch run --headless`` subprocess and its log."""

    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the process still runs."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def output(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def start_worker(config: Path, log: Path) -> WorkerProcess:
    """Start one worker on ``config``, its stderr to ``log``."""
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "--config", str(config), "run", "--headless",
            cwd=str(ROOT), stdout=asyncio.subprocess.DEVNULL, stderr=sink,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"},
        )
    return WorkerProcess(process, log)


@contextlib.asynccontextmanager
async def workers(config: Path, folder: Path, count: int) -> AsyncIterator[list[WorkerProcess]]:
    """Run ``count`` workers; every one still running is killed afterwards."""
    started: list[WorkerProcess] = []
    try:
        for index in range(count):
            started.append(await start_worker(config, folder / f"worker{index}.log"))
        yield started
    finally:
        for worker in started:
            worker.signal(signal.SIGCONT)
            worker.signal(signal.SIGKILL)
        for worker in started:
            await worker.process.wait()


class Database:
    """Plain SQL on the test schema, behind the workers' backs."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(engine_url(url), pool_size=2)

    def rows(self, sql: str, **parameters: Any) -> list[Any]:
        """Return the rows of one query."""
        try:
            with self.engine.begin() as connection:
                return list(connection.execute(text(sql), parameters).all())
        except Exception as err:
            if "does not exist" in str(err):
                return []
            raise

    def scalar(self, sql: str, **parameters: Any) -> Any:
        """Return the single value of one query (None if no row)."""
        rows = self.rows(sql, **parameters)
        return rows[0][0] if rows else None

    def owners(self) -> dict[str, int | None]:
        """Source -> owning worker id of its unexpired lease held by a live worker."""
        return {
            row.source: row.owner
            for row in self.rows(
                "SELECT l.source, CASE WHEN l.expires_at > now() AND l.owner IN ("
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory'"
                f" AND objsubid = 2 AND classid::bigint = {WORKER_LOCK}) THEN l.owner END AS owner"
                " FROM source_leases l ORDER BY l.source"
            )
        }

    def epochs(self) -> dict[str, int]:
        """Source -> current lease epoch."""
        return {row.source: int(row.epoch)
                for row in self.rows("SELECT source, epoch FROM source_leases")}

    def worker_id(self, pid: int) -> int | None:
        """The id of the worker process ``pid`` (None before it joined)."""
        value = self.scalar("SELECT id FROM workers WHERE pid = :pid", pid=pid)
        return None if value is None else int(value)

    def fenced_writes(self, worker_id: int) -> int:
        """Writes of a worker the database refused (as of its last heartbeat)."""
        return int(self.scalar("SELECT fenced_writes FROM workers WHERE id = :w", w=worker_id)
                   or 0)

    def event_counts(self) -> tuple[int, int]:
        """(events stored, distinct (source, event id) among them)."""
        row = self.rows("SELECT count(*), count(DISTINCT (source, event_id)) FROM events")
        return (int(row[0][0]), int(row[0][1])) if row else (0, 0)

    def dispose(self) -> None:
        """Close the connections."""
        self.engine.dispose()


async def eventually(predicate: Any, within: float, *, every: float = 0.1) -> float:
    """Wait until ``predicate()`` is true; return the seconds it took (AssertionError if never)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        if await asyncio.to_thread(predicate):
            return loop.time() - started
        if loop.time() - started > within:
            raise AssertionError(f"not true within {within}s")
        await asyncio.sleep(every)
