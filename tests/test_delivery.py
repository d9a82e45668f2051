"""Tests of alert delivery: the outbox drained to local receivers, grouped, once, at pace."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import database_urls
from receivers import SECRET, Receiver, Reply, receive, target_for, unused_url
from sqlalchemy import create_engine, text

from connectors import registry
from connectors.fakes._base import Fault, SteppedClock, serve
from connectors.fakes.mastodon import MastodonFake, MastodonWorld
from monitor.alerts import AlertContext, decide, message_key
from monitor.cli import main
from monitor.config import AlertTargetConfig, parse_config
from monitor.delivery import RETRY_CAP, DeliveryWorker, SendResult
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
from monitor.pipeline import Evaluator
from monitor.runner import SourceRunner
from monitor.service import Service
from monitor.storage import EvaluationRecord, OutboxItem, Store
from monitor.storage.outbox import Claim

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SOURCE = "social"


# -- fixtures and helpers --------------------------------------------------------------------


def _engine_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    schema = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_engine_url(request.param))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in request.param else "?"
    try:
        yield f"{request.param}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite store file in the test's directory."""
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """An open SQLite store with the source ``social`` registered."""
    opened = Store.open(sqlite_url)
    opened.register_sources([(SOURCE, "mastodon")])
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client session per test."""
    async with aiohttp.ClientSession() as client:
        yield client


def clock_of(
    conversation: str, state: ClockState = ClockState.BREACHED, *, late: int = 60,
    stopped_at: datetime | None = None, due_at: datetime = T0,
) -> Clock:
    """A six-minute first-response clock of ``conversation``, ``late`` seconds past due."""
    return Clock(
        source=SOURCE, conversation=conversation, policy="social",
        metric=Metric.FIRST_RESPONSE, cycle=0, state=state,
        started_at=due_at - timedelta(minutes=6), due_at=due_at, stopped_at=stopped_at,
        target_seconds=360, elapsed_seconds=360 + late, paused_seconds=0,
        priority=Priority.NORMAL, at_risk_at=due_at - timedelta(seconds=90),
    )


def breach(conversation: str, *, late: int = 60, at: datetime = T0) -> Transition:
    """A breach of ``conversation`` confirmed at ``at``."""
    return Transition(clock_of(conversation, late=late), ClockState.OVERDUE, at)


def at_risk(conversation: str, *, at: datetime = T0) -> Transition:
    """A clock of ``conversation`` going at risk at ``at``."""
    return Transition(clock_of(conversation, ClockState.AT_RISK, late=-90), ClockState.RUNNING, at)


def queue(store: Store, transitions: Sequence[Transition], targets: Sequence[AlertTargetConfig],
          now: datetime, **contexts: AlertContext) -> list[OutboxItem]:
    """Decide these transitions for ``targets`` and queue the items, as the pipeline does."""
    items = decide(transitions, {(SOURCE, k): v for k, v in contexts.items()}, targets, now=now)
    store.enqueue(items)
    return items


def conversations(receiver: Receiver, requests: Sequence[Any] | None = None) -> list[str]:
    """The conversations named in a webhook receiver's messages, in order."""
    chosen = receiver.requests if requests is None else requests
    return [item["conversation"] for request in chosen for item in request.json()["items"]]


def outcomes(results: Sequence[SendResult]) -> list[tuple[str, str, int]]:
    """(target, outcome, items) of each send."""
    return [(r.target, r.outcome, r.items) for r in results]


# -- the pipeline decides, the worker delivers -----------------------------------------------


async def test_the_pipeline_decides_each_edge_once_and_the_worker_delivers_one_message(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """At risk, breach and late reply are decided at evaluation; re-evaluating adds nothing."""
    async with receive("webhook") as hook:
        config = parse_config({
            "sources": [{"name": SOURCE, "kind": "mastodon", "base_url": "https://m.test",
                         "token": "t"}],
            "policies": [{"name": "social", "match": {"kinds": ["mastodon"]},
                          "first_response": "6m"}],
            "alerts": [{"name": "hook", "kind": "webhook", "url": hook.url}],
        })
        evaluator = Evaluator(config, store)
        question = Event(source=SOURCE, conversation="c1", id="e1", at=T0,
                         kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, author="casey",
                         text="<!channel> where\nis my parcel? @everyone",
                         url="https://m.test/@casey/1")
        store.ingest(SOURCE, [question], {}, T0, now=T0)
        evaluator.evaluate_dirty(now=T0 + timedelta(minutes=1))
        evaluator.evaluate_due(SOURCE, now=T0 + timedelta(minutes=5))
        evaluator.evaluate_keys([(SOURCE, "c1")], now=T0 + timedelta(minutes=5, seconds=10))
        assert store.outbox_counts() == {"pending": 1}
        store.ingest(SOURCE, [], {}, T0 + timedelta(minutes=7), now=T0 + timedelta(minutes=7))
        evaluator.evaluate_due(SOURCE, now=T0 + timedelta(minutes=7))
        reply = Event(source=SOURCE, conversation="c1", id="e2", at=T0 + timedelta(minutes=8),
                      kind=EventKind.MESSAGE, actor=Actor.AGENT, text="on its way")
        store.ingest(SOURCE, [reply], {}, T0 + timedelta(minutes=8),
                     now=T0 + timedelta(minutes=8))
        evaluator.evaluate_dirty(now=T0 + timedelta(minutes=8))
        evaluator.evaluate_keys([(SOURCE, "c1")], now=T0 + timedelta(minutes=9))
        assert store.outbox_counts() == {"pending": 3}

        clock = SteppedClock(T0 + timedelta(minutes=9))
        results = await DeliveryWorker(store, config.alerts, session, now=clock).drain()
        assert outcomes(results) == [("hook", "delivered", 3)]
        [message] = hook.payloads()
        assert message["summary"] == "1 breached, 1 at risk, 1 recovered"
        items = message["items"]
        assert [(i["kind"], i["late_seconds"]) for i in items] == [
            ("breached", 60), ("at_risk", None), ("recovered", 120),
        ]
        assert items[0]["snippet"] == "<!channel> where is my parcel? @everyone"
        assert items[0]["url"] == "https://m.test/@casey/1"
        assert store.outbox_counts() == {"delivered": 3}


async def test_alerts_within_the_window_go_out_as_one_message_most_urgent_first(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Four breaches and two at-risk clocks within 30 s: one message each target, once."""
    async with receive("slack") as slack, receive("webhook") as hook:
        targets = [target_for(slack, "slack"), target_for(hook, "hook")]
        clock = SteppedClock(T0)
        worker = DeliveryWorker(store, targets, session, now=clock)
        queue(store, [breach("b1", late=60), at_risk("a1")], targets, T0)
        queue(store, [breach("b2", late=600), breach("b3", late=5)], targets,
              T0 + timedelta(seconds=10))
        queue(store, [at_risk("a2"), breach("b4", late=3600)], targets,
              T0 + timedelta(seconds=20))
        clock.advance(29)
        assert await worker.drain() == []
        clock.advance(1)
        results = await worker.drain()
        assert sorted(outcomes(results)) == [("hook", "delivered", 6), ("slack", "delivered", 6)]
        assert [p["text"] for p in slack.payloads()] == ["replywatch: 4 breached, 2 at risk"]
        assert conversations(hook) == ["b4", "b2", "b1", "b3", "a1", "a2"]
        clock.advance(60)
        assert await worker.drain() == []
        assert len(slack.requests) == len(hook.requests) == 1


# -- failures ----------------------------------------------------------------------------------


async def test_a_429_is_retried_after_retry_after_with_the_same_key(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Retry-After is honoured to the second; the retry carries the same idempotency key."""
    async with receive("webhook") as hook:
        hook.script(Reply(429, retry_after=2))
        target = target_for(hook, "hook", group_window=1)
        clock = SteppedClock(T0)
        worker = DeliveryWorker(store, [target], session, now=clock)
        queue(store, [breach("b1"), breach("b2")], [target], T0)
        clock.advance(1)
        [first] = await worker.drain()
        assert (first.outcome, first.retry_at) == ("retry", T0 + timedelta(seconds=3))
        clock.advance(1.5)
        assert await worker.drain() == []
        clock.advance(0.5)
        assert outcomes(await worker.drain()) == [("hook", "delivered", 2)]
        keys = [request.header("Idempotency-Key") for request in hook.requests]
        assert len(keys) == 2
        assert keys[0] == keys[1] == first.key
        clock.advance(60)
        assert await worker.drain() == []
        assert store.outbox_counts() == {"delivered": 2}


async def test_a_500_is_retried_with_back_off_then_delivered_once(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """A 5xx puts the group back for two seconds, then the same group is delivered."""
    async with receive("slack") as slack:
        slack.script(Reply.text(500, "internal_error"))
        target = target_for(slack, "slack", group_window=1)
        clock = SteppedClock(T0 + timedelta(seconds=1))
        worker = DeliveryWorker(store, [target], session, now=clock)
        queue(store, [breach("b1")], [target], T0)
        [failed] = await worker.drain()
        assert (failed.outcome, failed.reason) == ("retry", "HTTP 500: internal_error")
        assert store.waiting_alerts()[0].last_error == "HTTP 500: internal_error"
        clock.advance(2)
        assert outcomes(await worker.drain()) == [("slack", "delivered", 1)]
        clock.advance(60)
        assert await worker.drain() == []
        assert len(slack.requests) == 2


async def test_a_410_fails_at_once_with_the_reason_and_check_shows_it(
    sqlite_url: str, store: Store, session: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A permanent refusal is kept as failed with Slack's reason, shown by check, no secret."""
    async with receive("slack") as slack:
        slack.script(Reply.text(410, "channel_is_archived"))
        target = target_for(slack, "slack", group_window=1)
        clock = SteppedClock(T0 + timedelta(seconds=1))
        worker = DeliveryWorker(store, [target], session, now=clock)
        queue(store, [breach("b1"), breach("b2"), at_risk("a1")], [target], T0)
        with caplog.at_level(logging.INFO):
            [failed] = await worker.drain()
            clock.advance(3600)
            assert await worker.drain() == []
        assert (failed.outcome, failed.reason) == ("failed", "HTTP 410: channel_is_archived")
        assert len(slack.requests) == 1
        assert {entry.last_error for entry in store.failed_alerts()} == {
            "HTTP 410: channel_is_archived"
        }
        config = tmp_path / "config.toml"
        config.write_text('[[alerts]]\nname = "slack"\nkind = "slack"\nurl = "${RW_SLACK}"\n')
        monkeypatch.setenv("RW_SLACK", slack.url)
        code = await asyncio.to_thread(
            main, ["--config", str(config), "--database", sqlite_url, "check"]
        )
    out = capsys.readouterr().out
    assert code == 0
    assert "ok      alert outbox: 0 delivered, 0 waiting, 3 failed" in out
    assert ("warn    alert slack: not delivered (2 breached, 1 at risk; latest "
            "2026-03-02T09:00:00Z): HTTP 410: channel_is_archived") in out
    assert SECRET not in out + caplog.text


async def test_a_refused_connection_is_retried_until_the_receiver_listens(
    store: Store, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Connection refused is transient: the group waits and goes out once the port answers."""
    url = unused_url("slack")
    target = target_for(url, "slack", kind="slack", group_window=1)
    clock = SteppedClock(T0 + timedelta(seconds=1))
    worker = DeliveryWorker(store, [target], session, now=clock)
    queue(store, [breach("b1")], [target], T0)
    with caplog.at_level(logging.INFO):
        [refused] = await worker.drain()
    assert refused.outcome == "retry"
    assert refused.reason is not None
    assert refused.reason.startswith("connection failed")
    assert SECRET not in caplog.text + refused.reason
    receiver = Receiver("slack")
    port = int(url.split(":")[2].split("/")[0])
    async with serve(receiver.app(), port=port) as base:
        receiver.base = base
        clock.advance(2)
        assert outcomes(await worker.drain()) == [("slack", "delivered", 1)]
    assert len(receiver.requests) == 1


# -- crashes and outages -----------------------------------------------------------------------


async def test_a_restart_between_decision_and_delivery_delivers_once(
    sqlite_url: str, store: Store, session: aiohttp.ClientSession
) -> None:
    """Alerts decided with the clocks survive a restart and go out once after it."""
    async with receive("webhook") as hook:
        target = target_for(hook, "hook")
        records = [
            EvaluationRecord((SOURCE, name), conversation=_conversation(name), policy="social",
                             clocks=(clock_of(name),))
            for name in ("c1", "c2")
        ]
        store.save_evaluations(
            records, now=T0, decide=lambda t: decide(t, {}, [target], now=T0)
        )
        store.close()
        reopened = Store.open(sqlite_url)
        try:
            clock = SteppedClock(T0 + timedelta(minutes=1))
            worker = DeliveryWorker(reopened, [target], session, now=clock)
            assert outcomes(await worker.drain()) == [("hook", "delivered", 2)]
            clock.advance(60)
            assert await worker.drain() == []
            assert reopened.save_evaluations(
                records, now=clock(), decide=lambda t: decide(t, {}, [target], now=clock())
            ) == []
            assert reopened.outbox_counts() == {"delivered": 2}
        finally:
            reopened.close()
    assert sorted(conversations(hook)) == ["c1", "c2"]


def _conversation(name: str) -> Conversation:
    """A conversation with no attributes."""
    return Conversation(source=SOURCE, id=name)


async def test_a_worker_that_died_mid_send_is_taken_over_after_its_lease(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Rows left sending wait out their lease, then go again as the same message and key."""
    async with receive("webhook") as hook:
        target = target_for(hook, "hook", group_window=1)
        queue(store, [breach("b1"), breach("b2")], [target], T0)
        dead = store.claim_alerts("hook", now=T0 + timedelta(seconds=5), group_window=1,
                                  lease=120)
        assert dead is not None
        assert len(dead.items) == 2
        clock = SteppedClock(T0 + timedelta(seconds=60))
        worker = DeliveryWorker(store, [target], session, now=clock)
        assert await worker.drain() == []
        clock.advance(65)
        [result] = await worker.drain()
        assert (result.outcome, result.items) == ("delivered", 2)
        assert store.mark_delivered(dead, now=clock()) == 0
        assert len(hook.requests) == 1
        assert result.key == message_key("hook", [item.key for item in dead.items])
        assert hook.requests[0].header("Idempotency-Key") == result.key


async def test_a_ten_minute_outage_loses_nothing_and_duplicates_nothing(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Everything decided during the outage goes out when it ends, grouped, each once."""
    async with receive("webhook") as hook:
        target = target_for(hook, "hook")
        clock = SteppedClock(T0)
        worker = DeliveryWorker(store, [target], session, now=clock)
        hook.down = Reply(503, "upstream unavailable")
        decided: list[str] = []
        for step in range(120):  # ten minutes in five-second steps
            if step % 6 == 0:
                names = [f"c{step}-{n}" for n in range(3)]
                decided += names
                queue(store, [breach(name, at=clock()) for name in names], [target], clock())
            await worker.drain()
            clock.advance(5)
        during = len(hook.requests)
        hook.down = None
        for _ in range(int(RETRY_CAP / 5) + 2):
            await worker.drain()
            clock.advance(5)
        after = hook.requests[during:]
    assert during <= 20, "back-off keeps the attempts during the outage few"
    assert len(after) == 2
    assert sorted(conversations(hook, after)) == sorted(decided)
    assert len(decided) == 60
    assert store.outbox_counts() == {"delivered": 60}


# -- pace, quiet hours, repeats ----------------------------------------------------------------


async def test_slack_gets_at_most_one_message_a_second(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Three messages to one Slack webhook go out a second apart; none is refused (429)."""
    async with receive("slack") as slack:
        slack.min_interval = 1.0
        target = target_for(slack, "slack", group_window=0.01)
        worker = DeliveryWorker(store, [target], session, max_items=1)
        now = datetime.now(UTC)
        queue(store, [breach(f"b{n}") for n in range(3)], [target], now - timedelta(seconds=1))
        results = await worker.drain_until_empty(give_up_after=10)
    assert outcomes(results) == [("slack", "delivered", 1)] * 3
    times = [request.at for request in slack.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert min(gaps) >= 1.0
    assert max(gaps) < 2.0, "nothing waits much longer than the pace asks"


async def test_quiet_hours_hold_alerts_until_they_end_then_send_them_together(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Alerts decided in quiet hours wait, then leave as one message when the hours end."""
    async with receive("webhook") as hook:
        target = target_for(hook, "hook",
                            quiet_hours={"hours": "22:00-07:00", "timezone": "UTC"})
        night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
        clock = SteppedClock(night)
        worker = DeliveryWorker(store, [target], session, now=clock)
        for hour in range(8):
            queue(store, [breach(f"n{hour}", at=clock())], [target], clock())
            clock.advance(3600 - 1)
            assert await worker.drain() == []
            clock.advance(1)
        assert clock() == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
        assert outcomes(await worker.drain()) == [("hook", "delivered", 8)]
    assert len(hook.requests) == 1


async def test_an_open_breach_repeats_and_escalates_while_it_stays_open(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """Repeat every 30 min after delivery; escalate once after 45 min; stop when answered."""
    async with receive("webhook") as chat, receive("webhook") as leads:
        targets = [
            target_for(chat, "chat", repeat_every="30m", escalate_to="leads",
                       escalate_after="45m", group_window=1),
            target_for(leads, "leads", on=["source_down"], group_window=1),
        ]
        clock = SteppedClock(T0)
        record = EvaluationRecord((SOURCE, "c1"), conversation=_conversation("c1"),
                                  policy="social", clocks=(clock_of("c1"),))
        store.save_evaluations([record], now=T0,
                               decide=lambda t: decide(t, {}, targets, now=T0))
        worker = DeliveryWorker(store, targets, session, now=clock)
        timeline: list[tuple[int, list[tuple[str, str, int]]]] = []
        for minute in (0, 29, 30, 31, 45, 60, 61):
            clock.value = T0 + timedelta(minutes=minute)
            await worker.decide_repeats()
            clock.advance(1)  # the group window
            timeline.append((minute, outcomes(await worker.drain())))
        answered = clock_of("c1", stopped_at=T0 + timedelta(minutes=62))
        store.save_evaluations(
            [EvaluationRecord((SOURCE, "c1"), _conversation("c1"), "social", (answered,))],
            now=T0 + timedelta(minutes=62),
        )
        clock.value = T0 + timedelta(minutes=120)
        assert await worker.decide_repeats() == 0
    assert timeline == [
        (0, [("chat", "delivered", 1)]),
        (29, []),
        (30, [("chat", "delivered", 1)]),
        (31, []),
        (45, [("leads", "delivered", 1)]),
        (60, [("chat", "delivered", 1)]),
        (61, []),
    ]
    assert [p["items"][0]["repeat"] for p in chat.payloads()] == [0, 1, 2]
    [escalation] = leads.payloads()
    assert escalation["items"][0]["escalated_from"] == "chat"


async def test_a_source_going_down_and_up_is_alerted_once_each(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The runner queues source_down with the first failure and source_up with the recovery."""
    clock = SteppedClock(T0)
    world = MastodonWorld(now=clock)
    fake = MastodonFake(world)
    async with serve(fake.app()) as url, receive("webhook") as hook:
        config = parse_config({
            "sources": [{"name": SOURCE, "kind": "mastodon", "base_url": url,
                         "token": "fake-token"}],
            "alerts": [{"name": "hook", "kind": "webhook", "url": hook.url}],
        })
        store = Store.open(f"sqlite:///{tmp_path}/rw.db")
        try:
            store.register_sources([(SOURCE, "mastodon")])
            settings = config.sources[0]
            runner = SourceRunner(settings, registry()[settings.kind](settings), store,
                                  Evaluator(config, store), session, lookback=3600, now=clock)
            fake.controls.faults.extend([Fault(503), Fault(503)])
            for _ in range(2):
                assert (await runner.poll_once()).error is not None
                clock.advance(10)
            assert (await runner.poll_once()).error is None
            assert (await runner.poll_once()).error is None
            assert store.outbox_counts() == {"pending": 2}
            clock.advance(30)
            worker = DeliveryWorker(store, config.alerts, session, now=clock)
            assert outcomes(await worker.drain()) == [("hook", "delivered", 2)]
        finally:
            store.close()
    [message] = hook.payloads()
    assert message["summary"] == "1 source down, 1 source back up"
    assert [item["kind"] for item in message["items"]] == ["source_down", "source_up"]
    assert "503" in message["items"][0]["error"]


async def test_the_service_starts_the_delivery_worker(store: Store) -> None:
    """``Service.start`` schedules the outbox drain: a queued alert goes out within ticks."""
    async with receive("webhook") as hook:
        config = parse_config({"alerts": [{"name": "hook", "kind": "webhook", "url": hook.url}]})
        now = datetime.now(UTC)
        queue(store, [breach("b1", at=now)], config.alerts, now - timedelta(minutes=1))
        async with Service(config, store) as service:
            service.start(first_poll_in=3600)
            for _ in range(100):
                if hook.requests:
                    break
                await asyncio.sleep(0.05)
        assert conversations(hook) == ["b1"]
        assert store.outbox_counts() == {"delivered": 1}


# -- the outbox's own guarantees ---------------------------------------------------------------


def test_concurrent_claims_never_share_an_alert(database_url: str) -> None:
    """Claimers racing on every engine: one group per target in flight, no row taken twice."""
    stores = [Store.open(database_url) for _ in range(4)]
    try:
        targets = [AlertTargetConfig(name=name, kind="webhook", url="http://127.0.0.1:9/x")
                   for name in ("chat", "other")]
        stores[0].enqueue(decide([breach(f"b{n}") for n in range(50)], {}, targets,
                                 now=T0 - timedelta(hours=1)))
        barrier = threading.Barrier(8)
        claims: list[Claim | None] = []
        lock = threading.Lock()

        def claim(store: Store, target: str) -> None:
            barrier.wait()
            taken = store.claim_alerts(target, now=T0, group_window=30, limit=20)
            with lock:
                claims.append(taken)

        threads = [threading.Thread(target=claim, args=(store, target.name))
                   for store in stores for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        won = [c for c in claims if c is not None]
        assert sorted(c.target for c in won) == ["chat", "other"]
        ids = [row for c in won for row in c.ids]
        assert len(ids) == len(set(ids)) == 40
        chat = next(c for c in won if c.target == "chat")
        assert stores[1].mark_delivered(chat, now=T0) == 20
        following = stores[2].claim_alerts("chat", now=T0, group_window=30, limit=100)
        assert following is not None
        assert len(following.items) == 30
        assert not set(following.ids) & set(ids)
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("database_url", database_urls()[1:], indirect=True)
def test_postgresql_claims_skip_rows_another_transaction_holds(database_url: str) -> None:
    """FOR UPDATE SKIP LOCKED: rows locked elsewhere are left out rather than waited for."""
    with Store.open(database_url) as store:
        target = AlertTargetConfig(name="chat", kind="webhook", url="http://127.0.0.1:9/x")
        items = decide([breach(f"b{n}") for n in range(4)], {}, [target],
                       now=T0 - timedelta(hours=1))
        store.enqueue(items)
        engine = create_engine(_engine_url(database_url))
        try:
            with engine.connect() as other, other.begin():
                other.execute(
                    text("SELECT id FROM alert_outbox WHERE idempotency_key IN (:a, :b) "
                         "FOR UPDATE"),
                    {"a": items[0].key, "b": items[1].key},
                )
                claim = store.claim_alerts("chat", now=T0, group_window=30)
        finally:
            engine.dispose()
    assert claim is not None
    assert sorted(item.key for item in claim.items) == sorted(i.key for i in items[2:])


async def test_alerts_for_removed_targets_and_unreadable_ones_are_failed_not_stuck(
    store: Store, session: aiohttp.ClientSession
) -> None:
    """An alert for a target no longer configured, or one that cannot be read, is failed."""
    async with receive("webhook") as hook:
        target = target_for(hook, "hook", group_window=1)
        queue(store, [breach("b1")], [target], T0)
        store.enqueue([
            OutboxItem("garbled", "hook", "breached", {"kind": "nonsense"}, T0),
            OutboxItem("orphan", "gone", "breached", {}, T0),
        ])
        worker = DeliveryWorker(store, [target], session, now=SteppedClock(T0 + timedelta(1)))
        assert outcomes(await worker.drain()) == [("hook", "delivered", 1)]
    reasons = Counter(entry.last_error for entry in store.failed_alerts())
    assert reasons == {"unreadable alert payload": 1,
                       "no alert target of this name in the config": 1}
    assert conversations(hook) == ["b1"]


async def test_check_sends_a_test_alert_to_every_target_and_reports_each(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--send-test-alert posts one test message per target; a refusal fails the check."""
    async with receive("slack") as slack, receive("discord") as discord:
        discord.script(Reply.json(404, {"message": "Unknown Webhook", "code": 10015}))
        monkeypatch.setenv("RW_SLACK", slack.url)
        monkeypatch.setenv("RW_DISCORD", discord.url)
        config = tmp_path / "config.toml"
        config.write_text(
            '[[alerts]]\nname = "team"\nkind = "slack"\nurl = "${RW_SLACK}"\n'
            '[[alerts]]\nname = "gaming"\nkind = "discord"\nurl = "${RW_DISCORD}"\n'
        )
        os.chmod(config, 0o600)
        code = await asyncio.to_thread(
            main, ["--config", str(config), "--database", sqlite_url, "check",
                   "--send-test-alert"]
        )
    out = capsys.readouterr().out
    assert code == 1
    assert "ok      alert team (slack): test message delivered" in out
    assert ("FAILED  alert gaming (discord): HTTP 404: Unknown Webhook (code 10015)") in out
    assert [p["text"] for p in slack.payloads()] == ["replywatch: test alert"]
    assert SECRET not in out
