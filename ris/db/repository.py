"""Lookups and row <-> domain conversions used by the service layer."""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    TextClause,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from ris.db.engine import PLAN_EACH_TIME
from ris.db.models import (
    Base,
    Hl7Message,
    Order,
    OutboxTask,
    Patient,
    PerformedStep,
    PerformedStepEvent,
    PerformedStepLink,
    RemoteAe,
    RequestedProcedure,
    ScheduledStep,
)
from ris.domain.errors import NotFound
from ris.domain.inbound import JournalEntry
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
from ris.domain.mpps import LinkedStep, MppsEvent, MppsStatus, MppsView, summarize
from ris.domain.outbox import NewTask, TaskKind, TaskState
from ris.domain.outbox import OutboxTask as OutboxTaskView
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
    query = order_by_key_select(key)
    return None if query is None else session.scalars(query.options(*_ORDER_GRAPH)).first()


def order_by_key_select(key: OrderKey) -> Select[Order] | None:
    if key.accession_number:
        return select(Order).where(accession_is(key.accession_number))
    if key.filler_order_number:
        return select(Order).where(Order.filler_order_number == key.filler_order_number)
    if key.placer_order_number:
        return select(Order).where(Order.placer_order_number == key.placer_order_number)
    return None


def accession_is(value: Any) -> ColumnElement[bool]:
    """Orders with accession number ``value`` (a value or a bind parameter). The unique index on the
    accession number is partial (orders without one are allowed); SQLite only uses it when the query
    repeats the index's condition, and would otherwise scan every order."""
    return and_(Order.accession_number == value, Order.accession_number != literal_column("''"))


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


_PERFORMED_STEP_GRAPH = selectinload(PerformedStep.links).selectinload(PerformedStepLink.step)


def find_performed_step(session: Session, sop_instance_uid: str, *, for_update: bool = False) -> PerformedStep | None:
    query = select(PerformedStep).where(PerformedStep.sop_instance_uid == sop_instance_uid)
    if for_update:  # concurrent N-SETs of one step queue up instead of failing the version check
        query = query.with_for_update(of=PerformedStep)
    return session.scalars(query.options(_PERFORMED_STEP_GRAPH)).first()


def get_performed_step(session: Session, sop_instance_uid: str, *, for_update: bool = False) -> PerformedStep:
    row = find_performed_step(session, sop_instance_uid, for_update=for_update)
    if row is None:
        raise NotFound(f"no performed procedure step {sop_instance_uid}")
    return row


def performed_steps_select() -> Select[PerformedStep]:
    return select(PerformedStep).options(_PERFORMED_STEP_GRAPH)


def unscheduled_filter() -> Any:
    return ~exists().where(PerformedStepLink.performed_step_fk == PerformedStep.id)


def steps_matching(session: Session, keys: dict[str, str]) -> list[ScheduledStep]:
    """Up to two scheduled steps whose columns equal ``keys`` (two are enough to see ambiguity)."""
    query = select(ScheduledStep).where(*(getattr(ScheduledStep, name) == value for name, value in keys.items()))
    return list(session.scalars(query.limit(2).with_for_update(of=ScheduledStep)))


def remote_aes_with_flag(session: Session, flag: Any) -> list[RemoteAe]:
    return list(session.scalars(select(RemoteAe).where(flag).order_by(RemoteAe.ae_title)))


def insert_task(session: Session, task: NewTask, now: dt.datetime) -> bool:
    """Enqueue ``task`` unless a task with its dedupe key exists; True when it was added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxTask)
        .values(
            kind=str(task.kind),
            destination=task.destination,
            dedupe_key=task.dedupe_key,
            ordering_key=task.ordering_key,
            payload=task.payload,
            state=str(TaskState.PENDING),
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
            pending_since=now,
            order_fk=task.order_id,
            performed_step_fk=task.performed_step_id,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxTask.id)
    )
    return session.execute(statement).scalar() is not None


def due_tasks_select(now: dt.datetime, exclude_destinations: Collection[str], limit: int) -> Select[OutboxTask]:
    """Pending tasks whose time has come, oldest first, leaving out those that wait for an earlier
    task with the same ordering key (one not yet SENT, including a FAILED one)."""
    earlier = aliased(OutboxTask)
    waits = exists().where(
        earlier.ordering_key == OutboxTask.ordering_key,
        earlier.id < OutboxTask.id,
        earlier.state != str(TaskState.SENT),
    )
    query = select(OutboxTask).where(
        OutboxTask.state == str(TaskState.PENDING),
        OutboxTask.next_attempt_at <= now,
        or_(OutboxTask.ordering_key.is_(None), ~waits),
    )
    if exclude_destinations:
        query = query.where(OutboxTask.destination.not_in(list(exclude_destinations)))
    # PostgreSQL: concurrent workers skip each other's rows; SQLite's write lock serialises them.
    return query.order_by(OutboxTask.id).limit(limit).with_for_update(of=OutboxTask, skip_locked=True)


def get_patient(session: Session, patient_id: int) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"patient {patient_id} does not exist")
    return patient


# Statements on the HL7 intake's path, built once (building and keying a statement costs more than
# running it on SQLite) and run on the session's connection, beside the ORM.
_PATIENTS_BY_ID = (
    select(Patient.id, Patient.patient_id, Patient.issuer, Patient.name, Patient.birth_date, Patient.sex)
    .where(Patient.patient_id.in_(bindparam("patient_ids", expanding=True)))
    .execution_options(**{PLAN_EACH_TIME: True})
)
_ORDER_KEYS_TAKEN = select(
    exists().where(accession_is(bindparam("accession"))),
    exists().where(RequestedProcedure.study_uid.in_(bindparam("uids", expanding=True))),
)
_STORED_REPLY = select(Hl7Message.id, Hl7Message.raw, Hl7Message.ack_code, Hl7Message.ack, Hl7Message.error).where(
    Hl7Message.sending_application == bindparam("sending_application"),
    Hl7Message.sending_facility == bindparam("sending_facility"),
    Hl7Message.control_id == bindparam("control_id"),
)


class StoredPatient(Protocol):
    id: int
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str


class StoredReply(Protocol):
    """The journal row of a message already answered."""

    id: int
    raw: bytes
    ack_code: str
    ack: bytes
    error: str


def patients_by_id(session: Session, patient_ids: Iterable[str]) -> Sequence[StoredPatient]:
    """Every patient with one of ``patient_ids`` (any issuer), as plain rows."""
    # Planned at every call (PLAN_EACH_TIME): this runs from the first order on, while the table
    # grows from empty, and a plan kept from then would scan the whole table.
    rows = session.connection().execute(_PATIENTS_BY_ID, {"patient_ids": list(patient_ids)}).all()
    return cast(Sequence[StoredPatient], rows)


def order_keys_taken(session: Session, accession: str, study_uids: Sequence[str]) -> tuple[bool, bool]:
    """Whether another order has the accession number (never for ""), and one of the study UIDs."""
    row = session.connection().execute(_ORDER_KEYS_TAKEN, {"accession": accession or None, "uids": list(study_uids)})
    accession_taken, uid_taken = row.one()
    return bool(accession_taken), bool(uid_taken)


def find_hl7_message(
    session: Session, sending_application: str, sending_facility: str, control_id: str
) -> StoredReply | None:
    row = (
        session.connection()
        .execute(
            _STORED_REPLY,
            {
                "sending_application": sending_application,
                "sending_facility": sending_facility,
                "control_id": control_id,
            },
        )
        .first()
    )
    return cast(StoredReply | None, row)


# --- primary keys handed out before insert ---------------------------------------------------


class ReservedIds:
    """New primary keys per table, reserved in one statement by `reserve_ids`, so that rows which
    refer to each other can be inserted together without reading back each insert's ids."""

    def __init__(self, ids: dict[str, list[int]]) -> None:
        self._ids = ids
        self._taken = dict.fromkeys(ids, 0)

    def take(self, model: type[Base], count: int) -> list[int]:
        """The next ``count`` reserved ids of ``model``'s table."""
        table = model.__tablename__
        if count == 0:
            return []
        start = self._taken[table]
        ids = self._ids[table][start : start + count]
        if len(ids) != count:
            raise ValueError(f"{count} ids of {table} wanted, {len(self._ids[table]) - start} reserved")
        self._taken[table] = start + count
        return ids


ID_BLOCK = 100
"""Ids per table that `IdBlocks` reserves ahead (25 groups of 4 new HL7 orders)."""


class IdBlocks:
    """New ids (as `reserve_ids`) served from blocks reserved ahead on PostgreSQL, so that most
    transactions take theirs without a statement (one round trip less per group of new orders).

    A sequence never hands out a value twice, so the ids held here are safe from every other
    process; those still held when the process ends are gaps, as after a rollback. Ids are
    therefore unique but not in the order of insertion across processes. On SQLite every
    reservation reads the largest stored id, under the write lock: ids held over would be taken
    by another process's next insert."""

    def __init__(self, block: int = ID_BLOCK) -> None:
        self._block = block
        self._free: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()

    def reserve(self, session: Session, counts: dict[type[Base], int]) -> ReservedIds:
        if session.get_bind().dialect.name != "postgresql":
            return reserve_ids(session, counts)
        with self._lock:
            short = {
                model: count - len(self._free[model.__tablename__]) + self._block
                for model, count in counts.items()
                if count > len(self._free[model.__tablename__])
            }
            if short:
                fetched = reserve_ids(session, short)
                for model, count in short.items():
                    self._free[model.__tablename__].extend(fetched.take(model, count))
            return ReservedIds(
                {
                    model.__tablename__: [self._free[model.__tablename__].popleft() for _ in range(count)]
                    for model, count in counts.items()
                    if count > 0
                }
            )


def reserve_ids(session: Session, counts: dict[type[Base], int]) -> ReservedIds:
    """Reserve ``counts[model]`` new ids for each table, in one statement. On PostgreSQL from the
    tables' sequences; on SQLite after the largest id stored, which is safe because a SQLite write
    transaction (this one) is the only one."""
    wanted = {model.__tablename__: count for model, count in counts.items() if count > 0}
    if not wanted:
        return ReservedIds({})
    tables = tuple(sorted(wanted))
    connection = session.connection()
    on_sqlite = connection.dialect.name == "sqlite"
    row = connection.execute(_reserve_ids_select(tables, on_sqlite=on_sqlite), wanted).one()
    if on_sqlite:
        firsts = [(largest or 0) + 1 for largest in row]
        return ReservedIds({t: list(range(first, first + wanted[t])) for t, first in zip(tables, firsts, strict=True)})
    return ReservedIds({t: sorted(ids) for t, ids in zip(tables, row, strict=True)})


@functools.cache
def _reserve_ids_select(tables: tuple[str, ...], *, on_sqlite: bool) -> Select[Any]:
    """One column per table: on SQLite its largest id, elsewhere an array of ``:<table>`` new ids
    from its sequence."""
    columns: list[ScalarSelect[Any]] = []
    for name in tables:
        table = Base.metadata.tables[name]
        if on_sqlite:
            columns.append(select(func.max(table.c.id)).scalar_subquery())
        else:
            sequence: ColumnElement[Any] = literal_column(f"'{name}_id_seq'::regclass")  # its SERIAL sequence
            rows = func.generate_series(1, bindparam(name))
            new_ids = select(func.array_agg(func.nextval(sequence))).select_from(rows)
            columns.append(new_ids.scalar_subquery())
    return select(*columns)


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


def linked_step(link: PerformedStepLink) -> LinkedStep:
    step = link.step
    return LinkedStep(
        step_id=step.id,
        sps_id=step.sps_id,
        order_id=step.order_fk,
        accession_number=step.accession_number,
        status=StepStatus(step.status),
        linked_by=link.linked_by,
        linked_at=link.linked_at,
    )


def mpps_view(row: PerformedStep) -> MppsView:
    return MppsView(
        id=row.id,
        sop_instance_uid=row.sop_instance_uid,
        status=MppsStatus(row.status),
        calling_ae=row.calling_ae,
        summary=summarize(row.attributes),
        links=tuple(linked_step(link) for link in row.links),
        attributes=row.attributes,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def mpps_event(row: PerformedStepEvent) -> MppsEvent:
    return MppsEvent(
        id=row.id, kind=row.kind, calling_ae=row.calling_ae, received_at=row.received_at, attributes=row.attributes
    )


def outbox_task_view(row: OutboxTask) -> OutboxTaskView:
    return OutboxTaskView(
        id=row.id,
        kind=TaskKind(row.kind),
        destination=row.destination,
        state=TaskState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        pending_since=row.pending_since,
        sent_at=row.sent_at,
        order_id=row.order_fk,
        performed_step_id=row.performed_step_fk,
        payload=row.payload,
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
    """Every derived column of a ``scheduled_steps`` row: the copied matching keys and the item.
    Text matching keys are taken from the item, so SQL and the item agree on every value."""
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
        "patient_name": item["PatientName"],
        "patient_name_folded": fold_case(item["PatientName"]),
        "patient_birth_date": patient.birth_date,
        "patient_sex": patient.sex,
        "accession_number": order.accession_number,
        "requested_procedure_id": procedure.requested_procedure_id,
        "study_uid": procedure.study_uid,
        "referring_physician": item["ReferringPhysicianName"],
        "requesting_physician": item["RequestingPhysician"],
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


def journal_entry(row: Hl7Message) -> JournalEntry:
    return JournalEntry(
        id=row.id,
        received_at=row.received_at,
        peer=row.peer,
        sending_application=row.sending_application,
        sending_facility=row.sending_facility,
        control_id=row.control_id,
        message_type=row.message_type,
        ack_code=row.ack_code,
        error=row.error,
        order_id=row.order_fk,
        raw=row.raw,
        ack=row.ack,
    )


# --- bulk inserts ----------------------------------------------------------------------------


class RowBatch:
    """New rows for several tables (column values by name, primary keys included; the same columns
    in every row of a table), inserted together by `insert`. Columns a row leaves out get their
    defaults.

    On PostgreSQL all of them go in ONE statement: per table a data-modifying CTE that turns one
    JSON parameter into rows of the table (``jsonb_populate_recordset`` into its row type), so
    the client encodes one value per table instead of one per column and row, and pays for one
    statement instead of one per table (measured on groups of 4 new HL7 orders with their journal
    rows, medians of 5 runs: listener CPU 2.75 → 2.05 ms per group, PostgreSQL CPU 3.25 → 2.2 ms
    together with the planned patient look-up). Foreign keys are checked at the end of the
    statement, so the order of the tables does not matter there. Other engines get an executemany
    per table, in the order the tables were first added: add parents before their children."""

    def __init__(self) -> None:
        self._rows: dict[type[Base], list[dict[str, Any]]] = {}

    def add(self, model: type[Base], rows: Iterable[dict[str, Any]]) -> None:
        self._rows.setdefault(model, []).extend(rows)

    def insert(self, session: Session) -> None:
        """Insert every row added (then none is left to insert)."""
        batches = [(_table(model), rows) for model, rows in self._rows.items() if rows]
        self._rows = {}
        if not batches:
            return
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            for table, rows in batches:
                connection.execute(plain_insert(table), rows)
            return
        parameters: dict[str, str] = {}
        shape = []
        for index, (table, rows) in enumerate(batches):
            defaults = _defaults(table, frozenset(rows[0]))
            parameters[f"rows_{index}"] = _rows_json([row | defaults for row in rows] if defaults else rows)
            shape.append((table, tuple(rows[0]) + tuple(defaults)))
        connection.execute(_recordset_insert(connection.dialect, tuple(shape)), parameters)


def _defaults(table: Table, given: frozenset[str]) -> dict[str, Any]:
    """Values of the columns not in ``given`` that have a Python-side default (SQLAlchemy's
    ``default=``): what an executemany would have filled in."""
    fixed, computed = _column_defaults(table, given)
    return fixed | {name: make(None) for name, make in computed} if computed else fixed


@functools.cache
def _column_defaults(
    table: Table, given: frozenset[str]
) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[object], Any]], ...]]:
    """The fixed defaults of the columns not in ``given``, and the functions computing the others."""
    fixed: dict[str, Any] = {}
    computed: list[tuple[str, Callable[[object], Any]]] = []
    for column in table.columns:
        default = column.default
        if column.name in given or default is None:
            continue
        if isinstance(default, ScalarElementColumnDefault):
            fixed[column.name] = default.arg
        elif isinstance(default, CallableColumnDefault):
            # SQLAlchemy's wrapper of the function ignores the execution context it is given.
            computed.append((column.name, cast(Callable[[object], Any], default.arg)))
    return fixed, tuple(computed)


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


# Built once: building and keying a statement costs more than running it on SQLite.
@functools.cache
def plain_insert(table: Table) -> Insert:
    """INSERT INTO table, for rows whose keys are not fetched back (no RETURNING)."""
    return insert(table).inline()


@functools.cache
def _recordset_insert(dialect: Dialect, shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> TextClause:
    """For each (table, columns) of ``shape``, as CTEs but the last one:
    INSERT INTO table (columns) SELECT columns FROM jsonb_populate_recordset(NULL::table, :rows_<n>)

    Written as text: SQLAlchemy cannot compile a bound parameter inside an INSERT ... SELECT that
    is a CTE. Every name in it comes from our own table definitions."""
    quote = dialect.identifier_preparer.quote
    inserts = []
    for index, (table, columns) in enumerate(shape):
        names = ", ".join(quote(name) for name in columns)
        table_name = quote(table.name)
        inserts.append(
            f"INSERT INTO {table_name} ({names}) SELECT {names} "  # noqa: S608
            f"FROM jsonb_populate_recordset(NULL::{table_name}, :rows_{index})"
        )
    *before, last = inserts
    ctes = ", ".join(f"insert_{index} AS ({statement})" for index, statement in enumerate(before))
    return text(f"WITH {ctes} {last}" if ctes else last)


def _json_value(value: object) -> str:
    """JSON for the values json cannot write, in the text form PostgreSQL reads them from."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"{type(value).__name__} cannot be stored as a column value")


_rows_json = functools.partial(json.dumps, default=_json_value, ensure_ascii=False, separators=(",", ":"))
