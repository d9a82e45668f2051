"""Provides the Alembic migrations of the store (run in code by ``Store.open``)."""
