"""Provides the delivery worker: it drains the alert outbox to the targets, grouped and once.

Each pass (``drain``) looks at every target with alerts waiting and, unless the target
is in its quiet hours, claims its next group (see ``monitor.storage.outbox``): a group
tried before is retried as is; otherwise the fresh alerts once the oldest has waited
the target's ``group_window``. The group becomes ONE message, most urgent first,
sent by the target's notifier; then, in one transaction, all its alerts are marked
delivered. A 429 or 5xx (or a refused connection, a timeout) puts the group back for
the target as a whole, at the platform's ``Retry-After`` or after a doubling back-off
capped at a minute, so a target back from an outage gets everything within a minute,
the group that failed first and then everything decided meanwhile, as one message. Any
other 4xx marks the group failed with the platform's reason (``replywatch check``
lists them). A target gets at most one message per its platform's pace
(``notifiers.PACING``: Slack one a second), counted from the outbox, so several
workers sharing a PostgreSQL store keep the pace together; nothing is dropped, later
messages wait.

Crashes: an alert is decided in the transaction of the change that caused it, and a
claim is committed (rows ``sending``, with a lease) before the HTTP call. If the
process dies before the call, or during it, the rows stay ``sending`` until the lease
ends (two minutes), then any worker sends the same group again under the same
message key. The one window that can duplicate a message is a crash after the
platform accepted it and before the delivered mark committed; the generic webhook's
``Idempotency-Key`` header and email's ``Message-ID`` carry that key so a receiver can
drop the second copy; chat platforms cannot, and would show it twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import aiohttp

from monitor.alerts import (
    SNIPPET_STORED_CHARS,
    OpenBreach,
    SentAlert,
    alert_context,
    due_repeats,
    first_alert_keys,
    in_quiet_hours,
    message_key,
    order_items,
)
from monitor.config import AlertTargetConfig
from monitor.errors import StorageError
from monitor.notifiers import PACING, AlertItem, AlertMessage, DeliveryError, notifier_for
from monitor.notifiers.base import Notifier
from monitor.storage import Store
from monitor.storage.outbox import Claim

log = logging.getLogger(__name__)

LEASE = 120.0
"""Seconds a claim holds its alerts; after that another worker may send them again."""
MAX_ITEMS = 500
"""Most alerts in one message: chat notifiers show the first ten and "and N more", the
generic webhook carries them all, so a burst makes few messages of bounded size."""
RETRY_BASE = 2.0
RETRY_CAP = 60.0
"""Longest back-off of our own: a target back from an outage is tried within a minute."""
LONGEST_RETRY_AFTER = 3600.0
"""A platform's ``Retry-After`` is honoured up to an hour."""
REPEAT_CHECK_EVERY = 30.0
"""Seconds between two looks for breach repeats and escalations that have come due."""
TICK_EVERY = 1.0
"""Seconds between two drains when the scheduler runs the worker."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Seconds before a target is tried again after ``attempts`` failed sends of a group.

    The platform's ``Retry-After`` wins (up to ``LONGEST_RETRY_AFTER``); otherwise the
    wait doubles from ``RETRY_BASE`` up to ``RETRY_CAP``.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), LONGEST_RETRY_AFTER)
    # The exponent is bounded: a target down for days has thousands of attempts.
    return min(RETRY_CAP, RETRY_BASE * 2.0 ** min(max(0, attempts - 1), 30))


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one message to one target came to."""

    target: str
    items: int
    outcome: Literal["delivered", "retry", "failed"]
    reason: str | None = None
    retry_at: datetime | None = None
    key: str | None = None
    """The message's idempotency key."""


class DeliveryWorker:
    """Drains the alert outbox: claims, groups, sends and settles, per target."""

    def __init__(
        self,
        store: Store,
        targets: Sequence[AlertTargetConfig],
        session: aiohttp.ClientSession,
        *,
        now: Callable[[], datetime] = _utc_now,
        lease: float = LEASE,
        max_items: int = MAX_ITEMS,
        pacing: Mapping[str, float] = PACING,
    ) -> None:
        self.store = store
        self.targets = {target.name: target for target in targets}
        self.session = session
        self.now = now
        self.lease = lease
        self.max_items = max_items
        self.pacing = pacing
        self._notifiers: dict[str, Notifier] = {}
        self._lock = asyncio.Lock()
        self._stopping = False
        self._last_repeat_check: float | None = None
        self._storage_failing = False

    # -- the scheduler's entry points ------------------------------------------------------

    async def tick(self) -> None:
        """One scheduled run: look for due repeats now and then, then drain; never raises."""
        async with self._lock:
            if self._stopping:
                return
            try:
                clock = time.monotonic()
                if (
                    self._last_repeat_check is None
                    or clock - self._last_repeat_check >= REPEAT_CHECK_EVERY
                ):
                    self._last_repeat_check = clock
                    await self.decide_repeats()
                await self.drain()
            except StorageError as err:
                # Logged once per run of failures: the store says why, in one line.
                if not self._storage_failing:
                    log.error("alert delivery paused: %s", err)
                self._storage_failing = True
                return
            if self._storage_failing:
                log.info("alert delivery resumed")
            self._storage_failing = False

    async def stop(self) -> None:
        """Let the running pass finish its sends, then refuse further passes."""
        self._stopping = True
        async with self._lock:
            pass

    # -- delivery ---------------------------------------------------------------------------

    async def drain(self) -> list[SendResult]:
        """Send at most one message to every target that has a group ready now.

        Raises:
            StorageError: the store failed (what was sent stays marked as sent or
                in flight, and is settled by a later pass or after its lease).
        """
        waiting = await asyncio.to_thread(self.store.waiting_targets)
        if any(name not in self.targets for name in waiting):
            failed = await asyncio.to_thread(
                self.store.fail_unknown_targets, list(self.targets), now=self.now()
            )
            log.warning("%d alerts are for targets no longer in the config; marked failed", failed)
        now = self.now()
        chosen = [
            self.targets[name]
            for name in waiting
            if name in self.targets and not in_quiet_hours(self.targets[name].quiet_hours, now)
        ]
        results = await asyncio.gather(*(self._send_next(target) for target in chosen))
        return [result for result in results if result is not None]

    async def drain_until_empty(
        self, *, give_up_after: float = 30.0, pause: float = 0.05
    ) -> list[SendResult]:
        """Drain again and again until no alert waits, or ``give_up_after`` seconds passed.

        For one-shot commands, tests and benchmarks: the scheduler calls ``tick`` instead.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        results: list[SendResult] = []
        while True:
            results += await self.drain()
            if not await asyncio.to_thread(self.store.waiting_targets):
                return results
            if loop.time() >= deadline:
                return results
            await asyncio.sleep(pause)

    def _notifier(self, target: AlertTargetConfig) -> Notifier:
        notifier = self._notifiers.get(target.name)
        if notifier is None:
            notifier = self._notifiers[target.name] = notifier_for(target, self.session)
        return notifier

    async def _send_next(self, target: AlertTargetConfig) -> SendResult | None:
        claim = await asyncio.to_thread(
            self.store.claim_alerts,
            target.name,
            now=self.now(),
            group_window=target.group_window,
            min_interval=self.pacing.get(target.kind, 0.0),
            lease=self.lease,
            limit=self.max_items,
        )
        if claim is None:
            return None
        readable: list[tuple[str, AlertItem]] = []
        unreadable = []
        for claimed in claim.items:
            try:
                readable.append((claimed.key, AlertItem.from_json(claimed.payload)))
            except (ValueError, TypeError) as err:
                unreadable.append(claimed)
                log.error("alert %s for %s is unreadable: %s", claimed.id, target.name, err)
        if unreadable:
            await asyncio.to_thread(
                self.store.fail_alerts,
                dataclasses.replace(claim, items=tuple(unreadable)),
                now=self.now(),
                error="unreadable alert payload",
            )
        if not readable:
            return None
        message = AlertMessage(
            target=target.name,
            key=message_key(target.name, [key for key, _item in readable]),
            items=tuple(order_items(item for _key, item in readable)),
            created_at=min(claimed.created_at for claimed in claim.items),
        )
        try:
            # Bounded well inside the lease, so no other worker takes the group over
            # while this send may still succeed.
            async with asyncio.timeout(self.lease / 2):
                await self._notifier(target).send(message)
        except DeliveryError as err:
            return await self._failed(target, claim, message, err)
        except TimeoutError:
            error = DeliveryError(f"no answer within {self.lease / 2:g}s", permanent=False)
            return await self._failed(target, claim, message, error)
        except Exception as err:  # a notifier's bug must not stop delivery to other targets
            # The text of an unexpected error may hold the URL: only its type is logged.
            log.error(
                "alert target %s: unexpected %s while sending", target.name, type(err).__name__
            )
            error = DeliveryError(f"internal error ({type(err).__name__})", permanent=False)
            return await self._failed(target, claim, message, error)
        held = await asyncio.to_thread(self.store.mark_delivered, claim, now=self.now())
        if held < len(readable):
            log.warning(
                "alert target %s: the claim's lease ran out during the send; "
                "another worker may have sent the same message (key %s)",
                target.name,
                message.key,
            )
        return SendResult(target.name, len(readable), "delivered", key=message.key)

    async def _failed(
        self, target: AlertTargetConfig, claim: Claim, message: AlertMessage, err: DeliveryError
    ) -> SendResult:
        now = self.now()
        count = len(message.items)
        if err.permanent:
            await asyncio.to_thread(self.store.fail_alerts, claim, now=now, error=err.reason)
            log.warning(
                "alert target %s refused %d alerts for good: %s", target.name, count, err.reason
            )
            return SendResult(target.name, count, "failed", reason=err.reason, key=message.key)
        attempts = max(claimed.attempts for claimed in claim.items)
        retry_at = now + timedelta(seconds=retry_delay(attempts, err.retry_after))
        await asyncio.to_thread(self.store.retry_alerts, claim, retry_at=retry_at, error=err.reason)
        log.info(
            "alert target %s: %s; %d alerts retried at %s",
            target.name,
            err.reason,
            count,
            retry_at.isoformat(timespec="seconds"),
        )
        return SendResult(
            target.name, count, "retry", reason=err.reason, retry_at=retry_at, key=message.key
        )

    # -- repeats and escalations -----------------------------------------------------------

    async def decide_repeats(self) -> int:
        """Queue the repeats and escalations of open breaches that have come due.

        Returns how many items were offered to the outbox (ones it holds are dropped).
        """
        targets = list(self.targets.values())
        if not any(target.repeat_every or target.escalate_to for target in targets):
            return 0
        rows = await asyncio.to_thread(self.store.breaches_to_repeat)
        breaches = [
            OpenBreach(
                row.clock,
                dataclasses.replace(
                    alert_context(row.conversation, ()),
                    snippet=(row.last_customer_text or "")[:SNIPPET_STORED_CHARS] or None,
                ),
            )
            for row in rows
        ]
        keys = first_alert_keys(breaches, targets)
        found = await asyncio.to_thread(self.store.sent_alerts, keys) if keys else {}
        sent = {
            key: SentAlert(created_at, delivered) for key, (created_at, delivered) in found.items()
        }
        items = due_repeats(breaches, sent, targets, now=self.now())
        if items:
            await asyncio.to_thread(self.store.enqueue, items)
        return len(items)


async def send_test_alert(
    target: AlertTargetConfig, session: aiohttp.ClientSession, *, now: datetime
) -> str | None:
    """Send one ``test`` alert to ``target`` now, outside the outbox.

    Returns None when the platform accepted it, else its reason (never the secret URL).
    """
    item = AlertItem(kind="test", at=now, source="replywatch")
    message = AlertMessage(
        target=target.name, key=f"rw-test-{uuid.uuid4().hex}", items=(item,), created_at=now
    )
    try:
        async with asyncio.timeout(LEASE / 2):
            await notifier_for(target, session).send(message)
    except DeliveryError as err:
        return err.reason
    except TimeoutError:
        return f"no answer within {LEASE / 2:g}s"
    return None
