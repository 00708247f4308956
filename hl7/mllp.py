"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol) on bytes only: no sockets, no decoding.

A message travels as ``START_BLOCK payload END_BLOCK``. `frame` wraps a payload; `MllpDecoder` is fed
whatever a socket read returned and hands back events in arrival order:

- `Frame`: one complete payload (possibly empty: an empty frame is reported, the caller decides);
- `Oversize`: a frame grew beyond ``max_message_bytes``. It carries the first bytes of the payload, enough
  to read the MSH segment and answer AR, after which the caller is expected to close the connection. The
  decoder itself stays usable: it skips the rest of that frame.

Bytes outside a frame (before a start block, between frames, a stray end block) are discarded and counted
in `MllpDecoder.garbage_bytes`, as is a partial frame cut short by a new start block.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
# MSH is the first segment and rarely longer than a few hundred bytes; 4 KiB leaves ample room.
DEFAULT_HEADER_PREFIX_BYTES = 4096

_END_BLOCK_FIRST_BYTE = END_BLOCK[0]


def frame(payload: bytes) -> bytes:
    """Wrap one message in MLLP start and end blocks."""
    return START_BLOCK + payload + END_BLOCK


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete message payload, without the framing bytes."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame that exceeded the size cap; ``prefix`` holds its first bytes (the MSH segment)."""

    prefix: bytes


MllpEvent = Frame | Oversize


class _State(enum.Enum):
    BETWEEN_FRAMES = enum.auto()
    IN_FRAME = enum.auto()
    SKIPPING_OVERSIZE = enum.auto()


class MllpDecoder:
    """Incremental MLLP decoder: ``feed(data)`` returns the events completed by ``data``, in order.

    Searches use ``bytes.find`` on each read and never rescan bytes already examined; only the payload of
    a frame that spans several reads is buffered, so a large frame arriving in small pieces costs linear
    time and memory is bounded by ``max_message_bytes``.
    """

    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        header_prefix_bytes: int = DEFAULT_HEADER_PREFIX_BYTES,
    ) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        if header_prefix_bytes < 1:
            raise ValueError("header_prefix_bytes must be at least 1")
        self.max_message_bytes = max_message_bytes
        self.header_prefix_bytes = header_prefix_bytes
        self.garbage_bytes = 0
        """Bytes discarded outside any frame so far, including partial frames cut short by a start block."""
        self._state = _State.BETWEEN_FRAMES
        # IN_FRAME: the payload received in earlier reads (the start block is not kept).
        # SKIPPING_OVERSIZE: empty, or a single 0x1C from the previous read that may begin the end block.
        self._buffer = bytearray()

    @property
    def has_partial_frame(self) -> bool:
        """True while a frame has started and its end block has not arrived (the read deadline applies)."""
        return self._state is not _State.BETWEEN_FRAMES

    def feed(self, data: bytes) -> list[MllpEvent]:
        """Consume ``data`` and return the events it completes, in order (often none or one)."""
        events: list[MllpEvent] = []
        position = 0
        while position < len(data):
            if self._state is _State.BETWEEN_FRAMES:
                position = self._find_start(data, position)
            elif self._state is _State.IN_FRAME:
                position = self._receive(data, position, events)
            else:
                position = self._skip_oversize(data, position)
        return events

    def _find_start(self, data: bytes, position: int) -> int:
        start = data.find(START_BLOCK, position)
        if start < 0:
            self.garbage_bytes += len(data) - position
            return len(data)
        self.garbage_bytes += start - position
        self._begin_frame()
        return start + 1

    def _begin_frame(self) -> None:
        self._state = _State.IN_FRAME
        self._buffer.clear()

    def _end_frame(self, next_state: _State) -> None:
        self._state = next_state
        self._buffer.clear()

    def _receive(self, data: bytes, position: int, events: list[MllpEvent]) -> int:
        """Continue the open frame with ``data[position:]``; return the position after what was used."""
        buffer = self._buffer
        if buffer and buffer[-1] == _END_BLOCK_FIRST_BYTE and data[position] == END_BLOCK[1]:
            # The end block was split across two reads.
            del buffer[-1]
            self._complete(b"", events)
            return position + 1
        end = data.find(END_BLOCK, position)
        restart = data.find(START_BLOCK, position, end if end >= 0 else len(data))
        if restart >= 0:
            # A new start block before any end block: the sender gave up on the partial frame.
            self.garbage_bytes += 1 + len(buffer) + restart - position
            self._begin_frame()
            return restart + 1
        if end >= 0:
            self._complete(data[position:end], events)
            return end + len(END_BLOCK)
        # No end block yet. A trailing 0x1C may be the first half of one, so it does not count as payload.
        received = len(buffer) + len(data) - position
        if data[-1] == _END_BLOCK_FIRST_BYTE:
            received -= 1
        if received > self.max_message_bytes:
            events.append(Oversize(self._prefix(data[position : position + self.header_prefix_bytes])))
            self._end_frame(_State.SKIPPING_OVERSIZE)
            return position  # the skipping state drops the rest of this read, keeping a trailing 0x1C
        buffer += data[position:]
        return len(data)

    def _complete(self, tail: bytes, events: list[MllpEvent]) -> None:
        """Emit the open frame, whose payload is the buffer followed by ``tail``."""
        if len(self._buffer) + len(tail) > self.max_message_bytes:
            events.append(Oversize(self._prefix(tail[: self.header_prefix_bytes])))
        else:
            events.append(Frame(bytes(self._buffer) + tail if self._buffer else tail))
        self._end_frame(_State.BETWEEN_FRAMES)

    def _prefix(self, head_of_tail: bytes) -> bytes:
        """The first ``header_prefix_bytes`` of the open frame (buffer, then ``head_of_tail``)."""
        return (bytes(self._buffer[: self.header_prefix_bytes]) + head_of_tail)[: self.header_prefix_bytes]

    def _skip_oversize(self, data: bytes, position: int) -> int:
        """Drop the tail of an oversize frame up to its end block (or a new start block)."""
        if self._buffer:
            # A 0x1C kept from the previous read: does this read complete the end block?
            self._buffer.clear()
            if data[position] == END_BLOCK[1]:
                self._state = _State.BETWEEN_FRAMES
                return position + 1
        end = data.find(END_BLOCK, position)
        start = data.find(START_BLOCK, position, end if end >= 0 else len(data))
        if start >= 0:
            self._begin_frame()
            return start + 1
        if end >= 0:
            self._state = _State.BETWEEN_FRAMES
            return end + len(END_BLOCK)
        if data[-1] == _END_BLOCK_FIRST_BYTE:
            self._buffer.append(_END_BLOCK_FIRST_BYTE)
        return len(data)
