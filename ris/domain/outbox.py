"""Outbox tasks: deliveries to other systems (IAN, MPPS forward, HL7 status to the HIS), written
in the same transaction as the change they report and delivered later by the outbox worker.

Each task is one (event, destination) pair, named by a dedupe key so that enqueueing it twice is a
no-op. Tasks sharing an ordering key are delivered strictly one after the other, in the order they
were written (the N-CREATE before the N-SETs of a forwarded step, IP before CM of an order).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ris.domain.status import StepStatus


class TaskKind(StrEnum):
    IAN = "ian"
    MPPS_FORWARD = "mpps-forward"
    HL7_STATUS = "hl7-status"


class TaskState(StrEnum):
    PENDING = "PENDING"  # waiting for its next attempt (or being delivered right now)
    SENT = "SENT"  # the destination confirmed it
    FAILED = "FAILED"  # given up; only a manual retry sends it again


@dataclass(frozen=True)
class NewTask:
    """A delivery to enqueue."""

    kind: TaskKind
    destination: str  # AE title, or host:port for HL7
    dedupe_key: str
    payload: dict[str, Any]
    ordering_key: str | None = None
    order_id: int | None = None
    performed_step_id: int | None = None


@dataclass(frozen=True)
class OutboxTask:
    id: int
    kind: TaskKind
    destination: str
    state: TaskState
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str
    created_at: dt.datetime
    pending_since: dt.datetime
    sent_at: dt.datetime | None
    order_id: int | None
    performed_step_id: int | None
    payload: dict[str, Any]

    @property
    def earlier_attempt_unresolved(self) -> bool:
        """An earlier attempt was claimed but neither confirmed nor failed: the worker stopped
        during it, so the destination may already have this task."""
        return self.attempts > 1 and not self.last_error

    @property
    def subject(self) -> str:
        """What the task is about, for lists and logs (a SOP instance UID, an accession)."""
        return str(self.payload.get("subject", ""))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, and a give-up age counted from the moment the task
    became pending (its creation, or a manual retry)."""

    initial_delay: float  # seconds
    max_delay: float
    give_up_after: float

    def delay(self, attempts: int, jitter: float) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt; ``jitter`` in [0, 1) spreads
        retries over the upper half of the interval so that many tasks do not retry in step."""
        base = min(self.max_delay, self.initial_delay * 2.0 ** max(attempts - 1, 0))
        return base / 2 + base / 2 * jitter

    def gives_up(self, pending_for: dt.timedelta) -> bool:
        return pending_for.total_seconds() >= self.give_up_after


def ian_key(mpps_uid: str, destination: str) -> str:
    return f"ian:{mpps_uid}:{destination}"


def forward_key(event_id: int, destination: str) -> str:
    return f"mpps-forward:{event_id}:{destination}"


def forward_ordering_key(mpps_uid: str, destination: str) -> str:
    return f"mpps-forward:{destination}:{mpps_uid}"


# Step statuses the HIS hears about (ORM^O01 order control SC: IP, CM).
REPORTED_TO_HIS: frozenset[StepStatus] = frozenset({StepStatus.STARTED, StepStatus.COMPLETED})


def status_key(step_id: int, status: StepStatus, destination: str) -> str:
    return f"hl7-status:{step_id}:{status}:{destination}"


def status_ordering_key(order_id: int, destination: str) -> str:
    """An order's status messages reach the HIS in the order they happened (IP before CM)."""
    return f"hl7-status:{destination}:{order_id}"
