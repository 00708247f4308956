"""The web adapter: Flask blueprints over ris.services."""

from __future__ import annotations

from flask import Flask

from ris.web import api, health


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(health.blueprint)
    app.register_blueprint(api.blueprint)
