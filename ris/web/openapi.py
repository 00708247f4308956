"""The OpenAPI 3.1 description of ``/api/``, kept as data and served at ``GET /api/openapi.json``.
Tests check that it names every API route and that the API's answers fit its schemas."""

from __future__ import annotations

from typing import Any

from ris.domain.status import StepStatus

_TEXT = {"type": "string"}
_DATE_TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid input; `fields` names each bad field",
        401: "No API token, or not a valid one",
        404: "No such order",
        409: "Duplicate accession number or study, a version conflict, or a status change not allowed",
        503: "The database is unavailable; nothing was stored",
    }
    return {str(code): _json(_ref("Error"), meaning[code]) for code in codes}


_ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "integer"}}

_NEW_ORDER_PROPERTIES: dict[str, dict[str, Any]] = {
    "patient_id": {"type": "string", "maxLength": 64},
    "issuer_of_patient_id": {"type": "string", "maxLength": 64},
    "patient_name": {"type": "string", "description": "DICOM person name, FAMILY^GIVEN"},
    "patient_birth_date": {"type": "string", "description": "YYYY-MM-DD or YYYYMMDD"},
    "patient_sex": {"type": "string", "enum": ["M", "F", "O", ""]},
    "accession_number": {"type": "string", "maxLength": 16, "description": "unique; empty: none"},
    "modality": {"type": "string", "description": "DICOM modality, e.g. CT, MR"},
    "station_ae": {"type": "string", "maxLength": 16, "description": "Scheduled Station AE Title"},
    "station_name": {"type": "string", "maxLength": 16},
    "scheduled_start": {"type": "string", "description": "ISO 8601; without a UTC offset: site time"},
    "procedure": {"type": "string", "maxLength": 64, "description": "requested procedure / step description"},
    "priority": {"type": "string", "enum": ["STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW", ""]},
    "referring_physician": {"type": "string", "description": "DICOM person name"},
    "comments": _TEXT,
}

SCHEMAS: dict[str, Any] = {
    "Status": {"type": "string", "enum": [str(status) for status in StepStatus]},
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": _TEXT,
            "fields": {"type": "object", "additionalProperties": _TEXT},
        },
    },
    "NewOrder": {
        "type": "object",
        "required": ["patient_id", "patient_name", "modality", "scheduled_start"],
        "additionalProperties": False,
        "properties": _NEW_ORDER_PROPERTIES,
    },
    "Cancel": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": _TEXT,
            "version": {"type": "integer", "description": "the order version you saw; 409 if it changed since"},
        },
    },
    "Patient": {
        "type": "object",
        "required": ["patient_id", "issuer", "name", "birth_date", "sex"],
        "properties": {"patient_id": _TEXT, "issuer": _TEXT, "name": _TEXT, "birth_date": _TEXT, "sex": _TEXT},
    },
    "Step": {
        "type": "object",
        "required": ["id", "sps_id", "status", "modality", "station_ae", "scheduled_start", "version"],
        "properties": {
            "id": {"type": "integer"},
            "sps_id": _TEXT,
            "status": _ref("Status"),
            "modality": _TEXT,
            "station_ae": _TEXT,
            "station_name": _TEXT,
            "scheduled_start": _DATE_TIME,
            "description": _TEXT,
            "requested_procedure_id": _TEXT,
            "study_instance_uid": _TEXT,
            "version": {"type": "integer"},
        },
    },
    "Order": {
        "type": "object",
        "required": ["id", "version", "patient", "accession_number", "priority", "steps"],
        "properties": {
            "id": {"type": "integer"},
            "version": {"type": "integer"},
            "patient": _ref("Patient"),
            "accession_number": _TEXT,
            "priority": _TEXT,
            "referring_physician": _TEXT,
            "comments": _TEXT,
            "created_at": _DATE_TIME,
            "updated_at": _DATE_TIME,
            "steps": {"type": "array", "items": _ref("Step")},
        },
    },
    "WorklistItem": {
        "type": "object",
        "required": ["order_id", "step_id", "scheduled_start", "status", "modality", "accession_number"],
        "properties": {
            "order_id": {"type": "integer"},
            "step_id": {"type": "integer"},
            "scheduled_start": _DATE_TIME,
            "status": _ref("Status"),
            "patient_name": _TEXT,
            "patient_id": _TEXT,
            "accession_number": _TEXT,
            "modality": _TEXT,
            "station_ae": _TEXT,
            "procedure": _TEXT,
            "priority": _TEXT,
        },
    },
    "WorklistPage": {
        "type": "object",
        "required": ["items", "page", "page_size", "has_next", "counts"],
        "properties": {
            "items": {"type": "array", "items": _ref("WorklistItem")},
            "page": {"type": "integer", "minimum": 1},
            "page_size": {"type": "integer"},
            "has_next": {"type": "boolean"},
            "counts": {
                "type": "object",
                "description": "steps per status in the filtered range, whatever the status filter",
                "additionalProperties": {"type": "integer"},
            },
        },
    },
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or _TEXT}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "RIS broker API",
        "version": "1",
        "description": "Orders and the worklist for programs. Send `Authorization: Bearer <token>` "
        "(create one with `ris user token USERNAME`); the request acts with that user's role.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/orders": {
            "post": {
                "summary": "Schedule a new order (one requested procedure, one step)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewOrder")}}},
                "responses": {"201": _json(_ref("Order"), "Stored"), **_errors(400, 401, 409, 503)},
            }
        },
        "/api/orders/{order_id}": {
            "get": {
                "summary": "An order with its steps",
                "parameters": [_ORDER_ID],
                "responses": {"200": _json(_ref("Order"), "The order"), **_errors(401, 404)},
            }
        },
        "/api/orders/{order_id}/cancel": {
            "post": {
                "summary": "Cancel every open step of an order (a repeated cancel changes nothing)",
                "parameters": [_ORDER_ID],
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("Cancel")}}},
                "responses": {"200": _json(_ref("Order"), "Canceled"), **_errors(400, 401, 404, 409, 503)},
            }
        },
        "/api/worklist-items": {
            "get": {
                "summary": "Scheduled steps by start time, filtered like the board; open ones unless a status asks",
                "parameters": [
                    _query("date_from", "first day, YYYY-MM-DD (site time)", {"type": "string", "format": "date"}),
                    _query("date_to", "last day, YYYY-MM-DD (site time)", {"type": "string", "format": "date"}),
                    _query("modality", "e.g. CT"),
                    _query("station", "Scheduled Station AE Title"),
                    _query("status", "one or more statuses, comma-separated or repeated (default: the open ones)"),
                    _query("q", "start of a patient name (MÜLLER^HA or Müller, Ha), a patient ID or an accession"),
                    _query("page", "1 or more (default 1)", {"type": "integer", "minimum": 1}),
                    _query("page_size", "1..500 (default 50)", {"type": "integer", "minimum": 1, "maximum": 500}),
                ],
                "responses": {"200": _json(_ref("WorklistPage"), "One page"), **_errors(400, 401)},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
}
