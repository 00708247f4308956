"""C-FIND identifier -> typed worklist query and return keys; item -> response (no sockets)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from pydicom.dataset import Dataset

from dimse.identifier import MatchingOptions, parse_identifier, response_identifier
from ris.domain.errors import ValidationFailed
from ris.domain.worklist import (
    SPS_START_DATE,
    SPS_START_TIME,
    START_DATETIME,
    AnyOf,
    Criterion,
    Range,
    SingleValue,
    Wildcard,
)
from tests.support.dicom import element, worklist_query

OPTIONS = MatchingOptions(zone=ZoneInfo("Europe/Berlin"))
SPS = "ScheduledProcedureStepSequence."


def criteria(query: Dataset, **options: object) -> set[Criterion]:
    chosen = MatchingOptions(zone=OPTIONS.zone, **options)  # type: ignore[arg-type]
    return set(parse_identifier(query, chosen).criteria)


def test_universal_keys_are_no_criteria() -> None:
    assert criteria(worklist_query(PatientName="*", PatientID="")) == set()


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"PatientID": "P1"}, Criterion("PatientID", SingleValue("P1"))),
        ({"PatientName": "MUELL*"}, Criterion("PatientName", Wildcard("MUELL*"))),
        ({"PatientName": "MUELLER^HANS^^"}, Criterion("PatientName", SingleValue("MUELLER^HANS"))),
        ({"AccessionNumber": "A?1 "}, Criterion("AccessionNumber", Wildcard("A?1"))),
        ({"StudyInstanceUID": ["1.2", "1.3"]}, Criterion("StudyInstanceUID", AnyOf(("1.2", "1.3")))),
        ({"StudyInstanceUID": "1.2.3"}, Criterion("StudyInstanceUID", SingleValue("1.2.3"))),
        (
            {"PatientBirthDate": "19600101-19691231"},
            Criterion("PatientBirthDate", Range("19600101", "19691231")),
        ),
    ],
)
def test_top_level_keys(keys: dict[str, object], expected: Criterion) -> None:
    assert criteria(worklist_query(**keys)) == {expected}


def test_sps_keys_and_dates() -> None:
    query = worklist_query(
        sps={"Modality": "MR", "ScheduledProcedureStepStartDate": "20261123", "ScheduledProcedureStepStartTime": "08-"}
    )
    assert criteria(query) == {
        Criterion(SPS + "Modality", SingleValue("MR")),
        Criterion(SPS_START_DATE, SingleValue("20261123")),
        Criterion(SPS_START_TIME, Range("080000", None)),
    }
    assert criteria(query, combined_datetime=True) == {
        Criterion(SPS + "Modality", SingleValue("MR")),
        Criterion(START_DATETIME, Range("20261123080000", "20261123235959")),
    }


def test_date_alone_is_not_combined() -> None:
    query = worklist_query(sps={"ScheduledProcedureStepStartDate": "20261123-20261129"})
    assert criteria(query, combined_datetime=True) == {Criterion(SPS_START_DATE, Range("20261123", "20261129"))}


def test_case_insensitive_options() -> None:
    query = worklist_query(PatientName="mueller*", sps={"Modality": "mr"})
    assert criteria(query, case_insensitive_patient_name=True, case_insensitive_modality=True) == {
        Criterion("PatientName", Wildcard("mueller*"), case_insensitive=True),
        Criterion(SPS + "Modality", SingleValue("mr"), case_insensitive=True),
    }


def test_nested_sequence_matching_path() -> None:
    code = Dataset()
    code.add(element("CodeValue", "CTTHXKM"))
    code.add(element("CodeMeaning", None))
    query = worklist_query(sps={"ScheduledProtocolCodeSequence": [code]})
    assert criteria(query) == {Criterion(SPS + "ScheduledProtocolCodeSequence.CodeValue", SingleValue("CTTHXKM"))}


def test_problems_name_every_bad_key() -> None:
    query = worklist_query(
        PatientID=["A", "B"],
        sps={"ScheduledProcedureStepStartDate": "23.11.2026", "ScheduledProcedureStepStartTime": "25"},
    )
    with pytest.raises(ValidationFailed) as raised:
        parse_identifier(query, OPTIONS)
    assert [p.field for p in raised.value.problems] == [
        "PatientID",
        SPS + "ScheduledProcedureStepStartDate",
        SPS + "ScheduledProcedureStepStartTime",
    ]


def test_sequence_key_with_two_items_is_refused() -> None:
    query = Dataset()
    query.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    with pytest.raises(ValidationFailed, match="at most one item"):
        parse_identifier(query, OPTIONS)


ITEM = {
    "SpecificCharacterSet": "ISO_IR 100",
    "PatientName": "MÜLLER^HANS",
    "PatientID": "P1",
    "ReferencedStudySequence": [],
    "ScheduledProcedureStepSequence": [
        {
            "Modality": "CT",
            "ScheduledStationAETitle": "CT_RAD_01",
            "ScheduledProtocolCodeSequence": [{"CodeValue": "X", "CodingSchemeDesignator": "99", "CodeMeaning": "Y"}],
        }
    ],
}


def test_response_has_exactly_the_requested_keys() -> None:
    query = Dataset()
    query.add(element("PatientName", "M*"))
    query.add(element("PatientSex", None))
    query.add(element("ReferencedStudySequence", []))
    sps = Dataset()
    sps.add(element("Modality", None))
    sps.add(element("ScheduledProtocolCodeSequence", []))
    query.ScheduledProcedureStepSequence = [sps]
    keys = parse_identifier(query, OPTIONS).return_keys
    answer = response_identifier(ITEM, keys)
    assert [e.keyword for e in answer] == [
        "SpecificCharacterSet",
        "ReferencedStudySequence",
        "PatientName",
        "PatientSex",
        "ScheduledProcedureStepSequence",
    ]
    assert answer.PatientSex in (None, "")
    assert list(answer.ReferencedStudySequence) == []
    item = answer.ScheduledProcedureStepSequence[0]
    assert [e.keyword for e in item] == ["Modality", "ScheduledProtocolCodeSequence"]
    assert item.ScheduledProtocolCodeSequence[0].CodeMeaning == "Y"  # empty sequence key: whole items


def test_response_without_a_character_set_when_the_item_has_none() -> None:
    query = Dataset()
    query.add(element("PatientID", None))
    answer = response_identifier({"PatientID": "P1"}, parse_identifier(query, OPTIONS).return_keys)
    assert "SpecificCharacterSet" not in answer
