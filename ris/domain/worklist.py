"""Modality Worklist items and the typed query over them.

An item is the full C-FIND response content of one scheduled procedure step, kept as a plain
mapping from DICOM keyword to value: text values as strings in their DICOM form (multi-valued ones
joined with ``\\``), sequences as lists of such mappings. The DICOM adapter turns it into a
dataset; the database keeps it as JSON next to indexed columns for the matching keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ris.domain.model import CodedEntry, OrderData, PatientData, ProcedureData, StepData
from ris.domain.status import StepStatus
from ris.domain.values import normalize_person_name as pn

Item = dict[str, Any]

SPS_SEQUENCE = "ScheduledProcedureStepSequence"


def local_date_time(start: dt.datetime, zone: ZoneInfo) -> tuple[str, str]:
    """SPS Start Date and Time (DA, TM) as the modality shows them: in the site's local time."""
    local = start.astimezone(zone)
    return f"{local.year:04d}{local.month:02d}{local.day:02d}", f"{local.hour:02d}{local.minute:02d}{local.second:02d}"


def _code_sequence(code: CodedEntry | None) -> list[Item]:
    if code is None:
        return []
    return [{"CodeValue": code.value, "CodingSchemeDesignator": code.scheme, "CodeMeaning": code.meaning}]


def build_item(
    *,
    patient: PatientData,
    order: OrderData,
    procedure: ProcedureData,
    step: StepData,
    status: StepStatus,
    character_set: str,
    zone: ZoneInfo,
) -> Item:
    """The worklist item (Table K.6-1 attributes and the request/order context we hold).
    ``procedure.steps`` is not read: ``step`` is the one step this item is about. Person names are
    kept without insignificant trailing separators, so matching compares like with like."""
    start_date, start_time = local_date_time(step.start, zone)
    return {
        "SpecificCharacterSet": character_set,
        "PatientName": pn(patient.name),
        "PatientID": patient.patient_id,
        "IssuerOfPatientID": patient.issuer,
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
        "AccessionNumber": order.accession_number,
        "ReferringPhysicianName": pn(order.referring_physician),
        "RequestingPhysician": pn(order.requesting_physician),
        "PlacerOrderNumberImagingServiceRequest": order.placer_order_number,
        "FillerOrderNumberImagingServiceRequest": order.filler_order_number,
        "ReasonForTheRequestedProcedure": order.reason,
        "RequestedProcedureComments": order.comments,
        "AdmissionID": order.admission_id,
        "CurrentPatientLocation": order.patient_location,
        "RequestedProcedureID": procedure.requested_procedure_id,
        "RequestedProcedureDescription": procedure.description,
        "RequestedProcedureCodeSequence": _code_sequence(procedure.code),
        "RequestedProcedurePriority": order.priority,
        "StudyInstanceUID": procedure.study_uid,
        "ReferencedStudySequence": [],
        "ReferencedPatientSequence": [],
        SPS_SEQUENCE: [
            {
                "Modality": step.modality,
                "ScheduledStationAETitle": step.station_ae,
                "ScheduledStationName": step.station_name,
                "ScheduledProcedureStepStartDate": start_date,
                "ScheduledProcedureStepStartTime": start_time,
                "ScheduledPerformingPhysicianName": pn(step.performing_physician),
                "ScheduledProcedureStepDescription": step.description,
                "ScheduledProtocolCodeSequence": _code_sequence(step.protocol),
                "ScheduledProcedureStepID": step.sps_id,
                "ScheduledProcedureStepLocation": step.location,
                "ScheduledProcedureStepStatus": str(status),
            }
        ],
    }


# --- the typed query --------------------------------------------------------------------------
# One criterion per matching key of a C-FIND identifier (PS3.4 C.2.2.2). Attributes inside the SPS
# sequence are named "ScheduledProcedureStepSequence.Modality"; the combined SPS start date and
# time (PS3.4 C.2.2.2.5) is the pseudo attribute START_DATETIME.

START_DATETIME = "ScheduledProcedureStepSequence.StartDateTime"
SPS_START_DATE = "ScheduledProcedureStepSequence.ScheduledProcedureStepStartDate"
SPS_START_TIME = "ScheduledProcedureStepSequence.ScheduledProcedureStepStartTime"

# Attributes that can be matched without regard to case (Criterion.case_insensitive): Patient's
# Name has a folded copy, Modality is stored in upper case (its defined terms are).
CASE_FOLDABLE_ATTRIBUTES = frozenset({"PatientName", "ScheduledProcedureStepSequence.Modality"})


def is_universal_pattern(pattern: str) -> bool:
    """``*`` (or ``**``...) alone matches everything, like an empty key (PS3.4 C.2.2.2.3)."""
    return pattern.strip("*") == ""


@dataclass(frozen=True)
class SingleValue:
    value: str


@dataclass(frozen=True)
class Wildcard:
    """``*`` matches any run of characters, ``?`` exactly one."""

    pattern: str


@dataclass(frozen=True)
class Range:
    """Inclusive range in the attribute's own text form (DA ``YYYYMMDD``, TM ``HHMMSS``, DT
    ``YYYYMMDDHHMMSS``); ``None`` leaves that end open."""

    low: str | None
    high: str | None


@dataclass(frozen=True)
class AnyOf:
    """List of UID matching: the value is one of these."""

    values: tuple[str, ...]


Matcher = SingleValue | Wildcard | Range | AnyOf


@dataclass(frozen=True)
class Criterion:
    attribute: str
    matcher: Matcher
    case_insensitive: bool = False  # only for CASE_FOLDABLE_ATTRIBUTES


@dataclass(frozen=True)
class WorklistQuery:
    criteria: tuple[Criterion, ...] = ()
    # Items in a final status (COMPLETED, DISCONTINUED, CANCELED) are hidden unless asked for.
    include_final: bool = False
    # Per-station restriction: only items scheduled for this AE title (Remote AE flag).
    restrict_to_station: str | None = None
    limit: int | None = None
    statuses: frozenset[StepStatus] = field(default_factory=frozenset)  # empty = all (but see include_final)
