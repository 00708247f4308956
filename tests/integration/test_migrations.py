"""Migrations: upgrade from empty and back on the engine under test; the models match them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ris.db import Database, migrate
from ris.db.models import Base


def test_upgrade_from_empty_and_downgrade_to_empty(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.downgrade(db.engine, "base")
        assert db.schema_status().revision is None
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.upgrade()
        status = db.schema_status()
        assert status.up_to_date
        assert status.revision == migrate.head_revision()
        assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())
    finally:
        db.upgrade()
        db.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()
