"""Using the web application as a browser does: forms with their CSRF token, logging in."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ris.domain.model import SYSTEM
from ris.domain.users import Role
from ris.services import RisService

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(page: bytes | str) -> str:
    """The CSRF token of the (first) form on a page."""
    text = page.decode() if isinstance(page, bytes) else page
    match = _CSRF.search(text)
    assert match, "the page has no form with a CSRF token"
    return match.group(1) or match.group(2)


def submit(client: FlaskClient, form_url: str, data: dict[str, Any], action: str | None = None) -> TestResponse:
    """Open the page with the form, then post ``data`` with the page's CSRF token (to ``action``,
    default the page itself)."""
    page = client.get(form_url)
    assert page.status_code == 200, page.status_code
    return client.post(action or form_url, data={"csrf_token": csrf_token(page.data), **data})


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    return submit(client, "/login", {"username": username, "password": password})


def add_user(service: RisService, username: str, role: Role, password: str = PASSWORD) -> None:
    service.create_user(username, password, role, SYSTEM)


def logged_in_client(client: FlaskClient, service: RisService, username: str, role: Role) -> FlaskClient:
    """``client`` logged in through the login form as a new user with ``role``."""
    add_user(service, username, role)
    response = login(client, username)
    assert response.status_code == 303, response.data
    return client
