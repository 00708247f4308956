"""Our DICOM listener on an ephemeral port, and a pynetdicom SCU that talks to it like a scanner."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification  # type: ignore[attr-defined]

from dimse.ae import AssociationPolicy, DicomListener
from ris.bootstrap import dicom_services
from ris.services import RisService
from ris.settings import Settings

OUR_AE = "RISBROKER"
SCANNER = "CT_RAD_01"

# Table K.6-1 return keys a scanner typically asks for (top level; the SPS item is separate).
RETURN_KEYS = (
    "AccessionNumber",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "RequestingPhysician",
    "RequestedProcedureDescription",
    "AdmissionID",
    "RequestedProcedureID",
    "RequestedProcedurePriority",
)
SPS_RETURN_KEYS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStatus",
)


@contextmanager
def dicom_listener(settings: Settings, service: RisService, **overrides: Any) -> Iterator[DicomListener]:
    """Our AE on 127.0.0.1 and an ephemeral port, as ``ris listen`` wires it."""
    site = dataclasses.replace(settings, dicom_bind="127.0.0.1", dicom_port=0, **overrides)
    listener = DicomListener(site, dicom_services(service, site), AssociationPolicy(site, service.get_remote_ae))
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def element(keyword: str, value: Any) -> DataElement:
    """An element with any value, also the wildcards and ranges a query uses (pydicom would warn
    about ``CT*`` in a CS)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return DataElement(tag, dictionary_VR(tag), value, validation_mode=pydicom_config.IGNORE)


def worklist_query(
    charset: str | None = None, sps: dict[str, Any] | None = None, return_all: bool = True, **keys: Any
) -> Dataset:
    """A C-FIND identifier: ``keys`` (top level) and ``sps`` (in the one SPS item) are matching
    keys; with ``return_all`` every usual K.6-1 return key is asked for as well."""
    query = Dataset()
    if charset is not None:
        query.add(element("SpecificCharacterSet", charset))
    for keyword in RETURN_KEYS if return_all else ():
        query.add(element(keyword, None))
    for keyword, value in keys.items():
        query.add(element(keyword, value))
    item = Dataset()
    for keyword in SPS_RETURN_KEYS if return_all else ():
        item.add(element(keyword, None))
    for keyword, value in (sps or {}).items():
        item.add(element(keyword, value))
    if return_all or sps:
        query.ScheduledProcedureStepSequence = [item]
    return query


@dataclass
class FindResult:
    statuses: list[int] = field(default_factory=list)
    identifiers: list[Dataset] = field(default_factory=list)
    final: Dataset | None = None

    @property
    def final_status(self) -> int:
        assert self.final is not None, "no final status"
        return int(self.final.Status)

    def values(self, keyword: str) -> list[str]:
        return [str(ds.get(keyword, "")) for ds in self.identifiers]

    def sps_values(self, keyword: str) -> list[str]:
        return [str(ds.ScheduledProcedureStepSequence[0].get(keyword, "")) for ds in self.identifiers]


def scu(calling_ae: str = SCANNER, implicit_vr_only: bool = False) -> AE:
    ae = AE(ae_title=calling_ae)
    if implicit_vr_only:
        ae.add_requested_context(ModalityWorklistInformationFind, ImplicitVRLittleEndian)
    else:
        ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae


def extended_negotiation(date_time_matching: bool) -> list[SOPClassExtendedNegotiation]:
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = ModalityWorklistInformationFind
    item.service_class_application_information = bytes([1, int(date_time_matching), 0])
    return [item]


def find(
    port: int,
    query: Dataset,
    calling_ae: str = SCANNER,
    called_ae: str = OUR_AE,
    date_time_matching: bool | None = None,
    implicit_vr_only: bool = False,
) -> FindResult:
    """One C-FIND on a new association, as a scanner does it."""
    ext = None if date_time_matching is None else extended_negotiation(date_time_matching)
    assoc = scu(calling_ae, implicit_vr_only).associate("127.0.0.1", port, ae_title=called_ae, ext_neg=ext)
    assert assoc.is_established, "association not established"
    result = FindResult()
    try:
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            assert status, "no response"
            result.statuses.append(int(status.Status))
            if status.Status in (0xFF00, 0xFF01):
                result.identifiers.append(identifier)
            else:
                result.final = status
    finally:
        assoc.release()
    return result


def dcmtk_env() -> dict[str, str]:
    """DCMTK tools with TCP_NODELAY (else each write waits ~40 ms for a delayed ACK)."""
    for tool in ("findscu", "echoscu", "dump2dcm"):
        assert shutil.which(tool), f"DCMTK {tool} is not installed (apt-get install dcmtk)"
    return {**os.environ, "TCP_NODELAY": "1"}


def run_dcmtk(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
        cwd=cwd,
    )
