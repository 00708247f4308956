"""Users and API tokens for web and API tests."""

from __future__ import annotations

from ris.db.models import User
from ris.domain.model import Actor
from ris.services import RisService

ADMIN = Actor("cli", "test-admin")


def add_user(service: RisService, username: str, role: str = "frontdesk", *, active: bool = True) -> None:
    with service.db.transaction() as session:
        session.add(User(username=username, password_hash="!", role=role, active=active))


def api_token(service: RisService, username: str = "desk-api", role: str = "frontdesk") -> str:
    """A token of a new user with ``role``."""
    add_user(service, username, role)
    return service.create_api_token(username, "tests", ADMIN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
