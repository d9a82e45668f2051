"""Benchmark: seconds from a deadline to the confirmed breach.

1,000 Mastodon mentions fall due across one minute with no reply; the source is polled
every 30 s and the fake API answers every request in 50 ms. The monitor must confirm
each breach (SLA.md §6: only once the watermark has passed the deadline) through its
deadline refreshes, not the next regular poll. The baseline, measured in the same run,
is what plain 30-second polling alone would give: the wait until the first poll that
starts after each deadline.

    python benchmarks/breach_confirmation.py [--conversations 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.fakes._base import serve  # noqa: E402
from connectors.fakes.mastodon import MastodonFake, MastodonWorld  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from monitor.events import ClockState, Transition  # noqa: E402
from monitor.service import Service  # noqa: E402
from monitor.storage import Store  # noqa: E402

TARGET = 360.0
POLL_EVERY = 30.0
LATENCY = 0.05
SPREAD = 60.0
LEAD = 20.0


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (SLA.md §7)."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[rank - 1]


async def run(conversations: int) -> None:
    """Plant the mentions, run the monitor until every breach is confirmed, print figures."""
    world = MastodonWorld(now=lambda: datetime.now(UTC))
    fake = MastodonFake(world)
    fake.rate_limit = 1_000_000
    fake.controls.latency = LATENCY
    customers = [world.add_account(f"customer{n}") for n in range(100)]
    now = datetime.now(UTC)
    for number in range(conversations):
        due = now + timedelta(seconds=LEAD + SPREAD * number / conversations)
        world.post(customers[number % len(customers)], f"@acme question {number}",
                   at=due - timedelta(seconds=TARGET))
    confirmed: list[Transition] = []

    def collect(transitions: Sequence[Transition]) -> None:
        confirmed.extend(t for t in transitions if t.clock.state is ClockState.BREACHED)

    async with serve(fake.app()) as url:
        config = parse_config({
            "monitor": {"lookback": "1h"},
            "sources": [{"name": "m", "kind": "mastodon", "base_url": url, "token": "fake-token",
                         "poll_every": f"{POLL_EVERY:g}s", "limit": 80}],
            "policies": [{"name": "social", "first_response": f"{TARGET:g}s"}],
        })
        with tempfile.TemporaryDirectory() as folder, \
                Store.open(f"sqlite:///{folder}/rw.db") as store:
            async with Service(config, store, on_transitions=collect) as service:
                service.start()
                started = asyncio.get_running_loop().time()
                poll_starts: list[datetime] = []
                runner = service.runners["m"]
                while len(confirmed) < conversations:
                    if runner.last_poll_started not in (None, *poll_starts[-1:]):
                        poll_starts.append(runner.last_poll_started)  # type: ignore[arg-type]
                    if asyncio.get_running_loop().time() - started > LEAD + SPREAD + 120:
                        break
                    await asyncio.sleep(0.01)
                requests = len(fake.controls.requests)
    delays = [(t.at - t.clock.due_at).total_seconds() for t in confirmed
              if t.clock.due_at is not None]
    regular = [POLL_EVERY * k for k in range(1, 20)]
    baseline = [next(r - d for r in regular if r >= d)
                for d in (LEAD + SPREAD * n / conversations for n in range(conversations))]
    print(f"{len(confirmed)} of {conversations} breaches confirmed, {requests} API requests")
    print(f"baseline  regular {POLL_EVERY:g} s polling only: "
          f"p50 {nearest_rank(baseline, .5):.2f} s, p99 {nearest_rank(baseline, .99):.2f} s")
    if delays:
        print(f"replywatch deadline refreshes: p50 {nearest_rank(delays, .5):.3f} s, "
              f"p90 {nearest_rank(delays, .9):.3f} s, p99 {nearest_rank(delays, .99):.3f} s, "
              f"max {max(delays):.3f} s, mean {statistics.fmean(delays):.3f} s")
        early = [d for d in delays if d <= 0]
        print(f"confirmed before the deadline (must be 0): {len(early)}")
        verdict = "meets" if nearest_rank(delays, .99) < 1.0 else "MISSES"
        print(f"p99 {verdict} the target of under 1 s")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    asyncio.run(run(parser.parse_args().conversations))


if __name__ == "__main__":
    main()
