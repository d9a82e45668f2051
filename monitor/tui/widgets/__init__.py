"""Provides the board's widgets: the queue, the header, the side panels."""
