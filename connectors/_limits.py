"""Provides the rate-limit bookkeeping connectors keep between polls, so none sleeps in one.

``RateBudget`` remembers what an API's headers said (calls left, when they come back)
and refuses the next poll with ``RateLimited`` until then; ``RequestWindow`` counts our
own requests in a sliding minute for an API whose limit we must keep ourselves.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors._http import DEFAULT_RETRY_AFTER
from monitor.errors import RateLimited


@dataclass(slots=True)
class RateBudget:
    """What an API's rate-limit headers last said: calls left, and when to ask again."""

    remaining: float | None = None
    wait_until: datetime | None = None

    def hold(self, who: str, now: datetime, *, limit: str = "rate limit") -> None:
        """Raise ``RateLimited`` while a spent budget has not reset; then forget it."""
        if self.wait_until is None:
            return
        left = (self.wait_until - now).total_seconds()
        if left > 0:
            raise RateLimited(f"{who}: {limit} used up, resets in {left:.0f}s", retry_after=left)
        self.wait_until = None
        self.remaining = None

    def note(self, remaining: float | None, wait: float | None, now: datetime) -> None:
        """Record the calls a response says are left; none left holds off ``wait`` seconds."""
        if remaining is None:
            return
        self.remaining = remaining
        if remaining >= 1:
            return
        self.wait_until = now + timedelta(
            seconds=DEFAULT_RETRY_AFTER if wait is None else wait)


class RequestWindow:
    """Our own requests in a sliding window; the one that would pass ``limit`` is refused."""

    def __init__(self, limit: int, window: timedelta = timedelta(minutes=1)) -> None:
        self.limit = limit
        self.window = window
        self.sent: deque[datetime] = deque()

    def admit(self, what: str, now: datetime) -> None:
        """Count a request sent at ``now``, or refuse it with ``RateLimited`` before it leaves."""
        while self.sent and now - self.sent[0] >= self.window:
            self.sent.popleft()
        if len(self.sent) >= self.limit:
            wait = (self.sent[0] + self.window - now).total_seconds()
            raise RateLimited(f"{what}: {self.limit} requests a minute used",
                              retry_after=math.ceil(wait))
        self.sent.append(now)
