"""The radiology order model as plain data: what the adapters hand to the services (commands) and
what the services hand back (views).

An order (imaging service request) belongs to one patient and holds one or more requested
procedures; each requested procedure holds one or more scheduled procedure steps. Every step is
one Modality Worklist item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from ris.domain.status import StepStatus


@dataclass(frozen=True)
class CodedEntry:
    """A DICOM code sequence item: Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str = ""


@dataclass(frozen=True)
class Actor:
    """Who caused a change, for the audit trail: a web user, an HL7 sender, a DICOM AE, the CLI."""

    kind: str  # "user", "hl7", "dicom", "cli", "api", "system"
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Actor("system", "ris")


@dataclass(frozen=True)
class PatientData:
    patient_id: str
    issuer: str = ""
    name: str = ""  # DICOM PN, FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
    birth_date: str = ""  # DA, YYYYMMDD
    sex: str = ""  # M, F, O or ""


@dataclass(frozen=True)
class OrderData:
    accession_number: str = ""
    placer_order_number: str = ""
    filler_order_number: str = ""
    requesting_physician: str = ""
    referring_physician: str = ""
    priority: str = "ROUTINE"  # Requested Procedure Priority: STAT, HIGH, ROUTINE, MEDIUM, LOW
    reason: str = ""
    admission_id: str = ""
    patient_location: str = ""
    comments: str = ""


@dataclass(frozen=True)
class StepData:
    modality: str
    start: dt.datetime  # time-zone aware
    station_ae: str = ""
    station_name: str = ""
    sps_id: str = ""  # generated when empty
    description: str = ""
    protocol: CodedEntry | None = None
    performing_physician: str = ""
    location: str = ""


@dataclass(frozen=True)
class ProcedureData:
    steps: tuple[StepData, ...]
    requested_procedure_id: str = ""  # generated when empty
    code: CodedEntry | None = None
    description: str = ""
    study_uid: str = ""  # generated when empty


@dataclass(frozen=True)
class NewOrder:
    """Everything needed to schedule an order: the command of ``schedule_order``."""

    patient: PatientData
    order: OrderData
    procedures: tuple[ProcedureData, ...]
    # DICOM Specific Character Set of the worklist items; "" chooses the narrowest that fits.
    character_set: str = ""


@dataclass(frozen=True)
class OrderKey:
    """How an outside system names an existing order. The first non-empty key is used, in this
    order: accession number, filler order number, placer order number (+ its issuer)."""

    accession_number: str = ""
    filler_order_number: str = ""
    placer_order_number: str = ""

    def describe(self) -> str:
        parts = [
            f"{label} {value!r}"
            for label, value in (
                ("accession", self.accession_number),
                ("filler order", self.filler_order_number),
                ("placer order", self.placer_order_number),
            )
            if value
        ]
        return ", ".join(parts) or "no key"


@dataclass(frozen=True)
class StepView:
    id: int
    sps_id: str
    status: StepStatus
    modality: str
    start: dt.datetime
    station_ae: str
    station_name: str
    description: str
    protocol: CodedEntry | None
    performing_physician: str
    location: str
    version: int

    def data(self) -> StepData:
        """What was scheduled, as a command would give it (for an edit that changes part of it)."""
        return StepData(
            modality=self.modality,
            start=self.start,
            station_ae=self.station_ae,
            station_name=self.station_name,
            sps_id=self.sps_id,
            description=self.description,
            protocol=self.protocol,
            performing_physician=self.performing_physician,
            location=self.location,
        )


@dataclass(frozen=True)
class ProcedureView:
    id: int
    requested_procedure_id: str
    code: CodedEntry | None
    description: str
    study_uid: str
    steps: tuple[StepView, ...]


@dataclass(frozen=True)
class OrderView:
    id: int
    patient: PatientData
    order: OrderData
    procedures: tuple[ProcedureView, ...]
    character_set: str
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    @property
    def steps(self) -> tuple[StepView, ...]:
        return tuple(step for procedure in self.procedures for step in procedure.steps)


class AeRole(StrEnum):
    STATION = "station"  # a modality that queries the worklist and sends MPPS
    IAN_DESTINATION = "ian-destination"  # receives Instance Availability Notifications
    MPPS_FORWARD = "mpps-forward"  # receives a copy of every MPPS N-CREATE/N-SET


@dataclass(frozen=True)
class RemoteAE:
    ae_title: str
    host: str = ""  # "" = any host (only meaningful for stations)
    port: int = 0  # 0 = we never call it
    roles: frozenset[AeRole] = field(default_factory=frozenset)
    # A station with this flag sees only worklist items scheduled for its own AE title.
    own_items_only: bool = False
    description: str = ""
    id: int | None = None
