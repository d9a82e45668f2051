"""Provides QueueTable: the queue as a virtual table whose countdowns tick in place.

A Line API widget (``ScrollView.render_line``): only the lines on screen are ever
drawn, so 10,000 conversations cost what 50 do. Each line is the countdown cell, drawn
at every call, joined to the rest of the row, which is cached until the row, the width,
the cursor, the row's effective state or its age changes. A tick therefore redraws
the lines whose countdown changed, and nothing else; a reload redraws only the rows
that changed, because unchanged rows find their cached strip.

Public text reaches the terminal as ``Segment`` objects of sanitized text, never as
markup, so ``[@click=app.quit]`` in a customer's name is just characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from monitor.storage.board import QueueRow
from monitor.tui.render import (
    GAP,
    Column,
    cell_text,
    fit,
    layout_columns,
    time_left,
)

_STATE_CLASSES = {
    "breached": "queue--breached",
    "overdue": "queue--overdue",
    "at_risk": "queue--at-risk",
    "running": "queue--running",
    "paused": "queue--paused",
    "waiting": "queue--waiting",
    "no_policy": "queue--waiting",
}
_STYLED_COLUMNS = {"time_left", "state"}
"""Columns drawn in the colour of the row's state; the others use the text colour."""


class QueueTable(ScrollView, can_focus=True):
    """The queue: one line per open conversation, most urgent first."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "queue--header",
        "queue--cursor",
        "queue--breached",
        "queue--overdue",
        "queue--at-risk",
        "queue--running",
        "queue--paused",
        "queue--waiting",
        "queue--muted",
        "queue--urgent",
        "queue--empty",
    }

    DEFAULT_CSS = """
    QueueTable {
        background: $surface;
        color: $foreground;
        scrollbar-gutter: stable;
        overflow-x: hidden;
        & > .queue--header { color: $text-primary; text-style: bold; background: $panel; }
        & > .queue--cursor { background: $primary 25%; }
        &:focus > .queue--cursor { background: $primary 45%; }
        & > .queue--breached { color: $text-error; text-style: bold; }
        & > .queue--overdue { color: $text-error; }
        & > .queue--at-risk { color: $text-warning; text-style: bold; }
        & > .queue--running { color: $text-success; }
        & > .queue--paused { color: $text-muted; }
        & > .queue--waiting { color: $text-disabled; }
        & > .queue--muted { color: $text-muted; }
        & > .queue--urgent { color: $text-error; }
        & > .queue--empty { color: $text-muted; text-style: italic; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    class Highlighted(Message):
        """The cursor moved to another conversation (None: the queue is empty)."""

        def __init__(self, row: QueueRow | None) -> None:
            super().__init__()
            self.row = row

    class Selected(Message):
        """A conversation was chosen (Enter or a click)."""

        def __init__(self, row: QueueRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows: list[QueueRow] = []
        self._cursor = 0
        self.now = datetime.now(UTC)
        """The instant the countdowns are drawn for; the app sets it at every tick."""
        self.empty_message = "Loading the queue…"
        self._columns: tuple[Column, ...] = ()
        self._columns_width = -1
        self._cache: LRUCache[tuple[object, ...], Strip] = LRUCache(2048)
        self._drawn: dict[int, tuple[str, str, str]] = {}
        self.lines_drawn = 0
        """Lines built since mount (not served from the cache): what benchmarks count."""

    # -- data -----------------------------------------------------------------------------

    @property
    def rows(self) -> Sequence[QueueRow]:
        """The rows shown, in order."""
        return self._rows

    @property
    def cursor(self) -> int:
        """The index of the highlighted row."""
        return self._cursor

    @property
    def current(self) -> QueueRow | None:
        """The highlighted row, if any."""
        if 0 <= self._cursor < len(self._rows):
            return self._rows[self._cursor]
        return None

    def set_rows(self, rows: Sequence[QueueRow], now: datetime) -> None:
        """Show ``rows``; the cursor stays on the same conversation if it is still there."""
        previous = self.current
        self._rows = list(rows)
        self.now = now
        cursor = 0
        if previous is not None:
            key = previous.key
            cursor = next(
                (index for index, row in enumerate(self._rows) if row.key == key),
                min(self._cursor, max(0, len(self._rows) - 1)),
            )
        self._drawn.clear()
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        self._move(cursor, force=True)
        self.refresh()

    def tick(self, now: datetime) -> int:
        """Redraw the lines of the visible rows whose countdown, state or age changed.

        Returns how many lines were refreshed.
        """
        self.now = now
        first = round(self.scroll_offset.y)
        changed = 0
        for index in range(first, min(len(self._rows), first + max(0, self.size.height - 1))):
            if self._drawn.get(index) != self._volatile(self._rows[index]):
                self.refresh_line(index + 1)
                changed += 1
        return changed

    def _volatile(self, row: QueueRow) -> tuple[str, str, str]:
        """Return what of a row changes with time alone: countdown, state, age."""
        left = time_left(row, self.now)
        return (left.text, left.state, cell_text("age", row, self.now))

    # -- cursor ---------------------------------------------------------------------------

    def _move(self, index: int, *, force: bool = False) -> None:
        """Put the cursor on row ``index`` (clamped), scroll it into view, announce it."""
        index = max(0, min(index, len(self._rows) - 1)) if self._rows else 0
        if index == self._cursor and not force:
            return
        old = self._cursor
        self._cursor = index
        self.refresh_line(old + 1)
        self.refresh_line(index + 1)
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_offset.y)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + visible:
            self.scroll_to(y=index - visible + 1, animate=False, immediate=True)
        self.post_message(self.Highlighted(self.current))

    def action_cursor_up(self) -> None:
        """Move up one row."""
        self._move(self._cursor - 1)

    def action_cursor_down(self) -> None:
        """Move down one row."""
        self._move(self._cursor + 1)

    def action_page_up(self) -> None:
        """Move up one screen."""
        self._move(self._cursor - max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        """Move down one screen."""
        self._move(self._cursor + max(1, self.size.height - 2))

    def action_first(self) -> None:
        """Move to the most urgent row."""
        self._move(0)

    def action_last(self) -> None:
        """Move to the last row."""
        self._move(len(self._rows) - 1)

    def action_select(self) -> None:
        """Open the highlighted conversation."""
        if self.current is not None:
            self.post_message(self.Selected(self.current))

    def on_click(self, event: events.Click) -> None:
        """Highlight the clicked row; a second click on it opens it."""
        if event.y < 1:
            return
        index = round(self.scroll_offset.y) + event.y - 1
        if 0 <= index < len(self._rows):
            if index == self._cursor:
                self.action_select()
            else:
                self._move(index)

    # -- drawing --------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        """Forget every cached line: the theme or the focus changed the colours."""
        super().notify_style_update()
        self._cache.clear()
        self._drawn.clear()

    def on_resize(self, event: events.Resize) -> None:
        """Lay the columns out again for the new width."""
        self.virtual_size = Size(event.size.width, len(self._rows) + 1)
        self._move(self._cursor, force=True)

    def columns(self) -> tuple[Column, ...]:
        """Return the columns for the current width."""
        width = self.scrollable_content_region.width
        if width != self._columns_width:
            self._columns = layout_columns(width)
            self._columns_width = width
        return self._columns

    def _style(self, *names: str) -> Style:
        """Return the rich style of component classes over the widget's own."""
        return self.get_component_rich_style(*names)

    def _ink(self, name: str) -> Style:
        """Return a component class's colour and weight, to lay over a row's background.

        Taken from the full style, where Textual has blended translucent theme colours
        (``$text-muted``) over the widget's background; a partial style cannot.
        """
        full = self.get_component_rich_style(name)
        return Style(color=full.color, bold=full.bold, italic=full.italic)

    def render_line(self, y: int) -> Strip:
        """Draw line ``y`` of the view: the header, a row, or blank."""
        width = self.scrollable_content_region.width
        columns = self.columns()
        if y == 0:
            return self._header(columns, width)
        index = round(self.scroll_offset.y) + y - 1
        if index >= len(self._rows):
            if not self._rows and y == 2:
                return self._message(width)
            return Strip.blank(width, self.rich_style)
        row = self._rows[index]
        selected = index == self._cursor
        volatile = self._volatile(row)
        self._drawn[index] = volatile
        left_text, state, age = volatile
        base = self._style("queue--cursor") if selected else self.rich_style
        colour = self._ink(_STATE_CLASSES.get(state, "queue--running"))
        first, rest = columns[0], columns[1:]
        countdown = Strip(
            [Segment(fit(left_text, first.width, align=first.align), base + colour)],
            first.width,
        )
        key = (row, width, selected, state, age, columns)
        tail = self._cache.get(key)
        if tail is None:
            tail = self._row_tail(row, rest, base, colour, width - first.width)
            self._cache[key] = tail
            self.lines_drawn += 1
        return Strip.join([countdown, tail])

    def _row_tail(
        self, row: QueueRow, columns: Sequence[Column], base: Style, colour: Style, width: int
    ) -> Strip:
        """Build every cell of a row after the countdown."""
        muted = base + self._ink("queue--muted")
        segments: list[Segment] = []
        for column in columns:
            segments.append(Segment(" " * GAP, base))
            text = cell_text(column.name, row, self.now)
            if column.name in _STYLED_COLUMNS:
                style = base + colour
            elif column.name == "priority" and text == "urgent":
                style = base + self._ink("queue--urgent")
            elif column.name in ("age", "channel", "source", "assignee", "metric"):
                style = muted
            else:
                style = base
            if column.name == "source":
                kind = f" {row.kind}" if row.kind else ""
                name = fit(text, column.width, pad=False)
                segments.append(Segment(name, style))
                used = cell_len(name)
                room = column.width - used
                if kind and cell_len(kind) <= room:
                    faint = kind
                    segments.append(Segment(faint, base + self._ink("queue--waiting")))
                    used += cell_len(faint)
                segments.append(Segment(" " * max(0, column.width - used), base))
                continue
            segments.append(Segment(fit(text, column.width, align=column.align), style))
        return Strip(segments).adjust_cell_length(width, base).simplify()

    def _header(self, columns: Sequence[Column], width: int) -> Strip:
        """Draw the column titles."""
        style = self._style("queue--header")
        segments = []
        for position, column in enumerate(columns):
            if position:
                segments.append(Segment(" " * GAP, style))
            segments.append(Segment(fit(column.title, column.width, align=column.align), style))
        return Strip(segments).adjust_cell_length(width, style).simplify()

    def _message(self, width: int) -> Strip:
        """Draw the line that says why the queue is empty."""
        style = self._style("queue--empty")
        return Strip([Segment(fit("  " + self.empty_message, width), style)], width)
