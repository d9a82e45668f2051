"""Provides ``replywatch db``: manage the store's schema, or move the store elsewhere."""

from __future__ import annotations

import argparse
import os

from monitor.commands._common import UsageError, load, open_store

HELP = "manage the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add db's actions."""
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION",
                                    parser_class=type(parser))
    actions.add_parser("upgrade", help="apply schema migrations")
    copy = actions.add_parser(
        "copy", help="copy the whole store into an empty database (e.g. SQLite to PostgreSQL)"
    )
    copy.add_argument("--from", dest="copy_from", required=True, metavar="URL",
                      help="the store to copy, e.g. sqlite:///replywatch.db")
    copy.add_argument("--to", dest="copy_to", required=True, metavar="URL",
                      help="an empty database, e.g. postgresql://user@host/replywatch")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    if args.db_command == "copy":
        return _copy(args)
    if args.db_command != "upgrade":
        raise UsageError("db: choose an action: upgrade, copy")
    config = None
    if not (args.database or os.environ.get("REPLYWATCH_DATABASE")):
        config = load(args)
    store = open_store(args, config)
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    change = (f"already at schema {after}" if before == after
              else f"upgraded {before or 'empty'} -> {after}")
    print(f"database {store.display_url}: {change}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    """Copy the store, printing one line per table and the verified total."""
    from monitor.storage.copy import copy_store

    def progress(table: str, rows: int) -> None:
        print(f"copied {table}: {rows} rows", flush=True)

    report = copy_store(args.copy_from, args.copy_to, progress=progress)
    print(f"copied {report.source} -> {report.target}: {report.total} rows in "
          f"{len(report.rows)} tables, counts verified")
    return 0
