"""Runs the real ``replywatch demo`` in a real terminal (tmux) and reads what a lead sees.

Slow (the demo loads a week of history first): deselect with ``-m 'not tmux'``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(300),
]

BREACHED_ROW = re.compile(r"^\s*-\d+[dhm] \d\d[hms] ✖ breached ", re.MULTILINE)
"""A queue row whose countdown is negative and whose state is breached."""
QUEUE_ROW = re.compile(r"^\s*(-?\d+[dhm] \d\d[hms]|—) [✖!▲●‖◌○] ", re.MULTILINE)


class Terminal:
    """A tmux session on its own server: send keys, read the screen."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *arguments: str) -> str:
        """Run a tmux command on this server; return its output."""
        done = subprocess.run(
            ["tmux", "-L", self.socket, *arguments],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout

    def screen(self) -> str:
        """The text on screen now."""
        return self.tmux("capture-pane", "-p", "-t", "demo")

    def keys(self, *keys: str) -> None:
        """Type keys (tmux key names) and give the board a moment to draw."""
        for key in keys:
            self.tmux("send-keys", "-t", "demo", key)
            time.sleep(0.3)

    def wait_for(self, check: Callable[[str], bool], what: str, within: float = 20.0) -> str:
        """Read the screen until ``check`` holds; fail saying ``what`` never appeared."""
        deadline = time.monotonic() + within
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.5)
        size = self.tmux("display", "-p", "-t", "demo", "#{window_width}x#{window_height}")
        raise AssertionError(f"never saw {what}; the {size.strip()} screen was:\n{screen}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """``replywatch demo --seed 3`` running at 200x60 in a fresh tmux server."""
    term = Terminal(f"replywatch-test-{uuid.uuid4().hex[:8]}")
    # The test run's COLUMNS and LINES (set for other tests' headless apps) would win
    # over the real terminal's size: the demo must measure the tmux pane.
    command = (
        f"env -u COLUMNS -u LINES {sys.executable} -m monitor demo --seed 3 --for 240s; "
        "echo DEMO-EXITED-$?; sleep 60"
    )
    term.tmux(
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "200",
        "-y",
        "60",
        "-c",
        str(tmp_path),
        command,
    )
    try:
        yield term
    finally:
        subprocess.run(
            ["tmux", "-L", term.socket, "kill-server"], capture_output=True, check=False, timeout=30
        )


def test_demo_board_in_a_real_terminal(terminal: Terminal) -> None:
    """What a lead would see and do: the queue with a breach, sources, filter, open, help."""
    board = terminal.wait_for(
        lambda text: (
            bool(BREACHED_ROW.search(text)) and "Sources" in text and "Today since" in text
        ),
        "the board with a breached row, the sources and today's figures",
        within=180,
    )
    assert "TIME LEFT" in board
    assert len(QUEUE_ROW.findall(board)) >= 10
    assert re.search(r"✖ \d+ BREACHED", board)
    assert re.search(r"acme-\S+ +\S+ +ok", board)  # a healthy source
    assert "Breaches & recoveries" in board
    assert "Today since 00:00" in board
    assert "\x1b" not in board

    # A search narrows the queue and says so in the header.
    terminal.keys("/", "p", "r", "i", "n", "t", "e", "r")
    searched = terminal.wait_for(lambda text: "“printer”" in text, "the search in the header")
    shown = re.search(r"([\d,]+) of ([\d,]+) shown", searched)
    assert shown is not None
    assert int(shown[1].replace(",", "")) < int(shown[2].replace(",", ""))
    terminal.keys("Escape", "c")
    terminal.wait_for(lambda text: "filter none" in text, "the filter cleared")

    # Enter opens the most urgent conversation; Escape comes back.
    terminal.keys("Enter")
    conversation = terminal.wait_for(
        lambda text: "CLOCK" in text and "TIMELINE" in text, "the conversation screen"
    )
    assert "breached" in conversation
    terminal.keys("Escape")
    terminal.wait_for(lambda text: "TIME LEFT" in text, "the queue again")

    # ? lists the keys.
    terminal.keys("?")
    help_screen = terminal.wait_for(lambda text: "dismiss: needs no reply" in text, "the help")
    assert "Ctrl+P" in help_screen
    terminal.keys("Escape")
    terminal.wait_for(lambda text: "TIME LEFT" in text, "the queue after the help")

    # q quits the board and the demo with it, cleanly.
    terminal.keys("q")
    terminal.wait_for(lambda text: "DEMO-EXITED-0" in text, "the demo exiting with 0", within=30)
