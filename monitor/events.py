"""Provides the frozen domain types: normalized events, clocks and their vocabularies.

Everything here is plain data. Datetimes are timezone-aware UTC; naive ones are refused
at construction (``ValueError``), so no code further in can mix local and UTC time.
The event model is exactly ../shared/SLA.md §1; it is also the JSON Lines format that
``replywatch explain --events FILE`` reads (see :func:`event_from_json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class EventKind(StrEnum):
    """What an event records; the value order is the tie-break order of SLA.md §1."""

    STATUS = "status"
    UPDATE = "update"
    MESSAGE = "message"
    DISMISSED = "dismissed"


# Ties at the same instant sort status < update < message (SLA.md §1); a dismissal
# comes last so that a reply and a dismissal at the same second count the reply.
KIND_ORDER: Mapping[EventKind, int] = MappingProxyType(
    {EventKind.STATUS: 0, EventKind.UPDATE: 1, EventKind.MESSAGE: 2, EventKind.DISMISSED: 3}
)


class Actor(StrEnum):
    """Who wrote a message."""

    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"


class Status(StrEnum):
    """A conversation's status, normalized across sources."""

    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


SOLVED_STATUSES = frozenset({Status.SOLVED, Status.CLOSED})


class Priority(StrEnum):
    """The four priorities per-priority targets are keyed by."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Metric(StrEnum):
    """The three SLA metrics of SLA.md §2."""

    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class ClockState(StrEnum):
    """A clock's state (SLA.md §5), plus ``overdue``: past due, breach not yet confirmed."""

    RUNNING = "running"
    AT_RISK = "at_risk"
    PAUSED = "paused"
    OVERDUE = "overdue"
    BREACHED = "breached"
    MET = "met"
    CANCELLED = "cancelled"


OPEN_STATES = frozenset(
    {ClockState.RUNNING, ClockState.AT_RISK, ClockState.PAUSED, ClockState.OVERDUE}
)
AT_STAKE_STATES = OPEN_STATES | {ClockState.BREACHED}
"""The states of a clock "at stake" while it has not stopped: an open clock, or a breach
still waiting for its reply (the most urgent of all)."""


def require_utc(value: datetime, what: str = "timestamp") -> datetime:
    """Return ``value`` converted to UTC; refuse a naive datetime with ``ValueError``."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} {value.isoformat()} has no timezone")
    return value.astimezone(UTC)


def parse_instant(text: str, what: str = "timestamp") -> datetime:
    """Parse an ISO 8601 instant (``Z`` allowed) into aware UTC; naive text is refused."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"{what} {text!r} is not an ISO 8601 time") from err
    try:
        return require_utc(parsed, what)
    except OverflowError as err:  # e.g. 9999-12-31T23:59:59-23:00 has no UTC form
        raise ValueError(f"{what} {text!r} is out of range") from err


def format_instant(value: datetime | None) -> str | None:
    """Format an aware instant as ISO 8601 UTC with a ``Z`` suffix (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _freeze(value: Any) -> Any:
    """Return a hashable, immutable copy of JSON-like data (lists become tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Return plain JSON-serializable data from frozen fields (tuples become lists)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
"""The ``fields`` of most events: one read-only empty mapping, shared."""


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized event of one conversation (SLA.md §1).

    ``text``, ``author`` and everything in ``fields`` may have been written by a member
    of the public: it is data, never markup, never a command.
    """

    source: str
    conversation: str
    id: str
    at: datetime
    kind: EventKind
    actor: Actor | None = None
    public: bool | None = None
    status: Status | None = None
    fields: Mapping[str, Any] = field(default_factory=lambda: _NO_FIELDS)
    channel: str | None = None
    url: str | None = None
    author: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        # Every event ingested or loaded passes here: values that already have their
        # final type (a UTC instant, enum members, a bool) are kept without a call.
        if self.at.tzinfo is not UTC:
            object.__setattr__(self, "at", require_utc(self.at, f"event {self.id!r} 'at'"))
        if type(self.kind) is not EventKind:
            object.__setattr__(self, "kind", EventKind(self.kind))
        if self.kind is EventKind.MESSAGE:
            if self.actor is None:
                raise ValueError(f"message event {self.id!r} has no actor")
            if type(self.actor) is not Actor:
                object.__setattr__(self, "actor", Actor(self.actor))
            if type(self.public) is not bool:
                object.__setattr__(self, "public", self.public is None or bool(self.public))
        if self.kind is EventKind.STATUS:
            if self.status is None:
                raise ValueError(f"status event {self.id!r} has no status")
            if type(self.status) is not Status:
                object.__setattr__(self, "status", Status(self.status))
        if type(self.fields) is not MappingProxyType:
            object.__setattr__(self, "fields", _freeze(dict(self.fields)))

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        """The total order of SLA.md §1: ``(at, kind order, id)``."""
        return (self.at, KIND_ORDER[self.kind], self.id)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON Lines form of this event (``at`` as ISO 8601 UTC)."""
        data: dict[str, Any] = {
            "source": self.source,
            "conversation": self.conversation,
            "id": self.id,
            "at": format_instant(self.at),
            "kind": str(self.kind),
        }
        optional: dict[str, Any] = {
            "actor": None if self.actor is None else str(self.actor),
            "public": self.public,
            "status": None if self.status is None else str(self.status),
            "fields": thaw(self.fields) or None,
            "channel": self.channel,
            "url": self.url,
            "author": self.author,
            "text": self.text,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


_EVENT_KEYS = frozenset(Event.__dataclass_fields__)


def event_from_json(data: Any) -> Event:
    """Build an event from its JSON form; raise ``ValueError`` naming what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("an event must be a JSON object")
    unknown = sorted(set(data) - _EVENT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    for key in ("source", "conversation", "id", "at", "kind"):
        if key not in data or data[key] in (None, ""):
            raise ValueError(f"missing {key!r}")
    for key in ("source", "conversation", "id", "channel", "url", "author", "text"):
        if key in data and data[key] is not None and not isinstance(data[key], str | int):
            raise ValueError(f"{key!r} must be a string")
    fields = data.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise ValueError("'fields' must be an object")
    try:
        kind = EventKind(data["kind"])
        actor = None if data.get("actor") is None else Actor(data["actor"])
        status = None if data.get("status") is None else Status(data["status"])
    except ValueError as err:
        raise ValueError(str(err)) from err
    public = data.get("public")
    if public is not None and not isinstance(public, bool):
        raise ValueError("'public' must be true or false")
    if not isinstance(data["at"], str):
        raise ValueError("'at' must be an ISO 8601 string")
    return Event(
        source=str(data["source"]),
        conversation=str(data["conversation"]),
        id=str(data["id"]),
        at=parse_instant(data["at"], "'at'"),
        kind=kind,
        actor=actor,
        public=public,
        status=status,
        fields=fields,
        channel=data.get("channel"),
        url=data.get("url"),
        author=data.get("author"),
        text=data.get("text"),
    )


def events_to_jsonl(events: list[Event]) -> str:
    """Return events as JSON Lines, one per line."""
    return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation's attributes: the fold of its events in time order (SLA.md §1)."""

    source: str
    id: str
    status: Status | None = None
    priority: Priority | None = None
    assignee: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    channel: str | None = None
    url: str | None = None
    customer: str | None = None
    subject: str | None = None
    dismissed: bool = False


@dataclass(frozen=True, slots=True)
class Clock:
    """One SLA clock of one conversation, as of ``now`` (SLA.md §2-§6).

    ``cycle`` numbers next_response clocks 1, 2, ...; it is 0 for the other metrics.
    ``due_at`` is None while the clock is paused (the deadline moves with the pause).
    ``reasons`` explain, for people, why the clock is where it is.
    ``stopped_by`` is the author of the message that stopped the clock (None when a
    status or a dismissal stopped it, or the message had no author); ``assignee`` is the
    conversation's assignee at the stop, or now for a running clock. Both may have been
    written by the public: data, never markup.
    """

    source: str
    conversation: str
    policy: str
    metric: Metric
    cycle: int
    state: ClockState
    started_at: datetime
    due_at: datetime | None
    stopped_at: datetime | None
    target_seconds: int
    elapsed_seconds: int
    paused_seconds: int
    priority: Priority | None = None
    at_risk_at: datetime | None = None
    reasons: tuple[str, ...] = ()
    stopped_by: str | None = None
    assignee: str | None = None

    @property
    def key(self) -> tuple[str, str, Metric, int]:
        """The identity of a clock across evaluations."""
        return (self.source, self.conversation, self.metric, self.cycle)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form printed by ``explain --format json``."""
        return {
            "source": self.source,
            "conversation": self.conversation,
            "policy": self.policy,
            "metric": str(self.metric),
            "cycle": self.cycle,
            "status": str(self.state),
            "priority": None if self.priority is None else str(self.priority),
            "started_at": format_instant(self.started_at),
            "due_at": format_instant(self.due_at),
            "stopped_at": format_instant(self.stopped_at),
            "target_seconds": self.target_seconds,
            "elapsed_seconds": self.elapsed_seconds,
            "paused_seconds": self.paused_seconds,
            "at_risk_at": format_instant(self.at_risk_at),
            "reasons": list(self.reasons),
            "stopped_by": self.stopped_by,
            "assignee": self.assignee,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """A clock changed state between two evaluations (``previous`` None: a new clock).

    Alerts are decided from transitions, never from polls, so each is edge-triggered.
    """

    clock: Clock
    previous: ClockState | None
    at: datetime
