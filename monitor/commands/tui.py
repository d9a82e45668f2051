"""Provides ``replywatch tui``: the board over a store that another process fills."""

from __future__ import annotations

import argparse
import asyncio
import os
from zoneinfo import ZoneInfo

from monitor.commands._common import database_url, load
from monitor.config import Config, config_path
from monitor.storage import Store

HELP = "the board over an existing store (--database URL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add tui's options."""
    # SUPPRESS: without it, the subcommand's default would erase a global --database.
    parser.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help="store URL (default: $REPLYWATCH_DATABASE or the config's [monitor].database)",
    )
    parser.add_argument("--theme", choices=("dark", "light"), default="dark", help="colours")
    parser.add_argument("--user", help="name stored with dismissals (default: login name)")


def _config(args: argparse.Namespace) -> Config | None:
    """The config if one is named or ./config.toml exists; the board runs without one."""
    explicit = args.config or os.environ.get("REPLYWATCH_CONFIG")
    if explicit or config_path(None).exists():
        return load(args)
    return None


def run(args: argparse.Namespace) -> int:
    """Attach the board to the store until the lead quits."""
    from monitor.tui.app import DARK, LIGHT, BoardApp, run_board

    config = _config(args)
    zone = ZoneInfo(config.monitor.timezone if config is not None else "UTC")
    with Store.open(database_url(args, config), upgrade=False) as store:
        # Attached: dismissals are evaluated by a worker's evaluate-dirty job, with the
        # worker's policies, never here with a config that might differ.
        app = BoardApp(
            store,
            zone=zone,
            user=args.user,
            theme=LIGHT if args.theme == "light" else DARK,
        )
        asyncio.run(run_board(app))
    return 0
