"""A :class:`WorklistQuery` as ONE parameterised SQL statement on ``scheduled_steps``.

Matching keys with their own indexed column use it; any other attribute is read from the item JSON
(``json_extract`` on SQLite, ``#>>`` on PostgreSQL). Values are always bound parameters; the
LIKE patterns escape ``%``, ``_`` and ``\\`` so only DICOM's ``*`` and ``?`` act as wildcards.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.orm import InstrumentedAttribute

from ris.db.models import ScheduledStep
from ris.domain.status import FINAL_STATUSES
from ris.domain.values import fold_case
from ris.domain.worklist import (
    SPS_SEQUENCE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Matcher,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
)

_SPS = SPS_SEQUENCE + "."

# DICOM keyword (path) -> indexed column holding the same value.
INDEXED_ATTRIBUTES: dict[str, InstrumentedAttribute[str]] = {
    "PatientName": ScheduledStep.patient_name,
    "PatientID": ScheduledStep.patient_id,
    "IssuerOfPatientID": ScheduledStep.issuer_of_patient_id,
    "PatientBirthDate": ScheduledStep.patient_birth_date,
    "PatientSex": ScheduledStep.patient_sex,
    "AccessionNumber": ScheduledStep.accession_number,
    "RequestedProcedureID": ScheduledStep.requested_procedure_id,
    "StudyInstanceUID": ScheduledStep.study_uid,
    "ReferringPhysicianName": ScheduledStep.referring_physician,
    "RequestingPhysician": ScheduledStep.requesting_physician,
    "AdmissionID": ScheduledStep.admission_id,
    "RequestedProcedurePriority": ScheduledStep.priority,
    _SPS + "Modality": ScheduledStep.modality,
    _SPS + "ScheduledStationAETitle": ScheduledStep.station_ae,
    _SPS + "ScheduledStationName": ScheduledStep.station_name,
    _SPS + "ScheduledProcedureStepStartDate": ScheduledStep.start_date,
    _SPS + "ScheduledProcedureStepStartTime": ScheduledStep.start_time,
    START_DATETIME: ScheduledStep.start_local,
    _SPS + "ScheduledPerformingPhysicianName": ScheduledStep.performing_physician,
    _SPS + "ScheduledProcedureStepID": ScheduledStep.sps_id,
    _SPS + "ScheduledProcedureStepLocation": ScheduledStep.location,
    _SPS + "ScheduledProcedureStepStatus": ScheduledStep.status,
}
# Case-insensitive matching compares folded text (ris.domain.values.fold_case) on both sides.
FOLDED_ATTRIBUTES: dict[str, InstrumentedAttribute[str]] = {"PatientName": ScheduledStep.patient_name_folded}


def _json_value(path: str) -> ColumnElement[str]:
    """The text of an item attribute; inside a sequence, of its first item (the worklist keeps
    one item in each sequence it matches on)."""
    steps: list[str | int] = []
    for part in path.split("."):
        if steps:
            steps.append(0)
        steps.append(part)
    element = ScheduledStep.item[tuple(steps)] if len(steps) > 1 else ScheduledStep.item[steps[0]]
    text: ColumnElement[str] = element.as_string()
    return text


def _like_pattern(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _condition(
    column: ColumnElement[str] | InstrumentedAttribute[str], matcher: Matcher, fold: bool
) -> ColumnElement[bool] | None:
    def norm(value: str) -> str:
        return fold_case(value) if fold else value

    match matcher:
        case SingleValue(value):
            return column == norm(value)
        case Wildcard(pattern):
            if pattern.strip("*") == "":
                return None  # "*" alone matches everything, like a universal key
            return column.like(_like_pattern(norm(pattern)), escape="\\")
        case Range(low, high):
            parts = [column != ""]  # an empty value is outside every range
            if low:
                parts.append(column >= low)
            if high:
                parts.append(column <= high)
            return and_(*parts)
        case AnyOf(values):
            return column.in_([norm(v) for v in values])
    raise TypeError(f"unknown matcher {matcher!r}")  # pragma: no cover - exhaustive above


def criterion_condition(criterion: Criterion) -> ColumnElement[bool] | None:
    folded = FOLDED_ATTRIBUTES.get(criterion.attribute) if criterion.case_insensitive else None
    if folded is not None:
        return _condition(folded, criterion.matcher, fold=True)
    column = INDEXED_ATTRIBUTES.get(criterion.attribute)
    return _condition(column if column is not None else _json_value(criterion.attribute), criterion.matcher, fold=False)


def worklist_select(query: WorklistQuery) -> Select[tuple[int, str, dict[str, object]]]:
    """Rows (id, status, item) of the matching steps, by start time; one more than ``limit`` so
    the caller can tell a cut list from a complete one."""
    conditions = [c for c in map(criterion_condition, query.criteria) if c is not None]
    if query.statuses:
        conditions.append(ScheduledStep.status.in_(sorted(query.statuses)))
    elif not query.include_final:
        conditions.append(ScheduledStep.status.not_in(sorted(FINAL_STATUSES)))
    if query.restrict_to_station is not None:
        conditions.append(ScheduledStep.station_ae == query.restrict_to_station)
    statement = (
        select(ScheduledStep.id, ScheduledStep.status, ScheduledStep.item)
        .where(*conditions)
        .order_by(ScheduledStep.start_local, ScheduledStep.id)
    )
    if query.limit is not None:
        statement = statement.limit(query.limit + 1)
    return statement
