"""SVG snapshots of the board's main views, from the recorded store with a frozen clock.

Update them after a deliberate change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at every changed SVG (tests/__snapshots__/) before keeping it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_board_store import NOW, ZONE, recorded_store
from textual.pilot import Pilot

from monitor.storage import Store
from monitor.storage.board import QueueFilter, QueueSort
from monitor.tui.app import LIGHT, BoardApp
from monitor.tui.screens.conversation import ConversationScreen
from monitor.tui.screens.modals import DismissModal, FilterModal, HelpModal

SnapCompare = Callable[..., bool]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The recorded store, built once for every snapshot (they only read it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('snapshots')}/board.db"
    recorded_store(url).close()
    return url


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    """The board's store."""
    with Store.open(database) as opened:
        yield opened


def board(store: Store, **options: Any) -> BoardApp:
    """A board over the recorded store at its frozen instant."""
    return BoardApp(
        store, zone=ZONE, now=lambda: NOW, user="lead", open_url=lambda _: None, **options
    )


def ready(
    *keys: str, until: Callable[[BoardApp], bool] | None = None
) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Wait for the first snapshot, press ``keys``, then wait until ``until(app)`` holds.

    Waiting on the state the keys lead to (not on time) keeps the pictures the same on a
    busy machine.
    """

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, BoardApp)
        deadline = time.monotonic() + 20
        while app.loads < 1:
            assert time.monotonic() < deadline, "the board never loaded"
            await pilot.pause(0.02)
        await pilot.press(*keys)
        while until is not None and not until(app):
            assert time.monotonic() < deadline, "the board never got there"
            await pilot.pause(0.02)
        await pilot.pause()
        await pilot.pause()

    return run_before


def conversation_loaded(app: BoardApp) -> bool:
    """A conversation's screen shows its details."""
    return isinstance(app.screen, ConversationScreen) and app.screen.loaded


def test_board_at_200_by_60(snap_compare: SnapCompare, store: Store) -> None:
    """The whole board, dark: queue, verdict, today, sources, breach log."""
    assert snap_compare(board(store), terminal_size=(200, 60), run_before=ready())


def test_board_light_theme(snap_compare: SnapCompare, store: Store) -> None:
    """The same board in the light theme."""
    assert snap_compare(board(store, theme=LIGHT), terminal_size=(200, 60), run_before=ready())


def test_board_at_80_by_24(snap_compare: SnapCompare, store: Store) -> None:
    """The smallest usable board: the queue with its essential columns."""
    assert snap_compare(board(store), terminal_size=(80, 24), run_before=ready())


def test_panels_at_80_by_24(snap_compare: SnapCompare, store: Store) -> None:
    """p at 80 columns: the panels instead of the queue."""
    assert snap_compare(
        board(store),
        terminal_size=(80, 24),
        run_before=ready("p", until=lambda app: app.board.has_class("-panels")),
    )


def test_filtered_and_sorted(snap_compare: SnapCompare, store: Store) -> None:
    """A state filter and the priority sort, shown in the header."""
    keys = ("f", *(["down"] * 6), "enter", "down", "down", "down", "down", "enter", "s")
    wanted = QueueFilter(state="running", sort=QueueSort.PRIORITY)
    shown = ready(*keys, until=lambda app: app.filters == wanted)
    assert snap_compare(board(store), terminal_size=(160, 30), run_before=shown)


def test_conversation(snap_compare: SnapCompare, store: Store) -> None:
    """A conversation: who, clocks with reasons, the timeline with an internal note."""
    keys = ("down",) * 8 + ("enter",)
    assert snap_compare(
        board(store), terminal_size=(120, 44), run_before=ready(*keys, until=conversation_loaded)
    )


def test_hostile_conversation(snap_compare: SnapCompare, store: Store) -> None:
    """The hostile mention's conversation: markup, escapes and a 10 kB line, all inert."""
    assert snap_compare(
        board(store),
        terminal_size=(120, 40),
        run_before=ready("down", "enter", until=conversation_loaded),
    )


def test_help(snap_compare: SnapCompare, store: Store) -> None:
    """? lists every key."""
    shown = ready("question_mark", until=lambda app: isinstance(app.screen, HelpModal))
    assert snap_compare(board(store), terminal_size=(100, 50), run_before=shown)


def test_dismiss_modal(snap_compare: SnapCompare, store: Store) -> None:
    """d asks for a reason, naming the conversation."""
    shown = ready("down", "d", until=lambda app: isinstance(app.screen, DismissModal))
    assert snap_compare(board(store), terminal_size=(120, 30), run_before=shown)


def test_filter_values(snap_compare: SnapCompare, store: Store) -> None:
    """The filter picker's values for assignee, hostile names included."""
    keys = ("f", "down", "down", "down", "down", "enter")
    shown = ready(
        *keys,
        until=lambda app: (
            isinstance(app.screen, FilterModal) and app.screen.dimension == "assignee"
        ),
    )
    assert snap_compare(board(store), terminal_size=(120, 30), run_before=shown)


def test_snapshots_live_beside_the_tests() -> None:
    """The snapshots are where syrupy looks for them (a renamed test must move its SVG)."""
    folder = Path(__file__).parent / "__snapshots__" / "test_tui_snapshots"
    names = {path.stem for path in folder.glob("*.svg")}
    expected = {name for name in globals() if name.startswith("test_") and "snapshots" not in name}
    assert names == expected
