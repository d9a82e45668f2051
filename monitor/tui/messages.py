"""Provides the board's messages: what loaded, what changed, what failed (past tense).

Workers load from the store in threads and post these; handlers on the event loop
update the widgets. ``ClocksChanged`` comes in bursts from the pipeline and is
coalesced (``can_replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from textual.message import Message

from monitor.events import Clock, Conversation, Event
from monitor.storage import SourceState
from monitor.storage.board import (
    ChangeMarker,
    Facets,
    LogEntry,
    PolicyToday,
    QueueRow,
)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue, its counts and the sources' health, read from the store at one moment.

    Read first and shown at once: the panels' figures follow in a :class:`PanelsSnapshot`.
    """

    loaded_at: datetime
    marker: ChangeMarker | None
    queue: tuple[QueueRow, ...]
    counts: dict[str, int]
    sources: tuple[SourceState, ...]
    truncated: bool = False
    """True when the queue has more conversations than the board loads at once."""


@dataclass(frozen=True, slots=True)
class PanelsSnapshot:
    """Today's figures, the sparkline, the breach log and the filter values."""

    loaded_at: datetime
    today: tuple[PolicyToday, ...]
    first_responses: tuple[tuple[datetime, int], ...]
    log: tuple[LogEntry, ...]
    facets: Facets


@dataclass
class QueueLoaded(Message):
    """A fresh queue was read (the panels are being read)."""

    snapshot: QueueSnapshot


@dataclass
class PanelsLoaded(Message):
    """Fresh panel figures were read: the snapshot is complete."""

    panels: PanelsSnapshot


@dataclass
class ClocksChanged(Message):
    """The pipeline of this process stored clock transitions (reload soon)."""

    count: int = 0

    def can_replace(self, message: Message) -> bool:
        """A burst of changes needs one reload."""
        return isinstance(message, ClocksChanged)


@dataclass
class StoreFailed(Message):
    """Reading or writing the store failed; the board keeps its last state and retries."""

    error: str
    doing: str


@dataclass
class StoreRecovered(Message):
    """The store answers again after a failure."""


@dataclass
class ConversationLoaded(Message):
    """A conversation's details were read for its screen (None: it is not stored)."""

    key: tuple[str, str]
    conversation: Conversation | None
    events: list[Event] = field(default_factory=list)
    clocks: list[Clock] = field(default_factory=list)


@dataclass
class DismissalStored(Message):
    """A dismissal (or its undoing) was stored and, in-process, evaluated."""

    key: tuple[str, str]
    undo: bool
    customer: str


@dataclass
class LogRecorded(Message):
    """A warning or error was logged while the board was on screen."""

    level: int
    text: str
