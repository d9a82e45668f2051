"""Provides the ``replywatch`` command line.

Every error a user can cause ends in one line on stderr naming the problem and the
place, and a non-zero exit: 2 for a bad config or bad arguments, 1 for anything else
(an unreadable file, an unreachable database, a source that failed its check).
Each subcommand lives in its own module under ``monitor.commands``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from monitor.commands import COMMANDS
from monitor.commands._common import UsageError
from monitor.errors import ConfigError, ReplywatchError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="replywatch", description="How fast does your team answer people?")
    parser.add_argument("--config",
                        help="config file (default: $REPLYWATCH_CONFIG or ./config.toml)")
    parser.add_argument("--database", help="store URL, overriding the config "
                        "(default: $REPLYWATCH_DATABASE or [monitor].database)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"monitor.commands.{name}")
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: parse, run, and turn failures into one line and an exit code."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        else:
            for noisy in ("apscheduler", "aiohttp.access", "alembic"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        if args.command is None:
            raise UsageError("choose a command: " + ", ".join(COMMANDS) + " (replywatch --help)")
        code: int = args.handler(args)
        return code
    except (ConfigError, UsageError) as err:
        print(f"replywatch: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ReplywatchError as err:
        print(f"replywatch: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
