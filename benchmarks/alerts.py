"""Benchmark: 1,000 breaches decided within ten seconds, delivered to Slack and a webhook.

The breaches are decided through the real path (``Store.save_evaluations`` with the
alert decision in the same transaction), 100 a second for ten seconds. A delivery
worker ticks every second, as ``replywatch run`` schedules it, and drains the outbox to
a local Slack receiver that answers 429 to anything faster than one message a second,
and to a local generic webhook receiver. Reported: how many messages, how long until
everything is delivered, the closest two Slack messages came, and duplicates.

Baselines, measured in the same run against fresh receivers of the same kinds:

- the same message bodies the worker sent, POSTed straight with aiohttp (no outbox,
  no claims, no marks): what the outbox's bookkeeping costs;
- naive per-alert posting, one Slack message per breach as it is decided, no pacing:
  what Slack's limit does to it.

    python benchmarks/alerts.py [--breaches 1000] [--over 10] [--group-window 30]
                                [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# tests/ is put on the path above, which mypy cannot follow.
from receivers import Receiver, receive, target_for  # type: ignore[import-not-found]  # noqa: E402

from monitor.alerts import AlertContext, decide  # noqa: E402
from monitor.config import AlertTargetConfig  # noqa: E402
from monitor.delivery import TICK_EVERY, DeliveryWorker, SendResult  # noqa: E402
from monitor.events import Clock, ClockState, Conversation, Metric, Priority  # noqa: E402
from monitor.notifiers import AlertItem, AlertMessage  # noqa: E402
from monitor.notifiers.slack import slack_payload  # noqa: E402
from monitor.storage import EvaluationRecord, Store  # noqa: E402

SOURCE = "social"


def records(first: int, count: int, now: datetime) -> list[EvaluationRecord]:
    """``count`` conversations, each with a first-response clock breached a minute ago."""
    result = []
    for number in range(first, first + count):
        name = f"mention-{number:05d}"
        due = now - timedelta(seconds=60 + number % 600)
        clock = Clock(
            source=SOURCE, conversation=name, policy="social", metric=Metric.FIRST_RESPONSE,
            cycle=0, state=ClockState.BREACHED, started_at=due - timedelta(minutes=6),
            due_at=due, stopped_at=None, target_seconds=360,
            elapsed_seconds=360 + int((now - due).total_seconds()), paused_seconds=0,
            priority=Priority.NORMAL,
        )
        conversation = Conversation(
            source=SOURCE, id=name, customer=f"@customer{number}", subject=None,
            url=f"https://mastodon.example/@customer{number}/{number}",
        )
        result.append(EvaluationRecord((SOURCE, name), conversation, "social", (clock,)))
    return result


async def decide_breaches(
    store: Store, targets: Sequence[AlertTargetConfig], breaches: int, over: float
) -> tuple[list[float], float]:
    """Decide ``breaches`` in one batch a second over ``over`` seconds; return batch times."""
    batches = max(1, int(over))
    size = -(-breaches // batches)
    loop = asyncio.get_running_loop()
    started = loop.time()
    timings = []
    for batch in range(batches):
        wanted = started + batch * (over / batches)
        await asyncio.sleep(max(0.0, wanted - loop.time()))
        now = datetime.now(UTC)
        chunk = records(batch * size, min(size, breaches - batch * size), now)
        contexts = {
            record.key: AlertContext(customer=record.conversation.customer,
                                     url=record.conversation.url,
                                     snippet="@acme my parcel is late, again!")
            for record in chunk
        }
        begin = time.perf_counter()
        await asyncio.to_thread(
            store.save_evaluations, chunk, now=now,
            decide=functools.partial(decide, contexts=contexts, targets=targets, now=now),
        )
        timings.append(time.perf_counter() - begin)
    return timings, loop.time() - started


@dataclass
class WorkerLog:
    """What the worker did: its sends, when the last one ended, its busy time."""

    results: list[SendResult] = field(default_factory=list)
    last_delivery: float = 0.0
    busy: float = 0.0


async def run_worker(worker: DeliveryWorker, store: Store, log: WorkerLog,
                     decided: asyncio.Event) -> None:
    """Drain every second, as the scheduler's tick does, until all decided is delivered."""
    loop = asyncio.get_running_loop()
    while True:
        begin = time.perf_counter()
        done = await worker.drain()
        if done:
            log.busy += time.perf_counter() - begin
            log.results += done
            log.last_delivery = loop.time()
        if decided.is_set() and not await asyncio.to_thread(store.waiting_targets):
            return
        await asyncio.sleep(TICK_EVERY)


def gaps(receiver: Receiver, start: int = 0) -> list[float]:
    """Seconds between successive requests the receiver got."""
    times = [request.at for request in receiver.requests[start:]]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def post_raw(session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes],
                   pace: float) -> tuple[float, Counter[int]]:
    """POST bodies one after another (``pace`` seconds apart); return time and statuses."""
    statuses: Counter[int] = Counter()
    begin = time.perf_counter()
    for index, body in enumerate(bodies):
        if index and pace:
            await asyncio.sleep(pace)
        async with session.post(url, data=body,
                                headers={"Content-Type": "application/json"}) as response:
            statuses[response.status] += 1
            await response.read()
    return time.perf_counter() - begin, statuses


async def main(breaches: int, over: float, database: str | None, window: float) -> None:
    """Run the benchmark and print its figures."""
    folder = tempfile.TemporaryDirectory()
    store = Store.open(database or f"sqlite:///{folder.name}/alerts.db")
    store.register_sources([(SOURCE, "mastodon")])
    async with receive("slack") as slack, receive("webhook") as hook, \
            aiohttp.ClientSession() as session:
        slack.min_interval = 1.0
        targets = [target_for(slack, "slack", group_window=window),
                   target_for(hook, "hook", group_window=window)]
        worker = DeliveryWorker(store, targets, session)
        log = WorkerLog()
        decided = asyncio.Event()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        ticking = asyncio.create_task(run_worker(worker, store, log, decided))
        timings, deciding = await decide_breaches(store, targets, breaches, over)
        decided.set()
        await ticking
        finished = log.last_delivery - begin
        results = log.results

        per_target = Counter(r.target for r in results if r.outcome == "delivered")
        retries = Counter(r.target for r in results if r.outcome != "delivered")
        delivered_items = Counter[str]()
        for r in results:
            if r.outcome == "delivered":
                delivered_items[r.target] += r.items
        hook_names = [item["conversation"] for p in hook.payloads() for item in p["items"]]
        first_slack = slack.requests[0].at - begin if slack.requests else float("nan")
        slack_gaps = gaps(slack)
        print(f"alerts benchmark: {breaches} breaches decided over {deciding:.1f}s "
              f"({len(timings)} batches; decide + save per batch: "
              f"median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms, "
              f"max {max(timings) * 1000:.0f} ms), group window {window:g}s, worker tick 1s")
        print(f"  outbox -> slack:   {per_target['slack']} messages for "
              f"{delivered_items['slack']} alerts, first after {first_slack:.1f}s, "
              f"retries {retries['slack']}, closest two messages "
              f"{min(slack_gaps, default=float('nan')):.2f}s apart "
              f"(Slack's limit: 1.00s) -> respected: {min(slack_gaps, default=1.0) >= 1.0}")
        print(f"  outbox -> webhook: {per_target['hook']} messages for "
              f"{delivered_items['hook']} alerts, duplicates "
              f"{len(hook_names) - len(set(hook_names))}, missing "
              f"{breaches - len(set(hook_names))}")
        print(f"  all delivered {finished:.1f}s after the first decision "
              f"({finished - deciding:.1f}s after the last); the worker was busy "
              f"{log.busy * 1000:.0f} ms in all (claim, build, send, mark)")

        slack_bodies = [request.body for request in slack.requests]
        hook_bodies = [request.body for request in hook.requests]
        async with receive("slack") as raw_slack, receive("webhook") as raw_hook:
            raw_slack.min_interval = 1.0
            slack_time, slack_statuses = await post_raw(session, raw_slack.url, slack_bodies,
                                                        1.0)
            hook_time, _ = await post_raw(session, raw_hook.url, hook_bodies, 0.0)
        print(f"  baseline, same bodies POSTed raw (no outbox): slack {slack_time:.2f}s "
              f"paced at 1/s ({dict(slack_statuses)}), webhook {hook_time * 1000:.0f} ms")

        naive = [
            slack_payload(AlertMessage(
                target="slack", key=f"naive-{n}",
                items=(AlertItem(kind="breached", at=datetime.now(UTC), source=SOURCE,
                                 conversation=f"mention-{n:05d}", late_seconds=60,
                                 customer=f"@customer{n}"),),
                created_at=datetime.now(UTC),
            ))
            for n in range(breaches)
        ]
        async with receive("slack") as naive_slack:
            naive_slack.min_interval = 1.0
            naive_time, naive_statuses = await post_raw(
                session, naive_slack.url, [json.dumps(p).encode() for p in naive], 0.0
            )
        print(f"  baseline, naive one message per breach, unpaced: {breaches} POSTs in "
              f"{naive_time:.2f}s, accepted {naive_statuses.get(200, 0)}, refused with 429 "
              f"{naive_statuses.get(429, 0)} (lost without an outbox); paced at Slack's "
              f"1/s it would take {breaches - 1}s")
    store.close()
    folder.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breaches", type=int, default=1000)
    parser.add_argument("--over", type=float, default=10.0)
    parser.add_argument("--database", help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--group-window", type=float, default=30.0,
                        help="the targets' group_window in seconds (default: 30)")
    options = parser.parse_args()
    asyncio.run(main(options.breaches, options.over, options.database, options.group_window))
