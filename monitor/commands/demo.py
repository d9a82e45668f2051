"""Provides ``replywatch demo``: the whole product on simulated sources."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from monitor.commands._common import duration_arg, until_stopped
from monitor.runner import utc_now
from monitor.storage import Store

if TYPE_CHECKING:
    from monitor.tui.app import BoardApp

log = logging.getLogger(__name__)

HELP = "the whole product on simulated sources"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add demo's options."""
    parser.add_argument("--headless", action="store_true", help="print a summary line, no board")
    parser.add_argument("--for", dest="duration", type=duration_arg, help="stop after DURATION")
    parser.add_argument("--seed", type=int, default=7, help="traffic seed (default 7)")
    parser.add_argument(
        "--sources",
        type=_source_kinds,
        default=None,
        metavar="KIND,KIND",
        help="which fakes to run (default zendesk,mastodon,bluesky)",
    )


def _source_kinds(text: str) -> tuple[str, ...]:
    from monitor.demo import parse_source_kinds  # the fakes load only when asked for

    try:
        return parse_source_kinds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    """Serve the fakes, load a week of history, then run live."""
    from monitor.pipeline import tune_collector

    tune_collector()
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    from monitor.demo import DEFAULT_SOURCES, demo_environment
    from monitor.service import Service

    with contextlib.ExitStack() as stack:
        url = args.database or os.environ.get("REPLYWATCH_DATABASE")
        if not url:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="replywatch-demo-"))
            url = f"sqlite:///{folder}/demo.db"
        async with demo_environment(seed=args.seed, sources=args.sources or DEFAULT_SOURCES) as env:
            config = env.config
            store = Store.open(url)
            stack.callback(store.close)
            print(
                "replywatch demo: fakes of "
                + ", ".join(f"{s.kind} on {env.urls[s.name]}" for s in env.sources)
                + f"; store {store.display_url}",
                flush=True,
            )
            now = utc_now()
            stats = env.traffic.generate_history(now - timedelta(days=7), now)
            print(f"replywatch demo: a week of history ({stats}); backfilling…", flush=True)
            board = None
            if not args.headless:
                from monitor.tui.app import open_board

                board = open_board(config, store, args.duration)
            async with Service(config, store, on_clock_changes=_notifier(board)) as service:
                loaded = await service.backfill(now - timedelta(days=8))
                print("replywatch demo: backfilled " + ", ".join(
                    f"{name} {count} events" for name, count in loaded.items()), flush=True)
                stop = asyncio.Event()
                traffic = asyncio.create_task(env.traffic.run_live(utc_now, stop=stop))
                service.start(first_poll_in=1.0)
                try:
                    if board is None:
                        await until_stopped(args.duration, service.print_summary)
                    else:
                        from monitor.tui.app import show_board

                        await show_board(board, service)
                finally:
                    stop.set()
                    await traffic
    return 0


def _notifier(board: BoardApp | None) -> Callable[[int], None] | None:
    """The pipeline's callback waking the board, if there is one."""
    if board is None:
        return None
    from monitor.tui.app import board_notifier

    return board_notifier(board)
