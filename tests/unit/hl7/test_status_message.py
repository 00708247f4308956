"""The ORM^O01 SC status message for the HIS, read back with hl7apy (an independent parser)."""

from __future__ import annotations

from typing import Any

import pytest
from hl7apy.parser import parse_message

from hl7 import er7
from hl7.status import status_message

PAYLOAD: dict[str, Any] = {
    "subject": "A00000042",
    "control_id": "RIS7K2M9QX4HD",
    "status": "STARTED",
    "at": "20261123094500",
    "character_set": "ISO_IR 100",
    "patient_id": "P000042",
    "issuer_of_patient_id": "KLINIKUM",
    "patient_name": "MÜLLER^HANS^PETER^DR.^JR",
    "placer_order_number": "PL42",
    "filler_order_number": "FI42",
    "accession_number": "A00000042",
    "requested_procedure_id": "RP000042",
    "procedure_code": ["CTTHXKM", "CT Thorax mit KM", "99RAD"],
    "sps_id": "SPS000042",
    "modality": "CT",
    "study_uid": "1.2.826.0.1.3680043.10.1474.9.42",
}


def _parsed(payload: dict[str, Any]) -> Any:
    return parse_message(status_message(payload, "RISBROKER"), find_groups=False)


@pytest.mark.parametrize(("status", "orc_5"), [("STARTED", "IP"), ("COMPLETED", "CM")])
def test_orc_1_is_sc_and_orc_5_the_status(status: str, orc_5: str) -> None:
    message = _parsed(PAYLOAD | {"status": status})
    assert message.msh.msh_9.to_er7() == "ORM^O01^ORM_O01"
    assert message.orc.orc_1.to_er7() == "SC"
    assert message.orc.orc_5.to_er7() == orc_5


def test_identifiers_the_his_knows_its_order_by() -> None:
    message = _parsed(PAYLOAD)
    assert message.msh.msh_3.to_er7() == "RISBROKER"
    assert message.msh.msh_10.to_er7() == "RIS7K2M9QX4HD"
    assert message.msh.msh_18.to_er7() == "8859/1"
    assert message.pid.pid_3.to_er7() == "P000042^^^KLINIKUM"
    assert message.pid.pid_5.to_er7() == "MÜLLER^HANS^PETER^JR^DR."
    assert message.orc.orc_2.to_er7() == "PL42"
    assert message.orc.orc_3.to_er7() == "FI42"
    assert message.orc.orc_9.to_er7() == "20261123094500"
    assert message.obr.obr_4.to_er7() == "CTTHXKM^CT Thorax mit KM^99RAD"
    assert message.obr.obr_18.to_er7() == "A00000042"
    assert message.obr.obr_19.to_er7() == "RP000042"
    assert message.obr.obr_20.to_er7() == "SPS000042"
    assert message.obr.obr_24.to_er7() == "CT"
    assert er7.parse(status_message(PAYLOAD, "RISBROKER")).value("ZDS-1.1") == PAYLOAD["study_uid"]


def test_delimiters_in_values_are_escaped() -> None:
    text = status_message(PAYLOAD | {"placer_order_number": "PL|4&2", "patient_name": "O^BRIEN~X"}, "RISBROKER")
    parsed = er7.parse(text)
    assert parsed.value("ORC-2") == "PL|4&2"
    assert parsed.value("PID-5.1") == "O"
    assert parsed.value("PID-5.2") == "BRIEN~X"


@pytest.mark.parametrize(
    ("dicom", "msh_18"), [("ISO_IR 100", "8859/1"), ("ISO_IR 192", "UNICODE UTF-8"), ("", "UNICODE UTF-8")]
)
def test_msh_18_follows_the_order_character_set(dicom: str, msh_18: str) -> None:
    assert er7.parse(status_message(PAYLOAD | {"character_set": dicom}, "RIS")).value("MSH-18") == msh_18
