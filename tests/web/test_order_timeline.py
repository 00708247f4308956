"""The order page's history: audited changes, HL7 messages, MPPS events and deliveries, and the
retry of a FAILED delivery from the page."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from pydicom.uid import generate_uid

from hl7.intake import Intake
from hl7.mapping import OrderMapping
from ris.domain.errors import NotFound
from ris.domain.model import SYSTEM, AeRole, OrderKey, OrderView, RemoteAE
from ris.domain.outbox import TaskKind, TaskState
from ris.domain.timeline import EntryKind
from ris.services import RisService
from tests.support.hl7_messages import orm
from tests.support.mpps import as_json, n_create, n_set, reference_to, series
from tests.support.orders import new_order
from tests.support.web import csrf_token


def rows(page: bytes) -> list[list[str]]:
    """The history table's rows as cell texts (without the retry button's cell)."""
    table = re.search(r'<table id="timeline">(.*?)</table>', page.decode(), re.S)
    assert table
    found = []
    for row in re.findall(r'<tr class="entry-\w+">(.*?)</tr>', table.group(1), re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        found.append(cells[:6])
    return found


@pytest.fixture
def order_from_the_his(service: RisService) -> OrderView:
    intake = Intake(service, OrderMapping(), default_charset="UNICODE UTF-8")
    intake.handle(orm(accession="TL000001", control_id="CTRL-TL-1").encode(), "127.0.0.1:4000")
    found = service.find_order(OrderKey(accession_number="TL000001"))
    assert found is not None
    return found


def performed(service: RisService, order: OrderView) -> None:
    """A modality starts and completes the order's step; the PACS gets an IAN, the archive the MPPS."""
    service.add_remote_ae(RemoteAE("PACS", "127.0.0.1", 11199, frozenset({AeRole.IAN_DESTINATION})), SYSTEM)
    service.add_remote_ae(RemoteAE("ARCHIVE", "127.0.0.1", 11198, frozenset({AeRole.MPPS_FORWARD})), SYSTEM)
    uid = generate_uid()
    service.record_mpps_create(uid, as_json(n_create(reference_to(order))), "CT_RAD_01")
    service.record_mpps_set(uid, as_json(n_set("COMPLETED", series(2))), "CT_RAD_01")


def test_the_history_shows_every_kind_of_event_newest_first(
    frontdesk_client: FlaskClient, service: RisService, order_from_the_his: OrderView
) -> None:
    order = order_from_the_his
    page = frontdesk_client.get(f"/orders/{order.id}")
    frontdesk_client.post(
        f"/orders/{order.id}/check-in", data={"csrf_token": csrf_token(page.data), "version": str(order.version)}
    )
    performed(service, order)

    timeline = service.order_timeline(order.id)
    assert [entry.at for entry in timeline] == sorted((entry.at for entry in timeline), reverse=True)
    history = rows(frontdesk_client.get(f"/orders/{order.id}").data)
    kinds = {(cells[1], cells[2], cells[3], cells[4]) for cells in history}
    assert ("hl7", "ORM^O01", "HIS/KLINIKUM", "AA") in kinds
    assert ("change", "order.scheduled", "hl7:HIS/KLINIKUM", "") in kinds
    assert ("change", "order.arrived", "user:desk", "") in kinds
    assert ("mpps", "N-CREATE IN PROGRESS", "CT_RAD_01", "") in kinds
    assert ("mpps", "N-SET COMPLETED", "CT_RAD_01", "") in kinds
    assert ("change", "step.completed", "dicom:CT_RAD_01", "") in kinds
    assert ("delivery", "mpps-forward to ARCHIVE", "ARCHIVE", "PENDING") in kinds
    assert ("delivery", "ian to PACS", "PACS", "PENDING") in kinds
    assert {cells[2] for cells in history[-2:]} == {"order.scheduled", "ORM^O01"}  # the oldest


def test_a_failed_delivery_is_retried_from_the_page_and_audited(
    frontdesk_client: FlaskClient, service: RisService, order_from_the_his: OrderView
) -> None:
    order = order_from_the_his
    performed(service, order)
    (ian,) = service.list_outbox_tasks(kind=TaskKind.IAN, order_id=order.id)
    service.fail_outbox_task(ian.id, "association rejected by PACS", retryable=False)

    page = frontdesk_client.get(f"/orders/{order.id}")
    failed = [cells for cells in rows(page.data) if cells[2] == "ian to PACS"]
    assert failed[0][4] == "FAILED"
    assert "association rejected by PACS" in failed[0][5]
    retry_url = f"/orders/{order.id}/deliveries/{ian.id}/retry"
    assert retry_url in page.data.decode()
    assert page.data.count(b">Retry</button>") == 1  # only the FAILED delivery has the button

    response = frontdesk_client.post(retry_url, data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    (retried,) = service.list_outbox_tasks(kind=TaskKind.IAN, order_id=order.id)
    assert retried.state is TaskState.PENDING
    assert retried.attempts == 0
    audit = [e for e in service.order_timeline(order.id) if e.kind is EntryKind.CHANGE and e.what == "outbox.retried"]
    assert [(e.who, f"task: {ian.id}" in e.details) for e in audit] == [("user:desk", True)]
    assert b"will be sent again now" in frontdesk_client.get(f"/orders/{order.id}").data


def test_a_delivery_of_another_order_cannot_be_retried_through_this_one(
    frontdesk_client: FlaskClient, service: RisService, order_from_the_his: OrderView
) -> None:
    performed(service, order_from_the_his)
    (ian,) = service.list_outbox_tasks(kind=TaskKind.IAN)
    service.fail_outbox_task(ian.id, "refused", retryable=False)
    other = service.schedule_order(new_order(), SYSTEM)
    page = frontdesk_client.get(f"/orders/{other.id}")
    response = frontdesk_client.post(
        f"/orders/{other.id}/deliveries/{ian.id}/retry", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 404
    assert service.list_outbox_tasks(kind=TaskKind.IAN)[0].state is TaskState.FAILED


def test_timeline_of_an_unknown_order_is_not_found(service: RisService) -> None:
    with pytest.raises(NotFound):
        service.order_timeline(424242)
