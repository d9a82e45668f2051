"""Provides BoardScreen: the header, the queue, and the side panels of the board."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Input, OptionList

from monitor.tui.keys import APP_KEYS, BOARD_KEYS
from monitor.tui.widgets.header import Banner, BoardHeader, KeyBar
from monitor.tui.widgets.panels import BreachLog, SourcesPanel, TodayPanel
from monitor.tui.widgets.queue import QueueTable

if TYPE_CHECKING:
    from monitor.tui.app import BoardApp


class BoardScreen(Screen[None]):
    """The queue of open conversations beside today's figures, sources and breach log."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(key.binding() for key in BOARD_KEYS),
        Binding("escape", "leave_search", "Leave search", show=False),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # noqa: RUF012 - Textual's

    def __init__(self, zone: tzinfo) -> None:
        super().__init__(id="board")
        self.zone = zone

    def compose(self) -> ComposeResult:
        """Header and banner on top; the queue on the left, panels on the right."""
        yield BoardHeader(self.zone, id="header")
        yield Banner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="queue-pane"):
                yield Input(
                    placeholder="search customer, subject, message, id, assignee…",
                    id="search",
                )
                yield QueueTable(id="queue")
            with Vertical(id="side"):
                yield TodayPanel(self.zone, id="today")
                yield SourcesPanel(self.zone, id="sources")
                yield BreachLog(self.zone, id="log")
        yield KeyBar((*BOARD_KEYS, *APP_KEYS))

    def on_mount(self) -> None:
        """Start on the queue; title the log."""
        self.query_one("#log", BreachLog).border_title = "Breaches & recoveries · 24 h"
        self.query_one("#queue", QueueTable).border_title = "Queue"
        self.query_one(QueueTable).focus()

    @property
    def queue(self) -> QueueTable:
        """The queue widget."""
        return self.query_one("#queue", QueueTable)

    def _board(self) -> BoardApp:
        """The app, which owns the store and the filters."""
        return cast("BoardApp", self.app)

    def tick(self, now: datetime) -> None:
        """Move the countdowns and the clocks."""
        try:
            queue, header = self.queue, self.query_one(BoardHeader)
            sources = self.query_one(SourcesPanel)
        except NoMatches:  # the app is closing and the widgets are gone
            return
        queue.tick(now)
        header.tick(now)
        sources.tick(now)

    def on_screen_resume(self) -> None:
        """Catch up with the time spent behind another screen."""
        self.tick(self._board().now())

    # -- events from the widgets ----------------------------------------------------------

    def on_queue_table_selected(self, message: QueueTable.Selected) -> None:
        """Open the chosen conversation."""
        self._board().open_conversation(message.row.key, message.row)

    @on(OptionList.OptionSelected, "#log")
    def _open_from_log(self, event: OptionList.OptionSelected) -> None:
        """Open the conversation of a breach-log entry."""
        entry = self.query_one(BreachLog).current
        if entry is not None:
            self._board().open_conversation(entry.key, None)

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        """Filter as the lead types."""
        self._board().set_search(event.value)

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        """Back to the queue with the search in force."""
        self.action_leave_search()

    # -- actions --------------------------------------------------------------------------

    def action_open(self) -> None:
        """Open the highlighted conversation (or the highlighted log entry's)."""
        if isinstance(self.focused, BreachLog):
            entry = self.focused.current
            if entry is not None:
                self._board().open_conversation(entry.key, None)
            return
        row = self.queue.current
        if row is not None:
            self._board().open_conversation(row.key, row)

    def action_browse(self) -> None:
        """Open the highlighted conversation in the browser."""
        row = self.queue.current
        if row is None:
            self.notify("No conversation is highlighted.", severity="warning")
            return
        self._board().browse(row.url)

    def action_dismiss_conversation(self) -> None:
        """Dismiss the highlighted conversation, asking why."""
        row = self.queue.current
        if row is None:
            self.notify("No conversation is highlighted.", severity="warning")
            return
        self._board().ask_dismiss(
            row.key, row.customer or row.conversation, row.snippet or row.subject or ""
        )

    def action_undo(self) -> None:
        """Undo the last dismissal made on this board."""
        self._board().undo(None)

    def action_search(self) -> None:
        """Show the search field and type into it."""
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def action_leave_search(self) -> None:
        """Back to the queue; an empty search field goes away."""
        search = self.query_one("#search", Input)
        if not search.value:
            search.display = False
        self.queue.focus()

    def action_filter(self) -> None:
        """Pick a filter."""
        self._board().ask_filter()

    def action_sort(self) -> None:
        """Show the queue in the next order."""
        self._board().next_sort()

    def action_clear(self) -> None:
        """Clear every filter and the search."""
        search = self.query_one("#search", Input)
        with search.prevent(Input.Changed):
            search.value = ""
        search.display = False
        self._board().clear_filters()
        self.queue.focus()

    def action_panels(self) -> None:
        """Show or hide the side panels."""
        self.toggle_class("-panels")

    def action_refresh(self) -> None:
        """Read the store again now."""
        self._board().request_reload()
        self.notify("Reading the store again…", timeout=2)
