"""Provides what the subcommands share: argument types, config, store, the wait loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from datetime import datetime

from monitor.config import Config, config_path, load_config
from monitor.durations import parse_duration
from monitor.errors import ReplywatchError
from monitor.events import parse_instant
from monitor.storage import Store

SUMMARY_EVERY = 5.0
"""Seconds between the summary lines of headless mode."""


class UsageError(ReplywatchError):
    """The command line itself is wrong (exit code 2)."""


def duration_arg(text: str) -> float:
    """An argparse type for durations like ``60s`` or ``30d``."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def instant_arg(text: str) -> datetime:
    """An argparse type for ISO 8601 instants with a timezone."""
    try:
        return parse_instant(text, "time")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def database_url(args: argparse.Namespace, config: Config | None) -> str:
    """The store URL: ``--database``, else ``$REPLYWATCH_DATABASE``, else the config's."""
    url = args.database or os.environ.get("REPLYWATCH_DATABASE")
    if url:
        return str(url)
    if config is None:
        raise UsageError("no database: give --database URL or a config with [monitor].database")
    return config.monitor.database


def load(args: argparse.Namespace) -> Config:
    """The config named by ``--config``, ``$REPLYWATCH_CONFIG`` or ./config.toml."""
    return load_config(config_path(args.config))


def open_store(args: argparse.Namespace, config: Config | None) -> Store:
    """Open (and upgrade if behind) the store the arguments and config name."""
    return Store.open(database_url(args, config))


async def until_stopped(duration: float | None, tick: Callable[[], None] | None = None) -> None:
    """Wait for SIGINT/SIGTERM or ``duration``; call ``tick`` every few seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    deadline = None if duration is None else loop.time() + duration
    while not stop.is_set():
        timeout = SUMMARY_EVERY
        if deadline is not None:
            timeout = min(timeout, deadline - loop.time())
            if timeout <= 0:
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)
        if tick is not None:
            tick()
