"""The typed worklist query, run as one SQL statement on both engines."""

from __future__ import annotations

import pytest

from ris.domain.model import Actor, OrderKey
from ris.domain.status import StepStatus
from ris.domain.worklist import (
    SPS_SEQUENCE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
)
from ris.services import RisService
from tests.support.orders import local, new_order, step

CLERK = Actor("user", "clerk")


@pytest.fixture
def accessions(service: RisService) -> dict[str, str]:
    """Five items: name -> accession number."""
    rows = {
        "mueller": new_order(patient={"name": "MÜLLER^HANS"}, steps=(step(start=local(2026, 11, 23, 8)),)),
        "mueller_ascii": new_order(
            patient={"name": "MUELLER^HANS"},
            steps=(
                step(modality="MR", station_ae="MR_3T_01", description="MRT Knie links", start=local(2026, 11, 23, 13)),
            ),
        ),
        "percent": new_order(
            patient={"name": "100%_SURE^X"},
            order={"admission_id": "ADM_1"},
            steps=(step(start=local(2026, 11, 24, 9)),),
        ),
        "lower": new_order(patient={"name": "van Dijk^Eva"}, steps=(step(start=local(2026, 11, 25, 18, 45)),)),
        "backslash": new_order(
            patient={"name": "SMITH^JOHN"},
            order={"reason": "a_b%c"},
            steps=(
                step(
                    modality="US",
                    station_ae="US_RAD_01",
                    description="Sonographie Abdomen",
                    start=local(2026, 11, 30, 7),
                ),
            ),
        ),
    }
    return {name: service.schedule_order(command, CLERK).order.accession_number for name, command in rows.items()}


def found(service: RisService, *criteria: Criterion, **options: object) -> list[str]:
    result = service.find_worklist_items(WorklistQuery(criteria=criteria, **options))  # type: ignore[arg-type]
    return [item["AccessionNumber"] for item in result.items]


def names(accessions: dict[str, str], *keys: str) -> list[str]:
    return [accessions[k] for k in keys]


SPS = SPS_SEQUENCE + "."


def test_universal_query_returns_all_open_items_by_start(service: RisService, accessions: dict[str, str]) -> None:
    assert found(service) == names(accessions, "mueller", "mueller_ascii", "percent", "lower", "backslash")


def test_single_value_is_exact_and_case_sensitive(service: RisService, accessions: dict[str, str]) -> None:
    assert found(service, Criterion("PatientName", SingleValue("MUELLER^HANS"))) == names(accessions, "mueller_ascii")
    assert found(service, Criterion("PatientName", SingleValue("mueller^hans"))) == []
    assert found(service, Criterion(SPS + "Modality", SingleValue("MR"))) == names(accessions, "mueller_ascii")


def test_wildcards(service: RisService, accessions: dict[str, str]) -> None:
    assert found(service, Criterion("PatientName", Wildcard("MUELL*"))) == names(accessions, "mueller_ascii")
    assert found(service, Criterion("PatientName", Wildcard("M?LLER*"))) == names(accessions, "mueller")
    assert found(service, Criterion("PatientName", Wildcard("*"))) == found(service)


def test_sql_wildcards_in_values_are_literal(service: RisService, accessions: dict[str, str]) -> None:
    assert found(service, Criterion("PatientName", Wildcard("100%*"))) == names(accessions, "percent")
    assert found(service, Criterion("PatientName", Wildcard("100_*"))) == []
    assert found(service, Criterion("PatientName", Wildcard("1__%*"))) == []
    assert found(service, Criterion("AdmissionID", Wildcard("ADM_*"))) == names(accessions, "percent")
    assert found(service, Criterion("ReasonForTheRequestedProcedure", Wildcard("a_b%*"))) == names(
        accessions, "backslash"
    )
    assert found(service, Criterion("ReasonForTheRequestedProcedure", Wildcard("a?b?c"))) == names(
        accessions, "backslash"
    )
    assert found(service, Criterion("ReasonForTheRequestedProcedure", Wildcard("a\\*"))) == []


def test_case_insensitive_names(service: RisService, accessions: dict[str, str]) -> None:
    criterion = Criterion("PatientName", Wildcard("VAN DIJK*"), case_insensitive=True)
    assert found(service, criterion) == names(accessions, "lower")
    assert found(service, Criterion("PatientName", Wildcard("müller*"), case_insensitive=True)) == names(
        accessions, "mueller"
    )


def test_date_time_and_datetime_ranges(service: RisService, accessions: dict[str, str]) -> None:
    date = SPS + "ScheduledProcedureStepStartDate"
    time = SPS + "ScheduledProcedureStepStartTime"
    assert found(service, Criterion(date, Range("20261123", "20261124"))) == names(
        accessions, "mueller", "mueller_ascii", "percent"
    )
    assert found(service, Criterion(date, Range("20261125", None))) == names(accessions, "lower", "backslash")
    assert found(service, Criterion(date, Range(None, "20261123"))) == names(accessions, "mueller", "mueller_ascii")
    assert found(service, Criterion(time, Range("080000", "090059"))) == names(accessions, "mueller", "percent")
    assert found(service, Criterion(START_DATETIME, Range("20261123120000", "20261125184500"))) == names(
        accessions, "mueller_ascii", "percent", "lower"
    )


def test_uid_list(service: RisService, accessions: dict[str, str]) -> None:
    items = service.find_worklist_items(WorklistQuery()).items
    uids = {item["AccessionNumber"]: item["StudyInstanceUID"] for item in items}
    wanted = (uids[accessions["lower"]], uids[accessions["percent"]], "1.2.3")
    assert found(service, Criterion("StudyInstanceUID", AnyOf(wanted))) == names(accessions, "percent", "lower")


def test_attributes_without_a_column_match_on_the_item(service: RisService, accessions: dict[str, str]) -> None:
    assert found(
        service, Criterion(SPS + "ScheduledProcedureStepDescription", SingleValue("CT Thorax mit KM"))
    ) == names(accessions, "mueller", "percent", "lower")
    assert found(service, Criterion("RequestedProcedureCodeSequence.CodeValue", SingleValue("CTTHXKM"))) == found(
        service
    )
    assert found(service, Criterion("NoSuchAttribute", SingleValue("x"))) == []


def test_final_statuses_are_hidden_unless_asked(service: RisService, accessions: dict[str, str]) -> None:
    service.cancel_order(OrderKey(accession_number=accessions["percent"]), CLERK)
    assert accessions["percent"] not in found(service)
    assert accessions["percent"] in found(service, include_final=True)
    assert found(service, statuses=frozenset({StepStatus.CANCELED})) == names(accessions, "percent")


def test_station_restriction_and_limit(service: RisService, accessions: dict[str, str]) -> None:
    assert found(service, restrict_to_station="MR_3T_01") == names(accessions, "mueller_ascii")
    result = service.find_worklist_items(WorklistQuery(limit=2))
    assert result.truncated
    assert len(result.items) == 2
    result = service.find_worklist_items(WorklistQuery(limit=5))
    assert not result.truncated
    assert len(result.items) == 5


def test_case_insensitive_matching_only_where_the_table_supports_it(service: RisService) -> None:
    with pytest.raises(ValueError, match="without regard to case"):
        found(service, Criterion("AdmissionID", SingleValue("x"), case_insensitive=True))


def test_person_names_are_kept_without_insignificant_trailing_separators(service: RisService) -> None:
    command = new_order(
        patient={"name": "MEIER^ANNA^^"}, steps=(step(performing_physician="WEBER^KLAUS^^^", sps_id="SPS-PN"),)
    )
    accession = service.schedule_order(command, CLERK).order.accession_number
    [item] = service.find_worklist_items(
        WorklistQuery(criteria=(Criterion("PatientName", SingleValue("MEIER^ANNA")),))
    ).items
    assert item["AccessionNumber"] == accession
    assert item[SPS_SEQUENCE][0]["ScheduledPerformingPhysicianName"] == "WEBER^KLAUS"
    performing = Criterion(SPS + "ScheduledPerformingPhysicianName", SingleValue("WEBER^KLAUS"))
    assert found(service, performing) == [accession]
    # The same order sent again (HL7 XO) does not count as a schedule change of a started step.
    service.set_step_status(
        service.find_order(OrderKey(accession_number=accession)).steps[0].id, StepStatus.STARTED, CLERK
    )  # type: ignore[union-attr]
    service.update_order(OrderKey(accession_number=accession), command, CLERK)
