"""The web adapter: Flask blueprints over ris.services."""

from __future__ import annotations

from flask import Flask

from ris.web import health


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(health.blueprint)
