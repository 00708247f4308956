"""Order use cases on a real database: schedule, update, reschedule, status changes, patients."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from ris.db.models import AuditEvent, ScheduledStep
from ris.domain.errors import AlreadyExists, ConcurrentUpdate, InvalidTransition, NotFound, ValidationFailed
from ris.domain.model import Actor, OrderKey, PatientData
from ris.domain.status import StepStatus
from ris.services import RisService
from tests.support.orders import local, new_order, replace_step, step

CLERK = Actor("user", "clerk")


def stored_items(service: RisService) -> list[ScheduledStep]:
    with service.db.reading() as session:
        return list(session.scalars(select(ScheduledStep).order_by(ScheduledStep.id)))


def audit_actions(service: RisService) -> list[str]:
    with service.db.reading() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_schedule_order_stores_the_worklist_item(service: RisService) -> None:
    command = new_order(patient={"name": "ŞAHIN^AYŞE"})
    view = service.schedule_order(command, CLERK)
    assert view.order.accession_number == command.order.accession_number
    assert [s.status for s in view.steps] == [StepStatus.SCHEDULED]
    (row,) = stored_items(service)
    assert (row.start_date, row.start_time, row.start_local) == ("20261123", "093000", "20261123093000")
    assert row.start_utc == dt.datetime(2026, 11, 23, 8, 30, tzinfo=dt.UTC)
    assert row.patient_name == "ŞAHIN^AYŞE"
    assert row.patient_name_folded == "ŞAHIN^AYŞE"
    assert row.item["SpecificCharacterSet"] == "ISO_IR 192"  # not representable in Latin-1
    assert row.item["ScheduledProcedureStepSequence"][0]["ScheduledStationAETitle"] == "CT_RAD_01"
    assert audit_actions(service) == ["order.scheduled"]


def test_missing_identifiers_are_made_up(service: RisService) -> None:
    command = new_order(
        order={"accession_number": ""},
        procedure={"requested_procedure_id": "", "study_uid": ""},
        steps=(step(), step(modality="MR", station_ae="MR_3T_01")),
    )
    view = service.schedule_order(command, CLERK)
    (procedure,) = view.procedures
    assert procedure.study_uid.startswith("2.25.")
    assert procedure.requested_procedure_id.startswith("RP")
    assert len(procedure.requested_procedure_id) <= 16
    sps_ids = [s.sps_id for s in procedure.steps]
    assert len(set(sps_ids)) == 2
    assert all(len(i) <= 16 for i in sps_ids)
    assert view.character_set == "ISO_IR 100"


def test_invalid_order_is_refused_and_nothing_stored(service: RisService) -> None:
    with pytest.raises(ValidationFailed, match="modality"):
        service.schedule_order(replace_step(new_order(), modality="XX"), CLERK)
    assert stored_items(service) == []


def test_accession_and_study_uid_are_unique(service: RisService) -> None:
    first = service.schedule_order(new_order(), CLERK)
    with pytest.raises(AlreadyExists, match="accession number"):
        service.schedule_order(new_order(order={"accession_number": first.order.accession_number}), CLERK)
    with pytest.raises(AlreadyExists, match="study instance UID"):
        service.schedule_order(new_order(procedure={"study_uid": first.procedures[0].study_uid}), CLERK)
    assert len(stored_items(service)) == 1


def test_a_second_order_updates_the_patient_everywhere(service: RisService) -> None:
    service.schedule_order(new_order(patient={"patient_id": "P1", "name": "MEIER^ANNA"}), CLERK)
    service.schedule_order(new_order(patient={"patient_id": "P1", "name": "MEIER-LANG^ANNA"}), CLERK)
    assert [row.patient_name for row in stored_items(service)] == ["MEIER-LANG^ANNA"] * 2


def test_update_order_changes_details_and_schedule(service: RisService) -> None:
    command = new_order()
    view = service.schedule_order(command, CLERK)
    changed = replace_step(
        dataclasses.replace(command, order=dataclasses.replace(command.order, reason="Verdacht auf Pneumonie")),
        start=local(2026, 11, 24, 14),
        station_ae="CT_RAD_02",
    )
    updated = service.update_order(view.id, changed, CLERK, expected_version=view.version)
    assert updated.order.reason == "Verdacht auf Pneumonie"
    assert updated.steps[0].station_ae == "CT_RAD_02"
    assert updated.version > view.version
    (row,) = stored_items(service)
    assert row.start_local == "20261124140000"
    assert row.item["ReasonForTheRequestedProcedure"] == "Verdacht auf Pneumonie"
    assert row.item["ScheduledProcedureStepSequence"][0]["ScheduledStationAETitle"] == "CT_RAD_02"
    with pytest.raises(ConcurrentUpdate):
        service.update_order(view.id, changed, CLERK, expected_version=view.version)


def test_update_order_by_key_adds_steps_and_keeps_others(service: RisService) -> None:
    command = new_order()
    service.schedule_order(command, CLERK)
    first = command.procedures[0].steps[0]
    extra = step(sps_id="EXTRA1", modality="CT", start=local(2026, 11, 25))
    two_steps = dataclasses.replace(
        command, procedures=(dataclasses.replace(command.procedures[0], steps=(first, extra)),)
    )
    view = service.update_order(OrderKey(accession_number=command.order.accession_number), two_steps, CLERK)
    assert [s.sps_id for s in view.steps] == [first.sps_id, "EXTRA1"]


def test_a_started_step_cannot_be_rescheduled(service: RisService) -> None:
    command = new_order()
    view = service.schedule_order(command, CLERK)
    service.set_step_status(view.steps[0].id, StepStatus.STARTED, Actor("dicom", "CT_RAD_01"))
    with pytest.raises(InvalidTransition, match="STARTED"):
        service.update_order(view.id, replace_step(command, start=local(2026, 12, 1)), CLERK)
    with pytest.raises(InvalidTransition):
        service.reschedule_step(view.steps[0].id, local(2026, 12, 1), CLERK)
    # Details that do not touch the schedule can still be corrected.
    fixed = dataclasses.replace(command, order=dataclasses.replace(command.order, comments="Allergie: Jod"))
    assert service.update_order(view.id, fixed, CLERK).order.comments == "Allergie: Jod"


def test_study_uid_of_a_scheduled_procedure_cannot_change(service: RisService) -> None:
    command = new_order()
    view = service.schedule_order(command, CLERK)
    moved = dataclasses.replace(command, procedures=(dataclasses.replace(command.procedures[0], study_uid="1.2.3.4"),))
    with pytest.raises(ValidationFailed, match="study_uid"):
        service.update_order(view.id, moved, CLERK)


def test_reschedule_step(service: RisService) -> None:
    view = service.schedule_order(new_order(), CLERK)
    moved = service.reschedule_step(
        view.steps[0].id,
        local(2026, 11, 30, 7, 15),
        CLERK,
        station_ae="CT_RAD_02",
        expected_version=view.steps[0].version,
    )
    assert moved.start == local(2026, 11, 30, 7, 15)
    assert moved.station_ae == "CT_RAD_02"
    (row,) = stored_items(service)
    assert row.item["ScheduledProcedureStepSequence"][0]["ScheduledProcedureStepStartTime"] == "071500"
    with pytest.raises(ValidationFailed, match="station_ae"):
        service.reschedule_step(view.steps[0].id, local(2026, 11, 30), CLERK, station_ae="X" * 17)
    with pytest.raises(ConcurrentUpdate):
        service.reschedule_step(view.steps[0].id, local(2026, 11, 30), CLERK, expected_version=view.steps[0].version)
    with pytest.raises(NotFound):
        service.reschedule_step(999_999, local(2026, 11, 30), CLERK)


@pytest.mark.parametrize(
    ("use_case", "status"),
    [
        ("cancel_order", StepStatus.CANCELED),
        ("discontinue_order", StepStatus.DISCONTINUED),
        ("check_in", StepStatus.ARRIVED),
    ],
)
def test_order_status_use_cases(service: RisService, use_case: str, status: StepStatus) -> None:
    view = service.schedule_order(new_order(), CLERK)
    after = getattr(service, use_case)(OrderKey(placer_order_number=view.order.placer_order_number), CLERK)
    assert [s.status for s in after.steps] == [status]
    (row,) = stored_items(service)
    assert row.status == status
    assert row.item["ScheduledProcedureStepSequence"][0]["ScheduledProcedureStepStatus"] == status
    assert audit_actions(service)[-1] == f"order.{status.lower()}"


def test_a_replayed_cancel_changes_nothing_but_a_cancelled_order_cannot_start(service: RisService) -> None:
    view = service.schedule_order(new_order(), CLERK)
    service.cancel_order(view.id, CLERK)
    service.cancel_order(view.id, CLERK)
    assert audit_actions(service).count("order.canceled") == 1
    with pytest.raises(InvalidTransition, match="already CANCELED"):
        service.change_order_status(view.id, StepStatus.STARTED, CLERK)


def test_order_status_change_is_all_or_nothing(service: RisService) -> None:
    command = new_order(steps=(step(sps_id="S1"), step(sps_id="S2")))
    view = service.schedule_order(command, CLERK)
    service.set_step_status(view.steps[0].id, StepStatus.STARTED, CLERK)
    with pytest.raises(InvalidTransition):
        service.check_in(view.id, CLERK)  # S1 has started; it cannot go back to ARRIVED
    assert [s.status for s in service.get_order(view.id).steps] == [StepStatus.STARTED, StepStatus.SCHEDULED]
    service.set_step_status(view.steps[0].id, StepStatus.COMPLETED, CLERK)
    after = service.cancel_order(view.id, CLERK)  # final steps are left alone
    assert [s.status for s in after.steps] == [StepStatus.COMPLETED, StepStatus.CANCELED]


def test_step_status_uses_the_transition_table(service: RisService) -> None:
    view = service.schedule_order(new_order(), CLERK)
    step_id = view.steps[0].id
    with pytest.raises(InvalidTransition):
        service.set_step_status(step_id, StepStatus.COMPLETED, CLERK)
    started = service.set_step_status(step_id, StepStatus.STARTED, CLERK)
    with pytest.raises(ConcurrentUpdate):
        service.set_step_status(step_id, StepStatus.COMPLETED, CLERK, expected_version=view.steps[0].version)
    assert service.set_step_status(step_id, StepStatus.COMPLETED, CLERK, started.version).status == "COMPLETED"


def test_unknown_orders_are_reported(service: RisService) -> None:
    with pytest.raises(NotFound, match="accession 'NOPE'"):
        service.cancel_order(OrderKey(accession_number="NOPE"), CLERK)
    with pytest.raises(NotFound):
        service.get_order(12345)
    assert service.find_order(OrderKey(filler_order_number="NOPE")) is None


def test_update_patient_changes_open_items_only(service: RisService) -> None:
    open_order = service.schedule_order(new_order(patient={"patient_id": "P7"}), CLERK)
    done = service.schedule_order(new_order(patient={"patient_id": "P7"}), CLERK)
    service.cancel_order(done.id, CLERK)
    changed = service.update_patient(PatientData("P7", "KLINIKUM", "MÜLLER^HANS^PETER", "19600102", "M"), CLERK)
    assert changed == 1
    rows = {row.order_fk: row for row in stored_items(service)}
    assert rows[open_order.id].item["PatientName"] == "MÜLLER^HANS^PETER"
    assert rows[open_order.id].patient_birth_date == "19600102"
    assert rows[done.id].item["PatientName"] == "MÜLLER^HANS"  # what the finished step was done under
    with pytest.raises(NotFound):
        service.update_patient(PatientData("P404", "KLINIKUM", "X^Y"), CLERK)
    with pytest.raises(ValidationFailed, match=r"patient\.name"):
        service.update_patient(PatientData("P7", "KLINIKUM", ""), CLERK)


def test_merge_moves_orders_to_the_surviving_patient(service: RisService) -> None:
    duplicate = service.schedule_order(new_order(patient={"patient_id": "TMP1", "name": "DOE^JANE"}), CLERK)
    moved = service.merge_patients(
        PatientData("P9", "KLINIKUM", "DOE^JANE", "19700101", "F"), "TMP1", "KLINIKUM", CLERK
    )
    assert moved == 1
    assert service.get_order(duplicate.id).patient.patient_id == "P9"
    (row,) = stored_items(service)
    assert (row.patient_id, row.item["PatientID"]) == ("P9", "P9")
    with pytest.raises(NotFound):
        service.merge_patients(PatientData("P9", "KLINIKUM", "DOE^JANE"), "TMP404", "KLINIKUM", CLERK)
    with pytest.raises(ValidationFailed):
        service.merge_patients(PatientData("P9", "KLINIKUM", "DOE^JANE"), "P9", "KLINIKUM", CLERK)
