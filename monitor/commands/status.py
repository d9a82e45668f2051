"""Provides ``replywatch status``: the workers sharing a store, and who polls each source."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.commands._common import database_url, load
from monitor.durations import format_duration
from monitor.storage import ClusterStatus, SourceStatus, Store, WorkerStatus
from monitor.text import sanitize

HELP = "show the workers and who polls each source"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add status's options."""
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    """Print the workers and sources of the store as a table or one JSON object."""
    config = None
    if not (args.database or os.environ.get("REPLYWATCH_DATABASE")):
        config = load(args)
    # Read-only: a store behind this version is reported, not migrated.
    with Store.open(database_url(args, config), upgrade=False) as store:
        status = store.cluster_status()
    sys.stdout.write(render_json(status) + "\n" if args.format == "json"
                     else render_table(status))
    return 0


def _seconds(later: datetime, earlier: datetime | None) -> float | None:
    """Return ``later - earlier`` in seconds (None if ``earlier`` is unknown)."""
    return None if earlier is None else round((later - earlier).total_seconds(), 3)


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _owner(status: ClusterStatus, source: SourceStatus) -> WorkerStatus | None:
    return next((w for w in status.workers if w.id == source.owner), None)


def _label(worker: WorkerStatus | None) -> str | None:
    return None if worker is None else f"{worker.host}:{worker.pid}"


def to_json(status: ClusterStatus) -> dict[str, Any]:
    """Return the status as plain JSON data: ``{"now", "workers": [...], "sources": [...]}``."""
    now = status.now
    return {
        "now": _instant(now),
        "workers": [
            {
                "id": worker.id,
                "host": worker.host,
                "pid": worker.pid,
                "started_at": _instant(worker.started_at),
                "heartbeat_at": _instant(worker.heartbeat_at),
                "heartbeat_age_seconds": _seconds(now, worker.heartbeat_at),
                "alive": worker.alive,
                "sources": worker.sources,
                "fenced_writes": worker.fenced_writes,
            }
            for worker in status.workers
        ],
        "sources": [
            {
                "name": source.name,
                "kind": source.kind,
                "owner": _label(_owner(status, source)),
                "owner_id": source.owner,
                "epoch": source.epoch,
                "lease_age_seconds": _seconds(now, source.acquired_at),
                "lease_expires_at": _instant(source.expires_at),
                "last_poll_at": _instant(source.last_poll_at),
                "last_success_at": _instant(source.last_success_at),
                "watermark": _instant(source.watermark),
                "lag_seconds": _seconds(now, source.watermark),
                "failing_since": _instant(source.failing_since),
                "last_error": source.last_error,
                "degraded": source.degraded,
            }
            for source in status.sources
        ],
    }


def render_json(status: ClusterStatus) -> str:
    """Return the status as one JSON object."""
    return json.dumps(to_json(status), indent=2, ensure_ascii=False)


def _safe(text: str) -> str:
    return sanitize(text, keep_newlines=False)


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    return f"{format_duration(max(0.0, (now - then).total_seconds()))} ago"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def render_table(status: ClusterStatus) -> str:
    """Return the status as two aligned tables, workers then sources."""
    now = status.now
    alive = sum(worker.alive for worker in status.workers)
    lines = [f"workers: {alive} alive" + (f", {len(status.workers) - alive} gone"
                                          if len(status.workers) > alive else "")]
    if status.workers:
        lines += ["  " + line for line in _table(
            ("ID", "HOST", "PID", "STARTED", "HEARTBEAT", "SOURCES", "STATE"),
            [(str(w.id), _safe(w.host), str(w.pid),
              w.started_at.strftime("%Y-%m-%d %H:%M:%SZ"), _ago(now, w.heartbeat_at),
              str(w.sources), "alive" if w.alive else "gone")
             for w in status.workers],
        )]
    unowned = sum(source.owner is None for source in status.sources)
    lines.append(f"sources: {len(status.sources)}"
                 + (f", {unowned} not polled by any worker" if status.workers and unowned else ""))
    if status.sources:
        rows = []
        for source in status.sources:
            lag = "?" if source.watermark is None else format_duration(
                max(0.0, (now - source.watermark).total_seconds()))
            health = "DEGRADED" if source.degraded else (
                "FAILING" if source.failing_since is not None else "ok")
            age = "-" if source.acquired_at is None else format_duration(
                max(0.0, (now - source.acquired_at).total_seconds()))
            rows.append((_safe(source.name), source.kind,
                         _safe(_label(_owner(status, source)) or "-"), age,
                         _ago(now, source.last_success_at), lag, health))
        lines += ["  " + line for line in _table(
            ("NAME", "KIND", "OWNER", "LEASE AGE", "LAST SUCCESS", "LAG", "HEALTH"), rows)]
    return "\n".join(lines) + "\n"
