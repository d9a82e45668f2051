"""Provides ``explain``: clocks of normalized events computed offline, and why each is so.

The events file is JSON Lines in the model of SLA.md §1. It is treated as everything
there is to know up to ``now``, so its watermark is ``now``: an overdue clock is
reported breached, as it would be once the live source confirmed it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from monitor.calendars import build_calendars
from monitor.config import Config
from monitor.durations import format_duration
from monitor.errors import InputError
from monitor.events import Event, Metric, event_from_json, format_instant
from monitor.sla import Evaluation, evaluate
from monitor.text import sanitize

METRIC_ORDER = {Metric.FIRST_RESPONSE: 0, Metric.NEXT_RESPONSE: 1, Metric.RESOLUTION: 2}


def read_events(path: Path) -> list[Event]:
    """Read a JSON Lines events file; any bad line is an ``InputError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read ({err.__class__.__name__})") from None
    events: list[Event] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise InputError(f"{path}:{number}: not a JSON object") from None
        try:
            events.append(event_from_json(data))
        except ValueError as err:
            raise InputError(f"{path}:{number}: {err}") from None
    return events


def explain_events(events: Iterable[Event], config: Config, *, now: datetime) -> list[Evaluation]:
    """Evaluate every conversation in ``events`` as of ``now`` (watermark = ``now``)."""
    calendars = build_calendars(config)
    kinds = {source.name: source.kind for source in config.sources}
    grouped: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        grouped[(event.source, event.conversation)].append(event)
    return [
        evaluate(grouped[key], policies=config.policies, calendars=calendars,
                 source_kind=kinds.get(key[0], ""), now=now, watermark=now)
        for key in sorted(grouped)
    ]


def _sorted_clocks(evaluations: Sequence[Evaluation]) -> list[dict[str, object]]:
    clocks = [clock for evaluation in evaluations for clock in evaluation.clocks]
    clocks.sort(key=lambda c: (c.source, c.conversation, METRIC_ORDER[c.metric], c.cycle))
    return [clock.to_json() for clock in clocks]


def render_json(evaluations: Sequence[Evaluation]) -> str:
    """One JSON array of every clock, ordered by conversation, metric and cycle."""
    return json.dumps(_sorted_clocks(evaluations), indent=2, ensure_ascii=False)


def _when(value: datetime | None) -> str:
    return format_instant(value) or "-"


def render_table(evaluations: Sequence[Evaluation]) -> str:
    """The same clocks for people: one block per conversation, with the reasons."""
    lines: list[str] = []
    header = ("metric", "state", "started", "due", "stopped", "target", "counted", "paused")
    for evaluation in evaluations:
        conversation = evaluation.conversation
        title = f"{conversation.source} / {conversation.id}"
        if evaluation.policy is None:
            lines += [title, "  no policy matches this conversation: no clocks", ""]
            continue
        priority = conversation.priority or "no priority"
        lines.append(f"{title}  (policy {evaluation.policy}, {priority})")
        rows = [header]
        reasons: list[str] = []
        for clock in sorted(evaluation.clocks, key=lambda c: (METRIC_ORDER[c.metric], c.cycle)):
            name = f"{clock.metric}#{clock.cycle}" if clock.cycle else str(clock.metric)
            rows.append((
                name, str(clock.state), _when(clock.started_at), _when(clock.due_at),
                _when(clock.stopped_at), format_duration(clock.target_seconds),
                format_duration(clock.elapsed_seconds), format_duration(clock.paused_seconds),
            ))
            reasons += [f"    {name}: {reason}" for reason in clock.reasons]
        if len(rows) == 1:
            lines.append("  no clock has started (no public customer message yet)")
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        if len(rows) > 1:
            lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                      .rstrip() for row in rows]
        if reasons:
            lines += ["  why:", *reasons]
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n" if lines else "no events\n"
    # Author names and dismissal reasons in the reasons came from the public.
    return sanitize(text)
