"""Provides BoardApp: the live board over a store, and ``run_board`` to show it.

The app never calls an API. It reads the store in worker threads: the queue, then the
panels, whenever this process's pipeline says its clocks changed or the store says
another process changed it. On PostgreSQL every commit is pushed (:meth:`Store.listen`,
LISTEN/NOTIFY) and nothing is polled while the listener is connected; on SQLite, or
while the listener reconnects, a cheap change marker is read four times a second
(:meth:`Store.change_marker`). The loaded queue is
filtered and sorted in memory (:func:`monitor.storage.board.select_rows`, the same
rules as the SQL), so a key press never waits for the database. Every second the
countdowns tick without reloading anything.

A failing database is a banner and a notice, never a crash: the board keeps its last
state and keeps asking until the store answers again.
"""

from __future__ import annotations

import contextlib
import gc
import getpass
import logging
import sys
import time
import webbrowser
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from textual import work
from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.screen import Screen
from textual.worker import get_current_worker

from monitor.config import Config
from monitor.errors import ReplywatchError
from monitor.storage import ConversationKey, Store
from monitor.storage.board import (
    QueueFilter,
    QueueIndex,
    QueueRow,
    QueueSort,
    count_states,
)
from monitor.storage.cluster import LOST
from monitor.tui.keys import APP_KEYS, BOARD_KEYS, CONVERSATION_KEYS, Key
from monitor.tui.messages import (
    ClocksChanged,
    ConversationLoaded,
    DismissalStored,
    LogRecorded,
    PanelsLoaded,
    PanelsSnapshot,
    QueueLoaded,
    QueueSnapshot,
    StoreFailed,
    StoreRecovered,
)
from monitor.tui.render import STALE_AFTER, clean, overall_percent, safe_url, source_health
from monitor.tui.screens.board import BoardScreen
from monitor.tui.screens.conversation import ConversationScreen
from monitor.tui.screens.modals import DismissModal, FilterModal, HelpModal
from monitor.tui.widgets.header import Banner, BoardHeader, HeaderState
from monitor.tui.widgets.panels import BreachLog, SourcesPanel, TodayPanel

if TYPE_CHECKING:
    from monitor.service import Service

log = logging.getLogger(__name__)

Evaluate = Callable[[Sequence[ConversationKey], datetime], object]
"""Evaluates conversations at once (in-process boards); None when attached."""

COLLECT_EVERY = 600.0
"""Seconds between two full garbage collections (see ``BoardApp._collect_garbage``)."""
CHECK_EVERY = 0.25
"""Seconds between two reads of the change marker (four indexed lookups)."""
RETRY_EVERY = 2.0
"""Seconds between two attempts while the store does not answer."""
QUEUE_LIMIT = 50_000
"""Most conversations loaded at once; beyond it the board says so."""
LOG_WINDOW = timedelta(hours=24)
DARK, LIGHT = "textual-dark", "textual-light"


def _utc_now() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


def default_user() -> str:
    """The name dismissals are stored under: the login name, or ``board``."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "board"


class BoardApp(App[None]):
    """The replywatch board: the queue, today's figures, sources and breaches, live."""

    CSS_PATH = "replywatch.tcss"
    TITLE = "replywatch"
    BINDINGS: ClassVar[list[BindingType]] = [key.binding() for key in APP_KEYS]

    def __init__(
        self,
        store: Store,
        *,
        zone: tzinfo = UTC,
        now: Callable[[], datetime] = _utc_now,
        evaluate: Evaluate | None = None,
        user: str | None = None,
        open_url: Callable[[str], object] = webbrowser.open,
        theme: str = DARK,
        check_every: float = CHECK_EVERY,
        queue_limit: int = QUEUE_LIMIT,
        stop_after: float | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.zone = zone
        self.now = now
        self.evaluate = evaluate
        self.user = user or default_user()
        self.url_opener = open_url
        self.theme = theme
        self.check_every = check_every
        self.queue_limit = queue_limit
        self.stop_after = stop_after
        self.filters = QueueFilter()
        self.snapshot: QueueSnapshot | None = None
        self.panels: PanelsSnapshot | None = None
        self._index = QueueIndex(())
        self._conversation_screen: ConversationScreen | None = None
        self.rows: list[QueueRow] = []
        """The conversations shown (the snapshot's queue, filtered and sorted)."""
        self.undo_stack: list[tuple[ConversationKey, str]] = []
        self.database_error: str | None = None
        self.loads = 0
        """Snapshots shown so far (tests and benchmarks wait on it)."""
        self._counts: dict[str, int] = {}
        self._next_boundary: datetime | None = None
        self._reloading = False
        self._reload_again = False
        self._checking = False
        self._last_check = 0.0
        self.pushed = False
        """Whether changes arrive by push (PostgreSQL's listener is connected)."""
        self.marker_checks = 0
        """Times the change marker was read to look for changes (polls)."""

    # -- start ----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        """The board itself."""
        return BoardScreen(self.zone)

    @property
    def board(self) -> BoardScreen:
        """The board screen (always at the bottom of the stack)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, BoardScreen)
        return screen

    def _live_board(self) -> BoardScreen | None:
        """The board, if its widgets are there (not before composing, nor when closing)."""
        stack = self.screen_stack if self.is_running else []
        board = stack[0] if stack else None
        if isinstance(board, BoardScreen) and board.query("#queue"):
            return board
        return None

    def on_mount(self) -> None:
        """Load the first snapshot; then tick every second and watch for changes."""
        self.request_reload()
        self.set_interval(1.0, self.tick, name="tick")
        self.set_interval(self.check_every, self.check_for_changes, name="changes")
        self.set_interval(COLLECT_EVERY, self._collect_garbage, name="collect")
        if self.store.dialect == "postgresql":
            self._listen()
        if self.stop_after is not None:
            self.set_timer(self.stop_after, self.exit, name="stop")

    def on_unmount(self) -> None:
        """Give everything frozen back to the garbage collector: the board is closing."""
        gc.unfreeze()

    # -- loading --------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Read a new snapshot now, or right after the one being read."""
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        self._reload_again = False
        self._load_snapshot()

    @work(thread=True, group="reload", exit_on_error=False)
    def _load_snapshot(self) -> None:
        """Read the queue and show it, then the panels' figures (a worker thread)."""
        try:
            self.post_message(QueueLoaded(self.read_queue()))
            self.post_message(PanelsLoaded(self.read_panels()))
        except ReplywatchError as err:
            self.post_message(StoreFailed(str(err), "reading the board"))
        except Exception as err:
            log.exception("reading the board failed")
            self.post_message(StoreFailed(f"{type(err).__name__}: {err}", "reading the board"))

    def read_queue(self) -> QueueSnapshot:
        """Read the queue and the sources' health (blocking: call it in a thread)."""
        store = self.store
        now = self.now()
        # The marker is read first: whatever is stored while the rest is read moves it
        # again, and the next check reloads.
        marker = store.change_marker()
        queue = store.queue(now=now, limit=self.queue_limit + 1)
        truncated = len(queue) > self.queue_limit
        rows = tuple(queue[: self.queue_limit])
        return QueueSnapshot(
            loaded_at=now,
            marker=marker,
            queue=rows,
            counts=store.queue_counts(now=now) if truncated else count_states(rows, now),
            sources=tuple(store.sources()),
            truncated=truncated,
        )

    def read_panels(self) -> PanelsSnapshot:
        """Read today's figures, the sparkline, the log and the filter values."""
        store = self.store
        now = self.now()
        return PanelsSnapshot(
            loaded_at=now,
            today=tuple(store.today(now=now, zone=self.zone)),
            first_responses=tuple(
                store.first_response_times(since=now - LOG_WINDOW, until=now + timedelta(seconds=1))
            ),
            log=tuple(store.breach_log(since=now - LOG_WINDOW, limit=100)),
            facets=store.facets(),
        )

    @work(group="listen", exclusive=True, exit_on_error=False)
    async def _listen(self) -> None:
        """Reload the moment any process commits a change (PostgreSQL LISTEN/NOTIFY).

        While the listener is connected nothing is polled; while it reconnects the
        change marker is read again, and its reconnection reloads the board.
        """
        async for notice in self.store.listen():
            self.pushed = notice is not LOST
            if self.pushed:
                self.request_reload()

    def check_for_changes(self) -> None:
        """Ask the store whether anything changed (cheap: four indexed lookups)."""
        if self._checking or self._reloading:
            return
        if self.pushed and self.database_error is None:
            return  # PostgreSQL pushes every change
        clock = self._clock_seconds()
        if self.database_error is not None and clock - self._last_check < RETRY_EVERY:
            return
        self._last_check = clock
        self._checking = True
        self._read_marker()

    @staticmethod
    def _collect_garbage() -> None:
        """Collect cycles frozen with the loads, now and then, in one short pause.

        Objects alive at a freeze are never scanned again; a cycle among them that
        becomes garbage later would stay. A board runs all day, so every few minutes
        everything is unfrozen, collected once, and frozen again.
        """
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    @staticmethod
    def _clock_seconds() -> float:
        """A monotonic clock for pacing retries."""
        return time.monotonic()

    @work(thread=True, group="changes", exit_on_error=False)
    def _read_marker(self) -> None:
        """Read the change marker; reload if it moved (a worker thread)."""
        self.marker_checks += 1
        try:
            marker = self.store.change_marker()
        except ReplywatchError as err:
            self.post_message(StoreFailed(str(err), "checking for changes"))
            return
        except Exception as err:
            self.post_message(StoreFailed(f"{type(err).__name__}: {err}", "checking"))
            return
        finally:
            self._checking = False
        known = None if self.snapshot is None else self.snapshot.marker
        if self.database_error is not None:
            self.post_message(StoreRecovered())
        elif marker != known:
            self.call_from_thread(self.request_reload)

    def on_clocks_changed(self, message: ClocksChanged) -> None:
        """This process's pipeline changed clocks: reload now, not at the next check."""
        self.request_reload()

    def on_queue_loaded(self, message: QueueLoaded) -> None:
        """Show a fresh queue, its counts and the sources' health."""
        if self.database_error is not None:
            self._recovered()
        snapshot = message.snapshot
        self.snapshot = snapshot
        self._index = QueueIndex(snapshot.queue, ordered_by=QueueSort.URGENCY)
        # Ten thousand rows are long-lived and free of cycles: leave them out of the
        # cyclic collector's full passes, which would otherwise stall keys and ticks
        # for a tenth of a second after each load. (Freed by reference counting when
        # the next load replaces them; see _collect_garbage for everything else.)
        gc.freeze()
        self._counts = dict(snapshot.counts)
        self._next_boundary = self._boundary(snapshot.queue, snapshot.loaded_at)
        board = self._live_board()
        if board is not None:
            now = self.now()
            board.query_one(SourcesPanel).show(snapshot.sources, now)
            self._show_queue(now)
            self._show_problems(now)
            if isinstance(self.screen, ConversationScreen):
                self.load_conversation(self.screen)

    def on_panels_loaded(self, message: PanelsLoaded) -> None:
        """Show today's figures and the breach log: the snapshot is complete."""
        self._reloading = False
        self.panels = message.panels
        self.loads += 1
        board = self._live_board()
        if board is not None:
            now = self.now()
            board.query_one(TodayPanel).show(self.panels.today, self.panels.first_responses, now)
            board.query_one(BreachLog).show(self.panels.log, now)
            self._show_header()
        if self._reload_again:
            self.request_reload()

    def on_store_failed(self, message: StoreFailed) -> None:
        """Keep the last state, say so loudly, and keep trying."""
        self._reloading = False
        first = self.database_error is None
        self.database_error = clean(message.error, 300)
        if first:
            self.notify(
                f"The database does not answer ({message.doing}): {self.database_error}. "
                "The board keeps its last state and retries.",
                title="Database unreachable",
                severity="error",
                timeout=10,
                markup=False,
            )
        self._show_problems(self.now())

    def on_store_recovered(self, message: StoreRecovered) -> None:
        """The store answers again: reload."""
        self._recovered()
        self.request_reload()

    def _recovered(self) -> None:
        """Clear the database failure."""
        if self.database_error is None:
            return
        self.database_error = None
        self.notify("The database answers again.", title="Reconnected", timeout=4)
        self._show_problems(self.now())

    def on_log_recorded(self, message: LogRecorded) -> None:
        """Show a warning logged by the pipeline as a notice."""
        self.notify(
            message.text,
            severity="error" if message.level >= logging.ERROR else "warning",
            timeout=8,
            markup=False,
        )

    # -- showing --------------------------------------------------------------------------

    def _show_queue(self, now: datetime) -> None:
        """Filter and sort the loaded queue, and show it with the header."""
        snapshot = self.snapshot
        all_rows = () if snapshot is None else snapshot.queue
        self.rows = self._index.select(self.filters, now)
        board = self._live_board()
        if board is None:
            return
        queue = board.queue
        if not all_rows:
            queue.empty_message = "Nothing is open. Every promise is kept."
        else:
            queue.empty_message = "No open conversation matches the filters (c clears them)."
        queue.set_rows(self.rows, now)
        self._show_header()

    def _show_header(self) -> None:
        """Show the counts and filters in the header."""
        snapshot = self.snapshot
        board = self._live_board()
        if board is None:
            return
        board.query_one(BoardHeader).show(
            HeaderState(
                counts=self._counts,
                percent_today=None if self.panels is None else overall_percent(self.panels.today),
                filters=self.filters,
                shown=len(self.rows),
                loaded=snapshot is not None,
                truncated=snapshot is not None and snapshot.truncated,
            )
        )

    def _show_problems(self, now: datetime) -> None:
        """Show the database and sources in trouble in the banner."""
        problems = []
        if self.database_error is not None:
            problems.append(f"database unreachable: {self.database_error} (retrying)")
        if self.snapshot is not None:
            stale = []
            for state in self.snapshot.sources:
                health = source_health(state, now, self.zone)
                if health.level == "error":
                    problems.append(
                        f"source {clean(state.name, 40)} {health.label} {health.detail}"
                    )
                elif health.label == "STALE":
                    stale.append(clean(state.name, 40))
            if stale:
                problems.append(
                    f"no successful poll for over {STALE_AFTER / 60:.0f} minutes: "
                    + ", ".join(stale)
                    + " (is a worker running?)"
                )
        board = self._live_board()
        if board is None:
            return
        board.query_one(Banner).show(problems)
        board.query_one(SourcesPanel).database_error = self.database_error

    @staticmethod
    def _boundary(rows: Iterable[QueueRow], now: datetime) -> datetime | None:
        """Return the next instant a row changes state by time alone (at risk, overdue)."""
        upcoming = [
            instant
            for row in rows
            for instant in (row.at_risk_at, row.due_at)
            if instant is not None and instant > now
        ]
        return min(upcoming, default=None)

    def tick(self) -> None:
        """Every second: countdowns, clocks, and the states that time alone changes."""
        now = self.now()
        snapshot = self.snapshot
        if snapshot is not None and self._next_boundary is not None and now >= self._next_boundary:
            # A clock crossed its warning or its deadline: recount, and refilter when
            # the filter depends on states.
            if not snapshot.truncated:
                self._counts = count_states(snapshot.queue, now)
            self._next_boundary = self._boundary(snapshot.queue, now)
            if self.filters.state is not None:
                self._show_queue(now)
            else:
                self._show_header()
        board = self._live_board()
        if board is None:
            return
        if self.screen is board:
            board.tick(now)
        elif isinstance(self.screen, ConversationScreen):
            self.screen.tick(now)

    # -- filters --------------------------------------------------------------------------

    def set_filters(self, filters: QueueFilter) -> None:
        """Show the queue with other filters."""
        self.filters = filters
        self._show_queue(self.now())

    def set_search(self, text: str) -> None:
        """Search as the lead types."""
        self.set_filters(replace(self.filters, search=text))

    def clear_filters(self) -> None:
        """Show every open conversation (the sort is kept)."""
        self.set_filters(QueueFilter(sort=self.filters.sort))

    def next_sort(self) -> None:
        """Show the queue in the next order."""
        orders = list(QueueSort)
        following = orders[(orders.index(self.filters.sort) + 1) % len(orders)]
        self.set_filters(replace(self.filters, sort=following))

    def ask_filter(self) -> None:
        """Pick a filter in the filter modal."""
        facets = self.panels.facets if self.panels is not None else None
        if facets is None:
            self.notify("The queue is still loading.", severity="warning")
            return

        def chosen(result: tuple[str, str | None] | None) -> None:
            if result is not None:
                name, value = result
                changed: dict[str, Any] = {name: value}
                self.set_filters(replace(self.filters, **changed))

        self.push_screen(FilterModal(self.filters, facets), chosen)

    # -- conversations --------------------------------------------------------------------

    def open_conversation(self, key: ConversationKey, row: QueueRow | None) -> None:
        """Show a conversation's screen; its details load in a worker."""
        if row is None:
            row = next((item for item in self.rows if item.key == key), None)
        screen = self._conversation_screen
        if screen is None:
            # Made once and kept: composing a screen costs more than the key may take.
            screen = self._conversation_screen = ConversationScreen(key, row, self.zone)
            self.install_screen(screen, "conversation")
        screen.show(key, row, self.now())
        if self.screen is not screen:
            self.push_screen(screen)
        self.load_conversation(screen)

    @work(thread=True, group="conversation", exclusive=True, exit_on_error=False)
    def load_conversation(self, screen: ConversationScreen) -> None:
        """Read a conversation for its screen (a worker thread)."""
        try:
            found = self.store.conversation(screen.key)
        except ReplywatchError as err:
            self.post_message(StoreFailed(str(err), "reading a conversation"))
            return
        if get_current_worker().is_cancelled:
            return
        if found is None:
            screen.post_message(ConversationLoaded(screen.key, None))
            return
        conversation, events, clocks = found
        screen.post_message(ConversationLoaded(screen.key, conversation, events, clocks))

    def browse(self, url: str | None) -> None:
        """Open a conversation's link in the browser, if it is a plain web link."""
        link = safe_url(url)
        if link is None:
            self.notify(
                "This conversation has no web link."
                if not url
                else "Its link is not an http(s) address; it is not opened.",
                severity="warning",
            )
            return
        self._open_in_browser(link)

    @work(thread=True, group="browser", exit_on_error=False)
    def _open_in_browser(self, link: str) -> None:
        """Hand a link to the browser (a worker: some browsers block while starting)."""
        try:
            self.url_opener(link)
        except Exception as err:
            self.call_from_thread(
                self.notify, f"The browser did not open: {err}", severity="error", markup=False
            )
            return
        self.call_from_thread(self.notify, "Opened in the browser.", timeout=3)

    # -- dismissals -----------------------------------------------------------------------

    def ask_dismiss(self, key: ConversationKey, who: str, about: str) -> None:
        """Ask why a conversation needs no reply, then dismiss it."""

        def chosen(reason: str | None) -> None:
            if reason:
                self._store_dismissal(key, reason, clean(who, 60))

        self.push_screen(DismissModal(who, about), chosen)

    @work(thread=True, group="write", exit_on_error=False)
    def _store_dismissal(self, key: ConversationKey, reason: str, who: str) -> None:
        """Store a dismissal and evaluate it at once when in-process (a worker thread)."""
        now = self.now()
        try:
            stored = self.store.dismiss(key, reason=reason, by=self.user, now=now)
            if self.evaluate is not None:
                self.evaluate([key], max(now, stored.at))
        except Exception as err:
            self.post_message(StoreFailed(str(err), "dismissing"))
            return
        self.undo_stack.append((key, stored.id))
        self.post_message(DismissalStored(key, undo=False, customer=who))

    def undo(self, key: ConversationKey | None) -> None:
        """Undo the dismissal of ``key``, or the last one made on this board."""
        if key is None:
            if not self.undo_stack:
                self.notify(
                    "Nothing to undo on this board. To undo another dismissal, open its "
                    "conversation from the breach log and press u.",
                    severity="warning",
                    timeout=6,
                )
                return
            key, _ = self.undo_stack.pop()
        else:
            self.undo_stack = [item for item in self.undo_stack if item[0] != key]
        self._store_undo(key)

    @work(thread=True, group="write", exit_on_error=False)
    def _store_undo(self, key: ConversationKey) -> None:
        """Store the undoing of a dismissal (a worker thread)."""
        now = self.now()
        try:
            if not self.store.dismissed(key):
                self.post_message(DismissalStored(key, undo=True, customer=""))
                return
            stored = self.store.undo_dismiss(key, by=self.user, now=now)
            if self.evaluate is not None:
                # The undo may be dated just after the dismissal, a moment ahead of now.
                self.evaluate([key], max(now, stored.at))
        except Exception as err:
            self.post_message(StoreFailed(str(err), "undoing a dismissal"))
            return
        self.post_message(DismissalStored(key, undo=True, customer=clean(key[1], 40)))

    def on_dismissal_stored(self, message: DismissalStored) -> None:
        """Say what happened, and show it."""
        who = message.customer or clean(message.key[1], 40)
        if message.undo and not message.customer:
            self.notify("That conversation is not dismissed.", severity="warning")
        elif message.undo:
            self.notify(f"Dismissal undone: {who} is back in the queue.", markup=False)
        else:
            waiting = "" if self.evaluate is not None else " (the worker re-evaluates it)"
            self.notify(f"Dismissed {who}{waiting}. Press u to undo.", markup=False)
        self.request_reload()
        if isinstance(self.screen, ConversationScreen) and self.screen.key == message.key:
            self.load_conversation(self.screen)

    # -- app-wide actions -----------------------------------------------------------------

    def action_help(self) -> None:
        """List every key."""
        if not isinstance(self.screen, HelpModal):
            self.push_screen(HelpModal())

    def action_toggle_theme(self) -> None:
        """Switch between the dark and the light theme."""
        self.theme = LIGHT if self.current_theme.dark else DARK

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every action of the current screen and of the app, for the command palette."""
        keys: tuple[Key, ...] = ()
        if isinstance(screen, BoardScreen):
            keys = BOARD_KEYS
        elif isinstance(screen, ConversationScreen):
            keys = CONVERSATION_KEYS
        for key in keys:
            if key.action.startswith("app."):
                continue
            yield SystemCommand(
                f"{key.title} ({key.label})", key.help, partial(screen.run_action, key.action)
            )
        for key in APP_KEYS:
            if key.action == "command_palette":
                continue
            yield SystemCommand(
                f"{key.title} ({key.label})", key.help, partial(self.run_action, key.action)
            )
        for sort in QueueSort:
            yield SystemCommand(
                f"Sort by {sort.value}",
                "show the queue in this order",
                partial(self.set_filters, replace(self.filters, sort=sort)),
            )
        yield from super().get_system_commands(screen)


class _BoardLogHandler(logging.Handler):
    """Routes warnings logged while the board is on screen to its notices."""

    def __init__(self, app: BoardApp) -> None:
        super().__init__(level=logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        """Post the record to the app (thread safe)."""
        try:
            text = clean(self.format(record), 500)
            self.app.post_message(LogRecorded(record.levelno, text))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def logging_to(app: BoardApp) -> Iterator[None]:
    """Send log records to the board instead of the terminal it draws on."""
    root = logging.getLogger()
    streams = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    removed = [
        handler
        for handler in root.handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream in streams
    ]
    for handler in removed:
        root.removeHandler(handler)
    board_handler = _BoardLogHandler(app)
    board_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.addHandler(board_handler)
    try:
        yield
    finally:
        root.removeHandler(board_handler)
        for item in removed:
            root.addHandler(item)


async def run_board(app: BoardApp) -> None:
    """Show the board in this terminal until the lead quits (q) or it is told to stop."""
    with logging_to(app):
        await app.run_async()


def open_board(config: Config, store: Store, stop_after: float | None = None) -> BoardApp:
    """Return the board of a process that also runs the pipeline (``run``, ``demo``)."""
    return BoardApp(store, zone=ZoneInfo(config.monitor.timezone), stop_after=stop_after)


def board_notifier(app: BoardApp | None) -> Callable[[int], None] | None:
    """Return the pipeline's ``on_clock_changes`` callback that wakes ``app`` (None: none)."""
    if app is None:
        return None

    def notify(changes: int) -> None:
        app.post_message(ClocksChanged(changes))

    return notify


async def show_board(app: BoardApp, service: Service) -> None:
    """Show ``app`` over ``service``'s store until the lead quits; dismissals made on it
    are evaluated at once with the service's policies."""

    def evaluate(keys: Sequence[ConversationKey], now: datetime) -> object:
        return service.evaluator.evaluate_keys(keys, now=now)

    app.evaluate = evaluate
    await run_board(app)
