"""The MLLP listener over real sockets: framing edge cases, limits, ordering, replays, TLS, and the
client talking to it (and to peers that misbehave)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hl7.client import Ack, AckMismatch, MllpClient, MllpConnectionError, MllpTimeout, send_message
from hl7.intake import Intake
from hl7.mapping import OrderMapping
from hl7.mllp import frame
from hl7.server import MllpServer, ServerLimits
from ris.services import RisService
from tests.support.hl7_messages import chunks, err_lines, framed, msa, orm, read_frames
from tests.support.processes import wait_until

LIMITS = ServerLimits(max_message_bytes=16 * 1024, read_deadline=1.0, idle_timeout=30.0, max_connections=4)

StartServer = Callable[..., MllpServer]


@pytest.fixture
def start_server(service: RisService) -> Iterator[StartServer]:
    servers: list[MllpServer] = []

    def start(limits: ServerLimits = LIMITS, ssl_context: ssl.SSLContext | None = None) -> MllpServer:
        intake = Intake(service, OrderMapping(), default_charset="UNICODE UTF-8")
        server = MllpServer(intake, host="127.0.0.1", port=0, limits=limits, ssl_context=ssl_context)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: StartServer) -> MllpServer:
    return start_server()


def connect(server: MllpServer) -> socket.socket:
    connection = socket.create_connection(server.address, timeout=30)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def closed_by_peer(connection: socket.socket, within: float) -> bool:
    """True when the peer closes the connection (EOF or reset) within ``within`` seconds."""
    connection.settimeout(within)
    try:
        while connection.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def test_a_frame_split_across_many_reads(server: MllpServer) -> None:
    message = orm(control_id="SPLIT1")
    with connect(server) as connection:
        for piece in chunks(framed(message), 7):
            connection.sendall(piece)
            time.sleep(0.001)  # let each piece travel as a read of its own
        (ack,) = read_frames(connection, 1)
    assert msa(ack)[:2] == ["AA", "SPLIT1"]


def test_two_messages_in_one_packet_and_garbage_around_them(server: MllpServer) -> None:
    stream = b"noise\r\n" + framed(orm(control_id="TWO1")) + b"\x1c\rmore noise" + framed(orm(control_id="TWO2"))
    with connect(server) as connection:
        connection.sendall(stream)
        acks = read_frames(connection, 2)
    assert [msa(ack)[:2] for ack in acks] == [["AA", "TWO1"], ["AA", "TWO2"]]


def test_an_oversize_message_gets_ar_and_the_connection_is_closed(server: MllpServer, service: RisService) -> None:
    huge = orm(control_id="HUGE1", extra=("NTE|1||" + "x" * LIMITS.max_message_bytes,))
    with connect(server) as connection:
        connection.sendall(framed(huge))
        (ack,) = read_frames(connection, 1)
        assert closed_by_peer(connection, within=5)
    assert msa(ack)[:2] == ["AR", "HUGE1"]
    assert "larger than 16384 bytes" in err_lines(ack)[0]
    assert service.export_items() == []


def test_a_slow_sender_hits_the_read_deadline(server: MllpServer, service: RisService) -> None:
    data = framed(orm(control_id="SLOW1"))
    with connect(server) as connection:
        connection.sendall(data[: len(data) // 2])
        started = time.monotonic()
        assert closed_by_peer(connection, within=10)
        waited = time.monotonic() - started
    assert LIMITS.read_deadline * 0.9 <= waited < LIMITS.read_deadline + 5
    assert service.message_journal() == []


def test_a_trickling_sender_is_cut_off_even_though_bytes_keep_coming(server: MllpServer) -> None:
    data = framed(orm(control_id="TRICKLE1"))
    with connect(server) as connection:
        started = time.monotonic()
        try:
            for piece in chunks(data, 16):
                connection.sendall(piece)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_peer(connection, within=10)
        assert time.monotonic() - started < LIMITS.read_deadline + 5


def test_an_idle_connection_is_closed(start_server: StartServer) -> None:
    server = start_server(ServerLimits(idle_timeout=0.5))
    with connect(server) as connection:
        connection.sendall(framed(orm(control_id="IDLE1")))
        (ack,) = read_frames(connection, 1)
        assert msa(ack)[0] == "AA"
        assert closed_by_peer(connection, within=10)


def test_connections_beyond_the_cap_are_closed_at_once(server: MllpServer) -> None:
    open_connections = [connect(server) for _ in range(LIMITS.max_connections)]
    try:
        for number, connection in enumerate(open_connections):
            connection.sendall(framed(orm(control_id=f"CAP{number}")))
            assert msa(read_frames(connection, 1)[0])[0] == "AA"
        with connect(server) as extra:
            assert closed_by_peer(extra, within=5)
        # Once one closes (and the server has seen it go), a new connection is served again.
        open_connections.pop().close()
        message = orm(control_id="CAP-AFTER")

        def try_send() -> Ack | None:
            try:
                return send_message(*server.address, message, timeout=30)
            except MllpConnectionError:
                return None

        assert wait_until(try_send, what="a free connection slot").code == "AA"
    finally:
        for connection in open_connections:
            connection.close()


def test_a_thousand_messages_on_one_connection_are_answered_in_order(server: MllpServer, service: RisService) -> None:
    messages = [orm(control_id=f"BURST{number:04d}") for number in range(1000)]
    with connect(server) as connection:
        sender = threading.Thread(target=connection.sendall, args=(framed(*messages),))
        sender.start()
        acks = read_frames(connection, len(messages), timeout=120)
        sender.join()
    assert [msa(ack)[:2] for ack in acks] == [["AA", f"BURST{number:04d}"] for number in range(1000)]
    assert len(service.message_journal(limit=2000)) == 1000
    assert len(service.export_items()) == 1000


def test_connections_are_served_in_parallel_each_in_order(server: MllpServer) -> None:
    results: dict[int, list[str]] = {}

    def client(number: int) -> None:
        with MllpClient(*server.address, timeout=60) as mllp:
            results[number] = [mllp.send(orm(control_id=f"PAR{number}-{index:02d}")).control_id for index in range(20)]

    threads = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {number: [f"PAR{number}-{index:02d}" for index in range(20)] for number in range(4)}


def test_a_replay_gets_the_same_ack_and_is_stored_once(server: MllpServer, service: RisService) -> None:
    message = orm(control_id="AGAIN1", accession="AGAIN1")
    with MllpClient(*server.address) as client:
        first = client.send(message)
        second = client.send(message)
    third = send_message(*server.address, message)
    assert first.code == "AA"
    assert first.raw == second.raw == third.raw
    assert [entry.control_id for entry in service.message_journal()] == ["AGAIN1"]
    assert len(service.export_items()) == 1


def test_malformed_messages_are_answered_and_change_nothing(server: MllpServer, service: RisService) -> None:
    with MllpClient(*server.address) as client:
        bad = client.send(orm(control_id="MAL1", modality="??"))
        unsupported = client.send(orm(control_id="MAL2").replace("ORM^O01^ORM_O01", "ORU^R01"))
    assert (bad.code, unsupported.code) == ("AE", "AR")
    assert bad.errors[0].startswith("OBR^1^24: 102 Data type error: OBR-24 (Diagnostic Serv Sect ID)")
    with connect(server) as connection:
        connection.sendall(frame(b"GET / HTTP/1.1\r\n\r\n"))
        (ack,) = read_frames(connection, 1)
    assert msa(ack)[0] == "AR"
    assert service.export_items() == []


def test_stop_closes_idle_connections_promptly(start_server: StartServer) -> None:
    server = start_server()
    with connect(server) as connection:
        connection.sendall(framed(orm(control_id="STOP1")))
        read_frames(connection, 1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        assert closed_by_peer(connection, within=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_mllp_over_tls(start_server: StartServer, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = start_server(ssl_context=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    with MllpClient(*server.address, ssl_context=client_context) as client:
        assert client.send(orm(control_id="TLS1")).code == "AA"
        assert client.send(orm(control_id="TLS2")).code == "AA"
    # A plain-TCP client gets no ACK from the TLS port.
    with pytest.raises(MllpConnectionError):
        send_message(*server.address, orm(control_id="PLAIN1"), timeout=5)


# --- the client against peers that misbehave ---------------------------------------------------


def serve_once(behaviour: Callable[[socket.socket], None]) -> tuple[str, int]:
    """A one-connection peer on a free port that treats the connection as ``behaviour`` says."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                behaviour(connection)

    threading.Thread(target=run, daemon=True).start()
    host, port = listener.getsockname()[:2]
    return host, port


def read_and_stay_silent(connection: socket.socket) -> None:
    connection.recv(65536)
    time.sleep(2)


def test_client_times_out_when_no_ack_comes() -> None:
    address = serve_once(read_and_stay_silent)
    with pytest.raises(MllpTimeout, match="no ACK for 'T1'"):
        send_message(*address, orm(control_id="T1"), timeout=0.5)


def test_client_reports_a_peer_that_closes_without_ack() -> None:
    address = serve_once(lambda connection: connection.recv(65536) and None)
    with pytest.raises(MllpConnectionError, match="closed the connection without an ACK"):
        send_message(*address, orm(control_id="C1"), timeout=5)


def test_client_rejects_an_ack_for_another_message() -> None:
    ack = b"MSH|^~\\&|RIS|RAD|HIS|KH|20261123||ACK^O01^ACK|X1|P|2.5.1\rMSA|AA|SOMETHING-ELSE\r"

    def answer_wrongly(connection: socket.socket) -> None:
        connection.recv(65536)
        connection.sendall(frame(ack))

    address = serve_once(answer_wrongly)
    with MllpClient(*address, timeout=5) as client:
        with pytest.raises(AckMismatch, match="'SOMETHING-ELSE', not the message sent \\('M1'\\)"):
            client.send(orm(control_id="M1"))
        assert not client.connected


def test_client_reports_a_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MllpConnectionError, match="cannot connect"):
        send_message("127.0.0.1", port, orm(), timeout=5)
