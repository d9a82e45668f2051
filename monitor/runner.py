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
import itertools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
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
from monitor.pipeline import EvaluationProcess, Evaluator
from monitor.storage import ConversationKey, IngestResult, OutboxItem, Store

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 500
"""A source that keeps saying ``more`` yields after this many pages (fairness, backfills)."""
FATAL_RETRY = 300.0
"""Seconds between attempts while a source fails for a reason only a human can fix."""
MAX_BACKOFF = 300.0
EVALUATE_EVERY_EVENTS = 50_000
"""During a long chain of pages, stored events are evaluated at least this often."""
CHAIN_PART = 1000
"""Conversations a runner gives its helper at a time, and the parts of a chain's end."""


def utc_now() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one ``poll_once`` did and when it wants to run again (seconds from now)."""

    pages: int
    new_events: int
    changes: int
    """Clock state changes its evaluations saved (``Store.transitions`` has them)."""
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
        on_clock_changes: Callable[[int], None] | None = None,
        evaluate_every: int = EVALUATE_EVERY_EVENTS,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.connector = connector
        self.store = store
        self.evaluator = evaluator
        self.session = session
        self.lookback = lookback
        self.now = now
        self.on_clock_changes = on_clock_changes
        self.evaluate_every = evaluate_every
        self.polls = 0
        self.last_poll_started: datetime | None = None
        self._lock = asyncio.Lock()
        self._failures = 0

    def context(self, since: datetime | None = None) -> PollContext:
        """The context lent to the connector: session, clock, and where to start."""
        start = since or (self.now() - timedelta(seconds=self.lookback))
        return PollContext(session=self.session, now=self.now, since=start)

    async def poll_once(
        self, *, since: datetime | None = None, helper: EvaluationProcess | None = None
    ) -> PollOutcome:
        """Fetch every page the source has now, storing each; never raises ConnectorError.

        With ``since`` (a backfill) the source is re-read from that instant. With
        ``helper``, a long chain of pages is evaluated there while the next pages are
        fetched and stored here; the last pages are evaluated here, as usual.
        """
        async with self._lock:
            return await self._poll(since, helper)

    async def _poll(self, since: datetime | None, helper: EvaluationProcess | None) -> PollOutcome:
        self.polls += 1
        self.last_poll_started = self.now()
        state = await asyncio.to_thread(self.store.source_state, self.name)
        # A backfill re-reads from ``since``; deduplication keeps what is already stored.
        cursor: Cursor | None = None if since is not None else state.cursor
        ctx = self.context(since)
        pages = new_events = 0
        chain = _Chain(self, helper)
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
                chain.add(result)
                cursor = batch.cursor
                if not batch.more or pages >= MAX_PAGES_PER_POLL:
                    break
                await chain.step()
        except ConnectorError as err:
            changes = await chain.finish()
            changes += len(await asyncio.to_thread(self._evaluate_due))
            self._publish(changes)
            return await self._failed(err, pages, new_events, changes)
        except BaseException:
            await chain.settle()  # interrupted: the helper's evaluation ends before the lock
            raise
        changes = await chain.finish()
        if state.failing_since is not None:
            log.info("source %s recovered after failing since %s", self.name,
                     state.failing_since.isoformat(timespec="seconds"))
        self._failures = 0
        changes += len(await asyncio.to_thread(self._evaluate_due))
        self._publish(changes)
        retry_in = 0.0 if pages >= MAX_PAGES_PER_POLL else None
        return PollOutcome(pages, new_events, changes, None, retry_in)

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
        self._publish(len(transitions))
        return transitions

    async def refresh_clocks(self) -> list[Transition]:
        """Re-evaluate clocks whose warning or deadline passed, without polling."""
        async with self._lock:
            transitions = await asyncio.to_thread(self._evaluate_due)
        self._publish(len(transitions))
        return transitions

    def _publish(self, changes: int) -> None:
        if changes and self.on_clock_changes is not None:
            self.on_clock_changes(changes)

    async def _failed(
        self, err: ConnectorError, pages: int, new_events: int, changes: int
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
            return PollOutcome(pages, new_events, changes, message, retry_in)
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
        return PollOutcome(pages, new_events, changes, message, retry_in)


class _Chain:
    """What one poll has stored and not evaluated yet, and who evaluates it.

    A conversation spread over many pages of a backfill is evaluated once, not once per
    page; a live poll (one page) is evaluated as it ends. Alone, the runner evaluates the
    chain every ``evaluate_every`` events, from memory. With a helper
    (:class:`EvaluationProcess`), once the chain is that long the helper is given its
    oldest conversations, a part at a time, whenever it is idle, so the next pages are
    fetched and stored meanwhile; if the chain grows to twice that many events, the
    runner evaluates it itself; at the end the two share what is left, and the runner
    then evaluates whatever is still dirty.
    """

    def __init__(self, runner: SourceRunner, helper: EvaluationProcess | None) -> None:
        self.runner = runner
        self.helper = helper
        # Events stored and not evaluated yet, by conversation, oldest conversation first.
        self.fresh: dict[ConversationKey, list[Event]] = {}
        self.pending = 0  # new events stored and not evaluated (or given) yet
        self.changes = 0
        self.offloaded: asyncio.Future[int] | None = None

    def add(self, result: IngestResult) -> None:
        """Add what one ingest stored."""
        fresh = self.fresh
        for event in result.events:
            key = (event.source, event.conversation)
            events = fresh.get(key)
            if events is None:
                fresh[key] = [event]
            else:
                events.append(event)
        self.pending += result.new_events

    async def step(self) -> None:
        """Evaluate, or hand over, the chain if it has grown long enough."""
        every = self.runner.evaluate_every
        if self.pending < every:
            return
        if self.helper is not None and (self.offloaded is None or self.offloaded.done()):
            await self.settle()
        if self.helper is None:
            await self._here(self._take(len(self.fresh)), sweep=True)
        elif self.offloaded is None:
            # A part at a time, oldest conversations first: they are the likeliest to
            # be complete, and a small part in flight keeps the chain's end balanced.
            self._offload(self.helper, self._take(CHAIN_PART))
        elif self.pending >= 2 * every:
            await self._here(self._take(len(self.fresh)), sweep=False)

    async def finish(self) -> int:
        """Evaluate what is left and everything else dirty; return all the changes."""
        if self.helper is None:
            await self._here(self._take(len(self.fresh)), sweep=True)
            return self.changes
        # The runner takes the last parts from the front, from memory; the helper, once
        # done with what it has, from the back: both end together.
        parts: deque[dict[ConversationKey, list[Event]]] = deque()
        while self.fresh:
            parts.append(self._take(CHAIN_PART))

        async def theirs() -> None:
            await self.settle()
            while self.helper is not None and parts:
                self._offload(self.helper, parts.pop())
                await self.settle()

        async def mine() -> None:
            while parts:
                await self._here(parts.popleft(), sweep=False)

        await asyncio.gather(theirs(), mine())
        # Then whatever the helper did not save, or another writer stored.
        await self._here({}, sweep=True)
        return self.changes

    def _take(self, count: int) -> dict[ConversationKey, list[Event]]:
        """Remove the ``count`` oldest conversations from the chain and return them."""
        fresh = self.fresh
        taken = {key: fresh[key] for key in itertools.islice(fresh, count)}
        for key, events in taken.items():
            del fresh[key]
            self.pending -= len(events)
        if not fresh:
            self.pending = 0  # events another writer stored first are not in memory
        return taken

    async def settle(self) -> None:
        """Wait for the helper's evaluation in flight, if any, and count its changes.

        If it failed, that is logged and the helper is not asked again in this poll:
        what it did not evaluate is still dirty, and the runner evaluates it at the end.
        """
        if self.offloaded is None:
            return
        offloaded, self.offloaded = self.offloaded, None
        try:
            changes = await asyncio.shield(offloaded)
        except (StorageError, BrokenProcessPool, OSError) as err:
            log.warning("source %s: evaluating in a second process failed, evaluating "
                        "here instead: %s", self.runner.name, str(err) or type(err).__name__)
            self.helper = None
            return
        # Not `self.changes += await ...`: the runner's share may add to it meanwhile.
        self.changes += changes

    def _offload(
        self, helper: EvaluationProcess, part: dict[ConversationKey, list[Event]]
    ) -> None:
        self.offloaded = asyncio.ensure_future(
            helper.evaluate_keys(sorted(part), now=self.runner.now())
        )

    async def _here(self, part: dict[ConversationKey, list[Event]], *, sweep: bool) -> None:
        """Evaluate ``part`` in this process (in a worker thread), from memory; with
        ``sweep``, then every other dirty conversation of the source."""
        runner, evaluator = self.runner, self.runner.evaluator
        if sweep:
            transitions = await asyncio.to_thread(
                evaluator.evaluate_batch, part, now=runner.now(), source=runner.name
            )
        else:
            transitions = await asyncio.to_thread(
                evaluator.evaluate_keys, sorted(part), now=runner.now(), fresh=part
            )
        self.changes += len(transitions)
