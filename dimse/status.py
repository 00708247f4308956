"""The ONE table from domain errors to DIMSE statuses, per DIMSE operation.

A handler that catches a :class:`DomainError` answers :func:`failure_status`; it never answers
success for something that was not done. The most specific error class in the table wins
(:class:`DomainError` itself is the fallback of each operation).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from ris.domain.errors import (
    AlreadyExists,
    DomainError,
    InvalidTransition,
    MissingAttribute,
    MissingAttributeValue,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)

C_FIND = "C-FIND"
N_CREATE = "N-CREATE"
N_SET = "N-SET"

# PS3.4 K.4.1.1.4 (Table K.4-1) for the worklist C-FIND.
#   A900 Identifier does not match SOP Class: a key the SCU sent cannot be used as given.
#   C311 Unable to process (the code pynetdicom uses for a handler failure): the database failed;
#        the scanner must not take an empty list for "nothing scheduled".
#   C000 Unable to process: any other domain error.
#
# PS3.4 F.7.2 and PS3.7 C for MPPS N-CREATE / N-SET:
#   0111 Duplicate SOP instance: an N-CREATE for a performed step we already have.
#   0112 No such object instance: an N-SET for one we do not have.
#   0120 / 0121 Missing attribute / missing attribute value: a type 1 attribute absent / empty.
#   0106 Invalid attribute value: a malformed value, or a status the state machine does not start with.
#   0110 Processing failure: N-SET on a COMPLETED or DISCONTINUED step (Table F.7.2-2, with Error
#        ID A710), the database failed, or any other domain error; never success.
_MPPS_COMMON: dict[type[DomainError], int] = {
    MissingAttribute: 0x0120,
    MissingAttributeValue: 0x0121,
    ValidationFailed: 0x0106,
    StorageUnavailable: 0x0110,
    DomainError: 0x0110,
}
STATUS_TABLE: dict[str, dict[type[DomainError], int]] = {
    C_FIND: {ValidationFailed: 0xA900, StorageUnavailable: 0xC311, DomainError: 0xC000},
    N_CREATE: {AlreadyExists: 0x0111, **_MPPS_COMMON},
    N_SET: {NotFound: 0x0112, InvalidTransition: 0x0110, **_MPPS_COMMON},
}
# Error ID (0000,0903) of a failure, where the standard defines one.
ERROR_IDS: dict[str, dict[type[DomainError], int]] = {N_SET: {InvalidTransition: 0xA710}}

# C-FIND: more items matched than the result cap (see dimse.mwl for why this code).
RESULT_CAP_STATUS = 0xA700

# Error Comment (0000,0902) is LO: at most 64 characters.
ERROR_COMMENT_LENGTH = 64


def status_code(operation: str, error: DomainError) -> int:
    table = STATUS_TABLE[operation]
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    raise LookupError(
        f"no {operation} status for {type(error).__name__}"
    )  # pragma: no cover - DomainError is in every row


def status_dataset(code: int, comment: str = "") -> Dataset:
    """A status for a handler to yield/return, with an Error Comment when there is one."""
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = error_comment(comment)
    return status


def failure_status(operation: str, error: DomainError, comment: str | None = None) -> Dataset:
    status = status_dataset(status_code(operation, error), str(error) if comment is None else comment)
    error_id = ERROR_IDS.get(operation, {}).get(type(error))
    if error_id is not None:
        status.ErrorID = error_id
    return status


def error_comment(text: str) -> str:
    """``text`` made fit for Error Comment: one line, the default repertoire, 64 characters."""
    plain = " ".join(text.split()).encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return plain if len(plain) <= ERROR_COMMENT_LENGTH else plain[: ERROR_COMMENT_LENGTH - 3] + "..."
