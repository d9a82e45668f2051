"""Provides SourceRunner: one source's loop of poll -> persist -> evaluate -> publish.

The runner owns one connector. ``poll_once`` fetches pages until the source has no
``more``, storing each page's events, cursor and watermark in one transaction before it
asks for the next, so a crash between two pages loses nothing and repeats nothing that
is not deduplicated. It never sleeps to wait for an API: it returns when it wants to be
called next, and the scheduler obliges.

A failing source is logged once when it starts failing and once when it recovers;
its health (last success, last error, degraded) is stored for the board and ``check``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from monitor.alerts import SourceAlertKind, decide_source
from monitor.connector import Connector, Cursor, PollContext, SourceSettings
from monitor.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    LeaseLost,
    ParseError,
    RateLimited,
    StorageError,
    TransientError,
)
from monitor.events import Event, Transition
from monitor.pipeline import Evaluator
from monitor.storage import OutboxItem, Store

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 500
"""A source that keeps saying ``more`` yields after this many pages (fairness, backfills)."""
FATAL_RETRY = 300.0
"""Seconds between attempts while a source fails for a reason only a human can fix."""
MAX_BACKOFF = 300.0
EVALUATE_EVERY_EVENTS = 50_000
"""During a long chain of pages, stored events are evaluated at least this often."""


def utc_now() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one ``poll_once`` did and when it wants to run again (seconds from now)."""

    pages: int
    new_events: int
    transitions: tuple[Transition, ...]
    error: str | None
    retry_in: float | None


class SourceRunner:
    """Polls one source and keeps its events, cursor, watermark, clocks and health."""

    def __init__(
        self,
        settings: SourceSettings,
        connector: Connector,
        store: Store,
        evaluator: Evaluator,
        session: aiohttp.ClientSession,
        *,
        lookback: float,
        now: Callable[[], datetime] = utc_now,
        on_transitions: Callable[[Sequence[Transition]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.connector = connector
        self.store = store
        self.evaluator = evaluator
        self.session = session
        self.lookback = lookback
        self.now = now
        self.on_transitions = on_transitions
        self.polls = 0
        self.last_poll_started: datetime | None = None
        self._lock = asyncio.Lock()
        self._failures = 0

    def context(self, since: datetime | None = None) -> PollContext:
        """The context lent to the connector: session, clock, and where to start."""
        start = since or (self.now() - timedelta(seconds=self.lookback))
        return PollContext(session=self.session, now=self.now, since=start)

    async def poll_once(self, *, since: datetime | None = None) -> PollOutcome:
        """Fetch every page the source has now, storing each; never raises ConnectorError.

        With ``since`` (a backfill) the source is re-read from that instant.
        """
        async with self._lock:
            return await self._poll(since)

    async def _poll(self, since: datetime | None) -> PollOutcome:
        self.polls += 1
        self.last_poll_started = self.now()
        state = await asyncio.to_thread(self.store.source_state, self.name)
        # A backfill re-reads from ``since``; deduplication keeps what is already stored.
        cursor: Cursor | None = None if since is not None else state.cursor
        ctx = self.context(since)
        pages = new_events = pending = 0
        transitions: list[Transition] = []
        chain: list[Event] = []  # stored since the last evaluation, evaluated from memory
        try:
            while True:
                batch = await self.connector.poll(cursor, ctx)
                if pages == 0 and state.failing_since is not None:
                    # Before the first ingest, which would clear the failing state without
                    # the source_up alert that belongs in the same transaction.
                    await asyncio.to_thread(
                        self.store.source_recovered,
                        self.name,
                        now=self.now(),
                        decide=self._source_up,
                    )
                result = await asyncio.to_thread(
                    self.store.ingest, self.name, batch.events, batch.cursor, batch.watermark,
                    now=self.now(),
                )
                pages += 1
                new_events += result.new_events
                pending += result.new_events
                chain += result.events
                cursor = batch.cursor
                done = not batch.more or pages >= MAX_PAGES_PER_POLL
                # A conversation spread over many pages of a backfill is evaluated once,
                # not once per page; live polls (one page) are evaluated at once.
                if done or pending >= EVALUATE_EVERY_EVENTS:
                    transitions += await asyncio.to_thread(
                        self.evaluator.evaluate_batch, chain, now=self.now(), source=self.name
                    )
                    pending, chain = 0, []
                if done:
                    break
        except ConnectorError as err:
            if pending:
                transitions += await asyncio.to_thread(
                    self.evaluator.evaluate_batch, chain, now=self.now(), source=self.name
                )
            transitions += await asyncio.to_thread(self._evaluate_due)
            self._publish(transitions)
            return await self._failed(err, pages, new_events, transitions)
        if state.failing_since is not None:
            log.info("source %s recovered after failing since %s", self.name,
                     state.failing_since.isoformat(timespec="seconds"))
        self._failures = 0
        transitions += await asyncio.to_thread(self._evaluate_due)
        self._publish(transitions)
        retry_in = 0.0 if pages >= MAX_PAGES_PER_POLL else None
        return PollOutcome(pages, new_events, tuple(transitions), None, retry_in)

    def _source_alerts(
        self, kind: SourceAlertKind, failing_since: datetime, error: str | None
    ) -> list[OutboxItem]:
        """The alerts saying this source went down or came back (none without targets)."""
        return decide_source(
            kind,
            self.name,
            failing_since=failing_since,
            error=error,
            targets=self.evaluator.config.alerts,
            now=self.now(),
        )

    def _source_up(self, failing_since: datetime, error: str | None) -> list[OutboxItem]:
        return self._source_alerts("source_up", failing_since, error)

    def _evaluate_due(self) -> list[Transition]:
        return self.evaluator.evaluate_due(self.name, now=self.now())

    async def evaluate_dirty(self) -> list[Transition]:
        """Evaluate this source's conversations stored but not evaluated (a dismissal).

        Skipped while a poll is in flight: that poll evaluates them as it ends. Every
        evaluation of a source thus runs under its runner's lock, one at a time.
        """
        if self._lock.locked():
            return []
        async with self._lock:
            transitions = await asyncio.to_thread(
                self.evaluator.evaluate_dirty, now=self.now(), source=self.name
            )
        self._publish(transitions)
        return transitions

    async def refresh_clocks(self) -> list[Transition]:
        """Re-evaluate clocks whose warning or deadline passed, without polling."""
        async with self._lock:
            transitions = await asyncio.to_thread(self._evaluate_due)
        self._publish(transitions)
        return transitions

    def _publish(self, transitions: Sequence[Transition]) -> None:
        if transitions and self.on_transitions is not None:
            self.on_transitions(transitions)

    async def _failed(
        self, err: ConnectorError, pages: int, new_events: int, transitions: list[Transition]
    ) -> PollOutcome:
        self._failures += 1
        message = str(err)
        if isinstance(err, RateLimited):
            retry_in = err.retry_after
        elif isinstance(err, FatalError):
            retry_in = FATAL_RETRY
        elif isinstance(err, TransientError | ParseError):
            retry_in = min(MAX_BACKOFF, self.settings.poll_every * 2 ** (self._failures - 1))
        else:
            retry_in = self.settings.poll_every
        if isinstance(err, RateLimited):
            # Being asked to wait is the API working as documented, not a failure.
            log.debug("source %s rate limited for %.1fs", self.name, retry_in)
            return PollOutcome(pages, new_events, tuple(transitions), message, retry_in)
        try:
            started = await asyncio.to_thread(
                self.store.record_failure,
                self.name,
                message,
                degraded=isinstance(err, ParseError | AuthError | FatalError),
                now=self.now(),
                decide=lambda since: self._source_alerts("source_down", since, message),
            )
        except LeaseLost:
            raise  # not ours to record any more: the scheduler stops polling the source
        except StorageError as storage_err:
            log.error("source %s: cannot record failure: %s", self.name, storage_err)
            started = False
        if started:
            log.warning("source %s failing: %s", self.name, message)
        return PollOutcome(pages, new_events, tuple(transitions), message, retry_in)
