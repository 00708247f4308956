"""API tokens: a secret a program sends as ``Authorization: Bearer <token>`` and acts with the role
of the user it belongs to. Only a hash of the token is kept; the token itself is shown once."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "ris_"  # noqa: S105 - a marker that makes leaked tokens easy to spot, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored and looked up: a token has 256 random bits, so a plain SHA-256 is enough (no
    salt, no slow hash: there is nothing to guess)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiTokenView:
    id: int
    username: str
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
