"""A large import refreshes PostgreSQL's planner statistics at once, so the board and worklist
queries right after it are planned for the data that is there (not for an empty table)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from ris.domain.model import SYSTEM
from ris.services import ANALYZE_AFTER_IMPORT, RisService
from tests.support.orders import local, new_order, step


def test_a_large_import_analyses_the_tables(service: RisService) -> None:
    if service.db.is_sqlite:
        pytest.skip("SQLite plans without statistics")
    start = local(2026, 11, 23)
    commands = [new_order(steps=(step(start=start + dt.timedelta(minutes=n)),)) for n in range(ANALYZE_AFTER_IMPORT)]
    service.import_orders(commands, SYSTEM)
    with service.db.engine.connect() as connection:
        analysed = connection.execute(
            text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL ORDER BY relname")
        ).scalars()
        assert {"orders", "patients", "requested_procedures", "scheduled_steps"} <= set(analysed)
