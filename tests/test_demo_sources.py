"""Tests `replywatch demo --sources`: each kind's fake, fed by the model, read by its connector."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import BUILTIN
from connectors.fakes._base import SteppedClock, serve
from monitor.cli import main
from monitor.config import parse_config
from monitor.demo import (
    DEFAULT_SOURCES,
    DEMO_SOURCES,
    FRESHDESK_CREDITS_PER_MINUTE,
    DemoSource,
    SocialPost,
    SocialSource,
    TrafficModel,
    demo_config,
    demo_environment,
    make_sources,
    parse_source_kinds,
)
from monitor.events import Actor, ClockState, Event, EventKind, Metric, Status
from monitor.service import Service
from monitor.storage import Store

# A Monday noon in New York: a busy hour for every source.
END = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
KINDS = sorted(DEMO_SOURCES)
DESKS = sorted(kind for kind, source in DEMO_SOURCES.items() if source.stream == "desk")
KNOWN = ", ".join(KINDS)


@dataclass
class Demo:
    """One source's fake served on a stepped clock, its model, and the pipeline reading it."""

    clock: SteppedClock
    source: DemoSource
    model: TrafficModel
    service: Service
    store: Store

    async def poll_after(self, seconds: float) -> None:
        """Let ``seconds`` pass, then poll the source as the scheduler would."""
        self.clock.advance(seconds)
        await self.service.runners[self.source.name].poll_once()

    def events(self) -> list[Event]:
        """Every stored event of the source's conversations that have clocks."""
        keys = {(c.source, c.conversation) for c in self.store.clocks(source=self.source.name)}
        found: list[Event] = []
        for key in keys:
            stored = self.store.conversation(key)
            assert stored is not None
            found += stored[1]
        return found


@pytest.fixture
async def demo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Demo]:
    """The kind given as the test's parameter, with ``history`` of traffic backfilled at END."""
    kind, history = request.param
    clock = SteppedClock(END)
    source = make_sources([kind], clock)[0]
    model = TrafficModel([source], seed=5)
    model.generate_history(END - history, END)
    store = Store.open(f"sqlite:///{tmp_path}/demo.db")
    try:
        async with serve(source.app()) as url:
            config = parse_config(demo_config([source.settings(url)]))
            async with Service(config, store, now=clock) as service:
                # A source that had to wait for its rate limit would wait forever here: the
                # clock does not move by itself.
                await asyncio.wait_for(service.backfill(END - 2 * history), timeout=60)
                yield Demo(clock, source, model, service, store)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param("zendesk", ("zendesk",), id="one"),
        pytest.param("zendesk,mastodon,bluesky", ("zendesk", "mastodon", "bluesky"), id="three"),
        pytest.param(" X , Zendesk,x,", ("x", "zendesk"), id="spaces-case-repeats"),
    ],
)
def test_parse_source_kinds_reads_a_list(text: str, kinds: tuple[str, ...]) -> None:
    """Kinds are comma-separated, case and spaces ignored, each kept once, in order."""
    assert parse_source_kinds(text) == kinds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", f"name at least one source kind (known: {KNOWN})", id="empty"),
        pytest.param(" , ", f"name at least one source kind (known: {KNOWN})", id="only-commas"),
        pytest.param("zendesk,slack", f"unknown source kind 'slack' (known: {KNOWN})",
                     id="unknown"),
    ],
)
def test_parse_source_kinds_names_the_known_kinds(text: str, message: str) -> None:
    """A list without a kind, or with an unknown one, is refused with every known kind."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_source_kinds(text)


def test_cli_refuses_an_unknown_kind_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``demo --sources`` with an unknown kind exits 2 with one line listing the known kinds."""
    assert main(["demo", "--sources", "zendesk,slack"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("replywatch: replywatch demo: argument --sources: unknown source kind "
                   f"'slack' (known: {KNOWN})\n")


def test_every_built_in_kind_is_selectable() -> None:
    """The demo has a fake adapter for every connector the registry builds in."""
    assert set(DEMO_SOURCES) == set(BUILTIN)
    assert {source.kind for source in make_sources(KINDS, SteppedClock(END))} == set(BUILTIN)


async def test_default_demo_is_a_desk_and_two_social_networks() -> None:
    """By default the demo serves Zendesk, Mastodon and Bluesky, each under its own policy."""
    assert DEFAULT_SOURCES == ("zendesk", "mastodon", "bluesky")
    async with demo_environment(seed=1) as env:
        assert [(s.name, s.kind) for s in env.config.sources] == [
            ("acme-zendesk", "zendesk"), ("acme-mastodon", "mastodon"),
            ("acme-bluesky", "bluesky")]
        assert set(env.urls) == {"acme-zendesk", "acme-mastodon", "acme-bluesky"}
        social, desk = env.config.policies
        assert social.match.kinds == ("bluesky", "mastodon")
        assert desk.match.sources == ("acme-zendesk",)


async def test_an_unknown_kind_serves_nothing() -> None:
    """The environment refuses an unknown kind before serving anything."""
    with pytest.raises(ValueError, match="unknown source kind 'slack'"):
        async with demo_environment(seed=1, sources=("zendesk", "slack")):
            pass


def test_sources_without_desks_or_socials_get_only_their_policy() -> None:
    """A social-only demo has no desk policy; a desk-only one no social policy."""
    clock = SteppedClock(END)
    social = demo_config([s.settings("http://127.0.0.1:1") for s in make_sources(["x"], clock)])
    desk = demo_config([s.settings("http://127.0.0.1:1")
                        for s in make_sources(["github", "zammad"], clock)])
    assert [p["name"] for p in social["policies"]] == ["social"]
    assert [(p["name"], p["match"]) for p in desk["policies"]] == [
        ("desk", {"sources": ["acme-github", "acme-zammad"]})]


@pytest.mark.parametrize("demo", [(kind, timedelta(days=1)) for kind in KINDS], ids=KINDS,
                         indirect=True)
async def test_each_kind_backfills_its_traffic_and_breaches_in_two_minutes(demo: Demo) -> None:
    """A day goes through the real connector; openers are at risk at once, breached in 2 min."""
    name = demo.source.name
    clocks = demo.store.clocks(source=name)
    assert any(c.metric is Metric.FIRST_RESPONSE and c.state is ClockState.MET for c in clocks)
    assert demo.store.state_counts().get(ClockState.AT_RISK, 0) >= 1
    await demo.poll_after(60)
    await demo.poll_after(60)
    breached = [c for c in demo.store.clocks(source=name) if c.state is ClockState.BREACHED
                and c.due_at is not None and END < c.due_at <= END + timedelta(minutes=2)]
    assert breached, f"{name}: no opener breached in the first two minutes"


@pytest.mark.parametrize("demo", [(kind, timedelta(days=1)) for kind in DESKS], ids=DESKS,
                         indirect=True)
async def test_desk_adapters_write_bots_notes_and_statuses(demo: Demo) -> None:
    """Each desk's events show the model's bot answers, internal notes and solved tickets."""
    events = demo.events()
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    assert {e.actor for e in messages} == {Actor.CUSTOMER, Actor.AGENT, Actor.BOT}
    has_notes = demo.source.kind != "github"  # GitHub issues have no internal notes
    assert any(not e.public for e in messages) is has_notes
    assert any(e.kind is EventKind.STATUS and e.status in (Status.SOLVED, Status.CLOSED)
               for e in events)


@pytest.mark.parametrize(
    "demo",
    [pytest.param(("freshdesk", timedelta(days=7)), id="freshdesk-credits"),
     pytest.param(("helpscout", timedelta(days=7)), id="helpscout-requests"),
     pytest.param(("x", timedelta(days=7)), id="x-mention-reach")],
    indirect=True,
)
async def test_a_week_fits_the_sources_budget(demo: Demo) -> None:
    """A week backfills without waiting for the rate limit, and every conversation arrives."""
    runner = demo.service.runners[demo.source.name]
    assert runner.polls == 1, "the backfill had to wait for the rate limit"
    requests = demo.source.controls.requests
    if demo.source.kind == "freshdesk":
        embeds = sum(len(r.query.get("include", "").split(",")) for r in requests
                     if r.path == "/api/v2/tickets" and r.query.get("include"))
        assert len(requests) + 2 * embeds <= FRESHDESK_CREDITS_PER_MINUTE
    planned = {a.thread for a in demo.model.applied if isinstance(a, SocialPost)} | {
        a.ticket for a in demo.model.applied if not isinstance(a, SocialPost)}
    assert demo.store.counts()["conversations"] == len(planned)


@pytest.mark.parametrize(
    "demo",
    [(kind, timedelta(hours=2)) for kind, source in sorted(DEMO_SOURCES.items())
     if source.stream == "social"],
    ids=[kind for kind, source in sorted(DEMO_SOURCES.items()) if source.stream == "social"],
    indirect=True,
)
async def test_late_arrivals_flag_matches_the_connector(demo: Demo) -> None:
    """A mention written now but dated 5 minutes ago is read only where the flag says so."""
    source = demo.source
    assert isinstance(source, SocialSource)
    await demo.poll_after(30)
    before = demo.store.counts()["conversations"]
    late = SocialPost(demo.clock() - timedelta(minutes=5), source.name, 10**9, 10**9 + 1, 0,
                      False, "is anyone there?")
    source.post(late, late.at)
    await demo.poll_after(60)
    await demo.poll_after(60)
    seen = demo.store.counts()["conversations"] == before + 1
    assert seen is source.late_arrivals_seen
