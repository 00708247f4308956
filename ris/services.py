"""The use cases of the broker: the one place the HL7, DICOM and web adapters call.

Every public method validates its input, runs in one transaction and returns plain domain values.
Methods whose name starts with an underscore do the same work inside a transaction the caller
already holds, so that an adapter's own record (HL7 journal row, MPPS event) commits together
with the change it caused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import random
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeGuard, TypeVar

from sqlalchemy import CursorResult, Row, delete, func, literal_column, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ris.db import Database, SchemaStatus, after_commit
from ris.db import repository as repo
from ris.db.board_sql import board_counts_select, board_rows_select
from ris.db.models import (
    ApiToken,
    AuditEvent,
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
    User,
    utcnow,
)
from ris.db.worklist_sql import worklist_select
from ris.domain import mpps
from ris.domain import outbox as tasks
from ris.domain.board import PAGE_SIZE, BoardFilter, BoardPage, BoardRow
from ris.domain.dicom_json import DicomJson
from ris.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    FieldProblem,
    InvalidTransition,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)
from ris.domain.ids import new_short_id, new_uid
from ris.domain.inbound import (
    Answer,
    Applied,
    ChangeOrderStatus,
    CommandFailed,
    InboundMessage,
    JournalEntry,
    MergePatients,
    OrderCommand,
    Receipt,
    Reply,
    ScheduleOrder,
    UpdateOrder,
    UpdatePatient,
)
from ris.domain.model import (
    Actor,
    AeRole,
    CodedEntry,
    NewOrder,
    OrderKey,
    OrderView,
    PatientData,
    ProcedureData,
    RemoteAE,
    StepData,
    StepView,
)
from ris.domain.mpps import MppsEvent, MppsStatus, MppsView
from ris.domain.outbox import NewTask, RetryPolicy, TaskKind, TaskState
from ris.domain.outbox import OutboxTask as OutboxTaskView
from ris.domain.status import RESCHEDULABLE_STATUSES, StepStatus, check_transition, transition_path
from ris.domain.timeline import TimelineEntry, change_entry, delivery_entry, hl7_entry, mpps_entry
from ris.domain.tokens import ApiTokenView, new_token, token_hash
from ris.domain.users import Role, UserView, new_user_problems, password_problem
from ris.domain.validation import (
    choose_character_set,
    new_order_problems,
    order_texts,
    patient_problems,
    step_problems,
    validate_new_order,
)
from ris.domain.values import ae_title_problem, normalize_person_name, uid_problem
from ris.domain.worklist import Item, WorklistQuery
from ris.group_commit import GroupCommit
from ris.ports import EchoProbe, EchoResult
from ris.settings import Settings

log = logging.getLogger(__name__)

ANALYZE_AFTER_IMPORT = 1000
"""Imports of at least this many orders refresh the database's planner statistics at once."""

TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)
"""How precisely an API token's last use is recorded."""

CONFLICT_RETRIES = 3
"""How often a received message is tried again when a concurrent transaction took a key it needed."""
GROUP_GATHER_SECONDS = 0.002
"""How long a group of new orders about to be stored waits for the next message of connections
that sent one lately (see `ris.group_commit`): about the time a sender takes to answer an ACK with
its next message. One busy connection never waits; several share one transaction."""

IMPORT_BATCH = 5000
"""Orders `import_orders` inserts per round of statements (all in its one transaction): the rows of a
batch are built just before they go in, so a large file's rows and item JSON are never all in memory."""


@dataclasses.dataclass(frozen=True)
class WorklistResult:
    items: list[Item]
    truncated: bool  # more items matched than the query's limit


class RisService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], dt.datetime] = utcnow,
        echo_probe: EchoProbe | None = None,
    ) -> None:
        self.db = db
        self.echo_probe = echo_probe
        self.settings = settings
        self.clock = clock
        self.zone = settings.zone
        self.retry_policy = RetryPolicy(
            settings.outbox_initial_delay, settings.outbox_max_delay, settings.outbox_give_up_after
        )
        # Set after a commit that enqueued outbox tasks: the worker in this process starts at once
        # instead of at its next poll.
        self.outbox_ready = threading.Event()
        # New orders received at the same time (several HL7 connections) share one transaction.
        self._new_ids = repo.IdBlocks()
        self._new_order_messages = GroupCommit(self._receive_new_orders, gather_seconds=GROUP_GATHER_SECONDS)

    # --- orders ---------------------------------------------------------------------------

    def schedule_order(self, command: NewOrder, actor: Actor) -> OrderView:
        """Create an order with its requested procedures and scheduled steps (worklist items)."""
        validate_new_order(command)
        with self.db.transaction() as session:
            order_id = self._schedule_order(session, command, actor)
            return repo.order_view(repo.get_order(session, order_id))

    def _schedule_order(self, session: Session, command: NewOrder, actor: Actor, *, check_keys: bool = True) -> int:
        """Store a validated new order; returns its id (see `_schedule_orders`).

        Without ``check_keys`` a taken accession number or study UID is found by the database's
        unique keys when the transaction ends (one statement less, AlreadyExists without details)."""
        if check_keys:
            self._check_keys_free(session, command.order.accession_number, command.procedures)
        prepared = self._prepare_orders(session, (command,))
        rows = repo.RowBatch()
        (order_id,) = self._schedule_orders((command,), (actor,), prepared, rows)
        rows.insert(session)
        after_commit(session, functools.partial(_log_scheduled, command, order_id, actor))
        return order_id

    def _schedule_orders(
        self,
        commands: Sequence[NewOrder],
        actors: Sequence[Actor],
        prepared: _PreparedOrders,
        rows: repo.RowBatch,
    ) -> list[int]:
        """The rows of validated new orders, each on behalf of its actor, with their new patients
        and audit events, added to ``rows``; returns the orders' ids in order. Only inserts (see
        `_prepare_orders`), not through the ORM: the caller inserts ``rows`` (in one statement with
        whatever else it adds). The HL7 intake runs this for every new order (for several at once
        under load, see `receive_message`). The caller logs them (`_log_scheduled`)."""
        self._add_new_patients(prepared, rows)
        order_ids = self._add_orders(commands, actors, prepared, rows)
        steps = [sum(len(procedure.steps) for procedure in command.procedures) for command in commands]
        rows.add(
            AuditEvent,
            [
                self._audit_row(actor, "order.scheduled", order_id, steps=count)
                for actor, order_id, count in zip(actors, order_ids, steps, strict=True)
            ],
        )
        return order_ids

    def update_order(
        self, key: OrderKey | int, command: NewOrder, actor: Actor, expected_version: int | None = None
    ) -> OrderView:
        """Replace the details of an existing order (HL7 XO, a form edit).

        Steps are matched by SPS ID, else by position; a step whose schedule changes must not have
        started. Steps the command adds are scheduled; steps it leaves out stay as they are."""
        validate_new_order(command)
        with self.db.transaction() as session:
            order = self._load_order(session, key, expected_version)
            self._update_order(session, order, command, actor)
            return repo.order_view(order)

    def _update_order(self, session: Session, order: Order, command: NewOrder, actor: Actor) -> None:
        accession = command.order.accession_number
        if accession and accession != order.accession_number:
            other = repo.find_order(session, OrderKey(accession_number=accession))
            if other is not None and other.id != order.id:
                raise AlreadyExists(f"accession number {accession!r} is already used by another order")
        if (command.patient.patient_id, command.patient.issuer) != (order.patient.patient_id, order.patient.issuer):
            order.patient = self._upsert_patient(session, command.patient, actor)
        else:
            self._apply_patient(session, order.patient, command.patient)
        for name, value in dataclasses.asdict(command.order).items():
            setattr(order, name, value)
        order.character_set = command.character_set or choose_character_set(order_texts(command))
        for index, procedure_data in enumerate(command.procedures):
            self._update_procedure(session, order, index, procedure_data)
        for step in _steps(order):
            repo.refresh_worklist_row(step, self.zone)
        order.updated_at = self.clock()  # the order row itself may be unchanged; its version must move
        session.flush()
        self._audit(session, actor, "order.updated", order)
        _log_when_committed(
            session, "order updated order=%s accession=%s by=%s", order.id, order.accession_number, actor
        )

    def _update_procedure(self, session: Session, order: Order, index: int, data: ProcedureData) -> None:
        procedure = _match(order.procedures, index, _has_rp_id(data.requested_procedure_id))
        if procedure is None:
            self._check_keys_free(session, "", (data,))
            order.procedures.append(self._new_procedure(data, fallback_id=order.accession_number))
            return
        if data.study_uid and data.study_uid != procedure.study_uid:
            raise ValidationFailed(
                [FieldProblem(f"procedures[{index}].study_uid", "cannot change once the procedure is scheduled")]
            )
        procedure.requested_procedure_id = data.requested_procedure_id or procedure.requested_procedure_id
        procedure.code_value, procedure.code_scheme, procedure.code_meaning = _code_columns(data.code)
        procedure.description = data.description
        for step_index, step_data in enumerate(data.steps):
            step = _match(procedure.steps, step_index, _has_sps_id(step_data.sps_id))
            if step is None:
                procedure.steps.append(self._new_step(step_data))
            elif _schedule_differs(step, step_data):
                _require_reschedulable(step)
                _apply_step(step, step_data)

    def reschedule_step(
        self,
        step_id: int,
        start: dt.datetime,
        actor: Actor,
        *,
        station_ae: str | None = None,
        station_name: str | None = None,
        expected_version: int | None = None,
    ) -> StepView:
        """Move a step to another time (and optionally another station)."""
        with self.db.transaction() as session:
            step = repo.get_step(session, step_id)
            _check_version(step.version, expected_version, f"step {step_id}")
            _require_reschedulable(step)
            changed = dataclasses.replace(
                repo.step_data(step),
                start=start,
                station_ae=step.station_ae if station_ae is None else station_ae,
                station_name=step.station_name if station_name is None else station_name,
            )
            _raise_problems(step_problems(changed, ""))
            step.start_utc = start
            step.station_ae, step.station_name = changed.station_ae, changed.station_name
            repo.refresh_worklist_row(step, self.zone)
            order = step.procedure.order
            self._audit(
                session,
                actor,
                "step.rescheduled",
                order,
                step=step.sps_id,
                start=start.isoformat(),
                station_ae=step.station_ae,
            )
            session.flush()
            return repo.step_view(step)

    def change_order_status(
        self,
        key: OrderKey | int,
        target: StepStatus,
        actor: Actor,
        reason: str = "",
        expected_version: int | None = None,
    ) -> OrderView:
        """Move every open step of an order to ``target`` (cancel, discontinue, check in, HL7 SC).

        All or nothing: if one open step cannot make the move, nothing changes. Steps already
        final are left alone; an order whose steps are all final only accepts a repeat of its
        outcome (a replayed cancel changes nothing)."""
        with self.db.transaction() as session:
            order = self._load_order(session, key, expected_version)
            self._change_order_status(session, order, target, actor, reason)
            return repo.order_view(order)

    def _change_order_status(
        self, session: Session, order: Order, target: StepStatus, actor: Actor, reason: str = ""
    ) -> list[ScheduledStep]:
        steps = _steps(order)
        open_steps = [s for s in steps if not StepStatus(s.status).is_final]
        if not open_steps:
            if all(s.status == target for s in steps):
                return []
            raise InvalidTransition(
                f"order {order.accession_number or order.id} is already "
                f"{', '.join(sorted({s.status for s in steps}))} and cannot become {target}"
            )
        to_change = [s for s in open_steps if check_transition(StepStatus(s.status), target)]
        for step in to_change:
            self._set_status(step, target)
        session.flush()
        if to_change:
            self._audit(
                session, actor, f"order.{target.lower()}", order, reason=reason, steps=[s.sps_id for s in to_change]
            )
            _log_when_committed(
                session,
                "order status order=%s accession=%s status=%s steps=%d by=%s",
                order.id,
                order.accession_number,
                target,
                len(to_change),
                actor,
            )
        return to_change

    def cancel_order(
        self, key: OrderKey | int, actor: Actor, reason: str = "", expected_version: int | None = None
    ) -> OrderView:
        return self.change_order_status(key, StepStatus.CANCELED, actor, reason, expected_version)

    def discontinue_order(self, key: OrderKey | int, actor: Actor, reason: str = "") -> OrderView:
        return self.change_order_status(key, StepStatus.DISCONTINUED, actor, reason)

    def check_in(self, key: OrderKey | int, actor: Actor) -> OrderView:
        """The patient has arrived: every open step becomes ARRIVED."""
        return self.change_order_status(key, StepStatus.ARRIVED, actor)

    def set_step_status(
        self, step_id: int, target: StepStatus, actor: Actor, expected_version: int | None = None
    ) -> StepView:
        with self.db.transaction() as session:
            step = repo.get_step(session, step_id)
            _check_version(step.version, expected_version, f"step {step_id}")
            if check_transition(StepStatus(step.status), target):
                self._set_status(step, target)
                self._audit(session, actor, f"step.{target.lower()}", step.procedure.order, step=step.sps_id)
                session.flush()
            return repo.step_view(step)

    def _set_status(self, step: ScheduledStep, target: StepStatus) -> None:
        step.status = str(target)
        step.item = {
            **step.item,
            "ScheduledProcedureStepSequence": [
                {**step.item["ScheduledProcedureStepSequence"][0], "ScheduledProcedureStepStatus": str(target)}
            ],
        }

    def get_order(self, order_id: int) -> OrderView:
        with self.db.reading() as session:
            return repo.order_view(repo.get_order(session, order_id))

    def find_order(self, key: OrderKey) -> OrderView | None:
        with self.db.reading() as session:
            order = repo.find_order(session, key)
            return repo.order_view(order) if order else None

    def order_timeline(self, order_id: int) -> list[TimelineEntry]:
        """Everything that happened to an order, newest first: audited changes, HL7 messages with
        their ACK, the MPPS events of linked performed steps and the outbox deliveries."""
        performed = (
            select(PerformedStepLink.performed_step_fk)
            .join(ScheduledStep, ScheduledStep.id == PerformedStepLink.step_fk)
            .where(ScheduledStep.order_fk == order_id)
        )
        with self.db.reading() as session:
            if session.get(Order, order_id) is None:
                raise NotFound(f"order {order_id} does not exist")
            entries = [
                change_entry(row.at, row.actor, row.action, row.details)
                for row in session.scalars(select(AuditEvent).where(AuditEvent.order_fk == order_id))
            ]
            entries += [
                hl7_entry(
                    row.received_at,
                    "/".join(filter(None, (row.sending_application, row.sending_facility))),
                    row.message_type,
                    row.control_id,
                    row.ack_code,
                    row.error,
                )
                for row in session.execute(
                    select(
                        Hl7Message.received_at,
                        Hl7Message.sending_application,
                        Hl7Message.sending_facility,
                        Hl7Message.message_type,
                        Hl7Message.control_id,
                        Hl7Message.ack_code,
                        Hl7Message.error,
                    ).where(Hl7Message.order_fk == order_id)
                )
            ]
            entries += [
                mpps_entry(event.received_at, event.kind, event.calling_ae, uid, event.attributes)
                for event, uid in session.execute(
                    select(PerformedStepEvent, PerformedStep.sop_instance_uid)
                    .join(PerformedStep, PerformedStep.id == PerformedStepEvent.performed_step_fk)
                    .where(PerformedStep.id.in_(performed))
                )
            ]
            entries += [
                delivery_entry(repo.outbox_task_view(row))
                for row in session.scalars(select(OutboxTask).where(OutboxTask.order_fk == order_id))
            ]
        return sorted(entries, key=lambda entry: entry.at, reverse=True)

    # --- patients -------------------------------------------------------------------------

    def update_patient(self, patient: PatientData, actor: Actor) -> int:
        """New demographics for a known patient (HL7 ADT^A08/A31): open worklist items follow.
        Returns how many open items changed."""
        _raise_problems(patient_problems(patient))
        with self.db.transaction() as session:
            return self._update_patient(session, patient, actor)

    def _update_patient(self, session: Session, patient: PatientData, actor: Actor) -> int:
        row = repo.find_patient(session, patient.patient_id, patient.issuer)
        if row is None:
            raise NotFound(f"no patient {patient.patient_id!r} (issuer {patient.issuer!r})")
        changed = self._apply_patient(session, row, patient)
        if changed:
            self._audit(session, actor, "patient.updated", None, patient=row.id, items=changed)
        return changed

    def merge_patients(self, surviving: PatientData, prior_id: str, prior_issuer: str, actor: Actor) -> int:
        """HL7 ADT^A40: the prior patient record was a duplicate of ``surviving``. Its orders move
        to the surviving patient; returns how many open items moved."""
        _raise_problems(patient_problems(surviving))
        with self.db.transaction() as session:
            return self._merge_patients(session, surviving, prior_id, prior_issuer, actor)

    def _merge_patients(
        self, session: Session, surviving: PatientData, prior_id: str, prior_issuer: str, actor: Actor
    ) -> int:
        prior = repo.find_patient(session, prior_id, prior_issuer)
        if prior is None:
            raise NotFound(f"no prior patient {prior_id!r} (issuer {prior_issuer!r}) to merge")
        target = self._upsert_patient(session, surviving, actor)
        session.flush()  # a surviving patient seen for the first time needs its id for merged_into_id
        if target.id == prior.id:
            raise ValidationFailed([FieldProblem("prior_patient", "is the same record as the surviving patient")])
        moved_steps = repo.open_steps_of_patient(session, prior)
        for order in list(prior.orders):
            order.patient = target
        prior.merged_into_id = target.id
        session.flush()
        for step in moved_steps:
            repo.refresh_worklist_row(step, self.zone)
        self._audit(session, actor, "patient.merged", None, surviving=target.id, prior=prior.id, items=len(moved_steps))
        _log_when_committed(
            session,
            "patients merged surviving=%s prior=%s items=%d by=%s",
            target.id,
            prior.id,
            len(moved_steps),
            actor,
        )
        return len(moved_steps)

    def _upsert_patient(self, session: Session, data: PatientData, actor: Actor) -> Patient:
        patient = repo.find_patient(session, data.patient_id, data.issuer)
        if patient is None:
            patient = Patient(patient_id=data.patient_id, issuer=data.issuer)
            session.add(patient)
        self._apply_patient(session, patient, data)
        return patient

    def _apply_patient(self, session: Session, patient: Patient, data: PatientData) -> int:
        """Copy demographics onto the patient row and its open worklist items; returns the number
        of items that changed."""
        current = (patient.name, patient.birth_date, patient.sex)
        if patient.id is not None and current == (data.name, data.birth_date, data.sex):
            return 0
        patient.name, patient.birth_date, patient.sex = data.name, data.birth_date, data.sex
        if patient.id is None:
            return 0
        steps = repo.open_steps_of_patient(session, patient)
        for step in steps:
            repo.refresh_worklist_row(step, self.zone)
        return len(steps)

    # --- messages from other systems (the HIS feed) -----------------------------------------

    def receive_message(
        self, message: InboundMessage, commands: Sequence[OrderCommand], actor: Actor, answer: Answer
    ) -> Receipt:
        """Journal ``message``, apply its ``commands`` and store the reply that ``answer`` words for
        the outcome, in ONE transaction that has committed when this returns, so before the adapter
        sends the reply. A message already journaled (same sender, facility and control id) gets its
        stored reply again and changes nothing.

        When a command cannot be applied nothing of the message changes, but the message and the
        reply to the failure are journaled all the same, so that a replay gets the same answer. An
        adapter that rejects a message before it becomes commands passes no commands and an
        ``answer`` that ignores the outcome. `StorageUnavailable` leaves this method: then nothing
        was stored, and the adapter must not answer as if it had been.

        Messages that only schedule new orders (the bulk of a HIS feed) and arrive while another
        such group is being stored are stored together, in one transaction (group commit: one
        commit and a handful of statements for the group instead of for each message). Should that
        transaction fail — a taken key, a replay, a database error — nothing of the group was
        stored and each message is then received on its own, as below, so that one message never
        decides another's outcome."""
        failure = self._validation_failure(commands)
        if failure is None and _new_orders_only(commands):
            grouped = self._new_order_messages.submit(_Received(message, commands, actor, answer))
            if grouped is not None:
                # Logged by each message's own thread, once the group has committed: not while
                # the others of the group wait.
                receipt, order_ids = grouped
                for command, order_id in zip(commands, order_ids, strict=True):
                    _log_scheduled(command.order, order_id, actor)
                return receipt
        attempts = 0
        while failure is None:
            attempts += 1
            try:
                # The first attempt leaves taken keys to the database's unique keys; a retry checks
                # them itself and so can say which command and which key.
                return self._apply_and_journal(message, commands, actor, answer, check_keys=attempts > 1)
            except _CommandRejected as rejected:
                failure = rejected.failure
            except StorageUnavailable:
                raise
            except (AlreadyExists, ConcurrentUpdate) as error:
                # A key or row version another transaction has: the journal's own key (the message
                # was answered before: a replay), or one the commands need (two connections with
                # orders for one new patient), and then the message may apply on fresh data.
                stored = self._stored_reply(message)
                if stored is not None:
                    return _replay(stored, message)
                if attempts > CONFLICT_RETRIES:
                    failure = CommandFailed(None, error)
                else:
                    log.info("message conflicts with a concurrent change control_id=%s: retrying", message.control_id)
        return self._journal_failure(message, failure, answer)

    def _receive_new_orders(self, group: list[_Received]) -> list[tuple[Receipt, tuple[int, ...]] | None]:
        """Store a group of validated messages that schedule new orders, with their journal rows,
        in one transaction; each message's receipt and order ids, or None for each when it failed
        (nothing of the group was stored)."""
        try:
            with self.db.transaction() as session:
                orders = [command.order for received in group for command in received.commands]
                actors = [received.actor for received in group for _command in received.commands]
                prepared = self._prepare_orders(session, orders, also={Hl7Message: len(group)})
                rows = repo.RowBatch()
                order_ids = iter(self._schedule_orders(orders, actors, prepared, rows))
                entries = []
                for received in group:
                    ids = tuple(next(order_ids) for _command in received.commands)
                    items = sum(len(p.steps) for command in received.commands for p in command.order.procedures)
                    reply = received.answer(Applied(ids, items))
                    entries.append((received.message, reply, ids))
                journal_ids = prepared.ids.take(Hl7Message, len(entries))
                self._add_journal_rows(rows, [(m, r, ids[0] if ids else None) for m, r, ids in entries], journal_ids)
                rows.insert(session)
        except DomainError as error:
            log.info("%d messages could not be stored together (%s): each is received alone", len(group), error)
            return [None] * len(group)
        except Exception:
            # A failure of our own (e.g. in an adapter's answer): the message that causes it shall
            # meet it alone, not take the others of the group with it.
            log.exception("%d messages could not be stored together: each is received alone", len(group))
            return [None] * len(group)
        return [
            (Receipt(reply, replayed=False, journal_id=journal_id), ids)
            for (_message, reply, ids), journal_id in zip(entries, journal_ids, strict=True)
        ]

    def _apply_and_journal(
        self,
        message: InboundMessage,
        commands: Sequence[OrderCommand],
        actor: Actor,
        answer: Answer,
        *,
        check_keys: bool,
    ) -> Receipt:
        """No look-up for a replay first. A replayed message trips over the journal's unique key
        (or over its own earlier change) and is answered from the journal then."""
        with self.db.transaction() as session:
            applied = self._apply_commands(session, commands, actor, check_keys=check_keys)
            reply = answer(applied)
            journal_id = self._journal(session, message, reply, applied.order_ids[0] if applied.order_ids else None)
            return Receipt(reply, replayed=False, journal_id=journal_id)

    def _stored_reply(self, message: InboundMessage) -> repo.StoredReply | None:
        with self.db.reading() as session:
            return repo.find_hl7_message(
                session, message.sending_application, message.sending_facility, message.control_id
            )

    def _validation_failure(self, commands: Sequence[OrderCommand]) -> CommandFailed | None:
        for index, command in enumerate(commands):
            match command:
                case ScheduleOrder(order=order) | UpdateOrder(order=order):
                    problems = new_order_problems(order)
                case UpdatePatient(patient=patient) | MergePatients(surviving=patient):
                    problems = patient_problems(patient)
                case ChangeOrderStatus():
                    problems = []
            if problems:
                return CommandFailed(index, ValidationFailed(problems))
        return None

    def _apply_commands(
        self, session: Session, commands: Sequence[OrderCommand], actor: Actor, *, check_keys: bool
    ) -> Applied:
        order_ids: list[int] = []
        items = 0
        for index, command in enumerate(commands):
            try:
                order_id, changed = self._apply_command(session, command, actor, check_keys=check_keys)
            except StorageUnavailable:
                raise
            except DomainError as error:
                raise _CommandRejected(CommandFailed(index, error)) from error
            if order_id is not None:
                order_ids.append(order_id)
            items += changed
        return Applied(tuple(order_ids), items)

    def _apply_command(
        self, session: Session, command: OrderCommand, actor: Actor, *, check_keys: bool
    ) -> tuple[int | None, int]:
        """(order id, worklist items changed) of one validated command."""
        match command:
            case ScheduleOrder(order=new):
                order_id = self._schedule_order(session, new, actor, check_keys=check_keys)
                return order_id, sum(len(p.steps) for p in new.procedures)
            case UpdateOrder(key=key, order=new):
                order = self._load_order(session, key)
                self._update_order(session, order, new, actor)
                return order.id, len(_steps(order))
            case ChangeOrderStatus(key=key, target=target, reason=reason):
                order = self._load_order(session, key)
                return order.id, len(self._change_order_status(session, order, target, actor, reason))
            case UpdatePatient(patient=patient):
                return None, self._update_patient(session, patient, actor)
            case MergePatients(surviving=surviving, prior_id=prior_id, prior_issuer=prior_issuer):
                return None, self._merge_patients(session, surviving, prior_id, prior_issuer, actor)

    def _journal_failure(self, message: InboundMessage, failure: CommandFailed, answer: Answer) -> Receipt:
        """Journal a message whose commands changed nothing, with the reply to ``failure`` (unless it
        is a replay: then its stored reply)."""
        try:
            with self.db.transaction() as session:
                stored = repo.find_hl7_message(
                    session, message.sending_application, message.sending_facility, message.control_id
                )
                if stored is not None:
                    return _replay(stored, message)
                reply = answer(failure)
                return Receipt(reply, replayed=False, journal_id=self._journal(session, message, reply, None))
        except AlreadyExists:
            # Another connection journaled the same message between our look-up and our insert.
            stored = self._stored_reply(message)
            if stored is None:
                raise
            return _replay(stored, message)

    def _journal(self, session: Session, message: InboundMessage, reply: Reply, order_id: int | None) -> int:
        """Journal ``message`` with its reply; returns the journal row's id. Every journal id comes
        from this process's id blocks, so the listener's journal ids keep the order of arrival."""
        (journal_id,) = self._new_ids.reserve(session, {Hl7Message: 1}).take(Hl7Message, 1)
        rows = repo.RowBatch()
        self._add_journal_rows(rows, [(message, reply, order_id)], [journal_id])
        rows.insert(session)
        return journal_id

    def _add_journal_rows(
        self,
        rows: repo.RowBatch,
        entries: Sequence[tuple[InboundMessage, Reply, int | None]],
        ids: Sequence[int],
    ) -> None:
        """Add the journal rows of messages with their replies and first orders, with ``ids``."""
        received_at = self.clock()
        rows.add(Hl7Message, _with_ids(ids, [_journal_row(m, r, order_id, received_at) for m, r, order_id in entries]))

    def message_journal(
        self, *, limit: int = 20, failures_only: bool = False, control_id: str = ""
    ) -> list[JournalEntry]:
        """The newest journaled messages first; ``control_id`` picks one control id (any sender)."""
        with self.db.reading() as session:
            query = select(Hl7Message).order_by(Hl7Message.id.desc()).limit(limit)
            if failures_only:
                query = query.where(Hl7Message.ack_code != "AA")
            if control_id:
                query = query.where(Hl7Message.control_id == control_id)
            return [repo.journal_entry(row) for row in session.scalars(query)]

    def get_journal_entry(self, journal_id: int) -> JournalEntry:
        with self.db.reading() as session:
            row = session.get(Hl7Message, journal_id)
            if row is None:
                raise NotFound(f"HL7 journal entry {journal_id} does not exist")
            return repo.journal_entry(row)

    # --- worklist -------------------------------------------------------------------------

    def find_worklist_items(self, query: WorklistQuery) -> WorklistResult:
        """The items matching ``query`` (one SQL statement), by start time."""
        with self.db.reading() as session:
            rows = session.execute(worklist_select(query)).all()
        return _worklist_result(query, rows)

    def find_station_worklist(self, query: WorklistQuery, calling_ae: str) -> WorklistResult:
        """The worklist a modality asks for as ``calling_ae``: a registered station with the
        own-items-only flag sees only the items scheduled for its AE title."""
        with self.db.reading() as session:
            station = repo.find_remote_ae(session, calling_ae)
            if station is not None and station.is_station and station.own_items_only:
                query = dataclasses.replace(query, restrict_to_station=calling_ae)
            rows = session.execute(worklist_select(query)).all()
        return _worklist_result(query, rows)

    # --- the board ------------------------------------------------------------------------

    def search_board(self, board: BoardFilter, page: int = 1, page_size: int = PAGE_SIZE) -> BoardPage:
        """One page of the steps ``board`` selects, by start time, and the steps per status of its
        range: two indexed statements. :class:`ValidationFailed` names the filter's bad fields."""
        board = board.validated()
        page = max(page, 1)
        with self.db.reading() as session:
            rows = session.execute(board_rows_select(board, offset=(page - 1) * page_size, limit=page_size + 1)).all()
            counts = session.execute(board_counts_select(board)).all()
        return BoardPage(
            rows=tuple(
                BoardRow(
                    step_id=row.id,
                    order_id=row.order_fk,
                    start=row.start_utc.astimezone(self.zone),
                    status=StepStatus(row.status),
                    patient_name=row.patient_name,
                    patient_id=row.patient_id,
                    accession_number=row.accession_number,
                    modality=row.modality,
                    station_ae=row.station_ae,
                    description=row.description,
                    priority=row.priority,
                )
                for row in rows[:page_size]
            ),
            page=page,
            page_size=page_size,
            has_next=len(rows) > page_size,
            counts={StepStatus(status): count for status, count in counts},
        )

    # --- bulk transfer ----------------------------------------------------------------------

    def import_orders(self, commands: Sequence[NewOrder], actor: Actor) -> int:
        """Store many orders in ONE transaction: all of them or, on any problem, none.

        Commands must already be validated (see ris.transfer). Conflicts with stored orders are
        reported by position in ``commands``. Inserts go in bulk, bypassing the per-object ORM
        work that would make 100k items take minutes."""
        with self.db.transaction() as session:
            self._check_import_conflicts(session, commands)
            prepared = self._prepare_orders(session, commands)
            rows = repo.RowBatch()
            self._add_new_patients(prepared, rows)
            rows.insert(session)
            for start in range(0, len(commands), IMPORT_BATCH):
                batch = commands[start : start + IMPORT_BATCH]
                self._add_orders(batch, [actor] * len(batch), prepared, rows)
                rows.insert(session)
            self._audit(session, actor, "orders.imported", None, orders=len(commands))
        log.info("orders imported count=%d by=%s", len(commands), actor)
        if len(commands) >= ANALYZE_AFTER_IMPORT:
            # Until autovacuum gets to it, PostgreSQL would plan the board and worklist queries
            # with the statistics of the tables before the import (measured: 107 ms instead of 3 ms).
            self.db.refresh_statistics(("patients", "orders", "requested_procedures", "scheduled_steps"))
        return len(commands)

    def _add_orders(
        self, commands: Sequence[NewOrder], actors: Sequence[Actor], prepared: _PreparedOrders, rows: repo.RowBatch
    ) -> list[int]:
        """Add the rows of validated new orders whose keys are free, each with its actor as source,
        with ids ``prepared`` for them, to ``rows``; returns their ids in order. Their patients must
        be stored or added before."""
        patient_ids = prepared.patient_ids
        character_sets = [c.character_set or choose_character_set(order_texts(c)) for c in commands]
        order_ids = prepared.ids.take(Order, len(commands))
        order_rows = [
            {
                **vars(c.order),
                "patient_fk": patient_ids[(c.patient.patient_id, c.patient.issuer)],
                "character_set": character_set,
                "source": str(actor),
            }
            for c, character_set, actor in zip(commands, character_sets, actors, strict=True)
        ]
        rows.add(Order, _with_ids(order_ids, order_rows))
        procedures = [
            (order_id, c, character_set, _with_identifiers(p, c.order.accession_number))
            for order_id, c, character_set in zip(order_ids, commands, character_sets, strict=True)
            for p in c.procedures
        ]
        procedure_ids = prepared.ids.take(RequestedProcedure, len(procedures))
        procedure_rows = [{"order_fk": order_id, **_procedure_columns(p)} for order_id, _c, _cs, p in procedures]
        rows.add(RequestedProcedure, _with_ids(procedure_ids, procedure_rows))
        rows.add(
            ScheduledStep,
            [
                self._step_row(
                    order_id,
                    procedure_id,
                    patient_ids[(c.patient.patient_id, c.patient.issuer)],
                    c,
                    character_set,
                    p,
                    step,
                )
                for procedure_id, (order_id, c, character_set, p) in zip(procedure_ids, procedures, strict=True)
                for step in p.steps
            ],
        )
        return order_ids

    def _check_import_conflicts(self, session: Session, commands: Sequence[NewOrder]) -> None:
        def clashes(column: Any, values_by_index: dict[int, str], label: str) -> list[tuple[int, str]]:
            wanted = {v for v in values_by_index.values() if v}
            taken: set[str] = set()
            batch = sorted(wanted)
            for start in range(0, len(batch), 500):
                # "<> ''" lets SQLite use the partial unique index on the accession number.
                query = select(column).where(column.in_(batch[start : start + 500]), column != literal_column("''"))
                taken |= set(session.scalars(query))
            return [(i, f"{label} {v!r} is already stored") for i, v in values_by_index.items() if v in taken]

        problems = clashes(
            Order.accession_number, {i: c.order.accession_number for i, c in enumerate(commands)}, "accession number"
        )
        problems += clashes(
            RequestedProcedure.study_uid,
            {i: p.study_uid for i, c in enumerate(commands) for p in c.procedures},
            "study UID",
        )
        if problems:
            raise ValidationFailed([FieldProblem(f"[{i}]", message) for i, message in sorted(problems)])

    def _prepare_orders(
        self, session: Session, commands: Sequence[NewOrder], *, also: dict[type[Base], int] | None = None
    ) -> _PreparedOrders:
        """The reading half of storing new orders: their stored patients get the newest
        demographics (with their open items), and ids are reserved for the new patients, the
        orders and their procedures (and ``also`` for other tables), so that what remains is
        inserts only (`_schedule_orders`, `_add_orders`)."""
        latest: dict[tuple[str, str], PatientData] = {}
        for command in commands:  # the last row about a patient has the newest demographics
            latest[(command.patient.patient_id, command.patient.issuer)] = command.patient
        patient_ids: dict[tuple[str, str], int] = {}
        for stored in repo.patients_by_id(session, {key[0] for key in latest}):
            key = (stored.patient_id, stored.issuer)
            if key not in latest:
                continue
            patient_ids[key] = stored.id
            data = latest[key]
            if (stored.name, stored.birth_date, stored.sex) != (data.name, data.birth_date, data.sex):
                self._apply_patient(session, repo.get_patient(session, stored.id), data)
        new_patients = [data for key, data in latest.items() if key not in patient_ids]
        counts = {
            Patient: len(new_patients),
            Order: len(commands),
            RequestedProcedure: sum(len(command.procedures) for command in commands),
        }
        ids = self._new_ids.reserve(session, counts | (also or {}))
        return _PreparedOrders(patient_ids, new_patients, ids)

    def _add_new_patients(self, prepared: _PreparedOrders, rows: repo.RowBatch) -> None:
        new = prepared.new_patients
        new_ids = prepared.ids.take(Patient, len(new))
        rows.add(Patient, _with_ids(new_ids, [vars(p) for p in new]))
        prepared.patient_ids.update({(p.patient_id, p.issuer): i for p, i in zip(new, new_ids, strict=True)})

    def _step_row(
        self,
        order_id: int,
        procedure_id: int,
        patient_id: int,
        command: NewOrder,
        character_set: str,
        procedure: ProcedureData,
        step: StepData,
    ) -> dict[str, object]:
        return {
            "order_fk": order_id,
            "procedure_fk": procedure_id,
            "patient_fk": patient_id,
            "status": str(StepStatus.SCHEDULED),
            **_step_columns(step),
            **repo.worklist_columns(
                command.patient, command.order, procedure, step, StepStatus.SCHEDULED, character_set, self.zone
            ),
        }

    def export_items(self, include_final: bool = True) -> list[Item]:
        """Every worklist item, oldest start first (for ``ris export``)."""
        return self.find_worklist_items(WorklistQuery(include_final=include_final)).items

    # --- remote AEs ---------------------------------------------------------------------------

    def add_remote_ae(self, ae: RemoteAE, actor: Actor) -> RemoteAE:
        _raise_problems(_remote_ae_problems(ae))
        with self.db.transaction() as session:
            if repo.find_remote_ae(session, ae.ae_title):
                raise AlreadyExists(f"remote AE {ae.ae_title!r} already exists")
            row = RemoteAe()
            _apply_remote_ae(row, ae)
            session.add(row)
            session.flush()
            self._audit(session, actor, "remote_ae.added", None, ae_title=ae.ae_title, roles=sorted(ae.roles))
            return repo.remote_ae_view(row)

    def update_remote_ae(self, ae_title: str, ae: RemoteAE, actor: Actor) -> RemoteAE:
        """Change a remote AE (its title too): the same rules as for a new one."""
        _raise_problems(_remote_ae_problems(ae))
        with self.db.transaction() as session:
            row = repo.find_remote_ae(session, ae_title)
            if row is None:
                raise NotFound(f"remote AE {ae_title!r} does not exist")
            if ae.ae_title != ae_title and repo.find_remote_ae(session, ae.ae_title):
                raise AlreadyExists(f"remote AE {ae.ae_title!r} already exists")
            _apply_remote_ae(row, ae)
            session.flush()
            self._audit(
                session, actor, "remote_ae.changed", None, ae_title=ae_title, now=ae.ae_title, roles=sorted(ae.roles)
            )
            return repo.remote_ae_view(row)

    def echo_remote_ae(self, ae_title: str) -> EchoResult:
        """Verify the line to a registered AE with a C-ECHO (the admin's "Test" button)."""
        ae = self.get_remote_ae(ae_title)
        if ae is None:
            raise NotFound(f"remote AE {ae_title!r} does not exist")
        if not (ae.host and ae.port):
            return EchoResult(False, f"{ae_title} has no host and port to call")
        if self.echo_probe is None:
            return EchoResult(False, "this process cannot send a C-ECHO (no DICOM adapter wired)")
        result = self.echo_probe.echo(ae.ae_title, ae.host, ae.port)
        log.info("c-echo ae_title=%s ok=%s", ae_title, result.ok)
        return result

    def list_remote_aes(self, role: AeRole | None = None) -> list[RemoteAE]:
        with self.db.reading() as session:
            rows = session.scalars(select(RemoteAe).order_by(RemoteAe.ae_title))
            aes = [repo.remote_ae_view(row) for row in rows]
        return [ae for ae in aes if role is None or role in ae.roles]

    def get_remote_ae(self, ae_title: str) -> RemoteAE | None:
        with self.db.reading() as session:
            row = repo.find_remote_ae(session, ae_title)
            return repo.remote_ae_view(row) if row else None

    def remove_remote_ae(self, ae_title: str, actor: Actor) -> None:
        with self.db.transaction() as session:
            result = session.execute(delete(RemoteAe).where(RemoteAe.ae_title == ae_title))
            if not isinstance(result, CursorResult) or not result.rowcount:
                raise NotFound(f"remote AE {ae_title!r} does not exist")
            self._audit(session, actor, "remote_ae.removed", None, ae_title=ae_title)

    # --- MPPS -----------------------------------------------------------------------------------

    def record_mpps_create(self, sop_instance_uid: str, attributes: DicomJson, calling_ae: str) -> MppsView:
        """An N-CREATE: keep the new performed step, link it to the scheduled steps it names (they
        become STARTED) and enqueue its forwards, in one transaction."""
        _raise_problems([FieldProblem("AffectedSOPInstanceUID", m) for m in [uid_problem(sop_instance_uid)] if m])
        status = mpps.check_create(attributes)
        actor = Actor("dicom", calling_ae)
        with self.db.transaction() as session:
            if repo.find_performed_step(session, sop_instance_uid) is not None:
                raise AlreadyExists(f"performed procedure step {sop_instance_uid} already exists")
            summary = mpps.summarize(attributes)
            row = PerformedStep(
                sop_instance_uid=sop_instance_uid,
                status=str(status),
                calling_ae=calling_ae,
                study_uid=summary.study_uid,
                accession_number=summary.accession_number[:16],
                modality=summary.modality[:16],
                attributes=attributes,
                links=[],
            )
            session.add(row)
            event = self._mpps_event(session, row, "N-CREATE", calling_ae, attributes)
            enqueued = 0
            for reference in mpps.step_references(attributes):
                step = _single_match(session, reference)
                if step is not None and all(link.step_fk != step.id for link in row.links):
                    enqueued += self._link(session, row, step, actor, strict=False)
            enqueued += self._enqueue_forwards(session, row, event)
            session.flush()
            view = repo.mpps_view(row)
        self._outbox_written(enqueued)
        log.info(
            "mpps created uid=%s calling_ae=%s accession=%s steps=%s forwards=%d",
            sop_instance_uid,
            calling_ae,
            summary.accession_number,
            ",".join(link.sps_id for link in view.links) or "unscheduled",
            enqueued,
        )
        return view

    def record_mpps_set(self, sop_instance_uid: str, modification: DicomJson, calling_ae: str) -> MppsView:
        """An N-SET: merge it into the performed step, move the linked scheduled steps along and,
        on COMPLETED, enqueue the IANs; its forwards too. One transaction."""
        actor = Actor("dicom", calling_ae)
        with self.db.transaction() as session:
            row = repo.get_performed_step(session, sop_instance_uid, for_update=True)
            before = MppsStatus(row.status)
            outcome = mpps.apply_set(row.attributes, before, modification)
            row.attributes = outcome.attributes
            row.status = str(outcome.status)
            event = self._mpps_event(session, row, "N-SET", calling_ae, modification)
            enqueued = 0
            if outcome.status is not before:
                for link in row.links:
                    enqueued += self._follow_mpps(session, row, link.step, actor, strict=False)
            enqueued += self._enqueue_forwards(session, row, event)
            if outcome.status is MppsStatus.COMPLETED:
                enqueued += self._enqueue_ians(session, row)
            session.flush()
            view = repo.mpps_view(row)
        self._outbox_written(enqueued)
        if outcome.ignored:
            log.warning(
                "mpps n-set sent attributes it may not change; kept the stored values uid=%s calling_ae=%s "
                "attributes=%s",
                sop_instance_uid,
                calling_ae,
                ",".join(outcome.ignored),
            )
        log.info(
            "mpps set uid=%s calling_ae=%s status=%s accession=%s outbox=%d",
            sop_instance_uid,
            calling_ae,
            outcome.status,
            view.summary.accession_number,
            enqueued,
        )
        return view

    def get_mpps(self, sop_instance_uid: str) -> MppsView:
        with self.db.reading() as session:
            return repo.mpps_view(repo.get_performed_step(session, sop_instance_uid))

    def list_mpps_events(self, sop_instance_uid: str) -> list[MppsEvent]:
        """Every N-CREATE and N-SET of a performed step as received, oldest first."""
        with self.db.reading() as session:
            row = repo.get_performed_step(session, sop_instance_uid)
            return [repo.mpps_event(event) for event in row.events]

    def list_mpps(self, *, order_id: int | None = None, limit: int = 100) -> list[MppsView]:
        """Performed steps, newest first; with ``order_id`` those linked to that order's steps."""
        query = repo.performed_steps_select()
        if order_id is not None:
            query = query.where(
                PerformedStep.id.in_(
                    select(PerformedStepLink.performed_step_fk)
                    .join(ScheduledStep, ScheduledStep.id == PerformedStepLink.step_fk)
                    .where(ScheduledStep.order_fk == order_id)
                )
            )
        with self.db.reading() as session:
            rows = session.scalars(query.order_by(PerformedStep.id.desc()).limit(limit))
            return [repo.mpps_view(row) for row in rows]

    def list_unscheduled_mpps(self, limit: int = 100) -> list[MppsView]:
        """Performed steps that matched no scheduled step, newest first: the reconciliation list."""
        query = repo.performed_steps_select().where(repo.unscheduled_filter())
        with self.db.reading() as session:
            rows = session.scalars(query.order_by(PerformedStep.id.desc()).limit(limit))
            return [repo.mpps_view(row) for row in rows]

    def link_mpps(self, sop_instance_uid: str, step_id: int, actor: Actor) -> MppsView:
        """Reconcile: the performed step reports on this scheduled step after all. The step takes
        the performed step's status (a COMPLETED one completes it); linking twice changes nothing."""
        with self.db.transaction() as session:
            row = repo.get_performed_step(session, sop_instance_uid, for_update=True)
            step = repo.get_step(session, step_id)
            enqueued = 0
            if all(link.step_fk != step.id for link in row.links):
                enqueued = self._link(session, row, step, actor, strict=True)
                _log_when_committed(
                    session,
                    "mpps linked uid=%s step=%s accession=%s by=%s",
                    sop_instance_uid,
                    step.sps_id,
                    step.accession_number,
                    actor,
                )
            session.flush()
            view = repo.mpps_view(row)
        self._outbox_written(enqueued)
        return view

    def _mpps_event(
        self, session: Session, row: PerformedStep, kind: str, calling_ae: str, attributes: DicomJson
    ) -> PerformedStepEvent:
        event = PerformedStepEvent(kind=kind, calling_ae=calling_ae, received_at=self.clock(), attributes=attributes)
        row.events.append(event)
        session.flush()
        return event

    def _link(self, session: Session, row: PerformedStep, step: ScheduledStep, actor: Actor, *, strict: bool) -> int:
        row.links.append(PerformedStepLink(step=step, step_fk=step.id, linked_at=self.clock(), linked_by=str(actor)))
        return self._follow_mpps(session, row, step, actor, strict=strict)

    def _follow_mpps(
        self, session: Session, row: PerformedStep, step: ScheduledStep, actor: Actor, *, strict: bool
    ) -> int:
        """Move ``step`` to the status its performed step implies; returns the outbox tasks this
        wrote. A step that cannot get there (a canceled order, a step another performed step
        already completed) keeps its status: the modality's report is stored all the same.
        ``strict`` raises instead (manual linking)."""
        target = mpps.STEP_STATUS_FOR[MppsStatus(row.status)]
        try:
            path = transition_path(StepStatus(step.status), target)
        except InvalidTransition:
            if strict:
                raise
            log.warning(
                "mpps cannot move step uid=%s step=%s accession=%s from=%s to=%s",
                row.sop_instance_uid,
                step.sps_id,
                step.accession_number,
                step.status,
                target,
            )
            return 0
        enqueued = 0
        for status in path:
            self._set_status(step, status)
            self._audit(
                session, actor, f"step.{status.lower()}", step.order, step=step.sps_id, mpps=row.sop_instance_uid
            )
            enqueued += self._enqueue_status_to_his(session, step, status)
        return enqueued

    def _enqueue_status_to_his(self, session: Session, step: ScheduledStep, status: StepStatus) -> int:
        """Tell the HIS that a step started or completed (ORM^O01 SC), when the site wants it."""
        destination = self.settings.hl7_status_destination
        if not destination or status not in tasks.REPORTED_TO_HIS:
            return 0
        order, patient, procedure = step.order, step.patient, step.procedure
        at = self.clock().astimezone(self.zone)
        payload = {
            "subject": order.accession_number or step.sps_id,
            "control_id": new_short_id("RIS"),  # MSH-10, the same on a re-send
            "status": str(status),
            "at": f"{at:%Y%m%d%H%M%S}",
            "character_set": order.character_set,
            "patient_id": patient.patient_id,
            "issuer_of_patient_id": patient.issuer,
            "patient_name": patient.name,
            "placer_order_number": order.placer_order_number,
            "filler_order_number": order.filler_order_number,
            "accession_number": order.accession_number,
            "requested_procedure_id": procedure.requested_procedure_id,
            "procedure_code": [procedure.code_value, procedure.code_meaning, procedure.code_scheme],
            "sps_id": step.sps_id,
            "modality": step.modality,
            "study_uid": procedure.study_uid,
        }
        return self._enqueue(
            session,
            NewTask(
                kind=TaskKind.HL7_STATUS,
                destination=destination,
                dedupe_key=tasks.status_key(step.id, status, destination),
                ordering_key=tasks.status_ordering_key(order.id, destination),
                payload=payload,
                order_id=order.id,
            ),
        )

    def _enqueue_forwards(self, session: Session, row: PerformedStep, event: PerformedStepEvent) -> int:
        payload = {
            "subject": row.sop_instance_uid,
            "operation": event.kind,
            "sop_instance_uid": row.sop_instance_uid,
            "attributes": event.attributes,
        }
        return self._enqueue_for_each(
            session,
            RemoteAe.is_mpps_forward,
            lambda ae: NewTask(
                kind=TaskKind.MPPS_FORWARD,
                destination=ae.ae_title,
                dedupe_key=tasks.forward_key(event.id, ae.ae_title),
                ordering_key=tasks.forward_ordering_key(row.sop_instance_uid, ae.ae_title),
                payload=payload,
                order_id=_first_order_id(row),
                performed_step_id=row.id,
            ),
        )

    def _enqueue_ians(self, session: Session, row: PerformedStep) -> int:
        content = mpps.ian_attributes(row.sop_instance_uid, row.attributes, self.settings.mpps_ian_retrieve_ae_title)
        if content is None:
            log.warning("mpps completed without instances; no IAN uid=%s", row.sop_instance_uid)
            return 0
        return self._enqueue_for_each(
            session,
            RemoteAe.is_ian_destination,
            lambda ae: NewTask(
                kind=TaskKind.IAN,
                destination=ae.ae_title,
                dedupe_key=tasks.ian_key(row.sop_instance_uid, ae.ae_title),
                # One SOP Instance UID per notification, kept for every attempt: a receiver
                # sees a re-sent IAN as the same instance (0111 duplicate), not a new one.
                payload={"subject": row.sop_instance_uid, "sop_instance_uid": new_uid(), "attributes": content},
                order_id=_first_order_id(row),
                performed_step_id=row.id,
            ),
        )

    def _enqueue_for_each(self, session: Session, role_flag: Any, task_for: Callable[[RemoteAe], NewTask]) -> int:
        """One task per remote AE with ``role_flag``; how many were added."""
        return sum(self._enqueue(session, task_for(ae)) for ae in repo.remote_aes_with_flag(session, role_flag))

    # --- outbox ----------------------------------------------------------------------------------

    def _enqueue(self, session: Session, task: NewTask) -> int:
        """Add ``task`` to the outbox in the caller's transaction; 1 if added, 0 if it was there."""
        return int(repo.insert_task(session, task, self.clock()))

    def _outbox_written(self, enqueued: int) -> None:
        if enqueued:
            self.outbox_ready.set()

    def claim_outbox_tasks(
        self, *, destinations: int, lease: float, exclude_destinations: Collection[str] = ()
    ) -> list[OutboxTaskView]:
        """Take the oldest due task of up to ``destinations`` destinations (one each, so a
        destination gets one delivery at a time): each counts an attempt and is hidden from other
        workers for ``lease`` seconds, so a worker that dies mid-delivery leaves it for a retry."""
        now = self.clock()
        with self.db.transaction() as session:
            candidates = session.scalars(repo.due_tasks_select(now, exclude_destinations, limit=destinations * 8))
            oldest: dict[str, OutboxTask] = {}
            for row in candidates:
                if len(oldest) == destinations:
                    break
                oldest.setdefault(row.destination, row)
            for row in oldest.values():
                row.attempts += 1
                row.next_attempt_at = now + dt.timedelta(seconds=lease)
            return [repo.outbox_task_view(row) for row in oldest.values()]

    def complete_outbox_task(self, task_id: int) -> None:
        """The destination confirmed the delivery."""
        with self.db.transaction() as session:
            row = _get_task(session, task_id)
            row.state = str(TaskState.SENT)
            row.sent_at = self.clock()
            row.last_error = ""

    def fail_outbox_task(self, task_id: int, error: str, *, retryable: bool = True) -> OutboxTaskView:
        """A delivery attempt failed: try again after the backoff, or give up (FAILED) when the
        task has been pending longer than the give-up age or cannot succeed."""
        now = self.clock()
        with self.db.transaction() as session:
            row = _get_task(session, task_id)
            row.last_error = error[:2000]
            if not retryable or self.retry_policy.gives_up(now - row.pending_since):
                row.state = str(TaskState.FAILED)
            else:
                row.next_attempt_at = now + dt.timedelta(seconds=self.retry_policy.delay(row.attempts, random.random()))
            return repo.outbox_task_view(row)

    def list_outbox_tasks(
        self,
        *,
        state: TaskState | None = None,
        kind: TaskKind | None = None,
        order_id: int | None = None,
        performed_step_id: int | None = None,
        limit: int = 100,
    ) -> list[OutboxTaskView]:
        """Outbox tasks, newest first, optionally of one state, kind, order or performed step."""
        query = select(OutboxTask)
        for column, value in (
            (OutboxTask.state, state and str(state)),
            (OutboxTask.kind, kind and str(kind)),
            (OutboxTask.order_fk, order_id),
            (OutboxTask.performed_step_fk, performed_step_id),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.db.reading() as session:
            rows = session.scalars(query.order_by(OutboxTask.id.desc()).limit(limit))
            return [repo.outbox_task_view(row) for row in rows]

    def outbox_depth(self) -> dict[tuple[str, str], int]:
        """How many tasks are in each (state, kind), every pair listed (0 when none)."""
        with self.db.reading() as session:
            rows = session.execute(
                select(OutboxTask.state, OutboxTask.kind, func.count()).group_by(OutboxTask.state, OutboxTask.kind)
            ).all()
        depth = {(str(state), str(kind)): 0 for state in TaskState for kind in TaskKind}
        depth.update({(state, kind): count for state, kind, count in rows})
        return depth

    def retry_outbox_task(self, task_id: int, actor: Actor) -> OutboxTaskView:
        """Send a FAILED task again (its give-up age starts anew), or a PENDING one now instead of
        after its backoff. A SENT task is never sent twice."""
        now = self.clock()
        with self.db.transaction() as session:
            row = _get_task(session, task_id)
            if row.state == TaskState.SENT:
                raise InvalidTransition(f"outbox task {task_id} was already sent; it is not sent twice")
            if row.state == TaskState.FAILED:
                row.state = str(TaskState.PENDING)
                row.pending_since = now
                row.attempts = 0
            row.next_attempt_at = now
            self._audit(
                session,
                actor,
                "outbox.retried",
                session.get(Order, row.order_fk) if row.order_fk else None,
                task=task_id,
                kind=row.kind,
                destination=row.destination,
            )
            view = repo.outbox_task_view(row)
        self._outbox_written(1)
        log.info("outbox task retry task=%s kind=%s destination=%s by=%s", task_id, view.kind, view.destination, actor)
        return view

    # --- API tokens -----------------------------------------------------------------------------

    def create_api_token(self, username: str, name: str, actor: Actor) -> str:
        """A new token for ``username``'s programs; returns the token itself, which is not kept
        (only its hash), so it can be shown once."""
        token = new_token()
        with self.db.transaction() as session:
            user = _get_user(session, username)
            if not user.active:
                raise InvalidTransition(f"user {username!r} is disabled; enable it before giving it a token")
            row = ApiToken(user_fk=user.id, name=name[:64], token_hash=token_hash(token), created_at=self.clock())
            session.add(row)
            session.flush()
            self._audit(session, actor, "api_token.created", None, username=username, token=row.id, name=row.name)
        log.info("api token created user=%s token=%s by=%s", username, row.id, actor)
        return token

    def authenticate_token(self, token: str) -> UserView | None:
        """The active user ``token`` belongs to (and the token's last use is noted), else None."""
        if not token:
            return None
        with self.db.reading() as session:
            found = session.execute(
                select(ApiToken.id, ApiToken.last_used_at, User)
                .join(User, User.id == ApiToken.user_fk)
                .where(ApiToken.token_hash == token_hash(token), User.active.is_(True))
            ).one_or_none()
            if found is None:
                return None
            token_id, last_used_at, user = found
            view = _user_view(user)
        now = self.clock()
        # Noted at most once per TOKEN_USE_RESOLUTION: a write per request would make every API
        # read wait for the database's writer (one at a time on SQLite).
        if last_used_at is None or now - last_used_at >= TOKEN_USE_RESOLUTION:
            with self.db.transaction() as session:
                session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        return view

    def list_api_tokens(self, username: str | None = None) -> list[ApiTokenView]:
        query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_fk).order_by(ApiToken.id)
        if username is not None:
            query = query.where(User.username == username)
        with self.db.reading() as session:
            return [
                ApiTokenView(row.id, owner, row.name, row.created_at, row.last_used_at)
                for row, owner in session.execute(query)
            ]

    def revoke_api_token(self, token_id: int, actor: Actor) -> None:
        with self.db.transaction() as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"API token {token_id} does not exist")
            session.delete(row)
            self._audit(session, actor, "api_token.revoked", None, token=token_id, name=row.name)
        log.info("api token revoked token=%s by=%s", token_id, actor)

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: Role | str, actor: Actor) -> UserView:
        """A new web user; the password is stored only as a salted hash."""
        _raise_problems(new_user_problems(username, password, str(role)))
        with self.db.transaction() as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise AlreadyExists(f"user {username!r} already exists")
            row = User(username=username, password_hash=generate_password_hash(password), role=str(role), active=True)
            session.add(row)
            session.flush()
            self._audit(session, actor, "user.created", None, username=username, role=str(role))
        log.info("user created username=%s role=%s by=%s", username, role, actor)
        return _user_view(row)

    def authenticate(self, username: str, password: str) -> UserView | None:
        """The active user with this password, else None. An unknown name costs the same hash
        check as a wrong password, so response times do not tell which names exist."""
        with self.db.reading() as session:
            row = session.scalar(select(User).where(User.username == username))
        password_matches = check_password_hash(row.password_hash if row else _UNKNOWN_USER_HASH, password)
        if row is None or not password_matches or not row.active:
            log.info(
                "login refused username=%s known=%s active=%s", username, row is not None, bool(row and row.active)
            )
            return None
        return _user_view(row)

    def get_user(self, username: str) -> UserView | None:
        with self.db.reading() as session:
            row = session.scalar(select(User).where(User.username == username))
            return _user_view(row) if row else None

    def list_users(self) -> list[UserView]:
        with self.db.reading() as session:
            return [_user_view(row) for row in session.scalars(select(User).order_by(User.username))]

    def has_users(self) -> bool:
        with self.db.reading() as session:
            return session.scalar(select(User.id).limit(1)) is not None

    def set_user_active(self, username: str, active: bool, actor: Actor) -> UserView:
        """Disable a user (who can then no longer log in; open sessions end) or enable them again."""
        with self.db.transaction() as session:
            row = _get_user(session, username)
            row.active = active
            self._audit(session, actor, "user.enabled" if active else "user.disabled", None, username=username)
            return _user_view(row)

    def set_password(self, username: str, password: str, actor: Actor) -> None:
        _raise_problems([FieldProblem("password", m) for m in [password_problem(password)] if m])
        with self.db.transaction() as session:
            _get_user(session, username).password_hash = generate_password_hash(password)
            self._audit(session, actor, "user.password_set", None, username=username)

    # --- health -------------------------------------------------------------------------------

    def schema_status(self) -> SchemaStatus:
        return self.db.schema_status()

    # --- shared pieces --------------------------------------------------------------------------

    def _load_order(self, session: Session, key: OrderKey | int, expected_version: int | None = None) -> Order:
        order = repo.get_order(session, key) if isinstance(key, int) else repo.require_order(session, key)
        _check_version(order.version, expected_version, f"order {order.id}")
        return order

    def _check_keys_free(self, session: Session, accession: str, procedures: Iterable[ProcedureData]) -> None:
        """Raise AlreadyExists when another order has this accession number ("" has none) or one
        of the procedures' study UIDs."""
        uids = [p.study_uid for p in procedures if p.study_uid]
        if not accession and not uids:
            return
        accession_taken, uid_taken = repo.order_keys_taken(session, accession, uids)
        if accession_taken:
            raise AlreadyExists(f"accession number {accession!r} is already used by another order")
        if uid_taken:
            raise AlreadyExists("a study instance UID of this order is already used by another order")

    def _new_procedure(self, data: ProcedureData, fallback_id: str) -> RequestedProcedure:
        data = _with_identifiers(data, fallback_id)
        procedure = RequestedProcedure(**_procedure_columns(data))
        procedure.steps = [self._new_step(step) for step in data.steps]
        return procedure

    def _new_step(self, data: StepData) -> ScheduledStep:
        step = ScheduledStep(status=str(StepStatus.SCHEDULED), item={})
        _apply_step(step, _with_sps_id(data))
        return step

    def _audit(self, session: Session, actor: Actor, action: str, order: Order | int | None, **details: Any) -> None:
        order_id = order.id if isinstance(order, Order) else order
        audit = self._audit_row(actor, action, order_id, **details)
        session.connection().execute(repo.plain_insert(AuditEvent.__table__), audit)

    def _audit_row(self, actor: Actor, action: str, order_id: int | None, **details: Any) -> dict[str, Any]:
        return {"at": self.clock(), "actor": str(actor), "action": action, "order_fk": order_id, "details": details}


# --- module helpers -----------------------------------------------------------------------------

T = TypeVar("T")


def _steps(order: Order) -> list[ScheduledStep]:
    return [step for procedure in order.procedures for step in procedure.steps]


def _with_identifiers(data: ProcedureData, fallback_id: str) -> ProcedureData:
    """The procedure with the identifiers the order left out made up (RP ID, study UID, SPS IDs)."""
    return dataclasses.replace(
        data,
        requested_procedure_id=data.requested_procedure_id or fallback_id or new_short_id("RP"),
        study_uid=data.study_uid or new_uid(),
        steps=tuple(_with_sps_id(step) for step in data.steps),
    )


def _with_sps_id(step: StepData) -> StepData:
    return step if step.sps_id else dataclasses.replace(step, sps_id=new_short_id("SPS"))


def _has_sps_id(sps_id: str) -> Callable[[ScheduledStep], bool]:
    return lambda step: bool(sps_id) and step.sps_id == sps_id


def _has_rp_id(rp_id: str) -> Callable[[RequestedProcedure], bool]:
    return lambda procedure: bool(rp_id) and procedure.requested_procedure_id == rp_id


def _match(rows: list[T], index: int, same: Callable[[T], bool]) -> T | None:
    """The row the command's entry at ``index`` means: the one with its identifier, else the one
    at the same position."""
    for row in rows:
        if same(row):
            return row
    return rows[index] if index < len(rows) else None


def _step_columns(step: StepData) -> dict[str, object]:
    protocol_value, protocol_scheme, protocol_meaning = _code_columns(step.protocol)
    return {
        "sps_id": step.sps_id,
        "modality": step.modality,
        "station_ae": step.station_ae,
        "station_name": step.station_name,
        "start_utc": step.start,
        "performing_physician": normalize_person_name(step.performing_physician),
        "description": step.description,
        "protocol_value": protocol_value,
        "protocol_scheme": protocol_scheme,
        "protocol_meaning": protocol_meaning,
        "location": step.location,
    }


def _apply_step(step: ScheduledStep, data: StepData) -> None:
    for name, value in _step_columns(data).items():
        setattr(step, name, value)


def _schedule_differs(step: ScheduledStep, data: StepData) -> bool:
    wanted = _step_columns(data)
    return any(getattr(step, name) != value for name, value in wanted.items() if name != "sps_id")


def _procedure_columns(data: ProcedureData) -> dict[str, object]:
    code_value, code_scheme, code_meaning = _code_columns(data.code)
    return {
        "requested_procedure_id": data.requested_procedure_id,
        "study_uid": data.study_uid,
        "description": data.description,
        "code_value": code_value,
        "code_scheme": code_scheme,
        "code_meaning": code_meaning,
    }


def _code_columns(code: CodedEntry | None) -> tuple[str, str, str]:
    return (code.value, code.scheme, code.meaning) if code else ("", "", "")


def _require_reschedulable(step: ScheduledStep) -> None:
    if StepStatus(step.status) not in RESCHEDULABLE_STATUSES:
        raise InvalidTransition(f"step {step.sps_id} is {step.status}; only a step not yet started can be rescheduled")


def _check_version(actual: int, expected: int | None, what: str) -> None:
    if expected is not None and actual != expected:
        raise ConcurrentUpdate(f"{what} was changed by someone else (version {actual}, yours {expected}); reload it")


def _with_ids(ids: Sequence[int], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` as the rows with (reserved) primary keys ``ids``."""
    return [row | {"id": new_id} for row, new_id in zip(rows, ids, strict=True)]


def _worklist_result(query: WorklistQuery, rows: Sequence[Row[Any]]) -> WorklistResult:
    items = [row.item for row in rows]
    truncated = query.limit is not None and len(items) > query.limit
    return WorklistResult(items[: query.limit] if truncated else items, truncated)


def _log_when_committed(session: Session, message: str, *args: object) -> None:
    """An INFO line saying a change was stored, written once it has been (not if it rolls back)."""
    after_commit(session, functools.partial(log.info, message, *args))


def _log_scheduled(command: NewOrder, order_id: int, actor: Actor) -> None:
    steps = sum(len(procedure.steps) for procedure in command.procedures)
    log.info(
        "order scheduled order=%s accession=%s steps=%d by=%s", order_id, command.order.accession_number, steps, actor
    )


def _journal_row(
    message: InboundMessage, reply: Reply, order_id: int | None, received_at: dt.datetime
) -> dict[str, Any]:
    return {
        "received_at": received_at,
        "peer": message.peer,
        "sending_application": message.sending_application,
        "sending_facility": message.sending_facility,
        "control_id": message.control_id,
        "message_type": message.message_type,
        "raw": message.raw,
        "ack_code": reply.code,
        "ack": reply.body,
        "error": reply.error,
        "order_fk": order_id,
    }


def _raise_problems(problems: list[FieldProblem]) -> None:
    if problems:
        raise ValidationFailed(problems)


def _single_match(session: Session, reference: mpps.StepReference) -> ScheduledStep | None:
    """The scheduled step ``reference`` names: the first link rule that finds exactly one."""
    for keys in mpps.link_keys(reference):
        found = repo.steps_matching(session, keys)
        if len(found) == 1:
            return found[0]
    return None


def _first_order_id(row: PerformedStep) -> int | None:
    return row.links[0].step.order_fk if row.links else None


def _get_task(session: Session, task_id: int) -> OutboxTask:
    row = session.get(OutboxTask, task_id)
    if row is None:
        raise NotFound(f"outbox task {task_id} does not exist")
    return row


def _user_view(row: User) -> UserView:
    return UserView(username=row.username, role=Role(row.role), active=row.active)


def _remote_ae_problems(ae: RemoteAE) -> list[FieldProblem]:
    problems = []
    if message := ae_title_problem(ae.ae_title):
        problems.append(FieldProblem("ae_title", message))
    if not 0 <= ae.port <= 65535:
        problems.append(FieldProblem("port", "must be between 0 and 65535"))
    needs_address = ae.roles & {AeRole.IAN_DESTINATION, AeRole.MPPS_FORWARD}
    if needs_address and not (ae.host and ae.port):
        problems.append(FieldProblem("host", "a destination needs a host and a port"))
    if not ae.roles:
        problems.append(FieldProblem("roles", "choose at least one role"))
    return problems


def _apply_remote_ae(row: RemoteAe, ae: RemoteAE) -> None:
    row.ae_title, row.host, row.port, row.description = ae.ae_title, ae.host, ae.port, ae.description
    row.is_station = AeRole.STATION in ae.roles
    row.is_ian_destination = AeRole.IAN_DESTINATION in ae.roles
    row.is_mpps_forward = AeRole.MPPS_FORWARD in ae.roles
    row.own_items_only = ae.own_items_only


def _get_user(session: Session, username: str) -> User:
    row = session.scalar(select(User).where(User.username == username))
    if row is None:
        raise NotFound(f"user {username!r} does not exist")
    return row


# Checked against when the user name is unknown (see RisService.authenticate).
_UNKNOWN_USER_HASH = generate_password_hash("no such user")


def _new_orders_only(commands: Sequence[OrderCommand]) -> TypeGuard[Sequence[ScheduleOrder]]:
    return all(isinstance(command, ScheduleOrder) for command in commands)


@dataclasses.dataclass(frozen=True)
class _PreparedOrders:
    """New orders ready to be inserted (see `RisService._prepare_orders`)."""

    patient_ids: dict[tuple[str, str], int]  # (patient id, issuer) -> row id; new patients once inserted
    new_patients: list[PatientData]
    ids: repo.ReservedIds


@dataclasses.dataclass(frozen=True)
class _Received:
    """A message waiting for its group (see `RisService.receive_message`)."""

    message: InboundMessage
    commands: Sequence[ScheduleOrder]
    actor: Actor
    answer: Answer


class _CommandRejected(Exception):
    """Leaves the transaction of ``receive_message`` (rolling it back) with the failed command."""

    def __init__(self, failure: CommandFailed) -> None:
        super().__init__(str(failure.error))
        self.failure = failure


def _replay(stored: repo.StoredReply, message: InboundMessage) -> Receipt:
    if stored.raw != message.raw:
        log.warning(
            "control id reused with different content sender=%s/%s control_id=%s: answered with the stored reply",
            message.sending_application,
            message.sending_facility,
            message.control_id,
        )
    log.info("message replayed control_id=%s ack=%s journal=%s", message.control_id, stored.ack_code, stored.id)
    return Receipt(Reply(stored.ack_code, stored.ack, stored.error), replayed=True, journal_id=stored.id)
