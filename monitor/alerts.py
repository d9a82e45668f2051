"""Provides the alert decisions: clock transitions and source health in, outbox items out.

Pure: no I/O, no wall clock; ``now`` is a parameter. What the functions decide:

- ``decide``: one alert per transition, never one per poll (edge-triggered). A clock
  going ``at_risk`` or ``breached`` (a confirmed breach still waiting for its reply)
  is alerted; a breached clock that stops, or a clock answered after its deadline
  before the breach was confirmed, is a ``recovered`` alert saying how late the reply
  was. A clock seen for the first time already stopped is history (a backfill) and is
  not alerted. ``overdue`` is never alerted: a breach is confirmed first (SLA.md §6).
- ``decide_source``: ``source_down`` when a source starts failing, ``source_up`` when
  it answers again, both keyed by the start of the failing run.
- ``due_repeats``: the time-driven part. A breach still open ``repeat_every`` after
  its first alert was delivered to a target is repeated there (the n-th repeat once);
  one still open ``escalate_after`` after it was decided for a target goes once to its
  ``escalate_to``. No repeat is decided while the target is in its quiet hours.

Every item carries an idempotency key per alert and target, so deciding twice (a
re-evaluation after a crash, the periodic repeat check) queues nothing twice: the
outbox drops a key it already holds. A target's ``on``, ``sources``, ``policies`` and
``priorities`` filter what it gets; source alerts have no policy or priority, so only
``on`` and ``sources`` apply to them. An escalation is routed by the escalating
target's filters, not the receiving target's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from monitor.config import AlertTargetConfig, QuietHoursConfig
from monitor.events import (
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Transition,
    format_instant,
    require_utc,
)
from monitor.notifiers.base import URGENCY, AlertItem, AlertKind
from monitor.storage import OutboxItem

SNIPPET_STORED_CHARS = 1000
"""Longest customer text kept in an outbox payload; notifiers show far less."""

SourceAlertKind = Literal["source_down", "source_up"]


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What an alert says about a conversation besides its clock (public text, raw)."""

    customer: str | None = None
    subject: str | None = None
    snippet: str | None = None
    url: str | None = None
    assignee: str | None = None
    channel: str | None = None
    priority: str | None = None


NO_CONTEXT = AlertContext()


@dataclass(frozen=True, slots=True)
class OpenBreach:
    """A confirmed breach still waiting for its reply, with its conversation's context."""

    clock: Clock
    context: AlertContext = NO_CONTEXT


@dataclass(frozen=True, slots=True)
class SentAlert:
    """What the outbox knows of an alert already decided: when, and whether it went out."""

    created_at: datetime
    delivered: bool


def alert_context(conversation: Conversation | None, events: Sequence[Event]) -> AlertContext:
    """Return the context of a conversation: its folded attributes and last customer text.

    The snippet is the text of the latest public customer message, kept raw (notifiers
    make it inert) but bounded to ``SNIPPET_STORED_CHARS``.
    """
    snippet = None
    for event in reversed(events):
        if (
            event.kind is EventKind.MESSAGE
            and event.actor is Actor.CUSTOMER
            and event.public
            and event.text
        ):
            snippet = event.text[:SNIPPET_STORED_CHARS]
            break
    if conversation is None:
        return AlertContext(snippet=snippet)
    return AlertContext(
        customer=conversation.customer,
        subject=conversation.subject,
        snippet=snippet,
        url=conversation.url,
        assignee=conversation.assignee,
        channel=conversation.channel,
        priority=None if conversation.priority is None else str(conversation.priority),
    )


def alert_kind(transition: Transition) -> AlertKind | None:
    """Return the alert a transition makes, or None (see the module docstring)."""
    clock, previous = transition.clock, transition.previous
    if clock.state is ClockState.AT_RISK:
        return "at_risk" if previous is not ClockState.AT_RISK else None
    if clock.state is not ClockState.BREACHED:
        return None
    if clock.stopped_at is None:
        return "breached" if previous is not ClockState.BREACHED else None
    # Seen for the first time already stopped late: a backfill's history, not news.
    return None if previous is None else "recovered"


def alert_key(target: str, *parts: str | int) -> str:
    """Return the idempotency key of one alert for one target.

    JSON, so that no id containing a separator can make two alerts share a key.
    """
    return json.dumps([target, *parts], ensure_ascii=False, separators=(",", ":"))


def clock_alert_key(target: str, clock: Clock, kind: AlertKind, *extra: str | int) -> str:
    """Return the key of a clock's alert of ``kind`` for ``target`` (``extra``: repeats)."""
    return alert_key(
        target, clock.source, clock.conversation, str(clock.metric), clock.cycle, kind, *extra
    )


def late_seconds(clock: Clock) -> int:
    """Counted time past the target: how late a breach is (or the reply was)."""
    return max(0, clock.elapsed_seconds - clock.target_seconds)


def clock_item(
    kind: AlertKind,
    clock: Clock,
    context: AlertContext,
    *,
    at: datetime,
    repeat: int = 0,
    late: int | None = None,
    escalated_from: str | None = None,
) -> AlertItem:
    """Return the alert item of a clock; ``late`` overrides the clock's counted lateness."""
    return AlertItem(
        kind=kind,
        at=at,
        source=clock.source,
        conversation=clock.conversation,
        metric=str(clock.metric),
        policy=clock.policy,
        priority=str(clock.priority) if clock.priority is not None else context.priority,
        state=str(clock.state),
        customer=context.customer,
        subject=context.subject,
        snippet=context.snippet,
        url=context.url,
        assignee=context.assignee or clock.assignee,
        channel=context.channel,
        due_at=clock.due_at,
        late_seconds=None if kind == "at_risk" else (late_seconds(clock) if late is None else late),
        repeat=repeat,
        escalated_from=escalated_from,
        target_seconds=clock.target_seconds,
    )


def wants(target: AlertTargetConfig, item: AlertItem) -> bool:
    """Whether ``target`` asked for ``item``: its kind, source, policy and priority filters."""
    if item.kind == "test":
        return True
    if item.kind not in target.on:
        return False
    if target.sources and item.source not in target.sources:
        return False
    if item.kind in ("source_down", "source_up"):
        return True
    if target.policies and item.policy not in target.policies:
        return False
    return not target.priorities or item.priority in {str(p) for p in target.priorities}


def _outbox_item(key: str, target: str, item: AlertItem, now: datetime) -> OutboxItem:
    return OutboxItem(
        key=key, target=target, kind=item.kind, payload=item.to_json(), created_at=now
    )


def decide(
    transitions: Iterable[Transition],
    contexts: Mapping[tuple[str, str], AlertContext],
    targets: Sequence[AlertTargetConfig],
    *,
    now: datetime,
) -> list[OutboxItem]:
    """Return the outbox items of these transitions: one per alert and target that wants it.

    ``contexts`` maps ``(source, conversation)`` to what the alert says about the
    conversation (a missing one says nothing). Items are created at ``now``.
    """
    now = require_utc(now, "now")
    items: list[OutboxItem] = []
    for transition in transitions:
        kind = alert_kind(transition)
        if kind is None:
            continue
        clock = transition.clock
        context = contexts.get((clock.source, clock.conversation), NO_CONTEXT)
        item = clock_item(kind, clock, context, at=transition.at)
        for target in targets:
            if wants(target, item):
                items.append(
                    _outbox_item(clock_alert_key(target.name, clock, kind), target.name, item, now)
                )
    return items


def decide_source(
    kind: SourceAlertKind,
    source: str,
    *,
    failing_since: datetime,
    error: str | None,
    targets: Sequence[AlertTargetConfig],
    now: datetime,
) -> list[OutboxItem]:
    """Return the items saying a source went down or came back.

    ``failing_since`` (the start of the failing run) keys both, so a run of failures
    makes one ``source_down`` and its end one ``source_up``, however often it is decided.
    """
    now = require_utc(now, "now")
    episode = format_instant(require_utc(failing_since, "failing_since")) or ""
    item = AlertItem(kind=kind, at=now, source=source, error=error)
    return [
        _outbox_item(alert_key(target.name, source, kind, episode), target.name, item, now)
        for target in targets
        if wants(target, item)
    ]


def in_quiet_hours(quiet: QuietHoursConfig | None, now: datetime) -> bool:
    """Whether ``now`` falls in the quiet hours (local wall clock of their timezone)."""
    if quiet is None:
        return False
    local = require_utc(now, "now").astimezone(ZoneInfo(quiet.timezone))
    minute = local.hour * 60 + local.minute
    start, end = quiet.minutes()
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def due_repeats(
    open_breaches: Iterable[OpenBreach],
    sent: Mapping[str, SentAlert],
    targets: Sequence[AlertTargetConfig],
    *,
    now: datetime,
) -> list[OutboxItem]:
    """Return the repeats and escalations due at ``now`` for breaches still open.

    ``sent`` maps the key of each target's first ``breached`` alert of a clock (see
    :func:`clock_alert_key`) to what the outbox knows of it; a breach with no first
    alert for a target is neither repeated nor escalated there. Only the latest repeat
    due is returned (after a long stop, one reminder, not a burst); a repeat's lateness
    is the wall time since ``due_at``, as the stored clock is not re-evaluated meanwhile.
    Items already queued come back with the same key, and the outbox drops them.
    """
    now = require_utc(now, "now")
    by_name = {target.name: target for target in targets}
    items: list[OutboxItem] = []
    for breach in open_breaches:
        clock = breach.clock
        if clock.state is not ClockState.BREACHED or clock.stopped_at is not None:
            continue
        late = None
        if clock.due_at is not None:
            late = max(late_seconds(clock), int((now - clock.due_at).total_seconds()))
        for target in targets:
            first = sent.get(clock_alert_key(target.name, clock, "breached"))
            if first is None:
                continue
            age = (now - first.created_at).total_seconds()
            every = target.repeat_every
            if every and first.delivered and not in_quiet_hours(target.quiet_hours, now):
                count = int(age // every)
                if count >= 1:
                    item = clock_item(
                        "breached", clock, breach.context, at=now, repeat=count, late=late
                    )
                    key = clock_alert_key(target.name, clock, "breached", "repeat", count)
                    items.append(_outbox_item(key, target.name, item, now))
            escalate_to = target.escalate_to
            if (
                escalate_to in by_name
                and target.escalate_after is not None
                and age >= target.escalate_after
            ):
                item = clock_item(
                    "breached", clock, breach.context, at=now, late=late, escalated_from=target.name
                )
                key = clock_alert_key(escalate_to, clock, "breached", "escalated_from", target.name)
                items.append(_outbox_item(key, escalate_to, item, now))
    return items


def first_alert_keys(
    open_breaches: Iterable[OpenBreach], targets: Sequence[AlertTargetConfig]
) -> list[str]:
    """Return the first-alert keys :func:`due_repeats` needs to know about."""
    timed = [t for t in targets if t.repeat_every or t.escalate_to]
    return [
        clock_alert_key(target.name, breach.clock, "breached")
        for breach in open_breaches
        for target in timed
    ]


def order_items(items: Iterable[AlertItem]) -> list[AlertItem]:
    """Order a message's items: most urgent kind first, then the longest overdue first.

    Kinds follow ``notifiers.base.URGENCY`` (the order of the summary line too); within
    a kind, the latest first, then the soonest due (at risk), then by time and name.
    """

    def rank(item: AlertItem) -> tuple[int, int, bool, datetime, datetime, str, str]:
        return (
            URGENCY.index(item.kind),
            -(item.late_seconds or 0),
            item.due_at is None,
            item.due_at or item.at,
            item.at,
            item.source,
            item.conversation or "",
        )

    return sorted(items, key=rank)


def message_key(target: str, item_keys: Iterable[str]) -> str:
    """Return the idempotency key of a message: the same items always give the same key."""
    digest = hashlib.sha256()
    digest.update(target.encode("utf-8", "replace"))
    for key in sorted(item_keys):
        digest.update(b"\x00" + key.encode("utf-8", "replace"))
    return f"rw-{digest.hexdigest()[:40]}"
