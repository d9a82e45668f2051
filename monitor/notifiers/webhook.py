"""Provides the generic webhook notifier: the whole message as JSON, signed with HMAC-SHA256.

Each request carries ``X-Replywatch-Timestamp`` (Unix seconds, fresh on every attempt),
``X-Replywatch-Signature: sha256=<hex>``, the HMAC-SHA256 of ``timestamp + "." + body``
under the target's ``secret``, and ``Idempotency-Key`` (the same on every attempt of
one message). A receiver recomputes the signature over the raw body, compares it in
constant time, refuses a timestamp more than five minutes off its clock (a replay),
and drops a key it has already processed (a retry). See docs/alerts.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp

from monitor.config import AlertTargetConfig
from monitor.events import format_instant
from monitor.notifiers.base import AlertItem, AlertMessage, post_json, target_url
from monitor.notifiers.format import SNIPPET_CHARS, clean, safe_link

PAYLOAD_TYPE = "replywatch.alerts"
PAYLOAD_VERSION = 1
TIMESTAMP_HEADER = "X-Replywatch-Timestamp"
SIGNATURE_HEADER = "X-Replywatch-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_UNTOUCHED = frozenset({"kind", "at", "due_at", "late_seconds", "repeat", "target_seconds"})


def _item_json(item: AlertItem) -> dict[str, Any]:
    data = item.to_json()
    for name, value in data.items():
        if name not in _UNTOUCHED and isinstance(value, str):
            data[name] = clean(value, SNIPPET_CHARS) or None
    data["url"] = safe_link(item.url)
    return data


def webhook_payload(message: AlertMessage) -> dict[str, Any]:
    """The JSON body of ``message``: every item, with text cleaned and shortened."""
    return {
        "type": PAYLOAD_TYPE,
        "version": PAYLOAD_VERSION,
        "target": message.target,
        "key": message.key,
        "created_at": format_instant(message.created_at),
        "summary": message.summary(),
        "items": [_item_json(item) for item in message.items],
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Replywatch-Signature`` value: ``sha256=`` + HMAC-SHA256(timestamp.body)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def header_value(key: str) -> str:
    """``key`` if it can travel in an HTTP header as is, else its SHA-256 in hex."""
    if key and all(" " < char <= "~" for char in key) and len(key) <= 200:
        return key
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class WebhookNotifier:
    """Posts the signed JSON body to any URL."""

    kind: ClassVar[str] = "webhook"

    def __init__(
        self,
        target: AlertTargetConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._target = target
        self._session = session
        self._clock = clock

    async def send(self, message: AlertMessage) -> None:
        """Post ``message`` signed; raise ``DeliveryError`` if the receiver does not accept it."""
        url = target_url(self._target)
        body = json.dumps(webhook_payload(message), ensure_ascii=False).encode()
        timestamp = str(int(self._clock()))
        headers = {TIMESTAMP_HEADER: timestamp, IDEMPOTENCY_HEADER: header_value(message.key)}
        secret = self._target.secret.get_secret_value() if self._target.secret else ""
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        await post_json(
            self._session, url, body,
            headers=headers, secrets=(secret,) if secret else (),
        )
