"""``GET /metrics``: Prometheus text format, open like ``/healthz`` (it holds counts, no patient
data); keep the web bind internal or put the path behind the proxy's access rules."""

from __future__ import annotations

from flask import Blueprint, Response

from ris import prometheus
from ris.web.context import service

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    ris = service()
    body = prometheus.render(ris.settings.instance_path, ris.outbox_depth)
    return Response(body, content_type=prometheus.CONTENT_TYPE)
