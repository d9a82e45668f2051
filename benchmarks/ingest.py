"""Benchmark: Zendesk-shaped pages -> parsed -> stored -> evaluated, against raw sqlite3.

Generates incremental ticket-event export pages in the recorded shape (audits with
Create/Change/Comment child events, sideloaded users), then times a backfill of them
along the whole path ``replywatch backfill`` takes: a ``SourceRunner`` polls a connector
that serves the pages from memory and parses them as the Zendesk connector does (the
connectors' JSON parse, parse_event_page, record_events), stores each page
(Store.ingest), and evaluates the stored conversations every 50,000 events in a second
process (EvaluationProcess, started inside the timing) while it goes on fetching, then
the last pages itself; the collector tuned as ``backfill`` tunes it. Only the HTTP
requests are left out. The baseline is raw ``sqlite3`` ``executemany`` of the very same
rows into the same schema, in the same run, committing once per page like the pipeline.

    python benchmarks/ingest.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors._http import loads  # noqa: E402
from connectors.zendesk import (  # noqa: E402
    ZendeskSettings,
    parse_event_page,
    parse_users,
    record_events,
)
from monitor.config import parse_config  # noqa: E402
from monitor.connector import Batch, Cursor, PollContext, SourceSettings  # noqa: E402
from monitor.pipeline import EvaluationProcess, Evaluator, tune_collector  # noqa: E402
from monitor.runner import SourceRunner  # noqa: E402
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


class ReplayConnector:
    """A Zendesk event export served from memory: each poll parses the next page."""

    kind: ClassVar[str] = "zendesk"
    settings_model: ClassVar[type[SourceSettings]] = ZendeskSettings

    def __init__(self, pages: list[bytes], users: dict[int, Any], watermark: datetime) -> None:
        self.pages = pages
        self.users = users
        self.watermark = watermark
        self.parse_seconds = 0.0

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        number = 0 if cursor is None else cursor["page"] + 1
        mark = time.perf_counter()
        page = parse_event_page(loads(self.pages[number]))
        events = record_events(page.records, source=SOURCE, subdomain="acme",
                               users=self.users, groups={})
        self.parse_seconds += time.perf_counter() - mark
        return Batch(events, {"page": number}, self.watermark,
                     more=number < len(self.pages) - 1)

    async def check(self, ctx: PollContext) -> str:
        return "replayed"


async def run_pipeline(pages: list[bytes], users: dict[int, Any], url: str) -> tuple[float, int]:
    """Time the backfill's whole path; return seconds and events stored."""
    config = parse_config(CONFIG)
    store = Store.open(url)
    store.register_sources([(SOURCE, "zendesk")])
    now = START + timedelta(days=30)
    connector = ReplayConnector(pages, users, now - timedelta(minutes=1))
    async with aiohttp.ClientSession() as session:
        runner = SourceRunner(config.sources[0], connector, store, Evaluator(config, store),
                              session, lookback=0.0, now=lambda: now)
        began = time.perf_counter()
        helper = EvaluationProcess(config, url)
        try:
            outcome = await runner.poll_once(since=START, helper=helper)
        finally:
            helper.close()
        elapsed = time.perf_counter() - began
    if outcome.error is not None or outcome.pages != len(pages):
        raise SystemExit(f"the backfill stopped early: {outcome}")
    print(f"parse {connector.parse_seconds:.1f} s of it, in the runner's process", flush=True)
    store.close()
    return elapsed, outcome.new_events


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
    tune_collector()  # as backfill does once started
    with tempfile.TemporaryDirectory() as folder:
        raw_path = Path(folder) / "raw.db"
        raw_seconds = run_raw(pages, users, f"sqlite:///{raw_path}", raw_path)
        url = f"sqlite:///{folder}/rw.db"
        seconds, stored = asyncio.run(run_pipeline(pages, users, url))
        with Store.open(url) as store:
            clocks = sum(store.state_counts().values())
            total = len(store.clocks()) if args.events <= 200_000 else None
            dirty = len(store.dirty_conversations())
    events = tickets * EVENTS_PER_TICKET
    raw_rate, rate = events / raw_seconds, stored / seconds
    print(f"baseline  raw sqlite3 executemany: {events:,} rows in {raw_seconds:.1f} s "
          f"= {raw_rate:,.0f} rows/s")
    print(f"replywatch end to end (parse+store+evaluate): {stored:,} events in {seconds:.1f} s "
          f"= {rate:,.0f} events/s; {clocks:,} clocks still open"
          + (f", {total:,} clocks in all" if total is not None else "")
          + f"; {dirty} conversations left unevaluated")
    ratio = rate / raw_rate
    verdict = "meets" if ratio >= 0.25 else "MISSES"
    print(f"ratio {ratio:.2f} of raw ({verdict} the target of at least 0.25)")


if __name__ == "__main__":
    main()
