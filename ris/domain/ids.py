"""Identifiers the broker makes up when the order does not bring its own."""

from __future__ import annotations

import secrets
import uuid

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I/O: read aloud at a scanner without confusion


def new_uid() -> str:
    """A DICOM UID under the UUID-derived root 2.25 (PS3.5 B.2): unique with no registered root."""
    return f"2.25.{uuid.uuid4().int}"


def new_short_id(prefix: str) -> str:
    """An SH-sized (≤ 16 characters) random identifier such as ``SPS7K2M9QX4HD``."""
    body_length = 16 - len(prefix)
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(min(body_length, 10)))
