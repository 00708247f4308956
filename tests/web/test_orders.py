"""The order form, the order page and its actions through the Flask test client and real forms."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from ris.db.models import AuditEvent
from ris.domain.model import SYSTEM, OrderKey
from ris.domain.status import StepStatus
from ris.services import RisService
from tests.support.orders import local, new_order
from tests.support.web import csrf_token, submit

LABELS = [
    "Patient ID",
    "Patient name",
    "Birth date",
    "Sex",
    "Accession",
    "Modality",
    "Station AE",
    "Scheduled",
    "Procedure",
    "Priority",
    "Referring physician",
    "Comments",
]


def valid_form(**changes: str) -> dict[str, str]:
    return {
        "patient_id": "PAT0001",
        "patient_name": "Müller, Hans",
        "birth_date": "1960-01-31",
        "sex": "M",
        "accession": "ACC0001",
        "modality": "CT",
        "station_ae": "CT_RAD_01",
        "scheduled": "2026-11-23T09:30",
        "procedure": "CT Thorax mit KM",
        "priority": "ROUTINE",
        "referring_physician": "WEBER^KLAUS^^DR.",
        "comments": "Kontrastmittel-Allergie abklären",
    } | changes


def hidden_value(page: bytes, name: str) -> str:
    match = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', page.decode())
    assert match, f"no hidden field {name}"
    return match.group(1)


def field_errors(page: bytes) -> dict[str, list[str]]:
    """Form field id -> the error messages shown next to it."""
    text = page.decode()
    found = {}
    for block in re.findall(r'<div class="field" id="field-(\w+)">(.*?)</div>', text, re.S):
        found[block[0]] = re.findall(r"<li>(.*?)</li>", block[1])
    return {name: errors for name, errors in found.items() if errors}


def audit_actions(service: RisService, order_id: int) -> list[tuple[str, str]]:
    with service.db.reading() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.order_fk == order_id).order_by(AuditEvent.id))
        return [(row.action, row.actor) for row in rows]


def create(client: FlaskClient, **changes: str) -> int:
    response = submit(client, "/orders/new", valid_form(**changes))
    assert response.status_code == 303, field_errors(response.data) or response.data
    match = re.fullmatch(r"/orders/(\d+)", response.headers["Location"])
    assert match
    return int(match.group(1))


def test_the_form_has_exactly_the_labels(frontdesk_client: FlaskClient) -> None:
    page = frontdesk_client.get("/orders/new").data.decode()
    assert re.findall(r"<label [^>]*>(.*?)</label>", page) == LABELS
    modality_options = re.search(r'<select id="modality".*?</select>', page, re.S)
    assert modality_options
    assert '<option value="MR">' in modality_options.group(0)


def test_a_new_order_is_scheduled_and_audited_with_the_user(frontdesk_client: FlaskClient, service: RisService) -> None:
    order_id = create(frontdesk_client)
    order = service.get_order(order_id)
    assert order.patient.name == "Müller^Hans"
    assert order.patient.birth_date == "19600131"
    assert order.order.accession_number == "ACC0001"
    assert order.order.comments == "Kontrastmittel-Allergie abklären"
    (step,) = order.steps
    assert (step.modality, step.station_ae, step.description) == ("CT", "CT_RAD_01", "CT Thorax mit KM")
    assert step.start == local(2026, 11, 23, 9, 30)
    assert audit_actions(service, order_id) == [("order.scheduled", "user:desk")]
    page = frontdesk_client.get(f"/orders/{order_id}")
    assert page.status_code == 200
    assert b"Order ACC0001 scheduled." in page.data
    assert b"M\xc3\xbcller, Hans" in page.data


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"patient_id": ""}, "patient_id", "is required"),
        ({"patient_id": "X" * 65}, "patient_id", "is longer than 64 characters"),
        ({"patient_name": ""}, "patient_name", "is required"),
        ({"patient_name": "A^B^C^D^E^F"}, "patient_name", "has more than five components"),
        ({"patient_name": "A" * 65}, "patient_name", "has a component group longer than 64 characters"),
        ({"birth_date": "1960-02-30"}, "birth_date", "Not a valid date value."),
        ({"sex": "X"}, "sex", "Not a valid choice."),
        ({"accession": "A" * 17}, "accession", "is longer than 16 characters"),
        ({"modality": ""}, "modality", "is required"),
        ({"modality": "XX"}, "modality", "Not a valid choice."),
        ({"station_ae": "S" * 17}, "station_ae", "is longer than 16 characters"),
        ({"station_ae": "BAD\\AE"}, "station_ae", "must not contain a backslash"),
        ({"scheduled": ""}, "scheduled", "is required"),
        ({"scheduled": "2026-11-31T09:00"}, "scheduled", "Not a valid datetime value."),
        ({"procedure": "P" * 65}, "procedure", "is longer than 64 characters"),
        ({"priority": "URGENT"}, "priority", "Not a valid choice."),
        ({"referring_physician": "A^B^C^D^E^F"}, "referring_physician", "has more than five components"),
        ({"comments": "x" * 10241}, "comments", "is longer than 10240 characters"),
    ],
)
def test_each_field_shows_its_error(
    frontdesk_client: FlaskClient, service: RisService, changes: dict[str, str], field: str, message: str
) -> None:
    response = submit(frontdesk_client, "/orders/new", valid_form(**changes))
    assert response.status_code == 200
    errors = field_errors(response.data)
    assert list(errors) == [field], errors
    assert any(error.startswith(message) for error in errors[field]), errors
    assert service.find_order(OrderKey(accession_number="ACC0001")) is None


def test_a_taken_accession_is_an_error_on_its_field(frontdesk_client: FlaskClient, service: RisService) -> None:
    service.schedule_order(new_order(order={"accession_number": "TAKEN1"}), SYSTEM)
    response = submit(frontdesk_client, "/orders/new", valid_form(accession="TAKEN1"))
    assert response.status_code == 200
    assert field_errors(response.data) == {"accession": ["is already used by another order"]}


def test_edit_saves_and_keeps_what_the_form_does_not_show(frontdesk_client: FlaskClient, service: RisService) -> None:
    order_id = service.schedule_order(new_order(order={"accession_number": "EDIT1"}), SYSTEM).id
    before = service.get_order(order_id)
    page = frontdesk_client.get(f"/orders/{order_id}/edit")
    assert b'value="EDIT1"' in page.data
    data = valid_form(
        accession="EDIT1", patient_id=before.patient.patient_id, scheduled="2026-11-24T14:15", procedure="CT Abdomen"
    )
    response = frontdesk_client.post(
        f"/orders/{order_id}/edit",
        data={**data, "version": hidden_value(page.data, "version"), "csrf_token": csrf_token(page.data)},
    )
    assert response.status_code == 303, field_errors(response.data)
    after = service.get_order(order_id)
    assert after.steps[0].start == local(2026, 11, 24, 14, 15)
    assert after.procedures[0].description == "CT Abdomen"
    assert after.order.placer_order_number == before.order.placer_order_number
    assert after.procedures[0].study_uid == before.procedures[0].study_uid
    assert after.steps[0].sps_id == before.steps[0].sps_id
    assert after.patient.issuer == before.patient.issuer
    assert audit_actions(service, order_id)[-1] == ("order.updated", "user:desk")


def test_an_edit_of_an_order_changed_meanwhile_shows_a_conflict(
    frontdesk_client: FlaskClient, service: RisService
) -> None:
    command = new_order(order={"accession_number": "RACE1"})
    order_id = service.schedule_order(command, SYSTEM).id
    page = frontdesk_client.get(f"/orders/{order_id}/edit")
    elsewhere = dataclasses.replace(command, order=dataclasses.replace(command.order, comments="changed elsewhere"))
    service.update_order(order_id, elsewhere, SYSTEM)  # someone else changes the order meanwhile
    before = service.get_order(order_id)
    data: dict[str, Any] = valid_form(accession="RACE1", patient_id=before.patient.patient_id, procedure="Changed")
    data |= {"version": hidden_value(page.data, "version"), "csrf_token": csrf_token(page.data)}
    response = frontdesk_client.post(f"/orders/{order_id}/edit", data=data)
    assert response.status_code == 200
    assert b"Someone else changed this order since you opened it" in response.data
    assert service.get_order(order_id).procedures[0].description != "Changed"


def test_reschedule(frontdesk_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), SYSTEM)
    step = order.steps[0]
    url = f"/orders/{order.id}/steps/{step.id}/reschedule"
    response = submit(frontdesk_client, url, {"scheduled": "2026-11-25T11:45", "station_ae": "CT_RAD_02"})
    assert response.status_code == 303
    moved = service.get_order(order.id).steps[0]
    assert moved.start == local(2026, 11, 25, 11, 45)
    assert moved.station_ae == "CT_RAD_02"
    assert audit_actions(service, order.id)[-1] == ("step.rescheduled", "user:desk")
    refused = submit(frontdesk_client, url, {"scheduled": "2026-11-25T11:45", "station_ae": "X" * 17})
    assert field_errors(refused.data) == {"station_ae": ["is longer than 16 characters"]}


def test_check_in(frontdesk_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), SYSTEM)
    page = frontdesk_client.get(f"/orders/{order.id}")
    response = frontdesk_client.post(
        f"/orders/{order.id}/check-in", data={"csrf_token": csrf_token(page.data), "version": str(order.version)}
    )
    assert response.status_code == 303
    assert service.get_order(order.id).steps[0].status is StepStatus.ARRIVED
    assert audit_actions(service, order.id)[-1] == ("order.arrived", "user:desk")
    assert b"Checked in" in frontdesk_client.get(f"/orders/{order.id}").data


def test_cancel_asks_for_confirmation_first(frontdesk_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), SYSTEM)
    confirm = frontdesk_client.get(f"/orders/{order.id}/cancel")
    assert b"Yes, cancel the order" in confirm.data
    assert service.get_order(order.id).steps[0].status is StepStatus.SCHEDULED  # nothing happened yet
    response = submit(frontdesk_client, f"/orders/{order.id}/cancel", {"reason": "patient declined"})
    assert response.status_code == 303
    assert service.get_order(order.id).steps[0].status is StepStatus.CANCELED
    assert audit_actions(service, order.id)[-1] == ("order.canceled", "user:desk")
    page = frontdesk_client.get(f"/orders/{order.id}").data
    assert b"Cancel order" not in page  # nothing left to cancel or check in
    assert b"Check in" not in page


def test_cancel_of_a_started_order_is_refused_clearly(frontdesk_client: FlaskClient, service: RisService) -> None:
    order = service.schedule_order(new_order(), SYSTEM)
    service.set_step_status(order.steps[0].id, StepStatus.STARTED, SYSTEM)
    response = submit(frontdesk_client, f"/orders/{order.id}/cancel", {"reason": ""})
    assert response.status_code == 200
    assert b"Cannot cancel" in response.data


def test_unknown_order_is_404(frontdesk_client: FlaskClient) -> None:
    response = frontdesk_client.get("/orders/999999")
    assert response.status_code == 404
    assert b"Not found" in response.data
