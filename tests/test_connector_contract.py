"""The contract every registered connector passes, run against its faithful fake.

Each kind's ``contract_case()`` comes from its connector's module, else from
``connectors.fakes.<kind>`` (where the built-in fakes live). A third-party connector,
registered through the ``replywatch.connectors`` entry point, runs this same file:
``REPLYWATCH_CONTRACT_KINDS=mykind pytest tests/test_connector_contract.py`` (a
comma-separated list; every registered kind when unset). See docs/writing-a-connector.md.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from connectors import ENTRY_POINT_GROUP, registry
from connectors.fakes._base import ContractCase, Fault, serve
from monitor.connector import Batch, Cursor, PollContext
from monitor.errors import AuthError, ParseError, RateLimited
from monitor.events import Actor, Event, EventKind

KINDS_VARIABLE = "REPLYWATCH_CONTRACT_KINDS"
MAX_STEPS = 200


def contract_kinds() -> list[str]:
    """The kinds to check: those named in ``$REPLYWATCH_CONTRACT_KINDS``, else every one."""
    known = registry()
    named = [kind.strip() for kind in os.environ.get(KINDS_VARIABLE, "").split(",")
             if kind.strip()]
    unknown = [kind for kind in named if kind not in known]
    if unknown:
        raise pytest.UsageError(
            f"{KINDS_VARIABLE}: no connector registered as {', '.join(map(repr, unknown))} "
            f"(registered: {', '.join(sorted(known))}; plug-ins register through the "
            f"{ENTRY_POINT_GROUP!r} entry-point group)")
    return named or sorted(known)


def contract_case(kind: str) -> ContractCase:
    """A fresh contract case of ``kind``: ``contract_case()`` of its connector's module,
    else of ``connectors.fakes.<kind>``."""
    module = importlib.import_module(registry()[kind].__module__)
    factory = getattr(module, "contract_case", None)
    if factory is None:
        try:
            factory = importlib.import_module(f"connectors.fakes.{kind}").contract_case
        except (ImportError, AttributeError):
            pytest.fail(f"{kind}: neither {module.__name__} nor connectors.fakes.{kind} "
                        "has a contract_case() function")
    case = factory()
    assert isinstance(case, ContractCase), f"{kind}: contract_case() returned {case!r}"
    assert case.kind == kind, f"{kind}: contract_case() is for kind {case.kind!r}"
    return case


KINDS = contract_kinds()


@dataclass
class Harness:
    """A served fake, a connector of its kind, and a context on the fake's clock."""

    case: ContractCase
    connector: Any
    settings: Any
    ctx: PollContext

    def restart(self) -> None:
        """Replace the connector with a fresh instance, as after a process restart."""
        self.connector = registry()[self.case.kind](self.settings)

    async def drain(self, cursor: Cursor | None) -> tuple[list[Event], Cursor]:
        """Poll until the source has nothing more, waiting out our own rate limiter."""
        events: list[Event] = []
        for _ in range(MAX_STEPS):
            try:
                batch: Batch = await self.connector.poll(cursor, self.ctx)
            except RateLimited as err:
                self.case.clock.advance(err.retry_after + 0.001)
                continue
            events += batch.events
            cursor = batch.cursor
            if not batch.more:
                return events, cursor
        raise AssertionError("connector never finished paging")


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A connector of each registered kind polling its fake, served on loopback."""
    case = contract_case(request.param)
    async with serve(case.app()) as base_url, aiohttp.ClientSession() as session:
        cls = registry()[case.kind]
        settings = cls.settings_model.model_validate(case.settings(base_url))
        ctx = PollContext(session=session, now=case.clock, since=case.clock() - timedelta(days=2))
        yield Harness(case, cls(settings), settings, ctx)


def _ids(events: list[Event]) -> Iterator[str]:
    return (event.id for event in events)


@pytest.mark.parametrize("kind", KINDS)
def test_settings_are_validated(kind: str) -> None:
    """Settings with a wrong or missing key are refused; the case's own are accepted."""
    case = contract_case(kind)
    model = registry()[kind].settings_model
    with pytest.raises(ValidationError):
        model.model_validate(case.bad_settings)
    model.model_validate(case.settings("http://127.0.0.1:9"))


async def test_first_poll_then_no_duplicates_then_restart(harness: Harness) -> None:
    """A first poll finds the seeded conversation; re-polls repeat nothing, across a restart."""
    harness.case.seed()
    harness.case.clock.advance(120)
    events, cursor = await harness.drain(None)
    messages = [e for e in events if e.kind is EventKind.MESSAGE]
    assert {e.actor for e in messages} >= {Actor.CUSTOMER, Actor.AGENT}
    assert all(e.source == harness.settings.name and e.at.tzinfo is not None for e in events)
    assert len(set(_ids(events))) == len(events)

    harness.case.clock.advance(120)
    again, cursor = await harness.drain(cursor)
    assert set(_ids(again)).isdisjoint(_ids(events))

    stored = json.loads(json.dumps(cursor))
    harness.restart()
    harness.case.add_activity()
    harness.case.clock.advance(120)
    later, _ = await harness.drain(stored)
    assert later, "new activity after a restart was not found"
    assert set(_ids(later)).isdisjoint(_ids(events))


async def test_rate_limit_then_success(harness: Harness) -> None:
    """A 429 with Retry-After becomes RateLimited(retry_after); the next poll succeeds."""
    harness.case.seed()
    harness.case.clock.advance(120)
    harness.case.controls.faults.append(Fault(429, retry_after=2))
    with pytest.raises(RateLimited) as caught:
        await harness.connector.poll(None, harness.ctx)
    assert caught.value.retry_after == pytest.approx(2, abs=1)
    events, _ = await harness.drain(None)
    assert events


async def test_malformed_page_then_continue(harness: Harness) -> None:
    """An HTML page is a ParseError; polling again from the same cursor loses nothing."""
    harness.case.seed()
    harness.case.clock.advance(120)
    harness.case.controls.faults.append(
        Fault(200, body="<html><body>Maintenance</body></html>", content_type="text/html")
    )
    with pytest.raises(ParseError):
        await harness.connector.poll(None, harness.ctx)
    events, _ = await harness.drain(None)
    assert any(e.kind is EventKind.MESSAGE for e in events)


async def test_revoked_credentials(harness: Harness) -> None:
    """Refused credentials are an AuthError whose message holds no secret."""
    harness.case.revoke()
    with pytest.raises(AuthError) as caught:
        await harness.connector.poll(None, harness.ctx)
    secrets = [
        v.get_secret_value()
        for v in vars(harness.settings).values()
        if hasattr(v, "get_secret_value")
    ]
    assert secrets
    assert not any(secret in str(caught.value) for secret in secrets)
