"""A HIS on an ephemeral port for tests: an MLLP listener that keeps every message and answers
each with an original-mode ACK whose code the test chooses."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hl7 import er7
from hl7.charsets import decode_message
from hl7.mllp import Frame, MllpDecoder, frame


@dataclass
class FakeHis:
    ack_code: str = "AA"
    messages: list[str] = field(default_factory=list)  # decoded per MSH-18
    raw: list[bytes] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _serve(self, connection: socket.socket) -> None:
        decoder = MllpDecoder()
        with connection:
            while data := connection.recv(65536):
                for event in decoder.feed(data):
                    if isinstance(event, Frame):
                        connection.sendall(frame(self._answer(event.payload).encode("utf-8")))

    def _answer(self, payload: bytes) -> str:
        text = decode_message(payload, "UNICODE UTF-8").text
        with self.lock:
            self.raw.append(payload)
            self.messages.append(text)
            code = self.ack_code
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        return er7.build_ack(er7.parse(text).msh, code, control_id=f"ACK{len(self.messages)}", timestamp=stamp)

    def received(self) -> list[er7.Message]:
        with self.lock:
            return [er7.parse(text) for text in self.messages]


@contextmanager
def his_listening(his: FakeHis, port: int = 0) -> Iterator[FakeHis]:
    server = socket.create_server(("127.0.0.1", port))
    his.port = server.getsockname()[1]
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _address = server.accept()
            except OSError:
                return
            threading.Thread(target=his._serve, args=(connection,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield his
    finally:
        stopping.set()
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        server.close()
        acceptor.join(5)
