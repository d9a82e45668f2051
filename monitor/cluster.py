"""Provides Worker: one process's share of the sources when several share a PostgreSQL store.

Every ``replywatch run`` pointed at one PostgreSQL database joins the same deployment;
PostgreSQL is the only coordinator (docs/deployment.md). Every third of the lease
timeout a worker heartbeats: it renews its leases, counts the live workers, and takes
or gives up leases until it holds its fair share, ``ceil(sources / live workers)``.
A lease it acquires starts a :class:`LeasedRunner` for that source, whose every write
the database checks against the lease's epoch (:mod:`monitor.storage.cluster`); a lease
it loses (expired while it was frozen, taken after its session dropped) stops the
source's polls at once, and whatever write was in flight is refused.

A worker that dies is noticed at the survivors' next heartbeat (its session's
advisory lock is gone); one whose machine vanished without closing its connection,
when its leases expire. The new owner evaluates what the old one stored but had not
evaluated yet, then polls from the stored cursor: nothing is lost or stored twice,
and the deadlines of the source are armed again by its first poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from connectors import registry
from monitor.config import ClusterConfig
from monitor.errors import LeaseLost, StorageError
from monitor.events import Transition
from monitor.pipeline import EvaluationProcess
from monitor.runner import PollOutcome, SourceRunner
from monitor.scheduler import MonitorScheduler
from monitor.service import Service
from monitor.storage import Lease, WorkerSession, fenced

log = logging.getLogger(__name__)

T = TypeVar("T")


def application_name(host: str, pid: int) -> str:
    """Return the PostgreSQL ``application_name`` of a worker's connections."""
    return f"replywatch worker {pid}@{host}"[:63]


def preference(worker_id: int, sources: Iterable[str]) -> list[str]:
    """Return ``sources`` in this worker's order of preference (rendezvous hashing).

    Each worker ranks the sources differently, so workers looking for leases at the
    same moment mostly go for different ones, and a worker keeps the same ones.
    """

    def rank(name: str) -> bytes:
        return hashlib.blake2b(f"{worker_id}\0{name}".encode(), digest_size=8).digest()

    return sorted(sources, key=rank)


class LeasedRunner(SourceRunner):
    """A SourceRunner whose every write is made under one lease, checked by the database.

    Its first poll starts by evaluating what the previous owner stored but had not
    evaluated when it died, so no breach of those conversations is missed.
    """

    lease: Lease
    inherited = True
    """Whether conversations left dirty by the previous owner are still to be evaluated."""

    @classmethod
    def under(cls, lease: Lease, template: SourceRunner) -> LeasedRunner:
        """Return a runner of ``template``'s source with a fresh connector, under ``lease``.

        The connector is new: one that polled the source before may hold pages of an
        older cursor, and the stored cursor is the one to resume from.
        """
        settings = template.settings
        runner = cls(
            settings, registry()[settings.kind](settings), template.store, template.evaluator,
            template.session, lookback=template.lookback, now=template.now,
            on_clock_changes=template.on_clock_changes,
        )
        runner.lease = lease
        return runner

    async def poll_once(
        self, *, since: datetime | None = None, helper: EvaluationProcess | None = None
    ) -> PollOutcome:
        """Poll as :class:`SourceRunner` does, every write fenced by the lease.

        ``helper`` is not used: its writes, in another process, would not be fenced.
        """
        with fenced(self.lease):
            if self.inherited:
                await asyncio.to_thread(
                    self.evaluator.evaluate_dirty, now=self.now(), source=self.name
                )
                self.inherited = False
            return await super().poll_once(since=since)

    async def evaluate_dirty(self) -> list[Transition]:
        """Evaluate dirty conversations as :class:`SourceRunner` does, fenced by the lease."""
        with fenced(self.lease):
            return await super().evaluate_dirty()

    async def refresh_clocks(self) -> list[Transition]:
        """Refresh due clocks as :class:`SourceRunner` does, fenced by the lease."""
        with fenced(self.lease):
            return await super().refresh_clocks()


class Worker:
    """Holds this process's fair share of the source leases and polls only those sources.

    Use as an async context manager inside an entered Service that is not ``start()``-ed:
    it sets ``service.scheduler`` to a scheduler it fills as leases come and go.
    """

    def __init__(
        self, service: Service, settings: ClusterConfig, *, host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.lease_timeout = settings.lease_timeout
        self.heartbeat_every = settings.lease_timeout / 3
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.application_name = application_name(self.host, self.pid)
        self.sources = {source.name: source for source in service.config.enabled_sources}
        self.leases: dict[str, Lease] = {}
        self.scheduler = MonitorScheduler({}, on_lease_lost=self._lease_lost)
        self.session: WorkerSession | None = None
        self.live_workers = 1
        self._order: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replywatch-coordinator")
        self._last_beat = time.monotonic()

    @property
    def worker_id(self) -> int:
        """This worker's id in the ``workers`` table (0 before it joined)."""
        return 0 if self.session is None else self.session.worker_id

    async def __aenter__(self) -> Self:
        store = self.store
        await asyncio.to_thread(
            store.enable_cluster, application_name=self.application_name,
            idle_timeout=self.lease_timeout,
        )
        self.session = await asyncio.to_thread(
            store.join_cluster, host=self.host, pid=self.pid, sources=list(self.sources),
            application_name=self.application_name,
        )
        self._order = preference(self.worker_id, self.sources)
        self.service.scheduler = self.scheduler
        self.scheduler.start()
        self.service.start_jobs(self.scheduler, shared=True)
        log.info("worker %d (%s, pid %d) joined; lease timeout %gs", self.worker_id,
                 self.host, self.pid, self.lease_timeout)
        self._task = asyncio.create_task(self._coordinate(), name="replywatch-coordinator")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        runners = [self.scheduler.remove_source(name) for name in list(self.leases)]
        await self._settle(runners)
        await self.scheduler.stop()
        self.leases.clear()
        if self.session is not None:
            try:
                # The others take the sources over at their next heartbeat, not at expiry.
                await asyncio.to_thread(self.store.leave_cluster, self.session)
            except StorageError as err:
                log.warning("worker %d: could not release its leases: %s", self.worker_id, err)
        self._executor.shutdown(wait=False)

    # -- the heartbeat loop -------------------------------------------------------------------

    async def _coordinate(self) -> None:
        failing = False
        while True:
            try:
                delay = await self.heartbeat()
            except StorageError as err:
                if not failing:
                    log.warning("worker %d: cannot heartbeat: %s", self.worker_id, err)
                    failing = True
                if time.monotonic() - self._last_beat > self.lease_timeout:
                    # Our leases have expired by now: another worker may poll these sources.
                    for name in list(self.leases):
                        self._drop(name, "no heartbeat within the lease timeout")
                delay = self.heartbeat_every
            else:
                if failing:
                    log.info("worker %d: heartbeating again", self.worker_id)
                    failing = False
            await asyncio.sleep(delay)

    async def heartbeat(self) -> float:
        """Renew, rebalance, take over: one round; return the seconds until the next."""
        session = self.session
        if session is None:
            raise StorageError("the worker has not joined")
        store = self.store
        if not await self._call(session.alive):
            if self.leases:
                log.warning("worker %d: database session lost; dropping its %d sources",
                            self.worker_id, len(self.leases))
            for name in list(self.leases):
                self._drop(name, "database session lost")
            await self._call(store.rejoin_cluster, session, host=self.host, pid=self.pid)
            self._order = preference(self.worker_id, self.sources)
            log.info("worker %d: rejoined", self.worker_id)
        beat = await self._call(store.heartbeat, session, lease_timeout=self.lease_timeout)
        self._last_beat = time.monotonic()
        self.live_workers = beat.live_workers
        for name, lease in list(self.leases.items()):
            if beat.held.get(name) != lease.epoch:
                self._drop(name, "lease expired or taken over")
        share = math.ceil(len(self.sources) / beat.live_workers)
        if len(self.leases) > share:
            extras = [name for name in reversed(self._order) if name in self.leases]
            await self._release(extras[: len(self.leases) - share])
        elif len(self.leases) < share:
            wanted = [name for name in self._order if name not in self.leases]
            acquired = await self._call(
                store.acquire_leases, session, wanted, limit=share - len(self.leases),
                lease_timeout=self.lease_timeout,
            )
            for lease in acquired:
                self._start(lease)
        delay = self.heartbeat_every
        if beat.next_expiry_in is not None:
            # A worker went silent (frozen, or its machine vanished with its connection
            # open): wake as its leases expire, not up to a heartbeat later.
            delay = min(delay, beat.next_expiry_in + 0.05)
        return delay

    # -- starting and stopping sources ----------------------------------------------------------

    def _start(self, lease: Lease) -> None:
        """Begin polling a source whose lease was just acquired."""
        name = lease.source
        runner = LeasedRunner.under(lease, self.service.runners[name])
        self.leases[name] = lease
        self.service.runners[name] = runner
        self.scheduler.add_source(runner)
        log.info("worker %d: polling %s (epoch %d)", self.worker_id, name, lease.epoch)

    async def _call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a store call on the coordinator's own thread.

        Polls fill the default executor; a heartbeat queued behind them could arrive
        after the leases it renews have expired.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    def _drop(self, name: str, why: str) -> None:
        """Stop polling ``name`` at once; a write in flight for it will be refused."""
        lease = self.leases.pop(name, None)
        self.scheduler.remove_source(name)
        if lease is not None:
            log.warning("worker %d: source %s dropped (epoch %d): %s", self.worker_id, name,
                        lease.epoch, why)

    def _lease_lost(self, name: str, _err: LeaseLost) -> None:
        """A write for ``name`` was refused: the scheduler stopped it; forget the lease."""
        self.leases.pop(name, None)

    async def _release(self, names: list[str]) -> None:
        """Give leases up for a rebalance, after their polls in flight finish their page."""
        runners = [self.scheduler.remove_source(name) for name in names]
        await self._settle(runners)
        if self.session is not None:
            await self._call(self.store.release_leases, self.session, names)
        for name in names:
            self.leases.pop(name, None)
        log.info("worker %d: released %s for %d live workers", self.worker_id,
                 ", ".join(names), self.live_workers)

    async def _settle(self, runners: Iterable[SourceRunner | None]) -> None:
        """Wait (a third of the lease timeout at most) for these runners' polls to end."""

        async def idle(runner: SourceRunner) -> None:
            async with runner._lock:
                pass

        waits = [idle(runner) for runner in runners if runner is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), self.heartbeat_every)

    # -- headless output --------------------------------------------------------------------------

    def summary_line(self) -> str:
        """The service's summary line, with this worker's share."""
        return (f"{self.service.summary_line()} · worker {self.worker_id} polls "
                f"{len(self.leases)}/{len(self.sources)} sources, {self.live_workers} live")

    def print_summary(self) -> None:
        """Print the headless summary line to stdout."""
        print(self.summary_line(), flush=True)


@asynccontextmanager
async def cluster_worker(service: Service) -> AsyncIterator[Worker | None]:
    """Join the deployment if the store is PostgreSQL and ``[cluster]`` is enabled, else None.

    With None, the caller runs the service alone (``service.start()``), as on SQLite.
    """
    if service.store.dialect != "postgresql" or not service.config.cluster.enabled:
        yield None
        return
    async with Worker(service, service.config.cluster) as worker:
        yield worker
