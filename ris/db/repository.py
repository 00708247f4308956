"""Lookups and row <-> domain conversions used by the service layer."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ris.db.models import Order, Patient, RemoteAe, RequestedProcedure, ScheduledStep
from ris.domain.errors import NotFound
from ris.domain.model import (
    AeRole,
    CodedEntry,
    OrderData,
    OrderKey,
    OrderView,
    PatientData,
    ProcedureData,
    ProcedureView,
    RemoteAE,
    StepData,
    StepView,
)
from ris.domain.status import StepStatus
from ris.domain.values import fold_case
from ris.domain.worklist import SPS_SEQUENCE, build_item

# --- lookups ----------------------------------------------------------------------------------

_ORDER_GRAPH = (selectinload(Order.patient), selectinload(Order.procedures).selectinload(RequestedProcedure.steps))


def get_order(session: Session, order_id: int) -> Order:
    order = session.get(Order, order_id, options=_ORDER_GRAPH)
    if order is None:
        raise NotFound(f"order {order_id} does not exist")
    return order


def find_order(session: Session, key: OrderKey) -> Order | None:
    """The order named by the first non-empty part of ``key`` (see :class:`OrderKey`)."""
    for column, value in (
        (Order.accession_number, key.accession_number),
        (Order.filler_order_number, key.filler_order_number),
        (Order.placer_order_number, key.placer_order_number),
    ):
        if value:
            return session.scalars(select(Order).where(column == value).options(*_ORDER_GRAPH)).first()
    return None


def require_order(session: Session, key: OrderKey) -> Order:
    order = find_order(session, key)
    if order is None:
        raise NotFound(f"no order with {key.describe()}")
    return order


def get_step(session: Session, step_id: int) -> ScheduledStep:
    step = session.get(ScheduledStep, step_id)
    if step is None:
        raise NotFound(f"scheduled step {step_id} does not exist")
    return step


def find_patient(session: Session, patient_id: str, issuer: str) -> Patient | None:
    return session.scalars(select(Patient).where(Patient.patient_id == patient_id, Patient.issuer == issuer)).first()


def open_steps_of_patient(session: Session, patient: Patient) -> list[ScheduledStep]:
    open_statuses = [str(s) for s in StepStatus if not s.is_final]
    return list(
        session.scalars(
            select(ScheduledStep).where(ScheduledStep.patient_fk == patient.id, ScheduledStep.status.in_(open_statuses))
        )
    )


def find_remote_ae(session: Session, ae_title: str) -> RemoteAe | None:
    return session.scalars(select(RemoteAe).where(RemoteAe.ae_title == ae_title)).first()


# --- rows -> domain ---------------------------------------------------------------------------


def patient_data(patient: Patient) -> PatientData:
    return PatientData(patient.patient_id, patient.issuer, patient.name, patient.birth_date, patient.sex)


def order_data(order: Order) -> OrderData:
    return OrderData(
        accession_number=order.accession_number,
        placer_order_number=order.placer_order_number,
        filler_order_number=order.filler_order_number,
        requesting_physician=order.requesting_physician,
        referring_physician=order.referring_physician,
        priority=order.priority,
        reason=order.reason,
        admission_id=order.admission_id,
        patient_location=order.patient_location,
        comments=order.comments,
    )


def _code(value: str, scheme: str, meaning: str) -> CodedEntry | None:
    return CodedEntry(value, scheme, meaning) if value else None


def step_view(step: ScheduledStep) -> StepView:
    return StepView(
        id=step.id,
        sps_id=step.sps_id,
        status=StepStatus(step.status),
        modality=step.modality,
        start=step.start_utc,
        station_ae=step.station_ae,
        station_name=step.station_name,
        description=step.description,
        protocol=_code(step.protocol_value, step.protocol_scheme, step.protocol_meaning),
        performing_physician=step.performing_physician,
        location=step.location,
        version=step.version,
    )


def order_view(order: Order) -> OrderView:
    return OrderView(
        id=order.id,
        patient=patient_data(order.patient),
        order=order_data(order),
        procedures=tuple(
            ProcedureView(
                id=procedure.id,
                requested_procedure_id=procedure.requested_procedure_id,
                code=_code(procedure.code_value, procedure.code_scheme, procedure.code_meaning),
                description=procedure.description,
                study_uid=procedure.study_uid,
                steps=tuple(step_view(step) for step in procedure.steps),
            )
            for procedure in order.procedures
        ),
        character_set=order.character_set,
        created_at=order.created_at,
        updated_at=order.updated_at,
        version=order.version,
    )


def remote_ae_view(row: RemoteAe) -> RemoteAE:
    roles = {
        role
        for role, flag in (
            (AeRole.STATION, row.is_station),
            (AeRole.IAN_DESTINATION, row.is_ian_destination),
            (AeRole.MPPS_FORWARD, row.is_mpps_forward),
        )
        if flag
    }
    return RemoteAE(
        ae_title=row.ae_title,
        host=row.host,
        port=row.port,
        roles=frozenset(roles),
        own_items_only=row.own_items_only,
        description=row.description,
        id=row.id,
    )


# --- the worklist copy ------------------------------------------------------------------------


def step_data(step: ScheduledStep) -> StepData:
    return StepData(
        sps_id=step.sps_id,
        modality=step.modality,
        start=step.start_utc,
        station_ae=step.station_ae,
        station_name=step.station_name,
        description=step.description,
        protocol=_code(step.protocol_value, step.protocol_scheme, step.protocol_meaning),
        performing_physician=step.performing_physician,
        location=step.location,
    )


def worklist_columns(
    patient: PatientData,
    order: OrderData,
    procedure: ProcedureData,
    step: StepData,
    status: StepStatus,
    character_set: str,
    zone: ZoneInfo,
) -> dict[str, object]:
    """Every derived column of a ``scheduled_steps`` row: the copied matching keys and the item."""
    item = build_item(
        patient=patient,
        order=order,
        procedure=procedure,
        step=step,
        status=status,
        character_set=character_set,
        zone=zone,
    )
    sps = item[SPS_SEQUENCE][0]
    start_date, start_time = sps["ScheduledProcedureStepStartDate"], sps["ScheduledProcedureStepStartTime"]
    return {
        "start_date": start_date,
        "start_time": start_time,
        "start_local": start_date + start_time,
        "patient_id": patient.patient_id,
        "issuer_of_patient_id": patient.issuer,
        "patient_name": patient.name,
        "patient_name_folded": fold_case(patient.name),
        "patient_birth_date": patient.birth_date,
        "patient_sex": patient.sex,
        "accession_number": order.accession_number,
        "requested_procedure_id": procedure.requested_procedure_id,
        "study_uid": procedure.study_uid,
        "referring_physician": order.referring_physician,
        "requesting_physician": order.requesting_physician,
        "admission_id": order.admission_id,
        "priority": order.priority,
        "item": item,
    }


def refresh_worklist_row(step: ScheduledStep, zone: ZoneInfo) -> None:
    """Bring the copied columns and the item of ``step`` in line with its patient, order and
    procedure rows. Call after any change to them."""
    procedure = step.procedure
    order = procedure.order
    header = ProcedureData(
        steps=(),
        requested_procedure_id=procedure.requested_procedure_id,
        code=_code(procedure.code_value, procedure.code_scheme, procedure.code_meaning),
        description=procedure.description,
        study_uid=procedure.study_uid,
    )
    step.order = order
    step.patient = order.patient
    columns = worklist_columns(
        patient_data(order.patient),
        order_data(order),
        header,
        step_data(step),
        StepStatus(step.status),
        order.character_set,
        zone,
    )
    for name, value in columns.items():
        setattr(step, name, value)
