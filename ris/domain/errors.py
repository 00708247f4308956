"""Domain errors. Each protocol adapter maps them to its own status with ONE table."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error the service layer raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One invalid input: ``field`` is a dotted path into the command (``patient.name``,
    ``procedures[0].steps[1].modality``); adapters translate it to a segment/field or form field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationFailed(DomainError):
    """The input cannot be stored as given. Carries every problem found, not only the first."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class MissingAttribute(ValidationFailed):
    """A required attribute is absent from the input (DICOM: type 1 attribute not sent)."""


class MissingAttributeValue(ValidationFailed):
    """A required attribute is present but empty (DICOM: type 1 attribute sent without a value)."""


class NotFound(DomainError):
    """The thing addressed (order, step, remote AE, ...) does not exist."""


class AlreadyExists(DomainError):
    """A unique key (accession number, study UID + SPS ID, AE title, ...) is already taken."""


class InvalidTransition(DomainError):
    """A status change the state machine does not allow."""


class ConcurrentUpdate(DomainError):
    """The row changed since it was read (optimistic version check); reload and try again."""


class StorageUnavailable(DomainError):
    """The database could not be reached or refused the transaction. Nothing was stored."""
