"""Modality Performed Procedure Step (PS3.4 F.7): statuses, attribute rules and their checks,
how an N-SET changes the stored instance, the keys that link it to scheduled steps, and the
content of the Instance Availability Notification it causes. Plain Python over DICOM JSON.

Checks follow Table F.7.2-1 for what the SCP requires (type 1): a missing attribute is
:class:`MissingAttribute`, an empty one :class:`MissingAttributeValue`, a malformed one
:class:`ValidationFailed`. Type 2 attributes are not demanded (modalities often leave them out and
refusing the step would lose it). Attributes an N-SET may not change ("Not allowed" in the table:
the scheduling, patient and start information) keep their N-CREATE value; what was sent stays in
the event history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ris.domain import values as vr
from ris.domain.dicom_json import Attribute, DicomJson, dataset, has, items, text
from ris.domain.errors import (
    FieldProblem,
    InvalidTransition,
    MissingAttribute,
    MissingAttributeValue,
    ValidationFailed,
)
from ris.domain.status import StepStatus

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
IAN_SOP_CLASS = "1.2.840.10008.5.1.4.33"


class MppsStatus(StrEnum):
    """Performed Procedure Step Status (0040,0252)."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"

    @property
    def is_final(self) -> bool:
        return self is not MppsStatus.IN_PROGRESS


# What a linked scheduled step becomes when its performed step reaches a status.
STEP_STATUS_FOR: dict[MppsStatus, StepStatus] = {
    MppsStatus.IN_PROGRESS: StepStatus.STARTED,
    MppsStatus.COMPLETED: StepStatus.COMPLETED,
    MppsStatus.DISCONTINUED: StepStatus.DISCONTINUED,
}

# --- the attributes we read ---------------------------------------------------------------------

SPECIFIC_CHARACTER_SET = Attribute("00080005", "SpecificCharacterSet", "CS")
SCHEDULED_STEP_ATTRIBUTES = Attribute("00400270", "ScheduledStepAttributesSequence", "SQ")
STUDY_INSTANCE_UID = Attribute("0020000D", "StudyInstanceUID", "UI")
ACCESSION_NUMBER = Attribute("00080050", "AccessionNumber", "SH")
REQUESTED_PROCEDURE_ID = Attribute("00401001", "RequestedProcedureID", "SH")
SCHEDULED_PROCEDURE_STEP_ID = Attribute("00400009", "ScheduledProcedureStepID", "SH")
PATIENT_NAME = Attribute("00100010", "PatientName", "PN")
PATIENT_ID = Attribute("00100020", "PatientID", "LO")
ISSUER_OF_PATIENT_ID = Attribute("00100021", "IssuerOfPatientID", "LO")
PATIENT_BIRTH_DATE = Attribute("00100030", "PatientBirthDate", "DA")
PATIENT_SEX = Attribute("00100040", "PatientSex", "CS")
REFERENCED_PATIENT_SEQUENCE = Attribute("00081120", "ReferencedPatientSequence", "SQ")
PPS_ID = Attribute("00400253", "PerformedProcedureStepID", "SH")
PERFORMED_STATION_AE_TITLE = Attribute("00400241", "PerformedStationAETitle", "AE")
PERFORMED_STATION_NAME = Attribute("00400242", "PerformedStationName", "SH")
PERFORMED_LOCATION = Attribute("00400243", "PerformedLocation", "SH")
PPS_START_DATE = Attribute("00400244", "PerformedProcedureStepStartDate", "DA")
PPS_START_TIME = Attribute("00400245", "PerformedProcedureStepStartTime", "TM")
PPS_END_DATE = Attribute("00400250", "PerformedProcedureStepEndDate", "DA")
PPS_END_TIME = Attribute("00400251", "PerformedProcedureStepEndTime", "TM")
PPS_STATUS = Attribute("00400252", "PerformedProcedureStepStatus", "CS")
MODALITY = Attribute("00080060", "Modality", "CS")
STUDY_ID = Attribute("00200010", "StudyID", "SH")
PERFORMED_SERIES = Attribute("00400340", "PerformedSeriesSequence", "SQ")
PROTOCOL_NAME = Attribute("00181030", "ProtocolName", "LO")
SERIES_INSTANCE_UID = Attribute("0020000E", "SeriesInstanceUID", "UI")
RETRIEVE_AE_TITLE = Attribute("00080054", "RetrieveAETitle", "AE")
REFERENCED_IMAGES = Attribute("00081140", "ReferencedImageSequence", "SQ")
REFERENCED_NON_IMAGES = Attribute("00400220", "ReferencedNonImageCompositeSOPInstanceSequence", "SQ")
REFERENCED_SOP_CLASS_UID = Attribute("00081150", "ReferencedSOPClassUID", "UI")
REFERENCED_SOP_INSTANCE_UID = Attribute("00081155", "ReferencedSOPInstanceUID", "UI")
# Instance Availability Notification (PS3.3 C.4.23)
REFERENCED_PPS_SEQUENCE = Attribute("00081111", "ReferencedPerformedProcedureStepSequence", "SQ")
REFERENCED_SERIES_SEQUENCE = Attribute("00081115", "ReferencedSeriesSequence", "SQ")
REFERENCED_SOP_SEQUENCE = Attribute("00081199", "ReferencedSOPSequence", "SQ")
INSTANCE_AVAILABILITY = Attribute("00080056", "InstanceAvailability", "CS")

# "Not allowed" in the N-SET column of Table F.7.2-1: fixed once the step is created.
NOT_SETTABLE: frozenset[Attribute] = frozenset(
    {
        SCHEDULED_STEP_ATTRIBUTES,
        PATIENT_NAME,
        PATIENT_ID,
        ISSUER_OF_PATIENT_ID,
        PATIENT_BIRTH_DATE,
        PATIENT_SEX,
        REFERENCED_PATIENT_SEQUENCE,
        PPS_ID,
        PERFORMED_STATION_AE_TITLE,
        PERFORMED_STATION_NAME,
        PERFORMED_LOCATION,
        PPS_START_DATE,
        PPS_START_TIME,
        MODALITY,
        STUDY_ID,
    }
)
_NOT_SETTABLE_KEYWORDS = {attribute.tag: attribute.keyword for attribute in NOT_SETTABLE}
_NOT_SETTABLE_TAGS = frozenset(_NOT_SETTABLE_KEYWORDS)

Check = Callable[[str], "str | None"]


def _no_check(_value: str) -> str | None:
    return None


# Type 1 at N-CREATE (SCP column of Table F.7.2-1), with the check of a present value.
CREATE_REQUIRED: tuple[tuple[Attribute, Check], ...] = (
    (PPS_ID, _no_check),
    (PERFORMED_STATION_AE_TITLE, vr.ae_title_problem),
    (PPS_START_DATE, vr.date_problem),
    (PPS_START_TIME, vr.time_problem),
    (MODALITY, vr.cs_problem),
)
# Type 2 attributes whose value, when one is sent, must be well formed.
OPTIONAL_CHECKED: tuple[tuple[Attribute, Check], ...] = (
    (PPS_END_DATE, vr.date_problem),
    (PPS_END_TIME, vr.time_problem),
)
# Required once the status becomes COMPLETED or DISCONTINUED ("Final State" column).
FINAL_REQUIRED: tuple[tuple[Attribute, Check], ...] = (
    (PPS_END_DATE, vr.date_problem),
    (PPS_END_TIME, vr.time_problem),
)
# Type 1 inside each Performed Series Sequence item.
SERIES_REQUIRED: tuple[tuple[Attribute, Check], ...] = (
    (PROTOCOL_NAME, _no_check),
    (SERIES_INSTANCE_UID, vr.uid_problem),
)
INSTANCE_REQUIRED: tuple[tuple[Attribute, Check], ...] = (
    (REFERENCED_SOP_CLASS_UID, vr.uid_problem),
    (REFERENCED_SOP_INSTANCE_UID, vr.uid_problem),
)


class _Problems:
    """Problems sorted by kind, raised as the most basic kind found (missing before empty before
    malformed), every problem in the message."""

    def __init__(self) -> None:
        self.missing: list[FieldProblem] = []
        self.empty: list[FieldProblem] = []
        self.invalid: list[FieldProblem] = []

    def required(self, data: DicomJson, attribute: Attribute, check: Check, prefix: str = "") -> None:
        path = prefix + attribute.keyword
        if not has(data, attribute):
            self.missing.append(FieldProblem(path, "is missing"))
        elif attribute.vr == "SQ":
            if not items(data, attribute):
                self.empty.append(FieldProblem(path, "has no item"))
        elif not text(data, attribute):
            self.empty.append(FieldProblem(path, "has no value"))
        else:
            self.checked(data, attribute, check, prefix)

    def checked(self, data: DicomJson, attribute: Attribute, check: Check, prefix: str = "") -> None:
        value = text(data, attribute)
        message = check(value) if value else None
        if message:
            self.invalid.append(FieldProblem(prefix + attribute.keyword, f"{value!r} {message}"))

    def raise_any(self) -> None:
        problems = self.missing + self.empty + self.invalid
        if self.missing:
            raise MissingAttribute(problems)
        if self.empty:
            raise MissingAttributeValue(problems)
        if self.invalid:
            raise ValidationFailed(problems)


def _check_status(data: DicomJson, problems: _Problems) -> MppsStatus | None:
    problems.required(data, PPS_STATUS, _no_check)
    value = text(data, PPS_STATUS)
    if not value:
        return None
    try:
        return MppsStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in MppsStatus)
        problems.invalid.append(FieldProblem(PPS_STATUS.keyword, f"{value!r} is not one of {allowed}"))
        return None


def _check_series(data: DicomJson, problems: _Problems) -> None:
    for index, series in enumerate(items(data, PERFORMED_SERIES)):
        prefix = f"{PERFORMED_SERIES.keyword}[{index}]."
        for attribute, check in SERIES_REQUIRED:
            problems.required(series, attribute, check, prefix)
        problems.checked(series, RETRIEVE_AE_TITLE, vr.ae_title_problem, prefix)
        for sequence in (REFERENCED_IMAGES, REFERENCED_NON_IMAGES):
            for number, instance in enumerate(items(series, sequence)):
                for attribute, check in INSTANCE_REQUIRED:
                    problems.required(instance, attribute, check, f"{prefix}{sequence.keyword}[{number}].")


def check_create(attributes: DicomJson) -> MppsStatus:
    """Check an N-CREATE attribute list; return its status (always IN PROGRESS) or raise."""
    problems = _Problems()
    status = _check_status(attributes, problems)
    if status is not None and status is not MppsStatus.IN_PROGRESS:
        problems.invalid.append(
            FieldProblem(PPS_STATUS.keyword, f"{status.value!r}: a performed procedure step starts IN PROGRESS")
        )
    problems.required(attributes, SCHEDULED_STEP_ATTRIBUTES, _no_check)
    for index, reference in enumerate(items(attributes, SCHEDULED_STEP_ATTRIBUTES)):
        problems.required(
            reference, STUDY_INSTANCE_UID, vr.uid_problem, f"{SCHEDULED_STEP_ATTRIBUTES.keyword}[{index}]."
        )
    for attribute, check in CREATE_REQUIRED:
        problems.required(attributes, attribute, check)
    for attribute, check in OPTIONAL_CHECKED:
        problems.checked(attributes, attribute, check)
    _check_series(attributes, problems)
    problems.raise_any()
    return MppsStatus.IN_PROGRESS


@dataclass(frozen=True)
class SetOutcome:
    """What an accepted N-SET does: the new current attributes and status, and the attributes
    it sent that an N-SET may not change (kept at their N-CREATE value)."""

    attributes: DicomJson
    status: MppsStatus
    ignored: tuple[str, ...]


def apply_set(current: DicomJson, current_status: MppsStatus, modification: DicomJson) -> SetOutcome:
    """Apply an N-SET modification list to the stored attributes, or raise.

    A step already COMPLETED or DISCONTINUED is final: :class:`InvalidTransition` (0110 "may no
    longer be updated"). Sequences are replaced whole, as N-SET replaces attribute values."""
    if current_status.is_final:
        raise InvalidTransition(
            f"Performed Procedure Step Object may no longer be updated: it is {current_status.value}"
        )
    problems = _Problems()
    status = _check_status(modification, problems) if has(modification, PPS_STATUS) else current_status
    for attribute, check in OPTIONAL_CHECKED:
        problems.checked(modification, attribute, check)
    _check_series(modification, problems)
    ignored = tuple(sorted(keyword_of(tag) for tag in modification if tag in _NOT_SETTABLE_TAGS))
    merged = {**current, **{tag: value for tag, value in modification.items() if tag not in _NOT_SETTABLE_TAGS}}
    if status is not None and status.is_final:
        for attribute, check in FINAL_REQUIRED:
            problems.required(merged, attribute, check)
        if status is MppsStatus.COMPLETED:
            problems.required(merged, PERFORMED_SERIES, _no_check)
    problems.raise_any()
    assert status is not None  # an unreadable status was reported above
    return SetOutcome(merged, status, ignored)


def status_of(attributes: DicomJson) -> str:
    """The Performed Procedure Step Status of an attribute list ("" when it sets none)."""
    return text(attributes, PPS_STATUS)


def keyword_of(tag: str) -> str:
    return _NOT_SETTABLE_KEYWORDS.get(tag, f"({tag[:4]},{tag[4:]})")


# --- linking to scheduled steps ----------------------------------------------------------------


@dataclass(frozen=True)
class StepReference:
    """One item of the Scheduled Step Attributes Sequence: what the modality says it performed."""

    study_uid: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""


def step_references(attributes: DicomJson) -> tuple[StepReference, ...]:
    return tuple(
        StepReference(
            study_uid=text(item, STUDY_INSTANCE_UID),
            accession_number=text(item, ACCESSION_NUMBER),
            requested_procedure_id=text(item, REQUESTED_PROCEDURE_ID),
            sps_id=text(item, SCHEDULED_PROCEDURE_STEP_ID),
        )
        for item in items(attributes, SCHEDULED_STEP_ATTRIBUTES)
    )


# Tried in this order for each reference; a rule applies when all its keys have a value, and links
# when exactly one scheduled step matches all of them. Study UID + SPS ID is the worklist's own
# unique key; the others cover modalities that make up their own Study UID or leave the SPS ID out.
LINK_RULES: tuple[tuple[str, ...], ...] = (
    ("study_uid", "sps_id"),
    ("accession_number", "sps_id"),
    ("accession_number", "requested_procedure_id"),
    ("study_uid",),
    ("accession_number",),
)


def link_keys(reference: StepReference) -> list[dict[str, str]]:
    """The key sets to look a reference up by, most specific first (see :data:`LINK_RULES`)."""
    return [
        {key: getattr(reference, key) for key in rule}
        for rule in LINK_RULES
        if all(getattr(reference, key) for key in rule)
    ]


# --- summary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MppsSummary:
    """The identifiers of a performed step that are shown and logged (no patient data)."""

    study_uid: str
    accession_number: str
    modality: str
    pps_id: str
    station_ae: str
    start: str  # DICOM date + time as sent, e.g. 20261123093000
    end: str
    series_count: int
    instance_count: int


def summarize(attributes: DicomJson) -> MppsSummary:
    references = step_references(attributes)
    series = items(attributes, PERFORMED_SERIES)
    return MppsSummary(
        study_uid=references[0].study_uid if references else "",
        accession_number=next((r.accession_number for r in references if r.accession_number), ""),
        modality=text(attributes, MODALITY),
        pps_id=text(attributes, PPS_ID),
        station_ae=text(attributes, PERFORMED_STATION_AE_TITLE),
        start=text(attributes, PPS_START_DATE) + text(attributes, PPS_START_TIME),
        end=text(attributes, PPS_END_DATE) + text(attributes, PPS_END_TIME),
        series_count=len(series),
        instance_count=sum(len(_instances(item)) for item in series),
    )


@dataclass(frozen=True)
class LinkedStep:
    """A scheduled step a performed step reports on."""

    step_id: int
    sps_id: str
    order_id: int
    accession_number: str
    status: StepStatus
    linked_by: str  # the modality's AE (dicom:CT_1) or who reconciled it (user:anna)
    linked_at: dt.datetime


@dataclass(frozen=True)
class MppsView:
    id: int
    sop_instance_uid: str
    status: MppsStatus
    calling_ae: str
    summary: MppsSummary
    links: tuple[LinkedStep, ...]
    attributes: DicomJson  # the current state: N-CREATE merged with every N-SET
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @property
    def is_unscheduled(self) -> bool:
        return not self.links


@dataclass(frozen=True)
class MppsEvent:
    """One N-CREATE or N-SET as received."""

    id: int
    kind: str  # N-CREATE, N-SET
    calling_ae: str
    received_at: dt.datetime
    attributes: DicomJson


def _instances(series: DicomJson) -> list[DicomJson]:
    return items(series, REFERENCED_IMAGES) + items(series, REFERENCED_NON_IMAGES)


# --- Instance Availability Notification ------------------------------------------------------------


def ian_attributes(mpps_uid: str, attributes: DicomJson, fallback_retrieve_ae: str) -> DicomJson | None:
    """The IAN attribute list (PS3.3 C.4.23) for a COMPLETED step: which instances of which
    series of the study are ONLINE and where to retrieve them. No patient data. ``None`` when
    the step references no instance (nothing became available)."""
    series_items = []
    for series in items(attributes, PERFORMED_SERIES):
        retrieve_ae = text(series, RETRIEVE_AE_TITLE) or fallback_retrieve_ae
        instances = [
            dataset(
                (REFERENCED_SOP_CLASS_UID, text(instance, REFERENCED_SOP_CLASS_UID)),
                (REFERENCED_SOP_INSTANCE_UID, text(instance, REFERENCED_SOP_INSTANCE_UID)),
                (INSTANCE_AVAILABILITY, "ONLINE"),
                (RETRIEVE_AE_TITLE, [retrieve_ae] if retrieve_ae else []),
            )
            for instance in _instances(series)
        ]
        if instances:
            series_items.append(
                dataset((SERIES_INSTANCE_UID, text(series, SERIES_INSTANCE_UID)), (REFERENCED_SOP_SEQUENCE, instances))
            )
    if not series_items:
        return None
    references = step_references(attributes)
    return dataset(
        (
            REFERENCED_PPS_SEQUENCE,
            [dataset((REFERENCED_SOP_CLASS_UID, MPPS_SOP_CLASS), (REFERENCED_SOP_INSTANCE_UID, mpps_uid))],
        ),
        (STUDY_INSTANCE_UID, references[0].study_uid if references else ""),
        (REFERENCED_SERIES_SEQUENCE, series_items),
    )
