"""Provides the board's keys, once: the bindings, the help screen and the palette read them.

Every action a lead can take has a key here, a title for the command palette and a
line for ``?``; tests check that the three never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Key:
    """One action: the keys that run it, its title, and what it does."""

    keys: str
    """Textual key names, comma separated (``"enter"``, ``"slash"``)."""
    action: str
    """The action name, without ``action_``."""
    title: str
    """What the command palette and the footer call it."""
    help: str
    """One line for the help screen and the palette."""
    show: bool = True
    """Whether the footer shows it."""

    @property
    def label(self) -> str:
        """The keys as people write them (``/``, ``Enter``, ``Ctrl+P``)."""
        names = {
            "slash": "/",
            "question_mark": "?",
            "enter": "Enter",
            "escape": "Esc",
            "tab": "Tab",
            "ctrl+p": "Ctrl+P",
            "up": "↑",
            "down": "↓",
            "pageup": "PgUp",
            "pagedown": "PgDn",
            "home": "Home",
            "end": "End",
        }
        return " ".join(names.get(key, key) for key in self.keys.split(","))

    def binding(self) -> Binding:
        """The Textual binding of this key."""
        return Binding(self.keys, self.action, self.title, show=self.show)


APP_KEYS: tuple[Key, ...] = (
    Key("question_mark", "help", "Keys", "list every key (this screen)"),
    Key("t", "toggle_theme", "Theme", "switch between the dark and the light theme"),
    Key("ctrl+p", "command_palette", "Commands", "search every action by name", show=False),
    Key("q", "quit", "Quit", "leave the board (the pipeline of `run` and `demo` stops too)"),
)
"""Keys that work on every screen."""

BOARD_KEYS: tuple[Key, ...] = (
    Key("enter", "open", "Open", "open the conversation: timeline, clocks and why"),
    Key("o", "browse", "Browser", "open the conversation in the web browser (http/https only)"),
    Key(
        "d",
        "dismiss_conversation",
        "Dismiss",
        "dismiss: needs no reply (asks for a reason, undoable)",
    ),
    Key("u", "undo", "Undo", "undo the last dismissal made on this board"),
    Key("slash", "search", "Search", "search customer, subject, message, id, assignee"),
    Key("f", "filter", "Filter", "filter by source, kind, channel, priority, assignee..."),
    Key("s", "sort", "Sort", "change the order: time left, priority, oldest, latest"),
    Key("c", "clear", "Clear", "clear every filter and the search", show=False),
    Key("p", "panels", "Panels", "show or hide the side panels (today, sources, log)"),
    Key("r", "refresh", "Refresh", "read the store again now", show=False),
    Key(
        "tab",
        "app.focus_next",
        "Next pane",
        "move between the queue and the breach log",
        show=False,
    ),
)
"""Keys of the board (the queue and its panels)."""

MOVE_KEYS: tuple[Key, ...] = (
    Key("up,k", "cursor_up", "Up", "previous row", show=False),
    Key("down,j", "cursor_down", "Down", "next row", show=False),
    Key("pageup,pagedown", "page", "Page", "one screen up or down", show=False),
    Key("home,g,end,G", "ends", "Ends", "first (most urgent) or last row", show=False),
)
"""Moving in the queue, the log and the timeline (listed on the help screen only)."""

CONVERSATION_KEYS: tuple[Key, ...] = (
    Key("escape", "back", "Back", "back to the queue"),
    Key("o", "browse", "Browser", "open the conversation in the web browser (http/https only)"),
    Key(
        "d",
        "dismiss_conversation",
        "Dismiss",
        "dismiss: needs no reply (asks for a reason, undoable)",
    ),
    Key("u", "undo", "Undo", "undo this conversation's dismissal"),
)
"""Keys of the conversation screen."""

SECTIONS: tuple[tuple[str, tuple[Key, ...]], ...] = (
    ("The queue", BOARD_KEYS),
    ("Moving", MOVE_KEYS),
    ("A conversation", CONVERSATION_KEYS),
    ("Everywhere", APP_KEYS),
)
"""The help screen, section by section."""
