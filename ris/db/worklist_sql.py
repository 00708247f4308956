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
    CASE_FOLDABLE_ATTRIBUTES,
    SPS_SEQUENCE,
    SPS_START_DATE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Matcher,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
    is_universal_pattern,
)

_SPS = SPS_SEQUENCE + "."

# DICOM keyword (path) -> the column holding a copy of the same value (indexed where scanners'
# queries need it, see ScheduledStep.__table_args__); other attributes are read from the item JSON.
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
# A copy whose index narrows the search for an attribute: the folded name holds every name the
# exact one does (folding is character by character), so exact matching adds the folded condition
# to use its index, and case-insensitive matching needs nothing else.
FOLDED_ATTRIBUTES: dict[str, InstrumentedAttribute[str]] = {"PatientName": ScheduledStep.patient_name_folded}
# The SPS start date is matched on the local start date-time, so one family of (key, start_local)
# indexes serves a date, a date range and a combined date-time range.
_DAY_START, _DAY_END = "000000", "235959"


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
) -> ColumnElement[bool]:
    def norm(value: str) -> str:
        return fold_case(value) if fold else value

    match matcher:
        case SingleValue(value):
            return column == norm(value)
        case Wildcard(pattern):
            return column.like(_like_pattern(norm(pattern)), escape="\\")
        case Range(low, high):
            parts = [column != ""]  # an empty value is outside every range
            if low:
                parts.append(column >= low)
            if high:
                parts.append(column <= high)
            return and_(*parts)
        case AnyOf(values):
            return column.in_(sorted({norm(v) for v in values}))
    raise TypeError(f"unknown matcher {matcher!r}")  # pragma: no cover - exhaustive above


def _start_date_condition(matcher: Matcher) -> ColumnElement[bool]:
    match matcher:
        case SingleValue(day):
            return _condition(ScheduledStep.start_local, Range(day + _DAY_START, day + _DAY_END), fold=False)
        case Range(low, high):
            return _condition(
                ScheduledStep.start_local,
                Range(low and low + _DAY_START, high and high + _DAY_END),
                fold=False,
            )
    return _condition(ScheduledStep.start_date, matcher, fold=False)


def criterion_condition(criterion: Criterion) -> ColumnElement[bool] | None:
    """The SQL condition of one criterion; ``None`` for one that matches everything."""
    matcher, attribute = criterion.matcher, criterion.attribute
    if isinstance(matcher, Wildcard) and is_universal_pattern(matcher.pattern):
        return None
    if criterion.case_insensitive and attribute not in CASE_FOLDABLE_ATTRIBUTES:
        raise ValueError(f"{attribute} cannot be matched without regard to case")
    if attribute == SPS_START_DATE:
        return _start_date_condition(matcher)
    folded = FOLDED_ATTRIBUTES.get(attribute)
    if folded is not None and not isinstance(matcher, Range):
        narrowed = _condition(folded, matcher, fold=True)
        return (
            narrowed
            if criterion.case_insensitive
            else and_(narrowed, _condition(INDEXED_ATTRIBUTES[attribute], matcher, fold=False))
        )
    column = INDEXED_ATTRIBUTES.get(attribute)
    return _condition(
        column if column is not None else _json_value(attribute), matcher, fold=criterion.case_insensitive
    )


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
