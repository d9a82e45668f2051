"""Provides ``replywatch explain``: clocks of an events file, computed offline."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from monitor.commands._common import instant_arg, load
from monitor.explain import explain_events, read_events, render_json, render_table

HELP = "compute clocks of an events file offline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add explain's options."""
    parser.add_argument("--events", type=Path, required=True, help="JSON Lines events file")
    parser.add_argument("--now", type=instant_arg, help="evaluate as of this ISO 8601 instant")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    """Print the clocks of the events file as a table or JSON."""
    config = load(args)
    events = read_events(args.events)
    now = args.now or datetime.now(UTC)
    evaluations = explain_events(events, config, now=now)
    sys.stdout.write(render_json(evaluations) + "\n" if args.format == "json"
                     else render_table(evaluations))
    return 0
