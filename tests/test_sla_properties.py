"""Hypothesis properties of monitor.sla: what must hold for any history, not just the examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.calendars import Calendar
from monitor.config import CalendarConfig, HolidaysConfig, PolicyConfig
from monitor.events import Actor, Clock, ClockState, Event, EventKind, Metric, Status
from monitor.sla import Evaluation, evaluate

# A Friday: histories run over a weekend and New York's 2026-03-08 clock change.
BASE = datetime(2026, 3, 6, 12, tzinfo=UTC)
SPAN_MINUTES = 4 * 24 * 60
CALENDARS = {
    "24x7": Calendar.always_open(),
    "office": Calendar.from_config(
        "office",
        CalendarConfig(
            timezone="America/New_York",
            hours={"mon-fri": "09:00-12:30, 13:30-18:00", "sun": "01:30-03:30"},
            holidays=HolidaysConfig(dates=("2026-03-09",)),
        ),
    ),
}
TARGETS: dict[str, Any] = {
    "first_response": {"urgent": "5m", "high": "30m", "normal": "2h"},
    "next_response": {"urgent": "10m", "high": "1h", "normal": "3h", "low": "1d"},
    "resolution": {"urgent": "1h", "high": "4h", "normal": "1d", "low": "2d"},
}
POLICY_SETS = [
    (PolicyConfig.model_validate({"name": "social", **TARGETS}),),
    (PolicyConfig.model_validate({"name": "desk", "calendar": "office", **TARGETS}),),
    (
        PolicyConfig.model_validate(
            {"name": "vip", "match": {"tags": ["vip"]}, "calendar": "office", "count_bots": True,
             "pause": {"resolution": ["pending"], "next_response": ["on_hold"]}, **TARGETS}
        ),
        PolicyConfig.model_validate({"name": "rest", **TARGETS}),
    ),
]
REOPENING = frozenset({Status.NEW, Status.OPEN, Status.PENDING, Status.ON_HOLD})


@dataclass(frozen=True)
class Spec:
    """What one generated event is, before it gets an id and a time."""

    kind: EventKind
    actor: Actor | None = None
    public: bool | None = None
    status: Status | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def make(self, number: int, at: datetime) -> Event:
        """The event, with id ``e<number>``."""
        return Event(source="desk", conversation="1", id=f"e{number}", at=at, kind=self.kind,
                     actor=self.actor, public=self.public, status=self.status,
                     fields=dict(self.fields), author="someone")


messages = st.builds(Spec, kind=st.just(EventKind.MESSAGE), actor=st.sampled_from(list(Actor)),
                     public=st.sampled_from([True, True, True, False]))
statuses = st.builds(Spec, kind=st.just(EventKind.STATUS), status=st.sampled_from(list(Status)))
updates = st.builds(
    Spec,
    kind=st.just(EventKind.UPDATE),
    fields=st.one_of(
        st.sampled_from(["urgent", "high", "normal", "low", None]).map(
            lambda p: (("priority", p),)
        ),
        st.sampled_from([("vip",), ("other",), ()]).map(lambda t: (("tags", list(t)),)),
    ),
)
dismissals = st.just(Spec(kind=EventKind.DISMISSED))
undos = st.just(Spec(kind=EventKind.UPDATE, fields=(("dismissed", False),)))
specs = st.one_of(messages, messages, messages, statuses, updates, dismissals, undos)
later_specs = st.one_of(messages, statuses, updates, updates, dismissals)  # no undo: see below


@st.composite
def histories(draw: st.DrawFn, size: int = 12) -> list[Event]:
    """A conversation's events at minute offsets within four days (ties allowed)."""
    chosen = draw(st.lists(specs, min_size=1, max_size=size))
    minutes = draw(st.lists(st.integers(0, SPAN_MINUTES), min_size=len(chosen),
                            max_size=len(chosen)))
    return [spec.make(n, BASE + timedelta(minutes=m))
            for n, (spec, m) in enumerate(zip(chosen, minutes, strict=True))]


def run(events: Sequence[Event], policies: tuple[PolicyConfig, ...], now: datetime,
        watermark: datetime | None) -> Evaluation:
    """Evaluate against the module's calendars, as a zendesk source."""
    return evaluate(events, policies=policies, calendars=CALENDARS, source_kind="zendesk",
                    now=now, watermark=watermark)


def calendar_of(clock: Clock, policies: tuple[PolicyConfig, ...]) -> Calendar:
    """The calendar of the clock's policy."""
    return CALENDARS[next(p.calendar for p in policies if p.name == clock.policy)]


def whole(span: timedelta) -> int:
    """Seconds rounded half up, as the engine rounds them."""
    return (span // timedelta(microseconds=1) + 500_000) // 1_000_000


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[Event], tuple[PolicyConfig, ...], datetime, datetime | None]:
    """A history, a policy set, an evaluation instant after it and a watermark."""
    events = draw(histories())
    policies = draw(st.sampled_from(POLICY_SETS))
    now = max(e.at for e in events) + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    watermark = draw(st.one_of(
        st.none(), st.integers(0, 6 * 60).map(lambda m: now - timedelta(minutes=m))
    ))
    return events, policies, now, watermark


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_arrival_order_never_changes_the_result(
    scenario: tuple[list[Event], tuple[PolicyConfig, ...], datetime, datetime | None],
    data: st.DataObject,
) -> None:
    """Any permutation of the events, with re-delivered duplicates, gives the same evaluation."""
    events, policies, now, watermark = scenario
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=3))
    assert run([*shuffled, *repeats], policies, now, watermark) == run(
        events, policies, now, watermark
    )


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios())
def test_clock_invariants(
    scenario: tuple[list[Event], tuple[PolicyConfig, ...], datetime, datetime | None],
) -> None:
    """Counted time fits in wall and open time; due_at is open; breach needs the watermark."""
    events, policies, now, watermark = scenario
    for clock in run(events, policies, now, watermark).clocks:
        calendar = calendar_of(clock, policies)
        end = clock.stopped_at or now
        # Counted time never exceeds wall time, nor the calendar's open time.
        assert clock.elapsed_seconds + clock.paused_seconds <= whole(end - clock.started_at) + 1
        assert clock.elapsed_seconds <= whole(
            timedelta(seconds=calendar.counted_seconds(clock.started_at, end))
        )
        # due_at and at_risk_at are open instants (or a closing), and in order.
        for instant in (clock.due_at, clock.at_risk_at):
            if instant is not None:
                assert calendar.is_open(instant) or calendar.is_open(
                    instant - timedelta(microseconds=1)
                )
        if clock.due_at is not None and clock.at_risk_at is not None:
            assert clock.started_at <= clock.at_risk_at <= clock.due_at
        # Paused is exactly "running with no due time".
        assert (clock.state is ClockState.PAUSED) == (clock.due_at is None)
        if clock.stopped_at is None:
            assert clock.due_at is None or clock.state is not ClockState.MET
            if clock.state is ClockState.BREACHED:
                assert watermark is not None
                assert clock.due_at is not None
                assert watermark > clock.due_at
            if clock.due_at is not None and now >= clock.due_at:
                assert clock.state in (ClockState.BREACHED, ClockState.OVERDUE)
        else:
            assert clock.state in (ClockState.MET, ClockState.BREACHED, ClockState.CANCELLED)


@settings(max_examples=150, deadline=None)
@given(
    scenario=scenarios(),
    later=st.lists(st.tuples(later_specs, st.integers(1, 2 * 24 * 60)), min_size=1, max_size=6),
)
def test_events_after_a_stop_never_move_a_stopped_clock(
    scenario: tuple[list[Event], tuple[PolicyConfig, ...], datetime, datetime | None],
    later: list[tuple[Spec, int]],
) -> None:
    """Appending later events keeps every stopped clock as it was.

    Resolution is the one clock that reopens by design (a customer message or a status
    back to new/open/pending/on_hold), and an undo revives cancelled clocks by design,
    so appended histories here contain no undo and resolution is checked only when
    nothing reopens it.
    """
    events, policies, _, watermark = scenario
    last = max(e.at for e in events)
    before = run(events, policies, last, watermark)
    appended = [spec.make(len(events) + n, last + timedelta(minutes=m))
                for n, (spec, m) in enumerate(later, start=1)]
    after = run([*events, *appended], policies, max(e.at for e in appended), watermark)
    reopens = any(
        (e.kind is EventKind.MESSAGE and e.actor is Actor.CUSTOMER and e.public)
        or (e.kind is EventKind.STATUS and e.status in REOPENING)
        for e in appended
    )
    after_by_key = {clock.key: clock for clock in after.clocks}
    for clock in before.clocks:
        if clock.stopped_at is None or (clock.metric is Metric.RESOLUTION and reopens):
            continue
        assert after_by_key.get(clock.key) == clock
