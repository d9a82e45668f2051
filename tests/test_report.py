"""Tests of the report's figures: recomputed independently from explain's clocks, every form."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.config import Config, parse_config
from monitor.events import Actor, Clock, ClockState, Event, EventKind, Metric, Status
from monitor.explain import explain_events
from monitor.reports import html as html_module
from monitor.reports.aggregate import (
    BUCKET_LABELS,
    ConversationDetail,
    Report,
    build_report,
    kth,
    nearest_rank,
)
from monitor.reports.formatting import safe_url
from monitor.reports.html import render_html
from monitor.reports.markdown import inert, render_markdown
from monitor.reports.period import Period, date_range, iso_week, last_complete_week
from monitor.reports.tabular import facts, render_csv, render_json
from monitor.sla import Evaluation

TIMEZONE = "America/New_York"
WEEK = iso_week("2026-W47", TIMEZONE)
NOW = WEEK.end + timedelta(hours=9)
AGENTS = ("kim", "lee", "ana", "max", 'bo <img src=x onerror="alert(1)">')
HOSTILE_SUBJECT = '</title><script>alert("subject")</script> [click](javascript:x) @everyone'

CONFIG_DATA: dict[str, Any] = {
    "monitor": {"timezone": TIMEZONE},
    "calendars": {"office": {"timezone": TIMEZONE,
                             "hours": {"mon-fri": "09:00-12:30, 13:30-18:00"},
                             "holidays": {"country": "US"}}},
    "sources": [
        {"name": "acme-desk", "kind": "zendesk", "subdomain": "acme",
         "email": "ops@acme.example", "token": "t", "enabled": False},
        {"name": "acme-help", "kind": "zendesk", "subdomain": "help",
         "email": "ops@acme.example", "token": "t", "enabled": False},
        {"name": "acme-mastodon", "kind": "mastodon", "base_url": "https://m.example",
         "token": "t", "enabled": False},
    ],
    "policies": [
        {"name": "desk", "calendar": "office", "match": {"kinds": ["zendesk"]},
         "first_response": {"urgent": "15m", "high": "1h", "normal": "4h", "low": "8h"},
         "next_response": {"urgent": "30m", "high": "2h", "normal": "8h", "low": "1d"},
         "resolution": {"urgent": "4h", "high": "1d", "normal": "3d", "low": "5d"}},
        {"name": "social", "match": {"kinds": ["mastodon"]}, "first_response": "6m",
         "next_response": "10m"},
    ],
}


def config() -> Config:
    """Two policies: a business-hours desk with per-priority targets, and 24x7 social."""
    return parse_config(CONFIG_DATA)


class _Thread:
    """Appends one conversation's events, numbering their ids."""

    def __init__(self, events: list[Event], source: str, conversation: str) -> None:
        self.events, self.source, self.conversation = events, source, conversation
        self.count = 0

    def add(self, at: datetime, kind: EventKind, **fields: Any) -> None:
        """Append an event of the conversation at ``at``."""
        self.count += 1
        self.events.append(Event(source=self.source, conversation=self.conversation,
                                 id=f"{self.conversation}-{self.count}", at=at, kind=kind,
                                 **fields))


def two_weeks_of_events(seed: int = 47, conversations: int = 260) -> list[Event]:
    """Desk tickets and social mentions over the reported week and the one before.

    Replies early and late, follow-ups, re-prioritisations, pending spells, solves and
    reopenings, dismissals, unanswered mentions, hostile names, subjects and links.
    """
    rng = random.Random(seed)
    events: list[Event] = []
    start = WEEK.previous().start - timedelta(days=2)
    span = (WEEK.end + timedelta(hours=6) - start).total_seconds()
    for number in range(conversations):
        social = rng.random() < 0.4
        source = "acme-mastodon" if social else rng.choice(("acme-desk", "acme-help"))
        add = _Thread(events, source, str(4000 + number)).add
        conversation = str(4000 + number)

        at = start + timedelta(seconds=rng.random() * span)
        url = rng.choice((f"https://{source}.example/t/{conversation}",
                          f"https://{source}.example/t/{conversation}",
                          "javascript:alert(1)", None))
        subject = HOSTILE_SUBJECT if number % 17 == 0 else f"Order {number}"
        agent = rng.choice(AGENTS)
        if not social:
            add(at - timedelta(seconds=1), EventKind.UPDATE,
                fields={"priority": rng.choice(("urgent", "high", "normal", "low")),
                        "assignee": rng.choice((*AGENTS, None)), "subject": subject})
        add(at, EventKind.MESSAGE, actor=Actor.CUSTOMER, author="customer",
            channel="mention" if social else rng.choice(("email", "web")), url=url,
            text="help")
        scale = 300 if social else 4 * 3600
        if rng.random() < 0.08:
            add(at + timedelta(minutes=30), EventKind.DISMISSED, author="lead",
                fields={"reason": "spam"})
            continue
        if rng.random() < 0.12:
            continue  # never answered: a breach still open at the end
        if not social and rng.random() < 0.2:
            at += timedelta(seconds=rng.random() * scale)
            add(at, EventKind.UPDATE, fields={"priority": "urgent",
                                              "assignee": rng.choice(AGENTS)})
        at += timedelta(seconds=max(1, rng.lognormvariate(math.log(scale * 0.6), 1.0)))
        add(at, EventKind.MESSAGE, actor=Actor.AGENT, author=agent, text="on it")
        for _ in range(rng.choice((0, 0, 1, 2))):
            at += timedelta(seconds=rng.random() * scale * 3)
            add(at, EventKind.MESSAGE, actor=Actor.CUSTOMER, author="customer", text="and?")
            at += timedelta(seconds=max(1, rng.lognormvariate(math.log(scale), 1.0)))
            add(at, EventKind.MESSAGE, actor=Actor.AGENT, author=rng.choice(AGENTS),
                text="done")
        if not social:
            if rng.random() < 0.3:
                at += timedelta(hours=rng.random() * 10)
                add(at, EventKind.STATUS, status=Status.PENDING)
            at += timedelta(hours=rng.random() * 60)
            add(at, EventKind.STATUS, status=Status.SOLVED)
            if rng.random() < 0.15:
                at += timedelta(hours=rng.random() * 20)
                add(at, EventKind.MESSAGE, actor=Actor.CUSTOMER, author="customer",
                    text="still broken")
                at += timedelta(hours=rng.random() * 30)
                add(at, EventKind.STATUS, status=Status.SOLVED)
    return events


def explained(seed: int = 47) -> list[Evaluation]:
    """The evaluations ``replywatch explain`` prints for the two weeks, as of NOW."""
    return explain_events(two_weeks_of_events(seed), config(), now=NOW)


def pure_report(evaluations: Sequence[Evaluation], period: Period = WEEK) -> Report:
    """The report built straight from explain's clocks (no store in between)."""
    clocks = [clock for evaluation in evaluations for clock in evaluation.clocks]
    keys = {(e.conversation.source, e.conversation.id): e.conversation for e in evaluations}
    return build_report(
        period, clocks, generated_at=NOW,
        channels={key: conversation.channel for key, conversation in keys.items()},
        details={key: ConversationDetail(conversation.url, conversation.subject)
                 for key, conversation in keys.items()},
        policies=config().policies, calendars=config().calendars,
    )


@pytest.fixture(scope="module")
def evaluations() -> list[Evaluation]:
    """explain's evaluations of the two generated weeks."""
    return explained()


@pytest.fixture(scope="module")
def report(evaluations: list[Evaluation]) -> Report:
    """The report of week 47 built from them."""
    return pure_report(evaluations)


# -- an independent recomputation ------------------------------------------------------


def rank_value(values: Iterable[int], percentile: int) -> int | None:
    """Nearest rank the textbook way: sort, take the ceil(p/100 * n)-th value."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def percent(met: int, breached: int) -> float | None:
    """% met rounded half up to one decimal, computed with exact fractions."""
    from fractions import Fraction

    if met + breached == 0:
        return None
    value = Fraction(1000 * met, met + breached)
    return math.floor(value + Fraction(1, 2)) / 10


def counted(clocks: Iterable[Clock], period: Period) -> list[Clock]:
    """SLA.md §7: clocks that stopped in the period, met or breached."""
    return [c for c in clocks if c.state in (ClockState.MET, ClockState.BREACHED)
            and c.stopped_at is not None and period.start <= c.stopped_at < period.end]


def expected_rows(
    evaluations: Sequence[Evaluation], period: Period
) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """Every (policy, dimension, value) row's figures, the slow and obvious way."""
    channel = {(e.conversation.source, e.conversation.id): e.conversation.channel
               for e in evaluations}
    clocks = counted((c for e in evaluations for c in e.clocks), period)
    groups: dict[tuple[str, str, str | None], list[Clock]] = defaultdict(list)
    for clock in clocks:
        values = {"all": None, "source": clock.source,
                  "channel": channel[(clock.source, clock.conversation)],
                  "priority": None if clock.priority is None else str(clock.priority)}
        for dimension, value in values.items():
            groups[(clock.policy, dimension, value)].append(clock)
    rows: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for key, members in groups.items():
        row: dict[str, Any] = {
            "conversations": len({(c.source, c.conversation) for c in members}),
            "replies": sum(c.metric is not Metric.RESOLUTION for c in members),
        }
        for metric in Metric:
            of_metric = [c for c in members if c.metric is metric]
            met = sum(c.state is ClockState.MET for c in of_metric)
            breached = len(of_metric) - met
            elapsed = [c.elapsed_seconds for c in of_metric]
            row[str(metric)] = {
                "clocks": len(of_metric), "met": met, "breached": breached,
                "percent_met": percent(met, breached),
                "p50": rank_value(elapsed, 50), "p90": rank_value(elapsed, 90),
                "p95": rank_value(elapsed, 95),
            }
        rows[key] = row
    return rows


def test_every_table_figure_is_recomputed_from_explains_clocks(
    evaluations: list[Evaluation], report: Report
) -> None:
    """Each row's counts, % met and nearest-rank p50/p90/p95 match a naive recomputation."""
    now = expected_rows(evaluations, WEEK)
    before = expected_rows(evaluations, WEEK.previous())
    seen = set()
    for section in report.sections:
        for row in section.rows:
            key = (section.policy, row.dimension, row.value)
            seen.add(key)
            for period_rows, which in ((now, "current"), (before, "previous")):
                want = period_rows.get(key)
                got_conversations = getattr(row.conversations, which)
                assert got_conversations == (want["conversations"] if want else 0), key
                assert getattr(row.replies, which) == (want["replies"] if want else 0), key
                for item in row.metrics:
                    figures = getattr(item, which)
                    expected = want[str(item.metric)] if want else None
                    got = {"clocks": figures.clocks, "met": figures.met,
                           "breached": figures.breached, "percent_met": figures.percent_met,
                           "p50": figures.p50, "p90": figures.p90, "p95": figures.p95}
                    if expected is None:
                        assert got["clocks"] == 0
                    else:
                        assert got == expected, (key, item.metric, which)
    assert seen == set(now) | set(before)


def test_the_report_has_all_it_should(report: Report) -> None:
    """The generated weeks exercise every part: splits, breaches, agents, open breaches."""
    assert not report.empty
    assert {s.policy for s in report.sections} == {"desk", "social"}
    desk = next(s for s in report.sections if s.policy == "desk")
    assert {r.dimension for r in desk.rows} == {"all", "source", "channel", "priority"}
    assert [m.metric for m in desk.overall.metrics] == list(Metric)
    assert report.totals.breached.current > 0
    assert report.totals.breached.previous > 0
    assert len(report.longest_breaches) == 10
    assert report.open_breaches
    assert report.agents


def test_totals_agents_days_and_charts_are_recomputed(
    evaluations: list[Evaluation], report: Report
) -> None:
    """Totals, per-agent figures, each day, the heatmap and distribution match the clocks."""
    zone = ZoneInfo(TIMEZONE)
    clocks = counted((c for e in evaluations for c in e.clocks), WEEK)
    previous = counted((c for e in evaluations for c in e.clocks), WEEK.previous())
    totals = report.totals
    assert totals.met.current == sum(c.state is ClockState.MET for c in clocks)
    assert totals.breached.previous == sum(c.state is ClockState.BREACHED for c in previous)
    assert totals.conversations.current == len({(c.source, c.conversation) for c in clocks})
    assert totals.percent_met == percent(totals.met.current, totals.breached.current)

    agents: dict[str, dict[str, Any]] = defaultdict(lambda: {"replies": 0, "first": [],
                                                              "held": 0})
    for clock in clocks:
        if clock.stopped_by and clock.metric is not Metric.RESOLUTION:
            agents[clock.stopped_by]["replies"] += 1
            if clock.metric is Metric.FIRST_RESPONSE:
                agents[clock.stopped_by]["first"].append(clock.elapsed_seconds)
        if clock.state is ClockState.BREACHED and clock.assignee:
            agents[clock.assignee]["held"] += 1
    got = {a.name: (a.replies, a.first_response_p50, a.first_response_p90, a.breaches_held)
           for a in report.agents}
    want = {name: (a["replies"], rank_value(a["first"], 50), rank_value(a["first"], 90),
                   a["held"]) for name, a in agents.items()}
    assert got == want
    assert report.unassigned_breaches == sum(
        c.state is ClockState.BREACHED and c.assignee is None for c in clocks)

    for day in report.days:
        of_day = [c for c in clocks if c.stopped_at is not None
                  and c.stopped_at.astimezone(zone).date() == day.day]
        assert (day.met, day.breached) == (
            sum(c.state is ClockState.MET for c in of_day),
            sum(c.state is ClockState.BREACHED for c in of_day))
    for section in report.sections:
        for policy_day in section.days:
            first = [c.elapsed_seconds for c in clocks if c.policy == section.policy
                     and c.metric is Metric.FIRST_RESPONSE and c.stopped_at is not None
                     and c.stopped_at.astimezone(zone).date() == policy_day.day]
            assert (policy_day.first_responses, policy_day.first_response_p50,
                    policy_day.first_response_p90) == (
                len(first), rank_value(first, 50), rank_value(first, 90))

    heat = [[0] * 24 for _ in range(7)]
    for clock in clocks:
        if clock.state is ClockState.BREACHED and clock.due_at is not None:
            local = clock.due_at.astimezone(zone)
            heat[local.weekday()][local.hour] += 1
    assert [list(row) for row in report.heatmap] == heat

    bars = [0] * len(BUCKET_LABELS)
    for clock in clocks:
        if clock.metric is Metric.FIRST_RESPONSE:
            share = clock.elapsed_seconds / clock.target_seconds
            if clock.state is ClockState.MET:
                bars[min(3, int(share * 4))] += 1
            else:
                bars[4 if share <= 1.5 else 5 if share <= 2 else 6 if share <= 4 else 7] += 1
    assert [b.met + b.breached for b in report.distribution] == bars


def test_breach_lists_follow_the_clocks(evaluations: list[Evaluation], report: Report) -> None:
    """The ten longest breaches are the ten most over target; open ones are due and unanswered."""
    clocks = [c for e in evaluations for c in e.clocks]
    breached = [c for c in counted(clocks, WEEK) if c.state is ClockState.BREACHED]
    breached.sort(key=lambda c: (c.target_seconds - c.elapsed_seconds, c.source,
                                 c.conversation, list(Metric).index(c.metric), c.cycle))
    assert [(b.source, b.conversation, b.metric, b.cycle) for b in report.longest_breaches] == [
        (c.source, c.conversation, c.metric, c.cycle) for c in breached[:10]]
    open_now = {(c.source, c.conversation, c.metric, c.cycle) for c in clocks
                if c.state is ClockState.BREACHED and c.due_at is not None
                and c.due_at < WEEK.end and (c.stopped_at is None or c.stopped_at >= WEEK.end)}
    assert {(b.source, b.conversation, b.metric, b.cycle) for b in report.open_breaches} == (
        open_now)
    assert all(b.url is None or b.url.startswith("https://") for b in
               (*report.longest_breaches, *report.open_breaches))


# -- small pieces, table-driven -------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "percentile", "expected"),
    [
        pytest.param([], 50, None, id="empty"),
        pytest.param([7], 95, 7, id="one-value"),
        pytest.param([1, 2], 50, 1, id="two-values-p50-is-the-first"),
        pytest.param(list(range(1, 11)), 90, 9, id="ten-values-p90"),
        pytest.param(list(range(1, 11)), 95, 10, id="ten-values-p95-rounds-up"),
        pytest.param(list(range(1, 101)), 50, 50, id="hundred-p50"),
        pytest.param([5, 5, 5, 9], 90, 9, id="ties"),
    ],
)
def test_nearest_rank(values: list[int], percentile: int, expected: int | None) -> None:
    """nearest_rank takes the ceil(p/100 * n)-th value, never an interpolation."""
    assert nearest_rank(values, percentile) == expected


@pytest.mark.parametrize("seed", range(6))
def test_kth_over_sorted_runs_equals_sorting_them_together(seed: int) -> None:
    """The run-merging selection gives exactly the order statistic of the merged values."""
    rng = random.Random(seed)
    runs = [sorted(rng.randint(0, 50) for _ in range(rng.randint(0, 30))) for _ in range(5)]
    merged = sorted(v for run in runs for v in run)
    for rank in range(1, len(merged) + 1):
        assert kth(runs, rank) == merged[rank - 1]


@pytest.mark.parametrize(
    ("met", "breached", "expected"),
    [
        pytest.param(2, 1, 66.7, id="two-thirds"),
        pytest.param(1, 7, 12.5, id="exact"),
        pytest.param(1, 15, 6.3, id="half-rounds-up"),
        pytest.param(0, 3, 0.0, id="none-met"),
        pytest.param(5, 0, 100.0, id="all-met"),
        pytest.param(0, 0, None, id="nothing-measured"),
        pytest.param(19999, 1, 100.0, id="rounds-to-100"),
    ],
)
def test_percent_met_rounds_half_up(met: int, breached: int, expected: float | None) -> None:
    """% met is met / (met + breached), rounded half up to one decimal."""
    from monitor.reports.aggregate import Figures

    assert Figures(met=met, breached=breached).percent_met == expected


@pytest.mark.parametrize(
    ("text", "first", "last", "label"),
    [
        pytest.param("2026-W47", date(2026, 11, 16), date(2026, 11, 22), "2026-W47", id="w47"),
        pytest.param("2026w1", date(2025, 12, 29), date(2026, 1, 4), "2026-W01",
                     id="week-1-starts-in-the-year-before"),
        pytest.param("2026-W53", date(2026, 12, 28), date(2027, 1, 3), "2026-W53",
                     id="a-53-week-year"),
    ],
)
def test_iso_weeks(text: str, first: date, last: date, label: str) -> None:
    """ISO weeks: Monday to Sunday, week 1 holds the first Thursday."""
    period = iso_week(text, TIMEZONE)
    assert (period.first_day, period.last_day, period.label) == (first, last, label)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("2026-47", "not an ISO week", id="no-w"),
        pytest.param("2025-W53", "2025 has no week 53", id="no-such-week"),
        pytest.param("", "not an ISO week", id="empty"),
    ],
)
def test_bad_iso_weeks(text: str, message: str) -> None:
    """A week that does not exist is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        iso_week(text, TIMEZONE)


@pytest.mark.parametrize(
    ("now", "timezone", "label"),
    [
        pytest.param(datetime(2026, 11, 23, 14, tzinfo=UTC), TIMEZONE, "2026-W47",
                     id="monday-afternoon"),
        pytest.param(datetime(2026, 11, 23, 3, tzinfo=UTC), TIMEZONE, "2026-W46",
                     id="still-sunday-in-new-york"),
        pytest.param(datetime(2026, 11, 22, 23, tzinfo=UTC), "Asia/Tokyo", "2026-W47",
                     id="already-monday-in-tokyo"),
    ],
)
def test_last_complete_week_is_in_the_team_timezone(
    now: datetime, timezone: str, label: str
) -> None:
    """The default week is the last one that ended in [monitor].timezone."""
    assert last_complete_week(now, timezone).label == label


def test_periods_follow_local_midnights_across_dst() -> None:
    """The week of the November DST change is 169 hours long; its days start at midnight."""
    period = iso_week("2026-W44", TIMEZONE)  # clocks go back on Sunday 1 November
    assert period.end - period.start == timedelta(days=7, hours=1)
    assert [s.astimezone(ZoneInfo(TIMEZONE)).hour for s in period.day_starts()] == [0] * 7
    assert period.previous().label == "2026-W43"
    ranged = date_range(date(2026, 11, 16), date(2026, 11, 18), TIMEZONE)
    assert (ranged.label, len(ranged.days)) == ("2026-11-16 to 2026-11-18", 3)
    assert ranged.previous().days[-1] == date(2026, 11, 15)
    with pytest.raises(ValueError, match="before it starts"):
        date_range(date(2026, 11, 18), date(2026, 11, 16), TIMEZONE)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        pytest.param("https://acme.example/t/1", True, id="https"),
        pytest.param("http://acme.example/t/1?a=b#c", True, id="http"),
        pytest.param("javascript:alert(1)", False, id="javascript"),
        pytest.param("JAVASCRIPT:alert(1)", False, id="javascript-upper"),
        pytest.param("data:text/html,<script>x</script>", False, id="data"),
        pytest.param("//evil.example/x", False, id="scheme-relative"),
        pytest.param("/t/1", False, id="relative"),
        pytest.param("https://acme.example/t/1\" onmouseover=\"x", False, id="quote"),
        pytest.param("https://acme.example/\u202et/1", False, id="bidi"),
        pytest.param("https:///nohost", False, id="no-host"),
        pytest.param(None, False, id="none"),
    ],
)
def test_links_are_only_http_or_https(url: str | None, allowed: bool) -> None:
    """Only absolute http(s) URLs become links; everything else is shown without one."""
    assert (safe_url(url) is not None) == allowed


# -- the forms: every figure the same, public text inert ------------------------------


class _Facts(HTMLParser):
    """Collects the HTML's figures (data-fact) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.current: dict[str, str] = {}
        self.changes: dict[str, str] = {}
        self.links: list[str] = []
        self.scripts = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        key = values.get("data-fact")
        if key is not None:
            if values.get("data-part") == "change":
                self.changes[key] = values.get("data-value") or ""
            else:
                self.current[key] = values.get("value", values.get("data-value")) or ""
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "script":
            self.scripts += 1
        for name in ("src", "srcset"):
            if values.get(name):
                self.external.append(values[name] or "")
        if tag == "link":
            self.external.append(values.get("href") or "")


def _csv_rows(report: Report) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(render_csv(report))))


def _plain(value: str) -> str:
    """A CSV cell without the formula guard."""
    return value[1:] if value.startswith("'") else value


def _same(a: str, b: Any) -> bool:
    if b is None:
        return a == ""
    if isinstance(b, float):
        return a != "" and float(a) == b
    return _plain(a) == str(b)


def test_csv_json_and_html_carry_the_same_figures(report: Report) -> None:
    """Every figure the HTML shows is in the CSV with the same value, and the CSV is the JSON."""
    rows = _csv_rows(report)
    listed = list(facts(report))
    assert len(rows) == len(listed)
    for row, fact in zip(rows, listed, strict=True):
        assert _plain(row["section"]) == fact.section
        assert _same(row["current"], fact.current), fact.key
        assert _same(row["previous"], fact.previous), fact.key
        assert _same(row["change"], fact.change), fact.key
    by_key = {fact.key: fact for fact in listed}
    page = _Facts()
    page.feed(render_html(report))
    assert len(page.current) > 300
    for key, value in page.current.items():
        assert key in by_key, key
        assert _same(value, by_key[key].current), key
    for key, value in page.changes.items():
        assert _same(value, by_key[key].change), key
    data = json.loads(render_json(report))
    assert data["totals"]["breached"]["current"] == by_key["totals|||||breached"].current
    desk = next(p for p in data["policies"] if p["policy"] == "desk")
    p90 = desk["rows"][0]["metrics"]["first_response"]["p90"]
    assert p90["current"] == by_key["policy|desk|all||first_response|p90"].current
    assert p90["previous"] == by_key["policy|desk|all||first_response|p90"].previous
    assert [b["over_seconds"] for b in data["longest_breaches"]] == [
        b.over_seconds for b in report.longest_breaches]
    assert len(data["open_breaches"]) == report.totals.open_breaches


def test_public_text_is_escaped_and_links_are_safe(report: Report) -> None:
    """Names, subjects and links from the public are inert in HTML, Markdown and CSV."""
    page = render_html(report)
    parsed = _Facts()
    parsed.feed(page)
    assert parsed.scripts == 0
    assert parsed.external == []
    assert parsed.links
    assert all(re.match(r"https?://", link) for link in parsed.links)
    assert "javascript:" not in page.replace("javascript:x", "")
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;/title&gt;&lt;script&gt;" in page
    assert "bo &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert 'href="https://' in page
    markdown = render_markdown(report)
    assert "<" not in markdown
    assert "@everyone" not in markdown
    assert inert("[click](javascript:x) *b* <!channel> @here") == (
        "\\[click\\](javascript:x) \\*b\\* \u2039!channel\u203a @\u200bhere")


def test_autoescape_is_on_for_every_template_name() -> None:
    """The environment escapes whatever a template is called, not by file extension."""
    env = html_module.environment()
    assert env.autoescape is True
    for name in ("report.html.j2", "summary.txt", "anything"):
        template = env.from_string("{{ value }}")
        template.name = name
        assert template.render(value="<b>&") == "&lt;b&gt;&amp;"


def test_csv_defuses_formulas() -> None:
    """A name that a spreadsheet would run as a formula is prefixed with a quote."""
    evaluations = explain_events([
        Event(source="acme-desk", conversation="9", id="a", at=WEEK.start + timedelta(days=1),
              kind=EventKind.MESSAGE, actor=Actor.CUSTOMER),
        Event(source="acme-desk", conversation="9", id="b",
              at=WEEK.start + timedelta(days=1, hours=9), kind=EventKind.MESSAGE,
              actor=Actor.AGENT, author="=HYPERLINK(\"http://evil\")"),
    ], config(), now=NOW)
    rows = _csv_rows(pure_report(evaluations))
    agents = [row for row in rows if row["section"] == "agent"]
    assert agents
    assert {row["value"] for row in agents} == {"'=HYPERLINK(\"http://evil\")"}


def test_a_week_without_data_says_so() -> None:
    """No clock in the week: not an error, not blank; every form says nothing was measured."""
    empty = pure_report([], iso_week("2026-W30", TIMEZONE))
    assert empty.empty
    page = render_html(empty)
    assert "No SLA clock stopped in 2026-W30" in page
    assert "How these figures are made" in page
    assert "No SLA clock stopped in 2026-W30" in render_markdown(empty)
    data = json.loads(render_json(empty))
    assert data["empty"] is True
    assert data["totals"]["clocks"]["current"] == 0
    assert data["totals"]["percent_met"]["current"] is None
    assert len(_csv_rows(empty)) > 100  # the zero figures are figures too


def test_a_quiet_week_after_a_busy_one_compares_with_it(evaluations: list[Evaluation]) -> None:
    """The week after the data has no clocks of its own, but still shows what came before."""
    # The generated history runs a few hours into week 48, and stops there.
    after = pure_report(evaluations, iso_week("2026-W49", TIMEZONE))
    assert after.empty
    assert after.totals.clocks.previous > 0
    assert "The period before (2026-W48) had" in render_html(after)


def test_report_rows_and_pure_builder_agree_on_edges() -> None:
    """A clock stopped exactly at the end belongs to the next week; at the start, to this one."""
    def clock(stopped: datetime, state: ClockState) -> Clock:
        return Clock(source="s", conversation=str(stopped.timestamp()), policy="p",
                     metric=Metric.FIRST_RESPONSE, cycle=0, state=state,
                     started_at=stopped - timedelta(minutes=5),
                     due_at=stopped - timedelta(minutes=1), stopped_at=stopped,
                     target_seconds=240, elapsed_seconds=300, paused_seconds=0)

    clocks = [clock(WEEK.start, ClockState.BREACHED), clock(WEEK.end, ClockState.BREACHED),
              clock(WEEK.end - timedelta(microseconds=1), ClockState.MET),
              clock(WEEK.start + timedelta(hours=1), ClockState.CANCELLED)]
    built = build_report(WEEK, clocks, generated_at=NOW)
    assert (built.totals.met.current, built.totals.breached.current) == (1, 1)
    assert built.days[0].breached == 1
    assert built.days[-1].met == 1
