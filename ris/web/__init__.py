"""The web adapter: Flask blueprints over ris.services."""

from __future__ import annotations

from flask import Flask

from ris.web import api, auth, board, health


def register_blueprints(app: Flask) -> None:
    auth.init_app(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(board.blueprint)
    app.register_blueprint(api.blueprint)
