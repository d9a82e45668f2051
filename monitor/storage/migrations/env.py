"""Provides the Alembic environment: migrations run on the connection ``Store`` lends.

``Store.open`` builds the Alembic config in code (``monitor.storage.store.migrations_config``)
and lends its open connection, inside the write transaction that holds the migration lock,
as ``config.attributes["connection"]``. Without one, ``sqlalchemy.url`` is used: that is how
a developer generates a new revision::

    config = migrations_config()
    config.set_main_option("sqlalchemy.url", "sqlite:///dev.db")
    command.revision(config, "what changed", autogenerate=True, rev_id="0002")

and how ``command.upgrade(config, "head", sql=True)`` renders SQL for a DBA.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from monitor.storage.models import metadata

config = context.config


def _run(connection: Connection) -> None:
    """Run the pending migrations on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite gets transactional DDL from the store's BEGIN IMMEDIATE recipe.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    """Emit the migrations as SQL for ``sqlalchemy.url`` (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    lent = config.attributes.get("connection")
    if lent is not None:
        _run(lent)
    else:
        engine = create_engine(str(config.get_main_option("sqlalchemy.url")))
        with engine.begin() as connection:
            _run(connection)
        engine.dispose()
