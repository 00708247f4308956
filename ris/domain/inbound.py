"""Messages from other systems (the HIS feed) as the service layer sees them: who sent what, the
commands the adapter made of it, and the answer that is stored with it.

The adapter turns a message into `OrderCommand` values and hands them, with the raw message and a
function that words the answer, to ``RisService.receive_message``. The service journals the message,
applies the commands and stores the answer in ONE transaction, and returns the stored answer when
the same message (sender + control id) comes again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ris.domain.errors import DomainError
from ris.domain.model import NewOrder, OrderKey, PatientData
from ris.domain.status import StepStatus


@dataclass(frozen=True)
class ScheduleOrder:
    """A new order (HL7 ORC-1 NW)."""

    order: NewOrder


@dataclass(frozen=True)
class UpdateOrder:
    """New details for a known order (HL7 ORC-1 XO)."""

    key: OrderKey
    order: NewOrder


@dataclass(frozen=True)
class ChangeOrderStatus:
    """Every open step of a known order moves to ``target`` (HL7 CA, DC, SC)."""

    key: OrderKey
    target: StepStatus
    reason: str = ""


@dataclass(frozen=True)
class UpdatePatient:
    """New demographics for a known patient (HL7 ADT^A08/A31); open items follow."""

    patient: PatientData


@dataclass(frozen=True)
class MergePatients:
    """The prior patient record was a duplicate of ``surviving`` (HL7 ADT^A40)."""

    surviving: PatientData
    prior_id: str
    prior_issuer: str


OrderCommand = ScheduleOrder | UpdateOrder | ChangeOrderStatus | UpdatePatient | MergePatients


@dataclass(frozen=True)
class Applied:
    """Every command of a message was applied."""

    order_ids: tuple[int, ...]
    """Orders created or changed, in command order."""
    items_changed: int
    """Worklist items created or changed."""


@dataclass(frozen=True)
class CommandFailed:
    """A command could not be applied; nothing of the message changed."""

    index: int | None
    """The failed command's position (0-based, in message order); None for a conflict found at commit."""
    error: DomainError


Outcome = Applied | CommandFailed


@dataclass(frozen=True)
class InboundMessage:
    """A message as received. Sender, facility and control id together name it for deduplication."""

    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    raw: bytes
    peer: str = ""


@dataclass(frozen=True)
class Reply:
    """The answer to a message, as the adapter words it (for HL7: the ACK bytes)."""

    code: str
    """Outcome code, e.g. HL7 MSA-1 AA/AE/AR."""
    body: bytes
    error: str = ""
    """What went wrong, for the journal; "" when nothing did."""


Answer = Callable[[Outcome], Reply]


@dataclass(frozen=True)
class Receipt:
    """What happened to a received message: the stored reply, and whether it was a replay."""

    reply: Reply
    replayed: bool
    journal_id: int


@dataclass(frozen=True)
class JournalEntry:
    """One row of the message journal, for ``ris hl7 log``."""

    id: int
    received_at: dt.datetime
    peer: str
    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    ack_code: str
    error: str
    order_id: int | None
    raw: bytes
    ack: bytes
