"""Tests for monitor.sla: one table row per rule of SLA.md and docs/sla.md, the worked example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.calendars import Calendar
from monitor.config import CalendarConfig, HolidaysConfig, MatchConfig, PolicyConfig
from monitor.events import (
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Metric,
    Priority,
    Status,
)
from monitor.sla import Evaluation, evaluate, fold, select_policy

NEW_YORK = ZoneInfo("America/New_York")
OFFICE = Calendar.from_config(
    "office",
    CalendarConfig(
        timezone="America/New_York",
        hours={"mon-fri": "09:00-12:30, 13:30-18:00"},
        holidays=HolidaysConfig(country="US"),
    ),
)
CALENDARS: Mapping[str, Calendar] = {"24x7": Calendar.always_open(), "office": OFFICE}

Row = tuple[Any, ...]


def at(when: str, zone: tzinfo = UTC) -> datetime:
    """``"09:12"`` on Monday 2026-11-23, or ``"25 09:12"`` on that day of November 2026."""
    day, _, clock = when.rpartition(" ")
    whole, _, fraction = clock.partition(".")
    hour, minute, second = ([int(p) for p in whole.split(":")] + [0])[:3]
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    local = datetime(2026, 11, int(day) if day else 23, hour, minute, second, micro, tzinfo=zone)
    return local.astimezone(UTC)


def build(*rows: Row, zone: tzinfo = UTC) -> list[Event]:
    """Events from short rows: ``(when, what, detail)``; ids are ``e1``, ``e2``... in row order.

    ``what`` is customer / agent / bot (detail: author), note (an agent's internal note),
    status (detail: the status), update (detail: fields), dismissed (detail: fields,
    author ``lead``) or undo.
    """
    made = []
    for number, (when, what, *rest) in enumerate(rows, start=1):
        detail: Any = rest[0] if rest else None
        common: dict[str, Any] = {
            "source": "desk",
            "conversation": "4711",
            "id": f"e{number}",
            "at": at(when, zone),
        }
        if what in ("customer", "agent", "bot"):
            made.append(Event(**common, kind=EventKind.MESSAGE, actor=Actor(what), author=detail))
        elif what == "note":
            made.append(Event(**common, kind=EventKind.MESSAGE, actor=Actor.AGENT, public=False))
        elif what == "status":
            made.append(Event(**common, kind=EventKind.STATUS, status=Status(detail)))
        elif what == "update":
            made.append(Event(**common, kind=EventKind.UPDATE, fields=detail))
        elif what == "dismissed":
            made.append(Event(**common, kind=EventKind.DISMISSED, author="lead",
                              fields=detail or {}))
        elif what == "undo":
            made.append(Event(**common, kind=EventKind.UPDATE, fields={"dismissed": False}))
        else:
            raise AssertionError(f"unknown row kind {what!r}")
    return made


def policy(**settings: Any) -> PolicyConfig:
    """A 24x7 policy: first response 10m, next response 20m, resolution 1h, unless overridden."""
    base: dict[str, Any] = {
        "name": "p",
        "first_response": "10m",
        "next_response": "20m",
        "resolution": "1h",
    }
    return PolicyConfig.model_validate(base | settings)


def brief(clock: Clock) -> str:
    """``first_response met 300/600`` (+ ``paused N``): what a lead reads off the board."""
    name = f"{clock.metric}#{clock.cycle}" if clock.metric is Metric.NEXT_RESPONSE else clock.metric
    text = f"{name} {clock.state} {clock.elapsed_seconds}/{clock.target_seconds}"
    return text + (f" paused {clock.paused_seconds}" if clock.paused_seconds else "")


def run(
    events: list[Event],
    now: str,
    *,
    policies: tuple[PolicyConfig, ...] = (),
    watermark: str | None = "now",
    zone: tzinfo = UTC,
) -> Evaluation:
    """Evaluate with the default policy; the watermark is ``now`` unless given."""
    instant = at(now, zone)
    mark = instant if watermark == "now" else (None if watermark is None else at(watermark, zone))
    return evaluate(
        events,
        policies=policies or (policy(),),
        calendars=CALENDARS,
        source_kind="zendesk",
        now=instant,
        watermark=mark,
    )


@dataclass(frozen=True)
class Case:
    """One rule: events, the evaluation instant, the clocks a lead should see."""

    id: str
    rows: tuple[Row, ...]
    now: str
    expected: tuple[str, ...]
    policies: tuple[PolicyConfig, ...] = ()
    watermark: str | None = "now"
    reason: str | None = None
    """A sentence that must be among the reasons of some clock."""
    extra: Mapping[str, Any] = field(default_factory=dict)


RULES = [
    # --- first response (SLA.md §2) ---
    Case(
        "first-response-starts-at-customer-stops-at-agent",
        (("09:00", "customer"), ("09:05", "agent", "kim"), ("09:08", "agent", "kim")),
        "09:30",
        ("first_response met 300/600", "resolution running 1800/3600"),
        reason="stopped by agent reply (kim) at 09:05",
    ),
    Case(
        "first-response-not-applied-to-outbound",
        (("09:00", "agent"), ("09:10", "customer"), ("09:15", "agent")),
        "09:20",
        ("next_response#1 met 300/1200", "resolution running 600/3600"),
    ),
    Case(
        "bot-reply-does-not-stop-by-default",
        (("09:00", "customer"), ("09:03", "bot"), ("09:08", "agent")),
        "09:08",
        ("first_response met 480/600", "resolution running 480/3600"),
        reason="bot reply at 09:03 does not count (count_bots = false)",
    ),
    Case(
        "bot-reply-stops-with-count-bots",
        (("09:00", "customer"), ("09:03", "bot", "helper"), ("09:08", "agent")),
        "09:08",
        ("first_response met 180/600", "resolution running 480/3600"),
        policies=(policy(count_bots=True),),
        reason="stopped by bot reply (helper) at 09:03",
    ),
    Case(
        "bot-first-is-not-outbound-by-default",
        (("09:00", "bot"), ("09:01", "customer"), ("09:03", "agent")),
        "09:03",
        ("first_response met 120/600", "resolution running 120/3600"),
    ),
    Case(
        "internal-note-does-not-stop",
        (("09:00", "customer"), ("09:04", "note"), ("09:12", "agent")),
        "09:12",
        ("first_response breached 720/600", "resolution running 720/3600"),
        reason="internal note at 09:04 does not stop the clock",
    ),
    # --- next response ---
    Case(
        "next-response-cycles-and-follow-ups",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:10", "customer"),
            ("09:12", "customer"), ("09:20", "agent"), ("09:30", "customer"),
        ),
        "09:40",
        (
            "first_response met 300/600",
            "next_response#1 met 600/1200",
            "next_response#2 running 600/1200",
            "resolution running 2400/3600",
        ),
    ),
    Case(
        "customer-follow-ups-start-nothing",
        (("09:00", "customer"), ("09:02", "customer"), ("09:04", "customer")),
        "09:06",
        ("first_response running 360/600", "resolution running 360/3600"),
    ),
    Case(
        "internal-note-does-not-answer",
        (("09:00", "customer"), ("09:02", "agent"), ("09:04", "customer"), ("09:06", "note")),
        "09:10",
        (
            "first_response met 120/600",
            "next_response#1 running 360/1200",
            "resolution running 600/3600",
        ),
    ),
    # --- resolution ---
    Case(
        "resolution-stops-when-solved",
        (("09:00", "customer"), ("09:05", "agent"), ("09:40", "status", "solved")),
        "10:00",
        ("first_response met 300/600", "resolution met 2400/3600"),
        reason="stopped by status solved at 09:40",
    ),
    Case(
        "closed-after-solved-keeps-the-stop",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:40", "status", "solved"),
            ("10:40", "status", "closed"),
        ),
        "11:00",
        ("first_response met 300/600", "resolution met 2400/3600"),
    ),
    Case(
        "resolution-reopened-by-customer-resumes-same-clock",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:20", "status", "solved"),
            ("10:00", "customer"),
        ),
        "10:10",
        (
            "first_response met 300/600",
            "next_response#1 running 600/1200",
            "resolution running 1800/3600",
        ),
        reason=(
            "stopped by status solved at 09:20, reopened by customer message at 10:00 "
            "(time in between not counted)"
        ),
    ),
    Case(
        "resolution-reopened-by-status",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:20", "status", "solved"),
            ("10:00", "status", "open"),
        ),
        "10:10",
        ("first_response met 300/600", "resolution running 1800/3600"),
    ),
    Case(
        "reopened-resolution-compares-total-with-target",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:40", "status", "solved"),
            ("10:00", "customer"), ("10:05", "agent"), ("10:30", "status", "solved"),
        ),
        "11:00",
        (
            "first_response met 300/600",
            "next_response#1 met 300/1200",
            "resolution breached 4200/3600",
        ),
    ),
    # --- (D) solving fulfils response clocks ---
    Case(
        "solved-stops-a-running-response-clock",
        (("09:00", "customer"), ("09:05", "status", "solved")),
        "09:30",
        ("first_response met 300/600", "resolution met 300/3600"),
        reason="stopped by status solved at 09:05",
    ),
    Case(
        "customer-after-solve-starts-next-response",
        (("09:00", "customer"), ("09:05", "status", "solved"), ("09:30", "customer")),
        "09:35",
        (
            "first_response met 300/600",
            "next_response#1 running 300/1200",
            "resolution running 600/3600",
        ),
    ),
    # --- dismissal ---
    Case(
        "dismissal-cancels-running-clocks",
        (("09:00", "customer"), ("09:20", "dismissed", {"reason": "spam"})),
        "10:00",
        ("first_response cancelled 1200/600", "resolution cancelled 1200/3600"),
        reason="cancelled: dismissed by lead (spam) at 09:20, 10m past due",
    ),
    Case(
        "dismissal-keeps-stopped-clocks",
        (("09:00", "customer"), ("09:05", "agent"), ("09:20", "dismissed")),
        "10:00",
        ("first_response met 300/600", "resolution cancelled 1200/3600"),
        reason="cancelled: dismissed by lead at 09:20",
    ),
    Case(
        "undo-restores-clocks-as-if-never-dismissed",
        (("09:00", "customer"), ("09:05", "dismissed"), ("09:06", "undo")),
        "09:20",
        ("first_response breached 1200/600", "resolution running 1200/3600"),
    ),
    Case(
        "dismissed-conversation-starts-no-clock",
        (("09:00", "customer"), ("09:02", "agent"), ("09:05", "dismissed"), ("09:10", "customer")),
        "09:30",
        ("first_response met 120/600", "resolution cancelled 300/3600"),
    ),
    Case(
        "second-dismissal-after-undo-counts",
        (
            ("09:00", "customer"), ("09:02", "dismissed"), ("09:03", "undo"),
            ("09:30", "dismissed", {"reason": "duplicate"}),
        ),
        "10:00",
        ("first_response cancelled 1800/600", "resolution cancelled 1800/3600"),
        reason="cancelled: dismissed by lead (duplicate) at 09:30, 20m past due",
    ),
    # --- pausing ---
    Case(
        "resolution-pauses-in-pending",
        (
            ("09:00", "customer"), ("09:05", "agent"), ("09:10", "status", "pending"),
            ("09:40", "status", "open"),
        ),
        "10:00",
        ("first_response met 300/600", "resolution running 1800/3600 paused 1800"),
        reason="paused 30m in pending",
    ),
    Case(
        "currently-paused-has-no-due-time",
        (("09:00", "customer"), ("09:05", "agent"), ("09:10", "status", "on_hold")),
        "10:00",
        ("first_response met 300/600", "resolution paused 600/3600 paused 3000"),
        reason="paused in on_hold since 09:10: no due time while paused",
    ),
    Case(
        "response-metrics-do-not-pause-by-default",
        (("09:00", "customer"), ("09:01", "status", "pending")),
        "09:20",
        ("first_response breached 1200/600", "resolution paused 60/3600 paused 1140"),
    ),
    Case(
        "configured-pause-for-a-response-metric",
        (("09:00", "customer"), ("09:01", "status", "on_hold"), ("09:11", "status", "open")),
        "09:15",
        ("first_response running 300/600 paused 600", "resolution running 900/3600"),
        policies=(policy(pause={"first_response": ["on_hold"]}),),
    ),
    Case(
        "pause-after-breach-stays-breached",
        (("09:00", "customer"), ("09:05", "agent"), ("10:30", "status", "pending")),
        "11:00",
        ("first_response met 300/600", "resolution breached 5400/3600 paused 1800"),
    ),
    # --- targets and priorities (SLA.md §3) ---
    Case(
        "stopped-clock-keeps-its-target",
        (("09:00", "customer"), ("09:07", "agent"), ("09:30", "update", {"priority": "urgent"})),
        "09:40",
        ("first_response met 420/600",),
        policies=(policy(first_response={"urgent": "5m", "normal": "10m"}, resolution=None),),
    ),
    Case(
        "priority-change-retargets-a-running-clock",
        (("09:00", "customer"), ("09:02", "update", {"priority": "urgent"})),
        "09:06",
        ("first_response overdue 360/300",),
        policies=(policy(first_response={"urgent": "5m", "normal": "10m"}, resolution=None),),
        watermark=None,
        reason="due moved: priority urgent at 09:02",
    ),
    Case(
        "no-priority-uses-the-default-priority",
        (("09:00", "customer"),),
        "09:01",
        ("first_response running 60/7200",),
        policies=(
            policy(first_response={"high": "2h", "low": "8h"}, default_priority="high",
                   next_response=None, resolution=None),
        ),
    ),
    Case(
        "no-target-for-the-priority-means-no-clock",
        (("09:00", "customer"), ("09:01", "update", {"priority": "low"})),
        "09:05",
        ("resolution running 300/3600",),
        policies=(policy(first_response={"urgent": "5m"}),),
    ),
    Case(
        "metric-without-target-has-no-clock",
        (("09:00", "customer"), ("09:05", "agent"), ("09:10", "customer")),
        "09:20",
        ("first_response met 300/600",),
        policies=(policy(next_response=None, resolution=None),),
    ),
    # --- policy in force ---
    Case(
        "first-matching-policy-in-config-order",
        (("09:00", "customer"), ("09:00", "update", {"tags": ["vip"]})),
        "09:01",
        ("first_response running 60/300",),
        policies=(
            policy(name="vip", match={"tags": ["vip", "gold"]}, first_response="5m",
                   next_response=None, resolution=None),
            policy(name="all", next_response=None, resolution=None),
        ),
        extra={"policy": "vip"},
    ),
    Case(
        "stopped-clock-keeps-the-policy-of-its-stop",
        (("09:00", "customer"), ("09:07", "agent"), ("09:30", "update", {"tags": ["vip"]})),
        "09:40",
        ("first_response met 420/600", "resolution running 2400/7200"),
        policies=(
            policy(name="vip", match={"tags": ["vip"]}, first_response="5m", resolution="2h"),
            policy(name="all"),
        ),
        extra={"policy": "vip", "first_response": "all", "resolution": "vip"},
    ),
    Case(
        "no-matching-policy-no-clocks",
        (("09:00", "customer"),),
        "09:30",
        (),
        policies=(policy(match={"kinds": ["mastodon"]}),),
        extra={"policy": None},
    ),
    Case(
        "policy-lost-later-keeps-stopped-clocks",
        (
            ("09:00", "update", {"group": "support"}), ("09:00", "customer"), ("09:05", "agent"),
            ("09:30", "update", {"group": "sales"}),
        ),
        "09:40",
        ("first_response met 300/600",),
        policies=(policy(match={"groups": ["support"]}),),
        extra={"policy": None},
    ),
    # --- states (SLA.md §5, §6) ---
    Case(
        "stop-exactly-at-due-is-met",
        (("09:00", "customer"), ("09:10", "agent")),
        "09:30",
        ("first_response met 600/600",),
        policies=(policy(resolution=None),),
    ),
    Case(
        "stop-one-second-late-is-breached",
        (("09:00", "customer"), ("09:10:01", "agent")),
        "09:30",
        ("first_response breached 601/600",),
        policies=(policy(resolution=None),),
        reason="breached: due 09:10, 1s over target",
    ),
    Case(
        "below-warn-at-is-running",
        (("09:00", "customer"),),
        "09:07:29",
        ("first_response running 449/600",),
        policies=(policy(resolution=None),),
    ),
    Case(
        "at-warn-at-is-at-risk",
        (("09:00", "customer"),),
        "09:07:30",
        ("first_response at_risk 450/600",),
        policies=(policy(resolution=None),),
    ),
    Case(
        "past-due-without-watermark-is-overdue",
        (("09:00", "customer"),),
        "09:12",
        ("first_response overdue 720/600",),
        policies=(policy(resolution=None),),
        watermark=None,
        reason="breach not yet confirmed: no watermark from the source yet",
    ),
    Case(
        "past-due-with-watermark-at-due-is-overdue",
        (("09:00", "customer"),),
        "09:12",
        ("first_response overdue 720/600",),
        policies=(policy(resolution=None),),
        watermark="09:10",
        reason="breach not yet confirmed: source seen up to 09:10:00",
    ),
    Case(
        "past-due-with-watermark-past-due-is-breached",
        (("09:00", "customer"),),
        "09:12",
        ("first_response breached 720/600",),
        policies=(policy(resolution=None),),
        watermark="09:10:01",
    ),
    # --- history hygiene (SLA.md §1) ---
    Case(
        "events-after-now-are-ignored",
        (("09:00", "customer"), ("09:20", "agent")),
        "09:15",
        ("first_response overdue 900/600",),
        policies=(policy(resolution=None),),
        watermark="09:10",
    ),
    Case(
        "elapsed-rounds-half-up",
        (("09:00", "customer"), ("09:00:00.5", "agent")),
        "09:01",
        ("first_response met 1/600",),
        policies=(policy(resolution=None),),
    ),
    Case(
        "elapsed-rounds-below-half-down",
        (("09:00", "customer"), ("09:00:00.499999", "agent")),
        "09:01",
        ("first_response met 0/600",),
        policies=(policy(resolution=None),),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in RULES])
def test_rule(case: Case) -> None:
    """Each rule of SLA.md (and each decision of docs/sla.md) gives the clocks a lead expects."""
    result = run(build(*case.rows), case.now, policies=case.policies, watermark=case.watermark)
    assert tuple(brief(c) for c in result.clocks) == case.expected
    if case.reason is not None:
        every = [r for c in result.clocks for r in c.reasons]
        assert case.reason in every
    if "policy" in case.extra:
        assert result.policy == case.extra["policy"]
    for clock in result.clocks:
        if str(clock.metric) in case.extra:
            assert clock.policy == case.extra[str(clock.metric)]


def test_arrival_order_does_not_matter() -> None:
    """Shuffled, reversed or duplicated delivery gives the same evaluation."""
    events = build(
        ("09:00", "customer"), ("09:00", "status", "open"), ("09:05", "agent"),
        ("09:10", "customer"), ("09:10", "update", {"priority": "high"}),
        ("09:40", "status", "pending"),
    )
    forward = run(events, "10:00")
    assert run(list(reversed(events)), "10:00") == forward
    assert run(events[3:] + events[:3] + events[1:2], "10:00") == forward


def test_duplicate_ids_are_counted_once() -> None:
    """An event delivered twice, even with a moved timestamp, counts once (the earliest)."""
    events = build(("09:00", "customer"), ("09:05", "agent"), ("09:10", "customer"),
                   ("09:20", "agent"))
    moved = replace(events[2], at=at("09:30"))
    result = run([*events, moved], "09:40")
    assert [brief(c) for c in result.clocks] == [
        "first_response met 300/600",
        "next_response#1 met 600/1200",
        "resolution running 2400/3600",
    ]


def test_due_and_at_risk_instants() -> None:
    """due_at is where counted time reaches the target, at_risk_at where it reaches warn_at."""
    result = run(build(("09:00", "customer"), ("09:10", "status", "pending"),
                       ("09:40", "status", "open")), "09:50")
    resolution = result.clocks[-1]
    assert resolution.metric is Metric.RESOLUTION
    assert resolution.due_at == at("10:30")  # 60m counted + 30m paused
    assert resolution.at_risk_at == at("10:15")
    assert resolution.stopped_at is None
    paused = run(build(("09:00", "customer"), ("09:10", "status", "pending")), "09:50")
    assert paused.clocks[-1].due_at is None
    assert paused.clocks[-1].at_risk_at is None
    assert paused.clocks[-1].state is ClockState.PAUSED


def test_dismissal_undo_gives_back_exactly_the_undismissed_result() -> None:
    """A dismissal followed by its undo leaves every clock as if it never happened."""
    base = [("09:00", "customer"), ("09:05", "agent"), ("09:30", "customer")]
    plain = run(build(*base), "10:00")
    undone = run(build(*base, ("09:35", "dismissed"), ("09:40", "undo")), "10:00")
    assert undone.clocks == plain.clocks
    assert not undone.conversation.dismissed


def test_business_hours_start_while_closed() -> None:
    """A clock started while closed counts from the next opening and says so."""
    office = policy(calendar="office", first_response="1h", next_response=None, resolution=None)
    events = build(("21 10:00", "customer"), zone=NEW_YORK)  # a Saturday
    result = run(events, "23 09:30", policies=(office,), zone=NEW_YORK)
    (clock,) = result.clocks
    assert brief(clock) == "first_response running 1800/3600"
    assert clock.due_at == at("23 10:00", NEW_YORK)
    assert "counted from next opening Mon 09:00 (closed)" in clock.reasons


# The worked example of docs/sla.md, "A week at the help desk". Times are New York
# wall-clock (EST, UTC-5) in November 2026; the days are the day of the month.
DESK = PolicyConfig.model_validate(
    {
        "name": "desk",
        "calendar": "office",
        "first_response": {"urgent": "15m", "high": "1h", "normal": "4h", "low": "8h"},
        "next_response": {"urgent": "30m", "high": "2h", "normal": "8h", "low": "1d"},
        "resolution": {"urgent": "4h", "high": "1d", "normal": "3d", "low": "5d"},
    }
)
WORKED_EXAMPLE = (
    ("20 17:30", "customer", "ana"),
    ("23 09:15", "update", {"priority": "high"}),
    ("23 09:20", "bot"),
    ("23 09:25", "agent", "kim"),
    ("23 10:00", "status", "pending"),
    ("24 11:00", "status", "open"),
    ("24 11:00", "customer", "ana"),
    ("24 13:45", "note"),
    ("24 14:10", "agent", "kim"),
    ("24 15:00", "status", "solved"),
    ("25 10:00", "customer", "ana"),
)


def test_worked_example_from_the_docs() -> None:
    """docs/sla.md's business-hours example, replayed: the same numbers to the second."""
    result = run(
        build(*WORKED_EXAMPLE, zone=NEW_YORK),
        "25 12:00:20",
        policies=(DESK,),
        watermark="25 11:59:50",
        zone=NEW_YORK,
    )
    first, next_1, next_2, resolution = result.clocks

    def local(when: str) -> datetime:
        return at(when, NEW_YORK)

    assert result.policy == "desk"
    assert result.conversation.priority is Priority.HIGH
    assert result.conversation.customer == "ana"

    assert (first.state, first.target_seconds, first.elapsed_seconds) == (
        ClockState.MET, 3600, 3300)
    assert (first.due_at, first.at_risk_at, first.stopped_at) == (
        local("23 09:30"), local("23 09:15"), local("23 09:25"))
    assert first.reasons == (
        "started by customer message at 17:30",
        "due moved: priority high at Mon 09:15",
        "bot reply at Mon 09:20 does not count (count_bots = false)",
        "stopped by agent reply (kim) at Mon 09:25",
    )

    assert (next_1.cycle, next_1.state, next_1.target_seconds, next_1.elapsed_seconds) == (
        1, ClockState.BREACHED, 7200, 7800)
    assert (next_1.due_at, next_1.at_risk_at, next_1.stopped_at) == (
        local("24 14:00"), local("24 12:30"), local("24 14:10"))
    assert next_1.reasons == (
        "started by customer message at 11:00",
        "internal note at 13:45 does not stop the clock",
        "stopped by agent reply (kim) at 14:10",
        "breached: due 14:00, 10m over target",
    )

    assert (next_2.cycle, next_2.state, next_2.elapsed_seconds) == (2, ClockState.OVERDUE, 7220)
    assert (next_2.due_at, next_2.at_risk_at) == (local("25 12:00"), local("25 11:30"))
    assert next_2.reasons == (
        "started by customer message at 10:00",
        "breach not yet confirmed: source seen up to 11:59:50",
    )

    assert (resolution.state, resolution.target_seconds) == (ClockState.RUNNING, 86400)
    assert (resolution.elapsed_seconds, resolution.paused_seconds) == (23420, 32400)
    assert (resolution.due_at, resolution.at_risk_at) == (local("30 14:30"), local("27 16:30"))
    assert resolution.reasons == (
        "started by customer message at 17:30",
        "due moved: priority high at Mon 09:15",
        "stopped by status solved at Tue 15:00, reopened by customer message at Wed 10:00 "
        "(time in between not counted)",
        "paused 9h in pending",
    )


@pytest.mark.parametrize(
    ("fields", "attribute", "value"),
    [
        pytest.param({"priority": "URGENT"}, "priority", Priority.URGENT, id="priority-any-case"),
        pytest.param({"priority": "critical"}, "priority", None, id="unknown-priority-is-none"),
        pytest.param({"priority": 5}, "priority", None, id="numeric-priority-is-none"),
        pytest.param({"tags": ["a", "a", 7, None, ""]}, "tags", ("a", "7"), id="tags-cleaned"),
        pytest.param({"tags": "vip"}, "tags", ("vip",), id="single-tag-string"),
        pytest.param({"tags": {"x": 1}}, "tags", (), id="tags-object-is-no-tags"),
        pytest.param({"group": 42}, "group", "42", id="numeric-group"),
        pytest.param({"assignee": ["kim"]}, "assignee", None, id="assignee-list-is-none"),
        pytest.param({"subject": "Where is my order?"}, "subject", "Where is my order?",
                     id="subject"),
        pytest.param({"customer": "ana@example.com"}, "customer", "ana@example.com",
                     id="customer-field-wins"),
    ],
)
def test_fold_reads_update_fields(fields: dict[str, Any], attribute: str, value: Any) -> None:
    """Update fields fold into attributes; odd values from a source never crash the fold."""
    events = build(("09:00", "customer", "someone"), ("09:01", "update", fields))
    assert getattr(fold(events), attribute) == value


def test_fold_attributes() -> None:
    """The fold takes status from status events, channel/url from the first event having one."""
    events = build(
        ("09:00", "customer", "ana"), ("09:01", "status", "open"),
        ("09:02", "update", {"priority": "low", "assignee": "kim", "group": "billing"}),
        ("09:03", "status", "pending"), ("09:04", "update", {"priority": "high"}),
    )
    events[1] = replace(events[1], channel="email", url="https://d.example/1")
    events[3] = replace(events[3], channel="web", url="https://d.example/2")
    conversation = fold(reversed(events))
    assert conversation == Conversation(
        source="desk", id="4711", status=Status.PENDING, priority=Priority.HIGH,
        assignee="kim", group="billing", channel="email", url="https://d.example/1",
        customer="ana",
    )
    assert fold(events, "other", "99").id == "99"
    assert fold([]) == Conversation(source="", id="")


@pytest.mark.parametrize(
    ("rows", "dismissed"),
    [
        pytest.param((("09:00", "dismissed"),), True, id="dismissed"),
        pytest.param((("09:00", "dismissed"), ("09:01", "undo")), False, id="undone"),
        pytest.param(
            (("09:00", "dismissed"), ("09:01", "undo"), ("09:02", "dismissed")), True,
            id="dismissed-again",
        ),
        pytest.param((("09:00", "undo"),), False, id="undo-alone"),
    ],
)
def test_fold_dismissed_is_the_last_word(rows: tuple[Row, ...], dismissed: bool) -> None:
    """A conversation is dismissed when a dismissal is the last word on it."""
    assert fold(build(*rows)).dismissed is dismissed


@pytest.mark.parametrize(
    ("match", "conversation", "matches"),
    [
        pytest.param({}, {}, True, id="empty-matches-all"),
        pytest.param({"sources": ["desk"]}, {}, True, id="source"),
        pytest.param({"sources": ["other"]}, {}, False, id="other-source"),
        pytest.param({"kinds": ["zendesk"]}, {}, True, id="kind"),
        pytest.param({"kinds": ["x"]}, {}, False, id="other-kind"),
        pytest.param({"channels": ["email"]}, {"channel": "email"}, True, id="channel"),
        pytest.param({"channels": ["email"]}, {}, False, id="no-channel"),
        pytest.param({"priorities": ["high"]}, {"priority": Priority.HIGH}, True, id="priority"),
        pytest.param({"priorities": ["normal"]}, {}, False, id="no-priority-matches-none"),
        pytest.param({"groups": ["billing"]}, {"group": "billing"}, True, id="group"),
        pytest.param({"tags": ["vip", "gold"]}, {"tags": ("x", "gold")}, True, id="any-tag"),
        pytest.param({"tags": ["vip"]}, {"tags": ("x",)}, False, id="no-tag"),
        pytest.param(
            {"kinds": ["zendesk"], "groups": ["billing"]}, {"group": "sales"}, False,
            id="every-list-must-match",
        ),
    ],
)
def test_select_policy(match: dict[str, Any], conversation: dict[str, Any], matches: bool) -> None:
    """A policy matches when every list it gives matches; tags match on any one."""
    chosen = policy(name="chosen", match=MatchConfig.model_validate(match))
    fallback = policy(name="fallback")
    found = select_policy(Conversation(source="desk", id="1", **conversation), "zendesk",
                          [chosen, fallback])
    assert found is not None
    assert found.name == ("chosen" if matches else "fallback")


HOSTILE = "\u202eevil\x00\x1b[31m" + "x" * 5000 + "\n\r\t😀"


def odd(kind: EventKind, **values: Any) -> Event:
    """An event as a careless or hostile source could send it, at 09:05."""
    return Event(source="s", conversation="c", id="h1", at=at("09:05"), kind=kind, **values)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            odd(EventKind.MESSAGE, actor=Actor.AGENT, author=HOSTILE, text=HOSTILE),
            id="hostile-author",
        ),
        pytest.param(
            odd(EventKind.DISMISSED, author=HOSTILE, text=HOSTILE,
                fields={"reason": {"nested": [1]}, "by": 3}),
            id="hostile-dismissal",
        ),
        pytest.param(
            odd(EventKind.UPDATE, fields={"priority": {"x": 1}, "tags": [[1]], "dismissed": "no",
                                          "group": None, HOSTILE: HOSTILE}),
            id="hostile-fields",
        ),
        pytest.param(
            replace(odd(EventKind.MESSAGE, actor=Actor.CUSTOMER), at=datetime(1, 1, 1, tzinfo=UTC)),
            id="year-one",
        ),
    ],
)
def test_untrusted_input_never_crashes(event: Event) -> None:
    """Whatever the public or a source wrote, evaluation completes and reasons stay one line."""
    office = policy(name="office", calendar="office")
    for policies in ((policy(),), (office,)):
        result = run([*build(("09:00", "customer")), event], "10:00", policies=policies)
        for clock in result.clocks:
            for reason in clock.reasons:
                assert reason.isprintable()
                assert len(reason) < 200


def test_evaluate_refuses_naive_now_and_unknown_calendar() -> None:
    """A naive now is a ValueError; so is a policy naming a calendar that was not given."""
    events = build(("09:00", "customer"))
    with pytest.raises(ValueError, match="no timezone"):
        evaluate(events, policies=[policy()], calendars=CALENDARS, source_kind="zendesk",
                 now=datetime(2026, 11, 23, 10), watermark=None)
    with pytest.raises(ValueError, match="calendar 'nowhere'"):
        evaluate(events, policies=[policy(calendar="nowhere")], calendars=CALENDARS,
                 source_kind="zendesk", now=at("10:00"), watermark=None)


def test_empty_history_has_no_clocks() -> None:
    """No events: no clocks, and the policy in force is still reported."""
    result = evaluate([], policies=[policy()], calendars=CALENDARS, source_kind="zendesk",
                      now=at("10:00"), watermark=None)
    assert result == Evaluation(Conversation(source="", id=""), "p", ())


def test_timestamps_in_reasons_use_the_calendar_clock() -> None:
    """Business-calendar reasons print New York time; a 24x7 policy prints UTC."""
    events = build(("23 10:00", "customer"), ("23 10:20", "agent", "kim"), zone=NEW_YORK)
    office = policy(calendar="office", next_response=None, resolution=None)
    in_office = run(events, "23 11:00", policies=(office,), zone=NEW_YORK).clocks[0]
    assert "stopped by agent reply (kim) at 10:20" in in_office.reasons
    in_utc = run(events, "23 11:00", zone=NEW_YORK).clocks[0]
    assert "stopped by agent reply (kim) at 15:20" in in_utc.reasons


def test_reasons_print_the_date_when_far_apart() -> None:
    """A clock stopped weeks later prints the date, not only a weekday."""
    events = build(("02 09:00", "customer"), ("23 09:00", "agent"))
    first = run(events, "23 10:00", policies=(policy(resolution=None),)).clocks[0]
    assert "stopped by agent reply at 2026-11-23 09:00" in first.reasons
    assert first.elapsed_seconds == 21 * 86400



SOCIAL = policy(name="social", first_response="6m", next_response=None, resolution=None)


@pytest.mark.parametrize(
    ("reply", "now", "watermark", "expected"),
    [
        pytest.param(None, "12:04:30", "12:04:30", "first_response at_risk 270/360",
                     id="at-risk-at-75-percent"),
        pytest.param("12:05:59", "12:10", "12:10", "first_response met 359/360", id="met"),
        pytest.param("12:06:01", "12:10", "12:10", "first_response breached 361/360",
                     id="breached-by-a-second"),
        pytest.param(None, "12:07", "12:05:40", "first_response overdue 420/360",
                     id="overdue-unconfirmed"),
        pytest.param(None, "12:07", "12:06:01", "first_response breached 420/360",
                     id="breach-confirmed"),
    ],
)
def test_social_worked_example(
    reply: str | None, now: str, watermark: str, expected: str
) -> None:
    """docs/sla.md's 24x7 mention example: 6 minutes, at risk at 4m30s, confirmed breaches."""
    rows: list[Row] = [("12:00", "customer")]
    if reply is not None:
        rows.append((reply, "agent"))
    (clock,) = run(build(*rows), now, policies=(SOCIAL,), watermark=watermark).clocks
    assert brief(clock) == expected
    assert (clock.due_at, clock.at_risk_at) == (at("12:06"), at("12:04:30"))


# --- who stopped a clock, and who held the conversation (the weekly report's agents) ---


def people(clock: Clock) -> str:
    """``first_response by kim held lee``: who stopped the clock, who was assigned then."""
    return f"{clock.metric} by {clock.stopped_by} held {clock.assignee}"


@pytest.mark.parametrize(
    ("rows", "now", "settings", "expected"),
    [
        pytest.param(
            (("09:00", "customer", "ana"), ("09:01", "update", {"assignee": "lee"}),
             ("09:05", "agent", "kim"), ("09:06", "update", {"assignee": "max"})),
            "09:30", {"resolution": None},
            ("first_response by kim held lee",),
            id="reply-author-and-assignee-at-the-stop",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
             ("09:02", "update", {"assignee": "max"})),
            "09:30", {},
            ("first_response by None held max", "resolution by None held max"),
            id="running-clock-holds-the-assignee-now",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
             ("09:05", "status", "solved"), ("09:06", "update", {"assignee": None})),
            "09:30", {},
            ("first_response by None held lee", "resolution by None held lee"),
            id="a-solve-stops-with-no-author",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:03", "bot", "helper"), ("09:08", "agent", "kim")),
            "09:30", {"count_bots": True, "resolution": None},
            ("first_response by helper held None",),
            id="a-counted-bot-is-the-author",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:03", "bot", "helper"), ("09:08", "agent", "kim")),
            "09:30", {"resolution": None},
            ("first_response by kim held None",),
            id="an-uncounted-bot-is-not",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:02", "note"), ("09:05", "agent")),
            "09:30", {"resolution": None},
            ("first_response by None held None",),
            id="a-reply-without-author",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
             ("09:20", "dismissed")),
            "09:30", {"resolution": None},
            ("first_response by None held lee",),
            id="a-dismissal-has-no-author",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
             ("09:05", "agent", "kim"), ("09:10", "customer"),
             ("09:11", "update", {"assignee": "max"}), ("09:15", "agent", "max")),
            "09:30", {"resolution": None},
            ("first_response by kim held lee", "next_response by max held max"),
            id="each-cycle-its-own-people",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
             ("09:05", "status", "solved"), ("09:10", "customer"),
             ("09:11", "update", {"assignee": "max"}), ("09:20", "status", "solved")),
            "09:30", {"first_response": None, "next_response": None},
            ("resolution by None held max",),
            id="reopened-resolution-keeps-the-last-stop",
        ),
        pytest.param(
            (("09:00", "customer"), ("09:01", "update", {"assignee": 42}),
             ("09:05", "agent", "")),
            "09:30", {"resolution": None},
            ("first_response by None held 42",),
            id="odd-values-never-crash",
        ),
    ],
)
def test_stopped_by_and_assignee(
    rows: tuple[Row, ...], now: str, settings: dict[str, Any], expected: tuple[str, ...]
) -> None:
    """stopped_by is the stopping message's author; assignee is the one at the stop (or now)."""
    result = run(build(*rows), now, policies=(policy(**settings),))
    assert tuple(people(clock) for clock in result.clocks) == expected


def test_clock_json_names_the_people() -> None:
    """explain's JSON carries stopped_by and assignee, so the report can be checked by hand."""
    events = build(("09:00", "customer"), ("09:01", "update", {"assignee": "lee"}),
                   ("09:05", "agent", "kim"))
    first = run(events, "09:30").clocks[0]
    data = first.to_json()
    assert (data["stopped_by"], data["assignee"]) == ("kim", "lee")
