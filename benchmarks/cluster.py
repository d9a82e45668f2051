"""Benchmark: workers sharing one PostgreSQL store, over 30 faked Mastodon sources.

Two figures, each with a baseline measured in the same run:

- **Takeover.** Three ``replywatch run --headless`` workers share the sources. One is
  killed with SIGKILL (a replacement is started after each kill), 20 times: the time
  from the kill until every source it held has a new owner, and until each has been
  polled successfully again. Baseline: a worker frozen with SIGSTOP, whose sources
  move only when its leases expire, which is all a lease table without the session
  lock could do for a dead process too.
- **Throughput.** With 1, 2 and 3 workers polling, every fake gets the same burst of
  mentions at once; events stored per second until all are in the store. Baseline:
  one process with ``[cluster] enabled = false`` (no leases, no fencing) on the same
  database.

The fakes run in this process, and everything shares this machine's CPUs.

    python benchmarks/cluster.py [--kills 20] [--burst 400] [--lease-timeout 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cluster_env import (  # noqa: E402
    Database,
    Farm,
    WorkerProcess,
    farm,
    fresh_schema,
    start_worker,
    write_config,
)

SOURCES = 30
WORKERS = 3
STARTUP = 90.0
IDLE = 10.0
"""Seconds of polling with nothing new, to measure what a poll costs."""


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[rank - 1]


async def until(predicate: object, within: float, every: float = 0.02) -> float:
    """Wait until ``predicate()``; return the seconds waited (TimeoutError past ``within``)."""
    started = time.monotonic()
    while not await asyncio.to_thread(predicate):  # type: ignore[arg-type]
        if time.monotonic() - started > within:
            raise TimeoutError(f"not reached within {within:g}s")
        await asyncio.sleep(every)
    return time.monotonic() - started


def live_ids(db: Database, running: Sequence[WorkerProcess]) -> list[int]:
    """The ids of the running workers that registered."""
    ids = [db.worker_id(worker.pid) for worker in running]
    return [worker_id for worker_id in ids if worker_id]


def balanced(db: Database, running: Sequence[WorkerProcess]) -> bool:
    """Every source owned by a running worker, each holding its fair share or one less."""
    ids = live_ids(db, running)
    if len(ids) != len(running):
        return False
    owners = db.owners()
    if len(owners) != SOURCES or any(owner not in ids for owner in owners.values()):
        return False
    share = -(-SOURCES // len(ids))
    counts = [list(owners.values()).count(worker_id) for worker_id in ids]
    return all(share - 1 <= count <= share for count in counts)


def resumed(db: Database, sources: Sequence[str], since: float) -> bool:
    """Whether each of ``sources`` had a successful poll after the epoch time ``since``."""
    rows = db.rows(
        "SELECT count(*) FROM sources WHERE name = ANY(:names)"
        " AND extract(epoch FROM last_success_at) > :since",
        names=list(sources), since=since,
    )
    return bool(rows) and int(rows[0][0]) == len(sources)


async def takeovers(
    served: Farm, folder: Path, base_url: str, *, kills: int, frozen: int, lease_timeout: float
) -> tuple[list[float], list[float], list[float]]:
    """Kill (then freeze) one of three workers, again and again; return the seconds to
    takeover and to resumed polling after each kill, and to takeover after each freeze."""
    with fresh_schema(base_url) as url:
        db = Database(url)
        config = write_config(folder / "takeover.toml", url, served.sources,
                              lease_timeout=lease_timeout)
        running: list[WorkerProcess] = []
        spawned = 0

        async def spawn() -> None:
            nonlocal spawned
            running.append(await start_worker(config, folder / f"takeover{spawned}.log"))
            spawned += 1

        chooser = random.Random(20)
        moved: list[float] = []
        polled: list[float] = []
        expired: list[float] = []
        try:
            for _ in range(WORKERS):
                await spawn()
            await until(lambda: balanced(db, running), STARTUP, every=0.2)
            for round_ in range(kills + frozen):
                # Balance was reached at some worker's heartbeat: strike at a random phase.
                await asyncio.sleep(chooser.uniform(0, lease_timeout / 3))
                victim = running.pop(chooser.randrange(len(running)))
                victim_id = db.worker_id(victim.pid)
                held = [name for name, owner in db.owners().items() if owner == victim_id]
                stopped_at = time.time()
                victim.signal(signal.SIGKILL if round_ < kills else signal.SIGSTOP)
                took = await until(
                    lambda held=held, victim_id=victim_id: all(
                        owner not in (None, victim_id)
                        for name, owner in db.owners().items() if name in held
                    ),
                    lease_timeout * 3,
                )
                if round_ < kills:
                    moved.append(took)
                    await until(lambda held=held, at=stopped_at: resumed(db, held, at),
                                lease_timeout * 3)
                    polled.append(time.time() - stopped_at)
                else:
                    expired.append(took)
                victim.signal(signal.SIGKILL)
                await victim.process.wait()
                await spawn()
                await until(lambda: balanced(db, running), STARTUP, every=0.1)
        finally:
            for worker in running:
                worker.signal(signal.SIGKILL)
                await worker.process.wait()
            db.dispose()
    return moved, polled, expired


@dataclass(frozen=True, slots=True)
class Throughput:
    """What a burst showed: events stored per second, and the workers' CPU costs."""

    events_per_second: float
    cpu_ms_per_event: float
    """Workers' CPU time per event, until every event is stored and evaluated."""
    cpu_ms_per_idle_poll: float
    """Workers' CPU time per poll that finds nothing new (heartbeats included)."""


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def requests(served: Farm) -> int:
    """Requests the fakes have answered so far."""
    return sum(len(source.fake.controls.requests) for source in served.sources)


async def throughput(
    folder: Path, base_url: str, *, workers: int, burst: int, cluster: bool,
) -> Throughput:
    """Events stored per second by ``workers`` workers after a burst of mentions."""
    async with farm(SOURCES) as served:
        return await _throughput(served, folder, base_url, workers=workers, burst=burst,
                                 cluster=cluster)


async def _throughput(
    served: Farm, folder: Path, base_url: str, *, workers: int, burst: int, cluster: bool,
) -> Throughput:
    with fresh_schema(base_url) as url:
        db = Database(url)
        config = write_config(folder / f"throughput{workers}{cluster}.toml", url,
                              served.sources, lease_timeout=15.0, cluster=cluster, limit=80)
        running = [
            await start_worker(config, folder / f"throughput{workers}-{index}.log")
            for index in range(workers)
        ]
        try:
            if cluster:
                await until(lambda: balanced(db, running), STARTUP, every=0.2)
            else:
                await until(
                    lambda: db.scalar("SELECT count(*) FROM sources WHERE last_success_at"
                                      " IS NOT NULL") == SOURCES, STARTUP, every=0.2,
                )
            pids = [worker.pid for worker in running]
            expected = burst * len(served.sources)
            cpu_before = cpu_seconds(pids)
            started = time.monotonic()
            served.mention_all(burst)
            await until(lambda: db.event_counts()[0] >= expected, 600, every=0.05)
            elapsed = time.monotonic() - started
            assert db.event_counts() == (expected, expected)
            await until(lambda: db.scalar("SELECT count(*) FROM conversations WHERE NOT dirty")
                        == expected, 600, every=0.05)
            cpu_burst = cpu_seconds(pids) - cpu_before
            await asyncio.sleep(1.0)
            cpu_before, polls_before = cpu_seconds(pids), requests(served)
            await asyncio.sleep(IDLE)
            cpu_idle = cpu_seconds(pids) - cpu_before
            polls = requests(served) - polls_before
        finally:
            for worker in running:
                worker.signal(signal.SIGTERM)
            for worker in running:
                await worker.process.wait()
            db.dispose()
    return Throughput(expected / elapsed, cpu_burst * 1000 / expected,
                      cpu_idle * 1000 / max(1, polls))


def fencing_cost(base_url: str, rounds: int = 400) -> tuple[float, float]:
    """Median milliseconds of one 40-event ingest without and with the lease check,
    interleaved so that both see the same load."""
    from datetime import UTC, datetime

    from monitor.events import Actor, Event, EventKind
    from monitor.storage import Store, fenced

    at = datetime.now(UTC)
    plain: list[float] = []
    checked: list[float] = []
    with fresh_schema(base_url) as url, Store.open(url) as store:
        store.register_sources([("plain", "mastodon"), ("leased", "mastodon")])
        session = store.join_cluster(host="bench", pid=os.getpid(), sources=["leased"],
                                     application_name="replywatch benchmark")
        [lease] = store.acquire_leases(session, ["leased"], limit=1, lease_timeout=3600)
        try:
            for number in range(rounds):
                for source, times in (("plain", plain), ("leased", checked)):
                    events = [
                        Event(source=source, conversation=f"c{number}-{k}", id=f"{number}-{k}",
                              at=at, kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, text="hi")
                        for k in range(40)
                    ]
                    started = time.perf_counter()
                    if source == "leased":
                        with fenced(lease):
                            store.ingest(source, events, {"n": number}, at, now=at)
                    else:
                        store.ingest(source, events, {"n": number}, at, now=at)
                    times.append((time.perf_counter() - started) * 1000)
        finally:
            session.close()
    return statistics.median(plain), statistics.median(checked)


def print_throughput(results: dict[str, list[Throughput]], burst: int, repeat: int) -> None:
    """Print the throughput table: medians of the rounds, and each round's rate."""
    print(f"\nthroughput: a burst of {burst} mentions on each source "
          f"({burst * SOURCES} events), median of {repeat} rounds")
    print(f"  {'':34} {'events/s':>9} {'(rounds)':>20} {'CPU ms/event':>13} "
          f"{'CPU ms/idle poll':>17}")
    for label, rounds in results.items():
        rates = [result.events_per_second for result in rounds]
        print(f"  {label:34} {statistics.median(rates):9.0f} "
              f"{'(' + ', '.join(f'{rate:.0f}' for rate in rates) + ')':>20} "
              f"{statistics.median(r.cpu_ms_per_event for r in rounds):13.2f} "
              f"{statistics.median(r.cpu_ms_per_idle_poll for r in rounds):17.2f}")


async def run(args: argparse.Namespace) -> None:
    """Measure and print every figure."""
    folder = Path(args.folder)
    print(f"{SOURCES} faked Mastodon sources, PostgreSQL {args.database.split('@')[-1]}, "
          f"{os.cpu_count()} CPUs", flush=True)
    plain, checked = await asyncio.to_thread(fencing_cost, args.database)
    print(f"\none ingest of 40 events: {plain:.2f} ms without the lease check (baseline), "
          f"{checked:.2f} ms with it", flush=True)
    configurations = [("1 process, no cluster (baseline)", 1, False),
                      ("1 worker", 1, True), ("2 workers", 2, True), ("3 workers", 3, True)]
    results: dict[str, list[Throughput]] = {label: [] for label, _, _ in configurations}
    for _ in range(args.repeat):
        for label, count, cluster in configurations:
            results[label].append(await throughput(
                folder, args.database, workers=count, burst=args.burst, cluster=cluster))
    if args.repeat:
        print_throughput(results, args.burst, args.repeat)
    async with farm(SOURCES) as served:
        moved, polled, expired = await takeovers(
            served, folder, args.database, kills=args.kills, frozen=args.frozen,
            lease_timeout=args.lease_timeout,
        )
    print(f"\ntakeover, lease timeout {args.lease_timeout:g}s, {WORKERS} workers, "
          f"{SOURCES} sources (seconds)")
    for label, values in (
        (f"kill -9, sources owned again ({len(moved)})", moved),
        (f"kill -9, sources polled again ({len(polled)})", polled),
        (f"SIGSTOP, lease expiry (baseline, {len(expired)})", expired),
    ):
        print(f"  {label:42} p50 {statistics.median(values):5.2f}  "
              f"p99 {nearest_rank(values, 0.99):5.2f}  max {max(values):5.2f}")


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=os.environ.get(
        "REPLYWATCH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--frozen", type=int, default=5, help="SIGSTOP rounds (baseline)")
    parser.add_argument("--burst", type=int, default=400, help="mentions per source")
    parser.add_argument("--lease-timeout", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="throughput rounds")
    parser.add_argument("--folder", default="/tmp/replywatch-cluster-benchmark")
    args = parser.parse_args()
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
