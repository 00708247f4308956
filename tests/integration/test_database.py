"""The database layer's own promises, on SQLite and on PostgreSQL: ids reserved before insert,
rows of several tables inserted together as they were given, look-ups planned for the table as
it is, and pooled connections checked after a database restart."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, insert, select, text

from ris.db import Database, after_commit, engine
from ris.db import repository as repo
from ris.db.models import AuditEvent, Hl7Message, Patient
from ris.domain.errors import AlreadyExists, StorageUnavailable


def _patient(patient_id: str, new_id: int) -> dict[str, object]:
    return {"id": new_id, "patient_id": patient_id, "issuer": "HIS", "name": "DOE^JANE", "birth_date": "", "sex": ""}


def test_reserved_ids_are_new_distinct_and_usable(database_url: str) -> None:
    db = Database(database_url)
    with db.transaction() as session:
        reserved = repo.reserve_ids(session, {Patient: 3, Hl7Message: 2, AuditEvent: 0})
        patient_ids = reserved.take(Patient, 2) + reserved.take(Patient, 1)
        assert reserved.take(AuditEvent, 0) == []
        assert len(set(reserved.take(Hl7Message, 2))) == 2
        session.connection().execute(insert(Patient), [_patient(f"N{i}", i) for i in patient_ids])
    assert len(set(patient_ids)) == 3
    with db.transaction() as session:
        later = repo.reserve_ids(session, {Patient: 2}).take(Patient, 2)
        session.connection().execute(insert(Patient), [_patient(f"L{i}", i) for i in later])
    assert len(set(later) | set(patient_ids)) == 5
    db.dispose()


def test_taking_more_ids_than_reserved_is_refused(database_url: str) -> None:
    db = Database(database_url)
    with db.transaction() as session:
        reserved = repo.reserve_ids(session, {Patient: 1})
        with pytest.raises(ValueError, match="2 ids of patients wanted, 1 reserved"):
            reserved.take(Patient, 2)
    db.dispose()


def test_rows_of_several_tables_are_inserted_together(database_url: str) -> None:
    db = Database(database_url)
    with db.transaction() as session:
        rows = repo.RowBatch()
        rows.add(Patient, [_patient("A", 1), _patient("B", 2)])
        rows.add(AuditEvent, [{"id": 1, "actor": "x", "action": "y", "details": {}}])
        rows.add(Patient, [_patient("C", 3)])
        rows.insert(session)
        rows.insert(session)  # nothing left to insert
    with db.reading() as session:
        assert session.scalars(select(Patient.patient_id).order_by(Patient.id)).all() == ["A", "B", "C"]
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
    db.dispose()


def test_a_failure_among_rows_inserted_together_fails_the_transaction(database_url: str) -> None:
    db = Database(database_url)

    def store_twice() -> None:
        with db.transaction() as session:
            rows = repo.RowBatch()
            rows.add(AuditEvent, [{"id": 1, "actor": "x", "action": "y", "details": {}}])
            rows.add(Patient, [_patient("A", 1), _patient("A", 2)])  # same patient id and issuer
            rows.insert(session)

    with pytest.raises(AlreadyExists):
        store_twice()
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 0  # nothing of it
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    db.dispose()


def test_after_commit_actions_run_only_when_the_transaction_committed(database_url: str) -> None:
    db = Database(database_url)
    ran: list[str] = []
    with db.transaction() as session:
        session.add(Patient(patient_id="C1", issuer="", name="", birth_date="", sex=""))
        after_commit(session, lambda: ran.append(f"committed, {len(ran)} before"))
        assert ran == []  # not while the transaction is open
    assert ran == ["committed, 0 before"]

    def add_the_same_patient_again() -> None:
        with db.transaction() as session:
            session.add(Patient(patient_id="C1", issuer="", name="", birth_date="", sex=""))
            after_commit(session, lambda: ran.append("rolled back"))

    with pytest.raises(AlreadyExists):
        add_the_same_patient_again()
    assert ran == ["committed, 0 before"]

    def fail() -> None:
        raise RuntimeError("after commit")

    with db.transaction() as session:  # a failing action does not make the stored change look failed
        session.add(Patient(patient_id="C2", issuer="", name="", birth_date="", sex=""))
        after_commit(session, fail)
        after_commit(session, lambda: ran.append("still run"))
    assert ran == ["committed, 0 before", "still run"]
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 2
    db.dispose()


@pytest.mark.parametrize("checked", [True, False], ids=["checked", "unchecked"])
def test_a_connection_the_server_dropped_is_replaced_when_checked(
    database_url: str, monkeypatch: pytest.MonkeyPatch, checked: bool
) -> None:
    db = Database(database_url)
    if db.is_sqlite:
        pytest.skip("SQLite has no server connections")
    with db.reading() as session:
        backend = session.scalar(text("SELECT pg_backend_pid()"))
    killer = Database(database_url)
    with killer.engine.connect() as connection:  # as a database restart would
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    killer.dispose()
    # Idle longer than the limit (checked) or not (unchecked: the pool hands out the dead connection).
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_SECONDS", 0.0 if checked else 3600.0)
    if checked:
        with db.reading() as session:
            assert session.scalar(text("SELECT pg_backend_pid()")) != backend
    else:
        with pytest.raises(StorageUnavailable), db.reading() as session:
            session.scalar(text("SELECT 1"))
    db.dispose()


def test_inserted_rows_read_back_exactly_with_their_defaults(database_url: str) -> None:
    db = Database(database_url)
    berlin = dt.datetime(2026, 3, 29, 3, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    raw = bytes(range(256)) + 'MSH|^~\\&|Müller "quoted" \\E\\'.encode()
    with db.transaction() as session:
        ids = repo.reserve_ids(session, {Hl7Message: 2, AuditEvent: 1})
        rows = repo.RowBatch()
        rows.add(
            Hl7Message,
            [
                {
                    "id": ids.take(Hl7Message, 1)[0],
                    "received_at": berlin,
                    "raw": raw,
                    "error": "Ünïcode ✓\n'",
                    "control_id": "1",
                },
                {"id": ids.take(Hl7Message, 1)[0], "received_at": berlin, "raw": b"", "error": "", "control_id": "2"},
            ],
        )
        details = {"name": "MÜLLER^JÖRG", "nested": {"list": [1, 2.5, None, True]}, "quote": 'a"b\\c'}
        rows.add(AuditEvent, [{"id": ids.take(AuditEvent, 1)[0], "actor": "x", "action": "y", "details": details}])
        rows.insert(session)
    with db.reading() as session:
        first, second = session.scalars(select(Hl7Message).order_by(Hl7Message.id)).all()
        audit = session.scalars(select(AuditEvent)).one()
    assert (first.raw, first.error, first.received_at) == (raw, "Ünïcode ✓\n'", berlin)
    assert first.received_at.utcoffset() == dt.timedelta(0)  # stored and read as UTC
    assert (second.raw, second.ack, second.ack_code, second.order_fk) == (b"", b"", "", None)  # defaults
    assert audit.details == details
    assert dt.datetime.now(dt.UTC) - audit.at < dt.timedelta(minutes=1)  # a callable default
    db.dispose()


def test_a_naive_datetime_is_refused_on_insert(database_url: str) -> None:
    db = Database(database_url)
    # SQLAlchemy's bind processing (SQLite) or the JSON encoding of the rows (PostgreSQL) refuses it.
    rows = repo.RowBatch()
    rows.add(AuditEvent, [{"id": 1, "at": dt.datetime(2026, 1, 1), "actor": "", "action": "", "details": {}}])
    with pytest.raises((ValueError, StorageUnavailable), match="naive datetime"), db.transaction() as session:
        rows.insert(session)
    db.dispose()


def test_the_patient_look_up_is_planned_at_every_call(database_url: str) -> None:
    """Not a prepared statement: its cached plan, made while the table was empty, would stay a
    sequential scan as the table grows (until the table is analyzed)."""
    db = Database(database_url)
    if db.is_sqlite:
        pytest.skip("SQLite has no plan cache across statements")
    with db.transaction() as session:
        for _ in range(10):  # more than psycopg's prepare threshold
            repo.patients_by_id(session, ["NOBODY"])
            session.execute(select(Patient.id).where(Patient.patient_id == "NOBODY"))  # for comparison
        prepared = session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert [statement for statement in prepared if "FROM patients" in statement] == [
        "SELECT patients.id \nFROM patients \nWHERE patients.patient_id = $1::VARCHAR"
    ]
    db.dispose()


def test_id_blocks_serve_most_reservations_without_a_statement(database_url: str) -> None:
    db = Database(database_url)
    listener, web = repo.IdBlocks(block=10), repo.IdBlocks(block=10)  # as two processes
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    taken: list[int] = []
    for round_ in range(6):
        with db.transaction() as session:
            for blocks, prefix in ((listener, "L"), (web, "W")):
                ids = blocks.reserve(session, {Patient: 4}).take(Patient, 4)
                session.connection().execute(insert(Patient), [_patient(f"{prefix}{round_}-{i}", i) for i in ids])
                taken += ids
    assert len(set(taken)) == 48  # distinct across both, and stored without a clash
    reservations = [sql for sql in statements if "nextval" in sql or "max(" in sql]
    # PostgreSQL: a block of 4 + 10 first, then another once 14 are used (per instance);
    # SQLite: every reservation reads the largest stored id.
    assert len(reservations) == (12 if db.is_sqlite else 4)
    db.dispose()
