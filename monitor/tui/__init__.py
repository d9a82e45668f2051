"""Provides the board: a live Textual terminal UI over the store (``monitor.tui.app``)."""
