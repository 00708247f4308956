"""A small MLLP client: send an HL7 message, wait for its ACK.

Used by ``ris hl7 send`` (site tests against any listener) and by anything of ours that sends HL7
to the HIS (e.g. status messages from the outbox)::

    from hl7.client import MllpClient, MllpError

    with MllpClient("his.example.org", 2575, timeout=10) as client:
        ack = client.send(message_text)          # str (encoded per its MSH-18) or bytes
        if not ack.accepted:
            raise RuntimeError(f"HIS answered {ack.code}: {ack.text} {ack.errors}")

One client is one connection, used by one thread at a time; messages are sent one after the other
(send, wait for the ACK, then the next), as MLLP requires. The connection opens on the first `send`
(or `connect`) and stays open; after any `MllpError` it is closed, and the next `send` opens a new
one. `send_message` does connect + send + close in one call.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from types import TracebackType

from hl7 import er7
from hl7.charsets import HL7_CHARSET_CODECS, CharsetError, canonical_charset, declared_charset, decode_message
from hl7.mllp import DEFAULT_MAX_MESSAGE_BYTES, Frame, MllpDecoder, frame

DEFAULT_TIMEOUT_SECONDS = 30.0
_READ_CHUNK = 64 * 1024


class MllpError(Exception):
    """The message may not have been delivered: no (valid) ACK came back. The connection is closed."""


class MllpTimeout(MllpError):
    """Connecting or waiting for the ACK took longer than the timeout."""


class MllpConnectionError(MllpError):
    """The connection could not be opened, or broke (refused, reset, closed by the peer)."""


class AckMismatch(MllpError):
    """The reply is not an ACK for the message sent (MSA missing, or MSA-2 is not its MSH-10)."""


@dataclass(frozen=True)
class Ack:
    """An acknowledgement as received."""

    code: str
    """MSA-1: AA/AE/AR (original mode) or CA/CE/CR (enhanced mode)."""
    control_id: str
    """MSA-2: the MSH-10 of the message it answers."""
    text: str
    """MSA-3, the text message ("" when absent)."""
    errors: tuple[str, ...]
    """One line per ERR segment: location, code and text, e.g. "OBR^1^24: 102 Data type error: ..."."""
    raw: bytes
    """The ACK payload as received (no framing)."""

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @classmethod
    def parse(cls, payload: bytes) -> Ack:
        """Read an ACK payload; raises `AckMismatch` when it has no MSA segment."""
        try:
            text = decode_message(payload, "UNICODE UTF-8").text
        except CharsetError:
            text = payload.decode("latin-1")
        try:
            message = er7.parse(text)
        except er7.Er7Error as error:
            raise AckMismatch(f"the reply is not an HL7 message: {error}") from None
        msa = message.segment("MSA")
        if msa is None:
            raise AckMismatch("the reply has no MSA segment")
        return cls(
            code=msa.get(1),
            control_id=msa.get(2),
            text=msa.get(3),
            errors=tuple(_describe_err(err) for err in message.segments("ERR")),
            raw=payload,
        )


def _describe_err(err: er7.Segment) -> str:
    """One ERR segment as a line: v2.5 layout (ERR-2, ERR-3, ERR-8), else the v2.3 ERR-1."""
    location = err.field(2).replace(err.encoding.component, "^")
    code = err.components(3)
    if code:
        parts = [location, " ".join(code[:2]), err.get(8)]
        return ": ".join(part for part in parts if part)
    return err.get(1) + ": " + err.get(1, 1, 4, 1) + " " + err.get(1, 1, 4, 2)


def encode_message(message: str) -> bytes:
    """``message`` as bytes in the character set its MSH-18 names (UTF-8 when absent)."""
    declared = declared_charset(message.encode("latin-1", errors="replace")).strip()
    codec = HL7_CHARSET_CODECS[canonical_charset(declared)] if declared else "utf-8"
    return message.encode(codec)


class MllpClient:
    """One MLLP connection to ``host``:``port`` (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        """Seconds for connecting, and for each ACK to arrive completely."""
        self.ssl_context = ssl_context
        self.max_message_bytes = max_message_bytes
        self._socket: socket.socket | None = None
        self._decoder = MllpDecoder(max_message_bytes)
        self._pending: list[bytes] = []

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def connect(self) -> None:
        """Open the connection now (`send` opens it when needed)."""
        if self._socket is not None:
            return
        try:
            connection = socket.create_connection((self.host, self.port), timeout=self.timeout)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                connection = self.ssl_context.wrap_socket(connection, server_hostname=self.host)
        except TimeoutError:
            raise MllpTimeout(f"no connection to {self.host}:{self.port} within {self.timeout}s") from None
        except (OSError, ssl.SSLError) as error:
            raise MllpConnectionError(f"cannot connect to {self.host}:{self.port}: {error}") from None
        self._socket = connection
        self._decoder = MllpDecoder(self.max_message_bytes)
        self._pending = []

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def send(self, message: str | bytes) -> Ack:
        """Send one message and return its ACK (checked: MSA-2 must be the message's MSH-10).

        A ``str`` is encoded in the character set its MSH-18 names; ``bytes`` are sent as they are.
        Raises `MllpError` (and closes the connection) when no valid ACK arrives in time."""
        payload = encode_message(message) if isinstance(message, str) else message
        control_id = er7.read_header(payload.decode("latin-1")).control_id
        self.connect()
        try:
            assert self._socket is not None
            self._socket.settimeout(self.timeout)
            self._socket.sendall(frame(payload))
            ack = Ack.parse(self._receive())
        except MllpError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise MllpTimeout(
                f"no ACK for {control_id!r} from {self.host}:{self.port} within {self.timeout}s"
            ) from None
        except (OSError, ssl.SSLError) as error:
            self.close()
            raise MllpConnectionError(f"connection to {self.host}:{self.port} broke: {error}") from None
        if ack.control_id != control_id:
            self.close()
            raise AckMismatch(f"ACK answers {ack.control_id!r}, not the message sent ({control_id!r})")
        return ack

    def _receive(self) -> bytes:
        """The next frame from the peer, waiting at most ``timeout`` seconds in all."""
        assert self._socket is not None
        deadline = time.monotonic() + self.timeout
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._socket.settimeout(remaining)
            data = self._socket.recv(_READ_CHUNK)
            if not data:
                raise MllpConnectionError(f"{self.host}:{self.port} closed the connection without an ACK")
            for event in self._decoder.feed(data):
                if not isinstance(event, Frame):
                    raise MllpConnectionError(f"the reply is larger than {self.max_message_bytes} bytes")
                self._pending.append(event.payload)
        return self._pending.pop(0)


def send_message(
    host: str,
    port: int,
    message: str | bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> Ack:
    """Open a connection, send ``message``, return its ACK, close."""
    with MllpClient(host, port, timeout=timeout, ssl_context=ssl_context) as client:
        return client.send(message)
