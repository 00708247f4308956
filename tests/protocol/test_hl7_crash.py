"""The listener process killed (SIGKILL) in the middle of a burst: every message that got an AA is
stored, and resending everything afterwards neither loses nor duplicates an order."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading

import pytest

from hl7.client import MllpClient, MllpError
from ris.domain.model import OrderKey
from ris.services import RisService
from ris.settings import Settings
from tests.support.hl7_messages import orm
from tests.support.processes import free_port, ris_env, ris_process, stop_process, wait_until

SENDERS = 4
KILL_AFTER_ACKS = 40


def listener_env(settings: Settings) -> tuple[dict[str, str], int]:
    """The environment of a ``ris listen`` on a free HL7 port (and free ports for the others)."""
    port = free_port()
    env = ris_env(
        settings,
        RIS_HL7_PORT=str(port),
        RIS_HL7_BIND="127.0.0.1",
        RIS_DICOM_PORT=str(free_port()),
        RIS_DICOM_BIND="127.0.0.1",
        RIS_LOG_LEVEL="WARNING",  # the output goes to a pipe nobody reads during the burst
    )
    return env, port


def wait_listening(process: subprocess.Popen[str], port: int) -> None:
    def listening() -> bool:
        assert process.poll() is None, "the listener process exited"
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, what="the HL7 listener")


@pytest.mark.slow
def test_sigkill_during_a_burst_loses_no_acked_message(settings: Settings, service: RisService) -> None:
    sent: dict[str, str] = {}  # control id -> message, in the order they went out
    acked: dict[str, bytes] = {}  # control id -> ACK bytes received with AA
    lock = threading.Lock()
    env, port = listener_env(settings)

    def burst(sender: int) -> None:
        with MllpClient("127.0.0.1", port, timeout=30) as client:
            for number in range(10_000):
                control_id = f"KILL{sender}-{number:05d}"
                message = orm(control_id=control_id, accession=f"K{sender}{number:06d}")
                with lock:
                    sent[control_id] = message
                try:
                    ack = client.send(message)
                except MllpError:
                    return  # the listener is gone
                assert ack.code == "AA", ack
                with lock:
                    acked[control_id] = ack.raw

    with ris_process(env, "listen") as first:
        wait_listening(first, port)
        threads = [threading.Thread(target=burst, args=(sender,)) for sender in range(SENDERS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acked) >= KILL_AFTER_ACKS, timeout=120, what=f"{KILL_AFTER_ACKS} ACKs")
        stop_process(first, signal.SIGKILL)
        for thread in threads:
            thread.join(60)
    assert first.returncode == -signal.SIGKILL
    assert len(sent) > len(acked) >= KILL_AFTER_ACKS

    # Every AA is in the journal with the very ACK that was sent, and its order is on the worklist.
    journal = {entry.control_id: entry for entry in service.message_journal(limit=100_000)}
    assert set(acked) <= set(journal)
    for control_id, ack in acked.items():
        assert (journal[control_id].ack_code, journal[control_id].ack) == ("AA", ack)
    items = {item["AccessionNumber"] for item in service.export_items()}
    assert {f"K{cid[4]}{int(cid.split('-')[1]):06d}" for cid in acked} <= items
    # Nothing is half stored: each journaled message has its order and each order its message.
    assert {entry.ack_code for entry in journal.values()} == {"AA"}
    assert len(items) == len(journal)

    # The HIS resends everything it sent: ACKed ones get their stored ACK, the rest are applied now.
    env, port = listener_env(settings)
    with ris_process(env, "listen") as second:
        wait_listening(second, port)
        with MllpClient("127.0.0.1", port, timeout=30) as client:
            for control_id, message in sent.items():
                ack = client.send(message)
                assert ack.code == "AA"
                if control_id in acked:
                    assert ack.raw == acked[control_id]
        stop_process(second)
    assert len(service.message_journal(limit=100_000)) == len(sent)
    assert len(service.export_items()) == len(sent)
    assert service.find_order(OrderKey(accession_number="K0000000")) is not None
