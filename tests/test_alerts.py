"""Tests of the pure alert decisions: edges, filters, keys, payloads, repeats, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerts import (
    SNIPPET_STORED_CHARS,
    AlertContext,
    OpenBreach,
    SentAlert,
    alert_context,
    alert_kind,
    clock_alert_key,
    decide,
    decide_source,
    due_repeats,
    first_alert_keys,
    in_quiet_hours,
    message_key,
    order_items,
)
from monitor.config import AlertTargetConfig, QuietHoursConfig
from monitor.events import (
    Actor,
    Clock,
    ClockState,
    Conversation,
    Event,
    EventKind,
    Metric,
    Priority,
    Transition,
)
from monitor.notifiers import AlertItem

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DUE = T0 + timedelta(hours=1)
SOURCE = "desk"

S = ClockState


def clock(
    state: ClockState = S.RUNNING,
    *,
    conversation: str = "4711",
    stopped_at: datetime | None = None,
    elapsed: int = 3000,
    metric: Metric = Metric.FIRST_RESPONSE,
    policy: str = "desk",
    priority: Priority | None = Priority.HIGH,
    source: str = SOURCE,
    due_at: datetime | None = DUE,
) -> Clock:
    """A one-hour clock of conversation 4711 started at T0."""
    return Clock(
        source=source, conversation=conversation, policy=policy, metric=metric, cycle=0,
        state=state, started_at=T0, due_at=due_at, stopped_at=stopped_at,
        target_seconds=3600, elapsed_seconds=elapsed, paused_seconds=0, priority=priority,
        at_risk_at=T0 + timedelta(minutes=45),
    )


def target(name: str = "chat", **settings: Any) -> AlertTargetConfig:
    """A Slack target with these settings."""
    return AlertTargetConfig.model_validate(
        {"name": name, "kind": "slack", "url": "https://hooks.slack.test/x", **settings}
    )


def items_of(payloads: list[Any]) -> list[AlertItem]:
    """Decode outbox payloads back into alert items."""
    return [AlertItem.from_json(payload) for payload in payloads]


# -- which transitions alert ----------------------------------------------------------------


STOP = DUE + timedelta(minutes=7)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        pytest.param(None, clock(S.RUNNING), None, id="new-running"),
        pytest.param(S.RUNNING, clock(S.AT_RISK), "at_risk", id="running-to-at-risk"),
        pytest.param(None, clock(S.AT_RISK), "at_risk", id="new-clock-already-at-risk"),
        pytest.param(S.PAUSED, clock(S.AT_RISK), "at_risk", id="resumed-at-risk"),
        pytest.param(S.AT_RISK, clock(S.AT_RISK), None, id="still-at-risk"),
        pytest.param(S.AT_RISK, clock(S.OVERDUE), None, id="overdue-is-not-confirmed"),
        pytest.param(S.OVERDUE, clock(S.BREACHED), "breached", id="breach-confirmed"),
        pytest.param(None, clock(S.BREACHED), "breached", id="new-clock-open-breach"),
        pytest.param(S.BREACHED, clock(S.BREACHED), None, id="breach-still-open"),
        pytest.param(S.BREACHED, clock(S.BREACHED, stopped_at=STOP), "recovered",
                     id="breach-answered"),
        pytest.param(S.OVERDUE, clock(S.BREACHED, stopped_at=STOP), "recovered",
                     id="answered-late-before-confirmation"),
        pytest.param(None, clock(S.BREACHED, stopped_at=STOP), None, id="history-not-news"),
        pytest.param(S.AT_RISK, clock(S.MET, stopped_at=DUE), None, id="met-in-time"),
        pytest.param(S.OVERDUE, clock(S.MET, stopped_at=DUE), None, id="overdue-then-met"),
        pytest.param(S.RUNNING, clock(S.CANCELLED, stopped_at=DUE), None, id="dismissed"),
    ],
)
def test_alert_kind_is_edge_triggered(
    previous: ClockState | None, current: Clock, expected: str | None
) -> None:
    """Only a transition into at risk, a confirmed breach or a late reply makes an alert."""
    assert alert_kind(Transition(current, previous, T0)) == expected


# -- filters ---------------------------------------------------------------------------------


BREACH = Transition(clock(S.BREACHED, elapsed=3900), S.OVERDUE, DUE + timedelta(minutes=5))


@pytest.mark.parametrize(
    ("settings", "wanted"),
    [
        pytest.param({}, True, id="no-filter"),
        pytest.param({"on": ["at_risk"]}, False, id="other-events-only"),
        pytest.param({"on": ["breached"]}, True, id="breaches-only"),
        pytest.param({"sources": ["desk"]}, True, id="its-source"),
        pytest.param({"policies": ["social"]}, False, id="other-policy"),
        pytest.param({"policies": ["desk"]}, True, id="its-policy"),
        pytest.param({"priorities": ["urgent"]}, False, id="other-priority"),
        pytest.param({"priorities": ["urgent", "high"]}, True, id="its-priority"),
        pytest.param({"policies": ["desk"], "priorities": ["low"]}, False, id="all-must-match"),
    ],
)
def test_each_target_gets_what_its_filters_ask_for(settings: dict[str, Any], wanted: bool) -> None:
    """on, sources, policies and priorities all apply; an empty filter takes everything."""
    items = decide([BREACH], {}, [target(**settings)], now=BREACH.at)
    assert [item.target for item in items] == (["chat"] if wanted else [])


def test_a_target_filtered_on_another_source_gets_nothing() -> None:
    """A target of another source is not told about this one's clocks."""
    other = AlertTargetConfig.model_validate(
        {"name": "social", "kind": "slack", "url": "https://x.test/y", "sources": ["social"]}
    )
    assert decide([BREACH], {}, [other], now=BREACH.at) == []


def test_a_filter_on_priority_leaves_out_clocks_with_none() -> None:
    """A clock with no priority does not match a target that names priorities."""
    untagged = Transition(clock(S.AT_RISK, priority=None), S.RUNNING, T0)
    assert decide([untagged], {}, [target(priorities=["high"])], now=T0) == []
    assert len(decide([untagged], {}, [target()], now=T0)) == 1


# -- keys and payloads -----------------------------------------------------------------------


def test_deciding_twice_gives_the_same_keys() -> None:
    """A re-evaluation after a crash decides the same keys, so the outbox drops them."""
    targets = [target("a"), target("b")]
    first = decide([BREACH], {}, targets, now=BREACH.at)
    again = decide([BREACH], {}, targets, now=BREACH.at + timedelta(seconds=30))
    assert [item.key for item in first] == [item.key for item in again]
    assert len({item.key for item in first}) == 2


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param('a","b', "a", id="quote-in-id"),
        pytest.param("a|first_response|0", "a", id="separator-in-id"),
        pytest.param("4711", "4712", id="plain-ids"),
    ],
)
def test_keys_of_different_conversations_never_collide(one: str, other: str) -> None:
    """Ids holding separators or quotes cannot make two alerts share a key."""
    keys = {
        clock_alert_key("chat", clock(S.BREACHED, conversation=one), "breached"),
        clock_alert_key("chat", clock(S.BREACHED, conversation=other), "breached"),
    }
    assert len(keys) == 2


def test_the_payload_says_who_where_which_promise_how_late_and_links() -> None:
    """The stored item carries the conversation's context and the clock's promise."""
    context = AlertContext(customer="Casey", subject="Parcel", snippet="where is it?",
                           url="https://desk.test/4711", assignee="kim", channel="email",
                           priority="high")
    [item] = decide([BREACH], {(SOURCE, "4711"): context}, [target()], now=BREACH.at)
    assert (item.target, item.kind, item.created_at) == ("chat", "breached", BREACH.at)
    assert AlertItem.from_json(item.payload) == AlertItem(
        kind="breached", at=BREACH.at, source=SOURCE, conversation="4711",
        metric="first_response", policy="desk", priority="high", state="breached",
        customer="Casey", subject="Parcel", snippet="where is it?",
        url="https://desk.test/4711", assignee="kim", channel="email", due_at=DUE,
        late_seconds=300, target_seconds=3600,
    )


def test_a_recovery_names_how_late_the_reply_was() -> None:
    """The recovered alert's late_seconds is the counted time past the target at the reply."""
    answered = clock(S.BREACHED, stopped_at=STOP, elapsed=3600 + 420)
    [item] = decide([Transition(answered, S.BREACHED, STOP)], {}, [target()], now=STOP)
    decoded = AlertItem.from_json(item.payload)
    assert (decoded.kind, decoded.late_seconds) == ("recovered", 420)
    assert item.key != clock_alert_key("chat", answered, "breached")


def test_at_risk_has_a_due_time_and_no_lateness() -> None:
    """An at-risk alert says when it is due, not how late."""
    [item] = decide([Transition(clock(S.AT_RISK), S.RUNNING, T0)], {}, [target()], now=T0)
    decoded = AlertItem.from_json(item.payload)
    assert (decoded.kind, decoded.due_at, decoded.late_seconds) == ("at_risk", DUE, None)


def message_event(event_id: str, actor: Actor, text: str, *, public: bool = True,
                  minutes: int = 0) -> Event:
    """A message of conversation 4711."""
    return Event(source=SOURCE, conversation="4711", id=event_id,
                 at=T0 + timedelta(minutes=minutes), kind=EventKind.MESSAGE, actor=actor,
                 public=public, text=text)


def test_the_snippet_is_the_last_public_customer_message() -> None:
    """Agent replies and internal notes are not the customer's words."""
    events = [
        message_event("1", Actor.CUSTOMER, "first question"),
        message_event("2", Actor.CUSTOMER, "second question", minutes=1),
        message_event("3", Actor.AGENT, "internal: ignore", public=False, minutes=2),
        message_event("4", Actor.AGENT, "we are on it", minutes=3),
    ]
    conversation = Conversation(source=SOURCE, id="4711", customer="Casey", subject="Parcel",
                                url="https://desk.test/4711", assignee="kim",
                                priority=Priority.URGENT)
    assert alert_context(conversation, events) == AlertContext(
        customer="Casey", subject="Parcel", snippet="second question",
        url="https://desk.test/4711", assignee="kim", priority="urgent",
    )
    assert alert_context(None, []) == AlertContext()


def test_hostile_customer_text_is_stored_raw_but_bounded() -> None:
    """Public text is kept as written (notifiers make it inert), never beyond the bound."""
    hostile = "<!channel> @everyone \x00 \u202e" + "x" * 5000
    context = alert_context(None, [message_event("1", Actor.CUSTOMER, hostile)])
    assert context.snippet == hostile[:SNIPPET_STORED_CHARS]
    [item] = decide([BREACH], {(SOURCE, "4711"): context}, [target()], now=BREACH.at)
    assert AlertItem.from_json(item.payload).snippet == hostile[:SNIPPET_STORED_CHARS]


# -- source health ---------------------------------------------------------------------------


def test_source_alerts_are_keyed_by_the_failing_run() -> None:
    """A run of failures makes one down and one up key; another run makes new ones."""
    since, later = T0, T0 + timedelta(hours=3)
    targets = [target("a"), target("b", on=["breached"]), target("c", sources=["social"])]
    down = decide_source("source_down", SOURCE, failing_since=since, error="HTTP 503",
                         targets=targets, now=since)
    again = decide_source("source_down", SOURCE, failing_since=since, error="timeout",
                          targets=targets, now=since + timedelta(minutes=5))
    up = decide_source("source_up", SOURCE, failing_since=since, error=None, targets=targets,
                       now=since + timedelta(minutes=9))
    next_run = decide_source("source_down", SOURCE, failing_since=later, error="HTTP 503",
                             targets=targets, now=later)
    assert [item.target for item in down] == ["a"]
    assert [item.key for item in again] == [item.key for item in down]
    assert len({down[0].key, up[0].key, next_run[0].key}) == 3
    decoded = AlertItem.from_json(down[0].payload)
    assert (decoded.kind, decoded.source, decoded.error) == ("source_down", SOURCE, "HTTP 503")


def test_policy_and_priority_filters_do_not_hide_source_alerts() -> None:
    """A source has no policy or priority: a target filtered on them still hears of it."""
    filtered = target(policies=["desk"], priorities=["urgent"])
    items = decide_source("source_down", SOURCE, failing_since=T0, error="x",
                          targets=[filtered], now=T0)
    assert len(items) == 1


# -- quiet hours -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "zone", "now", "quiet"),
    [
        pytest.param("22:00-07:00", "UTC", datetime(2026, 3, 2, 23, 30, tzinfo=UTC), True,
                     id="past-midnight-evening"),
        pytest.param("22:00-07:00", "UTC", datetime(2026, 3, 2, 6, 59, tzinfo=UTC), True,
                     id="past-midnight-morning"),
        pytest.param("22:00-07:00", "UTC", datetime(2026, 3, 2, 7, 0, tzinfo=UTC), False,
                     id="ends-at-its-end"),
        pytest.param("22:00-07:00", "UTC", datetime(2026, 3, 2, 12, 0, tzinfo=UTC), False,
                     id="daytime"),
        pytest.param("12:00-13:00", "UTC", datetime(2026, 3, 2, 12, 0, tzinfo=UTC), True,
                     id="same-day-start"),
        pytest.param("22:00-07:00", "America/New_York",
                     datetime(2026, 3, 3, 4, 0, tzinfo=UTC), True, id="local-23h"),
        pytest.param("22:00-07:00", "America/New_York",
                     datetime(2026, 3, 3, 1, 0, tzinfo=UTC), False, id="local-20h"),
        pytest.param("22:00-07:00", "America/New_York",
                     datetime(2026, 7, 1, 11, 30, tzinfo=UTC), False, id="summer-time-7h30"),
    ],
)
def test_quiet_hours_follow_the_local_wall_clock(
    hours: str, zone: str, now: datetime, quiet: bool
) -> None:
    """Quiet hours may run past midnight and follow their timezone's wall clock."""
    assert in_quiet_hours(QuietHoursConfig(hours=hours, timezone=zone), now) is quiet


def test_no_quiet_hours_is_never_quiet() -> None:
    """A target without quiet hours is always reachable."""
    assert in_quiet_hours(None, T0) is False


# -- repeats and escalation ------------------------------------------------------------------


OPEN = OpenBreach(clock(S.BREACHED, elapsed=3900), AlertContext(customer="Casey"))
FIRST_AT = DUE + timedelta(minutes=5)


def sent_to(*names: str, delivered: bool = True) -> dict[str, SentAlert]:
    """The outbox's record of the first breach alert of OPEN for these targets."""
    return {clock_alert_key(name, OPEN.clock, "breached"): SentAlert(FIRST_AT, delivered)
            for name in names}


@pytest.mark.parametrize(
    ("minutes", "repeat"),
    [
        pytest.param(29, None, id="before-the-first-repeat"),
        pytest.param(30, 1, id="first-repeat"),
        pytest.param(59, 1, id="still-first"),
        pytest.param(60, 2, id="second-repeat"),
        pytest.param(60 * 24, 48, id="after-a-long-stop-only-the-latest"),
    ],
)
def test_an_open_breach_repeats_every_interval(minutes: int, repeat: int | None) -> None:
    """Repeat n is due n intervals after the first alert; only the latest is decided."""
    now = FIRST_AT + timedelta(minutes=minutes)
    items = due_repeats([OPEN], sent_to("chat"), [target(repeat_every="30m")], now=now)
    if repeat is None:
        assert items == []
        return
    [item] = items
    decoded = AlertItem.from_json(item.payload)
    assert (decoded.kind, decoded.repeat, decoded.customer) == ("breached", repeat, "Casey")
    assert decoded.late_seconds == int((now - DUE).total_seconds())
    assert item.key == clock_alert_key("chat", OPEN.clock, "breached", "repeat", repeat)


@pytest.mark.parametrize(
    ("breach", "sent", "settings"),
    [
        pytest.param(OPEN, sent_to("chat", delivered=False), {"repeat_every": "30m"},
                     id="first-alert-not-delivered-yet"),
        pytest.param(OPEN, {}, {"repeat_every": "30m"}, id="target-never-got-it"),
        pytest.param(OPEN, sent_to("chat"), {}, id="no-repeat-configured"),
        pytest.param(OpenBreach(clock(S.BREACHED, stopped_at=STOP)), sent_to("chat"),
                     {"repeat_every": "30m"}, id="breach-answered"),
        pytest.param(OPEN, sent_to("chat"),
                     {"repeat_every": "30m",
                      "quiet_hours": {"hours": "00:00-23:59", "timezone": "UTC"}},
                     id="in-quiet-hours"),
    ],
)
def test_no_repeat_is_decided(
    breach: OpenBreach, sent: dict[str, SentAlert], settings: dict[str, Any]
) -> None:
    """Repeats follow a delivered first alert of a still-open breach, outside quiet hours."""
    now = FIRST_AT + timedelta(hours=2)
    assert due_repeats([breach], sent, [target(**settings)], now=now) == []


def test_a_breach_still_open_escalates_once_to_the_other_target() -> None:
    """After escalate_after, the escalation target gets the breach once, naming the first."""
    targets = [target("chat", escalate_to="leads", escalate_after="45m"), target("leads")]
    early = due_repeats([OPEN], sent_to("chat"), targets, now=FIRST_AT + timedelta(minutes=44))
    assert early == []
    due = due_repeats([OPEN], sent_to("chat"), targets, now=FIRST_AT + timedelta(minutes=45))
    later = due_repeats([OPEN], sent_to("chat"), targets, now=FIRST_AT + timedelta(hours=5))
    [item] = due
    assert item.target == "leads"
    assert AlertItem.from_json(item.payload).escalated_from == "chat"
    assert [i.key for i in later] == [item.key]
    assert first_alert_keys([OPEN], targets) == [clock_alert_key("chat", OPEN.clock, "breached")]


# -- ordering and message keys ---------------------------------------------------------------


def item(kind: Any, conversation: str, *, late: int | None = None,
         due: datetime | None = None) -> AlertItem:
    """An alert item for ordering tests."""
    return AlertItem(kind=kind, at=T0, source=SOURCE, conversation=conversation,
                     late_seconds=late, due_at=due)


def test_items_are_ordered_most_urgent_first_then_longest_overdue() -> None:
    """Breaches lead, the latest first; at-risk items follow, the soonest due first."""
    items = [
        item("recovered", "r1", late=60),
        item("at_risk", "a2", due=T0 + timedelta(minutes=20)),
        item("breached", "b1", late=60),
        item("source_up", "u1"),
        item("at_risk", "a1", due=T0 + timedelta(minutes=5)),
        item("breached", "b2", late=3600),
        item("source_down", "d1"),
    ]
    assert [i.conversation for i in order_items(items)] == [
        "b2", "b1", "d1", "a1", "a2", "r1", "u1",
    ]


def test_a_message_key_depends_on_its_items_and_target_only() -> None:
    """The same group gives the same key in any order; another group or target another."""
    assert message_key("chat", ["a", "b"]) == message_key("chat", ["b", "a"])
    assert message_key("chat", ["a", "b"]) != message_key("chat", ["a"])
    assert message_key("chat", ["a"]) != message_key("leads", ["a"])


@given(
    states=st.lists(st.sampled_from(list(ClockState)), min_size=1, max_size=6),
    previous=st.lists(st.one_of(st.none(), st.sampled_from(list(ClockState))), min_size=6,
                      max_size=6),
    stopped=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_decisions_are_deterministic_and_one_per_target_and_clock_edge(
    states: list[ClockState], previous: list[ClockState | None], stopped: list[bool]
) -> None:
    """Any transitions give at most one item per (target, clock, kind), the same every time."""
    transitions = [
        Transition(clock(state, conversation=str(index),
                         stopped_at=STOP if stopped[index] else None), previous[index], T0)
        for index, state in enumerate(states)
    ]
    targets = [target("a"), target("b", on=["recovered"])]
    first = decide(transitions, {}, targets, now=T0)
    assert [i.key for i in first] == [i.key for i in decide(transitions, {}, targets, now=T0)]
    assert len({i.key for i in first}) == len(first)
    for decided in first:
        assert AlertItem.from_json(decided.payload).kind == decided.kind
