"""The history of one order as the front desk reads it: everything that happened to it, from
every side (people, the HIS, the modalities, the deliveries to other systems)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ris.domain import mpps
from ris.domain.dicom_json import DicomJson, text
from ris.domain.outbox import OutboxTask, TaskState


class EntryKind(StrEnum):
    CHANGE = "change"  # an audited change (form, API, HL7, modality, CLI)
    HL7 = "hl7"  # a message from the HIS, with the ACK it got
    MPPS = "mpps"  # an N-CREATE or N-SET of a linked performed step
    DELIVERY = "delivery"  # an IAN, MPPS forward or status message to another system


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: EntryKind
    what: str  # order.updated, ORM^O01, N-SET COMPLETED, ian to PACS
    who: str  # user:anna, the HIS application, the modality's AE, the destination
    details: str
    state: str = ""  # HL7: the ACK code; deliveries: PENDING, SENT or FAILED
    task_id: int | None = None  # deliveries: the outbox task

    @property
    def retryable(self) -> bool:
        return self.kind is EntryKind.DELIVERY and self.state == TaskState.FAILED


def change_entry(at: dt.datetime, actor: str, action: str, details: Mapping[str, Any]) -> TimelineEntry:
    shown = [f"{name}: {_shown(value)}" for name, value in details.items() if value not in ("", None, [], {})]
    return TimelineEntry(at, EntryKind.CHANGE, action, actor, ", ".join(shown))


def hl7_entry(
    at: dt.datetime, sender: str, message_type: str, control_id: str, ack_code: str, error: str
) -> TimelineEntry:
    details = f"control id {control_id}" + (f"; {error}" if error else "")
    return TimelineEntry(at, EntryKind.HL7, message_type or "HL7 message", sender, details, state=ack_code)


def mpps_entry(
    at: dt.datetime, kind: str, calling_ae: str, sop_instance_uid: str, attributes: DicomJson
) -> TimelineEntry:
    status = text(attributes, mpps.PPS_STATUS)
    return TimelineEntry(
        at, EntryKind.MPPS, f"{kind} {status}".strip(), calling_ae, f"performed step {sop_instance_uid}"
    )


def delivery_entry(task: OutboxTask) -> TimelineEntry:
    details = f"{task.attempts} attempt(s)"
    if task.sent_at is not None:
        details += f", sent {task.sent_at:%Y-%m-%d %H:%M:%S} UTC"
    if task.last_error and task.state is not TaskState.SENT:
        details += f"; last error: {task.last_error}"
    return TimelineEntry(
        task.created_at,
        EntryKind.DELIVERY,
        f"{task.kind} to {task.destination}",
        task.destination,
        details,
        state=str(task.state),
        task_id=task.id,
    )


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
