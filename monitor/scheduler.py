"""Provides the scheduler: the only module that imports APScheduler.

One interval job per source polls it (no overlap, coalesced, jittered). After every
poll the source's next deadline is looked up and a one-off refresh is set for it, so a
breach is confirmed as soon as the source can show that no reply came in time
(SLA.md §6): at the deadline itself, plus the source's lag (Zendesk's exports trail
real time by a minute; a refresh before then could not confirm anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.errors import LeaseLost, StorageError
from monitor.runner import PollOutcome, SourceRunner

log = logging.getLogger(__name__)

MIN_DELAY = 0.05
DEADLINE_INSTANCES = 8
REFRESH_GAP = 0.25
"""Seconds at least between the starts of two polls of a source for deadlines."""


class MonitorScheduler:
    """Runs every source's polls and deadline refreshes on the running asyncio loop."""

    def __init__(
        self, runners: Mapping[str, SourceRunner], *,
        on_lease_lost: Callable[[str, LeaseLost], None] | None = None,
    ) -> None:
        self.runners = dict(runners)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.last_outcome: dict[str, PollOutcome] = {}
        self.on_lease_lost = on_lease_lost
        self._stopping = False

    def start(self, *, first_poll_in: float = 0.0) -> None:
        """Add one poll job per source and start; the first polls run after ``first_poll_in``."""
        for runner in self.runners.values():
            self._add_poll_job(runner, first_poll_in)
        self.scheduler.start()

    def _add_poll_job(self, runner: SourceRunner, first_poll_in: float) -> None:
        every = runner.settings.poll_every
        self.scheduler.add_job(
            self._poll, IntervalTrigger(seconds=every, jitter=min(every * 0.1, 5.0)),
            args=[runner.name], id=self._poll_id(runner.name), max_instances=1, coalesce=True,
            misfire_grace_time=None, replace_existing=True,
            next_run_time=datetime.now(UTC)
            + timedelta(seconds=first_poll_in + random.uniform(0, 0.2)),
        )

    def add_source(self, runner: SourceRunner, *, first_poll_in: float = 0.0) -> None:
        """Start polling one more source (a worker took its lease), replacing any runner of it."""
        self.runners[runner.name] = runner
        self._add_poll_job(runner, first_poll_in)

    def remove_source(self, name: str) -> SourceRunner | None:
        """Stop scheduling ``name`` at once; return its runner (a poll in flight goes on)."""
        for job_id in (self._poll_id(name), self._deadline_id(name)):
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)
        return self.runners.pop(name, None)

    async def stop(self) -> None:
        """Stop scheduling and let running polls finish their current page."""
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for runner in self.runners.values():
            async with runner._lock:
                pass

    @staticmethod
    def _poll_id(name: str) -> str:
        return f"poll:{name}"

    @staticmethod
    def _deadline_id(name: str) -> str:
        return f"deadline:{name}"

    async def _poll(self, name: str) -> None:
        if self._stopping:
            return
        runner = self.runners.get(name)
        if runner is None:
            return  # removed (its lease went elsewhere) after this run was due
        try:
            outcome = await runner.poll_once()
        except asyncio.CancelledError:
            if self._stopping:
                return  # the service is stopping: a refresh waiting for its turn just ends
            raise
        except LeaseLost as err:
            self._lease_lost(runner, err)
            return
        except StorageError as err:
            # The store failed mid-poll (a dropped connection): the next poll retries.
            log.warning("source %s: poll interrupted: %s", name, err)
            return
        if self.runners.get(name) is not runner:
            return  # removed or replaced while it polled
        self.last_outcome[name] = outcome
        now = runner.now()
        if outcome.retry_in is not None:
            self._reschedule(name, now + timedelta(seconds=max(MIN_DELAY, outcome.retry_in)))
        try:
            await self._arm_deadline(name, now)
        except StorageError as err:
            log.warning("source %s: cannot arm its next deadline: %s", name, err)

    def _lease_lost(self, runner: SourceRunner, err: LeaseLost) -> None:
        """Another worker owns the source now: not one more poll or write from this one."""
        name = runner.name
        if self.runners.get(name) is runner:
            self.remove_source(name)
            log.warning("source %s: lease lost, no longer polled here: %s", name, err)
            if self.on_lease_lost is not None:
                self.on_lease_lost(name, err)

    async def evaluate_dirty(self, sources: AbstractSet[str]) -> None:
        """Evaluate what ``sources`` stored but did not evaluate yet (a dismissal).

        Only the sources scheduled here: on a shared store the owner of a source is the
        only process that evaluates it, under its lease.

        Raises:
            StorageError: the store failed (the next run tries again).
        """
        for runner in [self.runners[name] for name in sources if name in self.runners]:
            if self._stopping:
                return
            try:
                await runner.evaluate_dirty()
            except LeaseLost as err:
                self._lease_lost(runner, err)

    def _reschedule(self, name: str, when: datetime) -> None:
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job(self._poll_id(name), next_run_time=when)

    async def _arm_deadline(self, name: str, now: datetime) -> None:
        runner = self.runners[name]
        state = await asyncio.to_thread(runner.store.source_state, name)
        candidates: list[datetime] = []
        upcoming = await asyncio.to_thread(runner.store.next_deadline, name, now)
        if upcoming is not None:
            candidates.append(upcoming)
        if state.watermark is not None and state.watermark < now:
            lag = now - state.watermark
            unconfirmed = await asyncio.to_thread(runner.store.next_deadline, name, state.watermark)
            if unconfirmed is not None:
                candidates.append(unconfirmed + lag)
        if not candidates:
            return
        when = max(min(candidates), now + timedelta(seconds=MIN_DELAY))
        # Deadlines a few hundred milliseconds apart share one refresh: a refresh confirms
        # every deadline before it, and each one costs the source's rate budget.
        if runner.last_poll_started is not None:
            when = max(when, runner.last_poll_started + timedelta(seconds=REFRESH_GAP))
        job = self.scheduler.get_job(self._poll_id(name))
        if job is not None and job.next_run_time is not None and job.next_run_time <= when:
            return
        # A refresh armed while the previous one still polls must not be skipped as a
        # second instance of the same job: the runner's lock already serialises polls.
        self.scheduler.add_job(
            self._poll, DateTrigger(run_date=when, timezone=UTC), args=[name],
            id=self._deadline_id(name), replace_existing=True, misfire_grace_time=None,
            max_instances=DEADLINE_INSTANCES,
        )

    def every(self, job_id: str, seconds: float, func: Callable[[], Awaitable[None]]) -> None:
        """Run ``func`` every ``seconds`` (never two at once), e.g. the alert outbox drain."""
        self.scheduler.add_job(
            self._quiet_at_stop(func), IntervalTrigger(seconds=seconds), id=job_id,
            max_instances=1, coalesce=True, replace_existing=True, misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )

    def weekly(
        self, job_id: str, func: Callable[[], Awaitable[None]], *, weekday: int, hour: int,
        minute: int, timezone: str,
    ) -> None:
        """Run ``func`` once a week at a local wall-clock time (weekday 0 = Monday)."""
        self.scheduler.add_job(
            self._quiet_at_stop(func),
            CronTrigger(day_of_week=weekday, hour=hour, minute=minute, timezone=timezone),
            id=job_id, max_instances=1, coalesce=True, replace_existing=True,
            misfire_grace_time=3600,
        )

    def _quiet_at_stop(self, func: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``func``, ending quietly when it is cancelled because the service is stopping."""

        async def job() -> None:
            try:
                await func()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise

        return job

    def poll_now(self, name: str) -> None:
        """Ask for a poll of ``name`` as soon as possible (e.g. a lead pressed refresh)."""
        self._reschedule(name, datetime.now(UTC))
