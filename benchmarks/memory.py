"""Benchmark: resident memory of a running monitor holding 100,000 open conversations.

The store is filled with 100,000 unanswered Mastodon mentions (their clocks running,
deadlines spread over the next hours so at-risk and due refreshes keep happening), then
a real Service polls the faked source and refreshes deadlines for a while. Peak RSS is
read from /proc (VmHWM) in a fresh process; the baseline, measured in the same run, is
the same process with everything imported and the store opened but nothing running.

    python benchmarks/memory.py [--conversations 100000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import parse_config  # noqa: E402
from monitor.events import Actor, Event, EventKind  # noqa: E402
from monitor.pipeline import Evaluator  # noqa: E402
from monitor.storage import Store  # noqa: E402

SOURCE = "m"
BATCH = 5000


def _config(url: str) -> dict[str, object]:
    return {
        "monitor": {"lookback": "1h"},
        "sources": [{"name": SOURCE, "kind": "mastodon", "base_url": url, "token": "fake-token",
                     "poll_every": "10s"}],
        "policies": [{"name": "social", "first_response": "4h"}],
    }


def fill(db: str, conversations: int) -> None:
    """Store ``conversations`` unanswered mentions with running clocks."""
    config = parse_config(_config("http://127.0.0.1:9"))
    now = datetime.now(UTC)
    with Store.open(db) as store:
        store.register_sources([(SOURCE, "mastodon")])
        evaluator = Evaluator(config, store)
        for start in range(0, conversations, BATCH):
            events = [
                Event(source=SOURCE, conversation=str(n), id=str(n),
                      at=now - timedelta(hours=4) + timedelta(seconds=n * 14400 / conversations),
                      kind=EventKind.MESSAGE, actor=Actor.CUSTOMER, public=True,
                      author=f"customer{n % 997}@mastodon.example",
                      text=f"@acme my order {n} never arrived, can you help? " * 3)
                for n in range(start, min(conversations, start + BATCH))
            ]
            store.ingest(SOURCE, events, {}, now, now=now)
            evaluator.evaluate_dirty(now=now, source=SOURCE)
        print(f"stored {store.counts()['open_conversations']:,} open conversations", flush=True)


def _rss() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024)


async def _run(db: str, seconds: float) -> None:
    from connectors.fakes._base import serve
    from connectors.fakes.mastodon import MastodonFake, MastodonWorld
    from monitor.service import Service

    world = MastodonWorld(now=lambda: datetime.now(UTC))
    fake = MastodonFake(world)
    customer = world.add_account("casey")
    async with serve(fake.app()) as url:
        config = parse_config(_config(url))
        with Store.open(db) as store:
            async with Service(config, store) as service:
                service.start()
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    world.post(customer, "@acme one more", at=datetime.now(UTC))
                    await asyncio.sleep(1)
                print(f"polls {service.polls}; {service.summary_line()}", flush=True)


def child(mode: str, db: str, seconds: float) -> None:
    """Run in a fresh process: the baseline (idle) or the running monitor; print RSS."""
    import connectors.fakes.mastodon  # noqa: F401  (the same imports as the run)
    import monitor.service  # noqa: F401

    if mode == "run":
        asyncio.run(_run(db, seconds))
    else:
        Store.open(db).close()
    rss, peak = _rss()
    print(f"RSS {rss} MB, peak {peak} MB")


def main() -> None:
    """Fill a store, then measure the baseline and the running monitor in child processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--child", choices=("idle", "run"))
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.db, args.seconds)
        return
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{folder}/rw.db"
        fill(db, args.conversations)
        for mode, label in (("idle", "baseline  imports + store, idle"),
                            ("run", f"replywatch running {args.seconds:g} s")):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--db", db,
                 "--seconds", str(args.seconds)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()
            print(f"{label}: {out[-1]}" + (f"  ({out[0]})" if len(out) > 1 else ""))


if __name__ == "__main__":
    main()
