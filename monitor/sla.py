"""Provides the pure SLA engine: a conversation's events, the policies, calendars and now -> clocks.

Implements the SLA specification (SLA.md); each choice where it is silent is in docs/sla.md.
No I/O, no wall clock, no database: ``now`` and the source's ``watermark`` are inputs,
so the same events always give the same clocks, whatever order they arrived in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from monitor.calendars import Calendar, Interval, normalize
from monitor.config import PolicyConfig
from monitor.durations import format_duration
from monitor.events import (
    KIND_ORDER,
    SOLVED_STATUSES,
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Metric,
    Priority,
    Status,
    require_utc,
)

# Timestamps before this are garbage from a source (a zero date); they are ignored so
# that a business calendar never walks two thousand years of days.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_RANK = dict(KIND_ORDER)  # a plain dict: the sort key looks it up per event
_METRIC_RANK = {Metric.FIRST_RESPONSE: 0, Metric.NEXT_RESPONSE: 1, Metric.RESOLUTION: 2}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MICROSECOND = timedelta(microseconds=1)
_NOTHING = timedelta(0)
_MAX_NAME = 60
# The replay loop compares enums per event; a module global is several times cheaper
# than an enum class attribute, and this runs for every touched conversation.
_MESSAGE, _STATUS, _UPDATE, _DISMISSED = (
    EventKind.MESSAGE, EventKind.STATUS, EventKind.UPDATE, EventKind.DISMISSED
)
_CUSTOMER, _BOT = Actor.CUSTOMER, Actor.BOT
_RUNNING, _AT_RISK, _PAUSED, _OVERDUE, _BREACHED, _MET, _CANCELLED = (
    ClockState.RUNNING, ClockState.AT_RISK, ClockState.PAUSED, ClockState.OVERDUE,
    ClockState.BREACHED, ClockState.MET, ClockState.CANCELLED,
)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of :func:`evaluate` for one conversation."""

    conversation: Conversation
    policy: str | None
    """The name of the policy in force now; None: no policy applies (no clock runs)."""
    clocks: tuple[Clock, ...]


class _Note(NamedTuple):
    """An event that touched a clock without stopping it: a bot reply, a note, a reopening."""

    what: str
    at: datetime
    how: str = ""
    stopped_how: str = ""
    stopped_at: datetime | None = None


@dataclass(slots=True)
class _Run:
    """One clock while the history is replayed (mutable, private to this module)."""

    metric: Metric
    cycle: int
    start: Event
    start_index: int
    running: bool = True
    cancelled: bool = False
    stop: Event | None = None
    stop_index: int = -1
    stop_how: str = ""
    policy: PolicyConfig | None = None
    """The policy in force at the last stop."""
    priority: Priority | None = None
    """The conversation's priority at the last stop."""
    stopped_by: str | None = None
    """The author of the message that made the last stop (None: a status or dismissal)."""
    assignee: str | None = None
    """The conversation's assignee at the last stop."""
    gaps: list[Interval] = field(default_factory=list)
    """Resolution only: solved spans that a reopening closed; they are not counted."""
    notes: list[_Note] = field(default_factory=list)
    """Events that touched the clock without stopping it."""


@dataclass(slots=True)
class _Replay:
    """Everything the history says, as of its last event."""

    conversation: Conversation
    policy: PolicyConfig | None
    runs: list[_Run]
    statuses: list[tuple[datetime, Status]]
    priorities: list[tuple[int, datetime, Priority | None, Priority | None]]
    """(event index, when, old priority, new priority) for every priority change."""


def fold(events: Iterable[Event], source: str = "", conversation: str = "") -> Conversation:
    """Return a conversation's attributes: the fold of its events in time order (SLA.md §1)."""
    folded = _replay(_history(events, None), (), "").conversation
    if not source and not conversation:
        return folded
    return replace(folded, source=source or folded.source, id=conversation or folded.id)


def select_policy(
    conversation: Conversation, source_kind: str, policies: Sequence[PolicyConfig]
) -> PolicyConfig | None:
    """The first policy, in config order, whose every given match list matches (SLA.md §3)."""
    return _select(
        policies,
        conversation.source,
        source_kind,
        conversation.channel,
        conversation.priority,
        conversation.group,
        conversation.tags,
    )


def evaluate(
    events: Iterable[Event],
    *,
    policies: Sequence[PolicyConfig],
    calendars: Mapping[str, Calendar],
    source_kind: str,
    now: datetime,
    watermark: datetime | None,
) -> Evaluation:
    """Compute a conversation's clocks as of ``now`` (SLA.md §2-§6, docs/sla.md).

    Args:
        events: the conversation's events, in any order, duplicates allowed; events
            after ``now`` are ignored.
        policies: the configured policies, in config order.
        calendars: every calendar a policy may name, ``24x7`` included
            (:func:`monitor.calendars.build_calendars`).
        source_kind: the kind of the conversation's source (``"zendesk"``), for matching.
        now: the instant of evaluation, aware.
        watermark: the instant up to which the source is known to be complete; a running
            clock past due is ``breached`` only once the watermark passed its ``due_at``,
            ``overdue`` before. None: nothing is confirmed yet.

    Returns:
        The folded conversation, the name of the policy in force now, and the clocks
        ordered first_response, next_response by cycle, resolution.

    Raises:
        ValueError: ``now`` or ``watermark`` is naive, or a policy names a calendar
            that is not in ``calendars``.
    """
    now = require_utc(now, "now")
    if watermark is not None:
        watermark = require_utc(watermark, "watermark")
    replay = _replay(_history(events, now), policies, source_kind)
    clocks = []
    for run in replay.runs:
        clock = _clock(run, replay, calendars, now, watermark)
        if clock is not None:
            clocks.append(clock)
    clocks.sort(key=lambda c: (_METRIC_RANK[c.metric], c.cycle))
    return Evaluation(
        conversation=replay.conversation,
        policy=None if replay.policy is None else replay.policy.name,
        clocks=tuple(clocks),
    )


def _sort_key(event: Event) -> tuple[datetime, int, str]:
    return (event.at, _KIND_RANK[event.kind], event.id)


def _history(events: Iterable[Event], now: datetime | None) -> list[Event]:
    """Events in SLA.md §1 order, each id once (the earliest), none after ``now``."""
    ordered = sorted(
        (e for e in events if e.at >= _EARLIEST and (now is None or e.at <= now)), key=_sort_key
    )
    seen: set[str] = set()
    history = []
    for event in ordered:
        if event.id not in seen:
            seen.add(event.id)
            history.append(event)
    return history


def _select(
    policies: Sequence[PolicyConfig],
    source: str,
    kind: str,
    channel: str | None,
    priority: Priority | None,
    group: str | None,
    tags: Sequence[str],
) -> PolicyConfig | None:
    for policy in policies:
        match = policy.match
        if match.sources and source not in match.sources:
            continue
        if match.kinds and kind not in match.kinds:
            continue
        if match.channels and channel not in match.channels:
            continue
        if match.priorities and priority not in match.priorities:
            continue
        if match.groups and group not in match.groups:
            continue
        if match.tags and not any(tag in match.tags for tag in tags):
            continue
        return policy
    return None


def _as_priority(value: Any) -> Priority | None:
    """A source's priority value; anything unknown reads as no priority."""
    if isinstance(value, str):
        try:
            return Priority(value.strip().lower())
        except ValueError:
            return None
    return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _as_tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        texts = (_as_text(item) for item in value)
        return tuple(dict.fromkeys(text for text in texts if text))
    return ()


def _replay(
    history: list[Event], policies: Sequence[PolicyConfig], source_kind: str
) -> _Replay:
    """Walk the ordered history once: fold the attributes and move the clocks."""
    source = history[0].source if history else ""
    conversation_id = history[0].conversation if history else ""
    # Only the dismissal that no later undo took back counts; earlier ones never happened.
    last_undo = -1
    for index, event in enumerate(history):
        if event.kind is _UPDATE and event.fields.get("dismissed") is False:
            last_undo = index
    dismissal_index = next(
        (i for i in range(last_undo + 1, len(history))
         if history[i].kind is _DISMISSED),
        -1,
    )

    status: Status | None = None
    priority: Priority | None = None
    assignee: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    channel: str | None = None
    url: str | None = None
    customer: str | None = None
    first_customer: str | None = None
    subject: str | None = None

    policy: PolicyConfig | None = None
    policy_stale = True

    def current_policy() -> PolicyConfig | None:
        nonlocal policy, policy_stale
        if policy_stale:
            policy = _select(policies, source, source_kind, channel, priority, group, tags)
            policy_stale = False
        return policy

    runs: list[_Run] = []
    statuses: list[tuple[datetime, Status]] = []
    priorities: list[tuple[int, datetime, Priority | None, Priority | None]] = []
    # None: no public message counted yet; True: the team spoke last (or solved it).
    answered: bool | None = None
    response: _Run | None = None  # the running first_response or next_response clock
    resolution: _Run | None = None
    cycle = 0
    frozen = False  # past the dismissal, no clock moves

    def stop(run: _Run, event: Event, index: int, how: str) -> None:
        run.running = False
        run.stop, run.stop_index, run.stop_how = event, index, how
        run.policy, run.priority = current_policy(), priority
        run.stopped_by = (event.author or None) if event.kind is _MESSAGE else None
        run.assignee = assignee

    for index, event in enumerate(history):
        kind = event.kind
        if event.channel and channel is None:
            channel, policy_stale = event.channel, True
        if event.url and url is None:
            url = event.url
        if kind is _MESSAGE:
            actor = event.actor
            if actor is _CUSTOMER and first_customer is None and event.author:
                first_customer = event.author
            if frozen:
                continue
            if not event.public:
                if actor is not _CUSTOMER and response is not None:
                    response.notes.append(_Note("note", event.at))
                continue
            if actor is _CUSTOMER:
                if answered is None:
                    response = _Run(Metric.FIRST_RESPONSE, 0, event, index)
                    runs.append(response)
                elif answered:
                    cycle += 1
                    response = _Run(Metric.NEXT_RESPONSE, cycle, event, index)
                    runs.append(response)
                answered = False
                if resolution is None:
                    resolution = _Run(Metric.RESOLUTION, 0, event, index)
                    runs.append(resolution)
                elif not resolution.running:
                    _reopen(resolution, event, "customer message")
                continue
            if actor is _BOT:
                active = current_policy()
                if active is None or not active.count_bots:
                    if response is not None:
                        response.notes.append(_Note("bot", event.at))
                    continue
            answered = True
            if response is not None:
                who = "bot reply" if actor is _BOT else "agent reply"
                name = _clean(event.author)
                stop(response, event, index, f"{who} ({name})" if name else who)
                response = None
        elif kind is _STATUS:
            assert event.status is not None
            status = event.status
            statuses.append((event.at, status))
            if frozen:
                continue
            if status in SOLVED_STATUSES:
                if response is not None:
                    stop(response, event, index, f"status {status}")
                    response = None
                if answered is False:
                    answered = True
                if resolution is not None and resolution.running:
                    stop(resolution, event, index, f"status {status}")
            elif resolution is not None and not resolution.running:
                _reopen(resolution, event, f"status {status}")
        elif kind is _UPDATE:
            fields = event.fields
            if "priority" in fields:
                new_priority = _as_priority(fields["priority"])
                if new_priority != priority:
                    priorities.append((index, event.at, priority, new_priority))
                    priority, policy_stale = new_priority, True
            if "group" in fields:
                group, policy_stale = _as_text(fields["group"]), True
            if "tags" in fields:
                tags, policy_stale = _as_tags(fields["tags"]), True
            if "assignee" in fields:
                assignee = _as_text(fields["assignee"])
            if "subject" in fields:
                subject = _as_text(fields["subject"])
            if "customer" in fields:
                customer = _as_text(fields["customer"])
        elif index == dismissal_index:
            who = _clean(event.author) or _clean(_as_text(event.fields.get("by")))
            why = _clean(_as_text(event.fields.get("reason")) or event.text)
            how = "dismissed" + (f" by {who}" if who else "") + (f" ({why})" if why else "")
            for run in (response, resolution):
                if run is not None and run.running:
                    stop(run, event, index, how)
                    run.cancelled = True
            frozen = True

    conversation = Conversation(
        source=source,
        id=conversation_id,
        status=status,
        priority=priority,
        assignee=assignee,
        group=group,
        tags=tags,
        channel=channel,
        url=url,
        customer=customer if customer is not None else first_customer,
        subject=subject,
        dismissed=dismissal_index >= 0,
    )
    return _Replay(conversation, current_policy(), runs, statuses, priorities)


def _reopen(run: _Run, event: Event, how: str) -> None:
    assert run.stop is not None
    run.gaps.append((run.stop.at, event.at))
    run.notes.append(_Note("reopen", event.at, how, run.stop_how, run.stop.at))
    run.running = True


def _clock(
    run: _Run,
    replay: _Replay,
    calendars: Mapping[str, Calendar],
    now: datetime,
    watermark: datetime | None,
) -> Clock | None:
    """Turn a replayed run into a clock, or None when no policy or target covers it."""
    running = run.running
    metric = run.metric
    policy = replay.policy if running else run.policy
    if policy is None:
        return None
    priority = replay.conversation.priority if running else run.priority
    target = policy.target_seconds(metric, priority)
    if target is None:
        return None
    calendar = calendars.get(policy.calendar)
    if calendar is None:
        raise ValueError(
            f"policy {policy.name!r} names calendar {policy.calendar!r}, which was not given"
        )
    start = run.start.at
    end = now if running or run.stop is None else run.stop.at
    pausing = policy.pause.get(metric, ())
    pauses = _pauses(replay.statuses, pausing, start, end) if pausing else []
    excluded = normalize([(a, b) for a, b, _ in pauses] + run.gaps) if pauses or run.gaps else []
    counted = calendar.counted(start, end, excluded)
    target_span = timedelta(0, target)
    # A clock already past its target stays due (and breached) through a later pause.
    paused_now = running and replay.conversation.status in pausing and counted < target_span
    due_at: datetime | None = None
    at_risk_at: datetime | None = None
    if not paused_now:
        at_risk_at, due_at = calendar.add_each(
            start, (timedelta(0, target * policy.warn_at), target_span), excluded
        )

    if run.cancelled:
        state = _CANCELLED
    elif due_at is None or at_risk_at is None:
        state = _PAUSED
    elif not running:
        state = _MET if end <= due_at else _BREACHED
    elif now >= due_at:
        confirmed = watermark is not None and watermark > due_at
        state = _BREACHED if confirmed else _OVERDUE
    elif now >= at_risk_at:
        state = _AT_RISK
    else:
        state = _RUNNING

    reasons = _Reasons(calendar.timezone, start)
    reasons.add(f"started by customer message at {reasons.when(start)}")
    if not calendar.always and (opening := calendar.next_opening(start)) != start:
        reasons.add(f"counted from next opening {reasons.when(opening, day=True)} (closed)")
    # Events that touched the clock without stopping it are told in time order.
    timed = [(note.at, reasons.note(note)) for note in run.notes]
    if replay.priorities and isinstance(getattr(policy, metric.value), dict):
        # Priority changes up to the stop (or now) re-target a clock; later ones cannot.
        last_index = run.stop_index if not running else len(replay.priorities) + (1 << 40)
        for index, at, old, new in replay.priorities:
            if run.start_index < index < last_index and policy.target_seconds(
                metric, old
            ) != policy.target_seconds(metric, new):
                timed.append((at, f"due moved: priority {new or 'none'} at {reasons.when(at)}"))
    if timed:
        timed.sort(key=_first)
        for _, text in timed:
            reasons.add(text)
    paused = _NOTHING
    if pauses:
        by_status: dict[Status, timedelta] = {}
        for pause_start, pause_end, pause_status in pauses:
            span = calendar.counted(pause_start, pause_end, ())
            by_status[pause_status] = by_status.get(pause_status, _NOTHING) + span
            paused += span
        for pause_status, span in by_status.items():
            if span:
                reasons.add(f"paused {format_duration(span.total_seconds())} in {pause_status}")
    reasons.outcome(run, state, end, counted - target_span, due_at, watermark, pauses)

    return Clock(
        source=run.start.source,
        conversation=run.start.conversation,
        policy=policy.name,
        metric=metric,
        cycle=run.cycle,
        state=state,
        started_at=start,
        due_at=due_at,
        stopped_at=None if running else end,
        target_seconds=target,
        elapsed_seconds=_whole_seconds(counted),
        paused_seconds=_whole_seconds(paused),
        priority=priority,
        at_risk_at=at_risk_at,
        reasons=reasons.items(),
        stopped_by=None if running else run.stopped_by,
        assignee=replay.conversation.assignee if running else run.assignee,
    )


def _first(item: tuple[datetime, str]) -> datetime:
    return item[0]


def _pauses(
    statuses: list[tuple[datetime, Status]],
    pausing: Sequence[Status],
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime, Status]]:
    """The spans of ``[start, end)`` spent in a pausing status, in time order."""
    spans: list[tuple[datetime, datetime, Status]] = []
    current: Status | None = None
    since = start
    for at, status in statuses:
        if at >= end:
            break
        if current in pausing and at > since:
            assert current is not None
            spans.append((max(since, start), at, current))
        current, since = status, at
    if current in pausing and end > max(since, start):
        assert current is not None
        spans.append((max(since, start), end, current))
    return [span for span in spans if span[1] > start]


def _whole_seconds(span: timedelta) -> int:
    """Exact seconds rounded half up, for display; decisions use the exact values."""
    return (span // _MICROSECOND + 500_000) // 1_000_000


def _clean(text: str | None) -> str:
    """Untrusted text made fit for a one-line reason: no control characters, bounded."""
    if not text:
        return ""
    if len(text) <= _MAX_NAME and text.isprintable():
        return text.strip()
    kept = "".join(
        ch if not unicodedata.category(ch).startswith(("C", "Z")) else " "
        for ch in text[: _MAX_NAME * 4]
    )
    words = " ".join(kept.split())
    return words if len(words) <= _MAX_NAME else words[: _MAX_NAME - 1] + "…"


class _Reasons:
    """Collects a clock's reasons, printing times in the calendar's wall clock."""

    __slots__ = ("_items", "_ref", "_zone")

    def __init__(self, zone: tzinfo, start: datetime) -> None:
        self._zone = zone
        self._ref = (start if zone is UTC else start.astimezone(zone)).toordinal()
        self._items: list[str] = []

    def add(self, text: str) -> None:
        self._items.append(text)

    def items(self) -> tuple[str, ...]:
        return tuple(self._items)

    def when(self, instant: datetime, *, day: bool = False, seconds: bool = False) -> str:
        """``09:12``; ``Mon 09:00`` on another day of the week; the date further off."""
        local = instant if self._zone is UTC else instant.astimezone(self._zone)
        if seconds or local.second or local.microsecond:
            text = "%02d:%02d:%02d" % (local.hour, local.minute, local.second)  # noqa: UP031
        else:
            text = "%02d:%02d" % (local.hour, local.minute)  # noqa: UP031
        offset = local.toordinal() - self._ref
        if offset == 0 and not day:
            return text
        if 0 <= offset < 7:
            return f"{_WEEKDAYS[local.weekday()]} {text}"
        return f"{local.date().isoformat()} {text}"

    def note(self, note: _Note) -> str:
        """The sentence for an event that touched the clock without stopping it."""
        if note.what == "bot":
            return f"bot reply at {self.when(note.at)} does not count (count_bots = false)"
        if note.what == "note":
            return f"internal note at {self.when(note.at)} does not stop the clock"
        stopped = "" if note.stopped_at is None else f" at {self.when(note.stopped_at)}"
        return (
            f"stopped by {note.stopped_how}{stopped}, reopened by {note.how} at "
            f"{self.when(note.at)} (time in between not counted)"
        )

    def outcome(
        self,
        run: _Run,
        state: ClockState,
        end: datetime,
        over: timedelta,
        due_at: datetime | None,
        watermark: datetime | None,
        pauses: list[tuple[datetime, datetime, Status]],
    ) -> None:
        """Say how the clock ended, or why it is where it is now."""
        if state is ClockState.CANCELLED:
            past_due = ""
            if over > _NOTHING:
                past_due = f", {format_duration(over.total_seconds())} past due"
            self.add(f"cancelled: {run.stop_how} at {self.when(end)}{past_due}")
            return
        if not run.running:
            self.add(f"stopped by {run.stop_how} at {self.when(end)}")
        if state is ClockState.PAUSED:
            since = pauses[-1][0] if pauses else end
            self.add(f"paused in {pauses[-1][2] if pauses else 'a pausing status'} since "
                     f"{self.when(since)}: no due time while paused")
        elif state is ClockState.OVERDUE:
            seen = ("no watermark from the source yet" if watermark is None
                    else f"source seen up to {self.when(watermark, seconds=True)}")
            self.add(f"breach not yet confirmed: {seen}")
        elif state is ClockState.BREACHED and due_at is not None:
            excess = f", {format_duration(over.total_seconds())} over target" if over else ""
            self.add(f"breached: due {self.when(due_at)}{excess}")
