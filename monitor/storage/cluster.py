"""Provides the store's side of several workers sharing one PostgreSQL database.

**Leases.** Each source has a row in ``source_leases``: its owner (a worker id) and an
epoch bumped at every acquisition. Each worker has a row in ``workers`` and, on a
connection of its own (:class:`WorkerSession`), holds a session advisory lock keyed by
its id: PostgreSQL drops that lock the moment the worker's process or connection goes,
which is how the others learn at once that it is gone. A lease can be taken when it is
free, expired (``lease_timeout`` after its owner's last renewal: the owner vanished
without its socket closing, or froze), or held by a worker whose lock is gone.

**Fencing.** A write made under a lease (:func:`fenced` puts it in the context; the
runner of a leased source does so for every poll) first runs, in the write's own
transaction, ``SELECT ... FROM source_leases WHERE source, owner, epoch match AND
expires_at > now() AND the owner's lock is held FOR KEY SHARE``. No row: the write
raises :class:`~monitor.errors.LeaseLost` and stores nothing. A row: it stays locked
until the commit, and a takeover (``FOR UPDATE SKIP LOCKED``) cannot slip in between.
Without a lease in the context the check is a no-op: SQLite, ``backfill``, tests.

**Change push.** Ingest and evaluation send ``pg_notify('replywatch', json)`` in their
transaction (delivered at commit, never for a rolled-back write); :meth:`listen` yields
the notices to a board in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.sql import SQL, Identifier
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from monitor.errors import LeaseLost, StorageError
from monitor.storage.models import clean_text, table

log = logging.getLogger(__name__)

CHANNEL = "'replywatch_' || md5(coalesce(current_schema(), ''))"
"""The SQL of the LISTEN/NOTIFY channel of change notices: one per schema, since notices
go to every listener of the database and two deployments may share one in two schemas."""

WORKER_LOCK = 0x7277_776B
"""First key of every worker's session advisory lock ("rwwk"); the second is its id."""

_NOTIFY_LIMIT = 7000
"""Longest notice payload sent with its ids; PostgreSQL refuses 8000 bytes and more."""

_MAX_ID = 2**31 - 1
"""Worker ids are the second int4 key of an advisory lock."""

_workers = table("workers")
_leases = table("source_leases")
_sources = table("sources")
_claims = table("job_claims")

_ALIVE_IDS = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
    f" AND objsubid = 2 AND classid::bigint = {WORKER_LOCK}"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
"""The ids of the workers whose session is alive (their advisory lock is held)."""

_FENCE = (
    "SELECT epoch FROM source_leases WHERE source = %s AND owner = %s AND epoch = %s"
    f" AND expires_at > now() AND owner IN ({_ALIVE_IDS}) FOR KEY SHARE OF source_leases"
)
"""The lease check of a write. FOR KEY SHARE conflicts with the FOR UPDATE of a takeover
(which skips the row, or makes this check wait and then fail) but not with the owner's
renewal, a plain UPDATE: a long write never holds up its worker's heartbeat."""

_lease: ContextVar[Lease | None] = ContextVar("replywatch_lease", default=None)
_count_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Lease:
    """The right of one worker to write for one source, as of one acquisition (epoch)."""

    source: str
    worker: int
    epoch: int


def current_lease() -> Lease | None:
    """Return the lease the writes of this context are made under, if any."""
    return _lease.get()


@contextmanager
def fenced(lease: Lease) -> Iterator[None]:
    """Make the store's writes in this context (threads started from it too) check ``lease``."""
    token = _lease.set(lease)
    try:
        yield
    finally:
        _lease.reset(token)


@dataclass(frozen=True, slots=True)
class ChangeNotice:
    """What changed in the store: a table, a source, and which conversations (None: all)."""

    table: str
    """``events``, ``clocks``, ``sources``; ``*`` (reload everything: after a reconnect)
    or ``!`` (the connection dropped: notices are missed until the next ``*``)."""
    source: str | None
    ids: tuple[str, ...] | None

    @property
    def resync(self) -> bool:
        """True when the listener may have missed notices and must reload everything."""
        return self.table == "*"


RESYNC = ChangeNotice("*", None, None)
"""The notice a listener gets on each (re)connection: whatever came before is unknown."""
LOST = ChangeNotice("!", None, None)
"""The notice a listener gets when its connection drops: nothing is pushed until RESYNC."""


def notice_payload(table_name: str, source: str, ids: Collection[str] | None) -> str:
    """Return the JSON payload of a notice; ids are left out (None) past the size limit."""
    payload = {"table": table_name, "source": source, "ids": None if ids is None else sorted(ids)}
    text_ = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    if len(text_) > _NOTIFY_LIMIT:
        payload["ids"] = None
        text_ = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
        if len(text_) > _NOTIFY_LIMIT:  # an absurd source name: the board reloads everything
            return json.dumps({"table": table_name, "source": None, "ids": None})
    return text_


def parse_notice(payload: str) -> ChangeNotice | None:
    """Return the notice of a payload, or None if it is not one of ours (anyone may NOTIFY)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("table"), str):
        return None
    if data["table"] in (RESYNC.table, LOST.table):
        return None  # only the listener itself says these
    source = data.get("source")
    ids = data.get("ids")
    if source is not None and not isinstance(source, str):
        return None
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return None
    return ChangeNotice(data["table"], source, None if ids is None else tuple(ids))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat of a worker found."""

    held: dict[str, int]
    """The sources whose lease it renewed, with their epoch."""
    live_workers: int
    """Workers alive now (lock held, heartbeat within the lease timeout), itself included."""
    next_expiry_in: float | None
    """Seconds until the first lease of a worker that stopped heartbeating expires."""


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A worker as ``replywatch status`` shows it."""

    id: int
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    sources: int
    """Leases it holds now."""
    fenced_writes: int


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A source as ``replywatch status`` shows it: health, cursor position, lease."""

    name: str
    kind: str
    owner: int | None
    """The worker holding an unexpired lease on it (None: nobody polls it now)."""
    epoch: int | None
    acquired_at: datetime | None
    expires_at: datetime | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    watermark: datetime | None
    failing_since: datetime | None
    last_error: str | None
    degraded: bool


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Workers and sources of a store, as of ``now`` (the database's clock)."""

    now: datetime
    workers: tuple[WorkerStatus, ...]
    sources: tuple[SourceStatus, ...]


def _utc(value: Any) -> datetime:
    """Return an aware UTC instant read from the database."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _one_line(err: BaseException, secret: str | None) -> str:
    """Return the first line of an error, with no secret in it."""
    line = next((part.strip() for part in str(err).splitlines() if part.strip()), "")
    line = line or err.__class__.__name__
    return line.replace(secret, "***") if secret else line


class WorkerSession:
    """A worker's own connection, holding the advisory lock that says the worker is alive.

    Used from one coordinator at a time (calls may come from different threads).
    """

    def __init__(self, conninfo: str, application_name: str, secret: str | None) -> None:
        """Prepare the session; :meth:`connect` opens it."""
        self._conninfo = conninfo
        self._application_name = application_name
        self._secret = secret
        self._connection: psycopg.Connection[Any] | None = None
        self.worker_id = 0
        self.host = ""
        self.pid = 0

    def connect(self) -> None:
        """Open (or reopen) the connection; the lock is taken by :meth:`lock`."""
        self.close()
        try:
            self._connection = psycopg.connect(
                self._conninfo, autocommit=True, application_name=self._application_name
            )
        except psycopg.Error as err:
            raise StorageError(
                f"cannot open the worker session: {_one_line(err, self._secret)}"
            ) from err

    def _execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        """Run one statement on the session; return its first row."""
        if self._connection is None:
            raise StorageError("the worker session is closed")
        try:
            return self._connection.execute(sql, parameters).fetchone()
        except psycopg.Error as err:
            raise StorageError(f"worker session: {_one_line(err, self._secret)}") from err

    def lock(self, worker_id: int) -> bool:
        """Take the lock of ``worker_id`` (without waiting); True if this session holds it."""
        row = self._execute("SELECT pg_try_advisory_lock(%s, %s)", (WORKER_LOCK, worker_id))
        if row is not None and row[0]:
            self.worker_id = worker_id
            return True
        return False

    def unlock(self) -> None:
        """Release the lock (the others see this worker gone)."""
        if self.worker_id:
            self._execute("SELECT pg_advisory_unlock(%s, %s)", (WORKER_LOCK, self.worker_id))

    def alive(self) -> bool:
        """Return True while the connection is up and still holds this worker's lock."""
        try:
            row = self._execute(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                " AND locktype = 'advisory' AND granted AND objsubid = 2"
                " AND classid::bigint = %s AND objid::bigint = %s",
                (WORKER_LOCK, self.worker_id),
            )
        except StorageError:
            return False
        return row is not None and row[0] == 1

    def close(self) -> None:
        """Close the connection; PostgreSQL releases the lock with it."""
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):  # a broken connection closes anyway
                self._connection.close()
            self._connection = None


class ClusterQueries:
    """Mixed into Store: leases, fencing, worker heartbeats, status, job claims, change push."""

    _engine: Engine
    _secret: str | None
    dialect: str
    display_url: str
    _fenced_count = 0

    if TYPE_CHECKING:

        def _write(self, doing: str) -> AbstractContextManager[Connection]: ...

        def _read(self, doing: str) -> AbstractContextManager[Connection]: ...

        def _translate(self, doing: str) -> AbstractContextManager[None]: ...

        @staticmethod
        def _fetch(connection: Connection, sql: str, parameters: Sequence[Any]) -> list[Any]: ...

    # -- in every write for a source --------------------------------------------------------

    @property
    def fenced_writes(self) -> int:
        """Writes of this process refused because their lease was lost."""
        return self._fenced_count

    def _refuse(self, lease: Lease, source: str, why: str) -> LeaseLost:
        """Count a refused write; return the error to raise."""
        with _count_lock:
            self._fenced_count += 1
        return LeaseLost(
            f"{self.display_url}: write for source {source!r} refused: {why}", source=source
        )

    def _fence(self, connection: Connection, sources: Iterable[str]) -> None:
        """Check, in ``connection``'s transaction, the lease the context writes under.

        A no-op without a lease in the context, or on SQLite (one process, no leases).

        Raises:
            LeaseLost: a source the lease does not cover, or a lease no longer held.
        """
        lease = _lease.get()
        if lease is None:
            return
        for source in sorted(set(sources)):
            if source != lease.source:
                raise self._refuse(lease, source, f"the lease held is on {lease.source!r}")
        if self.dialect != "postgresql":
            return
        rows = self._fetch(connection, _FENCE, (lease.source, lease.worker, lease.epoch))
        if not rows:
            raise self._refuse(
                lease, lease.source,
                f"lease epoch {lease.epoch} of worker {lease.worker} is no longer held",
            )

    def _notify(
        self, connection: Connection, table_name: str, source: str,
        ids: Collection[str] | None = (),
    ) -> None:
        """Send a change notice, delivered when (and if) the transaction commits."""
        if self.dialect != "postgresql":
            return
        self._fetch(
            connection, f"SELECT pg_notify({CHANNEL}, %s)",
            (notice_payload(table_name, source, ids),),
        )

    # -- workers and leases ------------------------------------------------------------------

    def _require_postgresql(self, doing: str) -> None:
        if self.dialect != "postgresql":
            raise StorageError(f"{self.display_url}: {doing} needs PostgreSQL")

    def _conninfo(self) -> str:
        """Return a libpq URI of this store's database (for connections outside the pool)."""
        url = self._engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def enable_cluster(self, *, application_name: str, idle_timeout: float) -> None:
        """Name this process's connections and bound how long they may sit in a transaction.

        A worker frozen inside a transaction would keep its lease row locked;
        ``idle_in_transaction_session_timeout`` ends such a session, so the takeover
        proceeds and the frozen write is rolled back. No-op on SQLite.
        """
        if self.dialect != "postgresql":
            return
        name = clean_text(application_name)[:63]
        milliseconds = str(max(1000, int(idle_timeout * 1000)))

        def configure(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('application_name', %s, false),"
                    " set_config('idle_in_transaction_session_timeout', %s, false)",
                    (name, milliseconds),
                )
            dbapi_connection.commit()

        event.listen(self._engine, "connect", configure)
        # Connections opened before (the schema check) lack the settings: start afresh.
        self._engine.dispose()

    def join_cluster(
        self, *, host: str, pid: int, sources: Sequence[str], application_name: str
    ) -> WorkerSession:
        """Register a worker: take a free id's lock, insert its row, make the lease rows.

        Raises:
            StorageError: not PostgreSQL, or the database failed.
        """
        self._require_postgresql("sharing sources between workers")
        session = WorkerSession(self._conninfo(), clean_text(application_name)[:63], self._secret)
        session.connect()
        try:
            self._register(session, host=host, pid=pid)
            rows = [{"source": name, "epoch": 0} for name in dict.fromkeys(sources)]
            if rows:
                with self._write("creating source leases") as connection:
                    connection.execute(
                        postgresql.insert(_leases).on_conflict_do_nothing(
                            index_elements=[_leases.c.source]
                        ),
                        rows,
                    )
        except BaseException:
            session.close()
            raise
        return session

    def _register(self, session: WorkerSession, *, host: str, pid: int) -> None:
        """Lock an id nobody uses (keeping the session's own if it can) and insert its row."""
        wanted = session.worker_id
        for _ in range(50):
            worker_id = wanted or secrets.randbelow(_MAX_ID) + 1
            wanted = 0
            if not session.lock(worker_id):
                continue
            statement = postgresql.insert(_workers).values(
                id=worker_id, host=clean_text(host), pid=pid,
                started_at=func.now(), heartbeat_at=func.now(), fenced_writes=self._fenced_count,
            )
            with self._write("registering the worker") as connection:
                mine = connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=[_workers.c.id],
                        set_={"heartbeat_at": func.now()},
                        # A row of another, dead worker with this id is not ours to reuse.
                        where=(_workers.c.host == clean_text(host)) & (_workers.c.pid == pid),
                    )
                ).rowcount
            if mine:
                session.host, session.pid = clean_text(host), pid
                return
            session.unlock()
        raise StorageError(f"{self.display_url}: found no free worker id")  # pragma: no cover

    def rejoin_cluster(self, session: WorkerSession, *, host: str, pid: int) -> None:
        """Come back after the session was lost: drop every lease held, reconnect, re-lock.

        The leases are released before the lock is taken again, so no write begun under
        an old epoch can pass the fence afterwards.
        """
        with self._write("releasing the leases of a lost session") as connection:
            connection.execute(
                _leases.update()
                .where(_leases.c.owner == session.worker_id)
                .values(owner=None, expires_at=None, acquired_at=None)
            )
        session.connect()
        self._register(session, host=host, pid=pid)

    def heartbeat(self, session: WorkerSession, *, lease_timeout: float) -> Heartbeat:
        """Stamp the worker alive, renew its unexpired leases, count the live workers.

        Raises:
            StorageError: the database failed.
        """
        me = session.worker_id
        ttl = {"ttl": lease_timeout, "me": me}
        with self._write("heartbeating") as connection:
            # An upsert: a row pruned while this worker was frozen comes back.
            connection.execute(
                postgresql.insert(_workers)
                .values(id=me, host=session.host, pid=session.pid, started_at=func.now(),
                        heartbeat_at=func.now(), fenced_writes=self._fenced_count)
                .on_conflict_do_update(
                    index_elements=[_workers.c.id],
                    set_={"heartbeat_at": func.now(), "fenced_writes": self._fenced_count},
                )
            )
            held = {
                row.source: int(row.epoch)
                for row in connection.execute(
                    text("UPDATE source_leases SET expires_at = now() + make_interval(secs => :ttl)"
                         " WHERE owner = :me AND expires_at > now()"
                         f" AND owner IN ({_ALIVE_IDS}) RETURNING source, epoch"),
                    ttl,
                )
            }
            live = connection.execute(
                text("SELECT count(*) FROM workers WHERE heartbeat_at > now() -"
                     f" make_interval(secs => :ttl) AND id IN ({_ALIVE_IDS})"),
                ttl,
            ).scalar()
            # Leases of a worker silent for half a timeout: wake when the first expires.
            expiry = connection.execute(
                text("SELECT EXTRACT(EPOCH FROM min(l.expires_at) - now()) FROM source_leases l"
                     " LEFT JOIN workers w ON w.id = l.owner WHERE l.owner <> :me"
                     " AND l.expires_at > now() AND (w.id IS NULL OR w.heartbeat_at < now() -"
                     " make_interval(secs => :ttl / 2))"),
                ttl,
            ).scalar()
            connection.execute(
                text("DELETE FROM workers WHERE heartbeat_at < now() -"
                     f" make_interval(secs => :ttl * 10) AND id NOT IN ({_ALIVE_IDS})"),
                ttl,
            )
        return Heartbeat(held, max(1, int(live or 0)),
                         None if expiry is None else max(0.0, float(expiry)))

    def acquire_leases(
        self, session: WorkerSession, preferred: Sequence[str], *, limit: int,
        lease_timeout: float,
    ) -> list[Lease]:
        """Take up to ``limit`` leases among ``preferred`` (in that order) that are free,
        expired, or held by a worker whose session is gone; each gets a new epoch.

        Leases locked by a write in progress are skipped, never waited for.
        """
        if limit <= 0 or not preferred:
            return []
        statement = text(
            "WITH candidates AS (SELECT source FROM source_leases"
            " WHERE source = ANY(CAST(:wanted AS text[])) AND (owner IS NULL"
            " OR expires_at IS NULL OR expires_at <= now()"
            f" OR owner NOT IN ({_ALIVE_IDS}))"
            " ORDER BY array_position(CAST(:wanted AS text[]), source)"
            " LIMIT :limit FOR UPDATE SKIP LOCKED)"
            " UPDATE source_leases l SET owner = :me, epoch = l.epoch + 1,"
            " acquired_at = now(), expires_at = now() + make_interval(secs => :ttl)"
            " FROM candidates c WHERE l.source = c.source RETURNING l.source, l.epoch"
        )
        with self._write("acquiring source leases") as connection:
            rows = connection.execute(
                statement,
                {"wanted": list(preferred), "limit": limit, "me": session.worker_id,
                 "ttl": lease_timeout},
            ).all()
        order = {name: index for index, name in enumerate(preferred)}
        leases = [Lease(row.source, session.worker_id, int(row.epoch)) for row in rows]
        return sorted(leases, key=lambda lease: order[lease.source])

    def release_leases(self, session: WorkerSession, sources: Collection[str]) -> None:
        """Give up these leases at once (a rebalance): any worker may take them now."""
        if not sources:
            return
        with self._write("releasing source leases") as connection:
            connection.execute(
                _leases.update()
                .where(_leases.c.owner == session.worker_id, _leases.c.source.in_(list(sources)))
                .values(owner=None, expires_at=None, acquired_at=None)
            )

    def leave_cluster(self, session: WorkerSession) -> None:
        """Release every lease, remove the worker's row, drop its lock and connection."""
        try:
            with self._write("leaving the cluster") as connection:
                connection.execute(
                    _leases.update()
                    .where(_leases.c.owner == session.worker_id)
                    .values(owner=None, expires_at=None, acquired_at=None)
                )
                connection.execute(_workers.delete().where(_workers.c.id == session.worker_id))
        finally:
            session.close()

    # -- status --------------------------------------------------------------------------------

    def cluster_status(self) -> ClusterStatus:
        """Return the workers and every registered source with its lease and health."""
        s, lease = _sources.c, _leases.c
        statement = (
            select(s.name, s.kind, s.last_poll_at, s.last_success_at, s.watermark,
                   s.failing_since, s.last_error, s.degraded, lease.owner, lease.epoch,
                   lease.acquired_at, lease.expires_at)
            .select_from(_sources.outerjoin(_leases, lease.source == s.name))
            .order_by(s.name)
        )
        with self._read("reading the cluster status") as connection:
            if self.dialect == "postgresql":
                now = _utc(connection.execute(select(func.now())).scalar())
                alive = {int(row[0]) for row in connection.execute(text(_ALIVE_IDS))}
            else:
                now, alive = datetime.now(UTC), set()
            workers = connection.execute(select(_workers).order_by(_workers.c.started_at)).all()
            rows = connection.execute(statement).all()
        sources = []
        held: dict[int, int] = {}
        for row in rows:
            valid = (
                row.owner is not None and row.expires_at is not None and row.expires_at > now
                and row.owner in alive
            )
            if valid:
                held[row.owner] = held.get(row.owner, 0) + 1
            sources.append(SourceStatus(
                name=row.name, kind=row.kind, owner=row.owner if valid else None,
                epoch=row.epoch, acquired_at=row.acquired_at if valid else None,
                expires_at=row.expires_at if valid else None, last_poll_at=row.last_poll_at,
                last_success_at=row.last_success_at, watermark=row.watermark,
                failing_since=row.failing_since, last_error=row.last_error,
                degraded=bool(row.degraded),
            ))
        return ClusterStatus(
            now=now,
            workers=tuple(
                WorkerStatus(
                    id=int(row.id), host=row.host, pid=int(row.pid), started_at=row.started_at,
                    heartbeat_at=row.heartbeat_at, alive=int(row.id) in alive,
                    sources=held.get(int(row.id), 0), fenced_writes=int(row.fenced_writes),
                )
                for row in workers
            ),
            sources=tuple(sources),
        )

    # -- once per deployment ------------------------------------------------------------------

    def claim_once(
        self, job: str, period: str, *, now: datetime | None = None, by: str | None = None
    ) -> bool:
        """Claim ``job`` for ``period`` (e.g. ``weekly-report``, ``2026-W47``).

        True for exactly one caller per ``(job, period)`` across every process sharing
        the store: the claim is a unique row, inserted or not. A crash after a claim
        leaves the period claimed (the job is not run twice, at the risk of not at all).
        """
        claimed_at = now if now is not None else datetime.now(UTC)
        if claimed_at.tzinfo is None:
            raise ValueError("claim_once: now must be aware UTC")
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        statement = insert(_claims).values(
            job=clean_text(job), period=clean_text(period), claimed_at=claimed_at,
            claimed_by=None if by is None else clean_text(by),
        ).on_conflict_do_nothing(index_elements=[_claims.c.job, _claims.c.period])
        with self._write(f"claiming {job} for {period}") as connection:
            return connection.execute(statement.returning(_claims.c.job)).first() is not None

    # -- change push ----------------------------------------------------------------------------

    async def listen(
        self, *, keepalive: float = 30.0, retry_every: float = 1.0
    ) -> AsyncGenerator[ChangeNotice, None]:
        """Yield the change notices of every process writing to this store, as they commit.

        The first notice, and the first after each reconnection, is :data:`RESYNC`:
        notices sent while not listening are lost, so the consumer reloads. A dropped
        connection is :data:`LOST`: until the next RESYNC the consumer looks for changes
        itself. A silent connection is probed every ``keepalive`` seconds; a lost one is
        retried every ``retry_every`` seconds, logged once.

        Raises:
            StorageError: the store is not on PostgreSQL.
        """
        self._require_postgresql("change push (LISTEN/NOTIFY)")
        conninfo = self._conninfo()
        failing = False
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, application_name="replywatch listener"
                )
            except psycopg.Error as err:
                if not failing:
                    log.warning("%s: cannot listen for changes: %s; retrying", self.display_url,
                                _one_line(err, self._secret))
                    failing = True
                await asyncio.sleep(retry_every)
                continue
            try:
                async with connection:
                    cursor = await connection.execute(f"SELECT {CHANNEL}")
                    row = await cursor.fetchone()
                    assert row is not None  # one expression selected: one row
                    await connection.execute(SQL("LISTEN {}").format(Identifier(row[0])))
                    if failing:
                        log.info("%s: listening for changes again", self.display_url)
                        failing = False
                    yield RESYNC
                    while True:
                        async for note in connection.notifies(timeout=keepalive):
                            notice = parse_notice(note.payload)
                            if notice is not None:
                                yield notice
                        await connection.execute("SELECT 1")
            except psycopg.Error as err:
                if not failing:
                    log.warning("%s: lost the change listener: %s; reconnecting",
                                self.display_url, _one_line(err, self._secret))
                    failing = True
                yield LOST
                await asyncio.sleep(retry_every)
