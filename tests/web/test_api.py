"""The JSON API through the Flask test client: every endpoint, its errors and token handling. Every
answer is checked against the schema the OpenAPI document declares for it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from ris.db import Database
from ris.db.models import ApiToken, AuditEvent, Order
from ris.domain.errors import InvalidTransition
from ris.domain.status import StepStatus
from ris.domain.users import Role
from ris.services import RisService
from ris.settings import Settings
from ris.web.openapi import DOCUMENT
from tests.support.clock import Clock
from tests.support.orders import local, new_order, step
from tests.support.processes import run_ris
from tests.support.users import ADMIN, api_token, bearer
from tests.support.web import add_user


class Api:
    """A test client that sends the token and validates each answer against the document."""

    def __init__(self, app: Flask, token: str | None) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.headers = bearer(token) if token else {}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers)
        response = self.client.open(path, method=method, **kwargs)
        check_documented_answer(self.app, method, path, response.status_code, response.get_json())
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def check_documented_answer(app: Flask, method: str, path: str, status: int, body: Any) -> None:
    adapter = app.url_map.bind("localhost")
    try:
        rule, _ = adapter.match(path.split("?")[0], method=method, return_rule=True)
    except Exception:  # an unknown path: only the error shape applies
        validate(body, "Error")
        return
    operation = DOCUMENT["paths"][openapi_path(rule.rule)][method.lower()]
    answer = operation["responses"].get(str(status))
    assert answer is not None, f"{method} {path} answered {status}, which the document does not declare"
    if "content" in answer:
        jsonschema.validate(
            body,
            {**answer["content"]["application/json"]["schema"], "components": DOCUMENT["components"]},
            cls=jsonschema.Draft202012Validator,
        )


def validate(body: Any, schema: str) -> None:
    jsonschema.validate(
        body,
        {"$ref": f"#/components/schemas/{schema}", "components": DOCUMENT["components"]},
        cls=jsonschema.Draft202012Validator,
    )


@pytest.fixture
def token(service: RisService) -> str:
    return api_token(service)


@pytest.fixture
def api(make_app: Callable[..., Flask], token: str) -> Api:
    return Api(make_app(), token)


ORDER = {
    "patient_id": "P-API-1",
    "patient_name": "MÜLLER^HANS",
    "patient_birth_date": "1960-01-31",
    "patient_sex": "m",
    "accession_number": "ACC-API-1",
    "modality": "ct",
    "station_ae": "CT_RAD_01",
    "scheduled_start": "2026-11-23T09:30",
    "procedure": "CT Thorax",
    "priority": "stat",
    "referring_physician": "WEBER^KLAUS",
    "comments": "nüchtern",
}


def orders_stored(service: RisService) -> int:
    with service.db.reading() as session:
        return int(session.scalar(select(func.count()).select_from(Order)) or 0)


# --- the document ------------------------------------------------------------------------------


def test_openapi_document_is_public_and_names_every_api_route(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


# --- tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer ris_nope"}],
)
def test_requests_without_a_valid_token_are_refused(api: Api, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/orders/1"), ("POST", "/api/orders"), ("GET", "/api/worklist-items")):
        response = api.call(method, path, headers=headers, json=ORDER if method == "POST" else None)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in response.get_json()["error"]


def test_a_refused_request_stores_nothing(api: Api, service: RisService) -> None:
    assert api.post("/api/orders", json=ORDER, headers={}).status_code == 401
    assert orders_stored(service) == 0


def test_token_is_stored_hashed_and_its_use_noted(service: RisService, api: Api, token: str) -> None:
    [view] = service.list_api_tokens("desk-api")
    assert view.last_used_at is None
    with service.db.reading() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert token not in stored
    assert len(stored[0]) == 64
    assert api.get("/api/worklist-items").status_code == 200
    [view] = service.list_api_tokens("desk-api")
    assert view.last_used_at is not None


def test_revoked_token_and_disabled_user_are_refused(
    service: RisService, make_app: Callable[..., Flask], token: str
) -> None:
    app = make_app()
    [view] = service.list_api_tokens("desk-api")
    service.revoke_api_token(view.id, ADMIN)
    assert Api(app, token).get("/api/worklist-items").status_code == 401
    other = api_token(service, "leaver")
    service.set_user_active("leaver", False, ADMIN)
    assert Api(app, other).get("/api/worklist-items").status_code == 401
    with pytest.raises(InvalidTransition, match="disabled"):
        service.create_api_token("leaver", "", ADMIN)


def test_ris_user_token_prints_a_working_token(
    service: RisService, make_app: Callable[..., Flask], settings: Any
) -> None:
    add_user(service, "his-bridge", Role.FRONTDESK)
    result = run_ris(settings, "user", "token", "his-bridge", "--name", "HIS bridge")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("ris_")
    assert "shown only now" in result.stderr
    assert Api(make_app(), token).get("/api/worklist-items").status_code == 200
    [view] = service.list_api_tokens("his-bridge")
    assert view.name == "HIS bridge"
    unknown = run_ris(settings, "user", "token", "nobody")
    assert unknown.returncode == 1
    assert "user 'nobody' does not exist" in unknown.stderr


# --- orders --------------------------------------------------------------------------------------


def test_create_order_stores_it_and_answers_with_it(api: Api, service: RisService) -> None:
    response = api.post("/api/orders", json=ORDER)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/api/orders/{body['id']}"
    assert body["accession_number"] == "ACC-API-1"
    assert body["priority"] == "STAT"
    assert body["patient"] == {
        "patient_id": "P-API-1",
        "issuer": "",
        "name": "MÜLLER^HANS",
        "birth_date": "19600131",
        "sex": "M",
    }
    [step_json] = body["steps"]
    assert step_json["status"] == "SCHEDULED"
    assert step_json["modality"] == "CT"
    assert step_json["scheduled_start"] == "2026-11-23T09:30:00+01:00"  # site time, Europe/Berlin
    stored = service.get_order(body["id"])
    assert stored.steps[0].start == local(2026, 11, 23, 9, 30)
    assert api.get(f"/api/orders/{body['id']}").get_json() == body
    with service.db.reading() as session:
        actors = session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "order.scheduled")).all()
    assert actors == ["api:desk-api"]


def test_start_with_an_offset_is_taken_as_given(api: Api, service: RisService) -> None:
    body = api.post("/api/orders", json=ORDER | {"scheduled_start": "2026-11-23T08:30:00Z"}).get_json()
    assert body["steps"][0]["scheduled_start"] == "2026-11-23T09:30:00+01:00"


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"patient_id": ""}, {"patient_id": "is required"}),
        ({"scheduled_start": "tomorrow"}, {"scheduled_start": "must be an ISO 8601"}),
        ({"modality": 7}, {"modality": "must be text"}),
        ({"colour": "blue"}, {"colour": "unknown field"}),
        ({"modality": "C T"}, {"modality": ""}),
        ({"patient_birth_date": "1960-13-45"}, {"patient_birth_date": ""}),
        ({"station_ae": "A" * 17}, {"station_ae": ""}),
    ],
)
def test_invalid_orders_are_400_with_the_field(
    api: Api, service: RisService, change: dict[str, Any], fields: dict[str, str]
) -> None:
    response = api.post("/api/orders", json=ORDER | change)
    assert response.status_code == 400
    body = response.get_json()
    for name, message in fields.items():
        assert body["fields"][name].startswith(message), body
    assert orders_stored(service) == 0


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_400(api: Api, data: bytes) -> None:
    response = api.post("/api/orders", data=data, content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["fields"]["body"]


def test_duplicate_accession_is_409_and_stores_nothing(api: Api, service: RisService) -> None:
    assert api.post("/api/orders", json=ORDER).status_code == 201
    response = api.post("/api/orders", json=ORDER | {"patient_id": "P-OTHER"})
    assert response.status_code == 409
    assert "ACC-API-1" in response.get_json()["error"]
    assert orders_stored(service) == 1


def test_unknown_order_and_unknown_paths_are_json_404(api: Api) -> None:
    assert api.get("/api/orders/999").status_code == 404
    assert "999" in api.get("/api/orders/999").get_json()["error"]
    assert api.post("/api/orders/999/cancel").status_code == 404
    unknown = api.get("/api/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]
    wrong_method = api.client.delete("/api/orders/1", headers=api.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]


def test_cancel_order(api: Api, service: RisService) -> None:
    order = service.schedule_order(new_order(), ADMIN)
    response = api.post(f"/api/orders/{order.id}/cancel", json={"reason": "patient declined"})
    assert response.status_code == 200
    assert [s["status"] for s in response.get_json()["steps"]] == ["CANCELED"]
    assert service.get_order(order.id).steps[0].status is StepStatus.CANCELED
    again = api.post(f"/api/orders/{order.id}/cancel")
    assert again.status_code == 200  # a repeated cancel changes nothing


def test_cancel_with_a_stale_version_is_409(api: Api, service: RisService) -> None:
    command = new_order()
    order = service.schedule_order(command, ADMIN)
    service.update_order(order.id, replace(command, order=replace(command.order, comments="x")), ADMIN)
    response = api.post(f"/api/orders/{order.id}/cancel", json={"version": order.version})
    assert response.status_code == 409
    assert "changed by someone else" in response.get_json()["error"]
    assert service.get_order(order.id).steps[0].status is StepStatus.SCHEDULED
    assert api.post(f"/api/orders/{order.id}/cancel", json={"version": "1"}).status_code == 400


def test_cancel_of_a_started_order_is_409(api: Api, service: RisService) -> None:
    order = service.schedule_order(new_order(), ADMIN)
    service.set_step_status(order.steps[0].id, StepStatus.STARTED, ADMIN)
    response = api.post(f"/api/orders/{order.id}/cancel")
    assert response.status_code == 409
    assert service.get_order(order.id).steps[0].status is StepStatus.STARTED


# --- worklist ------------------------------------------------------------------------------------


def test_worklist_items_filters_and_pages(api: Api, service: RisService) -> None:
    for day, modality in ((23, "CT"), (23, "MR"), (24, "CT"), (25, "CT")):
        service.schedule_order(new_order(steps=(step(modality=modality, start=local(2026, 11, day, 10)),)), ADMIN)
    canceled = service.schedule_order(
        new_order(patient={"name": "SCHMIDT^ANNA"}, steps=(step(start=local(2026, 11, 23, 11)),)), ADMIN
    )
    service.cancel_order(canceled.id, ADMIN)

    def listed(query: str) -> list[tuple[str, str, str]]:
        response = api.get(f"/api/worklist-items?{query}")
        assert response.status_code == 200
        return [(i["scheduled_start"][:10], i["modality"], i["status"]) for i in response.get_json()["items"]]

    assert listed("") == [
        ("2026-11-23", "CT", "SCHEDULED"),
        ("2026-11-23", "MR", "SCHEDULED"),
        ("2026-11-24", "CT", "SCHEDULED"),
        ("2026-11-25", "CT", "SCHEDULED"),
    ]
    assert listed("modality=mr") == [("2026-11-23", "MR", "SCHEDULED")]
    assert listed("date_from=2026-11-24&date_to=2026-11-24") == [("2026-11-24", "CT", "SCHEDULED")]
    assert listed("date_to=2026-11-23&modality=CT") == [("2026-11-23", "CT", "SCHEDULED")]
    assert listed("status=CANCELED") == [("2026-11-23", "CT", "CANCELED")]
    assert len(listed("status=SCHEDULED,CANCELED")) == 5
    assert listed("station=CT_RAD_02") == []
    assert listed("q=schmidt&status=CANCELED") == [("2026-11-23", "CT", "CANCELED")]
    first = api.get("/api/worklist-items?page_size=3").get_json()
    assert first["has_next"] is True
    assert first["counts"]["SCHEDULED"] == 4
    assert first["counts"]["CANCELED"] == 1
    second = api.get("/api/worklist-items?page_size=3&page=2").get_json()
    assert [i["scheduled_start"][:10] for i in second["items"]] == ["2026-11-25"]
    assert second["has_next"] is False
    item = first["items"][0]
    assert api.get(f"/api/orders/{item['order_id']}").get_json()["steps"][0]["id"] == item["step_id"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=0", "page_size"),
        ("page_size=501", "page_size"),
        ("page=0", "page"),
        ("page=ten", "page"),
        ("date_from=23.11.2026", "date_from"),
        ("date_from=2026-11-24&date_to=2026-11-23", "date_to"),
        ("status=DONE", "status"),
        ("modality=C%20T", "modality"),
        ("station=" + "A" * 17, "station"),
        ("q=" + "x" * 65, "q"),
    ],
)
def test_worklist_items_bad_parameters_are_400(api: Api, query: str, field: str) -> None:
    response = api.get(f"/api/worklist-items?{query}")
    assert response.status_code == 400
    assert field in response.get_json()["fields"]


def test_a_token_in_steady_use_is_noted_once_a_minute(settings: Settings, token: str) -> None:
    clock = Clock()
    service = RisService(Database(settings.database_url), settings, clock=clock)
    try:
        assert service.authenticate_token(token) is not None
        [first] = service.list_api_tokens("desk-api")
        clock.advance(59)
        assert service.authenticate_token(token) is not None
        assert service.list_api_tokens("desk-api")[0].last_used_at == first.last_used_at
        clock.advance(1)
        assert service.authenticate_token(token) is not None
        assert service.list_api_tokens("desk-api")[0].last_used_at == clock.now
    finally:
        service.db.dispose()
