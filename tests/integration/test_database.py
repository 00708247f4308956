"""The database layer's own promises, on SQLite and on PostgreSQL: ids reserved before insert,
statements sent together, and pooled connections checked after a database restart."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, text

from ris.db import Database, engine
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


def test_statements_sent_together_are_stored(database_url: str) -> None:
    db = Database(database_url)
    with db.transaction() as session, db.sent_together(session):
        session.connection().execute(insert(Patient), [_patient("A", 1), _patient("B", 2)])
        session.connection().execute(insert(Patient), [_patient("C", 3)])
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 3
    db.dispose()


def test_a_failure_among_statements_sent_together_fails_the_transaction(database_url: str) -> None:
    db = Database(database_url)

    def store_twice() -> None:
        with db.transaction() as session, db.sent_together(session):
            session.connection().execute(insert(Patient), [_patient("A", 1)])
            session.connection().execute(insert(Patient), [_patient("A", 2)])  # same patient id and issuer
            session.connection().execute(insert(Patient), [_patient("B", 3)])

    with pytest.raises(AlreadyExists):
        store_twice()
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 0  # nothing of it
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
