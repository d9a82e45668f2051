"""Provides the evaluation step of the pipeline: stored events -> clocks -> transitions.

It reads a set of conversations' events from the store, runs the pure SLA engine on each
with its source's watermark, and saves the clocks (and any alert decisions) in one
transaction. Synchronous on purpose: the runner calls it in a worker thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from monitor.alerts import alert_context, decide
from monitor.calendars import Calendar, build_calendars
from monitor.config import Config
from monitor.events import Event, Transition
from monitor.sla import evaluate
from monitor.storage import ConversationKey, EvaluationRecord, OutboxItem, Store

Decide = Callable[[Sequence[Transition]], Sequence[OutboxItem]]

CHUNK = 2000


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
            events = (
                self.store.load_events(chunk)
                if fresh is None
                else self.store.complete_events(chunk, fresh)
            )
            records: list[EvaluationRecord] = []
            for key in chunk:
                source = key[0]
                if source not in watermarks:
                    watermarks[source] = self.store.source_state(source).watermark
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
        self, events: Iterable[Event], *, now: datetime, source: str | None = None
    ) -> list[Transition]:
        """:meth:`evaluate_dirty`, taking the events of ingests still in memory as read.

        ``events`` are what a chain of ingests stored (``IngestResult.events``): their
        conversations are evaluated without reading back what is in memory, then every
        other dirty conversation (of ``source``) as by :meth:`evaluate_dirty`.
        """
        fresh: dict[ConversationKey, list[Event]] = defaultdict(list)
        for event in events:
            fresh[(event.source, event.conversation)].append(event)
        transitions = self.evaluate_keys(sorted(fresh), now=now, fresh=fresh)
        return transitions + self.evaluate_dirty(now=now, source=source)

    def evaluate_due(self, source: str, *, now: datetime) -> list[Transition]:
        """Evaluate the conversations whose clocks reach a warning or deadline by ``now``."""
        return self.evaluate_keys(self.store.due_conversations(source, now), now=now)
