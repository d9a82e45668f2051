"""Provides ``replywatch run``: poll the configured sources."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitor.commands._common import duration_arg, load, open_store, until_stopped
from monitor.config import Config
from monitor.storage import Store

if TYPE_CHECKING:
    from monitor.tui.app import BoardApp

log = logging.getLogger(__name__)

HELP = "poll the configured sources"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add run's options."""
    parser.add_argument("--headless", action="store_true", help="print a summary line, no board")
    parser.add_argument("--for", dest="duration", type=duration_arg, help="stop after DURATION")


def run(args: argparse.Namespace) -> int:
    """Poll every enabled source until stopped."""
    from monitor.pipeline import tune_collector

    config = load(args)
    with open_store(args, config) as store:
        tune_collector()
        return asyncio.run(_run(config, store, args))


async def _run(config: Config, store: Store, args: argparse.Namespace) -> int:
    from monitor.cluster import cluster_worker
    from monitor.service import Service

    if not config.enabled_sources:
        log.warning("no enabled sources: add [[sources]] to the config or set enabled = true "
                    "(see docs/configuration.md); watching nothing")
    board = None
    if not args.headless:
        # Imported only for the board: headless workers start faster without Textual.
        from monitor.tui.app import open_board

        board = open_board(config, store, args.duration)
    async with (
        Service(config, store, on_clock_changes=_notifier(board)) as service,
        cluster_worker(service) as worker,
    ):
        # On PostgreSQL the worker polls its share of the sources; alone, all of them.
        if worker is None:
            service.start()
        if board is None:
            await until_stopped(args.duration, (worker or service).print_summary)
        else:
            from monitor.tui.app import show_board

            await show_board(board, service)
    return 0


def _notifier(board: BoardApp | None) -> Callable[[int], None] | None:
    """The pipeline's callback waking the board, if there is one."""
    if board is None:
        return None
    from monitor.tui.app import board_notifier

    return board_notifier(board)
