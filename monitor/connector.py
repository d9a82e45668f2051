"""Provides the Connector protocol: the one contract every source connector implements.

A connector knows one API and nothing of SLAs. Each ``poll`` turns at most one page
(or one small, bounded set of requests) of its API into normalized events, a cursor to
resume from, and a watermark: the instant up to which the source has shown us every
change. The runner persists events, cursor and watermark in one transaction, so a
cursor never runs ahead of what is stored.

A connector never sleeps: when it must wait (the API's rate limit, or its own budget
for that limit) it raises ``RateLimited(retry_after=...)`` and the runner reschedules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from monitor.durations import Duration
from monitor.events import Event

Cursor = Mapping[str, Any]
"""A connector's resume point: a small JSON object only that connector interprets."""


class SourceSettings(BaseModel):
    """Settings every ``[[sources]]`` entry has; connectors subclass it with their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """The source's name, unique in the config; stored with every event."""
    kind: str
    """The connector kind (``zendesk``, ``mastodon``, ...)."""
    poll_every: Duration = 30.0
    """Seconds between regular polls (``"30s"``, ``"2m"`` in TOML)."""
    timeout: Duration = 20.0
    """Seconds one HTTP request may take before it counts as a transient failure."""
    channel: str | None = None
    """Overrides the channel reported on this source's conversations."""
    enabled: bool = True
    """A disabled source is validated (its missing ``${ENV}`` secrets excepted) but not polled."""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one poll returns.

    ``more`` means the API has more pages right now: the runner polls again at once
    with ``cursor``. ``watermark`` is None when the poll could not tell (the runner then
    keeps the previous one); it never moves backwards once stored.
    """

    events: tuple[Event, ...]
    cursor: Cursor
    watermark: datetime | None
    more: bool = False


@dataclass(frozen=True, slots=True)
class PollContext:
    """What the runner lends a connector for one poll.

    ``since`` is where a source without a cursor starts (``backfill --since``, or the
    configured look-back); ``now`` is the runner's clock, so tests and the demo can
    steer time.
    """

    session: aiohttp.ClientSession
    now: Callable[[], datetime]
    since: datetime
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    """The contract of a connector class registered under ``kind``.

    Args:
        settings: the validated settings of one ``[[sources]]`` entry.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[SourceSettings]]

    def __init__(self, settings: Any) -> None: ...

    async def poll(self, cursor: Cursor | None, ctx: PollContext) -> Batch:
        """Fetch the next page of changes after ``cursor`` (None: start at ``ctx.since``).

        Returns:
            The page's events, the cursor after them, the watermark, and ``more``.

        Raises:
            RateLimited: the API, or the connector's own budget for its limit, says wait.
            TransientError: a 5xx, a timeout, a reset connection.
            AuthError: the credentials were refused.
            FatalError: another failure that needs a human.
            ParseError: the page is not what the API documents.
        """
        ...

    async def check(self, ctx: PollContext) -> str:
        """Make the cheapest authenticated call; return what it proved ("authenticated as X").

        Raises:
            The same errors as ``poll``.
        """
        ...
