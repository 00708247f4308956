"""The domain error -> DIMSE status table."""

from __future__ import annotations

import pytest

from dimse.status import C_FIND, STATUS_TABLE, error_comment, failure_status, status_code
from ris.domain.errors import (
    AlreadyExists,
    DomainError,
    FieldProblem,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)


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
