"""Real DICOM peers for protocol tests: pynetdicom SCPs that record what they receive (an IAN
destination, an MPPS forward destination) and answer with a status the test chooses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event

# pynetdicom 3.0.4 leaks the socket of a refused connection (transport.connect calls shutdown() on
# the unconnected socket, which raises, so close() is skipped); the garbage collector closes it
# with a ResourceWarning. For tests that call a destination that is down.
REFUSED_CONNECTION_LEAKS_A_SOCKET = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

IAN_SOP_CLASS = "1.2.840.10008.5.1.4.33"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"


@dataclass(frozen=True)
class Received:
    operation: str  # N-CREATE, N-SET
    sop_class_uid: str
    sop_instance_uid: str
    calling_ae: str
    dataset: Dataset


@dataclass
class RecordingScp:
    """Answers N-CREATE and N-SET of ``sop_class`` with ``status`` and keeps every request. A real
    receiver refuses to create an instance it already accepted (0111); ``refuse_duplicates`` does
    the same."""

    sop_class: str
    ae_title: str = "RECEIVER"
    status: int = 0x0000
    refuse_duplicates: bool = True
    received: list[Received] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # instances it accepted
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Cleared: requests are recorded (and instances created) but the answer waits until it is set.
    answering: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.answering.set()

    def _record(self, event: Event, operation: str, dataset: Dataset) -> tuple[int, Dataset | None]:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID or request.RequestedSOPInstanceUID)
        with config.disable_value_validation():
            dataset.decode()
        with self.lock:
            self.received.append(
                Received(operation, str(self.sop_class), uid, str(event.assoc.requestor.ae_title), dataset)
            )
            if operation == "N-CREATE" and uid in self.created and self.refuse_duplicates:
                return 0x0111, None
            if operation == "N-CREATE" and self.status == 0:
                self.created.add(uid)
        self.answering.wait(60)
        return self.status, (Dataset() if self.status == 0 else None)

    def _n_create(self, event: Event) -> tuple[int, Dataset | None]:
        return self._record(event, "N-CREATE", event.attribute_list)

    def _n_set(self, event: Event) -> tuple[int, Dataset | None]:
        return self._record(event, "N-SET", event.modification_list)

    def of(self, operation: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if operation is None or r.operation == operation]


@contextmanager
def serving(scp: RecordingScp, port: int = 0) -> Iterator[RecordingScp]:
    """Run ``scp`` on 127.0.0.1 (port 0: an ephemeral one, written to ``scp.port``)."""
    ae = AE(ae_title=scp.ae_title)
    ae.add_supported_context(scp.sop_class)
    handlers: list[Any] = [(evt.EVT_N_CREATE, scp._n_create), (evt.EVT_N_SET, scp._n_set)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    scp.port = server.server_address[1]
    try:
        yield scp
    finally:
        server.shutdown()
