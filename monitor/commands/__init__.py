"""Provides the subcommands of ``replywatch``, one module each.

Every module here has ``HELP`` (one line for ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``; ``monitor.cli`` builds the parser from ``COMMANDS`` in this order.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "demo", "run", "tui", "status", "check", "backfill", "explain", "report", "db",
)
