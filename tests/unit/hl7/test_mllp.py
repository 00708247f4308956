"""MLLP framing: frames split and merged across reads, garbage, the size cap, broken frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hl7.mllp import END_BLOCK, START_BLOCK, Frame, MllpDecoder, MllpEvent, Oversize, frame

FIRST = b"MSH|^~\\&|HIS|KH|RIS|RAD|20240101120000||ORM^O01|1|P|2.5.1\rPID|1||4711\r"
SECOND = b"MSH|^~\\&|HIS|KH|RIS|RAD|20240101120001||ORM^O01|2|P|2.5.1\rPID|1||4712\r"


def feed_all(decoder: MllpDecoder, *chunks: bytes) -> list[MllpEvent]:
    events: list[MllpEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events


def test_frame_wraps_payload_in_start_and_end_blocks() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\x0d"
    assert (START_BLOCK, END_BLOCK) == (b"\x0b", b"\x1c\x0d")


def test_one_frame_in_one_read() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(frame(FIRST)) == [Frame(FIRST)]
    assert not decoder.has_partial_frame
    assert decoder.garbage_bytes == 0


def test_several_frames_in_one_read_come_out_in_order() -> None:
    decoder = MllpDecoder()
    stream = frame(FIRST) + frame(SECOND) + frame(FIRST)
    assert decoder.feed(stream) == [Frame(FIRST), Frame(SECOND), Frame(FIRST)]


def test_two_frame_stream_split_at_every_byte_offset() -> None:
    stream = frame(FIRST) + frame(SECOND)
    for offset in range(len(stream) + 1):
        decoder = MllpDecoder()
        events = feed_all(decoder, stream[:offset], stream[offset:])
        assert events == [Frame(FIRST), Frame(SECOND)], offset
        assert decoder.garbage_bytes == 0
        assert not decoder.has_partial_frame


def test_frame_fed_one_byte_at_a_time() -> None:
    stream = frame(FIRST) + frame(SECOND)
    decoder = MllpDecoder()
    events = feed_all(decoder, *(stream[i : i + 1] for i in range(len(stream))))
    assert events == [Frame(FIRST), Frame(SECOND)]


def test_has_partial_frame_while_a_frame_is_open() -> None:
    decoder = MllpDecoder()
    assert not decoder.has_partial_frame
    decoder.feed(b"noise")
    assert not decoder.has_partial_frame
    decoder.feed(START_BLOCK + FIRST[:10])
    assert decoder.has_partial_frame
    decoder.feed(FIRST[10:] + END_BLOCK[:1])
    assert decoder.has_partial_frame
    assert decoder.feed(END_BLOCK[1:]) == [Frame(FIRST)]
    assert not decoder.has_partial_frame


def test_garbage_before_between_and_after_frames_is_discarded_and_counted() -> None:
    decoder = MllpDecoder()
    events = decoder.feed(b"\r\nxx" + frame(FIRST) + b"\n" + END_BLOCK + frame(SECOND) + b"tail")
    assert events == [Frame(FIRST), Frame(SECOND)]
    assert decoder.garbage_bytes == 4 + 1 + 2 + 4
    assert not decoder.has_partial_frame


def test_end_block_without_start_is_garbage() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(FIRST + END_BLOCK) == []
    assert decoder.garbage_bytes == len(FIRST) + 2


def test_start_block_inside_a_frame_starts_a_new_frame() -> None:
    decoder = MllpDecoder()
    broken = START_BLOCK + b"MSH|^~\\&|broken"
    events = decoder.feed(broken + frame(FIRST))
    assert events == [Frame(FIRST)]
    assert decoder.garbage_bytes == len(broken)


def test_start_block_inside_a_frame_spanning_reads() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(START_BLOCK + b"part one") == []
    assert decoder.feed(b" part two") == []
    assert decoder.feed(frame(SECOND)) == [Frame(SECOND)]
    assert decoder.garbage_bytes == 1 + len(b"part one part two")


def test_empty_frame_is_reported_as_an_empty_payload() -> None:
    assert MllpDecoder().feed(frame(b"") + frame(FIRST)) == [Frame(b""), Frame(FIRST)]


def test_lone_end_block_byte_inside_payload_belongs_to_the_payload() -> None:
    payload = b"MSH|a\x1cb|c\x1c"
    decoder = MllpDecoder()
    # The second read ends in 0x1C, but the third does not continue it with 0x0D.
    events = feed_all(decoder, START_BLOCK + payload[:6], payload[6:], b"x|d" + END_BLOCK)
    assert events == [Frame(payload + b"x|d")]


def test_message_of_exactly_the_cap_passes() -> None:
    decoder = MllpDecoder(max_message_bytes=len(FIRST))
    assert decoder.feed(frame(FIRST)) == [Frame(FIRST)]


def test_oversize_in_one_read_keeps_the_header_prefix_and_goes_on() -> None:
    decoder = MllpDecoder(max_message_bytes=len(FIRST) - 1, header_prefix_bytes=20)
    events = decoder.feed(frame(FIRST) + frame(FIRST[:30]))
    assert events == [Oversize(FIRST[:20]), Frame(FIRST[:30])]
    assert decoder.garbage_bytes == 0


def test_oversize_detected_before_the_end_block_arrives() -> None:
    big = FIRST + b"OBX|" + b"x" * 10_000 + b"\r"
    decoder = MllpDecoder(max_message_bytes=4096)
    events = feed_all(decoder, START_BLOCK + big[:1000], big[1000:3000])
    assert events == []
    events = decoder.feed(big[3000:5000])
    assert events == [Oversize(big[:4096])]
    # The rest of the oversize frame is skipped, its end block included; the next frame is read.
    assert decoder.has_partial_frame
    assert feed_all(decoder, big[5000:], END_BLOCK[:1], END_BLOCK[1:] + frame(SECOND)) == [Frame(SECOND)]
    assert not decoder.has_partial_frame
    assert decoder.garbage_bytes == 0


def test_oversize_prefix_is_the_whole_prefix_even_when_it_spans_reads() -> None:
    payload = bytes(range(32, 127)) * 10
    decoder = MllpDecoder(max_message_bytes=100, header_prefix_bytes=150)
    events = feed_all(decoder, START_BLOCK + payload[:60], payload[60:90], payload[90:])
    assert events == [Oversize(payload[:150])]


def test_oversize_tail_cut_short_by_a_new_start_block() -> None:
    decoder = MllpDecoder(max_message_bytes=10, header_prefix_bytes=5)
    events = feed_all(decoder, START_BLOCK + b"0123456789AB", b"CDEF" + frame(b"ok"))
    assert events == [Oversize(b"01234"), Frame(b"ok")]


def test_oversize_tail_with_a_lone_end_byte_at_a_read_boundary() -> None:
    decoder = MllpDecoder(max_message_bytes=10, header_prefix_bytes=5)
    events = feed_all(decoder, START_BLOCK + b"0123456789AB\x1c", b"xy\x1c", END_BLOCK[1:] + frame(b"ok"))
    assert events == [Oversize(b"01234"), Frame(b"ok")]


def test_trailing_end_byte_does_not_count_towards_the_cap() -> None:
    decoder = MllpDecoder(max_message_bytes=4)
    assert feed_all(decoder, START_BLOCK + b"abcd\x1c", b"\x0d") == [Frame(b"abcd")]


@pytest.mark.parametrize("arguments", [{"max_message_bytes": 0}, {"header_prefix_bytes": 0}])
def test_limits_must_be_positive(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MllpDecoder(**arguments)


# Payloads never contain a start block or 0x1C; garbage never contains a start block.
payloads = st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")), max_size=6)
garbage = st.binary(max_size=8).map(lambda b: b.replace(b"\x0b", b""))


@settings(database=None, max_examples=500)
@given(
    messages=payloads,
    gaps=st.lists(garbage, min_size=7, max_size=7),
    cuts=st.lists(st.integers(0, 600)),
    cap=st.sampled_from([1024, 20]),
)
def test_any_chunking_of_any_stream_yields_the_same_events(
    messages: list[bytes], gaps: list[bytes], cuts: list[int], cap: int
) -> None:
    stream = b"".join(gap + frame(message) for gap, message in zip(gaps, messages, strict=False)) + gaps[-1]
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    decoder = MllpDecoder(max_message_bytes=cap, header_prefix_bytes=8)
    events = feed_all(decoder, *(stream[a:b] for a, b in itertools.pairwise(points)))
    assert events == [Frame(message) if len(message) <= cap else Oversize(message[:8]) for message in messages]
    assert decoder.garbage_bytes == sum(map(len, gaps[: len(messages)])) + len(gaps[-1])
    assert not decoder.has_partial_frame
