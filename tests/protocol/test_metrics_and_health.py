"""``/metrics`` and ``/healthz`` of the web against a real ``ris listen`` process: its counters
(written in multiprocess mode) and its heartbeat reach the web's process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from subprocess import Popen

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from hl7.client import MllpClient
from ris.domain.model import Actor, AeRole, RemoteAE
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import find, worklist_query
from tests.support.dicom_peers import REFUSED_CONNECTION_LEAKS_A_SOCKET
from tests.support.hl7_messages import orm
from tests.support.mpps import as_json, n_create, n_set, reference_to, series
from tests.support.orders import new_order
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until

ADMIN = Actor("cli", "test")


@dataclass
class Site:
    app: Flask
    process: Popen[str]
    hl7_port: int
    dicom_port: int

    def health(self) -> tuple[int, dict[str, object]]:
        response = self.app.test_client().get("/healthz")
        return response.status_code, response.get_json()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.app.test_client().get("/metrics")
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples
        }


@pytest.fixture
def site(settings: Settings, make_app: Callable[..., Flask]) -> Iterator[Site]:
    hl7_port, dicom_port = free_port(), free_port()
    env = ris_env(
        settings,
        RIS_HL7_PORT=str(hl7_port),
        RIS_HL7_BIND="127.0.0.1",
        RIS_DICOM_PORT=str(dicom_port),
        RIS_DICOM_BIND="127.0.0.1",
        RIS_OUTBOX_INITIAL_DELAY="60",
    )
    app = make_app()
    with ris_process(env, "listen") as listener:
        running = Site(app, listener, hl7_port, dicom_port)
        wait_until(lambda: running.health()[0] == 200, what="a healthy listener heartbeat")
        yield running
        if listener.poll() is None:
            stop_process(listener)


def test_healthz_reports_the_listener_parts(site: Site) -> None:
    status, body = site.health()
    assert status == 200
    assert body["status"] == "ok"
    listener = body["listener"]
    assert isinstance(listener, dict)
    assert listener["state"] == "running"
    assert listener["parts"] == {"dicom": True, "hl7": True, "outbox": True}
    assert listener["pid"] == site.process.pid


def test_healthz_is_503_once_the_listener_stops(site: Site) -> None:
    output = stop_process(site.process)
    assert site.process.returncode == 0, output
    status, body = site.health()
    assert status == 503
    assert body["status"] == "error"
    assert body["listener"] == {
        "state": "stopped",
        "healthy": False,
        "parts": {},
        "pid": None,
        "heartbeat_age_seconds": None,
    }
    assert body["database"]["reachable"] is True  # the database alone does not make the site healthy


def test_healthz_is_503_without_a_listener(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["listener"]["state"] == "stopped"


def test_metrics_count_hl7_worklist_and_mpps_in_the_listener(site: Site) -> None:
    with MllpClient("127.0.0.1", site.hl7_port, timeout=30) as his:
        assert his.send(orm(accession="MET1", number=7101)).code == "AA"
        assert his.send(orm(accession="MET1", number=7102)).code == "AE"  # accession taken
        assert his.send(orm(accession="MET2", number=7103)).code == "AA"
    assert find(site.dicom_port, worklist_query(AccessionNumber="MET1")).final_status == 0x0000
    assert find(site.dicom_port, worklist_query(ScheduledProcedureStepStartDate="2026")).final_status == 0xA900
    assoc = AE(ae_title="CT_RAD_01")
    assoc.add_requested_context(ModalityPerformedProcedureStep)
    association = assoc.associate("127.0.0.1", site.dicom_port, ae_title="RISBROKER")
    assert association.is_established
    try:
        created = association.send_n_create(n_create(), ModalityPerformedProcedureStep, "1.2.826.0.1.3680043.10.7101")
        assert created[0].Status == 0x0000
        again = association.send_n_create(n_create(), ModalityPerformedProcedureStep, "1.2.826.0.1.3680043.10.7101")
        assert again[0].Status == 0x0111
        done = association.send_n_set(
            n_set("COMPLETED", series()), ModalityPerformedProcedureStep, "1.2.826.0.1.3680043.10.7101"
        )
        assert done[0].Status == 0x0000
    finally:
        association.release()

    samples = site.metrics()
    assert samples[("ris_hl7_messages_total", (("ack_code", "AA"),))] == 2
    assert samples[("ris_hl7_messages_total", (("ack_code", "AE"),))] == 1
    assert samples[("ris_worklist_query_seconds_count", (("status", "0000"),))] == 1
    assert samples[("ris_worklist_query_seconds_count", (("status", "A900"),))] == 1
    assert samples[("ris_worklist_query_seconds_bucket", (("le", "+Inf"), ("status", "0000")))] == 1
    assert samples[("ris_mpps_events_total", (("operation", "N-CREATE"), ("status", "0000")))] == 1
    assert samples[("ris_mpps_events_total", (("operation", "N-CREATE"), ("status", "0111")))] == 1
    assert samples[("ris_mpps_events_total", (("operation", "N-SET"), ("status", "0000")))] == 1


@REFUSED_CONNECTION_LEAKS_A_SOCKET
def test_metrics_show_outbox_depth_and_delivery_attempts(site: Site, service: RisService) -> None:
    """An IAN for a destination that is down: a retry counted by the listener, PENDING in the depth."""
    service.add_remote_ae(
        RemoteAE("PACS_DOWN", host="127.0.0.1", port=free_port(), roles=frozenset({AeRole.IAN_DESTINATION})), ADMIN
    )
    order = service.schedule_order(new_order(), ADMIN)
    uid = "1.2.826.0.1.3680043.10.7201"
    service.record_mpps_create(uid, as_json(n_create(reference_to(order))), "CT_RAD_01")
    service.record_mpps_set(uid, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    wait_until(
        lambda: site.metrics().get(("ris_outbox_deliveries_total", (("kind", "ian"), ("result", "retry")))) == 1,
        what="the failed IAN attempt counted",
    )
    samples = site.metrics()
    assert samples[("ris_outbox_tasks", (("kind", "ian"), ("state", "PENDING")))] == 1
    assert samples[("ris_outbox_tasks", (("kind", "ian"), ("state", "SENT")))] == 0
    assert samples[("ris_outbox_tasks", (("kind", "hl7-status"), ("state", "FAILED")))] == 0


def test_metrics_without_a_listener_still_show_the_database_gauges(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().get("/metrics")
    assert response.status_code == 200
    assert 'ris_outbox_tasks{kind="ian",state="PENDING"} 0.0' in response.get_data(as_text=True)
