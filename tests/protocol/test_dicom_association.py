"""Who may associate, and what a peer cannot do to the listener: association policy with its
A-ASSOCIATE-RJ reasons, the association limit, oversize PDUs, socket options, a database that
fails, and patient data kept out of the log."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import struct

import pytest
from pynetdicom.association import Association

from ris.domain.model import Actor, AeRole, RemoteAE
from ris.services import RisService
from ris.settings import Settings
from tests.support.dicom import OUR_AE, SCANNER, dicom_listener, find, scu, worklist_query
from tests.support.orders import new_order

CLERK = Actor("user", "clerk")
REJECTED_PERMANENT, SERVICE_USER = 0x01, 0x01
CALLING_AE_NOT_RECOGNIZED, CALLED_AE_NOT_RECOGNIZED = 0x03, 0x07


def associate(port: int, calling_ae: str = SCANNER, called_ae: str = OUR_AE) -> Association:
    return scu(calling_ae).associate("127.0.0.1", port, ae_title=called_ae)


def rejection(assoc: Association) -> tuple[int, int, int] | None:
    """(result, source, reason) of an A-ASSOCIATE-RJ, None if the association was accepted."""
    if assoc.is_established:
        assoc.release()
        return None
    assert assoc.is_rejected, "neither accepted nor rejected (aborted?)"
    answer = assoc.acceptor.primitive
    assert answer is not None
    return (answer.result, answer.result_source, answer.diagnostic)


def add_station(
    service: RisService, title: str, host: str = "", roles: set[AeRole] | None = None, port: int = 0
) -> None:
    service.add_remote_ae(RemoteAE(title, host=host, port=port, roles=frozenset(roles or {AeRole.STATION})), CLERK)


def test_called_ae_must_be_ours(settings: Settings, service: RisService) -> None:
    with dicom_listener(settings, service) as listener:
        assert rejection(associate(listener.port, called_ae="SOMEONE_ELSE")) == (
            REJECTED_PERMANENT,
            SERVICE_USER,
            CALLED_AE_NOT_RECOGNIZED,
        )
        assert rejection(associate(listener.port)) is None
    with dicom_listener(settings, service, dicom_require_called_ae=False) as listener:
        assert rejection(associate(listener.port, called_ae="SOMEONE_ELSE")) is None


def test_open_policy_accepts_any_calling_ae(settings: Settings, service: RisService) -> None:
    with dicom_listener(settings, service) as listener:
        assert rejection(associate(listener.port, calling_ae="ANYONE")) is None


def test_registered_policy_accepts_only_stations_from_their_host(settings: Settings, service: RisService) -> None:
    add_station(service, "CT_ANYHOST")
    add_station(service, "CT_LOOPBACK", host="127.0.0.1")
    add_station(service, "CT_BY_NAME", host="localhost")
    add_station(service, "CT_ELSEWHERE", host="192.0.2.7")
    add_station(service, "PACS", host="127.0.0.1", port=104, roles={AeRole.IAN_DESTINATION})
    not_recognized = (REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNIZED)
    with dicom_listener(settings, service, dicom_calling_ae_policy="registered") as listener:
        assert rejection(associate(listener.port, calling_ae="CT_ANYHOST")) is None
        assert rejection(associate(listener.port, calling_ae="CT_LOOPBACK")) is None
        assert rejection(associate(listener.port, calling_ae="CT_BY_NAME")) is None
        assert rejection(associate(listener.port, calling_ae="UNKNOWN")) == not_recognized
        assert rejection(associate(listener.port, calling_ae="CT_ELSEWHERE")) == not_recognized
        assert rejection(associate(listener.port, calling_ae="PACS")) == not_recognized


def test_association_limit(settings: Settings, service: RisService) -> None:
    with dicom_listener(settings, service, dicom_max_associations=2) as listener:
        first, second = associate(listener.port), associate(listener.port)
        try:
            # A-ASSOCIATE-RJ transient, service provider (presentation), local limit exceeded
            assert rejection(associate(listener.port)) == (0x02, 0x03, 0x02)
        finally:
            for assoc in (first, second):
                assoc.release()


def test_accepted_sockets_have_nodelay_and_a_read_timeout(settings: Settings, service: RisService) -> None:
    with dicom_listener(settings, service, dicom_network_timeout=7.0) as listener:
        assoc = associate(listener.port)
        try:
            [server_side] = listener.ae.active_associations
            sock = server_side.dul.socket.socket
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert sock.gettimeout() == 7.0
        finally:
            assoc.release()


def test_oversize_pdu_is_aborted_and_the_listener_goes_on(settings: Settings, service: RisService) -> None:
    with dicom_listener(settings, service, dicom_max_pdu_bytes=16384) as listener:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as raw:
            # An A-ASSOCIATE-RQ header announcing 100 MB (pynetdicom alone would try to read it all).
            raw.sendall(struct.pack(">BBL", 0x01, 0x00, 100_000_000) + b"\x00" * 64)
            answer = raw.recv(10)
            # A-ABORT, source service provider (2), reason invalid PDU parameter value (6)
            assert answer == bytes([0x07, 0x00, 0, 0, 0, 4, 0, 0, 0x02, 0x06])
            with contextlib.suppress(ConnectionResetError):  # unread bytes make the close a reset
                assert raw.recv(10) == b""  # then the connection is closed
        assert rejection(associate(listener.port)) is None


def test_database_failure_answers_a_failure_status_never_an_empty_success(
    settings: Settings, broken_service: RisService
) -> None:
    with dicom_listener(settings, broken_service) as listener:
        result = find(listener.port, worklist_query())
        assert result.identifiers == []
        assert result.statuses == [0xC311]
        assoc = associate(listener.port)
        assert assoc.send_c_echo().Status == 0x0000  # the AE itself still answers
        assoc.release()


def test_registered_policy_with_database_down_rejects_transiently(
    settings: Settings, broken_service: RisService
) -> None:
    with dicom_listener(settings, broken_service, dicom_calling_ae_policy="registered") as listener:
        # A-ASSOCIATE-RJ transient, service user, no reason given: try again later
        assert rejection(associate(listener.port)) == (0x02, 0x01, 0x01)


def test_no_patient_data_in_the_log_at_info(
    settings: Settings, service: RisService, caplog: pytest.LogCaptureFixture
) -> None:
    service.schedule_order(new_order(patient={"name": "GEHEIM^GERDA", "patient_id": "PID-SECRET"}), CLERK)
    site = dataclasses.replace(settings, log_level="INFO")
    caplog.set_level(logging.INFO)
    with dicom_listener(site, service) as listener:
        result = find(listener.port, worklist_query(PatientName="GEHEIM*", PatientID="PID-SECRET"))
        assert result.values("PatientName") == ["GEHEIM^GERDA"]
        find(listener.port, worklist_query(PatientName="GEHEIM*", PatientBirthDate="1960-01"))  # refused
    logged = "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.INFO)
    assert "worklist query" in logged
    for secret in ("GEHEIM", "GERDA", "PID-SECRET", "1960"):
        assert secret not in logged
