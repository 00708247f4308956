"""MSH-18 (character set, HL7 table 0211): how the raw bytes of a message decode, and what DICOM calls it.

MSH-18 is read from the raw bytes before anything is decoded: the MSH segment is ASCII by rule, so the
field separator (byte 3) and the repetition separator (second byte of MSH-2) can be found without knowing
the character set. Only the first repetition of MSH-18 counts; further repetitions name ISO 2022 code
extensions, which are not supported. Values are matched without regard to case or surrounding blanks.

"UTF-8" and "UNICODE" are accepted as aliases of "UNICODE UTF-8": table 0211's "UNICODE" strictly means
UCS-2, which cannot travel inside MLLP framing, and senders that write it in practice send UTF-8.

Every mapping is a plain dict so it can be checked row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

# HL7 table 0211 value -> Python codec.
HL7_CHARSET_CODECS: dict[str, str] = {
    "ASCII": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}

# Spellings seen in the wild -> the table 0211 value they stand for.
HL7_CHARSET_ALIASES: dict[str, str] = {
    "UTF-8": "UNICODE UTF-8",
    "UNICODE": "UNICODE UTF-8",
}

# HL7 table 0211 value -> DICOM Specific Character Set (0008,0005); "" is the default repertoire.
HL7_TO_DICOM_CHARSET: dict[str, str] = {
    "ASCII": "",
    "8859/1": "ISO_IR 100",
    "8859/2": "ISO_IR 101",
    "8859/3": "ISO_IR 109",
    "8859/4": "ISO_IR 110",
    "8859/5": "ISO_IR 144",
    "8859/6": "ISO_IR 127",
    "8859/7": "ISO_IR 126",
    "8859/8": "ISO_IR 138",
    "8859/9": "ISO_IR 148",
    # Latin-9 has a DICOM term (ISO_IR 203) that few modalities and pydicom 3.0 know; UTF-8 holds every
    # Latin-9 character and is understood everywhere.
    "8859/15": "ISO_IR 192",
    "UNICODE UTF-8": "ISO_IR 192",
}

_MSH18 = 18


class CharsetError(ValueError):
    """The message cannot be turned into text; the reply names MSH-18."""


class UnknownCharsetError(CharsetError):
    """MSH-18 (or the configured default) is not a character set this broker supports."""

    def __init__(self, value: str) -> None:
        super().__init__(f"unsupported character set {value!r} in MSH-18 (HL7 table 0211)")
        self.value = value


class CharsetDecodeError(CharsetError):
    """The bytes are not valid in the character set the message declares."""

    def __init__(self, charset: str, offset: int, reason: str) -> None:
        super().__init__(f"message bytes are not valid {charset} at byte {offset}: {reason}")
        self.charset = charset
        self.offset = offset


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """A message as text, with its character set in HL7 (table 0211) and DICOM terms."""

    text: str
    hl7_charset: str
    """Canonical table 0211 value, e.g. "UNICODE UTF-8"; the default when MSH-18 is empty."""
    dicom_charset: str
    """DICOM Specific Character Set for data taken from this message, e.g. "ISO_IR 192"; "" for ASCII."""
    codec: str
    """Python codec of the message, to encode the reply in the same character set."""


def canonical_charset(value: str) -> str:
    """The table 0211 value for ``value`` (aliases and case resolved); raises `UnknownCharsetError`."""
    key = value.strip().upper()
    key = HL7_CHARSET_ALIASES.get(key, key)
    if key not in HL7_CHARSET_CODECS:
        raise UnknownCharsetError(value)
    return key


def declared_charset(raw: bytes) -> str:
    """The first repetition of MSH-18 as written in ``raw``, or "" when absent or when there is no MSH."""
    if len(raw) < 8 or not raw.startswith(b"MSH"):
        return ""
    field_separator = raw[3:4]
    segment_end = len(raw)
    for terminator in (b"\r", b"\n"):
        found = raw.find(terminator, 0, segment_end)
        if found >= 0:
            segment_end = found
    fields = raw[:segment_end].split(field_separator)
    # fields[0] is "MSH" and fields[1] is MSH-2: MSH-n sits at index n - 1 (MSH-1 is the separator itself).
    if len(fields) < _MSH18:
        return ""
    encoding_characters = fields[1]
    value = fields[_MSH18 - 1]
    if len(encoding_characters) >= 2:
        value = value.split(encoding_characters[1:2])[0]
    # latin-1 never fails, so a garbled MSH-18 is reported as an unknown value rather than a crash.
    return value.decode("latin-1")


def decode_message(raw: bytes, default_charset: str) -> DecodedMessage:
    """Decode ``raw`` in the character set MSH-18 declares, or in ``default_charset`` when MSH-18 is empty.

    ``default_charset`` is the site setting, a table 0211 value such as "8859/1" or "UNICODE UTF-8".
    Raises `UnknownCharsetError` for an unsupported MSH-18 (or default) and `CharsetDecodeError` when the
    bytes are invalid in that character set: nothing is ever silently replaced. Bytes that do not start
    with an MSH segment decode in the default character set; the ER7 parser reports what is wrong.
    """
    declared = declared_charset(raw).strip()
    charset = canonical_charset(declared or default_charset)
    codec = HL7_CHARSET_CODECS[charset]
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as error:
        raise CharsetDecodeError(charset, error.start, error.reason) from error
    return DecodedMessage(text=text, hl7_charset=charset, dicom_charset=HL7_TO_DICOM_CHARSET[charset], codec=codec)
