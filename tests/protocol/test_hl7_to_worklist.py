"""End to end through `ris listen`: orders sent over MLLP are what DCMTK's findscu -W finds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from hl7.client import MllpClient
from ris.settings import Settings
from tests.support.dicom import run_dcmtk
from tests.support.hl7_messages import orm
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until

# Matching key: AccessionNumber; these come back too.
RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedurePriority",
    "StudyInstanceUID",
    "ReferringPhysicianName",
    "ScheduledProcedureStepSequence[0].Modality",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
)


@dataclass(frozen=True)
class Site:
    hl7_port: int
    dicom_port: int


@pytest.fixture
def site(settings: Settings) -> Iterator[Site]:
    ports = Site(free_port(), free_port())
    env = ris_env(
        settings,
        RIS_HL7_PORT=str(ports.hl7_port),
        RIS_HL7_BIND="127.0.0.1",
        RIS_DICOM_PORT=str(ports.dicom_port),
        RIS_DICOM_BIND="127.0.0.1",
    )
    with ris_process(env, "listen") as listener:
        wait_until(
            lambda: run_dcmtk("echoscu", "-aec", "RISBROKER", "127.0.0.1", ports.dicom_port).returncode == 0,
            what="the DICOM listener",
        )
        yield ports
        output = stop_process(listener)
    assert listener.returncode == 0, output
    assert "MÜLLER" not in output  # no patient data in the logs


def findscu(site: Site, out: Path, accession: str) -> list[pydicom.Dataset]:
    out.mkdir()
    keys = [arg for key in (f"AccessionNumber={accession}", *RETURN_KEYS) for arg in ("-k", key)]
    done = run_dcmtk(
        "findscu", "-W", "-aet", "CT_RAD_01", "-aec", "RISBROKER", "-X", "-od", out, *keys, "127.0.0.1", site.dicom_port
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [pydicom.dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def test_orders_over_mllp_are_found_changed_and_removed_with_findscu(site: Site, tmp_path: Path) -> None:
    with MllpClient("127.0.0.1", site.hl7_port, timeout=30) as his:
        assert his.send(orm(accession="E2E1", number=9001, patient_id="E2E-4711", priority="S")).code == "AA"
        (item,) = findscu(site, tmp_path / "new", "E2E1")
        assert (str(item.PatientName), item.PatientID, item.IssuerOfPatientID) == (
            "MÜLLER^JÜRGEN",
            "E2E-4711",
            "KLINIKUM",
        )
        assert (item.PatientBirthDate, item.PatientSex) == ("19600101", "M")
        assert (item.RequestedProcedureID, item.StudyInstanceUID) == ("RP9001", "2.25.9001")
        assert item.RequestedProcedureDescription == "CT Thorax mit KM"
        assert item.RequestedProcedurePriority == "STAT"
        assert str(item.ReferringPhysicianName) == "WEBER^KLAUS^^DR."
        sps = item.ScheduledProcedureStepSequence[0]
        assert (sps.Modality, sps.ScheduledStationAETitle, sps.ScheduledProcedureStepID) == (
            "CT",
            "CT_RAD_01",
            "SPS9001",
        )
        assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime) == ("20261204", "164500")
        assert sps.ScheduledProcedureStepDescription == "CT Thorax mit KM"
        assert str(sps.ScheduledPerformingPhysicianName) == "KRÜGER^STEFAN^^DR."

        # XO moves it to another day (with an offset: 07:15 UTC is 08:15 in Berlin) and station.
        moved = orm(control="XO", accession="E2E1", number=9001, patient_id="E2E-4711", priority="S")
        moved = moved.replace("20261204164500", "20261207071500+0000").replace("CT_RAD_01", "CT_RAD_02")
        assert his.send(moved).code == "AA"
        (item,) = findscu(site, tmp_path / "moved", "E2E1")
        sps = item.ScheduledProcedureStepSequence[0]
        assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime) == ("20261207", "081500")
        assert sps.ScheduledStationAETitle == "CT_RAD_02"

        # CA and DC take orders off the worklist.
        assert his.send(orm(control="CA", status="CA", accession="E2E1", number=9001)).code == "AA"
        assert findscu(site, tmp_path / "canceled", "E2E1") == []
        assert his.send(orm(accession="E2E2", number=9002)).code == "AA"
        assert len(findscu(site, tmp_path / "second", "E2E2")) == 1
        assert his.send(orm(control="DC", status="DC", accession="E2E2", number=9002)).code == "AA"
        assert findscu(site, tmp_path / "discontinued", "E2E2") == []
