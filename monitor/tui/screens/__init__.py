"""Provides the board's screens: the board, a conversation, and the modals."""
