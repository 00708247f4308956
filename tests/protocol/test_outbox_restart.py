"""The outbox survives the listener process: ``ris listen`` SIGKILLed while an IAN is pending
delivers it after the restart, exactly once; killed in the middle of a delivery, it re-sends the
same notification, which the receiver recognises."""

from __future__ import annotations

import signal
import subprocess

import pytest
from pynetdicom import AE

from ris.domain.model import Actor, AeRole, OrderView, RemoteAE
from ris.domain.mpps import MPPS_SOP_CLASS
from ris.domain.outbox import OutboxTask, TaskKind, TaskState
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import OUR_AE, SCANNER
from tests.support.dicom_peers import IAN_SOP_CLASS, REFUSED_CONNECTION_LEAKS_A_SOCKET, RecordingScp, serving
from tests.support.mpps import n_create, n_set, reference_to, series
from tests.support.orders import new_order
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until

UID = "1.2.826.0.1.3680043.10.1474.8.1"
pytestmark = [pytest.mark.slow, REFUSED_CONNECTION_LEAKS_A_SOCKET]


@pytest.fixture
def dicom_port() -> int:
    return free_port()


@pytest.fixture
def env(settings: Settings, dicom_port: int) -> dict[str, str]:
    return ris_env(
        settings,
        RIS_DICOM_BIND="127.0.0.1",
        RIS_DICOM_PORT=str(dicom_port),
        RIS_HL7_BIND="127.0.0.1",
        RIS_HL7_PORT=str(free_port()),
        RIS_OUTBOX_INITIAL_DELAY="0.2",
        RIS_OUTBOX_MAX_DELAY="0.5",
        RIS_OUTBOX_POLL_INTERVAL="0.1",
        RIS_OUTBOX_DELIVERY_TIMEOUT="1",
    )


@pytest.fixture
def ian_port(service: RisService) -> int:
    port = free_port()
    service.add_remote_ae(RemoteAE("PACS_A", "127.0.0.1", port, frozenset({AeRole.IAN_DESTINATION})), Actor("cli", "t"))
    return port


@pytest.fixture
def order(service: RisService) -> OrderView:
    return service.schedule_order(new_order(), Actor("cli", "test"))


def _complete_step(port: int, order: OrderView) -> None:
    ae = AE(ae_title=SCANNER)
    ae.add_requested_context(MPPS_SOP_CLASS)
    assoc = wait_until(lambda: _established(ae, port), what="ris listen accepting associations")
    try:
        assert assoc.send_n_create(n_create(reference_to(order)), MPPS_SOP_CLASS, UID)[0].Status == 0
        assert assoc.send_n_set(n_set("COMPLETED", series(2)), MPPS_SOP_CLASS, UID)[0].Status == 0
    finally:
        assoc.release()


def _established(ae: AE, port: int) -> object:
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AE)
    return assoc if assoc.is_established else None


def _ian(service: RisService) -> OutboxTask:
    (task,) = service.list_outbox_tasks(kind=TaskKind.IAN)
    return task


def _killed(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def test_killed_while_pending_delivers_after_restart_exactly_once(
    env: dict[str, str], service: RisService, order: OrderView, ian_port: int, dicom_port: int
) -> None:
    with ris_process(env, "listen") as first:
        _complete_step(dicom_port, order)
        wait_until(lambda: _ian(service).attempts >= 2, what="failed attempts while the PACS is down")
        _killed(first)
    pending = _ian(service)
    assert pending.state is TaskState.PENDING
    assert "PACS_A@127.0.0.1" in pending.last_error

    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A"), port=ian_port) as pacs:
        assert pacs.of() == []
        with ris_process(env, "listen") as second:
            wait_until(lambda: _ian(service).state is TaskState.SENT, what="delivery after the restart")
            stop_process(second)
    assert [(r.operation, r.sop_instance_uid) for r in pacs.of()] == [("N-CREATE", pending.payload["sop_instance_uid"])]


def test_killed_during_a_delivery_re_sends_the_same_notification(
    env: dict[str, str], service: RisService, order: OrderView, ian_port: int, dicom_port: int
) -> None:
    with serving(RecordingScp(IAN_SOP_CLASS, ae_title="PACS_A"), port=ian_port) as pacs:
        pacs.answering.clear()  # the PACS has the IAN but has not answered yet
        with ris_process(env, "listen") as first:
            _complete_step(dicom_port, order)
            wait_until(lambda: pacs.of(), what="the IAN to reach the PACS")
            _killed(first)
        pacs.answering.set()
        assert _ian(service).state is TaskState.PENDING  # delivered, but the SENT was never written

        with ris_process(env, "listen") as second:
            wait_until(lambda: _ian(service).state is TaskState.SENT, timeout=60, what="the re-send after the lease")
            stop_process(second)
    first_try, re_sent = pacs.of()
    assert first_try.sop_instance_uid == re_sent.sop_instance_uid
    assert pacs.created == {first_try.sop_instance_uid}  # the PACS holds it once (it answered 0111)
