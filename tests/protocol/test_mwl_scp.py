"""The Modality Worklist SCP over real associations: pynetdicom SCUs against our AE on an
ephemeral port, the way scanners ask."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

from ris.domain.model import Actor, AeRole, CodedEntry, OrderKey, RemoteAE
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import OUR_AE, FindResult, dicom_listener, element, find, scu, worklist_query
from tests.support.orders import local, new_order, step

CLERK = Actor("user", "clerk")
SPS = "ScheduledProcedureStepSequence."


@pytest.fixture
def items(service: RisService) -> dict[str, str]:
    """name -> accession number. ``mr`` differs from the others in every K.6-1 key."""
    orders = {
        "mueller": new_order(
            patient={"name": "MÜLLER^HANS", "patient_id": "P-MUELLER"},
            steps=(step(start=local(2026, 11, 23, 8), sps_id="SPS-MUELLER"),),
        ),
        "mr": new_order(
            patient={
                "name": "MUELLER^HANS",
                "patient_id": "P-MR",
                "issuer": "KLINIKUM_B",
                "birth_date": "19700202",
                "sex": "F",
            },
            order={
                "accession_number": "ACC-MR",
                "admission_id": "ADM_MR",
                "referring_physician": "LANG^ERNA",
                "requesting_physician": "ROTH^OLAF",
                "priority": "HIGH",
                "patient_location": "STATION 7",
            },
            procedure={"requested_procedure_id": "RP-MR", "description": "MRT Knie", "study_uid": "1.2.3.4.5.99"},
            steps=(
                step(
                    modality="MR",
                    station_ae="MR_3T_01",
                    station_name="MR3T1",
                    location="RAD UG R122",
                    performing_physician="KRAUSE^INGE",
                    description="MRT Knie links",
                    protocol=CodedEntry("MRKNIEL", "99RAD", "MRT Knie links"),
                    start=local(2026, 11, 23, 13, 15),
                    sps_id="SPS-MR",
                ),
            ),
        ),
        "greek": new_order(
            patient={"name": "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ"},
            steps=(step(modality="US", station_ae="US_RAD_01", start=local(2026, 11, 24, 9)),),
        ),
        "mueller_utf8": new_order(
            patient={"name": "MÜLLER^ANNA"},
            character_set="ISO_IR 192",
            steps=(step(station_ae="CT_RAD_02", start=local(2026, 11, 25, 18, 45)),),
        ),
        "canceled": new_order(patient={"name": "MÜLLER^EVA"}, steps=(step(start=local(2026, 11, 23, 10)),)),
        "discontinued": new_order(patient={"name": "MÜLLER^PAUL"}, steps=(step(start=local(2026, 11, 23, 11)),)),
    }
    accessions = {name: service.schedule_order(o, CLERK).order.accession_number for name, o in orders.items()}
    service.check_in(OrderKey(accession_number="ACC-MR"), CLERK)
    service.cancel_order(OrderKey(accession_number=accessions["canceled"]), CLERK)
    service.discontinue_order(OrderKey(accession_number=accessions["discontinued"]), CLERK)
    return accessions


@pytest.fixture
def port(settings: Settings, service: RisService, items: dict[str, str]) -> Iterator[int]:
    with dicom_listener(settings, service) as listener:
        yield listener.port


def names(items: dict[str, str], *wanted: str) -> list[str]:
    return [items[name] for name in wanted]


def accessions(result: FindResult) -> list[str]:
    assert result.final_status == 0x0000, hex(result.final_status)
    return result.values("AccessionNumber")


OPEN_ITEMS = ("mueller", "mr", "greek", "mueller_utf8")


def test_verification(port: int) -> None:
    assoc = scu().associate("127.0.0.1", port, ae_title="RISBROKER")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_universal_query_returns_open_items_by_start_with_requested_keys(port: int, items: dict[str, str]) -> None:
    result = find(port, worklist_query())
    assert accessions(result) == names(items, *OPEN_ITEMS)
    first = result.identifiers[0]
    assert first.PatientName == "MÜLLER^HANS"
    assert first.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20261123"
    assert first.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "080000"
    assert set(result.statuses[:-1]) == {0xFF00}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # Table K.6-1 matching keys, each with the value only the "mr" item has.
        (SPS + "ScheduledStationAETitle", "MR_3T_01"),
        (SPS + "ScheduledProcedureStepStartDate", "20261123"),  # shared with "mueller": see below
        (SPS + "ScheduledProcedureStepStartTime", "1315"),
        (SPS + "Modality", "MR"),
        (SPS + "ScheduledPerformingPhysicianName", "KRAUSE^INGE"),
        (SPS + "ScheduledProcedureStepDescription", "MRT Knie links"),
        (SPS + "ScheduledStationName", "MR3T1"),
        (SPS + "ScheduledProcedureStepLocation", "RAD UG R122"),
        (SPS + "ScheduledProcedureStepID", "SPS-MR"),
        (SPS + "ScheduledProcedureStepStatus", "ARRIVED"),
        ("RequestedProcedureID", "RP-MR"),
        ("RequestedProcedureDescription", "MRT Knie"),
        ("StudyInstanceUID", "1.2.3.4.5.99"),
        ("RequestedProcedurePriority", "HIGH"),
        ("AccessionNumber", "ACC-MR"),
        ("RequestingPhysician", "ROTH^OLAF"),
        ("ReferringPhysicianName", "LANG^ERNA"),
        ("AdmissionID", "ADM_MR"),
        ("CurrentPatientLocation", "STATION 7"),
        ("PatientName", "MUELLER^HANS"),
        ("PatientID", "P-MR"),
        ("IssuerOfPatientID", "KLINIKUM_B"),
        ("PatientBirthDate", "19700202"),
        ("PatientSex", "F"),
    ],
)
def test_each_k6_matching_key(port: int, items: dict[str, str], path: str, value: str) -> None:
    keyword = path.removeprefix(SPS)
    query = worklist_query(sps={keyword: value}) if path.startswith(SPS) else worklist_query(**{keyword: value})
    expected = ("mueller", "mr") if keyword == "ScheduledProcedureStepStartDate" else ("mr",)
    assert accessions(find(port, query)) == names(items, *expected)


def test_wildcards_on_whole_values(port: int, items: dict[str, str]) -> None:
    assert accessions(find(port, worklist_query(PatientName="MUELL*"))) == names(items, "mr")
    assert accessions(find(port, worklist_query(PatientName="M?LLER*"))) == names(items, "mueller", "mueller_utf8")
    assert accessions(find(port, worklist_query(PatientName="*HANS"))) == names(items, "mueller", "mr")
    assert accessions(find(port, worklist_query(sps={"ScheduledStationAETitle": "CT_RAD_0?"}))) == names(
        items, "mueller", "mueller_utf8"
    )
    assert accessions(find(port, worklist_query(PatientID="*"))) == names(items, *OPEN_ITEMS)


def test_patient_name_ignores_case_and_trailing_separators(port: int, items: dict[str, str]) -> None:
    assert accessions(find(port, worklist_query(PatientName="mueller^hans^^"))) == names(items, "mr")
    assert accessions(find(port, worklist_query(PatientName="müller*"))) == names(items, "mueller", "mueller_utf8")


def test_date_time_ranges(port: int, items: dict[str, str]) -> None:
    def dates(value: str, **sps: str) -> list[str]:
        return accessions(find(port, worklist_query(sps={"ScheduledProcedureStepStartDate": value, **sps})))

    assert dates("20261123-20261124") == names(items, "mueller", "mr", "greek")
    assert dates("20261124-") == names(items, "greek", "mueller_utf8")
    assert dates("-20261123") == names(items, "mueller", "mr")
    assert dates("20261201-") == []
    time = "ScheduledProcedureStepStartTime"
    assert accessions(find(port, worklist_query(sps={time: "0800-0900"}))) == names(items, "mueller", "greek")
    assert accessions(find(port, worklist_query(sps={time: "1800-"}))) == names(items, "mueller_utf8")
    assert accessions(find(port, worklist_query(sps={time: "-0830"}))) == names(items, "mueller")
    # Without combined matching, date and time match apart: 09:00-19:00 on each day.
    assert dates("20261123-20261125", ScheduledProcedureStepStartTime="0900-1900") == names(
        items, "mr", "greek", "mueller_utf8"
    )


def test_combined_date_time_matching_when_negotiated(port: int, items: dict[str, str]) -> None:
    query = worklist_query(
        sps={"ScheduledProcedureStepStartDate": "20261123-20261124", "ScheduledProcedureStepStartTime": "1200-1000"}
    )
    # Combined (C.2.2.2.5): from 2026-11-23 12:00 to 2026-11-24 10:00.
    assert accessions(find(port, query, date_time_matching=True)) == names(items, "mr", "greek")
    # Apart: times between 12:00 and 10:00 on any day - none.
    assert accessions(find(port, query, date_time_matching=False)) == []
    assert accessions(find(port, query)) == []


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
def test_a_query_in_either_character_set_finds_items_of_both(port: int, items: dict[str, str], charset: str) -> None:
    result = find(port, worklist_query(charset=charset, PatientName="MÜLLER*"))
    assert accessions(result) == names(items, "mueller", "mueller_utf8")
    # Each response in its item's own character set, decoded back to the same names.
    assert [ds.SpecificCharacterSet for ds in result.identifiers] == ["ISO_IR 100", "ISO_IR 192"]
    assert result.values("PatientName") == ["MÜLLER^HANS", "MÜLLER^ANNA"]


def test_a_name_latin1_cannot_hold_comes_back_in_utf8(port: int, items: dict[str, str]) -> None:
    result = find(port, worklist_query(charset="ISO_IR 192", PatientName="ΠΑΠΑΔΟΠΟΥΛΟΣ*"))
    assert accessions(result) == names(items, "greek")
    assert result.identifiers[0].SpecificCharacterSet == "ISO_IR 192"
    assert result.values("PatientName") == ["ΠΑΠΑΔΟΠΟΥΛΟΣ^ΝΙΚΟΣ"]


def test_list_of_uids(port: int, items: dict[str, str]) -> None:
    uids = find(port, worklist_query()).values("StudyInstanceUID")
    query = worklist_query(StudyInstanceUID=[uids[2], uids[0], "1.2.999"])
    assert accessions(find(port, query)) == names(items, "mueller", "greek")


def test_sequence_matching_inside_the_sps_item(port: int, items: dict[str, str]) -> None:
    protocol = Dataset()
    protocol.add(element("CodeValue", "MRKNIEL"))
    query = worklist_query(sps={"Modality": "MR", "ScheduledProtocolCodeSequence": [protocol]})
    result = find(port, query)
    assert accessions(result) == names(items, "mr")
    returned = result.identifiers[0].ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence[0]
    assert set(returned.keys()) == {protocol["CodeValue"].tag}
    code = Dataset()
    code.add(element("CodeValue", "NOPE"))
    assert accessions(find(port, worklist_query(RequestedProcedureCodeSequence=[code]))) == []


def test_returns_exactly_the_requested_keys_unknown_ones_empty(port: int, items: dict[str, str]) -> None:
    query = Dataset()
    query.add(element("PatientID", "P-MR"))
    query.add(element("PatientWeight", None))  # not in the item
    query.add(element("RequestedProcedureCodeSequence", []))  # empty sequence: the whole item back
    query.add_new(0x00091010, "LO", None)  # private
    result = find(port, query)
    assert result.final_status == 0x0000
    [answer] = result.identifiers
    assert [e.keyword or str(e.tag) for e in answer] == [
        "SpecificCharacterSet",
        "(0009,1010)",
        "PatientID",
        "PatientWeight",
        "RequestedProcedureCodeSequence",
    ]
    assert answer.PatientWeight in (None, "")
    assert answer.RequestedProcedureCodeSequence[0].CodeValue == "CTTHXKM"
    assert result.statuses == [0xFF00, 0x0000]


def test_private_matching_keys_are_not_supported_ff01(port: int, items: dict[str, str]) -> None:
    query = worklist_query(PatientID="P-MR")
    query.add_new(0x00091010, "LO", "whatever")
    result = find(port, query)
    assert accessions(result) == names(items, "mr")
    assert result.statuses == [0xFF01, 0x0000]


def test_final_statuses_are_hidden(port: int, items: dict[str, str]) -> None:
    everything = accessions(find(port, worklist_query(PatientName="MÜLLER*")))
    assert items["canceled"] not in everything
    assert items["discontinued"] not in everything
    query = worklist_query(sps={"ScheduledProcedureStepStatus": "CANCELED"})
    assert accessions(find(port, query)) == []


@pytest.mark.parametrize(
    ("keys", "sps", "problem"),
    [
        ({}, {"ScheduledProcedureStepStartDate": "2026-11"}, "ScheduledProcedureStepStartDate"),
        ({}, {"ScheduledProcedureStepStartTime": "25"}, "ScheduledProcedureStepStartTime"),
        ({"PatientID": ["A", "B"]}, {}, "PatientID"),
    ],
)
def test_unusable_keys_are_refused_a900(port: int, keys: dict[str, object], sps: dict[str, str], problem: str) -> None:
    result = find(port, worklist_query(sps=sps, **keys))
    assert result.identifiers == []
    assert result.final_status == 0xA900
    assert result.final is not None
    assert problem in result.final.ErrorComment


def test_nested_sequence_keys_deeper_than_the_worklist_are_refused(port: int) -> None:
    query = Dataset()
    inner = query
    for _ in range(6):
        item = Dataset()
        inner.ReferencedStudySequence = [item]
        inner = item
    inner.add(element("PatientID", "X"))
    result = find(port, query)
    assert result.final_status == 0xA900


def test_identifier_too_deep_to_decode_is_refused_and_the_server_goes_on(port: int) -> None:
    """Thousands of nested sequences make pydicom's reader recurse until RecursionError; the
    bytes are built by hand (pydicom could not write them either)."""
    item, item_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence, sequence_end = b"\x08\x00\x10\x11\xff\xff\xff\xff", b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    depth = 3000
    nested = item + (sequence + item) * depth + (item_end + sequence_end) * depth + item_end
    query = Dataset()
    # Implicit VR: only the tag and the length go on the wire, the SCP reads (0008,1110) as SQ.
    query.add(DataElement(0x00081110, "UN", nested))
    result = find(port, query, implicit_vr_only=True)
    assert result.final_status == 0xA900
    assert find(port, worklist_query(PatientID="P-MR")).final_status == 0x0000


def test_result_cap_ends_with_a700(settings: Settings, service: RisService, items: dict[str, str]) -> None:
    with dicom_listener(settings, service, mwl_result_cap=2) as listener:
        result = find(listener.port, worklist_query())
    assert result.values("AccessionNumber") == names(items, "mueller", "mr")
    assert result.statuses == [0xFF00, 0xFF00, 0xA700]
    assert result.final is not None
    assert "more than 2" in result.final.ErrorComment


def test_c_cancel_stops_the_responses_with_fe00(settings: Settings, service: RisService) -> None:
    many = 300  # far more responses than are sent before the C-CANCEL arrives
    service.import_orders([new_order(patient={"name": "VIELE^ANNA"}) for _ in range(many)], CLERK)
    with dicom_listener(settings, service) as listener:
        assoc = scu().associate("127.0.0.1", listener.port, ae_title=OUR_AE)
        assert assoc.is_established
        statuses = []
        try:
            for status, _identifier in assoc.send_c_find(
                worklist_query(PatientName="VIELE*"), ModalityWorklistInformationFind, msg_id=7
            ):
                statuses.append(int(status.Status))
                if len(statuses) == 1:
                    assoc.send_c_cancel(7, query_model=ModalityWorklistInformationFind)
            # The association goes on: the next query is answered in full.
            again = list(assoc.send_c_find(worklist_query(PatientName="NOBODY"), ModalityWorklistInformationFind))
            assert [int(status.Status) for status, _ in again] == [0x0000]
        finally:
            assoc.release()
    assert statuses[-1] == 0xFE00
    assert set(statuses[:-1]) == {0xFF00}
    assert 1 <= len(statuses) - 1 < many


def test_station_with_own_items_only_sees_its_items(service: RisService, port: int, items: dict[str, str]) -> None:
    service.add_remote_ae(RemoteAE("MR_3T_01", roles=frozenset({AeRole.STATION}), own_items_only=True), CLERK)
    assert accessions(find(port, worklist_query(), calling_ae="MR_3T_01")) == names(items, "mr")
    assert accessions(find(port, worklist_query(), calling_ae="CT_RAD_01")) == names(items, *OPEN_ITEMS)
