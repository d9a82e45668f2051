"""Tests of the schema migrations: they build the models' schema, revert, ship, render SQL."""

from __future__ import annotations

import fnmatch
import io
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import ROOT, database_urls
from sqlalchemy import create_engine, inspect, text

from monitor.config import parse_config
from monitor.events import Actor, Event, EventKind, Status
from monitor.pipeline import Evaluator
from monitor.storage import Store
from monitor.storage.models import metadata
from monitor.storage.store import migrations_config

MIGRATIONS = ROOT / "monitor" / "storage" / "migrations"
TABLES = {"sources", "conversations", "events", "clocks", "clock_transitions", "alert_outbox",
          "workers", "source_leases", "job_claims"}


def _engine_url(url: str) -> str:
    """Return a SQLAlchemy URL the tests can use directly (psycopg for PostgreSQL)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=database_urls())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    schema = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_engine_url(request.param))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in request.param else "?"
    try:
        yield f"{request.param}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _tables(database_url: str) -> set[str]:
    """Return the tables of the database's current schema."""
    engine = create_engine(_engine_url(database_url))
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _migrate(database_url: str, action: Any, revision: str) -> None:
    """Run an Alembic command (upgrade/downgrade) on the database, in one transaction."""
    engine = create_engine(_engine_url(database_url))
    config = migrations_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            action(config, revision)
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    """After Store.open, comparing the database with the models finds no difference."""
    Store.open(database_url).close()
    engine = create_engine(_engine_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []
    assert _tables(database_url) == TABLES | {"alembic_version"}


def test_downgrade_to_base_and_back(database_url: str) -> None:
    """Every migration reverts cleanly, and the schema can be rebuilt after it."""
    _migrate(database_url, command.upgrade, "head")
    assert _tables(database_url) == TABLES | {"alembic_version"}
    _migrate(database_url, command.downgrade, "base")
    assert _tables(database_url) == {"alembic_version"}
    with Store.open(database_url) as store:
        head = ScriptDirectory.from_config(migrations_config()).get_current_head()
        assert store.upgrade() == (None, head)
    assert _tables(database_url) == TABLES | {"alembic_version"}


def test_0004_closes_answered_mentions_that_the_old_rule_left_open(database_url: str) -> None:
    """A mention answered before 0004 is stored as open; after the upgrade the next
    evaluation closes it, and a help-desk ticket is not re-evaluated for nothing."""
    config = parse_config({
        "sources": [{"name": "social", "kind": "mastodon", "base_url": "http://127.0.0.1:9",
                     "token": "t"}],
        "policies": [{"name": "social", "first_response": "6m"}],
    })
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    mention = Event("social", "m1", "m1-1", at, EventKind.MESSAGE, actor=Actor.CUSTOMER)
    reply = Event("social", "m1", "m1-2", at + timedelta(minutes=2), EventKind.MESSAGE,
                  actor=Actor.AGENT)
    ticket = [Event("social", "t1", "t1-1", at, EventKind.STATUS, status=Status.OPEN),
              Event("social", "t1", "t1-2", at, EventKind.MESSAGE, actor=Actor.CUSTOMER)]
    later = at + timedelta(hours=1)
    with Store.open(database_url) as store:
        store.register_sources([("social", "mastodon")])
        store.ingest("social", [mention, reply, *ticket], {}, later, now=later)
        Evaluator(config, store).evaluate_dirty(now=later)
        assert [row.conversation for row in store.queue(now=later)] == ["t1"]
    engine = create_engine(_engine_url(database_url))
    try:
        with engine.begin() as connection:  # as revision 0003's code stored it
            connection.execute(text("UPDATE conversations SET is_open = :yes"), {"yes": True})
    finally:
        engine.dispose()
    _migrate(database_url, command.downgrade, "0003")
    _migrate(database_url, command.upgrade, "head")
    with Store.open(database_url) as store:
        assert store.dirty_conversations() == [("social", "m1")]
        Evaluator(config, store).evaluate_dirty(now=later)
        assert [row.conversation for row in store.queue(now=later)] == ["t1"]


def test_history_is_one_line_of_numbered_revisions() -> None:
    """One head, one base, and each revision lives in a file named after it."""
    script = ScriptDirectory.from_config(migrations_config())
    revisions = list(script.walk_revisions())
    assert script.get_heads() == [revisions[0].revision]
    assert [r.down_revision for r in revisions][-1] is None
    for older, newer in zip(revisions[1:], revisions[:-1], strict=True):
        assert newer.down_revision == older.revision
    for revision in revisions:
        assert revision.path is not None
        assert Path(revision.path).name.startswith(f"{revision.revision}_")


def test_every_migration_file_ships_in_the_package() -> None:
    """Each file of the migrations is a module of a package or matched by package-data."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["monitor"]
    for path in MIGRATIONS.rglob("*"):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(ROOT / "monitor").as_posix()
        in_package = path.suffix == ".py" and (path.parent / "__init__.py").exists()
        packaged = any(fnmatch.fnmatch(relative, glob) for glob in globs)
        assert in_package or packaged, f"{relative} would be left out of the wheel"


def test_offline_mode_renders_postgresql_sql() -> None:
    """``alembic upgrade --sql`` renders the schema for PostgreSQL without a database."""
    config = migrations_config()
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://")
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE events" in sql
    assert "at TIMESTAMP WITH TIME ZONE NOT NULL" in sql
    assert "fields JSONB" in sql
    assert (
        "CREATE INDEX ix_conversations_dirty ON conversations (source, conversation) WHERE dirty"
        in sql
    )
