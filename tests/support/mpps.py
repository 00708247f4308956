"""MPPS attribute lists as a modality sends them (pydicom datasets), and their DICOM JSON form."""

from __future__ import annotations

from typing import Any

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ris.domain.dicom_json import DicomJson
from ris.domain.model import OrderView

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
GRAYSCALE_PR_STORAGE = "1.2.840.10008.5.1.4.1.1.11.1"


def as_json(dataset: Dataset) -> DicomJson:
    with config.disable_value_validation():
        result: DicomJson = dataset.to_json_dict()
    return result


def step_reference(
    study_uid: str = "", accession: str = "", requested_procedure_id: str = "", sps_id: str = ""
) -> Dataset:
    item = Dataset()
    item.StudyInstanceUID = study_uid or generate_uid()
    item.ReferencedStudySequence = []
    item.AccessionNumber = accession
    item.RequestedProcedureID = requested_procedure_id
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepID = sps_id
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = []
    return item


def reference_to(order: OrderView, step_index: int = 0) -> Dataset:
    """The Scheduled Step Attributes item a modality copies from this order's worklist item."""
    procedure = order.procedures[0]
    return step_reference(
        study_uid=procedure.study_uid,
        accession=order.order.accession_number,
        requested_procedure_id=procedure.requested_procedure_id,
        sps_id=procedure.steps[step_index].sps_id,
    )


def n_create(*references: Dataset, **overrides: Any) -> Dataset:
    """An N-CREATE attribute list (IN PROGRESS) with every type 1 and 2 attribute of Table F.7.2-1."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ScheduledStepAttributesSequence = list(references) or [step_reference()]
    ds.PatientName = "MÜLLER^HANS"
    ds.PatientID = "P000001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "M"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS0001"
    ds.PerformedStationAETitle = "CT_RAD_01"
    ds.PerformedStationName = "CTRAD1"
    ds.PerformedLocation = "RAD UG R104"
    ds.PerformedProcedureStepStartDate = "20261123"
    ds.PerformedProcedureStepStartTime = "093000"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT Thorax"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return with_values(ds, **overrides)


def series(
    instances: int = 2,
    *,
    retrieve_ae: str = "PACS_A",
    series_uid: str = "",
    sop_class: str = CT_IMAGE_STORAGE,
    non_image: int = 0,
) -> Dataset:
    """One Performed Series Sequence item with ``instances`` images (and ``non_image`` others)."""
    item = Dataset()
    item.PerformingPhysicianName = ""
    item.ProtocolName = "Thorax"
    item.OperatorsName = ""
    item.SeriesInstanceUID = series_uid or generate_uid()
    item.SeriesDescription = ""
    item.RetrieveAETitle = retrieve_ae
    item.ReferencedImageSequence = [_instance(sop_class) for _ in range(instances)]
    item.ReferencedNonImageCompositeSOPInstanceSequence = [_instance(GRAYSCALE_PR_STORAGE) for _ in range(non_image)]
    return item


def _instance(sop_class: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = generate_uid()
    return item


def n_set(status: str = "COMPLETED", *series_items: Dataset, **overrides: Any) -> Dataset:
    """An N-SET modification list ending the step (or only changing attributes)."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261123"
    ds.PerformedProcedureStepEndTime = "094500"
    ds.PerformedSeriesSequence = list(series_items)
    return with_values(ds, **overrides)


def with_values(dataset: Dataset, **values: Any) -> Dataset:
    """Set attributes, malformed ones too (a broken modality is what the checks are for)."""
    with config.disable_value_validation():
        for keyword, value in values.items():
            if keyword in dataset:  # a new element, so that it carries the relaxed validation mode
                delattr(dataset, keyword)
            setattr(dataset, keyword, value)
    return dataset


IanReference = tuple[str, str, str, str, str]  # series, SOP class, SOP instance, availability, retrieve AE


def ian_references(ian: Dataset) -> list[IanReference]:
    """Every instance an IAN lists, in order."""
    return [
        (s.SeriesInstanceUID, i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, i.InstanceAvailability, ae)
        for s in ian.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
        for ae in [i.get("RetrieveAETitle", "")]
    ]


def expected_ian_references(*series_and_retrieve_ae: tuple[Dataset, str]) -> list[IanReference]:
    """What an IAN must list for these Performed Series items, each with the Retrieve AE it should name."""
    return [
        (item.SeriesInstanceUID, i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, "ONLINE", retrieve_ae)
        for item, retrieve_ae in series_and_retrieve_ae
        for i in [*item.ReferencedImageSequence, *item.ReferencedNonImageCompositeSOPInstanceSequence]
    ]


def without(dataset: Dataset, *keywords: str) -> Dataset:
    for keyword in keywords:
        delattr(dataset, keyword)
    return dataset
