"""The reference matcher on plain items (ris.domain.worklist_match)."""

from __future__ import annotations

from typing import Any

import pytest

from ris.domain.status import StepStatus
from ris.domain.worklist import (
    SPS_START_DATE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Item,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
)
from ris.domain.worklist_match import attribute_value, find_items, item_matches

SPS = "ScheduledProcedureStepSequence."


def item(name: str, date: str, time: str = "090000", status: str = "SCHEDULED", **extra: Any) -> Item:
    return {
        "PatientName": name,
        "RequestedProcedureCodeSequence": [{"CodeValue": "CTTHX"}],
        "ReferencedStudySequence": [],
        "ScheduledProcedureStepSequence": [
            {
                "Modality": "CT",
                "ScheduledStationAETitle": "CT_RAD_01",
                "ScheduledProcedureStepStartDate": date,
                "ScheduledProcedureStepStartTime": time,
                "ScheduledProcedureStepStatus": status,
            }
        ],
        **extra,
    }


MUELLER = item("MÜLLER^HANS", "20261123", "080000")
MUELLER_ASCII = item("MUELLER^HANS", "20261123", "130000", AdmissionID="")
SMITH = item("100%_SMITH^X", "20261124")
CANCELED = item("MÜLLER^EVA", "20261123", status=StepStatus.CANCELED)
ITEMS = [SMITH, MUELLER_ASCII, MUELLER, CANCELED]


def found(*criteria: Criterion, **options: Any) -> list[Item]:
    return find_items(ITEMS, WorklistQuery(criteria=criteria, **options))


def test_paths() -> None:
    assert attribute_value(MUELLER, "PatientName") == "MÜLLER^HANS"
    assert attribute_value(MUELLER, SPS + "Modality") == "CT"
    assert attribute_value(MUELLER, "RequestedProcedureCodeSequence.CodeValue") == "CTTHX"
    assert attribute_value(MUELLER, "ReferencedStudySequence.StudyInstanceUID") is None
    assert attribute_value(MUELLER, "ScheduledProcedureStepSequence") is None  # not text
    assert attribute_value(MUELLER, START_DATETIME) == "20261123080000"


def test_order_and_final_statuses() -> None:
    assert found() == [MUELLER, MUELLER_ASCII, SMITH]
    assert found(include_final=True) == [MUELLER, CANCELED, MUELLER_ASCII, SMITH]
    assert found(statuses=frozenset({StepStatus.CANCELED})) == [CANCELED]
    assert found(limit=2) == [MUELLER, MUELLER_ASCII]


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        (Criterion("PatientName", Wildcard("M?LLER*")), [MUELLER]),
        (Criterion("PatientName", Wildcard("100%_*")), [SMITH]),
        (Criterion("PatientName", Wildcard("muell*"), case_insensitive=True), [MUELLER_ASCII]),
        (Criterion("PatientName", SingleValue("mueller^hans")), []),
        (Criterion("PatientName", Wildcard("*")), [MUELLER, MUELLER_ASCII, SMITH]),
        (Criterion("AdmissionID", Wildcard("*")), [MUELLER, MUELLER_ASCII, SMITH]),  # universal
        (Criterion("AdmissionID", Wildcard("?*")), []),
        (Criterion("AdmissionID", Range(None, "Z")), []),  # empty values are outside every range
        (Criterion(SPS_START_DATE, Range("20261124", None)), [SMITH]),
        (Criterion(START_DATETIME, Range("20261123120000", "20261124090000")), [MUELLER_ASCII, SMITH]),
        (Criterion(SPS + "Modality", SingleValue("ct"), case_insensitive=True), [MUELLER, MUELLER_ASCII, SMITH]),
        (Criterion("PatientName", AnyOf(("MUELLER^HANS", "X"))), [MUELLER_ASCII]),
        (Criterion("RequestedProcedureCodeSequence.CodeValue", SingleValue("CTTHX")), [MUELLER, MUELLER_ASCII, SMITH]),
    ],
)
def test_matchers(criterion: Criterion, expected: list[Item]) -> None:
    assert found(criterion) == expected


def test_station_restriction() -> None:
    other = item("X^Y", "20261123")
    other["ScheduledProcedureStepSequence"][0]["ScheduledStationAETitle"] = "MR_3T_01"
    assert item_matches(other, WorklistQuery(restrict_to_station="MR_3T_01"))
    assert not item_matches(MUELLER, WorklistQuery(restrict_to_station="MR_3T_01"))


def test_case_insensitive_only_where_sql_can_do_it() -> None:
    with pytest.raises(ValueError, match="without regard to case"):
        found(Criterion("AdmissionID", SingleValue("x"), case_insensitive=True))
