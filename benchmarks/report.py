"""Benchmark: the weekly report of one week with 1,000,000 clocks across 5 sources.

Fills a store with two weeks of stopped clocks (the reported week and the week before,
which the report compares with, a million each by default), a few thousand breaches
still open, and their conversations, as ``Store.save_evaluations`` would have left
them. Then, each in a fresh process so that its peak memory is its own:

- the baseline: merely reading the rows the report reads (the same queries on the
  driver's cursor, every row fetched and dropped);
- the report: ``make_report`` (stream, aggregate) and rendering all four formats
  (HTML, Markdown, CSV, JSON) to files.

It prints the time and peak RSS of each. Targets: under 10 s and 500 MB for the report.

    python benchmarks/report.py [--clocks 1000000] [--database URL]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import Config, parse_config  # noqa: E402
from monitor.reports.period import Period, iso_week  # noqa: E402
from monitor.reports.weekly import FORMATS, make_report, render  # noqa: E402
from monitor.storage import Store, bulk  # noqa: E402

WEEK = "2026-W47"
TIMEZONE = "America/New_York"
SOURCES = (
    ("acme-desk", "zendesk", "desk", ("email", "web", "chat")),
    ("acme-help", "freshdesk", "desk", ("email", "portal")),
    ("acme-mastodon", "mastodon", "social", ("mention",)),
    ("acme-bluesky", "bluesky", "social", ("mention",)),
    ("acme-x", "x", "social", ("mention", "dm")),
)
WEIGHTS = (0.3, 0.2, 0.2, 0.15, 0.15)
DESK_FIRST = {"urgent": 900, "high": 3600, "normal": 14400, "low": 28800}
PRIORITIES = tuple(DESK_FIRST)
AGENTS = tuple(f"agent-{n:02d}" for n in range(40))
OPEN_BREACHES = 5000
TARGET_SECONDS = 10.0
TARGET_MB = 500.0


def config() -> Config:
    """The policies of the generated store: a business-hours desk and 24x7 social."""
    return parse_config({
        "monitor": {"timezone": TIMEZONE},
        "calendars": {"office": {"timezone": TIMEZONE,
                                 "hours": {"mon-fri": "09:00-12:30, 13:30-18:00"},
                                 "holidays": {"country": "US"}}},
        "policies": [
            {"name": "desk", "calendar": "office", "match": {"kinds": ["zendesk", "freshdesk"]},
             "first_response": {"urgent": "15m", "high": "1h", "normal": "4h", "low": "8h"},
             "next_response": {"urgent": "30m", "high": "2h", "normal": "8h", "low": "1d"},
             "resolution": {"urgent": "4h", "high": "1d", "normal": "3d", "low": "5d"}},
            {"name": "social", "match": {"kinds": ["mastodon", "bluesky", "x"]},
             "first_response": "6m", "next_response": "15m"},
        ],
    })


def _marks(dialect: str, count: int) -> str:
    return ", ".join(["%s" if dialect == "postgresql" else "?"] * count)


def fill(url: str, clocks: int, seed: int = 47) -> None:
    """Write two weeks of ``clocks`` stopped clocks each, and the open breaches."""
    rng = random.Random(seed)
    store = Store.open(url)
    store.register_sources([(name, kind) for name, kind, _, _ in SOURCES])
    codec = bulk.Codec(store.dialect)
    to_driver = codec.to_driver
    clock_sql = (f"INSERT INTO clocks ({', '.join(bulk.CLOCK_COLUMNS)}) "
                 f"VALUES ({_marks(store.dialect, len(bulk.CLOCK_COLUMNS))})")
    conversation_columns = ("source", "conversation", "priority", "assignee", "channel", "url",
                            "subject", "dismissed", "is_open", "dirty", "ingest_seq")
    conversation_sql = (f"INSERT INTO conversations ({', '.join(conversation_columns)}) "
                        f"VALUES ({_marks(store.dialect, len(conversation_columns))})")
    week = iso_week(WEEK, TIMEZONE)
    now = to_driver(week.end + timedelta(hours=9))
    number = 0
    for period in (week.previous(), week):
        span = (period.end - period.start).total_seconds()
        made = 0
        clock_rows: list[tuple[Any, ...]] = []
        conversation_rows: list[tuple[Any, ...]] = []
        while made < clocks:
            number += 1
            index = rng.choices(range(len(SOURCES)), WEIGHTS)[0]
            source, _, policy, channels = SOURCES[index]
            conversation = str(100000 + number)
            desk = policy == "desk"
            priority = rng.choice(PRIORITIES) if desk else None
            assignee = rng.choice(AGENTS) if rng.random() < 0.9 else None
            channel = rng.choice(channels)
            conversation_rows.append((
                source, conversation, priority, assignee, channel,
                f"https://{source}.example/c/{conversation}", f"Order {number} has not arrived",
                False, False, False, 0,
            ))
            first = DESK_FIRST[priority] if priority else 360
            metrics = [("first_response", 0, first)]
            cycles = min(3, int(rng.expovariate(1.5)))
            metrics += [("next_response", n, first * 2 if desk else 900)
                        for n in range(1, cycles + 1)]
            if desk:
                metrics.append(("resolution", 0, first * 16))
            for metric, cycle, target in metrics:
                elapsed = max(1, int(target * math.exp(rng.gauss(-0.8, 0.75))))
                stopped = period.start + timedelta(seconds=rng.random() * span)
                due = stopped - timedelta(seconds=elapsed - target)
                state = "met" if elapsed <= target else "breached"
                stopped_by = rng.choice(AGENTS) if metric != "resolution" else None
                clock_rows.append((
                    source, conversation, metric, cycle, policy, state, priority,
                    to_driver(stopped - timedelta(seconds=elapsed)), to_driver(due),
                    to_driver(stopped), None, target, elapsed, 0, None, None, now,
                    stopped_by, assignee, channel,
                ))
                made += 1
        if period == week:
            for breach in range(OPEN_BREACHES):
                source, conversation = conversation_rows[breach * 7][:2]
                channel = conversation_rows[breach * 7][4]
                due = period.end - timedelta(seconds=rng.random() * span)
                clock_rows.append((
                    source, conversation, "next_response", 9, "desk", "breached", "normal",
                    to_driver(due - timedelta(hours=8)), to_driver(due), None, None, 28800,
                    40000, 0, None, None, now, None, rng.choice(AGENTS), channel,
                ))
        # Clocks stop, and so enter ix_clocks_report, in time order in a live store: the
        # rows go in that order here too, so the index is laid out as it would be.
        clock_rows.sort(key=lambda row: (row[9] is not None, row[9] or ""))
        engine = store._engine
        with engine.begin() as connection:
            cursor = connection.connection.cursor()
            if store.dialect == "sqlite":
                # A big page cache only to fill faster; the measured processes use none.
                cursor.execute("PRAGMA cache_size = -1000000")
            cursor.executemany(conversation_sql, conversation_rows)
            cursor.executemany(clock_sql, clock_rows)
            cursor.close()
    store.close()


def _rss_mb() -> float:
    """Peak resident memory of this process, in MB.

    VmHWM, not getrusage: Linux carries ru_maxrss over an exec, so a child started by a
    big parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(url: str) -> dict[str, float]:
    """Read every row the report reads, on the driver's cursor, and drop it."""
    week = iso_week(WEEK, TIMEZONE)
    previous = week.previous()
    store = Store.open(url)
    started, cpu = time.perf_counter(), time.process_time()
    # The very queries the report runs, each row fetched and dropped.
    rows = sum(1 for _ in store.report_rows(week.start, week.end))
    rows += sum(1 for _ in store.report_figure_rows(previous.start, previous.end))
    rows += len(store.open_breaches(week.end))
    elapsed = time.perf_counter() - started
    store.close()
    return {"seconds": elapsed, "cpu_seconds": time.process_time() - cpu, "rows": rows,
            "peak_mb": _rss_mb()}


def report(url: str, folder: Path) -> dict[str, float]:
    """Make the report and write all four formats; time each step."""
    week: Period = iso_week(WEEK, TIMEZONE)
    settings = config()
    store = Store.open(url)
    started, cpu = time.perf_counter(), time.process_time()
    built = make_report(store, settings, week, now=week.end + timedelta(hours=9))
    figures = {"aggregate_seconds": time.perf_counter() - started}
    for form in FORMATS:
        began = time.perf_counter()
        text = render(built, form, full_report="report.html")
        (folder / f"report.{form}").write_text(text, encoding="utf-8")
        figures[f"{form}_seconds"] = time.perf_counter() - began
        figures[f"{form}_kb"] = len(text.encode("utf-8")) / 1024
    figures["seconds"] = time.perf_counter() - started
    figures["cpu_seconds"] = time.process_time() - cpu
    figures["peak_mb"] = _rss_mb()
    figures["clocks"] = built.totals.clocks.current
    figures["previous_clocks"] = built.totals.clocks.previous
    figures["open_breaches"] = built.totals.open_breaches
    store.close()
    return figures


def _child(phase: str, url: str, folder: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--database", url, "--folder",
         str(folder)],
        check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    """Fill a store, then measure the baseline and the report in fresh processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=1_000_000, help="stopped clocks per week")
    parser.add_argument("--database", help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--phase", choices=("baseline", "report"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "baseline":
        print(json.dumps(baseline(args.database)))
        return
    if args.phase == "report":
        print(json.dumps(report(args.database, args.folder)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database or f"sqlite:///{scratch}/report-bench.db"
        began = time.perf_counter()
        fill(url, args.clocks)
        print(f"filled {url.split('://')[0]} store with 2 x {args.clocks:,} clocks and "
              f"{OPEN_BREACHES:,} open breaches in {time.perf_counter() - began:.1f} s")
        base = _child("baseline", url, Path(scratch))
        made = _child("report", url, Path(scratch))
    print(f"baseline: read {int(base['rows']):,} rows in {base['seconds']:.2f} s "
          f"(CPU {base['cpu_seconds']:.2f} s), peak RSS {base['peak_mb']:.0f} MB")
    print(f"report:   {int(made['clocks']):,} clocks (previous week "
          f"{int(made['previous_clocks']):,}, {int(made['open_breaches']):,} open breaches) "
          f"in {made['seconds']:.2f} s (CPU {made['cpu_seconds']:.2f} s), "
          f"peak RSS {made['peak_mb']:.0f} MB")
    print(f"          read + aggregate {made['aggregate_seconds']:.2f} s; render " + ", ".join(
        f"{form} {made[f'{form}_seconds']:.2f} s ({made[f'{form}_kb']:.0f} KB)"
        for form in FORMATS))
    ok = made["seconds"] < TARGET_SECONDS and made["peak_mb"] < TARGET_MB
    print(f"target: under {TARGET_SECONDS:.0f} s and {TARGET_MB:.0f} MB: "
          f"{'met' if ok else 'MISSED'}; {made['seconds'] / base['seconds']:.1f}x the baseline; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
