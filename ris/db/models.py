"""Tables and mappings (SQLAlchemy 2.0 typed declarative).

The worklist table ``scheduled_steps`` repeats the patient and order values that are matching keys
(DESIGN §4): a C-FIND becomes one indexed query on one table, and the whole item is kept as JSON
so any attribute can be returned. The service layer keeps the copies in step with the patient and
order rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every engine (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _code(length: int) -> String:
    """Text compared byte-wise on every engine: DICOM matching is exact and case-sensitive, and on
    PostgreSQL the "C" collation lets LIKE 'ABC%' and ranges use a plain B-tree index."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


JsonDocument = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JsonDocument}


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Patient(Timestamped, Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(_code(64))
    issuer: Mapped[str] = mapped_column(_code(64), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(1), default="")
    # ADT^A40: the record was merged into another; kept so old messages still resolve.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    orders: Mapped[list[Order]] = relationship(back_populates="patient")

    __table_args__ = (UniqueConstraint("patient_id", "issuer"),)
    __mapper_args__ = {"version_id_col": version}


class Order(Timestamped, Base):
    """An imaging service request."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    accession_number: Mapped[str] = mapped_column(_code(16), default="")
    placer_order_number: Mapped[str] = mapped_column(_code(64), default="", index=True)
    filler_order_number: Mapped[str] = mapped_column(_code(64), default="", index=True)
    requesting_physician: Mapped[str] = mapped_column(String(200), default="")
    referring_physician: Mapped[str] = mapped_column(String(200), default="")
    priority: Mapped[str] = mapped_column(String(16), default="ROUTINE")
    reason: Mapped[str] = mapped_column(String(64), default="")
    admission_id: Mapped[str] = mapped_column(String(64), default="")
    patient_location: Mapped[str] = mapped_column(String(64), default="")
    comments: Mapped[str] = mapped_column(Text, default="")
    character_set: Mapped[str] = mapped_column(String(64), default="ISO_IR 100")
    source: Mapped[str] = mapped_column(String(80), default="")  # who created it, e.g. hl7:HIS/KLINIKUM
    version: Mapped[int] = mapped_column(Integer, default=1)

    patient: Mapped[Patient] = relationship(back_populates="orders")
    procedures: Mapped[list[RequestedProcedure]] = relationship(
        back_populates="order", order_by="RequestedProcedure.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # An accession number names one order; orders without one are allowed (DICOM type 2).
        Index(
            "uq_orders_accession_number",
            "accession_number",
            unique=True,
            sqlite_where=text("accession_number <> ''"),
            postgresql_where=text("accession_number <> ''"),
        ),
    )
    __mapper_args__ = {"version_id_col": version}


class RequestedProcedure(Base):
    __tablename__ = "requested_procedures"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_fk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    requested_procedure_id: Mapped[str] = mapped_column(_code(16))
    code_value: Mapped[str] = mapped_column(String(16), default="")
    code_scheme: Mapped[str] = mapped_column(String(16), default="")
    code_meaning: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    study_uid: Mapped[str] = mapped_column(_code(64), unique=True)

    order: Mapped[Order] = relationship(back_populates="procedures")
    steps: Mapped[list[ScheduledStep]] = relationship(
        back_populates="procedure", order_by="ScheduledStep.id", cascade="all, delete-orphan"
    )


class ScheduledStep(Timestamped, Base):
    """One Scheduled Procedure Step = one Modality Worklist item."""

    __tablename__ = "scheduled_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_fk: Mapped[int] = mapped_column(ForeignKey("requested_procedures.id"), index=True)
    order_fk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="SCHEDULED")
    # The step's own values.
    sps_id: Mapped[str] = mapped_column(_code(16))
    modality: Mapped[str] = mapped_column(_code(16))
    station_ae: Mapped[str] = mapped_column(_code(16), default="")
    station_name: Mapped[str] = mapped_column(_code(16), default="")
    start_utc: Mapped[dt.datetime]
    # The start in the site's local time, as DICOM shows it: DA, TM and both (for DT ranges).
    start_date: Mapped[str] = mapped_column(_code(8))
    start_time: Mapped[str] = mapped_column(_code(6))
    start_local: Mapped[str] = mapped_column(_code(14))
    performing_physician: Mapped[str] = mapped_column(_code(200), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    protocol_value: Mapped[str] = mapped_column(String(16), default="")
    protocol_scheme: Mapped[str] = mapped_column(String(16), default="")
    protocol_meaning: Mapped[str] = mapped_column(String(64), default="")
    location: Mapped[str] = mapped_column(_code(64), default="")
    # Copies of patient and order matching keys (see module docstring).
    patient_id: Mapped[str] = mapped_column(_code(64))
    issuer_of_patient_id: Mapped[str] = mapped_column(_code(64), default="")
    patient_name: Mapped[str] = mapped_column(_code(200), default="")
    patient_name_folded: Mapped[str] = mapped_column(_code(200), default="")
    patient_birth_date: Mapped[str] = mapped_column(_code(8), default="")
    patient_sex: Mapped[str] = mapped_column(_code(1), default="")
    accession_number: Mapped[str] = mapped_column(_code(16), default="")
    requested_procedure_id: Mapped[str] = mapped_column(_code(16))
    study_uid: Mapped[str] = mapped_column(_code(64))
    referring_physician: Mapped[str] = mapped_column(_code(200), default="")
    requesting_physician: Mapped[str] = mapped_column(_code(200), default="")
    admission_id: Mapped[str] = mapped_column(_code(64), default="")
    priority: Mapped[str] = mapped_column(_code(16), default="ROUTINE")
    # The whole worklist item (ris.domain.worklist.Item).
    item: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer, default=1)

    procedure: Mapped[RequestedProcedure] = relationship(back_populates="steps")
    order: Mapped[Order] = relationship()
    patient: Mapped[Patient] = relationship()

    __table_args__ = (
        UniqueConstraint("study_uid", "sps_id"),
        # Scanner queries: today's items for my AE title / my modality; date ranges; the board.
        Index("ix_scheduled_steps_station_start", "station_ae", "start_local"),
        Index("ix_scheduled_steps_modality_start", "modality", "start_local"),
        Index("ix_scheduled_steps_start_date_time", "start_date", "start_time"),
        Index("ix_scheduled_steps_start_local", "start_local"),
        Index("ix_scheduled_steps_status_start", "status", "start_local"),
        Index("ix_scheduled_steps_patient_id", "patient_id"),
        Index("ix_scheduled_steps_patient_name", "patient_name"),
        Index("ix_scheduled_steps_patient_name_folded", "patient_name_folded"),
        Index("ix_scheduled_steps_accession_number", "accession_number"),
        Index("ix_scheduled_steps_requested_procedure_id", "requested_procedure_id"),
        Index("ix_scheduled_steps_sps_id", "sps_id"),
        Index("ix_scheduled_steps_performing_physician", "performing_physician"),
    )
    __mapper_args__ = {"version_id_col": version}


class PerformedStep(Timestamped, Base):
    """A Modality Performed Procedure Step, kept forever with everything the modality sent."""

    __tablename__ = "performed_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(_code(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # IN PROGRESS, COMPLETED, DISCONTINUED
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    study_uid: Mapped[str] = mapped_column(_code(64), default="")
    accession_number: Mapped[str] = mapped_column(_code(16), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    # The current attribute set (N-CREATE merged with every N-SET).
    attributes: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer, default=1)

    events: Mapped[list[PerformedStepEvent]] = relationship(order_by="PerformedStepEvent.id")
    links: Mapped[list[PerformedStepLink]] = relationship(order_by="PerformedStepLink.id")

    __mapper_args__ = {"version_id_col": version}


class PerformedStepLink(Base):
    """A scheduled step a performed step reports on. One performed step can cover several
    scheduled steps (the group case); one without links is unscheduled, awaiting reconciliation."""

    __tablename__ = "performed_step_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    performed_step_fk: Mapped[int] = mapped_column(ForeignKey("performed_steps.id"), index=True)
    step_fk: Mapped[int] = mapped_column(ForeignKey("scheduled_steps.id"), index=True)
    linked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    linked_by: Mapped[str] = mapped_column(String(120))  # the modality's AE, or who reconciled it

    step: Mapped[ScheduledStep] = relationship()

    __table_args__ = (UniqueConstraint("performed_step_fk", "step_fk"),)


class PerformedStepEvent(Base):
    """One N-CREATE or N-SET as received."""

    __tablename__ = "performed_step_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    performed_step_fk: Mapped[int] = mapped_column(ForeignKey("performed_steps.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # N-CREATE, N-SET
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attributes: Mapped[dict[str, Any]]


class OutboxTask(Base):
    """A delivery to another system, written in the same transaction as the change it reports."""

    __tablename__ = "outbox_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # ian, mpps-forward, hl7-status
    destination: Mapped[str] = mapped_column(String(120))  # AE title or host:port
    # (event, destination): a second enqueue of the same delivery is a no-op.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    # Tasks with the same ordering key are delivered one after the other, by id.
    ordering_key: Mapped[str | None] = mapped_column(String(200), index=True)
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default="PENDING")  # PENDING, SENT, FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Since when it has been waiting (creation or manual retry): the give-up age counts from here.
    pending_since: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    order_fk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    performed_step_fk: Mapped[int | None] = mapped_column(ForeignKey("performed_steps.id"), index=True)

    __table_args__ = (Index("ix_outbox_tasks_state_next_attempt_at", "state", "next_attempt_at"),)


class Hl7Message(Base):
    """The HL7 journal: every message received, with the ACK sent for it."""

    __tablename__ = "hl7_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    peer: Mapped[str] = mapped_column(String(80), default="")
    sending_application: Mapped[str] = mapped_column(String(227), default="")
    sending_facility: Mapped[str] = mapped_column(String(227), default="")
    control_id: Mapped[str] = mapped_column(String(199), default="")
    message_type: Mapped[str] = mapped_column(String(30), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    ack_code: Mapped[str] = mapped_column(String(2), default="")
    ack: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    error: Mapped[str] = mapped_column(Text, default="")
    order_fk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)

    __table_args__ = (UniqueConstraint("sending_application", "sending_facility", "control_id"),)


class RemoteAe(Base):
    __tablename__ = "remote_aes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(Integer, default=0)
    is_station: Mapped[bool] = mapped_column(default=False)
    is_ian_destination: Mapped[bool] = mapped_column(default=False)
    is_mpps_forward: Mapped[bool] = mapped_column(default=False)
    own_items_only: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # frontdesk, admin
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_fk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]


class AuditEvent(Base):
    """Who changed what, when: the order timeline and the audit trail."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    order_fk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    details: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_audit_events_order_fk_at", "order_fk", "at"), Index("ix_audit_events_at", "at"))
