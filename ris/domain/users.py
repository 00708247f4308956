"""Web users: who may log in and what they may do. Passwords are hashed by the service layer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ris.domain.errors import FieldProblem

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


class Role(StrEnum):
    FRONTDESK = "frontdesk"  # orders, board, order pages
    ADMIN = "admin"  # also users, remote AEs, tokens, the outbox


@dataclass(frozen=True)
class UserView:
    username: str
    role: Role
    active: bool

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def username_problem(username: str) -> str | None:
    if not 1 <= len(username) <= 64:
        return "must be 1 to 64 characters long"
    if not _USERNAME.fullmatch(username):
        return "may only hold lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters long"
    return None


def new_user_problems(username: str, password: str, role: str) -> list[FieldProblem]:
    problems = [
        FieldProblem(name, message)
        for name, message in (("username", username_problem(username)), ("password", password_problem(password)))
        if message
    ]
    if role not in set(Role):
        problems.append(FieldProblem("role", f"must be one of {', '.join(Role)}"))
    return problems
