"""The web's one table from domain errors to HTTP status, for errors no form field can show."""

from __future__ import annotations

from flask import Flask, Response, render_template

from ris.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    InvalidTransition,
    NotFound,
    StorageUnavailable,
    ValidationFailed,
)

STATUS_OF: tuple[tuple[type[DomainError], int], ...] = (
    (ValidationFailed, 400),
    (NotFound, 404),
    (AlreadyExists, 409),
    (ConcurrentUpdate, 409),
    (InvalidTransition, 409),
    (StorageUnavailable, 503),
)


def http_status(error: DomainError) -> int:
    return next((status for kind, status in STATUS_OF if isinstance(error, kind)), 500)


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, _domain_error)


def _domain_error(error: DomainError) -> Response:
    """Pages only: the JSON API's blueprint answers its errors itself."""
    status = http_status(error)
    return Response(render_template("errors/domain.html", error=error, status=status), status=status)
