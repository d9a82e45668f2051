"""Provides a faithful fake of the example forum API, and its contract case.

Routes: ``GET /api/messages`` (``after``, ``limit`` 1-100; oldest first; ``has_more``)
and ``GET /api/me``. Bearer auth answers 401 ``{"error": "unauthorized"}``; every
response carries a ``Date`` from the world's clock; scripted faults come from
``controls`` (``connectors.fakes._base``), as in every built-in fake.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from connectors.fakes._base import ContractCase, FakeControls, SteppedClock, controls_middleware


@dataclass(frozen=True, slots=True)
class Message:
    """One forum message."""

    id: int
    thread: str
    author: str
    role: str
    created_at: datetime
    body: str


class ExampleWorld:
    """The forum's messages; ids follow arrival, as the real API's do."""

    def __init__(self, *, now: Callable[[], datetime]) -> None:
        self.now = now
        self.messages: list[Message] = []
        self._ids = itertools.count(1)

    def post(self, thread: str, author: str, role: str, body: str, *, at: datetime) -> int:
        """Add a message (``role``: customer, staff or bot); return its id."""
        message = Message(next(self._ids), thread, author, role, at.astimezone(UTC), body)
        self.messages.append(message)
        return message.id


class ExampleFake:
    """The fake server: routes, Bearer auth, ``Date`` headers, scripted faults."""

    def __init__(self, world: ExampleWorld, *, token: str = "fake-token") -> None:
        self.world = world
        self.token = token
        self.controls = FakeControls()

    def app(self) -> web.Application:
        """A fresh aiohttp application serving ``world``."""
        app = web.Application(middlewares=[controls_middleware(self.controls), self._auth])
        app.on_response_prepare.append(self._date)
        app.router.add_get("/api/messages", self._messages)
        app.router.add_get("/api/me", self._me)
        return app

    async def _date(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_datetime(self.world.now().astimezone(UTC), usegmt=True)

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _messages(self, request: web.Request) -> web.Response:
        after_text = request.query.get("after", "0")
        limit_text = request.query.get("limit", "50")
        if not (after_text.isdigit() and limit_text.isdigit() and 1 <= int(limit_text) <= 100):
            return web.json_response({"error": "bad after or limit"}, status=400)
        newer = [m for m in self.world.messages if m.id > int(after_text)]
        page = newer[:int(limit_text)]
        return web.json_response({
            "messages": [{"id": m.id, "thread": m.thread, "author": m.author, "role": m.role,
                          "created_at": m.created_at.isoformat().replace("+00:00", "Z"),
                          "body": m.body} for m in page],
            "has_more": len(newer) > len(page)})

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "Acme Support"})


def contract_case() -> ContractCase:
    """The example fake as tests/test_connector_contract.py drives it."""
    clock = SteppedClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    world = ExampleWorld(now=clock)
    fake = ExampleFake(world)

    def seed() -> None:
        world.post("t1", "casey", "customer", "My order never arrived",
                   at=clock() - timedelta(minutes=30))
        world.post("t1", "kim", "staff", "Sorry! A new one ships today.",
                   at=clock() - timedelta(minutes=20))

    def add_activity() -> None:
        world.post("t1", "casey", "customer", "Still waiting on that order", at=clock())

    def revoke() -> None:
        fake.token = "revoked-token"

    return ContractCase(
        kind="example",
        app=fake.app,
        controls=fake.controls,
        settings=lambda base_url: {"name": "acme-forum", "kind": "example",
                                   "base_url": base_url, "token": "fake-token"},
        bad_settings={"name": "acme-forum", "kind": "example", "base_url": "ftp://forum",
                      "token": "t"},
        seed=seed,
        add_activity=add_activity,
        revoke=revoke,
        clock=clock,
    )
