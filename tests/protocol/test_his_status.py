"""Step status to the HIS through the outbox: ORM^O01 SC IP then CM over MLLP to a listening HIS,
retried until the HIS answers AA, in order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ris import bootstrap
from ris.db import Database
from ris.domain.model import Actor, OrderView
from ris.domain.outbox import TaskKind, TaskState
from ris.services import RisService
from ris.settings import Settings
from tests.support.his import FakeHis, his_listening
from tests.support.mpps import as_json, n_create, n_set, reference_to, series
from tests.support.orders import new_order
from tests.support.processes import free_port, wait_until

UID = "1.2.826.0.1.3680043.10.1474.10.1"


@pytest.fixture
def his_port() -> int:
    return free_port()


@pytest.fixture
def ris(settings: Settings, his_port: int) -> Iterator[RisService]:
    site = dataclasses.replace(
        settings,
        hl7_status_destination=f"127.0.0.1:{his_port}",
        outbox_initial_delay=0.05,
        outbox_max_delay=0.2,
        outbox_poll_interval=0.05,
        outbox_delivery_timeout=5,
    )
    service = RisService(Database(site.database_url), site)
    worker = bootstrap.outbox_worker(service, site)
    worker.start()
    yield service
    worker.stop()
    service.db.dispose()


def _statuses(ris: RisService) -> list[TaskState]:
    return [t.state for t in ris.list_outbox_tasks(kind=TaskKind.HL7_STATUS)]


def _run_step(ris: RisService) -> OrderView:
    order = ris.schedule_order(new_order(), Actor("cli", "test"))
    ris.record_mpps_create(UID, as_json(n_create(reference_to(order))), "CT_RAD_01")
    ris.record_mpps_set(UID, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    return order


def test_the_his_hears_ip_then_cm_for_its_order(ris: RisService, his_port: int) -> None:
    with his_listening(FakeHis(), port=his_port) as his:
        order = _run_step(ris)
        wait_until(lambda: _statuses(ris) == [TaskState.SENT] * 2, what="both status messages acknowledged")
    received = his.received()
    assert [(m.value("ORC-1"), m.value("ORC-5")) for m in received] == [("SC", "IP"), ("SC", "CM")]
    assert {m.value("OBR-18") for m in received} == {order.order.accession_number}
    assert {m.value("ORC-2") for m in received} == {order.order.placer_order_number}
    assert [m.value("MSH-18") for m in received] == ["8859/1", "8859/1"]
    assert "MÜLLER".encode("latin-1") in his.raw[0]


def test_a_his_that_refuses_or_is_down_gets_the_messages_later_in_order(ris: RisService, his_port: int) -> None:
    _run_step(ris)
    wait_until(lambda: ris.list_outbox_tasks(kind=TaskKind.HL7_STATUS)[-1].attempts >= 2, what="attempts while down")
    with his_listening(FakeHis(ack_code="AE"), port=his_port) as his:
        wait_until(lambda: len(his.messages) >= 2, what="refused attempts")
        assert {m.value("ORC-5") for m in his.received()} == {"IP"}  # CM waits for IP
        assert "answered AE" in ris.list_outbox_tasks(kind=TaskKind.HL7_STATUS)[-1].last_error
        his.ack_code = "AA"
        wait_until(lambda: _statuses(ris) == [TaskState.SENT] * 2, what="acknowledged at last")
    accepted = his.received()[-2:]
    assert [m.value("ORC-5") for m in accepted] == ["IP", "CM"]
    control_ids = [m.value("MSH-10") for m in his.received() if m.value("ORC-5") == "IP"]
    assert len(set(control_ids)) == 1  # every attempt of a task is the same message
