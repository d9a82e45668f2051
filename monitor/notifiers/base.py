"""Provides the notifier contract: alert items, the message sent to one target, and failures.

An ``AlertItem`` is one decided alert; it round-trips through JSON because the outbox
stores it. An ``AlertMessage`` is one delivery: a group of items for one target under
one idempotency key. A ``Notifier`` sends one message to one target and raises
``DeliveryError`` (permanent or not, with the platform's reason, never the secret URL).
``post_json`` is the one HTTP request every webhook notifier makes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar, Literal, Protocol, get_args

import aiohttp
from yarl import URL

from connectors._http import parse_retry_after
from monitor.config import AlertTargetConfig
from monitor.events import format_instant, parse_instant, require_utc
from monitor.notifiers.format import clean

log = logging.getLogger(__name__)

AlertKind = Literal["at_risk", "breached", "recovered", "source_down", "source_up", "test"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)

URGENCY: tuple[AlertKind, ...] = (
    "breached", "source_down", "at_risk", "recovered", "source_up", "test",
)
"""Alert kinds, most urgent first: the order of a message's summary and of its items."""

KIND_LABELS: Mapping[AlertKind, str] = {
    "breached": "breached",
    "source_down": "source down",
    "at_risk": "at risk",
    "recovered": "recovered",
    "source_up": "source back up",
    "test": "test alert",
}
"""How each kind reads in a summary ("2 at risk")."""

HTTP_TIMEOUT = 15.0
"""Seconds one webhook request may take before it counts as a transient failure."""

_REASON_CHARS = 200
_BODY_BYTES = 4096
_SECRET_PART_CHARS = 16  # shorter segments are words ("services", "messages") or ids


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One decided alert, JSON-serializable because it is stored in the outbox payload.

    ``customer``, ``subject`` and ``snippet`` are text written by the public, stored raw;
    notifiers shorten it and make it inert. ``late_seconds`` is, for ``breached``, the
    counted time past the target and, for ``recovered``, how late the reply was.
    ``repeat`` is 0 for the first alert and n for the n-th repeat of an open breach.
    """

    kind: AlertKind
    at: datetime
    source: str
    conversation: str | None = None
    metric: str | None = None
    policy: str | None = None
    priority: str | None = None
    state: str | None = None
    customer: str | None = None
    subject: str | None = None
    snippet: str | None = None
    url: str | None = None
    assignee: str | None = None
    channel: str | None = None
    due_at: datetime | None = None
    late_seconds: int | None = None
    error: str | None = None
    repeat: int = 0
    escalated_from: str | None = None
    target_seconds: int | None = None
    """The promise: the metric's target in counted seconds (None when unknown)."""

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        object.__setattr__(self, "at", require_utc(self.at, "alert time"))
        if self.due_at is not None:
            object.__setattr__(self, "due_at", require_utc(self.due_at, "due_at"))

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form stored in the outbox (instants as ISO 8601 with ``Z``)."""
        data: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            data[field.name] = format_instant(value) if isinstance(value, datetime) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertItem:
        """Rebuild an item from ``to_json`` output; unknown keys are ignored.

        Raises ``ValueError`` when a required key is missing or a value has the wrong type.
        """
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            if field.name in ("at", "due_at") and value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"alert item {field.name}: expected an ISO 8601 string")
                value = parse_instant(value, field.name)
            elif field.name in ("late_seconds", "target_seconds", "repeat"):
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"alert item {field.name}: expected an integer")
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"alert item {field.name}: expected a string")
            values[field.name] = value
        for required in ("kind", "at", "source"):
            if values.get(required) is None:
                raise ValueError(f"alert item: {required} is missing")
        if values.get("repeat") is None:
            values.pop("repeat", None)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One delivery: a group of items for one target, under one idempotency key.

    ``items`` are already ordered most urgent first by the caller. ``key`` is sent
    where the platform allows it (the webhook's ``Idempotency-Key``, email's Message-ID).
    """

    target: str
    key: str
    items: tuple[AlertItem, ...]
    created_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        object.__setattr__(self, "items", tuple(self.items))

    def summary(self) -> str:
        """Counts by kind, most urgent kinds first: ``"4 breached, 2 at risk, 1 recovered"``."""
        counts = {kind: 0 for kind in URGENCY}
        for item in self.items:
            counts[item.kind] += 1
        if counts["test"] and sum(counts.values()) == counts["test"]:
            return "test alert" if counts["test"] == 1 else f"{counts['test']} test alerts"
        return ", ".join(f"{count} {KIND_LABELS[kind]}" for kind, count in counts.items() if count)


class DeliveryError(Exception):
    """Sending failed; ``permanent`` says whether retrying can help.

    ``reason`` is the platform's answer, shortened; it never contains the URL or a token.
    ``retry_after`` is the wait the platform asked for (seconds), when it said one.
    """

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None) -> None:
        self.reason = reason
        self.permanent = permanent
        self.retry_after = None if retry_after is None else max(0.0, retry_after)
        super().__init__(reason)


class Notifier(Protocol):
    """Sends one alert message to one configured target."""

    kind: ClassVar[str]

    def __init__(self, target: AlertTargetConfig, session: aiohttp.ClientSession) -> None: ...

    async def send(self, message: AlertMessage) -> None:
        """Deliver ``message`` once; raise ``DeliveryError`` if it was not accepted."""
        ...


def secret_parts(url: str, *extra: str | None) -> tuple[str, ...]:
    """The strings of ``url`` (and ``extra`` secrets) that must never reach a message or log.

    That is the whole URL, its path and every path segment or query value long enough
    to be a token: platforms put the webhook's secret in either place.
    """
    parts: set[str] = {url}
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        parsed = None
    if parsed is not None:
        if len(parsed.path) >= _SECRET_PART_CHARS:
            parts.add(parsed.path)
        if parsed.raw_query_string:
            parts.add(parsed.raw_query_string)
        candidates = [*parsed.raw_parts, *parsed.parts, *parsed.query.values()]
        candidates += [parsed.password or "", parsed.user or ""]
        parts.update(p for p in candidates if len(p) >= _SECRET_PART_CHARS)
    parts.update(value for value in extra if value)
    return tuple(sorted(parts, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _reason_from_body(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    error = data.get("error")
    if isinstance(error, dict):
        status = error.get("status") or error.get("code")
        message = error.get("message")
        return ": ".join(str(part) for part in (status, message) if part) or text
    parts = [data.get("message"), error, data.get("error_description"), data.get("detail")]
    words = [str(part) for part in parts if isinstance(part, str | int) and part != ""]
    code = data.get("code")
    if isinstance(code, str | int) and not isinstance(code, bool):
        words.append(f"(code {code})")
    return " ".join(words) or text


def _body_retry_after(body: bytes) -> float | None:
    """Discord says how long to wait in the 429's JSON body as well (``retry_after``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def failure_for(status: int, headers: Mapping[str, str], body: bytes,
                secrets: Iterable[str]) -> DeliveryError | None:
    """Map an HTTP answer to a ``DeliveryError`` (None for 2xx): the one status policy.

    429 and 408 are transient (429 honours ``Retry-After`` as seconds or an HTTP date, or
    Discord's ``retry_after`` in the body); 5xx are transient (503 with its ``Retry-After``);
    3xx (redirects are not followed) and other 4xx are permanent.
    """
    if 200 <= status < 300:
        return None
    detail = clean(redact(_reason_from_body(body), secrets), _REASON_CHARS)
    if not detail:
        with contextlib.suppress(ValueError):
            detail = HTTPStatus(status).phrase
    reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429:
        wait = parse_retry_after(headers.get("Retry-After"))
        if wait is None:
            wait = _body_retry_after(body)
        return DeliveryError(reason, permanent=False, retry_after=wait)
    if status == 408 or status >= 500:
        wait = parse_retry_after(headers.get("Retry-After")) if status == 503 else None
        return DeliveryError(reason, permanent=False, retry_after=wait)
    if 300 <= status < 400:
        return DeliveryError(f"{reason} (unexpected redirect; check the url)", permanent=True)
    return DeliveryError(reason, permanent=True)


def target_url(target: AlertTargetConfig) -> str:
    """The target's secret webhook URL; a permanent ``DeliveryError`` when it has none."""
    if target.url is None:
        raise DeliveryError("no url configured", permanent=True)
    return target.url.get_secret_value()


async def post_payload(
    session: aiohttp.ClientSession, target: AlertTargetConfig, payload: Mapping[str, Any]
) -> None:
    """POST a platform's JSON payload to the target's webhook (see :func:`post_json`)."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    await post_json(session, target_url(target), body)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    timeout: float = HTTP_TIMEOUT,  # noqa: ASYNC109 - aiohttp's per-request limit
) -> int:
    """POST ``body`` as JSON to ``url`` and return the 2xx status, or raise ``DeliveryError``.

    Nothing here ever prints ``url``: aiohttp's exception texts carry it, so they are
    replaced by their class name and not chained.
    """
    hidden = (*secret_parts(url), *secrets)
    # A webhook URL is sent byte for byte as configured: re-encoding its query (yarl turns
    # Teams' sp=%2Ftriggers... into sp=/triggers...) could break the platform's signature.
    as_given = url.isascii() and not any(char.isspace() or ord(char) < 32 for char in url)
    try:
        parsed = URL(url, encoded=as_given)
    except (TypeError, ValueError):
        raise DeliveryError("the configured url is not a valid URL", permanent=True) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DeliveryError("the configured url is not an http(s) URL", permanent=True)
    request_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "replywatch",
        **(headers or {}),
    }
    try:
        async with session.post(
            parsed, data=body, headers=request_headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            response_headers = dict(response.headers)
            answer = await response.content.read(_BODY_BYTES)
    except TimeoutError:
        failure: DeliveryError | None = DeliveryError(
            f"timed out after {timeout:g}s", permanent=False)
    except aiohttp.InvalidURL:
        failure = DeliveryError("the configured url is not a valid URL", permanent=True)
    except aiohttp.ClientError as err:
        failure = DeliveryError(f"connection failed ({type(err).__name__})", permanent=False)
    except ValueError as err:  # aiohttp refuses some malformed URLs and headers with it
        failure = DeliveryError(f"request refused ({type(err).__name__})", permanent=True)
    else:
        failure = failure_for(status, response_headers, answer, hidden)
    # The host names the platform for whoever debugs; the path and query hold the token.
    if failure is not None:
        log.debug("webhook post to %s failed: %s", parsed.host, failure.reason)
        raise failure
    log.debug("webhook post to %s accepted (HTTP %s)", parsed.host, status)
    return status
