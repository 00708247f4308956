"""``/healthz`` and the start page through the Flask test client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask


def test_healthz_reports_the_schema(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().get("/healthz")
    assert response.status_code == 503  # no listener process (see tests/protocol/test_metrics_and_health.py)
    body = response.get_json()
    assert body["listener"]["state"] == "stopped"
    assert body["database"]["reachable"] is True
    assert body["database"]["schema_revision"] == body["database"]["expected_revision"]


def test_healthz_fails_when_the_database_is_unreachable(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "ris.db"
    response = make_app(database_url=f"sqlite:///{missing}").test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"]["reachable"] is False
    assert body["database"]["error"]
