"""What every view needs from the application: the service."""

from __future__ import annotations

from flask import current_app

from ris.services import RisService


def service() -> RisService:
    ris: RisService = current_app.extensions["ris"]
    return ris
