"""Tests of the whole process: kill -9 between pages, and breaches confirmed at the deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.fakes._base import serve
from connectors.fakes.mastodon import MastodonFake, MastodonWorld
from monitor.config import parse_config
from monitor.events import ClockState, Transition
from monitor.service import Service
from monitor.storage import Store

MENTIONS = 120


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0


async def _wait_for(predicate: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "--config", str(config), "run", "--headless",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


async def test_kill_9_between_pages_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """A worker killed mid-backfill resumes from its stored cursor: every event, once."""
    world = MastodonWorld(now=lambda: datetime.now(UTC))
    fake = MastodonFake(world)
    fake.controls.latency = 0.05
    customer = world.add_account("casey", "Casey")
    start = datetime.now(UTC) - timedelta(hours=3)
    for number in range(MENTIONS):
        world.post(customer, f"@acme question {number}", at=start + timedelta(seconds=60 * number))
    db = tmp_path / "rw.db"
    async with serve(fake.app()) as url:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[monitor]\ndatabase = "sqlite:///{db}"\nlookback = "1d"\n'
            f'[[sources]]\nname = "m"\nkind = "mastodon"\nbase_url = "{url}"\n'
            f'token = "fake-token"\nlimit = 5\npoll_every = "1s"\n'
            '[[policies]]\nname = "social"\nfirst_response = "6m"\n'
        )
        os.chmod(config, 0o600)
        first = await _start(config)
        await _wait_for(lambda: _count(db, "select count(*) from events") >= 10, 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        stored_at_kill = _count(db, "select count(*) from events")
        assert 0 < stored_at_kill < MENTIONS

        second = await _start(config)
        try:
            await _wait_for(lambda: _count(db, "select count(*) from clocks") == MENTIONS, 90)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await second.communicate()
        assert second.returncode == 0, stderr.decode()
    assert _count(db, "select count(*) from events") == MENTIONS
    assert _count(db, "select count(distinct event_id) from events") == MENTIONS
    assert b"Traceback" not in stderr


async def test_breach_confirmed_by_deadline_refresh_not_the_next_poll(tmp_path: Path) -> None:
    """With a 60 s poll interval, a breach is confirmed within a second of its deadline."""
    world = MastodonWorld(now=lambda: datetime.now(UTC))
    fake = MastodonFake(world)
    customer = world.add_account("casey", "Casey")
    async with serve(fake.app()) as url:
        config = parse_config({
            "sources": [{"name": "m", "kind": "mastodon", "base_url": url,
                         "token": "fake-token", "poll_every": "60s"}],
            "policies": [{"name": "social", "first_response": "3s"}],
        })
        breaches: list[Transition] = []
        world.post(customer, "@acme anyone there?", at=datetime.now(UTC))
        with Store.open(f"sqlite:///{tmp_path}/rw.db") as store:

            def collect(changes: int) -> None:
                assert changes > 0
                breaches.extend(t for t in store.transitions()
                                if t.clock.state is ClockState.BREACHED)

            async with Service(config, store, on_clock_changes=collect) as service:
                service.start()
                await _wait_for(lambda: bool(breaches), 10)
            breach = breaches[0]
            due_at = breach.clock.due_at
            assert due_at is not None
            confirmed_after = (breach.at - due_at).total_seconds()
            assert 0 < confirmed_after < 1.0, confirmed_after


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_run_stops_cleanly_on_signals(tmp_path: Path, signum: int) -> None:
    """run --headless exits 0 on SIGTERM or SIGINT, without a traceback."""
    config = tmp_path / "config.toml"
    config.write_text(f'[monitor]\ndatabase = "sqlite:///{tmp_path}/rw.db"\n')
    process = await _start(config)
    await _wait_for(lambda: (tmp_path / "rw.db").exists(), 30)
    await asyncio.sleep(0.5)
    process.send_signal(signum)
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
