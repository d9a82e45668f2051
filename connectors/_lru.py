"""Provides the bounded memories connectors keep: the least recently written entry goes first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    """Write ``key`` as the newest entry of ``table``, dropping the oldest beyond ``limit``."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def remembered(table: Mapping[K, V], key: K, value: V, limit: int) -> dict[K, V]:
    """A copy of ``table`` (oldest first) with ``key`` written as its newest entry."""
    copy = OrderedDict(table)
    remember(copy, key, value, limit)
    return dict(copy)
