"""Provides the evaluation step of the pipeline: stored events -> clocks -> transitions.

It reads a set of conversations' events from the store, runs the pure SLA engine on each
with its source's watermark, and saves the clocks (and any alert decisions) in one
transaction. Synchronous on purpose: the runner calls it in a worker thread.

A backfill also lends its runners an :class:`EvaluationProcess`: a second process that
evaluates what the first has stored while the first fetches and stores the next pages.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from monitor.alerts import alert_context, decide
from monitor.calendars import Calendar, build_calendars
from monitor.config import Config
from monitor.events import Event, Transition
from monitor.sla import evaluate
from monitor.storage import ConversationKey, EvaluationRecord, OutboxItem, Store

Decide = Callable[[Sequence[Transition]], Sequence[OutboxItem]]

CHUNK = 2000
COLLECT_AFTER = 50_000
"""Allocations between two passes of the cycle collector over young objects."""


def tune_collector() -> None:
    """Tune the cycle collector for a long-running pipeline (``run``, ``demo``, ``backfill``).

    Each page parsed makes tens of thousands of short-lived dicts and lists, nearly all
    freed by reference counting; with the defaults (a pass every 700 allocations, and
    full passes over everything alive) collection took a fifth of an ingest
    (benchmarks/ingest.py). What is alive after start-up (modules, config, calendars) is
    frozen out of every pass, and young objects are collected every 50,000 allocations.
    """
    gc.freeze()
    gc.set_threshold(COLLECT_AFTER, 20, 100)


class Evaluator:
    """Re-evaluates conversations with the configured policies and saves their clocks.

    Alerts are decided from the transitions with the configured ``[[alerts]]`` targets
    (``decide`` replaces that), in the transaction that saves the clocks.
    """

    def __init__(self, config: Config, store: Store, *, decide: Decide | None = None) -> None:
        self.config = config
        self.store = store
        self.decide = decide
        self.calendars: dict[str, Calendar] = build_calendars(config)
        self.kinds = {source.name: source.kind for source in config.sources}

    def evaluate_keys(
        self,
        keys: Sequence[ConversationKey],
        *,
        now: datetime,
        fresh: Mapping[ConversationKey, Sequence[Event]] | None = None,
    ) -> list[Transition]:
        """Evaluate these conversations as of ``now`` and save the result.

        ``fresh``: events just stored, by conversation, that need not be read again
        (:meth:`Store.complete_events`).
        """
        transitions: list[Transition] = []
        watermarks: dict[str, datetime | None] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            # A watermark read before the events it is applied to: read after them, it
            # could cover events another process stored in between, unseen here, and a
            # breach would be confirmed that their reply had prevented.
            for source in {source for source, _conversation in chunk} - watermarks.keys():
                watermarks[source] = self.store.source_state(source).watermark
            events = (
                self.store.load_events(chunk)
                if fresh is None
                else self.store.complete_events(chunk, fresh)
            )
            records: list[EvaluationRecord] = []
            for key in chunk:
                source = key[0]
                result = evaluate(
                    events.get(key, []),
                    policies=self.config.policies,
                    calendars=self.calendars,
                    source_kind=self.kinds.get(source, ""),
                    now=now,
                    watermark=watermarks[source],
                )
                records.append(
                    EvaluationRecord(key, result.conversation, result.policy, result.clocks)
                )
            transitions += self.store.save_evaluations(
                records, now=now, decide=self.decide or self._alerts(records, events, now)
            )
        return transitions

    def _alerts(
        self,
        records: Sequence[EvaluationRecord],
        events: Mapping[ConversationKey, Sequence[Event]],
        now: datetime,
    ) -> Decide | None:
        """The decision of the configured targets' alerts for one chunk of records."""
        targets = self.config.alerts
        if not targets:
            return None
        conversations = {record.key: record.conversation for record in records}

        def decide_chunk(transitions: Sequence[Transition]) -> Sequence[OutboxItem]:
            # Only conversations that alert need their context (the last customer text).
            keys = {(t.clock.source, t.clock.conversation) for t in transitions}
            contexts = {
                key: alert_context(conversations.get(key), events.get(key, ())) for key in keys
            }
            return decide(transitions, contexts, targets, now=now)

        return decide_chunk

    def evaluate_dirty(self, *, now: datetime, source: str | None = None) -> list[Transition]:
        """Evaluate every conversation ingested since it was last evaluated."""
        transitions: list[Transition] = []
        while keys := self.store.dirty_conversations(source):
            transitions += self.evaluate_keys(keys, now=now)
        return transitions

    def evaluate_batch(
        self,
        fresh: Mapping[ConversationKey, Sequence[Event]],
        *,
        now: datetime,
        source: str | None = None,
    ) -> list[Transition]:
        """:meth:`evaluate_dirty`, taking the events of ingests still in memory as read.

        ``fresh`` holds what a chain of ingests stored (``IngestResult.events``), by
        conversation: those conversations are evaluated without reading back what is in
        memory, then every other dirty conversation (of ``source``) as by
        :meth:`evaluate_dirty`.
        """
        transitions = self.evaluate_keys(sorted(fresh), now=now, fresh=fresh)
        return transitions + self.evaluate_dirty(now=now, source=source)

    def evaluate_due(self, source: str, *, now: datetime) -> list[Transition]:
        """Evaluate the conversations whose clocks reach a warning or deadline by ``now``."""
        return self.evaluate_keys(self.store.due_conversations(source, now), now=now)


class EvaluationProcess:
    """A second process that evaluates stored conversations while this one stores more.

    A backfill's time is nearly all Python: parsing and storing pages on one side, the
    SLA engine on the other. In one process they take turns on one core; here the second
    process opens the same database and evaluates the conversations it is given, reading
    their events back, so the two overlap. Everything it does goes through the store, in
    transactions, like any evaluation: an evaluation of events that an ingest has added
    to meanwhile is not saved (``Store.save_evaluations``), and if the process dies, the
    conversations it did not finish stay dirty for the next evaluation.
    """

    def __init__(self, config: Config, url: str) -> None:
        """Start the process (in the background) on the database at ``url``."""
        # spawn: a fork of this process would copy the locks its threads hold.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(config, url),
        )
        self._pool.submit(_ready)
        self.given = 0
        """Conversations given to the process so far."""

    async def evaluate_keys(self, keys: Sequence[ConversationKey], *, now: datetime) -> int:
        """Run :meth:`Evaluator.evaluate_keys` there; return the clock state changes saved.

        Raises:
            StorageError: the store failed there.
            concurrent.futures.process.BrokenProcessPool: the process died or could not
                start (its store could not be opened).
        """
        loop = asyncio.get_running_loop()
        self.given += len(keys)
        return await loop.run_in_executor(self._pool, _evaluate_keys, list(keys), now)

    def close(self) -> None:
        """Stop the process once it has finished what it was asked."""
        self._pool.shutdown(wait=True, cancel_futures=True)


_worker: Evaluator | None = None
"""The evaluator of an :class:`EvaluationProcess`, in that process."""


def _start_worker(config: Config, url: str) -> None:
    """Open the store and the evaluator of an :class:`EvaluationProcess`."""
    global _worker
    # Ctrl-C reaches the whole process group; the parent stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_collector()
    _worker = Evaluator(config, Store.open(url, upgrade=False))


def _evaluate_keys(keys: list[ConversationKey], now: datetime) -> int:
    """:meth:`Evaluator.evaluate_keys` in an :class:`EvaluationProcess`."""
    if _worker is None:
        raise RuntimeError("the evaluation process has no store")
    return len(_worker.evaluate_keys(keys, now=now))


def _ready() -> None:
    """Nothing: asked once at start, so the process starts before it is needed."""
