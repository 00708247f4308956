"""HL7 messages → service commands through the default mapping: every message type, every order
control row, the field variance of v2.3/2.4/2.5.1 senders, and where problems are reported."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7apy.parser import parse_message

from hl7.commands import KEY, Location, MessageKind, Rejected, Translation, parse_timestamp, translate
from hl7.er7 import ErrorCode, FieldPath, parse, unescape
from hl7.mapping import DEFAULT_FIELDS, OrderMapping, StationRule, ValueKind
from ris.domain.inbound import ChangeOrderStatus, MergePatients, ScheduleOrder, UpdateOrder, UpdatePatient
from ris.domain.model import CodedEntry, NewOrder, OrderKey
from ris.domain.status import StepStatus
from tests.support.hl7_messages import ORM_V23, ORM_V24, ORM_V251, adt, message, omi, orm

BERLIN = ZoneInfo("Europe/Berlin")
MAPPING = OrderMapping(station_rules=(StationRule("CT", "CT_NOTAUF_01", "CTNA1", location="NOTAUF"),))


def run(text: str, kind: MessageKind = MessageKind.ORDER, character_set: str = "") -> Translation:
    return translate(parse(text), kind, character_set, MAPPING, BERLIN)


def new_order(text: str, character_set: str = "") -> NewOrder:
    (command,) = run(text, character_set=character_set).commands
    assert isinstance(command, ScheduleOrder)
    return command.order


def rejected(text: str, kind: MessageKind = MessageKind.ORDER) -> list[tuple[str, int, ErrorCode, str]]:
    with pytest.raises(Rejected) as caught:
        run(text, kind)
    return [
        (str(p.location.path) if p.location else "", p.location.sequence if p.location else 0, p.code, p.message)
        for p in caught.value.problems
    ]


def test_v23_order_from_a_latin1_his() -> None:
    order = new_order(ORM_V23, "ISO_IR 100")
    assert order.character_set == "ISO_IR 100"
    patient = order.patient
    assert (patient.patient_id, patient.issuer, patient.birth_date, patient.sex) == (
        "0012345",
        "KLINIKUM",
        "19501203",
        "M",
    )
    assert patient.name == "Schröder^Hans-Peter^^Dr."  # XPN family^given^middle^suffix^prefix -> PN order
    assert order.order.placer_order_number == "10001"
    assert order.order.filler_order_number == "20001"
    assert order.order.accession_number == "ACC0001"
    assert order.order.priority == "STAT"
    assert order.order.referring_physician == "Wagner^Eva^^Dr."
    assert order.order.requesting_physician == "Wagner^Eva^^Dr."
    assert order.order.patient_location == "STAT3 201 1"
    assert order.order.admission_id == "4711"
    (procedure,) = order.procedures
    assert procedure.requested_procedure_id == "RP0001"
    assert procedure.code == CodedEntry("RTHO", "99LOCAL", "Thorax p.a. & seitlich")
    assert procedure.description == "Thorax p.a. & seitlich"
    assert procedure.study_uid == ""  # no ZDS: the service makes one up
    (step,) = procedure.steps
    assert step.start == dt.datetime(2004, 3, 25, 10, 0, tzinfo=BERLIN)
    assert (step.modality, step.station_ae, step.sps_id) == ("CR", "DX_01", "SPS0001")
    assert step.description == "Thorax p.a. & seitlich"
    assert step.protocol == procedure.code


def test_v24_order_with_patient_in_pid2_start_with_offset_and_notes() -> None:
    order = new_order(ORM_V24)
    assert order.character_set == ""
    assert (order.patient.patient_id, order.patient.issuer) == ("7654321", "")
    assert order.patient.name == "Mayer^Anna^Maria"
    assert order.order.priority == "HIGH"
    assert order.order.comments == "Patient hat Platzangst\nbitte Sedierung\nKontrastmittelallergie"
    (step,) = order.procedures[0].steps
    assert step.start == dt.datetime(2011, 5, 13, 7, 30, tzinfo=dt.UTC)
    assert step.start.utcoffset() == dt.timedelta(hours=2)
    # No OBR-21: the site's station rule for CT at the NOTAUF location decides.
    assert (step.station_ae, step.station_name) == ("CT_NOTAUF_01", "CTNA1")
    assert order.procedures[0].study_uid == "1.2.276.0.7230010.3.1.2.42"


def test_v251_order_with_tq1_start_and_performing_physician() -> None:
    order = new_order(ORM_V251, "ISO_IR 192")
    assert order.patient.name == "ŞAHİN^AYŞE"
    assert order.order.reason == "V.a. Pneumonie"
    assert order.order.priority == "ROUTINE"
    (step,) = order.procedures[0].steps
    assert step.start == dt.datetime(2026, 12, 4, 15, 45, tzinfo=dt.UTC)
    assert step.performing_physician == "KRÜGER^STEFAN^^DR."
    assert order.procedures[0].description == "Sonographie Abdomen"
    assert order.procedures[0].study_uid == "2.25.312048616278825272194188783533814962390"


def test_omi_has_one_step_per_ipc_with_ipc_values() -> None:
    order = new_order(omi(accession="B1", steps=2))
    assert order.order.accession_number == "B1"
    assert order.order.priority == "STAT"
    (procedure,) = order.procedures
    assert procedure.requested_procedure_id.startswith("RP")
    assert procedure.study_uid.endswith("77")
    assert [step.sps_id[-2:] for step in procedure.steps] == ["-1", "-2"]
    assert [step.protocol.value if step.protocol else "" for step in procedure.steps] == ["MRKNIE1", "MRKNIE2"]
    assert {(step.modality, step.station_ae, step.station_name, step.location) for step in procedure.steps} == {
        ("MR", "MR_3T_01", "MR3T1", "RAD UG R1")
    }
    assert {step.start for step in procedure.steps} == {dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC)}
    assert procedure.code == CodedEntry("MRKNIE", "99RAD", "MRT Knie links")


def test_locations_point_at_the_field_and_segment_occurrence() -> None:
    translation = run(omi(steps=2))
    locations = translation.locations[0]
    assert locations["procedures[0].steps[1].modality"] == Location(FieldPath.parse("IPC-5"), 2)
    assert locations["procedures[0].steps[0].sps_id"] == Location(FieldPath.parse("IPC-4"), 1)
    assert locations["procedures[0].code"] == Location(FieldPath.parse("OBR-4"), 1)
    assert locations["procedures[0].steps[0].start"] == Location(FieldPath.parse("TQ1-7"), 1)
    assert locations["patient.name"] == Location(FieldPath.parse("PID-5"), 1)
    assert locations["character_set"] == Location(FieldPath.parse("MSH-18"))
    # A value nobody sent is located where the first present candidate segment would hold it.
    assert run(orm()).locations[0]["order.filler_order_number"] == Location(FieldPath.parse("ORC-3"), 1)


@pytest.mark.parametrize(
    ("control", "status", "command_type", "target"),
    [
        ("NW", "SC", ScheduleOrder, None),
        ("NW", "", ScheduleOrder, None),
        ("XO", "SC", UpdateOrder, None),
        ("CA", "CA", ChangeOrderStatus, StepStatus.CANCELED),
        ("DC", "DC", ChangeOrderStatus, StepStatus.DISCONTINUED),
        ("SC", "IP", ChangeOrderStatus, StepStatus.STARTED),
        ("SC", "CM", ChangeOrderStatus, StepStatus.COMPLETED),
    ],
)
def test_order_control_rows(control: str, status: str, command_type: type[Any], target: StepStatus | None) -> None:
    (command,) = run(orm(control=control, status=status, accession="ACC7")).commands
    assert isinstance(command, command_type)
    if isinstance(command, UpdateOrder | ChangeOrderStatus):
        assert command.key.accession_number == "ACC7"
    if isinstance(command, ChangeOrderStatus):
        assert command.target is target


def test_status_change_names_the_order_by_the_first_key_present() -> None:
    text = orm(control="CA", status="CA", accession="")
    (command,) = run(text).commands
    assert isinstance(command, ChangeOrderStatus)
    assert (command.key.accession_number, command.key.filler_order_number) == ("", "")
    assert command.key.placer_order_number.startswith("PL")
    assert run(text).locations[0][KEY] == Location(FieldPath.parse("ORC-2"), 1)


def test_status_change_needs_no_obr() -> None:
    text = message(
        "MSH|^~\\&|HIS|KH|RIS|RAD|20261123083000||ORM^O01|C1|P|2.4", "PID|1||4711", "ORC|CA|PL1^HIS|F1^RIS||CA"
    )
    (command,) = run(text).commands
    assert command == ChangeOrderStatus(OrderKey("", "F1", "PL1"), StepStatus.CANCELED)


def test_unknown_order_control_is_reported_on_orc1_or_orc5() -> None:
    assert rejected(orm(control="ZZ", status="SC")) == [
        (
            "ORC-1",
            1,
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            "order control 'ZZ' with order status 'SC' is not in the order control table "
            "(CA, DC, NW, SC/CM, SC/IP, XO)",
        )
    ]
    ((path, _sequence, code, _message),) = rejected(orm(control="SC", status="A"))
    assert (path, code) == ("ORC-5", ErrorCode.TABLE_VALUE_NOT_FOUND)


def test_missing_start_is_required_where_the_sender_would_put_it() -> None:
    text = orm().replace("^^^20261204164500^^R", "^^^^^R")
    assert rejected(text) == [("ORC-7.4", 1, ErrorCode.REQUIRED_FIELD_MISSING, "is required")]


def test_bad_values_are_reported_per_field_all_at_once() -> None:
    text = orm(start="2026120416450", priority="X").replace("|19600101|M", "|19600101|Q")
    problems = {(path, code) for path, _sequence, code, _message in rejected(text)}
    assert problems == {
        ("PID-8", ErrorCode.TABLE_VALUE_NOT_FOUND),
        ("ORC-7.6", ErrorCode.TABLE_VALUE_NOT_FOUND),
        ("ORC-7.4", ErrorCode.DATA_TYPE_ERROR),
    }


def test_two_order_groups_are_two_commands_and_errors_name_the_occurrence() -> None:
    first = orm(accession="G1")
    second_group = [line for line in orm(accession="G2").split("\r") if line[:3] in ("ORC", "OBR")]
    translation = run(first + "\r".join(second_group) + "\r")
    assert [c.order.order.accession_number for c in translation.commands if isinstance(c, ScheduleOrder)] == [
        "G1",
        "G2",
    ]
    assert translation.locations[1]["procedures[0].steps[0].modality"] == Location(FieldPath.parse("OBR-24"), 2)
    broken = first + "\r".join(second_group).replace("|CT|", "||").replace("^^^20261204164500", "^^^2026x") + "\r"
    assert rejected(broken) == [
        ("ORC-7.4", 2, ErrorCode.DATA_TYPE_ERROR, "'2026x' is not an HL7 timestamp (YYYYMMDD[HHMM[SS]][+/-ZZZZ])")
    ]


def test_a_new_order_needs_exactly_one_obr() -> None:
    no_obr = "\r".join(line for line in orm().split("\r") if not line.startswith("OBR")) + "\r"
    assert rejected(no_obr) == [("ORC-1", 1, ErrorCode.SEGMENT_SEQUENCE_ERROR, "an order needs its OBR segment")]
    assert rejected(message("MSH|^~\\&|HIS|KH|RIS|RAD|20261123||ORM^O01|C2|P|2.5", "PID|1||4711")) == [
        ("ORC-1", 1, ErrorCode.SEGMENT_SEQUENCE_ERROR, "no ORC segment")
    ]


def test_patient_update_and_merge() -> None:
    (update,) = run(adt("A08", name="MEYER^ANNA", sex="F"), MessageKind.PATIENT_UPDATE).commands
    assert isinstance(update, UpdatePatient)
    assert (update.patient.patient_id, update.patient.name, update.patient.sex) == ("4711", "MEYER^ANNA", "F")
    (merge,) = run(adt("A40", patient_id="1", prior_id="2"), MessageKind.PATIENT_MERGE).commands
    assert isinstance(merge, MergePatients)
    assert (merge.surviving.patient_id, merge.prior_id, merge.prior_issuer) == ("1", "2", "KLINIKUM")
    assert rejected(adt("A40", patient_id="1"), MessageKind.PATIENT_MERGE) == [
        ("MRG-1.1", 1, ErrorCode.REQUIRED_FIELD_MISSING, "is required")
    ]


@pytest.mark.parametrize(
    ("xpn", "expected"),
    [
        ("MÜLLER^JÜRGEN^K^JR^DR", "MÜLLER^JÜRGEN^K^DR^JR"),  # suffix and prefix trade places
        ("MÜLLER&VON&MÜLLER^JÜRGEN", "MÜLLER^JÜRGEN"),  # v2.4+ FN: the surname subcomponent
        ("O\\S\\NEIL^SEAN", "O NEIL^SEAN"),  # an escaped '^' must not become a PN component
        ("^^^^^^L", ""),
    ],
)
def test_person_names_become_dicom_pn(xpn: str, expected: str) -> None:
    text = orm().replace("|MÜLLER^JÜRGEN^^^^^L|", f"|{xpn}|")
    assert new_order(text).patient.name == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261204164500", dt.datetime(2026, 12, 4, 16, 45, tzinfo=BERLIN)),
        ("202612041645", dt.datetime(2026, 12, 4, 16, 45, tzinfo=BERLIN)),
        ("20261204", dt.datetime(2026, 12, 4, tzinfo=BERLIN)),
        ("20260704164500.1234", dt.datetime(2026, 7, 4, 16, 45, tzinfo=BERLIN)),
        ("20261204164500+0100", dt.datetime(2026, 12, 4, 15, 45, tzinfo=dt.UTC)),
        ("20261204164500-0530", dt.datetime(2026, 12, 4, 22, 15, tzinfo=dt.UTC)),
        ("20260329023000", dt.datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN)),
    ],
)
def test_timestamps(text: str, expected: dt.datetime) -> None:
    parsed = parse_timestamp(text, BERLIN)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["2026-12-04", "20261304", "20261204256000", "20261204+2500", "2026120416450", "x"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("+", r"\+")):
        parse_timestamp(text, BERLIN)


# --- cross-check with hl7apy: our ER7 reads of every mapped field equal hl7apy's -------------------


def _hl7apy_value(parsed: Any, path: FieldPath) -> str | None:
    """The value at ``path`` in the first segment of its name, as hl7apy splits it; None when the
    segment is absent. Only the final ER7 text is unescaped (with our unescape: escapes are checked
    against hl7apy in test_er7); what is compared here is the addressing of fields and components."""
    segments = [child for child in parsed.children if child.name == path.segment]
    if not segments:
        return None
    repetitions = [child for child in segments[0].children if child.name == f"{path.segment}_{path.field}"]
    if len(repetitions) < path.repetition:
        return ""
    element = repetitions[path.repetition - 1]
    for position in (path.component or 1, path.subcomponent or 1):
        named = [child for child in element.children if child.name.endswith(f"_{position}")]
        if named:
            element = named[0]
        elif position != 1:
            return ""
    text: str = element.to_er7()
    # hl7apy writes formatting commands of FT fields back escaped (\E\.br\E\); none of these messages
    # holds an escaped backslash, so undoing that is exact here.
    return unescape(text.split("^")[0].split("&")[0].replace("\\E\\", "\\"))


def _following(path: FieldPath, offset: int) -> FieldPath:
    """The position ``offset`` components (or subcomponents, when ``path`` names one) after ``path``."""
    if path.subcomponent is not None:
        return FieldPath(path.segment, path.field, path.repetition, path.component, path.subcomponent + offset)
    return FieldPath(path.segment, path.field, path.repetition, (path.component or 1) + offset)


@pytest.mark.parametrize("text", [ORM_V23, ORM_V24, ORM_V251, omi(), adt("A40", prior_id="9")], ids=str)
def test_mapped_fields_read_the_same_as_hl7apy(text: str) -> None:
    ours = parse(text)
    theirs = parse_message(text, find_groups=False)
    checked = 0
    for rule in DEFAULT_FIELDS.values():
        for path in rule.sources:
            if _hl7apy_value(theirs, path) is None or path.segment.startswith("Z"):
                continue
            # A name reads four more positions after the family name.
            offsets = range(5) if rule.kind is ValueKind.PERSON_NAME else range(1)
            for each in (_following(path, offset) for offset in offsets):
                assert ours.value(each) == _hl7apy_value(theirs, each), each
                checked += 1
    assert checked >= 10
