"""DCMTK's echoscu and findscu -W, the reference SCUs, against our worklist (in-process listener),
and `ris listen` as the process a site runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from ris.domain.model import Actor, AeRole, RemoteAE
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import dicom_listener, run_dcmtk
from tests.support.orders import local, new_order, step
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until

CLERK = Actor("user", "clerk")
STUDY_UID_ROOT = "1.2.826.0.1.3680043.10.1474.77"
SPS = "ScheduledProcedureStepSequence[0]."


@pytest.fixture
def port(settings: Settings, service: RisService) -> Iterator[int]:
    for number, (name, charset, start) in enumerate(
        (
            ("MÜLLER^HANS", "", local(2026, 11, 23, 8)),  # Latin-1 fits: stored as ISO_IR 100
            ("MÜLLER^ANNA", "ISO_IR 192", local(2026, 11, 23, 9)),
            ("MUELLER^KARL", "", local(2026, 11, 24, 9)),
        ),
        start=1,
    ):
        order = new_order(
            patient={"name": name},
            procedure={"study_uid": f"{STUDY_UID_ROOT}.{number}"},
            character_set=charset,
            steps=(step(start=start),),
        )
        service.schedule_order(order, CLERK)
    with dicom_listener(settings, service) as listener:
        yield listener.port


def findscu(port: int, out: Path, *args: str | Path) -> list[pydicom.Dataset]:
    """Run findscu -W, keep the responses as files, return them in order."""
    out.mkdir()
    done = run_dcmtk(
        "findscu", "-W", "-aet", "CT_RAD_01", "-aec", "RISBROKER", "-X", "-od", out, "127.0.0.1", port, *args
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [pydicom.dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def findscu_log(port: int, *keys: str) -> str:
    """Run findscu -W -v with ``keys`` and return what it printed (one line per response status)."""
    done = run_dcmtk("findscu", "-W", "-v", "-aet", "CT_RAD_01", "-aec", "RISBROKER", *keys, "127.0.0.1", str(port))
    return done.stdout + done.stderr


def test_echoscu(port: int) -> None:
    assert run_dcmtk("echoscu", "-aet", "CT_RAD_01", "-aec", "RISBROKER", "127.0.0.1", str(port)).returncode == 0
    refused = run_dcmtk("echoscu", "-aet", "CT_RAD_01", "-aec", "NOT_US", "127.0.0.1", str(port))
    assert refused.returncode != 0
    assert "Called AE Title Not Recognized" in refused.stdout + refused.stderr


def test_findscu_keys_on_the_command_line(port: int, tmp_path: Path) -> None:
    found = findscu(
        port,
        tmp_path / "out",
        "-k",
        "PatientName=MUELL*",
        "-k",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261123-20261124",
        "-k",
        "ScheduledProcedureStepSequence[0].Modality=CT",
        "-k",
        "AccessionNumber",
    )
    assert [str(ds.PatientName) for ds in found] == ["MUELLER^KARL"]
    assert found[0].AccessionNumber.startswith("A")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("PatientName=MUELLER^KARL", ["MUELLER^KARL"]),  # single value
        ("PatientName=M?LLER*", ["MÜLLER^HANS", "MÜLLER^ANNA"]),  # wildcards
        ("PatientName", ["MÜLLER^HANS", "MÜLLER^ANNA", "MUELLER^KARL"]),  # universal
        (SPS + "ScheduledProcedureStepStartDate=20261124-", ["MUELLER^KARL"]),  # open date range
        (SPS + "ScheduledProcedureStepStartDate=-20261123", ["MÜLLER^HANS", "MÜLLER^ANNA"]),
        (SPS + "ScheduledProcedureStepStartTime=0830-0930", ["MÜLLER^ANNA", "MUELLER^KARL"]),  # time range
        (f"StudyInstanceUID={STUDY_UID_ROOT}.1\\{STUDY_UID_ROOT}.3", ["MÜLLER^HANS", "MUELLER^KARL"]),  # UID list
        (SPS + "ScheduledProtocolCodeSequence[0].CodeValue=CTTHXKM", ["MÜLLER^HANS", "MÜLLER^ANNA", "MUELLER^KARL"]),
        (SPS + "ScheduledProtocolCodeSequence[0].CodeValue=NOPE", []),  # sequence matching
        (SPS + "ScheduledStationAETitle=CT_RAD_0?", ["MÜLLER^HANS", "MÜLLER^ANNA", "MUELLER^KARL"]),
    ],
)
def test_findscu_matching_types(port: int, tmp_path: Path, key: str, expected: list[str]) -> None:
    found = findscu(port, tmp_path / "out", "-k", "PatientName", "-k", key)
    assert [str(ds.PatientName) for ds in found] == expected


def test_findscu_cancel_stops_the_responses(settings: Settings, service: RisService, tmp_path: Path) -> None:
    # Enough matches that the responses cannot all be sent before findscu's C-CANCEL arrives, even
    # on a busy machine (300 once were): loopback buffers take hundreds of small responses at once.
    matches = 3000
    service.import_orders([new_order(patient={"name": "VIELE^ANNA"}) for _ in range(matches)], CLERK)
    with dicom_listener(settings, service, mwl_result_cap=matches) as listener:
        found = findscu(listener.port, tmp_path / "out", "--cancel", "1", "-v", "-k", "PatientName=VIELE*")
    assert 1 <= len(found) < matches // 2, len(found)


def test_findscu_result_cap_ends_with_a700(settings: Settings, service: RisService, tmp_path: Path) -> None:
    service.import_orders([new_order(patient={"name": "VIELE^ANNA"}) for _ in range(3)], CLERK)
    with dicom_listener(settings, service, mwl_result_cap=2) as listener:
        output = findscu_log(listener.port, "-k", "PatientName=VIELE*")
    assert output.count("(Pending)") == 2, output
    assert "Received Final Find Response (Refused: OutOfResources)" in output, output  # A700


def test_echoscu_rejected_for_an_unknown_calling_ae_when_stations_are_registered(
    settings: Settings, service: RisService
) -> None:
    service.add_remote_ae(RemoteAE("CT_RAD_01", roles=frozenset({AeRole.STATION})), CLERK)
    service.add_remote_ae(RemoteAE("CT_ELSEWHERE", host="192.0.2.7", roles=frozenset({AeRole.STATION})), CLERK)
    with dicom_listener(settings, service, dicom_calling_ae_policy="registered") as listener:
        port = str(listener.port)
        assert run_dcmtk("echoscu", "-aet", "CT_RAD_01", "-aec", "RISBROKER", "127.0.0.1", port).returncode == 0
        unknown = run_dcmtk("echoscu", "-aet", "UNKNOWN_01", "-aec", "RISBROKER", "127.0.0.1", port)
        wrong_host = run_dcmtk("echoscu", "-aet", "CT_ELSEWHERE", "-aec", "RISBROKER", "127.0.0.1", port)
    for refused in (unknown, wrong_host):
        assert refused.returncode != 0
        assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr


def test_findscu_gets_a_failure_status_when_the_database_fails(
    settings: Settings, broken_service: RisService, tmp_path: Path
) -> None:
    with dicom_listener(settings, broken_service) as listener:
        output = findscu_log(listener.port, "-k", "PatientName")
    assert "(Pending)" not in output, output
    assert "Received Final Find Response (Failed: UnableToProcess)" in output, output  # C311


def test_findscu_utf8_query_finds_items_of_both_character_sets(port: int, tmp_path: Path) -> None:
    found = findscu(port, tmp_path / "out", "-k", "(0008,0005)=ISO_IR 192", "-k", "PatientName=MÜLLER*")
    assert [(str(ds.PatientName), ds.SpecificCharacterSet) for ds in found] == [
        ("MÜLLER^HANS", "ISO_IR 100"),
        ("MÜLLER^ANNA", "ISO_IR 192"),
    ]


def test_findscu_latin1_query_from_a_dump_file(port: int, tmp_path: Path) -> None:
    dump = tmp_path / "query.dump"
    dump.write_bytes("(0008,0005) CS [ISO_IR 100]\n(0010,0010) PN [MÜLLER*]\n(0010,0020) LO []\n".encode("latin-1"))
    query = tmp_path / "query.dcm"
    converted = run_dcmtk("dump2dcm", "--write-xfer-little", dump, query)
    assert converted.returncode == 0, converted.stderr
    found = findscu(port, tmp_path / "out", query)
    assert [str(ds.PatientName) for ds in found] == ["MÜLLER^HANS", "MÜLLER^ANNA"]
    # On the wire: Latin-1 for the first item, UTF-8 for the second.
    raw = [path.read_bytes() for path in sorted((tmp_path / "out").glob("rsp*.dcm"))]
    assert "MÜLLER^HANS".encode("latin-1") in raw[0]
    assert "MÜLLER^ANNA".encode() in raw[1]


@pytest.mark.slow
def test_ris_listen_serves_the_worklist_and_stops_on_sigterm(settings: Settings, service: RisService) -> None:
    service.schedule_order(new_order(patient={"name": "MÜLLER^HANS"}), CLERK)
    port = free_port()
    env = ris_env(settings, RIS_DICOM_PORT=str(port), RIS_DICOM_BIND="127.0.0.1", RIS_HL7_PORT=str(free_port()))
    with ris_process(env, "listen") as listener:
        wait_until(
            lambda: run_dcmtk("echoscu", "-aec", "RISBROKER", "127.0.0.1", str(port)).returncode == 0,
            what="the DICOM listener",
        )
        found = run_dcmtk("findscu", "-W", "-aec", "RISBROKER", "-k", "PatientName=M*", "127.0.0.1", str(port))
        assert found.returncode == 0
        assert (found.stdout + found.stderr).count("(Pending)") == 1
        output = stop_process(listener)
    assert listener.returncode == 0, output
    assert "dicom listening" in output
    assert "MÜLLER" not in output
