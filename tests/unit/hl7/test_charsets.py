"""MSH-18: reading it from raw bytes, decoding with it, and naming it for DICOM."""

from __future__ import annotations

import codecs

import pytest
from pydicom.charset import python_encoding as pydicom_codecs

from hl7.charsets import (
    HL7_CHARSET_ALIASES,
    HL7_CHARSET_CODECS,
    HL7_TO_DICOM_CHARSET,
    CharsetDecodeError,
    DecodedMessage,
    UnknownCharsetError,
    canonical_charset,
    declared_charset,
    decode_message,
)

# (MSH-18, Python codec, DICOM Specific Character Set, a patient name in that character set)
ROWS = [
    ("ASCII", "ascii", "", "MUELLER^HANS"),
    ("8859/1", "iso8859-1", "ISO_IR 100", "MÜLLER^JÜRGEN"),
    ("8859/2", "iso8859-2", "ISO_IR 101", "DVOŘÁK^ŁUKASZ"),
    ("8859/3", "iso8859-3", "ISO_IR 109", "ĠORĠ^ĦAMRUN"),
    ("8859/4", "iso8859-4", "ISO_IR 110", "ĀBOLIŅŠ^JĀNIS"),
    ("8859/5", "iso8859-5", "ISO_IR 144", "ИВАНОВ^ПЁТР"),
    ("8859/6", "iso8859-6", "ISO_IR 127", "محمد^علي"),
    ("8859/7", "iso8859-7", "ISO_IR 126", "ΠΑΠΑΔΟΠΟΥΛΟΣ^ΓΙΩΡΓΟΣ"),
    ("8859/8", "iso8859-8", "ISO_IR 138", "כהן^דוד"),
    ("8859/9", "iso8859-9", "ISO_IR 148", "ŞAHİN^AYŞE"),
    ("8859/15", "iso8859-15", "ISO_IR 192", "ŒUVRE^€URO"),
    ("UNICODE UTF-8", "utf-8", "ISO_IR 192", "MÜLLER^山田"),
]


def raw_message(msh18: bytes, name: bytes = b"DOE^JOHN", *, separators: bytes = b"|^~\\&") -> bytes:
    field, component = separators[:1], separators[1:2]
    msh_fields = [b"MSH", separators[1:], b"HIS", b"KH", b"RIS", b"RAD", b"20240101", b"", b"ORM" + component + b"O01"]
    msh_fields += [b"42", b"P", b"2.5.1", b"", b"", b"", b"", b"DEU", msh18]
    msh = field.join(msh_fields)
    return msh + b"\r" + field.join([b"PID", b"1", b"", b"4711", b"", name]) + b"\r"


def test_tables_have_exactly_the_documented_rows() -> None:
    assert {hl7: codec for hl7, codec, _, _ in ROWS} == HL7_CHARSET_CODECS
    assert {hl7: dicom for hl7, _, dicom, _ in ROWS} == HL7_TO_DICOM_CHARSET
    assert HL7_CHARSET_ALIASES == {"UTF-8": "UNICODE UTF-8", "UNICODE": "UNICODE UTF-8"}


@pytest.mark.parametrize(("msh18", "codec", "dicom", "name"), ROWS)
def test_each_charset_decodes_its_own_bytes(msh18: str, codec: str, dicom: str, name: str) -> None:
    raw = raw_message(msh18.encode("ascii"), name.encode(codec))
    decoded = decode_message(raw, default_charset="ASCII")
    assert decoded == DecodedMessage(
        text=raw_message(msh18.encode("ascii"), name.encode(codec)).decode(codec),
        hl7_charset=msh18,
        dicom_charset=dicom,
        codec=codec,
    )
    assert name in decoded.text


@pytest.mark.parametrize(("msh18", "codec", "dicom", "name"), ROWS)
def test_dicom_charset_can_hold_every_character_of_the_hl7_charset(
    msh18: str, codec: str, dicom: str, name: str
) -> None:
    # Checked against pydicom's own table, so the term is one DICOM peers decode the same way.
    dicom_codec = pydicom_codecs["ISO_IR 6" if dicom == "" else dicom]
    if codec == "utf-8":
        assert codecs.lookup(dicom_codec).name == "utf-8"
        return
    repertoire = []
    for byte in range(0x80 if codec == "ascii" else 0x100):
        try:
            repertoire.append(bytes([byte]).decode(codec))
        except UnicodeDecodeError:
            continue
    "".join(repertoire).encode(dicom_codec)
    assert name.encode(dicom_codec).decode(dicom_codec) == name


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("UTF-8", "UNICODE UTF-8"),
        ("UNICODE", "UNICODE UTF-8"),
        ("unicode utf-8", "UNICODE UTF-8"),
        (" 8859/1 ", "8859/1"),
    ],
)
def test_aliases_case_and_blanks_are_resolved(written: str, canonical: str) -> None:
    assert canonical_charset(written) == canonical
    decoded = decode_message(
        raw_message(written.encode("ascii"), "MÜLLER".encode(HL7_CHARSET_CODECS[canonical])), "ASCII"
    )
    assert decoded.hl7_charset == canonical
    assert "MÜLLER" in decoded.text


@pytest.mark.parametrize("default", ["8859/1", "UNICODE UTF-8"])
def test_empty_msh18_uses_the_site_default(default: str) -> None:
    name = "MÜLLER^JÜRGEN"
    codec = HL7_CHARSET_CODECS[default]
    decoded = decode_message(raw_message(b"", name.encode(codec)), default)
    assert (decoded.hl7_charset, decoded.codec) == (default, codec)
    assert name in decoded.text


def test_msh_without_field_18_uses_the_site_default() -> None:
    raw = "MSH|^~\\&|HIS|KH|RIS|RAD|20240101||ORM^O01|1|P|2.3\rPID|1||4711||MÜLLER\r".encode("iso8859-1")
    assert declared_charset(raw) == ""
    decoded = decode_message(raw, "8859/1")
    assert decoded.dicom_charset == "ISO_IR 100"
    assert "MÜLLER" in decoded.text


def test_bytes_that_are_not_hl7_decode_in_the_default_for_the_parser_to_reject() -> None:
    assert decode_message(b"HELLO\r", "UNICODE UTF-8").text == "HELLO\r"


def test_only_the_first_repetition_of_msh18_counts() -> None:
    assert declared_charset(raw_message(b"UNICODE UTF-8~8859/1")) == "UNICODE UTF-8"
    assert decode_message(raw_message(b"8859/1~ISO IR87"), "ASCII").hl7_charset == "8859/1"


def test_msh18_is_found_with_the_message_own_separators_and_lf_terminator() -> None:
    raw = raw_message(b"8859/1%UNICODE UTF-8", "MÜLLER".encode("iso8859-1"), separators=b"#$%@!")
    assert declared_charset(raw) == "8859/1"
    assert declared_charset(raw.replace(b"\r", b"\n")) == "8859/1"
    assert "MÜLLER" in decode_message(raw, "UNICODE UTF-8").text


def test_unknown_msh18_is_an_error_naming_the_value() -> None:
    with pytest.raises(UnknownCharsetError, match="KOI8-R") as raised:
        decode_message(raw_message(b"KOI8-R"), "8859/1")
    assert raised.value.value == "KOI8-R"


def test_garbled_msh18_is_an_unknown_charset_not_a_crash() -> None:
    with pytest.raises(UnknownCharsetError):
        decode_message(raw_message(b"UTF\xff8"), "8859/1")


def test_unknown_default_is_an_error() -> None:
    with pytest.raises(UnknownCharsetError, match="LATIN1"):
        decode_message(raw_message(b""), "LATIN1")


@pytest.mark.parametrize(
    ("msh18", "name", "offset_in_name"),
    [
        (b"UNICODE UTF-8", "MÜLLER".encode("iso8859-1"), 1),
        (b"ASCII", "MÜLLER".encode(), 1),
        (b"8859/7", b"\xc1\xff", 1),  # 0xFF is unassigned in ISO 8859-7
    ],
)
def test_bytes_invalid_in_the_declared_charset_are_an_error(msh18: bytes, name: bytes, offset_in_name: int) -> None:
    raw = raw_message(msh18, name)
    with pytest.raises(CharsetDecodeError) as raised:
        decode_message(raw, "8859/1")
    assert raised.value.charset == canonical_charset(msh18.decode())
    assert raised.value.offset == raw.index(name) + offset_in_name
