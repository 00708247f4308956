"""The MLLP listener: one thread per connection, messages answered strictly in arrival order.

Each connection thread reads with a buffer (`hl7.mllp.MllpDecoder`), hands every complete frame to
the handler and writes its ACK before it looks at the next frame, so the ACKs on a connection come
in the order of the messages and a slow database commit on one connection never holds up another.

Limits (settings ``hl7_*``): a frame larger than ``max_message_bytes`` is answered AR when its MSH
can be read and the connection is closed; a frame that has started must be complete within
``read_deadline`` seconds; a connection silent for ``idle_timeout`` seconds between messages is
closed; beyond ``max_connections`` a new connection is closed at once. With an SSL context every
connection is TLS.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from hl7.mllp import DEFAULT_MAX_MESSAGE_BYTES, Frame, MllpDecoder, frame

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
JOIN_TIMEOUT_SECONDS = 10.0


class MessageHandler(Protocol):
    """Answers messages; `hl7.intake.Intake` in the product."""

    def handle(self, payload: bytes, peer: str = "") -> bytes:
        """The reply to one message payload (no framing). Must not raise."""
        ...

    def reject_oversize(self, prefix: bytes, limit: int, peer: str = "") -> bytes | None:
        """The reply to a message larger than ``limit`` of which ``prefix`` arrived, or None."""
        ...


@dataclass(frozen=True)
class ServerLimits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    read_deadline: float = 30.0
    idle_timeout: float = 3600.0
    max_connections: int = 32


class _Closed(Exception):
    """The connection is done (peer closed, timeout, oversize, shutdown)."""


class MllpServer:
    """An MLLP listener implementing the ``Listener`` protocol of ``ris.bootstrap``."""

    name = "hl7"

    def __init__(
        self,
        handler: MessageHandler,
        *,
        host: str = "0.0.0.0",
        port: int = 2575,
        limits: ServerLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.ssl_context = ssl_context
        self._listener: socket.socket | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None  # wakes the accept loop on stop
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (port 0 picks a free port)."""
        if self._listener is None:
            raise RuntimeError("the server is not started")
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self._listener = socket.create_server((self.host, self.port), backlog=64)
        self._wakeup = socket.socketpair()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="hl7-accept", daemon=True)
        self._accept_thread.start()
        host, port = self.address
        log.info("hl7 listening host=%s port=%d tls=%s", host, port, self.ssl_context is not None)

    def is_alive(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive() and not self._stopping.is_set()

    def stop(self) -> None:
        """Stop accepting; let every connection finish the message in hand (its ACK is still sent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._wakeup is not None:
            self._wakeup[1].send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT_SECONDS)
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            # Ends a blocked read; the write side stays open for an ACK in progress. The plain socket
            # method: SSLSocket.shutdown would also drop the TLS session under a thread still writing.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RD)
        for thread in connections.values():
            thread.join(JOIN_TIMEOUT_SECONDS)
        if self._listener is not None:
            self._listener.close()
        for end in self._wakeup or ():
            end.close()

    # --- accepting ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wakeup is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener and not self._stopping.is_set():
                        self._accept()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            connection, address = self._listener.accept()
        except OSError as error:
            log.warning("hl7 accept failed: %s", error)
            return
        peer = f"{address[0]}:{address[1]}"
        with self._lock:
            if len(self._connections) >= self.limits.max_connections:
                log.warning("hl7 connection refused peer=%s: %d connections open", peer, len(self._connections))
                connection.close()
                return
            thread = threading.Thread(target=self._serve, args=(connection, peer), name=f"hl7 {peer}", daemon=True)
            self._connections[connection] = thread
        thread.start()

    # --- one connection -------------------------------------------------------------------------

    def _serve(self, connection: socket.socket, peer: str) -> None:
        log.info("hl7 connection opened peer=%s", peer)
        reason = "closed by peer"
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                tls = self._handshake(connection)
                with self._lock:
                    self._connections[tls] = self._connections.pop(connection)
                connection = tls
            self._converse(connection, peer)
        except _Closed as closed:
            reason = str(closed)
        except (OSError, ssl.SSLError) as error:
            reason = f"connection error: {error}"
        finally:
            with self._lock:
                self._connections.pop(connection, None)
            connection.close()
            log.info("hl7 connection closed peer=%s reason=%s", peer, reason)

    def _handshake(self, connection: socket.socket) -> ssl.SSLSocket:
        assert self.ssl_context is not None
        connection.settimeout(self.limits.read_deadline)
        tls = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (OSError, ssl.SSLError) as error:
            tls.close()
            raise _Closed(f"TLS handshake failed: {error}") from None
        return tls

    def _converse(self, connection: socket.socket, peer: str) -> None:
        limits = self.limits
        decoder = MllpDecoder(limits.max_message_bytes)
        frame_started: float | None = None
        while True:
            if decoder.has_partial_frame:
                assert frame_started is not None
                remaining = frame_started + limits.read_deadline - time.monotonic()
                if remaining <= 0:
                    raise _Closed(f"message not complete within {limits.read_deadline}s (hl7_read_deadline)")
                connection.settimeout(remaining)
            else:
                connection.settimeout(limits.idle_timeout)
            try:
                data = connection.recv(READ_CHUNK)
            except TimeoutError:
                if decoder.has_partial_frame:
                    raise _Closed(f"message not complete within {limits.read_deadline}s (hl7_read_deadline)") from None
                raise _Closed(f"idle for {limits.idle_timeout}s (hl7_idle_timeout)") from None
            if not data:
                raise _Closed("closed by peer" if not self._stopping.is_set() else "listener stopping")
            was_partial = decoder.has_partial_frame
            events = decoder.feed(data)
            for event in events:
                if isinstance(event, Frame):
                    if event.payload:
                        self._send(connection, self.handler.handle(event.payload, peer))
                    else:
                        log.debug("hl7 empty frame ignored peer=%s", peer)
                    continue
                reply = self.handler.reject_oversize(event.prefix, limits.max_message_bytes, peer)
                if reply is not None:
                    self._send(connection, reply)
                raise _Closed(f"message larger than {limits.max_message_bytes} bytes (hl7_max_message_bytes)")
            if decoder.has_partial_frame and (events or not was_partial):
                frame_started = time.monotonic()  # a new frame began in this read

    def _send(self, connection: socket.socket, reply: bytes) -> None:
        connection.settimeout(self.limits.read_deadline)
        connection.sendall(frame(reply))
