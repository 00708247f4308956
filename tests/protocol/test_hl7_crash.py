"""The listener process killed (SIGKILL) in the middle of a burst: every message that got an AA is
stored, and resending everything afterwards neither loses nor duplicates an order."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hl7.client import MllpClient, MllpError
from ris.domain.model import OrderKey
from ris.services import RisService
from ris.settings import Settings
from tests.support.hl7_messages import orm
from tests.support.processes import free_port, ris_env, wait_until

SENDERS = 4
KILL_AFTER_ACKS = 40


class Listener:
    """``ris listen`` as a child process on a free HL7 port."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        env = ris_env(
            settings,
            RIS_HL7_PORT=str(self.port),
            RIS_HL7_BIND="127.0.0.1",
            RIS_DICOM_PORT=str(free_port()),  # other listeners of the process must not clash either
            RIS_DICOM_BIND="127.0.0.1",
            RIS_LOG_LEVEL="WARNING",
        )
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ris.cli", "listen"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_until(self._listening, what="the HL7 listener")

    def _listening(self) -> bool:
        assert self.process.poll() is None, "the listener process exited"
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
        self.process.wait(30)
        self.log.close()


@pytest.fixture
def listeners(settings: Settings, tmp_path: Path) -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop(signal.SIGKILL)


@pytest.mark.slow
def test_sigkill_during_a_burst_loses_no_acked_message(
    settings: Settings, service: RisService, tmp_path: Path, listeners: list[Listener]
) -> None:
    first = Listener(settings, tmp_path / "listener.log")
    listeners.append(first)
    sent: dict[str, str] = {}  # control id -> message, in the order they went out
    acked: dict[str, bytes] = {}  # control id -> ACK bytes received with AA
    lock = threading.Lock()

    def burst(sender: int) -> None:
        with MllpClient("127.0.0.1", first.port, timeout=30) as client:
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

    threads = [threading.Thread(target=burst, args=(sender,)) for sender in range(SENDERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= KILL_AFTER_ACKS, timeout=120, what=f"{KILL_AFTER_ACKS} ACKs")
    first.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(60)
    assert first.process.returncode == -signal.SIGKILL
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
    second = Listener(settings, tmp_path / "listener.log")
    listeners.append(second)
    with MllpClient("127.0.0.1", second.port, timeout=30) as client:
        for control_id, message in sent.items():
            ack = client.send(message)
            assert ack.code == "AA"
            if control_id in acked:
                assert ack.raw == acked[control_id]
    second.stop()
    assert len(service.message_journal(limit=100_000)) == len(sent)
    assert len(service.export_items()) == len(sent)
    assert service.find_order(OrderKey(accession_number="K0000000")) is not None
