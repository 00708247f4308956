"""Step status to the HIS (an outbox delivery, a port of ris.outbox): ORM^O01 with order control SC
and the order status in ORC-5, over MLLP, delivered when the HIS answers AA (or CA).

The message carries the order's identifiers as the HIS sent them (ORC-2 placer, ORC-3 filler,
OBR-18 accession, OBR-19 requested procedure ID, OBR-20 SPS ID, ZDS-1 Study Instance UID), so the
HIS finds its order, and the MSH-10 the task got when it was written, so that a re-send after a
crash carries the same control ID.
"""

from __future__ import annotations

from typing import Any

from hl7 import er7
from hl7.charsets import HL7_TO_DICOM_CHARSET
from hl7.client import MllpError, send_message
from ris.domain.outbox import OutboxTask
from ris.outbox import DeliveryFailed

# Step status (the task's payload) -> ORC-5 order status (HL7 table 0038).
ORDER_STATUS: dict[str, str] = {"STARTED": "IP", "COMPLETED": "CM"}

# The order's DICOM character set -> MSH-18; anything else (the default repertoire "" too, whose text
# may have gained non-ASCII letters since) is sent as UTF-8, the same bytes for ASCII text.
MSH_18: dict[str, str] = {dicom: hl7 for hl7, dicom in HL7_TO_DICOM_CHARSET.items() if hl7 not in ("8859/15", "ASCII")}

VERSION = "2.5.1"


def status_message(payload: dict[str, Any], sending_application: str) -> str:
    """The ORM^O01 SC message of one status task, as ER7 text (segments end with CR)."""

    def text(name: str) -> str:
        return er7.escape(str(payload.get(name, "")))

    def components(*values: str) -> str:
        joined = "^".join(er7.escape(value) for value in values)
        return joined.rstrip("^")

    family, given, middle, prefix, suffix = (str(payload.get("patient_name", "")).split("^") + [""] * 5)[:5]
    code_value, code_meaning, code_scheme = payload.get("procedure_code", ["", "", ""])
    charset = MSH_18.get(str(payload.get("character_set", "")), "UNICODE UTF-8")
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                er7.escape(sending_application),
                "",
                "",
                "",
                text("at"),
                "",
                "ORM^O01^ORM_O01",
                text("control_id"),
                "P",
                VERSION,
                "",
                "",
                "AL",
                "NE",
                "",
                charset,
            ]
        ),
        "|".join(
            [
                "PID",
                "1",
                "",
                components(str(payload.get("patient_id", "")), "", "", str(payload.get("issuer_of_patient_id", ""))),
                "",
                components(family, given, middle, suffix, prefix),  # XPN: family^given^middle^suffix^prefix
            ]
        ),
        "|".join(
            ["ORC", "SC", text("placer_order_number"), text("filler_order_number"), "", ORDER_STATUS[payload["status"]]]
            + [""] * 3
            + [text("at")]
        ),
        "|".join(
            [
                "OBR",
                "1",
                text("placer_order_number"),
                text("filler_order_number"),
                components(code_value, code_meaning, code_scheme),
                *[""] * 13,
                text("accession_number"),
                text("requested_procedure_id"),
                text("sps_id"),
                "",
                "",
                "",
                text("modality"),
            ]
        ),
        "|".join(["ZDS", components(str(payload.get("study_uid", "")), sending_application, "Application", "DICOM")]),
    ]
    return "".join(segment + er7.SEGMENT_TERMINATOR for segment in segments)


class HisStatusDelivery:
    """Sends an ``hl7-status`` task to its destination (``host:port``) and waits for the ACK."""

    def __init__(self, sending_application: str, timeout: float) -> None:
        self.sending_application = sending_application
        self.timeout = timeout

    def __call__(self, task: OutboxTask) -> None:
        host, _, port = task.destination.rpartition(":")
        message = status_message(task.payload, self.sending_application)
        try:
            ack = send_message(host, int(port), message, timeout=self.timeout)
        except MllpError as exc:
            raise DeliveryFailed(str(exc)) from exc
        if not ack.accepted:
            details = "; ".join(part for part in (ack.text, *ack.errors) if part)
            raise DeliveryFailed(
                f"the HIS at {task.destination} answered {ack.code}" + (f": {details}" if details else "")
            )
