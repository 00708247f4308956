"""IAN and MPPS forward deliveries to real pynetdicom SCPs on ephemeral ports, through the outbox
worker: exact IAN content, a destination down then up, failure statuses, duplicates, order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from dimse.deliveries import IanDelivery, MppsForwardDelivery
from ris import bootstrap
from ris.db import Database
from ris.domain.model import Actor, AeRole, OrderView, RemoteAE
from ris.domain.outbox import TaskKind, TaskState
from ris.outbox import DeliveryFailed, OutboxWorker
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom_peers import (
    IAN_SOP_CLASS,
    MPPS_SOP_CLASS,
    REFUSED_CONNECTION_LEAKS_A_SOCKET,
    RecordingScp,
    serving,
)
from tests.support.mpps import (
    as_json,
    expected_ian_references,
    ian_references,
    n_create,
    n_set,
    reference_to,
    series,
)
from tests.support.orders import new_order
from tests.support.processes import free_port, wait_until

CLI = Actor("cli", "test")
UID = "1.2.826.0.1.3680043.10.1474.4.1"


@pytest.fixture
def site(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        outbox_initial_delay=0.05,
        outbox_max_delay=0.2,
        outbox_poll_interval=0.05,
        outbox_delivery_timeout=5,
        mpps_ian_retrieve_ae_title="PACS_FALLBACK",
    )


@pytest.fixture
def ris(site: Settings) -> Iterator[RisService]:
    service = RisService(Database(site.database_url), site)
    yield service
    service.db.dispose()


@pytest.fixture
def worker(ris: RisService, site: Settings) -> Iterator[OutboxWorker]:
    running = bootstrap.outbox_worker(ris, site)
    running.start()
    yield running
    running.stop()


def _destination(ris: RisService, title: str, port: int, role: AeRole) -> None:
    ris.add_remote_ae(RemoteAE(title, "127.0.0.1", port, frozenset({role})), CLI)


def _order(ris: RisService) -> OrderView:
    return ris.schedule_order(new_order(), CLI)


def _states(ris: RisService, kind: TaskKind) -> list[TaskState]:
    return [task.state for task in ris.list_outbox_tasks(kind=kind)]


def test_the_ian_scp_receives_the_exact_content_of_a_multi_series_step(ris: RisService, worker: OutboxWorker) -> None:
    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A")) as pacs:
        _destination(ris, "PACS_A", pacs.port, AeRole.IAN_DESTINATION)
        order = _order(ris)
        ct, mixed = series(3, retrieve_ae="PACS_A"), series(1, retrieve_ae="", non_image=1)
        ris.record_mpps_create(UID, as_json(n_create(reference_to(order))), "CT_RAD_01")
        ris.record_mpps_set(UID, as_json(n_set("COMPLETED", ct, mixed)), "CT_RAD_01")
        wait_until(lambda: _states(ris, TaskKind.IAN) == [TaskState.SENT], what="the IAN to be sent")

    (received,) = pacs.of()
    (task,) = ris.list_outbox_tasks(kind=TaskKind.IAN)
    assert (received.operation, received.calling_ae) == ("N-CREATE", "RISBROKER")
    assert received.sop_instance_uid == task.payload["sop_instance_uid"]
    ian = received.dataset
    assert {element.keyword for element in ian} == {
        "ReferencedPerformedProcedureStepSequence",
        "StudyInstanceUID",
        "ReferencedSeriesSequence",
    }
    assert ian.StudyInstanceUID == order.procedures[0].study_uid
    (pps,) = ian.ReferencedPerformedProcedureStepSequence
    assert (pps.ReferencedSOPClassUID, pps.ReferencedSOPInstanceUID) == (MPPS_SOP_CLASS, UID)
    assert ian_references(ian) == expected_ian_references((ct, "PACS_A"), (mixed, "PACS_FALLBACK"))


@REFUSED_CONNECTION_LEAKS_A_SOCKET
def test_destination_down_then_up_gets_the_ian_once(ris: RisService, worker: OutboxWorker) -> None:
    port = free_port()
    _destination(ris, "PACS_A", port, AeRole.IAN_DESTINATION)
    ris.record_mpps_create(UID, as_json(n_create(reference_to(_order(ris)))), "CT_RAD_01")
    ris.record_mpps_set(UID, as_json(n_set("COMPLETED", series(2))), "CT_RAD_01")
    wait_until(lambda: ris.list_outbox_tasks()[0].attempts >= 2, what="failed attempts while down")
    (task,) = ris.list_outbox_tasks()
    assert task.state is TaskState.PENDING
    assert "PACS_A@127.0.0.1" in task.last_error

    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A"), port=port) as pacs:
        wait_until(lambda: _states(ris, TaskKind.IAN) == [TaskState.SENT], what="delivery once up")
        assert [r.operation for r in pacs.of()] == ["N-CREATE"]


def test_a_failure_status_is_retried_not_dropped(ris: RisService, worker: OutboxWorker) -> None:
    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A", status=0x0110)) as pacs:
        _destination(ris, "PACS_A", pacs.port, AeRole.IAN_DESTINATION)
        ris.record_mpps_create(UID, as_json(n_create(reference_to(_order(ris)))), "CT_RAD_01")
        ris.record_mpps_set(UID, as_json(n_set("COMPLETED", series(1))), "CT_RAD_01")
        wait_until(lambda: len(pacs.of()) >= 2, what="a second attempt after 0110")
        assert "status 0x0110" in ris.list_outbox_tasks()[0].last_error
        pacs.status = 0x0000
        wait_until(lambda: _states(ris, TaskKind.IAN) == [TaskState.SENT], what="delivery after recovery")
    assert len({r.sop_instance_uid for r in pacs.of()}) == 1  # every attempt is the same notification


def test_a_re_sent_ian_the_receiver_already_has_counts_as_delivered(ris: RisService, site: Settings) -> None:
    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A")) as pacs:
        _destination(ris, "PACS_A", pacs.port, AeRole.IAN_DESTINATION)
        ris.record_mpps_create(UID, as_json(n_create(reference_to(_order(ris)))), "CT_RAD_01")
        ris.record_mpps_set(UID, as_json(n_set("COMPLETED", series(1))), "CT_RAD_01")
        (task,) = ris.list_outbox_tasks()
        deliver = IanDelivery(ris, site.dicom_ae_title, timeout=5)
        deliver(task)
        deliver(task)  # as after a crash between the answer and marking the task SENT: 0111, fine
        pacs.refuse_duplicates = False
        pacs.status = 0xA700
        with pytest.raises(DeliveryFailed, match="status 0xA700"):
            deliver(task)
    ris.remove_remote_ae("PACS_A", CLI)
    with pytest.raises(DeliveryFailed, match="no longer") as caught:
        deliver(task)
    assert not caught.value.retryable


@REFUSED_CONNECTION_LEAKS_A_SOCKET
def test_mpps_forwards_arrive_in_order_even_after_an_outage(ris: RisService, worker: OutboxWorker) -> None:
    port = free_port()
    _destination(ris, "MIRROR", port, AeRole.MPPS_FORWARD)
    created = n_create(reference_to(_order(ris)))
    progress = n_set("IN PROGRESS", series(1))
    del progress.PerformedProcedureStepEndDate, progress.PerformedProcedureStepEndTime
    completed = n_set("COMPLETED", series(2))
    ris.record_mpps_create(UID, as_json(created), "CT_RAD_01")
    ris.record_mpps_set(UID, as_json(progress), "CT_RAD_01")
    ris.record_mpps_set(UID, as_json(completed), "CT_RAD_01")
    wait_until(lambda: ris.list_outbox_tasks()[-1].attempts >= 2, what="failed attempts while down")

    with serving(RecordingScp(MPPS_SOP_CLASS, ae_title="MIRROR"), port=port) as mirror:
        wait_until(lambda: _states(ris, TaskKind.MPPS_FORWARD) == [TaskState.SENT] * 3, what="forwards sent")
    assert [(r.operation, r.sop_instance_uid) for r in mirror.of()] == [
        ("N-CREATE", UID),
        ("N-SET", UID),
        ("N-SET", UID),
    ]
    assert [as_json(r.dataset) for r in mirror.of()] == [as_json(created), as_json(progress), as_json(completed)]


def test_a_re_sent_final_forward_the_receiver_already_applied_counts_as_delivered(
    ris: RisService, site: Settings
) -> None:
    with serving(RecordingScp(MPPS_SOP_CLASS, ae_title="MIRROR", status=0x0110)) as mirror:
        _destination(ris, "MIRROR", mirror.port, AeRole.MPPS_FORWARD)
        progress = n_set("IN PROGRESS")
        del progress.PerformedProcedureStepEndDate, progress.PerformedProcedureStepEndTime
        ris.record_mpps_create(UID, as_json(n_create(reference_to(_order(ris)))), "CT_RAD_01")
        ris.record_mpps_set(UID, as_json(progress), "CT_RAD_01")
        ris.record_mpps_set(UID, as_json(n_set("COMPLETED", series(1))), "CT_RAD_01")
        _create, in_progress, completed = sorted(ris.list_outbox_tasks(), key=lambda t: t.id)
        forward = MppsForwardDelivery(ris, site.dicom_ae_title, timeout=5)
        unresolved = {"attempts": 2, "last_error": ""}
        forward(dataclasses.replace(completed, **unresolved))  # "may no longer be updated": it got there
        with pytest.raises(DeliveryFailed, match="0x0110"):
            forward(dataclasses.replace(completed, attempts=2, last_error="cannot connect"))
        with pytest.raises(DeliveryFailed, match="0x0110"):
            forward(dataclasses.replace(completed, attempts=1, last_error=""))
        with pytest.raises(DeliveryFailed, match="0x0110"):
            forward(dataclasses.replace(in_progress, **unresolved))
