"""Order look-ups by accession number use the (partial) unique index on SQLite instead of scanning
every order: the HL7 intake runs them for every message, the import for every 500 rows. The board's
statements read the steps through their indexes for every filter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import Executable

from ris.db import Database
from ris.db import repository as repo
from ris.db.board_sql import board_counts_select, board_rows_select
from ris.domain.board import BoardFilter
from ris.domain.model import OrderKey
from ris.domain.status import OPEN_STATUSES, StepStatus


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('plans') / 'ris.db'}")
    database.upgrade()
    return database


def plan(database: Database, query: Any) -> str:
    """SQLite's plan for ``query`` run as the application runs it: with bound parameters."""
    assert isinstance(query, Executable)
    state = query.compile(dialect=sqlite.dialect()).construct_expanded_state()
    assert state.positiontup is not None
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {state.statement}", tuple(state.parameters[name] for name in state.positiontup)
        ).all()
    return " | ".join(row[-1] for row in rows)


def test_order_by_accession_uses_the_partial_unique_index(sqlite_database: Database) -> None:
    found = plan(sqlite_database, repo.order_by_key_select(OrderKey(accession_number="A1")))
    assert "INDEX uq_orders_accession_number" in found
    assert "SCAN orders" not in found


def test_the_key_check_of_a_new_order_uses_the_indexes(sqlite_database: Database) -> None:
    query = repo._ORDER_KEYS_TAKEN.params(accession="A1", uids=["2.25.1", "2.25.2"])
    found = plan(sqlite_database, query)
    assert "INDEX uq_orders_accession_number" in found
    assert "SCAN orders" not in found
    assert "SCAN requested_procedures" not in found


def test_order_by_placer_number_uses_its_index(sqlite_database: Database) -> None:
    assert "SCAN orders" not in plan(sqlite_database, repo.order_by_key_select(OrderKey(placer_order_number="PL1")))


BOARD_DAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize(
    "board",
    [
        BoardFilter(BOARD_DAY, BOARD_DAY, statuses=OPEN_STATUSES),
        BoardFilter(BOARD_DAY, BOARD_DAY),
        BoardFilter(BOARD_DAY, BOARD_DAY, modality="CT", statuses=OPEN_STATUSES),
        BoardFilter(BOARD_DAY, BOARD_DAY, station_ae="CT_RAD_01"),
        BoardFilter(BOARD_DAY, BOARD_DAY, statuses=frozenset({StepStatus.CANCELED})),
        BoardFilter(BOARD_DAY, BOARD_DAY, text="MÜLL", statuses=OPEN_STATUSES),
        BoardFilter(text="MÜLL"),
    ],
    ids=["default", "all", "modality", "station", "status", "text", "text-any-day"],
)
def test_the_board_reads_steps_through_indexes(sqlite_database: Database, board: BoardFilter) -> None:
    for query in (board_rows_select(board, offset=450, limit=51), board_counts_select(board)):
        found = plan(sqlite_database, query)
        assert "USING INDEX ix_scheduled_steps_" in found
        assert "SCAN scheduled_steps" not in found
