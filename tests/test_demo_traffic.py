"""Tests the demo's traffic model (arrivals, reply delays, lifecycles) and its environment."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from connectors.fakes._base import SteppedClock
from monitor.config import parse_config
from monitor.demo import (
    FIRST_RESPONSE_TARGETS,
    SOCIAL_TARGET,
    Action,
    HistoryStats,
    MastodonSocial,
    NewTicket,
    SocialPost,
    TicketComment,
    TicketUpdate,
    TrafficModel,
    arrival_times,
    demo_config,
    demo_environment,
    hourly_rate,
    iter_threads,
    make_sources,
)
from monitor.events import Metric, Priority

NEW_YORK = ZoneInfo("America/New_York")
# A Monday noon in New York, after a full week (Mon 16 - Sun 22 Nov 2026) with no holiday.
WEEK_END = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
WEEK_START = WEEK_END - timedelta(days=7)


def make_model(seed: int, clock: Callable[[], datetime]) -> TrafficModel:
    """A model over a fresh Zendesk and Mastodon (real fake worlds) reading ``clock``."""
    return TrafficModel(make_sources(("zendesk", "mastodon"), clock), seed=seed)


@pytest.fixture(scope="module")
def week() -> tuple[TrafficModel, HistoryStats]:
    """A week of history written by seed 7, shared by the read-only tests below."""
    model = make_model(7, SteppedClock(WEEK_END))
    return model, model.generate_history(WEEK_START, WEEK_END)


def local(at: datetime) -> datetime:
    """``at`` on the New York wall clock."""
    return at.astimezone(NEW_YORK)


def mention_threads(actions: Sequence[Action]) -> list[list[SocialPost]]:
    """The social threads among ``actions``, each in time order."""
    return [[a for a in items if isinstance(a, SocialPost)]
            for stream, _, items in iter_threads(actions) if stream == "social"]


@pytest.mark.parametrize(
    ("stream", "local_time", "low", "high"),
    [
        pytest.param("desk", datetime(2026, 11, 17, 10, 30), 20, 40, id="desk-tuesday-10am"),
        pytest.param("desk", datetime(2026, 11, 17, 3, 30), 0, 5, id="desk-tuesday-3am"),
        pytest.param("desk", datetime(2026, 11, 21, 11, 0), 0, 10, id="desk-saturday-11am"),
        pytest.param("desk", datetime(2026, 11, 26, 11, 0), 0, 10, id="desk-thanksgiving-11am"),
        pytest.param("social", datetime(2026, 11, 17, 12, 0), 10, 20, id="social-tuesday-noon"),
        pytest.param("social", datetime(2026, 11, 17, 4, 0), 0, 5, id="social-tuesday-4am"),
        pytest.param("social", datetime(2026, 11, 22, 12, 0), 5, 15, id="social-sunday-noon"),
    ],
)
def test_hourly_rate_follows_the_new_york_week(stream: str, local_time: datetime, low: float,
                                               high: float) -> None:
    """Arrival rates are high in office hours and low at night, weekends and US holidays."""
    at = local_time.replace(tzinfo=NEW_YORK).astimezone(UTC)
    assert low <= hourly_rate(stream, at) <= high  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "expected", "first_possible_hour"),
    [
        pytest.param(lambda at: 30.0, 6000, 0, id="constant-30-per-hour"),
        pytest.param(lambda at: 0.0, 0, 0, id="zero-rate"),
        pytest.param(lambda at: 60.0 if at >= WEEK_START + timedelta(hours=100) else 0.0, 6000,
                     100, id="closed-then-60-per-hour"),
    ],
)
def test_arrival_times_follow_the_rate(rate: Callable[[datetime], float], expected: int,
                                       first_possible_hour: int) -> None:
    """A Poisson process: counts near the integral of the rate, none where the rate is 0."""
    end = WEEK_START + timedelta(hours=200)
    arrivals = arrival_times(random.Random(3), WEEK_START, end, rate)
    assert abs(len(arrivals) - expected) <= 4 * max(expected, 1) ** 0.5
    assert arrivals == sorted(arrivals)
    assert all(WEEK_START + timedelta(hours=first_possible_hour) <= at < end for at in arrivals)


def test_same_seed_writes_the_same_history() -> None:
    """Two models with one seed write identical histories; another seed writes another."""
    start, end = WEEK_START, WEEK_START + timedelta(days=2)
    first, second, other = (make_model(seed, SteppedClock(end)) for seed in (11, 11, 12))
    stats = [model.generate_history(start, end) for model in (first, second, other)]
    assert stats[0] == stats[1]
    assert list(first.applied) == list(second.applied)
    assert list(first.pending) == list(second.pending)
    assert list(first.applied) != list(other.applied)


def test_a_week_has_plausible_volumes(week: tuple[TrafficModel, HistoryStats]) -> None:
    """A week holds a help desk's and a brand account's worth of traffic."""
    model, stats = week
    assert 1400 <= stats.tickets <= 2600
    assert 1000 <= stats.mentions <= 2000
    assert stats.replies > 0.8 * (stats.tickets + stats.mentions)
    assert stats.tickets == sum(isinstance(a, NewTicket) for a in model.applied)


def test_weekday_office_hours_are_busiest(week: tuple[TrafficModel, HistoryStats]) -> None:
    """Weekday office hours bring 20-40 tickets and 10-20 mentions an hour; nights far fewer."""
    model, _ = week
    office: list[datetime] = []
    night: list[datetime] = []
    weekend: list[datetime] = []
    mentions_office = 0
    for action in model.applied:
        if isinstance(action, NewTicket):
            at = local(action.at)
            if at.weekday() >= 5:
                weekend.append(at)
            elif 9 <= at.hour < 17:
                office.append(at)
            elif at.hour < 6:
                night.append(at)
        elif isinstance(action, SocialPost) and action.reply_to is None:
            at = local(action.at)
            mentions_office += at.weekday() < 5 and 9 <= at.hour < 17
    office_hours, night_hours, weekend_hours = 5 * 8, 5 * 6, 2 * 24
    assert 20 <= len(office) / office_hours <= 40
    assert 10 <= mentions_office / office_hours <= 20
    assert len(night) / night_hours < 5
    assert len(weekend) / weekend_hours < len(office) / office_hours / 3


def test_social_replies_have_a_long_tail(week: tuple[TrafficModel, HistoryStats]) -> None:
    """Most brand replies come in a few minutes; 8-20% miss the 6-minute target."""
    model, _ = week
    delays = [(thread[1].at - thread[0].at).total_seconds()
              for thread in mention_threads(model.applied)
              if len(thread) > 1 and thread[1].by_brand]
    assert len(delays) > 500
    assert 120 <= statistics.median(delays) <= 300
    late = sum(delay > SOCIAL_TARGET for delay in delays) / len(delays)
    assert 0.08 <= late <= 0.2
    assert max(delays) > 3 * SOCIAL_TARGET


def test_desk_first_replies_mostly_meet_their_target(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """First agent replies mostly land within the priority's target, a few land late."""
    model, _ = week
    met = late = 0
    for stream, _, items in iter_threads(model.applied):
        if stream != "desk":
            continue
        created = items[0]
        assert isinstance(created, NewTicket)
        priority = created.priority or "normal"
        for action in items:
            if isinstance(action, TicketUpdate) and action.priority:
                priority = action.priority
            if isinstance(action, TicketComment) and action.role == "agent" and action.public:
                waited = (action.at - created.at).total_seconds()
                if waited <= FIRST_RESPONSE_TARGETS[priority]:
                    met += 1
                else:
                    late += 1
                break
    assert met / (met + late) >= 0.85
    assert late / (met + late) >= 0.01


def test_bots_answer_and_agents_write_notes_before_replying(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """Answer-bot comments and internal notes occur, and notes come before the first reply."""
    model, stats = week
    bots = [a for a in model.applied if isinstance(a, TicketComment) and a.role == "bot"]
    assert stats.bot_replies == len(bots) > 50
    assert all(a.public for a in bots)
    notes_first = 0
    for stream, _, items in iter_threads(model.applied):
        comments = [a for a in items if isinstance(a, TicketComment) and a.role == "agent"]
        if stream == "desk" and comments and not comments[0].public:
            notes_first += 1
    assert stats.internal_notes >= notes_first > 50


def test_some_mentions_never_get_a_reply(week: tuple[TrafficModel, HistoryStats]) -> None:
    """A few percent of mentions are never answered, though the brand answers most."""
    model, _ = week
    settled = [thread for thread in mention_threads(model.applied)
               if thread[0].at < WEEK_END - timedelta(hours=2)]
    unanswered = sum(not any(post.by_brand for post in thread) for thread in settled)
    assert 0.02 <= unanswered / len(settled) <= 0.1


def test_conversations_go_through_realistic_lifecycles(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """Follow-ups, escalations, pending/hold/solved/closed and reopens all happen."""
    model, stats = week
    updates = [a for a in model.applied if isinstance(a, TicketUpdate)]
    statuses = {a.status for a in updates}
    assert {"pending", "open", "hold", "solved", "closed"} <= statuses
    assert any(a.priority == Priority.URGENT for a in updates)
    reopened = follow_up_answered = 0
    for stream, _, items in iter_threads(model.applied):
        if stream != "desk":
            continue
        solved = False
        for index, action in enumerate(items):
            if isinstance(action, TicketUpdate) and action.status == "solved":
                solved = True
            elif isinstance(action, TicketComment) and action.role == "customer":
                reopened += solved
                follow_up_answered += any(
                    isinstance(later, TicketComment) and later.role == "agent" and later.public
                    for later in items[index:])
    assert reopened > 5
    assert follow_up_answered > 100
    social_follow_ups = sum(isinstance(a, SocialPost) and not a.by_brand and a.reply_to is not None
                            for a in model.applied)
    assert social_follow_ups > 50
    assert stats.follow_ups >= follow_up_answered + social_follow_ups


def test_history_stops_at_its_end_and_keeps_the_rest(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """Everything before the end is written; later steps wait, in time order, for live."""
    model, stats = week
    assert all(a.at < WEEK_END for a in model.applied)
    pending = list(model.pending)
    assert stats.pending == len(pending) > 100
    assert all(a.at >= WEEK_END for a in pending)
    assert [a.at for a in pending] == sorted(a.at for a in pending)


def test_public_text_includes_hostile_samples(week: tuple[TrafficModel, HistoryStats]) -> None:
    """Markup, script tags, a bidi override and a 500-character line appear in the history."""
    model, _ = week
    texts = [text for a in model.applied
             for text in ((a.subject, a.body) if isinstance(a, NewTicket)
                          else (a.body,) if isinstance(a, TicketComment)
                          else (a.text,) if isinstance(a, SocialPost) else ())]
    for marker in ("[bold]", "<script>", "\u202e", "A" * 400):
        assert any(marker in text for text in texts), marker
    mastodon = next(s for s in model.sources if isinstance(s, MastodonSocial))
    # Mastodon caps a status at 500 characters, hostile or not, and so does its fake's world.
    assert any(len(s.text) == 500 for s in mastodon.world.statuses.values())
    assert all(len(s.text) <= 500 for s in mastodon.world.statuses.values())


def test_openers_are_due_in_the_first_two_minutes() -> None:
    """Openers: unanswered mentions and an urgent ticket reach their target within 2 minutes."""
    at = WEEK_END
    model = make_model(5, SteppedClock(at))
    actions = model.plan_openers(at)
    soon = timedelta(minutes=2)
    due_soon = [thread[0] for thread in mention_threads(actions)
                if len(thread) == 1 and at < thread[0].at + timedelta(seconds=SOCIAL_TARGET)
                <= at + soon]
    assert len(due_soon) >= 2
    urgent = [a for a in actions if isinstance(a, NewTicket) and a.priority == "urgent"
              and at < a.at + timedelta(seconds=FIRST_RESPONSE_TARGETS["urgent"]) <= at + soon]
    assert len(urgent) == 1
    first_reply = min(a.at for a in actions if isinstance(a, TicketComment)
                      and a.ticket == urgent[0].ticket and a.role == "agent" and a.public)
    assert first_reply > urgent[0].at + timedelta(seconds=FIRST_RESPONSE_TARGETS["urgent"])


def test_history_plants_the_openers_just_before_its_end(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """The history ends with mentions 4-6 minutes old and no reply, ready to breach."""
    model, _ = week
    waiting = [thread[0] for thread in mention_threads(model.applied)
               if not any(post.by_brand for post in thread)
               and timedelta(minutes=4) <= WEEK_END - thread[0].at < timedelta(minutes=6)]
    answered_later = {a.thread for a in model.pending if isinstance(a, SocialPost) and a.by_brand}
    never_answered = [m for m in waiting if m.thread not in answered_later]
    assert len(never_answered) >= 3


def test_history_leaves_desk_tickets_due_in_its_first_minutes(
        week: tuple[TrafficModel, HistoryStats]) -> None:
    """Unanswered tickets reach their first-response target 1 to 15 minutes after the end."""
    model, _ = week
    due: list[timedelta] = []
    for stream, _, items in iter_threads(model.applied):
        created = items[0]
        if stream != "desk" or not isinstance(created, NewTicket):
            continue
        priority = created.priority or "normal"
        for action in items:
            if isinstance(action, TicketUpdate) and action.priority:
                priority = action.priority
        if any(isinstance(a, TicketComment) and a.role == "agent" and a.public for a in items):
            continue
        left = created.at + timedelta(seconds=FIRST_RESPONSE_TARGETS[priority]) - WEEK_END
        if timedelta(0) < left <= timedelta(minutes=15):
            due.append(left)
    assert len(due) >= 4
    assert min(due) <= timedelta(minutes=2)


class ReadCountingClock:
    """A clock that moves ``step`` seconds per read and sets ``stop`` after ``reads`` reads."""

    def __init__(self, start: datetime, step: float, reads: int, stop: asyncio.Event) -> None:
        self.value = start
        self.step = timedelta(seconds=step)
        self.left = reads
        self.stop = stop

    def __call__(self) -> datetime:
        current = self.value
        self.value += self.step
        self.left -= 1
        if self.left <= 0:
            self.stop.set()
        return current


async def test_run_live_seeds_openers_and_keeps_traffic_coming() -> None:
    """Without history, going live plants openers, then writes arrivals as time passes."""
    start = WEEK_END
    model = make_model(3, SteppedClock(start))
    stop = asyncio.Event()
    clock = ReadCountingClock(start, step=20, reads=90, stop=stop)  # 30 simulated minutes
    await asyncio.wait_for(model.run_live(clock, stop=stop, tick=0), timeout=10)
    applied = list(model.applied)
    openers = [a for a in applied if a.at < start]
    assert any(isinstance(a, SocialPost) and a.reply_to is None
               and start < a.at + timedelta(seconds=SOCIAL_TARGET) <= start + timedelta(minutes=2)
               for a in openers)
    live = applied[len(openers):]
    assert all(a.at >= start for a in live)
    assert [a.at for a in live] == sorted(a.at for a in live)
    arrivals = [a for a in live if isinstance(a, NewTicket | SocialPost) and
                (isinstance(a, NewTicket) or a.reply_to is None)]
    assert len(arrivals) >= 10  # Monday noon: ~30 tickets and ~15 mentions per hour
    assert any(isinstance(a, SocialPost) and a.by_brand for a in live)


async def test_run_live_writes_overdue_steps_when_it_starts() -> None:
    """Steps due before going live are written at its start; only mentions are backdated."""
    end = WEEK_END
    model = make_model(4, SteppedClock(end))
    model.generate_history(end - timedelta(hours=6), end)
    written = len(model.applied)
    live_start = end + timedelta(minutes=3)
    due_in_gap = [a for a in model.pending if a.at <= live_start]
    assert due_in_gap
    stop = asyncio.Event()
    clock = ReadCountingClock(live_start, step=1, reads=3, stop=stop)
    await asyncio.wait_for(model.run_live(clock, stop=stop, tick=0), timeout=10)
    live = list(model.applied)[written:]
    assert sum(a.at == live_start for a in live) >= len(due_in_gap)
    backdated = [a for a in live if a.at < live_start]
    assert all(isinstance(a, SocialPost) and a.reply_to is None for a in backdated)
    assert any(live_start < a.at + timedelta(seconds=SOCIAL_TARGET)
               <= live_start + timedelta(minutes=2) for a in backdated)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(WEEK_END, WEEK_END, id="empty-window"),
        pytest.param(WEEK_END, WEEK_START, id="backwards-window"),
        pytest.param(WEEK_START.replace(tzinfo=None), WEEK_END, id="naive-start"),
    ],
)
def test_generate_history_refuses_bad_windows(start: datetime, end: datetime) -> None:
    """A window that is empty, backwards or naive is a ValueError, and nothing is written."""
    model = make_model(1, SteppedClock(WEEK_END))
    with pytest.raises(ValueError, match=r"timezone|after"):
        model.generate_history(start, end)
    assert not model.applied


async def test_run_live_refuses_a_non_positive_speed() -> None:
    """Speed multiplies arrival rates, so zero or less is refused."""
    model = make_model(1, SteppedClock(WEEK_END))
    with pytest.raises(ValueError, match="speed"):
        await model.run_live(SteppedClock(WEEK_END), speed=0)


def test_demo_config_sets_the_documented_targets() -> None:
    """The embedded config: the sources at the fakes, office calendar, social and desk SLAs."""
    sources = make_sources(("zendesk", "mastodon"), SteppedClock(WEEK_END))
    config = parse_config(demo_config(
        [source.settings(f"http://127.0.0.1:{port}") for port, source in enumerate(sources, 1)],
        database="sqlite:///demo.db"))
    assert [(s.name, s.kind, s.poll_every) for s in config.sources] == [
        ("acme-zendesk", "zendesk", 15.0), ("acme-mastodon", "mastodon", 10.0)]
    assert config.monitor.database == "sqlite:///demo.db"
    assert config.monitor.lookback == 8 * 86400
    office = config.calendars["office"]
    assert (office.timezone, office.holidays.country) == ("America/New_York", "US")
    assert office.opening_hours()[0] == ((9 * 60, 18 * 60),)
    social, desk = config.policies
    assert social.match.kinds == ("mastodon",)
    assert social.target_seconds(Metric.FIRST_RESPONSE, None) == 360
    assert social.target_seconds(Metric.NEXT_RESPONSE, None) == 360
    assert (desk.match.sources, desk.calendar) == (("acme-zendesk",), "24x7")
    expected = {
        Metric.FIRST_RESPONSE: (900, 3600, 4 * 3600, 8 * 3600),
        Metric.NEXT_RESPONSE: (1800, 2 * 3600, 8 * 3600, 86400),
        Metric.RESOLUTION: (4 * 3600, 86400, 3 * 86400, 5 * 86400),
    }
    for metric, seconds in expected.items():
        assert tuple(desk.target_seconds(metric, p) for p in Priority) == seconds


async def test_demo_environment_serves_the_fakes() -> None:
    """The fakes answer real HTTP requests with the configured credentials and the history."""
    now = datetime.now(UTC)
    async with demo_environment(seed=9, sources=("zendesk", "mastodon")) as env, \
            aiohttp.ClientSession() as session:
        assert set(env.urls) == {"acme-zendesk", "acme-mastodon"}
        assert all(url.startswith("http://127.0.0.1:") for url in env.urls.values())
        env.traffic.generate_history(now - timedelta(hours=3), now)
        desk = env.urls["acme-zendesk"]
        auth = {"Authorization": aiohttp.encode_basic_auth("ops@acme.example/token",
                                                           "fake-token")}
        async with session.get(f"{desk}/api/v2/users/me.json", headers=auth) as response:
            assert response.status == 200
            me = await response.json()
            assert me["user"]["email"] == "ops@acme.example"
        start_time = int((now - timedelta(hours=4)).timestamp())
        async with session.get(f"{desk}/api/v2/incremental/tickets/cursor.json",
                               params={"start_time": str(start_time)}, headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["tickets"]
        social = env.urls["acme-mastodon"]
        bearer = {"Authorization": "Bearer fake-token"}
        async with session.get(f"{social}/api/v1/accounts/verify_credentials",
                               headers=bearer) as response:
            assert response.status == 200
            assert (await response.json())["acct"] == "acme"
        async with session.get(f"{social}/api/v1/notifications",
                               params={"types[]": "mention"}, headers=bearer) as response:
            assert response.status == 200
            mentions = await response.json()
            assert mentions
            assert all(item["type"] == "mention"
                       and "acme" in [m["acct"] for m in item["status"]["mentions"]]
                       for item in mentions)
