"""Provides ``copy_store``: move a whole store to another database (SQLite to PostgreSQL).

Every table of the schema is copied, parents first, row by row through the column
types (instants stay aware UTC, JSON stays JSON), except the runtime state of a
deployment (``workers``, ``source_leases``): the workers of the new store make their
own. The source is read in one read transaction (one snapshot) and the target written
in one transaction, so a failed copy leaves the target as it was. The target must be
empty or freshly migrated; the row counts of every table are compared before commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Integer, Table, func, select, text

from monitor.errors import StorageError
from monitor.storage.models import metadata
from monitor.storage.store import Store

RUNTIME_TABLES = frozenset({"workers", "source_leases"})
"""Tables of a running deployment's state, never copied."""

BATCH = 2000
"""Rows per read and per insert."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy moved: rows per table, in the order they were copied."""

    source: str
    target: str
    rows: dict[str, int]

    @property
    def total(self) -> int:
        """Rows copied across all tables."""
        return sum(self.rows.values())


def copied_tables() -> list[Table]:
    """Return the tables a copy moves, parents before children."""
    return [table for table in metadata.sorted_tables if table.name not in RUNTIME_TABLES]


def _count(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)


def _serial_column(table: Table) -> str | None:
    """Return the auto-assigned integer key of ``table``, if it has one."""
    keys = list(table.primary_key.columns)
    if len(keys) == 1 and isinstance(keys[0].type, Integer) and keys[0].autoincrement in (
        True, "auto"
    ):
        return keys[0].name
    return None


def copy_store(
    source_url: str, target_url: str, *, progress: Callable[[str, int], None] | None = None
) -> CopyReport:
    """Copy the store at ``source_url`` into the empty database at ``target_url``.

    The target is migrated to this version's schema first if it is empty; the source
    must already be at it (``replywatch db upgrade``), and is only read.
    ``progress(table, rows)`` is called after each table.

    Raises:
        StorageError: either database unreachable or at another schema, the target not
            empty, the counts differing after the copy, or any database failure; the
            target is then left unchanged.
    """
    with Store.open(source_url, upgrade=False) as source:
        if source.display_url == _display(target_url):
            raise StorageError(f"{source.display_url}: cannot copy a store onto itself")
        with Store.open(target_url) as target:
            rows = _copy(source, target, progress)
            return CopyReport(source.display_url, target.display_url, rows)


def _display(url: str) -> str:
    """Return the display form of ``url`` without opening it (for the onto-itself check)."""
    from monitor.storage.store import _parse_url

    return _parse_url(url)[1]


def _copy(
    source: Store, target: Store, progress: Callable[[str, int], None] | None
) -> dict[str, int]:
    tables = copied_tables()
    copied: dict[str, int] = {}
    with source._read("reading the store to copy") as reading, \
            target._write("copying the store") as writing:
        for table in tables:
            found = _count(writing, table)
            if found:
                raise StorageError(
                    f"{target.display_url}: not empty ({table.name} has {found} rows); "
                    "db copy fills an empty or freshly migrated database only"
                )
        for table in tables:
            result = reading.execution_options(yield_per=BATCH).execute(
                select(table).order_by(*table.primary_key.columns)
            )
            count = 0
            for partition in result.partitions():
                writing.execute(table.insert(), [dict(row._mapping) for row in partition])
                count += len(partition)
            expected = _count(reading, table)
            stored = _count(writing, table)
            if not (count == expected == stored):
                raise StorageError(
                    f"{target.display_url}: copy of {table.name} does not match: "
                    f"{expected} rows in the source, {stored} in the target"
                )
            serial = _serial_column(table)
            if serial is not None and target.dialect == "postgresql" and count:
                # Rows came with their ids: the sequence must continue after the largest.
                writing.execute(
                    text(f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                         f"(SELECT max({serial}) FROM {table.name}))"),
                    {"table": table.name, "column": serial},
                )
            copied[table.name] = count
            if progress is not None:
                progress(table.name, count)
    return copied
