"""Provides what every fake API shares: scripted faults, a request log, loopback serving.

A test scripts faults as a queue (``fake.faults.extend([Fault(429, retry_after=2),
Fault(503)])``); each request pops the next one before the route runs. Every request
is logged, so a test can assert that an expected call came (``fake.assert_called``).
The small helpers at the end are the bookkeeping fakes' worlds share; what an API
means (its ids, formats, rules) stays in each fake, so a fake never borrows it from the
connector it tests.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TypeVar

from aiohttp import web

from monitor.events import require_utc

K = TypeVar("K")
V = TypeVar("V")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted failure: an HTTP status, a malformed body, or a dropped connection.

    ``status`` 200 with ``body`` serves that body as the page (e.g. HTML instead of
    JSON); ``reset=True`` closes the connection mid-response.
    """

    status: int = 500
    retry_after: float | str | None = None
    body: str | None = None
    content_type: str = "application/json"
    reset: bool = False


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeControls:
    """The knobs every fake has: a fault queue, a request log, an optional delay."""

    faults: deque[Fault] = field(default_factory=deque)
    requests: list[LoggedRequest] = field(default_factory=list)
    latency: float = 0.0

    def assert_called(self, path: str, *, times: int | None = None) -> None:
        """Fail (``AssertionError``) unless ``path`` was requested (``times`` times)."""
        count = sum(1 for r in self.requests if r.path == path)
        if count == 0 or (times is not None and count != times):
            seen = sorted({r.path for r in self.requests})
            raise AssertionError(f"expected {path} {times or 'at least once'}, got {count}: {seen}")


def controls_middleware(controls: FakeControls) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that logs each request, sleeps ``latency``, applies faults."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        import asyncio

        controls.requests.append(
            LoggedRequest(request.method, request.path, dict(request.query), dict(request.headers))
        )
        if controls.latency:
            await asyncio.sleep(controls.latency)
        if controls.faults:
            fault = controls.faults.popleft()
            return await _apply_fault(request, fault)
        return await handler(request)

    return middleware


async def _apply_fault(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.reset:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b'{"partial": [')
        transport = request.transport
        if transport is not None:
            transport.close()
        return response
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    body = fault.body
    if body is None:
        body = json.dumps({"error": f"scripted fault {fault.status}"})
    return web.Response(
        status=fault.status, text=body, content_type=fault.content_type.split(";")[0],
        headers=headers,
    )


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on loopback and yield its base URL (``http://127.0.0.1:PORT``)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound_port = sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


class SteppedClock:
    """A clock tests move by hand; fakes and connectors read it instead of the wall clock."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.value += timedelta(seconds=seconds)


@dataclass
class ContractCase:
    """What a fake offers the connector contract test (tests/test_connector_contract.py).

    ``settings(base_url)`` gives valid ``[[sources]]`` settings pointing at the served
    fake; ``bad_settings`` a settings dict that must fail validation; ``seed(now)`` adds
    one conversation with a customer message and an agent reply, dated at or before
    ``now``; ``add_activity(now)`` adds one more customer message somewhere; ``revoke()``
    makes the fake refuse the credentials in ``settings``. The test steers time through
    ``clock``, which the fake's world reads.
    """

    kind: str
    app: Callable[[], web.Application]
    controls: FakeControls
    settings: Callable[[str], dict[str, object]]
    bad_settings: dict[str, object]
    seed: Callable[[], None]
    add_activity: Callable[[], None]
    revoke: Callable[[], None]
    clock: SteppedClock


def fake_app(
    controls: FakeControls,
    now: Callable[[], datetime],
    *middlewares: Callable[..., Awaitable[web.StreamResponse]],
) -> web.Application:
    """An application that applies ``controls`` before ``middlewares`` and dates responses.

    Every response carries ``now()`` (the world's clock) as its ``Date``, as the APIs'
    own servers send theirs; routes are the caller's to add.
    """
    app = web.Application(middlewares=[controls_middleware(controls), *middlewares])
    app.on_response_prepare.append(stamp_date(now))
    return app


def stamp_date(
    now: Callable[[], datetime],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook sending ``now()`` (the world's clock) as ``Date``."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_datetime(now().astimezone(UTC), usegmt=True)

    return hook


def whole_seconds(at: datetime) -> datetime:
    """``at`` cut to whole seconds, as an API that keeps no fractions stores it."""
    return require_utc(at, "'at'").replace(microsecond=0)


def iso_seconds(at: datetime) -> str:
    """``at`` as ISO 8601 UTC with whole seconds and ``Z`` (``2026-03-02T15:00:00Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(table: Mapping[K, V], key: K, what: str) -> V:
    """``table[key]``; else KeyError naming what is missing (``"no ticket 7"``)."""
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"no {what} {key}") from None
