"""The domain error -> DIMSE status table."""

from __future__ import annotations

import pytest

from dimse.status import C_FIND, N_CREATE, N_SET, STATUS_TABLE, error_comment, failure_status, status_code
from ris.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    FieldProblem,
    InvalidTransition,
    MissingAttribute,
    MissingAttributeValue,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)

PROBLEM = [FieldProblem("Modality", "is missing")]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationFailed([FieldProblem("PatientID", "bad")]), 0xA900),
        (StorageUnavailable("database down"), 0xC311),
        (NotFound("x"), 0xC000),
        (AlreadyExists("x"), 0xC000),
        (DomainError("x"), 0xC000),
    ],
)
def test_c_find_statuses(error: DomainError, code: int) -> None:
    assert status_code(C_FIND, error) == code


def test_every_operation_has_a_fallback_and_never_success() -> None:
    for operation, table in STATUS_TABLE.items():
        assert DomainError in table, operation
        assert all(code not in (0x0000, 0xFF00, 0xFF01) for code in table.values()), operation


def test_failure_status_carries_a_fitting_error_comment() -> None:
    status = failure_status(C_FIND, StorageUnavailable("the database cannot be read: disk I/O error\nat line 3"))
    assert status.Status == 0xC311
    assert status.ErrorComment == "the database cannot be read: disk I/O error at line 3"
    assert len(error_comment("x" * 100)) == 64
    assert error_comment("Müller \\ x") == "M?ller / x"


@pytest.mark.parametrize(
    ("operation", "error", "code"),
    [
        (N_CREATE, AlreadyExists("x"), 0x0111),
        (N_CREATE, MissingAttribute(PROBLEM), 0x0120),
        (N_CREATE, MissingAttributeValue(PROBLEM), 0x0121),
        (N_CREATE, ValidationFailed(PROBLEM), 0x0106),
        (N_CREATE, StorageUnavailable("down"), 0x0110),
        (N_CREATE, ConcurrentUpdate("x"), 0x0110),
        (N_SET, NotFound("x"), 0x0112),
        (N_SET, InvalidTransition("may no longer be updated"), 0x0110),
        (N_SET, MissingAttribute(PROBLEM), 0x0120),
        (N_SET, MissingAttributeValue(PROBLEM), 0x0121),
        (N_SET, ValidationFailed(PROBLEM), 0x0106),
        (N_SET, StorageUnavailable("down"), 0x0110),
        (N_SET, AlreadyExists("x"), 0x0110),
    ],
)
def test_mpps_statuses(operation: str, error: DomainError, code: int) -> None:
    assert status_code(operation, error) == code


def test_a_final_step_answers_with_the_error_id_of_table_f_7_2_2() -> None:
    status = failure_status(N_SET, InvalidTransition("Performed Procedure Step Object may no longer be updated"))
    assert (status.Status, status.ErrorID) == (0x0110, 0xA710)
    assert "ErrorID" not in failure_status(N_SET, StorageUnavailable("down"))
