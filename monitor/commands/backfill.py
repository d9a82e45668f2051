"""Provides ``replywatch backfill``: load history through the live polling path."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from monitor.commands._common import UsageError, duration_arg, load, open_store
from monitor.config import Config
from monitor.runner import utc_now

HELP = "load history through the polling path"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add backfill's options."""
    parser.add_argument("--since", type=duration_arg, required=True, help="how far back, e.g. 30d")
    parser.add_argument("--source", action="append", default=[], help="only this source")


def run(args: argparse.Namespace) -> int:
    """Backfill the chosen sources and print what each stored."""
    from monitor.pipeline import tune_collector

    config = load(args)
    tune_collector()
    return asyncio.run(_backfill(config, args))


async def _backfill(config: Config, args: argparse.Namespace) -> int:
    from monitor.service import Service

    unknown = [name for name in args.source
               if name not in {s.name for s in config.enabled_sources}]
    if unknown:
        raise UsageError(f"backfill: unknown source {unknown[0]!r}")
    store = open_store(args, config)
    try:
        async with Service(config, store) as service:
            since = utc_now() - timedelta(seconds=args.since)
            loaded = await service.backfill(since, sources=args.source)
    finally:
        store.close()
    for name, count in loaded.items():
        print(f"{name}: {count} new events since {since:%Y-%m-%d %H:%M}Z")
    return 0
