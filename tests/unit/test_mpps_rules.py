"""The MPPS rules of PS3.4 F.7 as plain functions: N-CREATE checks, N-SET state machine and
merge, link keys, and the IAN content."""

from __future__ import annotations

import pytest
from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataset import Dataset

from ris.domain import mpps
from ris.domain.dicom_json import Attribute
from ris.domain.errors import InvalidTransition, MissingAttribute, MissingAttributeValue, ValidationFailed
from ris.domain.mpps import MppsStatus, StepReference
from tests.support.mpps import (
    as_json,
    expected_ian_references,
    ian_references,
    n_create,
    n_set,
    series,
    step_reference,
    with_values,
    without,
)


def _problem_fields(error: ValidationFailed) -> list[str]:
    return [problem.field for problem in error.problems]


def test_every_attribute_constant_matches_the_dicom_dictionary() -> None:
    constants = [value for value in vars(mpps).values() if isinstance(value, Attribute)]
    assert len(constants) > 30
    for attribute in constants:
        tag = int(attribute.tag, 16)
        assert attribute.tag == attribute.tag.upper()
        assert dictionary_keyword(tag) == attribute.keyword
        assert dictionary_VR(tag) == attribute.vr


def test_a_complete_n_create_is_in_progress() -> None:
    assert mpps.check_create(as_json(n_create())) is MppsStatus.IN_PROGRESS


def test_type_2_attributes_may_be_left_out() -> None:
    lean = without(n_create(), "PatientName", "PatientID", "StudyID", "PerformedSeriesSequence", "PerformedLocation")
    assert mpps.check_create(as_json(lean)) is MppsStatus.IN_PROGRESS


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", "STARTED"])
def test_n_create_must_be_in_progress(status: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        mpps.check_create(as_json(n_create(PerformedProcedureStepStatus=status)))
    assert type(caught.value) is ValidationFailed
    assert _problem_fields(caught.value) == ["PerformedProcedureStepStatus"]


@pytest.mark.parametrize(
    "keyword",
    [
        "PerformedProcedureStepStatus",
        "ScheduledStepAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedStationAETitle",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "Modality",
    ],
)
def test_missing_type_1_attribute_is_missing_attribute(keyword: str) -> None:
    with pytest.raises(MissingAttribute) as caught:
        mpps.check_create(as_json(without(n_create(), keyword)))
    assert _problem_fields(caught.value) == [keyword]
    assert f"{keyword}: is missing" in str(caught.value)


@pytest.mark.parametrize(
    ("keyword", "empty"),
    [
        ("PerformedProcedureStepID", ""),
        ("PerformedStationAETitle", ""),
        ("Modality", ""),
        ("ScheduledStepAttributesSequence", []),
        ("PerformedProcedureStepStatus", ""),
    ],
)
def test_empty_type_1_attribute_is_missing_value(keyword: str, empty: object) -> None:
    with pytest.raises(MissingAttributeValue) as caught:
        mpps.check_create(as_json(n_create(**{keyword: empty})))
    assert _problem_fields(caught.value) == [keyword]


@pytest.mark.parametrize(
    ("keyword", "bad"),
    [
        ("PerformedProcedureStepStartDate", "23.11.2026"),
        ("PerformedProcedureStepStartTime", "9:30"),
        ("Modality", "ct"),
        ("PerformedProcedureStepEndDate", "2026-11-23"),
    ],
)
def test_malformed_values_are_invalid(keyword: str, bad: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        mpps.check_create(as_json(n_create(**{keyword: bad})))
    assert type(caught.value) is ValidationFailed
    assert _problem_fields(caught.value) == [keyword]


def test_scheduled_step_item_needs_a_valid_study_uid() -> None:
    missing = without(step_reference(), "StudyInstanceUID")
    with pytest.raises(MissingAttribute) as caught:
        mpps.check_create(as_json(n_create(missing)))
    assert _problem_fields(caught.value) == ["ScheduledStepAttributesSequence[0].StudyInstanceUID"]
    with pytest.raises(ValidationFailed) as caught:
        mpps.check_create(as_json(n_create(with_values(step_reference(), StudyInstanceUID="1.02.3"))))
    assert type(caught.value) is ValidationFailed


def test_the_most_basic_problem_decides_the_error_and_all_are_reported() -> None:
    attributes = without(n_create(Modality="", PerformedProcedureStepStartDate="yesterday"), "PerformedStationAETitle")
    with pytest.raises(MissingAttribute) as caught:
        mpps.check_create(as_json(attributes))
    assert sorted(_problem_fields(caught.value)) == [
        "Modality",
        "PerformedProcedureStepStartDate",
        "PerformedStationAETitle",
    ]


def _created() -> dict[str, object]:
    return as_json(n_create())


def test_n_set_in_progress_merges_and_keeps_status() -> None:
    outcome = mpps.apply_set(
        _created(), MppsStatus.IN_PROGRESS, as_json(_only(PerformedProcedureStepDescription="CT Thorax nativ"))
    )
    assert outcome.status is MppsStatus.IN_PROGRESS
    assert outcome.attributes["00400254"]["Value"] == ["CT Thorax nativ"]
    assert outcome.attributes["00400244"]["Value"] == ["20261123"]
    assert outcome.ignored == ()


def _only(**attributes: object) -> Dataset:
    return with_values(Dataset(), **attributes)


def test_n_set_completed_replaces_the_series_sequence() -> None:
    first = mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(_only(PerformedSeriesSequence=[series(1)])))
    second_series = series(3)
    outcome = mpps.apply_set(first.attributes, first.status, as_json(n_set("COMPLETED", second_series)))
    assert outcome.status is MppsStatus.COMPLETED
    stored = outcome.attributes["00400340"]["Value"]
    assert [item["0020000E"]["Value"][0] for item in stored] == [second_series.SeriesInstanceUID]


@pytest.mark.parametrize("final", [MppsStatus.COMPLETED, MppsStatus.DISCONTINUED])
def test_a_final_step_may_no_longer_be_updated(final: MppsStatus) -> None:
    with pytest.raises(InvalidTransition, match="may no longer be updated"):
        mpps.apply_set(_created(), final, as_json(_only(PerformedProcedureStepDescription="late")))


def test_completed_needs_a_series() -> None:
    with pytest.raises(MissingAttributeValue) as caught:
        mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(n_set("COMPLETED")))
    assert _problem_fields(caught.value) == ["PerformedSeriesSequence"]


def test_discontinued_may_end_without_series() -> None:
    outcome = mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(n_set("DISCONTINUED")))
    assert outcome.status is MppsStatus.DISCONTINUED


def test_final_state_needs_end_date_and_time() -> None:
    modification = without(n_set("COMPLETED", series()), "PerformedProcedureStepEndDate")
    with pytest.raises(MissingAttributeValue) as caught:  # the N-CREATE sent it empty
        mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(modification))
    assert _problem_fields(caught.value) == ["PerformedProcedureStepEndDate"]
    created = as_json(without(n_create(), "PerformedProcedureStepEndTime"))
    modification = without(n_set("COMPLETED", series()), "PerformedProcedureStepEndTime")
    with pytest.raises(MissingAttribute):
        mpps.apply_set(created, MppsStatus.IN_PROGRESS, as_json(modification))


def test_series_items_need_their_type_1_attributes() -> None:
    bad_series = without(series(2), "ProtocolName")
    del bad_series.ReferencedImageSequence[1].ReferencedSOPInstanceUID
    with pytest.raises(MissingAttribute) as caught:
        mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(n_set("COMPLETED", bad_series)))
    assert _problem_fields(caught.value) == [
        "PerformedSeriesSequence[0].ProtocolName",
        "PerformedSeriesSequence[0].ReferencedImageSequence[1].ReferencedSOPInstanceUID",
    ]


def test_unknown_status_value_is_invalid() -> None:
    with pytest.raises(ValidationFailed) as caught:
        mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(n_set("DONE", series())))
    assert type(caught.value) is ValidationFailed
    assert "is not one of IN PROGRESS, COMPLETED, DISCONTINUED" in str(caught.value)


def test_attributes_an_n_set_may_not_change_keep_their_created_values() -> None:
    modification = n_set("COMPLETED", series(), PatientName="OTHER^NAME", Modality="MR")
    modification.ScheduledStepAttributesSequence = [step_reference(sps_id="ELSEWHERE")]
    outcome = mpps.apply_set(_created(), MppsStatus.IN_PROGRESS, as_json(modification))
    assert outcome.ignored == ("Modality", "PatientName", "ScheduledStepAttributesSequence")
    assert outcome.attributes["00080060"]["Value"] == ["CT"]
    assert outcome.attributes["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^HANS"}]
    assert mpps.step_references(outcome.attributes)[0].sps_id == ""


def test_step_references_and_link_keys() -> None:
    attributes = as_json(
        n_create(
            step_reference("1.2.3", "A1", "RP1", "SPS1"),
            step_reference("1.2.4", "A1", "", ""),
        )
    )
    first, second = mpps.step_references(attributes)
    assert first == StepReference("1.2.3", "A1", "RP1", "SPS1")
    assert mpps.link_keys(first) == [
        {"study_uid": "1.2.3", "sps_id": "SPS1"},
        {"accession_number": "A1", "sps_id": "SPS1"},
        {"accession_number": "A1", "requested_procedure_id": "RP1"},
        {"study_uid": "1.2.3"},
        {"accession_number": "A1"},
    ]
    assert mpps.link_keys(second) == [{"study_uid": "1.2.4"}, {"accession_number": "A1"}]
    assert mpps.link_keys(StepReference()) == []


def test_ian_content_lists_every_instance_online_without_patient_data() -> None:
    reference = step_reference("1.2.826.0.1.3680043.10.1474.5.7")
    ct = series(2, retrieve_ae="PACS_A")
    other = series(1, retrieve_ae="", non_image=1)
    empty = series(0)
    attributes = as_json(n_create(reference, PerformedSeriesSequence=[ct, other, empty]))
    ian = Dataset.from_json(mpps.ian_attributes("1.2.3.4", attributes, "PACS_FALLBACK"))

    assert ian.StudyInstanceUID == "1.2.826.0.1.3680043.10.1474.5.7"
    assert len(ian.ReferencedPerformedProcedureStepSequence) == 1
    assert ian.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPClassUID == mpps.MPPS_SOP_CLASS
    assert ian.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert [s.SeriesInstanceUID for s in ian.ReferencedSeriesSequence] == [
        ct.SeriesInstanceUID,
        other.SeriesInstanceUID,
    ]
    assert ian_references(ian) == expected_ian_references((ct, "PACS_A"), (other, "PACS_FALLBACK"))
    assert {element.keyword for element in ian} == {
        "ReferencedPerformedProcedureStepSequence",
        "StudyInstanceUID",
        "ReferencedSeriesSequence",
    }


def test_no_ian_without_instances() -> None:
    assert mpps.ian_attributes("1.2.3", as_json(n_create(PerformedSeriesSequence=[series(0)])), "") is None


def test_summary_has_identifiers_only() -> None:
    attributes = as_json(n_create(step_reference("1.2.3", "A77"), PerformedSeriesSequence=[series(2), series(1)]))
    summary = mpps.summarize(attributes)
    assert summary == mpps.MppsSummary(
        study_uid="1.2.3",
        accession_number="A77",
        modality="CT",
        pps_id="PPS0001",
        station_ae="CT_RAD_01",
        start="20261123093000",
        end="",
        series_count=2,
        instance_count=3,
    )
