"""``GET /healthz``: is this site able to work? For load balancers and monitoring: the database
and its schema, and the listener process (DICOM, HL7, outbox worker) by its heartbeat."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ris import heartbeat
from ris.web.context import service

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    status = service().schema_status()
    listener = heartbeat.read(service().settings.instance_path)
    healthy = status.up_to_date and listener.healthy
    body = {
        "status": "ok" if healthy else "error",
        "database": {
            "reachable": status.reachable,
            "schema_revision": status.revision,
            "expected_revision": status.head,
            **({"error": status.error} if status.error else {}),
        },
        "listener": {
            "state": listener.state,
            "healthy": listener.healthy,
            "parts": listener.parts,
            "pid": listener.pid,
            "heartbeat_age_seconds": listener.age_seconds,
        },
    }
    return jsonify(body), 200 if healthy else 503
