"""Provides ``replywatch check``: validate the config, probe sources and alert targets."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter, defaultdict
from datetime import UTC, datetime

import aiohttp

from monitor.commands._common import load, open_store
from monitor.config import Config, config_path
from monitor.events import format_instant
from monitor.storage import Store

HELP = "validate the config, probe every source, show undelivered alerts"

FAILED_GROUPS_SHOWN = 20
"""Most lines of failed alerts printed (one per target and reason)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """check's options: ``--send-test-alert``."""
    parser.add_argument(
        "--send-test-alert",
        action="store_true",
        help="send a test message to every alert target and report each result",
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 if any failed."""
    return asyncio.run(_check(load(args), args))


async def _check(config: Config, args: argparse.Namespace) -> int:
    from monitor.service import Service

    disabled = len(config.sources) - len(config.enabled_sources)
    print(f"ok      config {config_path(args.config)}: {len(config.enabled_sources)} sources"
          + (f" ({disabled} disabled)" if disabled else "") + f", {len(config.policies)} policies")
    store = open_store(args, config)
    try:
        print(f"ok      database {store.display_url}")
        failed = 0
        async with Service(config, store) as service:
            for result in await service.check():
                label = "ok     " if result.ok else "FAILED "
                failed += not result.ok
                print(f"{label} source {result.source} ({result.kind}): {result.message}")
        _print_outbox(store)
        if getattr(args, "send_test_alert", False):
            failed += await _send_test_alerts(config)
    finally:
        store.close()
    return 1 if failed else 0


def _print_outbox(store: Store) -> None:
    """Print the outbox's state and its failed alerts, one line per target and reason.

    Failed alerts are shown but do not fail the check: they stay in the outbox as a
    record, and nothing a later check does can make them pass.
    """
    counts = store.outbox_counts()
    if not counts:
        return
    waiting = counts.get("pending", 0) + counts.get("sending", 0)
    print(
        f"ok      alert outbox: {counts.get('delivered', 0)} delivered, {waiting} waiting, "
        f"{counts.get('failed', 0)} failed"
    )
    groups: dict[tuple[str, str], list[tuple[str, datetime]]] = defaultdict(list)
    for entry in store.failed_alerts(limit=1000):
        reason = entry.last_error or "no reason recorded"
        groups[(entry.target, reason)].append((entry.kind, entry.created_at))
    for (target, reason), entries in list(groups.items())[:FAILED_GROUPS_SHOWN]:
        kinds = Counter(kind.replace("_", " ") for kind, _at in entries)
        what = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        latest = format_instant(max(at for _kind, at in entries))
        print(f"warn    alert {target}: not delivered ({what}; latest {latest}): {reason}")
    if len(groups) > FAILED_GROUPS_SHOWN:
        hidden = len(groups) - FAILED_GROUPS_SHOWN
        print(f"warn    alert outbox: and {hidden} more kinds of failure")


async def _send_test_alerts(config: Config) -> int:
    """Send a test alert to every target at once; print each result; return the failures."""
    from monitor.delivery import send_test_alert

    if not config.alerts:
        print("ok      alerts: no [[alerts]] targets configured")
        return 0
    now = datetime.now(UTC)
    async with aiohttp.ClientSession(
        headers={"User-Agent": "replywatch (+https://github.com/replywatch/replywatch)"}
    ) as session:
        reasons = await asyncio.gather(
            *(send_test_alert(target, session, now=now) for target in config.alerts)
        )
    for target, reason in zip(config.alerts, reasons, strict=True):
        if reason is None:
            print(f"ok      alert {target.name} ({target.kind}): test message delivered")
        else:
            print(f"FAILED  alert {target.name} ({target.kind}): {reason}")
    return sum(reason is not None for reason in reasons)
