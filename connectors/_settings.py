"""Provides the checks connector settings share: API addresses, and settings given as a dict."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, TypeVar
from urllib.parse import urlsplit

from monitor.connector import SourceSettings

S = TypeVar("S", bound=SourceSettings)


def validated(model: type[S], settings: S | Mapping[str, Any]) -> S:
    """``settings`` as ``model``: validated from a plain mapping (a config table) if need be."""
    return settings if isinstance(settings, model) else model.model_validate(settings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.1``, ``::1``...)."""
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def https_address(value: str, example: str, secret: str = "the token") -> str:
    """An API's address without a trailing slash; plain http only on loopback (tests).

    ``secret`` names what would travel in clear text over http (``"the password"``).
    Raises ValueError, which pydantic reports under the field's name.
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an address like {example}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("give the address only, without credentials or query")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"must use https:// ({secret} would travel in clear text)")
    return value.strip().rstrip("/")

