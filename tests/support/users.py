"""API tokens for API tests."""

from __future__ import annotations

from ris.domain.model import Actor
from ris.domain.users import Role
from ris.services import RisService
from tests.support.web import add_user

ADMIN = Actor("cli", "test-admin")


def api_token(service: RisService, username: str = "desk-api", role: Role = Role.FRONTDESK) -> str:
    """A token of a new user with ``role``."""
    add_user(service, username, role)
    return service.create_api_token(username, "tests", ADMIN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
