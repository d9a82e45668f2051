"""Provides the HTTP helpers every connector shares: one request that maps failures to errors.

``get_json`` turns aiohttp's outcomes into the connector error tree: 401/403 ->
``AuthError``; 404 -> ``NotFound``; 429 -> ``RateLimited`` honouring ``Retry-After``
(seconds or an HTTP date); 5xx, timeouts and dropped connections -> ``TransientError``;
other 4xx -> ``FatalError``; a body that is not the JSON the API documents ->
``ParseError``. Messages name the endpoint by host and path only: query strings and
headers can hold tokens, and aiohttp's own exception texts print full URLs, so they are
never passed on.

The header readers below turn an API's own rate-limit headers into seconds to wait, for
``get_json``'s ``wait_hint`` and for a connector that holds off once its budget is spent.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from monitor.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    NotFound,
    ParseError,
    RateLimited,
    TransientError,
)

DEFAULT_RETRY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A successful JSON response: its body, headers, ``Link`` relations and server time."""

    data: Any
    headers: Mapping[str, str]
    links: Mapping[str, str]
    server_time: datetime | None


def safe_url(url: str | URL) -> str:
    """The URL without credentials, query or fragment: fit for messages and logs."""
    parsed = URL(str(url))
    if not parsed.is_absolute():
        return parsed.path
    return str(parsed.with_user(None).with_password(None).with_query(None).with_fragment(None))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic authentication (UTF-8 credentials)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def server_time(headers: Mapping[str, str]) -> datetime | None:
    """The response's ``Date`` as an aware instant, or None when it has none to read."""
    try:
        value = parsedate_to_datetime(headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def server_second(response: JsonResponse | None, now: datetime) -> datetime:
    """Whole seconds of the server's time (its ``Date``), else of ``now``, in UTC."""
    server = response.server_time if response is not None else None
    return (server or now).astimezone(UTC).replace(microsecond=0)


def epoch_reset_wait(headers: Mapping[str, str], name: str, now: datetime) -> float | None:
    """Seconds until the reset in header ``name`` (epoch seconds), on the server's clock.

    Measured against the response's ``Date``, else ``now``: the reset is the server's
    clock, and ours may be off. A value past the year 5000 is milliseconds (as octokit's
    recordings write GitHub's); None when there is no reset to read.
    """
    value = headers.get(name, "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    seconds = int(value)
    if seconds > 10**11:
        seconds //= 1000
    try:
        reset = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, (reset - (server_time(headers) or now)).total_seconds())


def header_count(headers: Mapping[str, str], name: str) -> int | None:
    """The whole number in header ``name`` (``"42"``), or None when it is not one."""
    value = headers.get(name, "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """The number in header ``name`` (``"599.0"``), or None when it is not one."""
    try:
        return float(headers.get(name, ""))
    except ValueError:
        return None


def header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    """Seconds to wait from header ``name`` holding a delay in seconds, or None."""
    seconds = header_number(headers, name)
    return None if seconds is None else max(0.0, seconds)


def loads(body: bytes) -> Any:
    """Parse a JSON body: orjson (three times faster), else the standard library.

    orjson refuses what the standard library lets through (a lone surrogate in an escape,
    an integer past 64 bits, NaN): such a page is read as the standard library reads it,
    not refused, so one odd post cannot stop a source.

    Raises:
        ValueError: the body is not JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


async def get_json(
    session: aiohttp.ClientSession,
    url: str | URL,
    *,
    what: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: aiohttp.BasicAuth | None = None,
    timeout: float = 20.0,  # noqa: ASYNC109 - aiohttp's per-request limit, not a task deadline
    method: str = "GET",
    data: Any = None,
    wait_hint: Callable[[Mapping[str, str]], float | None] | None = None,
    forbidden_wait: Callable[[Mapping[str, str], bytes], float | None] | None = None,
    error_hint: Callable[[int, bytes, str], ConnectorError | None] | None = None,
) -> JsonResponse:
    """Make one request and return its JSON body, or raise the matching connector error.

    ``what`` names the call in messages (``"zendesk ticket export"``). ``wait_hint``
    reads an API's own rate-limit headers (``X-RateLimit-Reset``...) for a 429 that has
    no ``Retry-After``. ``forbidden_wait`` serves APIs that answer a rate limit with 403
    (GitHub): given a 403's headers and body it returns seconds to wait, or None for a real
    refusal. ``error_hint(status, body, where)`` may name a more precise error for any
    other failure from its body (an API that says "token expired" in a 400).
    """
    where = f"{what} ({safe_url(url)})"
    try:
        async with session.request(
            method, url, params=params, headers=headers, auth=auth, data=data,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            status = response.status
            response_headers = response.headers
            links = {
                str(rel): str(link["url"])
                for rel, link in response.links.items()
                if rel is not None and "url" in link
            }
    except TimeoutError as err:
        raise TransientError(f"{where}: timed out after {timeout:g}s") from err
    except aiohttp.ClientError as err:
        raise TransientError(f"{where}: connection failed ({type(err).__name__})") from err
    except asyncio.CancelledError:
        raise
    if status == 429:
        retry_after = parse_retry_after(response_headers.get("Retry-After"))
        if retry_after is None and wait_hint is not None:
            retry_after = wait_hint(response_headers)
        raise RateLimited(
            f"{where}: rate limited (HTTP 429)",
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
        )
    if status == 403 and forbidden_wait is not None:
        wait = forbidden_wait(response_headers, body)
        if wait is not None:
            raise RateLimited(f"{where}: rate limited (HTTP 403)", retry_after=wait)
    if status >= 400 and error_hint is not None:
        hinted = error_hint(status, body, where)
        if hinted is not None:
            raise hinted
    if status in (401, 403):
        raise AuthError(f"{where}: credentials refused (HTTP {status})")
    if status == 404:
        raise NotFound(f"{where}: not found (HTTP 404)")
    if status >= 500:
        raise TransientError(f"{where}: server error (HTTP {status})")
    if status >= 400:
        raise FatalError(f"{where}: request refused (HTTP {status})")
    content_type = response_headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        raise ParseError(f"{where}: expected JSON, got {content_type.split(';')[0] or 'no type'}")
    try:
        payload = loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ParseError(f"{where}: body is not valid JSON") from err
    return JsonResponse(payload, response_headers, links, server_time(response_headers))
