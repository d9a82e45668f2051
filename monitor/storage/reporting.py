"""Provides the report queries: a period's clocks, the breaches open at its end, the links.

A week can hold a million clocks, so the report reads them as one ordered range of the
partial covering index ``ix_clocks_report`` (stopped clocks only, keyed by
``stopped_at``, holding every column the report reads, the conversation's channel
included): no table lookup, no join, the same plan on SQLite and PostgreSQL. Rows
come off the driver's cursor in batches (a server-side cursor on PostgreSQL) already
in the shape of :class:`~monitor.reports.aggregate.ReportRow`: the SQL turns metric and
outcome into small integers and leaves out what a row's figures do not read, and the
instants stay in the store's own form, which the builder compares as they are
(:meth:`ReportQueries.report_builder`). Per-agent figures come out of the same rows
(each carries ``stopped_by`` and ``assignee``), so a week is read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from monitor.events import ClockState, Metric, require_utc
from monitor.reports.aggregate import (
    ConversationDetail,
    ConversationKey,
    FigureTuple,
    ReportBuilder,
    ReportRow,
    RowTuple,
)
from monitor.reports.period import Period
from monitor.storage import bulk
from monitor.storage.models import clean_id

_BATCH = 5000
"""Rows per fetch: few round trips, and a bounded buffer on either engine."""
_CHUNK = 500
"""Conversations per ``IN`` query when reading the linked conversations."""

_MET, _BREACHED = str(ClockState.MET), str(ClockState.BREACHED)
_METRIC = (
    f"CASE metric WHEN '{Metric.FIRST_RESPONSE}' THEN 0 "
    f"WHEN '{Metric.NEXT_RESPONSE}' THEN 1 ELSE 2 END"
)
_DETAILED = (
    f"policy, source, channel, priority, {_METRIC}, "
    f"CASE state WHEN '{_MET}' THEN 1 ELSE 0 END, elapsed_seconds, target_seconds, "
    f"stopped_at, CASE WHEN state = '{_BREACHED}' THEN due_at END, conversation, cycle, "
    f"CASE WHEN metric <> '{Metric.RESOLUTION}' THEN stopped_by END, "
    f"CASE WHEN state = '{_BREACHED}' THEN assignee END"
)
"""Every column of :class:`ReportRow`."""
_FIGURES_ONLY = (
    f"policy, source, channel, priority, {_METRIC}, "
    f"CASE state WHEN '{_MET}' THEN 1 ELSE 0 END, elapsed_seconds, conversation"
)
"""What the figures of a group read (:data:`~monitor.reports.aggregate.FigureTuple`)."""
_PERIOD = "stopped_at >= ? AND stopped_at < ? AND stopped_at IS NOT NULL AND state IN (?, ?)"


class ReportQueries:
    """Mixed into Store: what the weekly report reads."""

    _engine: Engine
    _codec: bulk.Codec
    dialect: str
    _read: Callable[[str], AbstractContextManager[Connection]]

    def report_builder(self, period: Period) -> ReportBuilder:
        """A report builder that reads this store's rows (and its form of instants)."""
        return ReportBuilder(
            period, instant=self._codec.to_driver, datetime_of=self._codec.from_driver
        )

    def _sql(self, columns: str, index: str, where: str) -> str:
        """A report query; on SQLite the index is named, so no statistics can mislead."""
        hint = f" INDEXED BY {index}" if self.dialect == "sqlite" else ""
        mark = "%s" if self.dialect == "postgresql" else "?"
        return f"SELECT {columns} FROM clocks{hint} WHERE {where.replace('?', mark)}"

    def _stream(self, connection: Connection, sql: str, parameters: Sequence[Any]) -> Iterator[Any]:
        """Run a report query on the driver's cursor; yield its rows as they come."""
        driver = connection.connection
        if self.dialect == "postgresql":
            # A named cursor is server-side: rows arrive in batches, never all at once.
            cursor = driver.cursor(name="replywatch_report")
        else:
            cursor = driver.cursor()
        try:
            cursor.execute(sql, parameters)
            while True:
                rows = cursor.fetchmany(_BATCH)
                if not rows:
                    break
                yield from rows
        finally:
            cursor.close()

    def _period(self, columns: str, start: datetime, end: datetime) -> Iterator[Any]:
        to_driver = self._codec.to_driver
        bounds = (to_driver(require_utc(start, "start")), to_driver(require_utc(end, "end")))
        sql = self._sql(columns, "ix_clocks_report", _PERIOD)
        with self._read("reading the report's clocks") as connection:
            yield from self._stream(connection, sql, (*bounds, _MET, _BREACHED))

    def report_rows(self, start: datetime, end: datetime) -> Iterator[RowTuple]:
        """Yield the rows of the clocks that stopped in ``[start, end)`` met or breached.

        Streams inside one read transaction, which stays open until the iterator is
        exhausted or closed.

        Raises:
            ValueError: a naive bound.
            StorageError: the database failed.
        """
        return self._period(_DETAILED, start, end)

    def report_figure_rows(self, start: datetime, end: datetime) -> Iterator[FigureTuple]:
        """Like :meth:`report_rows`, only what the figures of a group read (a previous period).

        Raises:
            ValueError: a naive bound.
            StorageError: the database failed.
        """
        return self._period(_FIGURES_ONLY, start, end)

    def open_breaches(self, at: datetime) -> list[ReportRow]:
        """Return the rows of the breached clocks due before ``at`` and unanswered at it.

        That is every breach still running, and every breach answered at or after
        ``at`` (a clock stopped after the end of a report's week was open at its end).

        Raises:
            ValueError: a naive instant.
            StorageError: the database failed.
        """
        instant = self._codec.to_driver(require_utc(at, "at"))
        running = self._sql(
            _DETAILED,
            "ix_clocks_open_breaches",
            "state = ? AND stopped_at IS NULL AND due_at < ?",
        )
        answered_later = self._sql(
            _DETAILED,
            "ix_clocks_report",
            "stopped_at >= ? AND stopped_at IS NOT NULL AND state = ? AND due_at < ?",
        )
        with self._read("reading open breaches") as connection:
            rows = list(self._stream(connection, running, (_BREACHED, instant)))
            rows += self._stream(connection, answered_later, (instant, _BREACHED, instant))
        return [ReportRow._make(row) for row in rows]

    def conversation_details(
        self, keys: Sequence[ConversationKey]
    ) -> dict[ConversationKey, ConversationDetail]:
        """Return the link and subject of each known conversation of ``keys``.

        Raises:
            StorageError: the database failed.
        """
        stored = {
            (source, clean_id(conversation)): (source, conversation)
            for source, conversation in keys
        }
        by_source: dict[str, list[str]] = {}
        for source, conversation in stored:
            by_source.setdefault(source, []).append(conversation)
        found: dict[ConversationKey, ConversationDetail] = {}
        with self._read("reading conversations") as connection:
            for source, conversations in by_source.items():
                for chunk in bulk.in_chunks(conversations, _CHUNK):
                    sql = bulk.select_in(
                        self.dialect,
                        "source, conversation, url, subject",
                        "conversations",
                        len(chunk),
                    )
                    cursor = connection.connection.cursor()
                    try:
                        cursor.execute(sql, bulk.in_parameters(self.dialect, source, chunk))
                        rows = cursor.fetchall()
                    finally:
                        cursor.close()
                    for row_source, conversation, url, subject in rows:
                        key = stored[(row_source, conversation)]
                        found[key] = ConversationDetail(url=url, subject=subject)
        return found
