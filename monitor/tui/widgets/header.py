"""Provides the board's header (the verdict, counts, filters, clock) and its alert banner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from rich.cells import cell_len
from textual.app import RenderResult
from textual.content import Content
from textual.widget import Widget

from monitor.storage.board import QueueFilter
from monitor.tui.keys import Key
from monitor.tui.render import (
    SORT_LABELS,
    filter_words,
    fit,
    format_percent,
    promise_status,
    state_counts_line,
)

_LEVEL_STYLES = {
    "ok": "bold $text-success",
    "warning": "bold $text-warning",
    "error": "bold $text-error",
}
_STATE_STYLES = {
    "breached": "bold $text-error",
    "overdue": "$text-error",
    "at_risk": "$text-warning",
    "running": "$text-success",
    "paused": "$text-muted",
    "waiting": "$text-muted",
    "no_policy": "$text-muted",
}

Part = tuple[str, str]
"""A piece of a header line: its text and its style."""


def _line(left: Sequence[Part], right: Sequence[Part], width: int, essential: int = 1) -> Content:
    """Return one line: ``left`` parts from the left edge, ``right`` parts flush right.

    The first ``essential`` left parts win over the right parts, which are dropped
    from the first when both do not fit; the other left parts fill what is left, cut.
    """
    right = list(right)
    needed = sum(cell_len(text) for text, _ in left[:essential])
    while right and needed + sum(cell_len(text) for text, _ in right) > width:
        right.pop(0)
    right_width = sum(cell_len(text) for text, _ in right)
    room = width - right_width
    parts: list[Part] = []
    used = 0
    for text, style in left:
        if used >= room:
            break
        shown = fit(text, room - used, pad=False)
        parts.append((shown, style))
        used += cell_len(shown)
    parts.append((" " * max(0, room - used), ""))
    parts.extend(right)
    return Content.assemble(*parts)


@dataclass(frozen=True, slots=True)
class HeaderState:
    """What the header shows."""

    counts: dict[str, int] = field(default_factory=dict)
    percent_today: float | None = None
    filters: QueueFilter = field(default_factory=QueueFilter)
    shown: int = 0
    loaded: bool = False
    truncated: bool = False


class BoardHeader(Widget):
    """Two lines: are we inside our promises, how many of what, what is filtered."""

    DEFAULT_CSS = """
    BoardHeader {
        height: 2;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, zone: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.zone = zone
        self.state = HeaderState()
        self.now = datetime.now(UTC)

    def show(self, state: HeaderState) -> None:
        """Show new figures."""
        self.state = state
        self.refresh()

    def tick(self, now: datetime) -> None:
        """Move the clock."""
        self.now = now
        self.refresh()

    def render(self) -> RenderResult:
        """Draw both lines."""
        width = self.size.width
        state = self.state
        local = self.now.astimezone(self.zone)
        clock = f" {local:%H:%M:%S} {local.tzname() or ''} "
        today = f" today {format_percent(state.percent_today)} met "
        brand: Part = (" replywatch ", "bold $text-accent")
        if not state.loaded:
            first = _line([brand, (" loading…", "$text-muted")], [(clock, "bold")], width)
        else:
            verdict = promise_status(state.counts)
            left: list[Part] = [brand, (f" {verdict.text} ", _LEVEL_STYLES[verdict.level])]
            left.append((f"  {state.counts.get('open', 0):,} open", "bold"))
            for name, words in state_counts_line(state.counts):
                left.append((" · ", "$text-muted"))
                left.append((words, _STATE_STYLES.get(name, "")))
            first = _line(left, [(today, "$text-muted"), (clock, "bold")], width, essential=3)
        second_left: list[Part] = [(" filter ", "$text-muted")]
        active = filter_words(state.filters)
        if active:
            second_left.append((" · ".join(active), "bold $text-warning"))
            second_left.append(("  (c clears)", "$text-muted"))
        else:
            second_left.append(("none", ""))
        second_left.append(("   sort ", "$text-muted"))
        second_left.append((SORT_LABELS[state.filters.sort], ""))
        total = state.counts.get("open", 0)
        if state.loaded:
            shown = f"   {state.shown:,} of {total:,} shown"
            if state.truncated:
                shown += " (first ones only: filter to narrow)"
            second_left.append((shown, "$text-muted"))
        keys: list[Part] = [(" / search  f filter  s sort  ? keys ", "$text-muted")]
        # Every filter and the count win over the keys hint, which the footer repeats.
        second = _line(second_left, keys, width, essential=len(second_left))
        return Content("\n").join([first, second])


class Banner(Widget):
    """A loud line for what must not be missed: a failing source, a lost database."""

    DEFAULT_CSS = """
    Banner {
        height: auto;
        max-height: 4;
        background: $error;
        color: $text;
        text-style: bold;
        display: none;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.problems: tuple[str, ...] = ()

    def show(self, problems: Sequence[str]) -> None:
        """Show these problems (one per line); hide when there are none."""
        problems = tuple(problems)
        if problems != self.problems:
            self.problems = problems
            self.display = bool(problems)
            self.refresh(layout=True)

    def render(self) -> RenderResult:
        """Draw one line per problem."""
        return Content("\n").join(Content("⚠ " + problem) for problem in self.problems)


class KeyBar(Widget):
    """The keys of a screen on one line, like Textual's Footer but drawn once.

    The stock Footer rebuilds a widget per key whenever a screen is shown, which costs
    more than opening a conversation should; these keys never change.
    """

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, keys: Sequence[Key], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys = tuple(key for key in keys if key.show)

    def render(self) -> RenderResult:
        """Each key and what it does; the command palette on the right."""
        parts: list[Part] = []
        for key in self.keys:
            parts.append((f" {key.label} ", "bold $text-accent"))
            parts.append((key.title + " ", ""))
        return _line(
            parts,
            [(" Ctrl+P ", "bold $text-accent"), ("Commands ", "")],
            self.size.width,
            essential=0,
        )
