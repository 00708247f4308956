"""The web application: ``create_app()`` wires settings, database and blueprints; gunicorn serves
``app:app``. Listeners never run here (every gunicorn worker would bind their ports)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from ris.bootstrap import build_service, ensure_secret_key
from ris.settings import load_settings
from ris.web import register_blueprints

TEMPLATES = Path(__file__).parent / "templates"


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(overrides=overrides)
    flask_app = Flask(__name__, template_folder=str(TEMPLATES), instance_path=str(settings.instance_path))
    flask_app.config["SECRET_KEY"] = settings.secret_key or ensure_secret_key(settings.instance_path)
    flask_app.config["SESSION_COOKIE_HTTPONLY"] = True
    flask_app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    flask_app.extensions["ris"] = build_service(settings)
    register_blueprints(flask_app)
    return flask_app


def __getattr__(name: str) -> Flask:
    """``app:app`` for gunicorn, built on first use: importing ``create_app`` (tests, tools) must
    not read the site's settings or touch its instance folder."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    flask_app = create_app()
    globals()["app"] = flask_app
    return flask_app
