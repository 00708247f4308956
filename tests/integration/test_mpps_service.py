"""MPPS use cases on the database: the state machine, linking to scheduled steps, the history,
reconciliation, and the outbox tasks written in the same transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset

from ris.db import Database
from ris.domain.errors import AlreadyExists, InvalidTransition, MissingAttributeValue, NotFound
from ris.domain.model import Actor, AeRole, OrderView, RemoteAE, StepData
from ris.domain.mpps import MppsStatus
from ris.domain.outbox import TaskKind, TaskState
from ris.domain.status import StepStatus
from ris.domain.worklist import WorklistQuery
from ris.services import RisService
from ris.settings import Settings
from tests.support.mpps import as_json, n_create, n_set, reference_to, series, step_reference
from tests.support.orders import new_order, step

ANNA = Actor("user", "anna")
UID = "1.2.826.0.1.3680043.10.1474.77.1"


def _order(service: RisService, steps: tuple[StepData, ...] | None = None) -> OrderView:
    return service.schedule_order(new_order(steps=steps), Actor("cli", "test"))


def _status(service: RisService, order: OrderView, index: int = 0) -> StepStatus:
    return service.get_order(order.id).steps[index].status


def _destinations(service: RisService) -> None:
    service.add_remote_ae(RemoteAE("PACS_A", "127.0.0.1", 11190, frozenset({AeRole.IAN_DESTINATION})), ANNA)
    service.add_remote_ae(RemoteAE("REPORTING", "127.0.0.1", 11191, frozenset({AeRole.IAN_DESTINATION})), ANNA)
    service.add_remote_ae(RemoteAE("MIRROR", "127.0.0.1", 11192, frozenset({AeRole.MPPS_FORWARD})), ANNA)


def _create(service: RisService, *references: Dataset, uid: str = UID, **overrides: object) -> None:
    service.record_mpps_create(uid, as_json(n_create(*references, **overrides)), "CT_RAD_01")


def test_in_progress_starts_the_step_and_completed_ends_it(service: RisService) -> None:
    order = _order(service)
    _create(service, reference_to(order))
    assert _status(service, order) is StepStatus.STARTED
    items = service.find_worklist_items(WorklistQuery()).items
    assert [i["ScheduledProcedureStepSequence"][0]["ScheduledProcedureStepStatus"] for i in items] == ["STARTED"]

    view = service.record_mpps_set(UID, as_json(n_set("COMPLETED", series(2))), "CT_RAD_01")
    assert view.status is MppsStatus.COMPLETED
    assert _status(service, order) is StepStatus.COMPLETED
    assert service.find_worklist_items(WorklistQuery()).items == []
    assert len(service.find_worklist_items(WorklistQuery(include_final=True)).items) == 1


def test_discontinued_discontinues_the_step(service: RisService) -> None:
    order = _order(service)
    _create(service, reference_to(order))
    service.record_mpps_set(UID, as_json(n_set("DISCONTINUED")), "CT_RAD_01")
    assert _status(service, order) is StepStatus.DISCONTINUED
    assert service.find_worklist_items(WorklistQuery()).items == []


def test_state_machine_refusals_store_nothing(service: RisService) -> None:
    order = _order(service)
    _create(service, reference_to(order))
    with pytest.raises(AlreadyExists):
        _create(service, reference_to(order))
    with pytest.raises(NotFound):
        service.record_mpps_set("1.2.3.999", as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    with pytest.raises(MissingAttributeValue):
        service.record_mpps_set(UID, as_json(n_set("COMPLETED")), "CT_RAD_01")
    assert service.get_mpps(UID).status is MppsStatus.IN_PROGRESS
    service.record_mpps_set(UID, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    with pytest.raises(InvalidTransition, match="may no longer be updated"):
        service.record_mpps_set(UID, as_json(n_set("DISCONTINUED")), "CT_RAD_01")
    assert [event.kind for event in service.list_mpps_events(UID)] == ["N-CREATE", "N-SET"]
    assert service.get_mpps(UID).status is MppsStatus.COMPLETED
    assert _status(service, order) is StepStatus.COMPLETED


def test_every_event_is_kept_as_received_and_the_state_is_merged(service: RisService) -> None:
    order = _order(service)
    _create(service, reference_to(order))
    first = n_set("IN PROGRESS", series(1))
    del first.PerformedProcedureStepEndDate, first.PerformedProcedureStepEndTime
    service.record_mpps_set(UID, as_json(first), "CT_RAD_01")
    final = n_set("COMPLETED", series(3), PatientName="CHANGED^NAME")
    service.record_mpps_set(UID, as_json(final), "CT_RAD_01")

    events = service.list_mpps_events(UID)
    assert [e.kind for e in events] == ["N-CREATE", "N-SET", "N-SET"]
    assert events[2].attributes == as_json(final)
    current = service.get_mpps(UID)
    assert current.summary.series_count == 1
    assert current.summary.instance_count == 3
    assert current.attributes["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^HANS"}]
    assert current.summary.end == "20261123094500"


def test_group_case_links_every_scheduled_step(service: RisService) -> None:
    order = _order(service, steps=(step(sps_id="SPS_A1"), step(sps_id="SPS_A2", modality="CT")))
    _create(service, reference_to(order, 0), reference_to(order, 1))
    view = service.get_mpps(UID)
    assert sorted(link.sps_id for link in view.links) == ["SPS_A1", "SPS_A2"]
    assert [s.status for s in service.get_order(order.id).steps] == [StepStatus.STARTED, StepStatus.STARTED]
    assert [m.sop_instance_uid for m in service.list_mpps(order_id=order.id)] == [UID]


def test_linking_falls_back_to_accession_and_sps_id(service: RisService) -> None:
    order = _order(service)
    procedure = order.procedures[0]
    own_study = step_reference(
        "1.2.826.0.1.3680043.10.1474.99", order.order.accession_number, "", procedure.steps[0].sps_id
    )
    _create(service, own_study)
    assert _status(service, order) is StepStatus.STARTED
    assert service.get_mpps(UID).links[0].linked_by == "dicom:CT_RAD_01"


def test_an_ambiguous_reference_is_not_guessed(service: RisService) -> None:
    order = _order(service, steps=(step(sps_id="SPS_B1"), step(sps_id="SPS_B2")))
    _create(service, step_reference("1.2.826.0.1.3680043.10.1474.98", order.order.accession_number))
    assert service.get_mpps(UID).is_unscheduled
    assert [s.status for s in service.get_order(order.id).steps] == [StepStatus.SCHEDULED] * 2


def test_unscheduled_step_is_kept_listed_and_linked_later(service: RisService) -> None:
    order = _order(service)
    _create(service, step_reference())
    service.record_mpps_set(UID, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    assert [m.sop_instance_uid for m in service.list_unscheduled_mpps()] == [UID]
    assert _status(service, order) is StepStatus.SCHEDULED

    step_id = order.steps[0].id
    linked = service.link_mpps(UID, step_id, ANNA)
    assert [(link.step_id, link.linked_by) for link in linked.links] == [(step_id, "user:anna")]
    assert _status(service, order) is StepStatus.COMPLETED
    assert service.list_unscheduled_mpps() == []
    assert service.link_mpps(UID, step_id, ANNA).links == linked.links


def test_manual_link_refuses_a_step_that_cannot_follow(service: RisService) -> None:
    order = _order(service)
    service.cancel_order(order.id, ANNA)
    _create(service, step_reference())
    with pytest.raises(InvalidTransition):
        service.link_mpps(UID, order.steps[0].id, ANNA)
    assert service.get_mpps(UID).is_unscheduled
    with pytest.raises(NotFound):
        service.link_mpps("1.2.3.404", order.steps[0].id, ANNA)


def test_a_canceled_step_keeps_its_status_but_the_report_is_stored(service: RisService) -> None:
    order = _order(service)
    service.cancel_order(order.id, ANNA)
    _create(service, reference_to(order))
    assert _status(service, order) is StepStatus.CANCELED
    assert service.get_mpps(UID).links[0].status is StepStatus.CANCELED


def test_completed_enqueues_one_ian_per_destination_and_forwards_every_event(service: RisService) -> None:
    _destinations(service)
    order = _order(service)
    _create(service, reference_to(order))
    assert [(t.kind, t.destination) for t in service.list_outbox_tasks()] == [(TaskKind.MPPS_FORWARD, "MIRROR")]
    service.record_mpps_set(UID, as_json(n_set("COMPLETED", series(2), series(1))), "CT_RAD_01")

    tasks = service.list_outbox_tasks()
    assert sorted((t.kind, t.destination) for t in tasks) == [
        (TaskKind.IAN, "PACS_A"),
        (TaskKind.IAN, "REPORTING"),
        (TaskKind.MPPS_FORWARD, "MIRROR"),
        (TaskKind.MPPS_FORWARD, "MIRROR"),
    ]
    assert all(t.state is TaskState.PENDING and t.order_id == order.id for t in tasks)
    ians = [t for t in tasks if t.kind is TaskKind.IAN]
    assert ians[0].payload["attributes"] == ians[1].payload["attributes"]
    assert ians[0].payload["sop_instance_uid"] != ians[1].payload["sop_instance_uid"]
    forwards = sorted((t for t in tasks if t.kind is TaskKind.MPPS_FORWARD), key=lambda t: t.id)
    assert [f.payload["operation"] for f in forwards] == ["N-CREATE", "N-SET"]
    assert service.outbox_ready.is_set()


def test_discontinued_sends_no_ian(service: RisService) -> None:
    _destinations(service)
    _create(service, reference_to(_order(service)))
    service.record_mpps_set(UID, as_json(n_set("DISCONTINUED", series())), "CT_RAD_01")
    assert {t.kind for t in service.list_outbox_tasks()} == {TaskKind.MPPS_FORWARD}


def test_a_refused_event_writes_no_task(service: RisService) -> None:
    _destinations(service)
    _create(service, reference_to(_order(service)))
    with pytest.raises(MissingAttributeValue):
        service.record_mpps_set(UID, as_json(n_set("COMPLETED")), "CT_RAD_01")
    assert len(service.list_outbox_tasks()) == 1


@pytest.fixture
def his_site(settings: Settings) -> Iterator[RisService]:
    service = RisService(
        Database(settings.database_url), dataclasses.replace(settings, hl7_status_destination="his.example:2575")
    )
    yield service
    service.db.dispose()


def test_the_his_hears_when_a_step_starts_and_completes(his_site: RisService) -> None:
    order = _order(his_site)
    _create(his_site, reference_to(order))
    his_site.record_mpps_set(UID, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    statuses = sorted(his_site.list_outbox_tasks(kind=TaskKind.HL7_STATUS), key=lambda t: t.id)
    assert [(t.destination, t.payload["status"], t.order_id) for t in statuses] == [
        ("his.example:2575", "STARTED", order.id),
        ("his.example:2575", "COMPLETED", order.id),
    ]
    first = statuses[0].payload
    assert first["accession_number"] == order.order.accession_number
    assert first["placer_order_number"] == order.order.placer_order_number
    assert first["sps_id"] == order.steps[0].sps_id
    assert first["patient_id"] == order.patient.patient_id
    assert first["control_id"] != statuses[1].payload["control_id"]


def test_reconciling_a_completed_step_tells_the_his_both_steps(his_site: RisService) -> None:
    order = _order(his_site)
    _create(his_site, step_reference())
    his_site.record_mpps_set(UID, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    assert his_site.list_outbox_tasks(kind=TaskKind.HL7_STATUS) == []
    his_site.outbox_ready.clear()
    his_site.link_mpps(UID, order.steps[0].id, ANNA)
    statuses = sorted(his_site.list_outbox_tasks(kind=TaskKind.HL7_STATUS), key=lambda t: t.id)
    assert [t.payload["status"] for t in statuses] == ["STARTED", "COMPLETED"]
    assert his_site.outbox_ready.is_set()
