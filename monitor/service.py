"""Provides Service: one process's pipeline (store, connectors, runners, scheduler) assembled.

``run``, ``demo``, ``backfill`` and ``check`` all build a Service from the config, so
they exercise exactly the same path from API page to stored clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

import aiohttp

from connectors import registry
from monitor.config import Config
from monitor.delivery import TICK_EVERY, DeliveryWorker
from monitor.durations import format_duration
from monitor.errors import ConnectorError, RateLimited, StorageError
from monitor.events import ClockState
from monitor.pipeline import EvaluationProcess, Evaluator
from monitor.runner import SourceRunner, utc_now
from monitor.scheduler import MonitorScheduler
from monitor.storage import Store

log = logging.getLogger(__name__)

EVALUATE_DIRTY_EVERY = 1.0
"""Seconds between two evaluations of conversations a board (or a crash) left dirty."""
BACKFILL_MAX_WAIT = 120.0
"""Longest single wait a backfill accepts when a source asks it to slow down."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of probing one source."""

    source: str
    kind: str
    ok: bool
    message: str


class Service:
    """The pipeline of one process, as an async context manager."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        now: Callable[[], datetime] = utc_now,
        on_clock_changes: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.on_clock_changes = on_clock_changes
        self.evaluator = Evaluator(config, store)
        self.runners: dict[str, SourceRunner] = {}
        self.scheduler: MonitorScheduler | None = None
        self.delivery: DeliveryWorker | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dirty_failing = False

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(
            self.store.register_sources, [(s.name, s.kind) for s in self.config.enabled_sources]
        )
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": "replywatch (+https://github.com/replywatch/replywatch)"}
        )
        kinds = registry()
        for settings in self.config.enabled_sources:
            connector = kinds[settings.kind](settings)
            self.runners[settings.name] = SourceRunner(
                settings, connector, self.store, self.evaluator, self._session,
                lookback=self.config.monitor.lookback, now=self.now,
                on_clock_changes=self.on_clock_changes,
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.delivery is not None:
            # A send in flight finishes and is marked, rather than waiting out its lease.
            await self.delivery.stop()
        if self._session is not None:
            await self._session.close()

    def start(self, *, first_poll_in: float = 0.0) -> None:
        """Start polling every source on its schedule, with deadline refreshes."""
        # Conversations stored but not evaluated before a crash are evaluated first.
        self.evaluator.evaluate_dirty(now=self.now())
        self.scheduler = MonitorScheduler(self.runners)
        self.scheduler.start(first_poll_in=first_poll_in)
        self.start_jobs(self.scheduler)

    def start_jobs(self, scheduler: MonitorScheduler, *, shared: bool = False) -> None:
        """Add the jobs every process runs besides polls: report, dirty evaluation, alerts.

        A cluster worker (``shared``) polls only the sources it leases but runs these too:
        alert claims skip what another worker holds, the weekly report is claimed once,
        and dirty conversations are evaluated by their source's owner alone.
        """
        if self.config.reports.weekly is not None:
            from monitor.reports.weekly import schedule_weekly

            schedule_weekly(scheduler, self.config, self.store, now=self.now, session=self._session)
        # A board (here or attached from another machine) stores dismissals as events
        # and marks their conversation dirty; this evaluates them within a second.
        scheduler.every(
            "evaluate-dirty", EVALUATE_DIRTY_EVERY, self._evaluate_dirty(scheduler, shared=shared)
        )
        if self.config.alerts and self._session is not None:
            self.delivery = DeliveryWorker(
                self.store, self.config.alerts, self._session, now=self.now
            )
            scheduler.every("alerts:deliver", TICK_EVERY, self.delivery.tick)

    def _evaluate_dirty(
        self, scheduler: MonitorScheduler, *, shared: bool
    ) -> Callable[[], Awaitable[None]]:
        """The job evaluating conversations stored but not evaluated (a board's dismissal).

        One read finds the sources with such conversations; each polled one is evaluated
        under its runner's lock, so one evaluation of a source runs at a time; alone on
        the store, also those of sources not polled here (disabled ones).
        """

        async def job() -> None:
            try:
                dirty = await asyncio.to_thread(self.store.dirty_sources)
                await scheduler.evaluate_dirty(dirty)
                unpolled = set() if shared else dirty - scheduler.runners.keys()
                for source in sorted(unpolled):
                    transitions = await asyncio.to_thread(
                        self.evaluator.evaluate_dirty, now=self.now(), source=source
                    )
                    if transitions and self.on_clock_changes is not None:
                        self.on_clock_changes(len(transitions))
            except StorageError as err:
                if not self._dirty_failing:  # once when it starts failing, not every second
                    log.warning("evaluating dirty conversations failed: %s", err)
                self._dirty_failing = True
                return
            self._dirty_failing = False

        return job

    @property
    def polls(self) -> int:
        """Polls made by this process so far, across sources."""
        return sum(runner.polls for runner in self.runners.values())

    async def backfill(self, since: datetime, *, sources: Sequence[str] = ()) -> dict[str, int]:
        """Load every source's history from ``since`` through the live polling path.

        Long chains of pages are evaluated in a second process meanwhile
        (:class:`EvaluationProcess`), unless the store lives in this process's memory.
        Returns the number of new events stored per source.
        """
        chosen = [self.runners[name] for name in (sources or self.runners)]
        url = self.store.shared_url
        helper = None
        try:
            helper = None if url is None else EvaluationProcess(self.config, url)
        except OSError as err:  # the process cannot start: evaluate here
            log.warning("backfill: cannot start a second process, evaluating here: %s", err)
        try:
            results = await asyncio.gather(
                *(self._backfill_one(runner, since, helper) for runner in chosen)
            )
        finally:
            if helper is not None:
                await asyncio.to_thread(helper.close)
                log.info("backfill: %d conversations evaluated in a second process",
                         helper.given)
        return {runner.name: count for runner, count in zip(chosen, results, strict=True)}

    async def _backfill_one(
        self, runner: SourceRunner, since: datetime, helper: EvaluationProcess | None
    ) -> int:
        total = 0
        outcome = await runner.poll_once(since=since, helper=helper)
        total += outcome.new_events
        while outcome.retry_in is not None and (outcome.error is None or "rate limited" in
                                                 outcome.error):
            await asyncio.sleep(min(outcome.retry_in, BACKFILL_MAX_WAIT))
            outcome = await runner.poll_once(helper=helper)
            total += outcome.new_events
        if outcome.error is not None:
            log.warning("backfill of %s stopped: %s", runner.name, outcome.error)
        return total

    async def check(self) -> list[CheckResult]:
        """Probe every source with its cheapest authenticated call."""

        async def probe(runner: SourceRunner) -> CheckResult:
            kind = runner.settings.kind
            try:
                message = await runner.connector.check(runner.context())
            except RateLimited as err:
                return CheckResult(runner.name, kind, True,
                                   f"reachable, rate limited for {err.retry_after:.0f}s")
            except ConnectorError as err:
                return CheckResult(runner.name, kind, False, str(err))
            return CheckResult(runner.name, kind, True, message)

        return list(await asyncio.gather(*(probe(r) for r in self.runners.values())))

    def print_summary(self) -> None:
        """Print the headless summary line to stdout."""
        print(self.summary_line(), flush=True)

    def summary_line(self) -> str:
        """One line for headless mode: open, at risk, breached, polls, lag per source."""
        now = self.now()
        counts = self.store.state_counts()
        open_conversations = self.store.counts()["open_conversations"]
        lags = []
        for state in self.store.sources():
            if state.name not in self.runners:
                continue
            lag = "?" if state.watermark is None else format_duration(
                max(0.0, (now - state.watermark).total_seconds()))
            flag = " DEGRADED" if state.degraded else (" FAILING" if state.failing_since else "")
            lags.append(f"{state.name} {lag}{flag}")
        return (
            f"{now:%H:%M:%S} open {open_conversations} · "
            f"at risk {counts.get(ClockState.AT_RISK, 0)} · "
            f"overdue {counts.get(ClockState.OVERDUE, 0)} · "
            f"breached {counts.get(ClockState.BREACHED, 0)} open · "
            f"polls {self.polls} · lag {', '.join(lags) or 'no sources'}"
        )
