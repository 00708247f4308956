"""The JSON API under ``/api/`` for programs (an HIS without HL7, scripts): orders and the worklist.

Every request but the OpenAPI document carries ``Authorization: Bearer <token>`` (see ``ris user
token``); it acts as ``api:<username>`` with that user's role. Errors are JSON objects with an
``error`` text and, for invalid input, ``fields`` naming each bad field; their HTTP status comes
from the one table below.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from ris.domain.board import PAGE_SIZE, BoardFilter, BoardRow
from ris.domain.errors import (
    DomainError,
    FieldProblem,
    ValidationFailed,
)
from ris.domain.model import Actor, NewOrder, OrderData, OrderView, PatientData, ProcedureData, StepData
from ris.domain.status import OPEN_STATUSES, StepStatus
from ris.domain.users import UserView
from ris.services import RisService
from ris.web import errors, openapi

blueprint = Blueprint("api", __name__, url_prefix="/api")


MAX_PAGE_SIZE = 500

# Request field of POST /api/orders -> the field of NewOrder it becomes (for error messages).
ORDER_FIELDS: dict[str, str] = {
    "patient_id": "patient.patient_id",
    "issuer_of_patient_id": "patient.issuer",
    "patient_name": "patient.name",
    "patient_birth_date": "patient.birth_date",
    "patient_sex": "patient.sex",
    "accession_number": "order.accession_number",
    "modality": "procedures[0].steps[0].modality",
    "station_ae": "procedures[0].steps[0].station_ae",
    "station_name": "procedures[0].steps[0].station_name",
    "scheduled_start": "procedures[0].steps[0].start",
    "procedure": "procedures[0].description",
    "priority": "order.priority",
    "referring_physician": "order.referring_physician",
    "comments": "order.comments",
}
REQUIRED_ORDER_FIELDS = ("patient_id", "patient_name", "modality", "scheduled_start")
_REQUEST_FIELD = {domain: name for name, domain in ORDER_FIELDS.items()} | {
    "procedures[0].steps[0].description": "procedure",
    "station_ae": "station",  # BoardFilter's names in the query string of /api/worklist-items
    "text": "q",
}
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class BadRequest(ValidationFailed):
    """Input rejected by the API before it reaches the service (types, unknown fields, formats)."""


def service() -> RisService:
    ris: RisService = current_app.extensions["ris"]
    return ris


def caller() -> Actor:
    """Who the request acts for: the token's user, as the audit trail names API requests."""
    user: UserView = g.api_user
    return Actor("api", user.username)


def error_response(status: int, message: str, fields: dict[str, str] | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    response = jsonify(body)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ris"'
    return response, status


@blueprint.before_request
def require_token() -> tuple[Response, int] | None:
    if request.endpoint == "api.openapi_document":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(401, "send an API token: Authorization: Bearer <token>")
    holder = service().authenticate_token(token.strip())
    if holder is None:
        return error_response(401, "the API token is not valid (unknown, revoked, or its user is disabled)")
    g.api_user = holder
    return None


@blueprint.errorhandler(DomainError)
def domain_error(error: DomainError) -> tuple[Response, int]:
    status = errors.http_status(error)
    if isinstance(error, ValidationFailed):
        fields = {_REQUEST_FIELD.get(p.field, p.field): p.message for p in error.problems}
        return error_response(status, "the request has invalid fields", fields)
    return error_response(status, str(error))


@blueprint.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    """Unknown paths and methods under /api/ answer in JSON too; elsewhere the page as usual."""
    if not request.path.startswith("/api/"):
        return error
    return error_response(error.code or 500, error.description or error.name)


# --- orders ----------------------------------------------------------------------------------------


@blueprint.post("/orders")
def create_order() -> tuple[Response, int]:
    command = new_order_from_json(json_object())
    order = service().schedule_order(command, caller())
    response = jsonify(order_json(order))
    response.headers["Location"] = url_for("api.get_order", order_id=order.id)
    return response, 201


@blueprint.get("/orders/<int:order_id>")
def get_order(order_id: int) -> Response:
    return jsonify(order_json(service().get_order(order_id)))


@blueprint.post("/orders/<int:order_id>/cancel")
def cancel_order(order_id: int) -> Response:
    body = json_object(required=False)
    reason = _text(body, "reason")
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise BadRequest([_problem("version", "must be an integer (the order's version you saw)")])
    order = service().cancel_order(order_id, caller(), reason, expected_version=version)
    return jsonify(order_json(order))


def json_object(*, required: bool = True) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not required and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise BadRequest([_problem("body", "must be a JSON object (Content-Type: application/json)")])
    return body


def new_order_from_json(body: dict[str, Any]) -> NewOrder:
    problems = [_problem(name, "unknown field") for name in body if name not in ORDER_FIELDS]
    problems += [_problem(name, "must be text") for name, value in body.items() if not isinstance(value, str)]
    problems += [_problem(name, "is required") for name in REQUIRED_ORDER_FIELDS if not body.get(name)]
    if problems:
        raise BadRequest(problems)
    start = _start(body["scheduled_start"])
    procedure = _text(body, "procedure")
    return NewOrder(
        patient=PatientData(
            patient_id=body["patient_id"],
            issuer=_text(body, "issuer_of_patient_id"),
            name=body["patient_name"],
            birth_date=_dicom_date(_text(body, "patient_birth_date")),
            sex=_text(body, "patient_sex").upper(),
        ),
        order=OrderData(
            accession_number=_text(body, "accession_number"),
            priority=_text(body, "priority").upper() or "ROUTINE",
            referring_physician=_text(body, "referring_physician"),
            comments=_text(body, "comments"),
        ),
        procedures=(
            ProcedureData(
                description=procedure,
                steps=(
                    StepData(
                        modality=body["modality"].upper(),
                        start=start,
                        station_ae=_text(body, "station_ae"),
                        station_name=_text(body, "station_name"),
                        description=procedure,
                    ),
                ),
            ),
        ),
    )


def _problem(name: str, message: str) -> FieldProblem:
    return FieldProblem(name, message)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise BadRequest([_problem(name, "must be text")])
    return value.strip()


def _start(value: str) -> dt.datetime:
    """ISO 8601 date and time; without a UTC offset it is the site's local time."""
    try:
        start = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            [_problem("scheduled_start", "must be an ISO 8601 date and time, e.g. 2026-11-23T09:30")]
        ) from None
    return start if start.tzinfo else start.replace(tzinfo=service().zone)


def _dicom_date(value: str) -> str:
    """2026-11-23 as DICOM's 20261123; other forms go to the service's DA check as they are."""
    match = _ISO_DATE.match(value)
    return "".join(match.groups()) if match else value


def order_json(order: OrderView) -> dict[str, Any]:
    zone = service().zone
    return {
        "id": order.id,
        "version": order.version,
        "patient": dataclasses.asdict(order.patient),
        "accession_number": order.order.accession_number,
        "priority": order.order.priority,
        "referring_physician": order.order.referring_physician,
        "comments": order.order.comments,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "steps": [
            {
                "id": step.id,
                "sps_id": step.sps_id,
                "status": str(step.status),
                "modality": step.modality,
                "station_ae": step.station_ae,
                "station_name": step.station_name,
                "scheduled_start": step.start.astimezone(zone).isoformat(),
                "description": step.description,
                "requested_procedure_id": procedure.requested_procedure_id,
                "study_instance_uid": procedure.study_uid,
                "version": step.version,
            }
            for procedure in order.procedures
            for step in procedure.steps
        ],
    }


# --- worklist ----------------------------------------------------------------------------------------


@blueprint.get("/worklist-items")
def worklist_items() -> Response:
    """The board's list for programs: the same filter (BoardFilter) and the same paging."""
    statuses = _statuses_arg()
    board = BoardFilter(
        date_from=_date_arg("date_from"),
        date_to=_date_arg("date_to"),
        modality=request.args.get("modality", "").strip().upper(),
        station_ae=request.args.get("station", "").strip(),
        statuses=statuses or OPEN_STATUSES,
        text=request.args.get("q", ""),
    )
    page_size = _int_arg("page_size", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    found = service().search_board(board, _int_arg("page", 1, 1, None), page_size)
    return jsonify(
        {
            "items": [worklist_item_json(row) for row in found.rows],
            "page": found.page,
            "page_size": found.page_size,
            "has_next": found.has_next,
            "counts": {str(status): count for status, count in found.counts.items()},
        }
    )


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f"{low}..{high}" if high is not None else f"{low} or more"
        raise BadRequest([_problem(name, f"must be a whole number, {bounds}")])
    return int(raw)


def _date_arg(name: str) -> dt.date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest([_problem(name, "must be a date, YYYY-MM-DD")]) from None


def _statuses_arg() -> frozenset[StepStatus]:
    names = [part.strip().upper() for value in request.args.getlist("status") for part in value.split(",")]
    try:
        return frozenset(StepStatus(name) for name in names if name)
    except ValueError:
        choices = ", ".join(s.value for s in StepStatus)
        raise BadRequest([_problem("status", f"must be one or more of {choices}")]) from None


def worklist_item_json(row: BoardRow) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "step_id": row.step_id,
        "scheduled_start": row.start.isoformat(),
        "status": str(row.status),
        "patient_name": row.patient_name,
        "patient_id": row.patient_id,
        "accession_number": row.accession_number,
        "modality": row.modality,
        "station_ae": row.station_ae,
        "procedure": row.description,
        "priority": row.priority,
    }


# --- the document ------------------------------------------------------------------------------------


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.DOCUMENT)
