"""The web adapter: Flask blueprints over ris.services."""

from __future__ import annotations

from flask import Flask

from ris.web import admin, api, auth, board, errors, health, metrics, orders
from ris.web.forms import person_name


def register_blueprints(app: Flask) -> None:
    auth.init_app(app)
    app.add_template_filter(person_name, "person_name")
    app.register_blueprint(health.blueprint)
    app.register_blueprint(board.blueprint)
    app.register_blueprint(orders.blueprint)
    errors.init_app(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(admin.blueprint)
