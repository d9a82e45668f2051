"""Provides what every test shares: a guard against non-loopback traffic, fixture paths."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX paths are local
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to reach a host that is not this machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            pytest.fail(f"test tried to reach non-loopback address {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            pytest.fail(f"test tried to reach non-loopback address {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return


def fixture_path(api: str, name: str) -> Path:
    """A recorded payload: tests/fixtures/<api>/<name> if we recorded it, else ../shared."""
    local = LOCAL_FIXTURES / api / name
    return local if local.exists() else SHARED_FIXTURES / api / name


def database_urls() -> list[Any]:
    """SQLite always; PostgreSQL where REPLYWATCH_TEST_DATABASE_URL is set, else skipped."""
    postgres = os.environ.get("REPLYWATCH_TEST_DATABASE_URL")
    skip = pytest.mark.skip(reason="REPLYWATCH_TEST_DATABASE_URL is not set; .ci/run sets it")
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(postgres or "postgresql", id="postgresql", marks=() if postgres else skip),
    ]
