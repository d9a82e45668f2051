"""Tests of the runner and pipeline: real connectors polling real fakes into a real store."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors import registry
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.mastodon import MastodonFake, MastodonWorld
from connectors.fakes.zendesk import ZendeskFake, ZendeskWorld
from monitor.config import Config, parse_config
from monitor.events import Actor, ClockState, Event, EventKind, Metric, Status
from monitor.pipeline import EvaluationProcess, Evaluator
from monitor.runner import SourceRunner
from monitor.storage import Store

START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@dataclass
class Rig:
    """A source runner wired to a served fake and a fresh SQLite store."""

    runner: SourceRunner
    store: Store
    clock: SteppedClock
    config: Config

    def clocks(self) -> dict[tuple[str, Metric], ClockState]:
        """Every stored clock's state by (conversation, metric)."""
        return {(c.conversation, c.metric): c.state for c in self.store.clocks()}


def _config(source: dict[str, Any]) -> Config:
    return parse_config({
        "sources": [source],
        "policies": [
            {"name": "social", "match": {"kinds": ["mastodon"]}, "first_response": "6m"},
            {"name": "desk", "match": {"kinds": ["zendesk"]}, "first_response": "10m"},
        ],
    })


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client session per test."""
    async with aiohttp.ClientSession() as client:
        yield client


async def _rig(source: dict[str, Any], clock: SteppedClock, tmp_path: Path,
               session: aiohttp.ClientSession) -> Rig:
    config = _config(source)
    store = Store.open(f"sqlite:///{tmp_path}/rw.db")
    store.register_sources([(s.name, s.kind) for s in config.sources])
    settings = config.sources[0]
    connector = registry()[settings.kind](settings)
    runner = SourceRunner(settings, connector, store, Evaluator(config, store), session,
                          lookback=86400, now=clock)
    return Rig(runner, store, clock, config)


@pytest.fixture
async def social(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[
        tuple[Rig, MastodonWorld, MastodonFake]]:
    """A runner polling a served Mastodon fake with one customer account."""
    clock = SteppedClock(START)
    world = MastodonWorld(now=clock)
    fake = MastodonFake(world)
    async with serve(fake.app()) as url:
        rig = await _rig({"name": "acme-mastodon", "kind": "mastodon", "base_url": url,
                          "token": "fake-token", "poll_every": "10s"}, clock, tmp_path, session)
        yield rig, world, fake
        rig.store.close()


async def test_poll_stores_each_event_once(social: tuple[Rig, MastodonWorld, MastodonFake]) -> None:
    """A poll stores the thread and evaluates it; polling again stores nothing more."""
    rig, world, _ = social
    customer = world.add_account("casey", "Casey")
    mention = world.post(customer, "@acme my parcel?", at=START - timedelta(minutes=9))
    world.post(world.brand_id, "@casey on its way", at=START - timedelta(minutes=5),
               in_reply_to_id=mention)
    first = await rig.runner.poll_once()
    assert first.error is None
    assert first.new_events == 2
    assert rig.clocks() == {(mention, Metric.FIRST_RESPONSE): ClockState.MET}
    rig.clock.advance(30)
    again = await rig.runner.poll_once()
    assert again.new_events == 0
    assert rig.store.counts()["events"] == 2


async def test_failing_source_is_logged_once_and_recovers(
    social: tuple[Rig, MastodonWorld, MastodonFake], caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 is logged once however often it repeats, stored as health, and recovery once."""
    rig, _, fake = social
    fake.token = "rotated"
    with caplog.at_level(logging.INFO, logger="monitor.runner"):
        for _ in range(3):
            outcome = await rig.runner.poll_once()
            assert outcome.error is not None
            assert "credentials refused" in outcome.error
            rig.clock.advance(60)
        state = rig.store.source_state("acme-mastodon")
        assert state.degraded
        assert state.failing_since == START
        assert "fake-token" not in (state.last_error or "")
        fake.token = "fake-token"
        assert (await rig.runner.poll_once()).error is None
    failing = [r for r in caplog.records if " failing: " in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(failing) == 1
    assert len(recovered) == 1
    healthy = rig.store.source_state("acme-mastodon")
    assert healthy.failing_since is None
    assert not healthy.degraded


Social = tuple[Rig, MastodonWorld, MastodonFake]


async def test_rate_limit_storm_is_waited_out(social: Social) -> None:
    """A storm of 429s reschedules at Retry-After each time, marks nothing failing."""
    rig, world, fake = social
    customer = world.add_account("casey")
    world.post(customer, "@acme hello", at=START - timedelta(minutes=1))
    fake.controls.faults.extend(Fault(429, retry_after=7) for _ in range(5))
    for _ in range(5):
        outcome = await rig.runner.poll_once()
        assert outcome.retry_in == 7
        assert outcome.new_events == 0
    assert rig.store.source_state("acme-mastodon").failing_since is None
    assert (await rig.runner.poll_once()).new_events == 1


async def test_connection_reset_mid_page_is_retried(
    social: tuple[Rig, MastodonWorld, MastodonFake],
) -> None:
    """A connection dropped mid-page stores nothing, backs off, and the retry stores the page."""
    rig, world, fake = social
    customer = world.add_account("casey")
    world.post(customer, "@acme hello", at=START - timedelta(minutes=1))
    fake.controls.faults.append(Fault(reset=True))
    outcome = await rig.runner.poll_once()
    assert outcome.error is not None
    assert outcome.retry_in == rig.runner.settings.poll_every
    assert rig.store.counts()["events"] == 0
    assert not rig.store.source_state("acme-mastodon").degraded
    assert (await rig.runner.poll_once()).new_events == 1


async def test_html_page_degrades_then_continues(
    social: tuple[Rig, MastodonWorld, MastodonFake],
) -> None:
    """An HTML page stores nothing and marks the source degraded; the next page resumes."""
    rig, world, fake = social
    customer = world.add_account("casey")
    for minute in range(3):
        world.post(customer, f"@acme ping {minute}", at=START - timedelta(minutes=5 - minute))
    fake.controls.faults.append(
        Fault(200, body="<html>Bad gateway</html>", content_type="text/html"))
    outcome = await rig.runner.poll_once()
    assert outcome.error is not None
    assert "expected JSON" in outcome.error
    assert rig.store.source_state("acme-mastodon").degraded
    assert rig.store.counts()["events"] == 0
    assert (await rig.runner.poll_once()).new_events == 3
    assert not rig.store.source_state("acme-mastodon").degraded


async def test_breach_is_confirmed_only_past_the_watermark(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Zendesk's last minute is unknown: a reply 1 s before the deadline never shows as breached."""
    clock = SteppedClock(START)
    world = ZendeskWorld(now=clock)
    fake = ZendeskFake(world, rate_limit=None)
    customer = world.add_user("Dana", "end-user")
    agent = world.add_user("Kim", "agent")
    late = world.create_ticket(requester_id=customer, subject="late", body="help",
                               at=START - timedelta(minutes=30))
    tight = world.create_ticket(requester_id=customer, subject="tight", body="help",
                                at=START - timedelta(minutes=30))
    async with serve(fake.app()) as url:
        rig = await _rig({"name": "desk", "kind": "zendesk", "subdomain": "acme",
                          "email": "ops@acme.example", "token": "fake-token", "base_url": url,
                          "requests_per_minute": 1000}, clock, tmp_path, session)
        seen: set[ClockState] = set()
        # The deadline is 10 minutes after each ticket; step to 5 s past it.
        clock.advance(-30 * 60 + 10 * 60 + 5)
        world.add_comment(tight, author_id=agent, body="done", public=True,
                          at=clock() - timedelta(seconds=6))
        for _ in range(8):
            assert (await rig.runner.poll_once()).error is None
            states = rig.clocks()
            seen.add(states[(str(tight), Metric.FIRST_RESPONSE)])
            if clock() < START - timedelta(minutes=20) + timedelta(seconds=60):
                # The watermark is still before both deadlines: nothing is breached yet.
                assert states[(str(late), Metric.FIRST_RESPONSE)] is ClockState.OVERDUE
            clock.advance(15)
        states = rig.clocks()
        assert states[(str(late), Metric.FIRST_RESPONSE)] is ClockState.BREACHED
        assert states[(str(tight), Metric.FIRST_RESPONSE)] is ClockState.MET
        assert ClockState.BREACHED not in seen
        breaches = [t for t in rig.store.transitions() if t.clock.state is ClockState.BREACHED]
        assert [t.clock.conversation for t in breaches] == [str(late)]
        rig.store.close()


def _desk_events(conversation: str, start: datetime) -> list[Event]:
    """A customer message, a pause in pending, an agent reply and a second question."""
    def event(number: int, minutes: int, kind: EventKind, **values: Any) -> Event:
        return Event("desk", conversation, f"{conversation}-{number}",
                     start + timedelta(minutes=minutes), kind, **values)
    return [
        event(1, 0, EventKind.MESSAGE, actor=Actor.CUSTOMER, author="Dana", text="help"),
        event(2, 0, EventKind.UPDATE, fields={"priority": "high"}),
        event(3, 20, EventKind.STATUS, status=Status.PENDING),
        event(4, 90, EventKind.MESSAGE, actor=Actor.AGENT, author="Kim", text="done?"),
        event(5, 200, EventKind.STATUS, status=Status.OPEN),
        event(6, 200, EventKind.MESSAGE, actor=Actor.CUSTOMER, author="Dana", text="no"),
    ]


def test_evaluate_batch_saves_what_evaluate_dirty_saves(tmp_path: Path) -> None:
    """Evaluating a chain from memory stores the clocks and transitions of a store read."""
    config = parse_config({
        "calendars": {"office": {"timezone": "America/New_York",
                                 "hours": {"mon-fri": "09:00-12:30, 13:30-18:00"}}},
        "sources": [{"name": "desk", "kind": "zendesk", "subdomain": "acme",
                     "email": "ops@acme.example", "token": "t"}],
        "policies": [{"name": "desk", "calendar": "office", "first_response": "1h",
                      "next_response": "2h", "resolution": {"high": "1d", "normal": "3d"}}],
    })
    before = START - timedelta(days=3)
    earlier = _desk_events("old", before)[:2]  # stored before the chain
    pages = [
        _desk_events("old", before)[2:] + _desk_events("a", START)[:3],
        _desk_events("a", START)[3:] + _desk_events("b", START + timedelta(hours=1)),
    ]
    now = START + timedelta(days=1)
    results = {}
    for way in ("dirty", "batch"):
        store = Store.open(f"sqlite:///{tmp_path}/{way}.db")
        store.register_sources([("desk", "zendesk")])
        store.ingest("desk", earlier, {}, None, now=now)
        Evaluator(config, store).evaluate_dirty(now=now)
        chain: list[Event] = []
        for number, page in enumerate(pages):
            chain += store.ingest("desk", page, {"page": number}, now, now=now).events
        evaluator = Evaluator(config, store)
        if way == "batch":
            fresh: dict[tuple[str, str], list[Event]] = {}
            for event in chain:
                fresh.setdefault((event.source, event.conversation), []).append(event)
            transitions = evaluator.evaluate_batch(fresh, now=now, source="desk")
        else:
            transitions = evaluator.evaluate_dirty(now=now, source="desk")
        results[way] = (transitions, store.clocks(), store.dirty_conversations())
        store.close()
    assert results["batch"] == results["dirty"]
    transitions, clocks, dirty = results["batch"]
    assert {c.conversation for c in clocks} == {"old", "a", "b"}
    assert transitions
    assert dirty == []


async def _desk_backfill(
    tmp_path: Path, session: aiohttp.ClientSession, name: str, *,
    helper_url: str | None = None,
) -> tuple[Rig, int, int]:
    """Backfill 40 Zendesk tickets over many small pages, evaluating every 12 events;
    return the rig, the poll's changes and the conversations given to a helper process
    opened on ``helper_url`` (None: no helper)."""
    clock = SteppedClock(START)
    world = ZendeskWorld(now=clock)
    fake = ZendeskFake(world, rate_limit=None, event_page_size=9)
    customer = world.add_user("Dana", "end-user")
    agent = world.add_user("Kim", "agent")
    for number in range(40):
        at = START - timedelta(hours=6) + timedelta(minutes=7 * number)
        ticket = world.create_ticket(requester_id=customer, subject=f"t{number}", body="help",
                                     at=at)
        if number % 3:  # a third go unanswered, some answered late
            world.add_comment(ticket, author_id=agent, body="on it", public=True,
                              at=at + timedelta(minutes=4 * (number % 5)))
    async with serve(fake.app()) as url:
        folder = tmp_path / name
        folder.mkdir()
        rig = await _rig({"name": "desk", "kind": "zendesk", "subdomain": "acme",
                          "email": "ops@acme.example", "token": "fake-token", "base_url": url,
                          "requests_per_minute": 1000}, clock, folder, session)
        rig.runner.evaluate_every = 12
        helper = None if helper_url is None else EvaluationProcess(rig.config, helper_url)
        try:
            outcome = await rig.runner.poll_once(since=START - timedelta(days=1), helper=helper)
        finally:
            if helper is not None:
                helper.close()
    assert outcome.error is None
    assert outcome.pages > 10
    return rig, outcome.changes, 0 if helper is None else helper.given


def _clocks(store: Store) -> list[tuple[Any, ...]]:
    """Every stored clock, as what a reader of the board or a report sees of it."""
    return sorted((c.conversation, c.metric, c.cycle, c.state, c.due_at, c.stopped_at)
                  for c in store.clocks())


def _assert_transitions_tell_the_story(store: Store) -> None:
    """Each clock's transitions start from nothing, each from the state the one before
    reached, and end in the clock's stored state: no step is missing or goes back."""
    chains: dict[tuple[str, Metric, int], list[Any]] = {}
    for t in sorted(store.transitions(), key=lambda t: t.at):
        chains.setdefault((t.clock.conversation, t.clock.metric, t.clock.cycle), []).append(t)
    assert sorted(chains) == sorted((c.conversation, c.metric, c.cycle) for c in store.clocks())
    states = {(c.conversation, c.metric, c.cycle): c.state for c in store.clocks()}
    for key, chain in chains.items():
        assert chain[0].previous is None, key
        for before, after in itertools.pairwise(chain):
            assert after.previous is before.clock.state, key
        assert chain[-1].clock.state is states[key], key


async def test_backfill_evaluated_alongside_saves_what_one_process_saves(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A second process evaluating a long chain while the runner stores it leaves the
    clocks the runner alone leaves, nothing dirty, and transitions without a lie."""
    alone, alone_changes, _ = await _desk_backfill(tmp_path, session, "alone")
    url = f"sqlite:///{tmp_path}/helped/rw.db"
    helped, helped_changes, given = await _desk_backfill(tmp_path, session, "helped",
                                                         helper_url=url)
    assert given > 0
    assert _clocks(helped.store) == _clocks(alone.store)
    assert len(helped.clocks()) == 40
    assert helped.store.dirty_conversations() == alone.store.dirty_conversations() == []
    for rig, changes in ((alone, alone_changes), (helped, helped_changes)):
        _assert_transitions_tell_the_story(rig.store)
        assert changes == len(rig.store.transitions())
    for rig in (alone, helped):
        rig.store.close()


async def test_backfill_evaluates_here_when_the_second_process_fails(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A helper that cannot open the store is logged, and the runner evaluates it all."""
    alone, _, _ = await _desk_backfill(tmp_path, session, "alone")
    missing = f"sqlite:///{tmp_path}/nowhere/rw.db"  # a folder that does not exist
    with caplog.at_level(logging.WARNING):
        helped, changes, given = await _desk_backfill(tmp_path, session, "helped",
                                                      helper_url=missing)
    assert given > 0
    failures = [r for r in caplog.records if "second process failed" in r.getMessage()]
    assert len(failures) == 1
    assert _clocks(helped.store) == _clocks(alone.store)
    assert helped.store.dirty_conversations() == []
    _assert_transitions_tell_the_story(helped.store)
    assert changes == len(helped.store.transitions())
    for rig in (alone, helped):
        rig.store.close()
