"""Benchmark: Zendesk-shaped pages -> parsed -> stored -> evaluated, against raw sqlite3.

Generates incremental ticket-event export pages in the recorded shape (audits with
Create/Change/Comment child events, sideloaded users), then times the whole path the
runner takes for each page (the connectors' JSON parse, parse_event_page, record_events,
Store.ingest, and the evaluation of touched conversations every 50,000 events, as the
runner does), with the collector tuned as ``run`` and ``backfill`` tune it.
The baseline is raw ``sqlite3`` ``executemany`` of the very same rows into the same
schema, in the same run, committing once per page like the pipeline.

    python benchmarks/ingest.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors._http import loads  # noqa: E402
from connectors.zendesk import parse_event_page, parse_users, record_events  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from monitor.pipeline import Evaluator  # noqa: E402
from monitor.runner import EVALUATE_EVERY_EVENTS  # noqa: E402
from monitor.service import tune_collector  # noqa: E402
from monitor.storage import Store  # noqa: E402
from monitor.storage.bulk import EVENT_COLUMNS  # noqa: E402

SOURCE = "acme-desk"
AUDITS_PER_PAGE = 1000
EVENTS_PER_TICKET = 10
AGENTS = 20
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TEXT = "My printer is on fire and the manual does not say what to do about it. " * 2

CONFIG = {
    "calendars": {"office": {"timezone": "America/New_York",
                             "hours": {"mon-fri": "09:00-12:30, 13:30-18:00"},
                             "holidays": {"country": "US"}}},
    "sources": [{"name": SOURCE, "kind": "zendesk", "subdomain": "acme",
                 "email": "ops@acme.example", "token": "benchmark"}],
    "policies": [{"name": "desk", "match": {"kinds": ["zendesk"]}, "calendar": "office",
                  "first_response": {"urgent": "15m", "high": "1h", "normal": "4h", "low": "8h"},
                  "next_response": {"urgent": "30m", "high": "2h", "normal": "8h", "low": "1d"},
                  "resolution": {"urgent": "4h", "high": "1d", "normal": "3d", "low": "5d"}}],
}


def _audits(tickets: int) -> list[dict[str, Any]]:
    """Four audits per ticket (10 events), spread over three weeks, in time order."""
    audits: list[tuple[int, dict[str, Any]]] = []
    audit_id = 1
    for ticket in range(1, tickets + 1):
        opened = int((START + timedelta(seconds=ticket * 1800 * 21 * 24 / tickets)).timestamp())
        requester = 100_000 + ticket
        agent = 1 + ticket % AGENTS
        steps = [
            (0, requester, [
                {"event_type": "Create", "field_name": "status", "value": "new"},
                {"event_type": "Create", "field_name": "priority", "value": "normal"},
                {"event_type": "Comment", "body": TEXT, "public": True, "author_id": requester},
            ]),
            (300, agent, [
                {"event_type": "Change", "field_name": "status", "value": "open",
                 "previous_value": "new"},
                {"event_type": "Change", "field_name": "assignee_id", "value": str(agent),
                 "previous_value": None},
                {"event_type": "Comment", "body": "Checking with facilities.", "public": False,
                 "author_id": agent},
            ]),
            (1200, agent, [
                {"event_type": "Comment", "body": "Please unplug it.", "public": True,
                 "author_id": agent},
                {"event_type": "Change", "field_name": "status", "value": "pending",
                 "previous_value": "open"},
            ]),
            (7200, requester, [
                {"event_type": "Comment", "body": "Done, it is out.", "public": True,
                 "author_id": requester},
                {"event_type": "Change", "field_name": "status", "value": "open",
                 "previous_value": "pending"},
            ]),
        ]
        for offset, updater, children in steps:
            for child_id, child in enumerate(children, start=1):
                child["id"] = audit_id * 10 + child_id
            audits.append((opened + offset, {
                "id": audit_id, "ticket_id": ticket, "timestamp": opened + offset,
                "updater_id": updater, "via": {"channel": "web"}, "event_type": "Audit",
                "child_events": children,
            }))
            audit_id += 1
    audits.sort(key=lambda pair: (pair[0], pair[1]["id"]))
    return [audit for _, audit in audits]


def _pages(audits: list[dict[str, Any]]) -> list[bytes]:
    pages = []
    for start in range(0, len(audits), AUDITS_PER_PAGE):
        chunk = audits[start : start + AUDITS_PER_PAGE]
        last = start + AUDITS_PER_PAGE >= len(audits)
        pages.append(json.dumps({
            "ticket_events": chunk, "count": len(chunk), "end_time": chunk[-1]["timestamp"],
            "end_of_stream": last,
            "next_page": None if last else f"https://acme.zendesk.com/api/v2/incremental/"
                                           f"ticket_events.json?start_time={chunk[-1]['timestamp']}",
        }).encode())
    return pages


def _users(tickets: int) -> dict[int, Any]:
    users = [{"id": agent, "name": f"Agent {agent}", "role": "agent"}
             for agent in range(1, AGENTS + 1)]
    users += [{"id": 100_000 + t, "name": f"Customer {t}", "role": "end-user"}
              for t in range(1, tickets + 1)]
    return {user.id: user for user in parse_users({"users": users})}


def run_pipeline(pages: list[bytes], users: dict[int, Any], url: str) -> tuple[float, int, Store]:
    """Time the whole path; return seconds, events stored, and the store."""
    config = parse_config(CONFIG)
    store = Store.open(url)
    store.register_sources([(SOURCE, "zendesk")])
    evaluator = Evaluator(config, store)
    now = START + timedelta(days=30)
    stored = pending = 0
    chain: list[Any] = []
    stages = {"parse": 0.0, "store": 0.0, "evaluate": 0.0}
    began = time.perf_counter()
    for number, body in enumerate(pages):
        mark = time.perf_counter()
        page = parse_event_page(loads(body))
        events = record_events(page.records, source=SOURCE, subdomain="acme", users=users,
                               groups={})
        stages["parse"] += time.perf_counter() - mark
        mark = time.perf_counter()
        result = store.ingest(SOURCE, events, {"page": number}, now - timedelta(minutes=1),
                              now=now)
        stages["store"] += time.perf_counter() - mark
        stored += result.new_events
        pending += result.new_events
        chain += result.events
        if pending >= EVALUATE_EVERY_EVENTS or number == len(pages) - 1:
            mark = time.perf_counter()
            evaluator.evaluate_batch(chain, now=now, source=SOURCE)
            stages["evaluate"] += time.perf_counter() - mark
            pending, chain = 0, []
    elapsed = time.perf_counter() - began
    print("stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items()),
          flush=True)
    return elapsed, stored, store


def run_raw(pages: list[bytes], users: dict[int, Any], url: str, path: Path) -> float:
    """Time raw sqlite3 executemany of the same rows into the same schema."""
    Store.open(url).close()  # the same schema, created by the same migrations
    codec_store = Store.open(url)
    now = START + timedelta(days=30)
    batches = []
    for body in pages:
        page = parse_event_page(json.loads(body))
        events = record_events(page.records, source=SOURCE, subdomain="acme", users=users,
                               groups={})
        rows = codec_store._codec.event_rows(SOURCE, events, now)
        batches.append([row for row, _ in rows.values()])
    codec_store.close()
    columns = ", ".join(EVENT_COLUMNS)
    marks = ", ".join("?" for _ in EVENT_COLUMNS)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    began = time.perf_counter()
    for rows in batches:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(f"INSERT INTO events ({columns}) VALUES ({marks})", rows)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed


def main() -> None:
    """Run both, print figures and the ratio against the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    tickets = args.events // EVENTS_PER_TICKET
    print(f"generating {tickets:,} tickets ({tickets * EVENTS_PER_TICKET:,} events)…", flush=True)
    pages = _pages(_audits(tickets))
    users = _users(tickets)
    print(f"{len(pages)} pages, {sum(map(len, pages)) / 1e6:.0f} MB of JSON", flush=True)
    tune_collector()  # as run, demo and backfill do once started
    with tempfile.TemporaryDirectory() as folder:
        raw_path = Path(folder) / "raw.db"
        raw_seconds = run_raw(pages, users, f"sqlite:///{raw_path}", raw_path)
        seconds, stored, store = run_pipeline(pages, users, f"sqlite:///{folder}/rw.db")
        clocks = sum(store.state_counts().values())
        total = len(store.clocks()) if args.events <= 200_000 else None
        store.close()
    events = tickets * EVENTS_PER_TICKET
    raw_rate, rate = events / raw_seconds, stored / seconds
    print(f"baseline  raw sqlite3 executemany: {events:,} rows in {raw_seconds:.1f} s "
          f"= {raw_rate:,.0f} rows/s")
    print(f"replywatch end to end (parse+store+evaluate): {stored:,} events in {seconds:.1f} s "
          f"= {rate:,.0f} events/s; {clocks:,} clocks still open"
          + (f", {total:,} clocks in all" if total is not None else ""))
    ratio = rate / raw_rate
    verdict = "meets" if ratio >= 0.25 else "MISSES"
    print(f"ratio {ratio:.2f} of raw ({verdict} the target of at least 0.25)")


if __name__ == "__main__":
    main()
