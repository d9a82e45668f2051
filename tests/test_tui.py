"""Pilot tests of the board: every key, live updates, failures, and hostile text everywhere.

Each test drives the real app over the recorded store of ``test_board_store`` (built
through the real pipeline) with a frozen, steppable clock; no widget or store method
is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import database_urls
from test_board_store import CONFIG, NOW, ZONE, _mention, config, fresh_database, recorded_store
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input

from monitor.cli import build_parser, main
from monitor.config import parse_config
from monitor.events import EventKind
from monitor.pipeline import Evaluator
from monitor.service import Service
from monitor.storage import Store
from monitor.tui.app import BoardApp, logging_to
from monitor.tui.keys import APP_KEYS, BOARD_KEYS, CONVERSATION_KEYS
from monitor.tui.screens.conversation import ConversationScreen
from monitor.tui.screens.modals import DismissModal, FilterModal, HelpModal
from monitor.tui.widgets.header import Banner

URGENCY = ["s8", "s1", "d1", "s2", "s7", "s3", "d2", "d7", "d6", "d5", "d3", "f2", "f1"]
"""The recorded queue, most urgent first."""
UNSAFE = ("\x1b", "\u202e", "\u202c", "\x00")


class SteppedClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        """The current instant."""
        return self.at

    def step(self, **delta: float) -> None:
        """Move forward."""
        self.at += timedelta(**delta)


@pytest.fixture
def database(tmp_path: Path) -> str:
    """The recorded store in a SQLite file; yields its URL."""
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder}/board.db"
    recorded_store(url).close()
    return url


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    """The board's own store object."""
    with Store.open(database) as opened:
        yield opened


def make_app(
    store: Store,
    *,
    clock: Callable[[], datetime] | None = None,
    opened: list[str] | None = None,
    in_process: bool = False,
) -> BoardApp:
    """A board over ``store``; ``in_process`` evaluates dismissals at once."""
    evaluator = Evaluator(config(), store)

    def evaluate(keys: object, now: datetime) -> object:
        return evaluator.evaluate_keys(list(keys), now=now)  # type: ignore[call-overload]

    return BoardApp(
        store,
        zone=ZONE,
        now=clock or (lambda: NOW),
        user="lead",
        open_url=(opened if opened is not None else []).append,
        evaluate=evaluate if in_process else None,
        check_every=0.25,
    )


async def until(pilot: Pilot[None], condition: Callable[[], bool], within: float = 5.0) -> None:
    """Let the app run until ``condition`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the board never got there")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot[None], app: BoardApp, count: int = 1) -> None:
    """Wait until the board has shown ``count`` snapshots."""
    await until(pilot, lambda: app.loads >= count)
    await pilot.pause()


async def shows(pilot: Pilot[None], app: BoardApp, text: str) -> None:
    """Wait until the terminal shows ``text`` (a redraw may take a frame or two)."""
    await until(pilot, lambda: text in screen_text(app))


def screen_text(app: BoardApp) -> str:
    """What the terminal shows now, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def on_board(app: BoardApp) -> bool:
    """Whether the board is the screen on top."""
    return app.screen is app.board


def focused_on(app: BoardApp) -> object:
    """The focused widget."""
    return app.focused


def shown(app: BoardApp) -> list[str]:
    """The conversations in the queue, in order."""
    return [row.conversation for row in app.board.queue.rows]


async def move_to(pilot: Pilot[None], app: BoardApp, conversation: str) -> None:
    """Put the queue's cursor on ``conversation``."""
    await pilot.press("home")
    for _ in range(shown(app).index(conversation)):
        await pilot.press("down")
    assert app.board.queue.current is not None
    assert app.board.queue.current.conversation == conversation


# -- what a lead sees --------------------------------------------------------------------


async def test_board_shows_queue_verdict_panels(store: Store) -> None:
    """The first screen: the queue by urgency with countdowns, the verdict, the panels."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        assert shown(app) == URGENCY
        text = screen_text(app)
        assert "✖ 2 BREACHED · 1 OVERDUE" in text
        assert "13 open" in text
        assert "-44m 00s ✖ breached" in text  # s8, due 44 minutes ago
        assert "-0m 30s ! overdue" in text  # d1, not confirmed yet
        assert "1m 00s ▲ at risk" in text  # s2, due in a minute
        assert "‖ paused" in text
        assert "◌ waiting" in text
        assert "○ no policy" in text
        assert "Today since 00:00 EST" in text
        assert "forum github  FAILING" in text
        assert "Breaches & recoveries" in text
        assert "⊘ dismissed" in text
        assert "replied by Kim Alvarez 4m late" in text
        assert "10:00:00 EST" in text


async def test_countdowns_tick_in_place(store: Store) -> None:
    """A tick moves every countdown and crosses warnings without reloading or rebuilding."""
    clock = SteppedClock(NOW)
    app = make_app(store, clock=clock)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        loads, built = app.loads, app.board.queue.lines_drawn
        clock.step(seconds=1)
        app.tick()
        await pilot.pause()
        await shows(pilot, app, "-44m 01s ✖ breached")
        assert app.loads == loads
        assert app.board.queue.lines_drawn == built  # only the countdown cells were drawn
        clock.step(minutes=3, seconds=30)  # s3's warning passes
        app.tick()
        await pilot.pause()
        text = screen_text(app)
        s3_line = next(line for line in text.splitlines() if "ben" in line)
        assert "▲ at risk" in s3_line
        assert "3 at risk" in text  # the header recounts without a reload
        assert app.loads == loads


async def test_empty_store_says_every_promise_is_kept(tmp_path: Path) -> None:
    """No open conversation: the verdict is green and the queue says why it is empty."""
    with Store.open(f"sqlite:///{tmp_path}/empty.db") as empty:
        app = make_app(empty)
        async with app.run_test(size=(160, 30)) as pilot:
            await loaded(pilot, app)
            text = screen_text(app)
            assert "● ALL PROMISES KEPT" in text
            assert "Nothing is open. Every promise is kept." in text
            assert "no sources registered yet" in text


# -- filters, search, sort ---------------------------------------------------------------


async def test_search_filters_as_you_type(store: Store) -> None:
    """/ opens the search; the queue narrows on every key; Esc keeps it; c clears."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"order")
        assert shown(app) == ["d1", "s3", "d2", "d6"]
        await shows(pilot, app, "“order”")
        await pilot.press("escape")
        assert focused_on(app) is app.board.queue
        assert shown(app) == ["d1", "s3", "d2", "d6"]
        await pilot.press("c")
        assert shown(app) == URGENCY
        await shows(pilot, app, "filter none")


async def test_filter_picker_sets_a_filter_that_survives_a_refresh(store: Store) -> None:
    """f, a dimension, a value: the queue and the header follow, and stay after a reload."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await pilot.press("f")
        assert isinstance(app.screen, FilterModal)
        await pilot.press(*(["down"] * 6), "enter")  # State
        await pilot.press("down", "enter")  # the first state: breached
        assert shown(app) == ["s8", "s1"]
        await shows(pilot, app, "state breached")
        loads = app.loads
        app.request_reload()
        await loaded(pilot, app, loads + 1)
        assert shown(app) == ["s8", "s1"]
        await pilot.press("f", "down", "down", "down", "enter")  # Priority
        await pilot.press("enter")  # any
        assert shown(app) == ["s8", "s1"]
        await pilot.press("f", "escape")
        assert not isinstance(app.screen, FilterModal)


async def test_filter_picker_offers_none_for_optional_attributes(store: Store) -> None:
    """Assignee "none" shows the unassigned conversations."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await pilot.press("f", "down", "down", "down", "down", "enter")  # Assignee
        await pilot.press("down", "enter")  # none (not set)
        assert app.filters.assignee == ""
        assert shown(app) == ["s8", "s1", "s2", "s7", "s3", "d5", "f2", "f1"]


async def test_sort_cycles_through_the_orders(store: Store) -> None:
    """s shows priority order, then oldest first, then latest activity, then time left."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        assert shown(app)[:3] == ["d1", "d2", "d7"]
        await shows(pilot, app, "sort priority")
        await pilot.press("s")
        assert shown(app)[0] == "d3"
        await pilot.press("s")
        assert shown(app)[0] == "s3"
        await pilot.press("s")
        assert shown(app) == URGENCY


async def test_moving_keys(store: Store) -> None:
    """Arrows and j/k move one row, PgDn a page, End and Home to the ends; the log too."""
    app = make_app(store)
    async with app.run_test(size=(200, 12)) as pilot:
        await loaded(pilot, app)
        queue = app.board.queue
        await pilot.press("j", "down")
        assert queue.cursor == 2
        await pilot.press("k")
        assert queue.cursor == 1
        await pilot.press("pagedown")
        assert queue.cursor > 2
        await pilot.press("end")
        assert queue.current is not None
        assert queue.current.conversation == "f1"
        assert queue.scroll_offset.y > 0  # the last row is in view
        await pilot.press("G", "g")
        assert queue.cursor == 0
        assert queue.scroll_offset.y == 0


async def test_timeline_scrolls_with_the_same_keys(store: Store) -> None:
    """In a conversation longer than the screen, j, k, G and g scroll the timeline."""
    app = make_app(store)
    async with app.run_test(size=(100, 16)) as pilot:
        await loaded(pilot, app)
        await move_to(pilot, app, "d6")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.loaded)
        body = app.screen.query_one("#conversation-body")
        await pilot.press("j", "j")
        assert body.scroll_y == 2
        await pilot.press("G")
        await until(pilot, lambda: body.scroll_y == body.max_scroll_y)
        await pilot.press("g")
        await until(pilot, lambda: body.scroll_y == 0)


# -- a conversation ----------------------------------------------------------------------


async def test_enter_opens_the_conversation_with_clocks_and_reasons(store: Store) -> None:
    """Enter shows the timeline (public and internal), each clock and why; Esc goes back."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await move_to(pilot, app, "d6")
        await pilot.press("enter")
        assert isinstance(app.screen, ConversationScreen)
        await until(pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.loaded)
        await pilot.pause()
        text = screen_text(app)
        assert "Liam O'Brien" in text
        assert "▸ customer public" in text
        assert "◂ agent    internal" in text
        assert "Asked the warehouse; do not promise a date." in text
        assert "first reply" in text
        assert "resolution" in text
        assert "internal note at 14:30 does not stop the clock" in text
        assert "priority normal  assignee Aiko Tanaka  group billing" in text
        await pilot.press("escape")
        assert on_board(app)


async def test_browser_opens_only_web_links(store: Store) -> None:
    """o hands an https link to the browser; a javascript: link is refused with a notice."""
    opened: list[str] = []
    app = make_app(store, opened=opened)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await move_to(pilot, app, "d2")
        await pilot.press("o")
        await until(pilot, lambda: bool(opened))
        assert opened == ["https://acme.zendesk.com/agent/tickets/d2"]
        await move_to(pilot, app, "d7")
        await pilot.press("o")
        await pilot.pause(0.1)
        assert opened == ["https://acme.zendesk.com/agent/tickets/d2"]
        messages = [str(n.message) for n in app._notifications]
        assert any("not an http(s) address" in message for message in messages)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.loaded)
        await pilot.press("o")
        await pilot.pause(0.1)
        assert len(opened) == 1
        await shows(pilot, app, "not an http(s) link: will not be opened")


# -- dismissals --------------------------------------------------------------------------


async def test_dismiss_asks_a_reason_and_undo_restores(store: Store) -> None:
    """d asks why (required), stores it under the lead's name; u brings it back."""
    app = make_app(store, in_process=True)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await move_to(pilot, app, "s2")
        await pilot.press("d")
        assert isinstance(app.screen, DismissModal)
        await pilot.press("enter")
        assert isinstance(app.screen, DismissModal)
        await shows(pilot, app, "A reason is required")
        await pilot.press(*"resolved in DM", "enter")
        await until(pilot, lambda: "s2" not in shown(app))
        found = store.conversation(("social", "s2"))
        assert found is not None
        dismissal = found[1][-1]
        assert (dismissal.kind, dismissal.author, dismissal.fields["reason"]) == (
            EventKind.DISMISSED,
            "lead",
            "resolved in DM",
        )
        assert any("Press u to undo" in str(n.message) for n in app._notifications)
        await pilot.press("u")
        await until(pilot, lambda: "s2" in shown(app))
        assert store.conversation(("social", "s2")) is not None
        await pilot.press("u")
        await pilot.pause(0.1)
        assert any("Nothing to undo" in str(n.message) for n in app._notifications)


async def test_dismiss_cancel_stores_nothing(store: Store) -> None:
    """Esc in the dismissal modal changes nothing."""
    app = make_app(store, in_process=True)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        before = store.change_marker()
        await pilot.press("d", *"spam", "escape")
        await pilot.pause(0.1)
        assert on_board(app)
        assert store.change_marker() == before


async def test_attached_dismissal_is_evaluated_by_the_worker(database: str, store: Store) -> None:
    """Attached, the board stores the dismissal; a worker elsewhere evaluates it, and the
    board sees the result by itself."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await move_to(pilot, app, "s3")
        await pilot.press("d", *"thanks only", "enter")
        await until(pilot, lambda: any("worker" in str(n.message) for n in app._notifications))
        assert "s3" in shown(app)  # not evaluated yet
        with Store.open(database) as worker_store:
            await asyncio.to_thread(Evaluator(config(), worker_store).evaluate_dirty, now=NOW)
        await until(pilot, lambda: "s3" not in shown(app), within=2.0)


async def test_undo_from_the_conversation_of_a_log_entry(store: Store) -> None:
    """Tab to the breach log, open the dismissed conversation, u undoes its dismissal."""
    app = make_app(store, in_process=True, clock=lambda: NOW + timedelta(seconds=5))
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        await pilot.press("tab")
        await pilot.press("home", "enter")  # the newest entry: s6 dismissed as spam
        await until(pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.loaded)
        assert isinstance(app.screen, ConversationScreen)
        assert app.screen.key == ("social", "s6")
        await shows(pilot, app, "⊘ dismissed: needs no reply")
        await shows(pilot, app, "dismissed by lead: spam")
        await pilot.press("u")
        await until(pilot, lambda: "s6" in shown(app))
        await until(
            pilot, lambda: isinstance(app.screen, ConversationScreen) and not app.screen.dismissed
        )


# -- live --------------------------------------------------------------------------------


async def test_a_new_mention_shows_within_a_second(shared_database: str) -> None:
    """A mention stored and evaluated by another process is on the board within 1 s:
    pushed by PostgreSQL, with nothing polled; seen by the change marker on SQLite."""
    with Store.open(shared_database) as board_store:
        app = BoardApp(board_store, zone=ZONE, now=lambda: NOW, user="lead")  # default pace
        async with app.run_test(size=(200, 60)) as pilot:
            await loaded(pilot, app)
            postgresql = board_store.dialect == "postgresql"
            if postgresql:
                await until(pilot, lambda: app.pushed)
            polls = app.marker_checks
            with Store.open(shared_database) as worker:
                mention = _mention("s9", "s9-m1", NOW, "is anyone there?", "zoe")
                await asyncio.to_thread(worker.ingest, "social", [mention], {"p": 2}, NOW, now=NOW)
                stored = time.monotonic()
                await asyncio.to_thread(Evaluator(config(), worker).evaluate_dirty, now=NOW)
                evaluated = time.monotonic()

            def due(conversation: str) -> datetime | None:
                rows = [row for row in app.board.queue.rows if row.conversation == conversation]
                return rows[0].due_at if rows else None

            await until(pilot, lambda: "s9" in shown(app), within=3.0)
            assert time.monotonic() - stored < 1.0
            await until(pilot, lambda: due("s9") is not None, within=3.0)
            assert time.monotonic() - evaluated < 1.0
            assert due("s9") == NOW + timedelta(minutes=6)
            assert app.pushed is postgresql
            if postgresql:  # nothing polled: only the push can have shown it
                assert app.marker_checks == polls
            else:
                assert app.marker_checks > polls


async def test_lost_database_is_a_notice_and_the_board_reconnects(
    database: str, store: Store
) -> None:
    """The store vanishes: a banner, a notice, the last state kept; back: reconnected."""
    folder = Path(database.removeprefix("sqlite:///")).parent
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        moved = folder.with_name("gone")
        folder.rename(moved)
        store.close()  # drop pooled connections: the next read opens the (missing) file
        try:
            await until(pilot, lambda: app.database_error is not None)
            await pilot.pause()
            assert app.query_one(Banner).display
            await shows(pilot, app, "database unreachable")
            assert shown(app) == URGENCY  # the last state stays on screen
            assert app.is_running
        finally:
            moved.rename(folder)
        await until(pilot, lambda: app.database_error is None, within=8.0)
        assert any("answers again" in str(n.message) for n in app._notifications)


# -- keys, palette, themes, sizes --------------------------------------------------------


async def test_help_lists_every_key(store: Store) -> None:
    """? lists every binding of the board, the conversation and the app."""
    app = make_app(store)
    async with app.run_test(size=(120, 80)) as pilot:
        await loaded(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpModal)
        text = screen_text(app)
        for key in (*BOARD_KEYS, *CONVERSATION_KEYS, *APP_KEYS):
            assert f"{key.label}" in text
            assert key.help in text
        bound = {binding.key for binding in app.board.BINDINGS if isinstance(binding, Binding)}
        listed = {name for key in BOARD_KEYS for name in key.keys.split(",")}
        assert listed <= bound
        await pilot.press("escape")
        assert on_board(app)


async def test_palette_reaches_every_action(store: Store) -> None:
    """Every key's action is a command; running one from the palette works."""
    app = make_app(store)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        titles = [command.title for command in app.get_system_commands(app.board)]
        for key in (*BOARD_KEYS, *APP_KEYS):
            if key.action in ("app.focus_next", "command_palette"):
                continue
            assert any(title.startswith(key.title) for title in titles), key.title
        conversation = ConversationScreen(("social", "s1"), None, ZONE)
        titles = [command.title for command in app.get_system_commands(conversation)]
        for key in CONVERSATION_KEYS:
            assert any(title.startswith(key.title) for title in titles), key.title
        await pilot.press("ctrl+p")
        await pilot.press(*"Sort by priority")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.filters.sort.value == "priority")


async def test_theme_toggles_dark_and_light(store: Store) -> None:
    """t switches to the light theme and back."""
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        assert app.current_theme.dark
        await pilot.press("t")
        assert not app.current_theme.dark
        await pilot.press("t")
        assert app.current_theme.dark


async def test_usable_at_80_by_24(store: Store) -> None:
    """At 80x24 the queue takes the screen with its essential columns; p shows the panels."""
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        text = screen_text(app)
        for title in ("TIME LEFT", "STATE", "CUSTOMER", "LAST MESSAGE"):
            assert title in text
        assert "Today" not in text
        assert "Grace Hopper" in text
        await pilot.press("p")
        await until(pilot, lambda: "Today since" in screen_text(app))
        text = screen_text(app)
        assert "Sources" in text
        assert "TIME LEFT" not in text
        await pilot.press("p")
        await until(pilot, lambda: "TIME LEFT" in screen_text(app))
        assert "Today since" not in screen_text(app)


# -- hostile text ------------------------------------------------------------------------


def assert_inert(app: BoardApp, text: str) -> None:
    """The app still runs, and nothing that could steer a terminal reached it."""
    assert app.is_running
    assert app.return_code is None
    for character in UNSAFE:
        assert character not in text


async def test_hostile_text_is_shown_literally_in_every_view(store: Store) -> None:
    """Markup, actions, escapes, bidi overrides, NUL and 10 kB lines are just characters."""
    app = make_app(store, in_process=True)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot, app)
        queue = screen_text(app)
        assert "[bold red]Mallo…" in queue  # the name, literal, cut to its column
        assert "[link=https://evil." in queue  # the snippet, literal
        assert "· [bold red]Mallor" in queue  # the breach log
        assert "forum.example [@click=app.quit][31m" in queue  # a source's error (banner)
        assert_inert(app, queue)
        # The conversation of the hostile mention: its full 10 kB line, cut, literal.
        await move_to(pilot, app, "s1")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConversationScreen) and app.screen.loaded)
        text = screen_text(app)
        assert "[bold red]Mallory[/] [@click=app.quit]x[31mgnp.exe" in text  # whole name
        assert "[@click=app.quit]quit" in text
        assert "NUL\ufffdhere" in text
        assert "more characters)" in text
        assert_inert(app, text)
        await pilot.click(offset=(5, 5))  # a click on the text runs nothing
        await pilot.press("escape")
        # The dismissal modal shows the name and the snippet.
        await pilot.press("d")
        assert isinstance(app.screen, DismissModal)
        text = screen_text(app)
        assert "[bold red]Mallory[/]" in text
        assert_inert(app, text)
        await pilot.press(*"[@click=app.quit]", "escape")
        # The filter picker lists hostile assignees literally.
        await pilot.press("f", "down", "down", "down", "down", "enter")
        text = screen_text(app)
        assert "[b]Eve[/b]" in text
        assert_inert(app, text)
        await pilot.press("escape", "escape")
        # A hostile search is shown in the header as typed.
        await pilot.press("slash", *"[@click=app.quit]", "escape")
        text = screen_text(app)
        assert "“[@click=app.quit]”" in text
        assert_inert(app, text)
        await pilot.press("c")
        # A hostile reason in the log after a dismissal.
        await move_to(pilot, app, "s1")
        await pilot.press("d", *"[@click=app.quit] spam", "enter")
        await until(pilot, lambda: "s1" not in shown(app))
        await until(pilot, lambda: "[@click=app.quit] spam" in screen_text(app))
        assert_inert(app, screen_text(app))


# -- the command and the worker ----------------------------------------------------------


def test_tui_command_refuses_a_store_without_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attaching to an empty database says to upgrade it, in one line, and migrates nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPLYWATCH_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path}/empty.db"
    assert main(["tui", "--database", url]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("replywatch: ")
    assert "run `replywatch db upgrade`" in error
    assert "\n" not in error


def test_tui_command_names_an_unreachable_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that cannot be opened is one line naming it, not a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPLYWATCH_CONFIG", raising=False)
    assert main(["--database", "sqlite:////nonexistent-dir/x.db", "tui"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("replywatch: ")
    assert "Traceback" not in error


def test_tui_command_is_listed() -> None:
    """replywatch --help lists the tui command."""
    assert "tui" in build_parser().format_help()


async def test_the_worker_evaluates_a_dismissal_within_seconds(database: str, store: Store) -> None:
    """A running service's evaluate-dirty job applies a dismissal stored by any board."""
    settings = {**CONFIG, "sources": [{**source, "enabled": False} for source in CONFIG["sources"]]}
    async with Service(parse_config(settings), store, now=lambda: NOW) as service:
        service.start()
        with Store.open(database) as board_store:
            board_store.dismiss(("social", "s3"), reason="thanks only", by="lead", now=NOW)
        deadline = time.monotonic() + 5
        while not store.dismissed(("social", "s3")):
            assert time.monotonic() < deadline, "the worker never evaluated the dismissal"
            await asyncio.sleep(0.1)
    assert "s3" not in [row.conversation for row in store.queue(now=NOW)]


@pytest.fixture(params=database_urls())
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The recorded store on each engine (PostgreSQL when the CI provides one)."""
    with fresh_database(request.param, tmp_path) as url:
        recorded_store(url).close()
        yield url


async def test_two_boards_show_the_same_state(shared_database: str) -> None:
    """Two boards on one database (two machines): a dismissal on one, evaluated by a
    worker, leaves the queue of both; neither evaluates anything itself."""
    with Store.open(shared_database) as first, Store.open(shared_database) as second:
        one, two = make_app(first), make_app(second)
        async with (
            one.run_test(size=(200, 60)) as pilot_one,
            two.run_test(size=(200, 60)) as pilot_two,
        ):
            await loaded(pilot_one, one)
            await loaded(pilot_two, two)
            assert shown(one) == shown(two) == URGENCY
            await move_to(pilot_one, one, "s2")
            await pilot_one.press("d", *"resolved in DM", "enter")
            await until(
                pilot_one,
                lambda: (
                    first.dismissed(("social", "s2")) is False and bool(first.dirty_conversations())
                ),
            )
            with Store.open(shared_database) as worker:
                await asyncio.to_thread(Evaluator(config(), worker).evaluate_dirty, now=NOW)
            await until(pilot_one, lambda: "s2" not in shown(one))
            await until(pilot_two, lambda: "s2" not in shown(two))
            assert shown(one) == shown(two)
            await shows(pilot_two, two, "by lead: resolved in DM")


async def test_warnings_logged_under_the_board_become_notices(store: Store) -> None:
    """While the board is on screen, the pipeline's warnings are notices, not stray text."""
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        with logging_to(app):
            logging.getLogger("monitor.runner").warning("source %s failing: %s", "desk", "[b]x")
            await until(
                pilot, lambda: any("failing: [b]x" in str(n.message) for n in app._notifications)
            )
        logging.getLogger("monitor.runner").info("after the board")
