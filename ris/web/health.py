"""``GET /healthz``: is this site able to work? For load balancers and monitoring."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ris.web.context import service

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    status = service().schema_status()
    healthy = status.up_to_date
    body = {
        "status": "ok" if healthy else "error",
        "database": {
            "reachable": status.reachable,
            "schema_revision": status.revision,
            "expected_revision": status.head,
            **({"error": status.error} if status.error else {}),
        },
    }
    return jsonify(body), 200 if healthy else 503
