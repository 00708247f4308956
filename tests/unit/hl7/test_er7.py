"""ER7 reading and writing, checked by hand and against hl7apy on realistic orders."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from hl7.er7 import (
    DEFAULT_ENCODING,
    AckError,
    Encoding,
    Er7Error,
    ErrorCode,
    FieldPath,
    Header,
    Segment,
    build_ack,
    escape,
    parse,
    read_header,
    unescape,
)

# A v2.3 order from a German HIS: Latin-1 data, an escaped escape character in the name.
ORM_V23 = "\r".join(
    [
        "MSH|^~\\&|ORBIS|KLINIKUM|RIS|RADIOLOGIE|200403241532||ORM^O01|MSG00001|P|2.3||||||8859/1",
        "PID|1||0012345^^^KLINIKUM^PI||Schr\\E\\der^Hans-Peter^^Dr.^^^L||19501203|M|||Hauptstr. 1^^Köln^^50667^D",
        "PV1|1|I|STAT3^201^1^RAD||||0815^Wagner^Eva^^^Dr.||||||||||||4711",
        "ORC|NW|10001^ORBIS|20001^RIS||SC||^^^200403251000^^R||200403241530|||0815^Wagner^Eva^^^Dr.",
        "OBR|1|10001^ORBIS|20001^RIS|RTHO^Thorax p.a. und seitlich^LOCAL|||200403241530|||||||||"
        "0815^Wagner^Eva^^^Dr.||ACC0001|RP0001|SPS0001|DX_01|||CR",
    ]
)
# v2.4: two patient identifiers, a note with a line break and hex data.
ORM_V24 = "\r".join(
    [
        "MSH|^~\\&|SAP|KH|RIS|RAD|20110512083000||ORM^O01|SAP0000042|P|2.4|||AL|NE||ASCII",
        "PID|||7654321^^^KH^PI~X999^^^OTHER^MR||Mayer^Anna^Maria||19821130|F",
        "PV1||O|AMB^^^KH",
        "ORC|NW|P42^SAP|||||^^^20110513093000^^S",
        "OBR|1|P42^SAP||MRKNIE^MRT Knie links^LOCAL||||||||||||||A42|RP42|SPS42|MR_3T_01|||MR",
        "NTE|1||Patient hat Platzangst\\.br\\bitte Sedierung pr\\XFC\\fen",
    ]
)
# v2.5.1 as the intake benchmark sends it: UTF-8, six segments, about 950 bytes.
ORM_V251 = "\r".join(
    [
        "MSH|^~\\&|HIS|KLINIKUM|RIS|RADIOLOGIE|20261123083729||ORM^O01^ORM_O01|IWTGT300000000|P|2.5.1|||||DEU|"
        "UNICODE UTF-8",
        "PID|1||PIWTGT3000000^^^KLINIKUM^PI||MÜLLER^JÜRGEN^^^^^L||20020722|M|||Gartenweg 25^^Berlin^^10115^DEU^H",
        "PV1|1|I|RAD^^^KLINIKUM|||||10004^ÖZDEMIR^AYLIN^^^DR.|||||||||||VIWTGT30000000",
        "ORC|NW|PLIWTGT30000000^HIS|||SC||^^^20261204164500^^R||20261123083729|||10004^ÖZDEMIR^AYLIN^^^DR.",
        "OBR|1|PLIWTGT30000000^HIS||USABD^Sonographie Abdomen^99RAD||||||||||||10004^ÖZDEMIR^AYLIN^^^DR.||"
        "AIWTGT30000000|RPIWTGT30000000|SPSIWTGT30000000|US_GYN_01|||US|||^^^20261204164500^^R||||"
        "^V.a. Pneumonie|||||||||||||USABD^Sonographie Abdomen^99RAD",
        "ZDS|2.25.312048616278825272194188783533814962390^RIS^Application^DICOM",
    ]
)
# v2.5.1 with every delimiter escaped in the procedure description and an '&' in the accession number.
ORM_ESCAPED = "\r".join(
    [
        "MSH|^~\\&|HIS|KLINIKUM|RIS|RADIOLOGIE|20240115101500+0100||ORM^O01^ORM_O01|ESC-1|P|2.5.1|||||DEU|"
        "UNICODE UTF-8",
        "PID|1||4711^^^KLINIKUM^PI||ŞAHİN^AYŞE||19790101|F",
        "ORC|NW|P-ESC^HIS|F-ESC^RIS||SC||^^^20240116080000^^S",
        "OBR|1|P-ESC^HIS|F-ESC^RIS|CTKNIE^CT Knie \\T\\ Unterschenkel \\S\\ li\\F\\re \\E\\ \\R\\^99RAD|||"
        "|||||||||||ACC\\T\\1|RP-ESC|SPS-ESC|CT_01|||CT",
    ]
)
ORDERS = {"v2.3": ORM_V23, "v2.4": ORM_V24, "v2.5.1": ORM_V251, "escaped": ORM_ESCAPED}

# The same kind of message with unusual delimiters: field #, component $, repetition %, escape @,
# subcomponent !.
CUSTOM = "\r".join(
    [
        "MSH#$%@!#HIS#KH#RIS#RAD#20240101120000##ORM$O01$ORM_O01#C-7#P#2.5.1",
        "PID#1##111$$$KH$PI%222$$$X$MR##DOE$JOHN@S@JR##19700101#M",
        "OBR#1#P1##XR$Hand @T@ Finger$LOCAL###########part!one$x#",
    ]
)


def test_segments_are_found_by_name_in_order() -> None:
    message = parse(ORM_V251)
    assert [segment.name for segment in message.segment_list] == ["MSH", "PID", "PV1", "ORC", "OBR", "ZDS"]
    assert message.msh is message.segment_list[0]
    assert message.segment("ORC") is message.segment_list[3]
    assert message.segments("OBR") == (message.segment_list[4],)
    assert message.segment("NTE") is None
    assert message.segments("NTE") == ()


def test_several_segments_of_one_name_keep_their_order() -> None:
    message = parse(ORM_V23 + "\rOBR|2|10002^ORBIS|||\rOBR|3|10003^ORBIS")
    assert [obr.get(2) for obr in message.segments("OBR")] == ["10001", "10002", "10003"]


def test_msh_numbering_counts_the_field_separator_as_msh_1() -> None:
    msh = parse(ORM_V251).msh
    assert (msh.field(0), msh.field(1), msh.field(2), msh.field(3)) == ("MSH", "|", "^~\\&", "HIS")
    assert (msh.get(1), msh.get(2)) == ("|", "^~\\&")
    assert msh.components(2) == ["^~\\&"]
    assert (msh.get(7), msh.get(9), msh.get(9, 1, 2), msh.get(9, 1, 3)) == ("20261123083729", "ORM", "O01", "ORM_O01")
    assert (msh.get(10), msh.get(12), msh.get(18)) == ("IWTGT300000000", "2.5.1", "UNICODE UTF-8")


def test_field_component_repetition_and_subcomponent_access() -> None:
    pid = parse(ORM_V24).segment("PID")
    assert pid is not None
    assert pid.field(3) == "7654321^^^KH^PI~X999^^^OTHER^MR"
    assert pid.get(3) == "7654321"
    assert (pid.get(3, 1, 4), pid.get(3, 1, 5)) == ("KH", "PI")
    assert (pid.get(3, 2, 1), pid.get(3, 2, 4), pid.get(3, 2, 5)) == ("X999", "OTHER", "MR")
    assert pid.repetitions(3) == [["7654321", "", "", "KH", "PI"], ["X999", "", "", "OTHER", "MR"]]
    assert pid.components(5) == ["Mayer", "Anna", "Maria"]
    assert pid.components(3, 2) == ["X999", "", "", "OTHER", "MR"]
    obr = parse(CUSTOM).segment("OBR")
    assert obr is not None
    assert (obr.get(15, 1, 1, 1), obr.get(15, 1, 1, 2), obr.get(15, 1, 2)) == ("part", "one", "x")
    assert obr.components(15) == ["part", "x"]


def test_absent_positions_read_as_empty() -> None:
    pid = parse(ORM_V24).segment("PID")
    assert pid is not None
    assert pid.field(99) == pid.get(99) == pid.get(1) == ""
    assert pid.get(3, 3) == pid.get(3, 1, 9) == pid.get(3, 1, 1, 2) == pid.get(7, 2) == ""
    assert pid.components(99) == pid.components(3, 5) == pid.components(2) == []
    assert pid.repetitions(99) == pid.repetitions(2) == []
    assert pid.field_count == 8


def test_hl7_null_is_returned_as_written() -> None:
    pid = parse('MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||42||""').segment("PID")
    assert pid is not None
    assert pid.get(5) == '""'


@pytest.mark.parametrize("position", [(0,), (3, 0), (3, 1, 0), (3, 1, 1, 0), (-1,)])
def test_positions_are_one_based(position: tuple[int, ...]) -> None:
    pid = parse(ORM_V24).segment("PID")
    assert pid is not None
    with pytest.raises(ValueError, match="1-based"):
        pid.get(*position)


@pytest.mark.parametrize("position", [(0,), (3, 0), (-1, 1)])
def test_components_and_repetitions_positions_are_one_based(position: tuple[int, ...]) -> None:
    pid = parse(ORM_V24).segment("PID")
    assert pid is not None
    with pytest.raises(ValueError, match="1-based"):
        pid.components(*position)
    with pytest.raises(ValueError, match="1-based"):
        pid.repetitions(min(position))


def test_field_numbers_are_not_negative() -> None:
    with pytest.raises(ValueError, match="not negative"):
        parse(ORM_V24).msh.field(-1)


def test_custom_encoding_characters_are_honoured() -> None:
    message = parse(CUSTOM)
    assert message.encoding == Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!")
    msh = message.msh
    assert (msh.field(1), msh.field(2), msh.get(9, 1, 2), msh.get(10)) == ("#", "$%@!", "O01", "C-7")
    pid = message.segment("PID")
    assert pid is not None
    assert pid.repetitions(3) == [["111", "", "", "KH", "PI"], ["222", "", "", "X", "MR"]]
    assert pid.get(5, 1, 2) == "JOHN$JR"
    assert message.value("OBR-4.2") == "Hand ! Finger"


def test_truncation_character_of_v27() -> None:
    message = parse("MSH|^~\\&#|A|B|C|D|20240101||ORM^O01^ORM_O01|1|P|2.7\rNTE|1||50\\P\\ more#")
    assert message.encoding.truncation == "#"
    assert message.msh.field(2) == "^~\\&#"
    assert message.value("NTE-3") == "50# more#"
    assert escape("a#b", message.encoding) == "a\\P\\b"


@pytest.mark.parametrize("terminator", ["\n", "\r\n", "\r\r", "\r\n\r\n"])
def test_segment_terminators_seen_in_the_wild(terminator: str) -> None:
    expected = [segment.to_er7() for segment in parse(ORM_V251).segment_list]
    message = parse(ORM_V251.replace("\r", terminator) + terminator)
    assert [segment.to_er7() for segment in message.segment_list] == expected


def test_to_er7_gives_back_the_segment_text() -> None:
    for text in [*ORDERS.values(), CUSTOM]:
        assert "\r".join(segment.to_er7() for segment in parse(text).segment_list) == text
    assert repr(parse(CUSTOM).msh).startswith("<Segment 'MSH#$%@!#HIS")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must start with 'MSH'"),
        ("PID|1||42", "must start with 'MSH'"),
        ("\ufeffMSH|^~\\&|A", "must start with 'MSH'"),
        ("MSH", "must start with 'MSH'"),
        ("MSH|^~\\|A|B", "MSH-2 must hold 4"),
        ("MSH|", "MSH-2 must hold 4"),
        ("MSH|^~\\&#$|A", "MSH-2 must hold 4"),
        ("MSH|^^\\&|A", "must all differ"),
        ("MSHA^~\\&A", "invalid HL7 delimiter"),
        ("MSH|^~\\\t|A", "invalid HL7 delimiter"),
    ],
)
def test_text_that_is_not_er7_is_rejected(text: str, reason: str) -> None:
    with pytest.raises(Er7Error, match=reason):
        parse(text)


# --- Field paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("PID-3.1", FieldPath("PID", 3, 1, 1)),
        ("PID-5", FieldPath("PID", 5)),
        ("OBR-4.2", FieldPath("OBR", 4, 1, 2)),
        ("ORC-7.4", FieldPath("ORC", 7, 1, 4)),
        ("PID-3[2].4", FieldPath("PID", 3, 2, 4)),
        ("OBR-27.4.1", FieldPath("OBR", 27, 1, 4, 1)),
        ("TQ1-7", FieldPath("TQ1", 7)),
        ("ZDS-1", FieldPath("ZDS", 1)),
    ],
)
def test_field_paths_parse_and_print_back(text: str, path: FieldPath) -> None:
    assert FieldPath.parse(text) == path
    assert str(path) == text


@pytest.mark.parametrize(
    "text", ["", "PID", "PID3", "pid-3", "PID-0", "PID-3.0", "PID-3[0]", "PID-3.1.1.1", "PID-3.x", "PI-3"]
)
def test_malformed_field_paths_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an HL7 field path"):
        FieldPath.parse(text)


def test_field_paths_read_messages_and_chosen_segments() -> None:
    message = parse(ORM_V24 + "\rOBR|2|P43^SAP||CTKOPF^CT Kopf^LOCAL")
    assert message.value("PID-3[2].4") == "OTHER"
    assert message.value(FieldPath.parse("OBR-4.2")) == "MRT Knie links"
    assert [FieldPath.parse("OBR-4.2").value(obr) for obr in message.segments("OBR")] == ["MRT Knie links", "CT Kopf"]
    assert message.value("TQ1-7") == ""
    assert message.value("NTE-3") == "Patient hat Platzangst\nbitte Sedierung prüfen"
    with pytest.raises(ValueError, match="does not apply to a PID segment"):
        FieldPath.parse("OBR-4").value(message.segments("PID")[0])


# --- Escapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("er7", "plain"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("\\E\\F\\E\\", "\\F\\"),
        ("line\\X0D0A\\next", "line\r\nnext"),
        ("\\X4142\\\\x43\\", "AB\\x43\\"),
        ("Gr\\XFC\\\\XDF\\e", "Grüße"),  # hex data is read as Latin-1
        ("one\\.br\\two", "one\ntwo"),
        ("one\\.sp\\two\\.sp 2\\three\\.sp+1\\four", "one\ntwo\nthree\nfour"),
        ("\\.ce\\Title", "\nTitle"),
        ("\\H\\bold\\N\\ normal", "bold normal"),
        ("\\.fi\\\\.nf\\\\.in+4\\\\.ti-2\\\\.sk 3\\text", "text"),
        ("\\C2842\\abc\\M2442\\\\M244200\\", "abc"),
        ("local \\Zabc\\ code", "local \\Zabc\\ code"),
        ("unknown \\Q\\ code", "unknown \\Q\\ code"),
        ("odd hex \\X0\\ and \\XZZ\\", "odd hex \\X0\\ and \\XZZ\\"),
        ("empty \\\\ pair", "empty \\\\ pair"),
        ("C:\\temp", "C:\\temp"),
        ("trailing \\", "trailing \\"),
        ("no truncation char \\P\\", "no truncation char \\P\\"),
    ],
)
def test_every_escape_sequence(er7: str, plain: str) -> None:
    assert unescape(er7) == plain


def test_unescape_uses_the_message_delimiters() -> None:
    custom = Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!")
    assert unescape("@F@@S@@T@@R@@E@\\F\\", custom) == "#$!%@\\F\\"


def test_unescape_returns_plain_values_untouched() -> None:
    value = "MÜLLER^JÜRGEN"
    assert unescape(value) is value


def test_escape_writes_every_delimiter_and_line_break_as_a_sequence() -> None:
    assert escape("|^&~\\\r\n") == "\\F\\\\S\\\\T\\\\R\\\\E\\\\X0D\\\\X0A\\"
    assert escape("\\F\\") == "\\E\\F\\E\\"  # the escape character itself first
    custom = Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!")
    assert escape("#$%@!|^", custom) == "@F@@S@@R@@E@@T@|^"


ENCODINGS = [
    DEFAULT_ENCODING,
    Encoding(field="#", component="$", repetition="%", escape="@", subcomponent="!"),
    Encoding(truncation="#"),
]


@settings(database=None, max_examples=300)
@given(value=st.text(), encoding=st.sampled_from(ENCODINGS))
def test_escape_then_unescape_gives_back_the_value(value: str, encoding: Encoding) -> None:
    escaped = escape(value, encoding)
    assert unescape(escaped, encoding) == value
    forbidden = {encoding.field, encoding.component, encoding.repetition, encoding.subcomponent, "\r", "\n"}
    assert not forbidden & set(escaped)


values = st.lists(st.lists(st.lists(st.text(max_size=8), min_size=1, max_size=3), min_size=1, max_size=3), max_size=3)


@settings(database=None, max_examples=200)
@given(field_value=values, encoding=st.sampled_from(ENCODINGS))
def test_values_written_with_escape_read_back_at_every_position(
    field_value: list[list[list[str]]], encoding: Encoding
) -> None:
    """A field built from escaped subcomponents reads back each subcomponent unchanged."""
    repetition_texts = [
        encoding.component.join(encoding.subcomponent.join(escape(sub, encoding) for sub in comp) for comp in rep)
        for rep in field_value
    ]
    segment = Segment(f"ZZZ{encoding.field}{encoding.repetition.join(repetition_texts)}", encoding)
    for r, (repetition, text) in enumerate(zip(field_value, repetition_texts, strict=True), 1):
        for c, component in enumerate(repetition, 1):
            for s, subcomponent in enumerate(component, 1):
                assert segment.get(1, r, c, s) == subcomponent
        # An empty repetition has no components at all.
        assert segment.components(1, r) == ([component[0] for component in repetition] if text else [])


# --- Cross-check with hl7apy ----------------------------------------------------------------------

COMPARED_PATHS = [
    "MSH-3",
    "MSH-7",
    "MSH-9",
    "MSH-9.1",
    "MSH-9.2",
    "MSH-10",
    "MSH-12",
    "MSH-18",
    "PID-3.1",
    "PID-3.4",
    "PID-5",
    "PID-5.1",
    "PID-5.2",
    "PID-7",
    "PID-8",
    "ORC-1",
    "ORC-2",
    "ORC-3",
    "ORC-7.4",
    "OBR-4.1",
    "OBR-4.2",
    "OBR-18",
    "OBR-19",
    "OBR-20",
    "OBR-21",
    "OBR-24",
]


def hl7apy_text(message: Any, path: FieldPath) -> str:
    """The raw (still escaped) ER7 text hl7apy holds at ``path``; "" when it holds nothing there."""
    segment_name = path.segment.lower()
    repetitions = getattr(getattr(message, segment_name), f"{segment_name}_{path.field}")
    if len(repetitions) < path.repetition:
        return ""
    element = repetitions[path.repetition - 1]
    if path.component is not None:
        element = getattr(element, f"{segment_name}_{path.field}_{path.component}")
    text: str = element.to_er7()
    return text


def plain_text(er7: str) -> str:
    """A deliberately naive unescape of the delimiter sequences (hl7apy 1.3.5 has none of its own:
    ``.value`` and ``to_er7()`` return the text as escaped on the wire). Enough for the test orders."""
    for code, character in (("F", "|"), ("S", "^"), ("T", "&"), ("R", "~"), ("E", "\\")):
        er7 = er7.replace(f"\\{code}\\", character)
    return er7


@pytest.mark.parametrize("version", ORDERS)
@pytest.mark.parametrize("path_text", COMPARED_PATHS)
def test_values_agree_with_hl7apy(version: str, path_text: str) -> None:
    text = ORDERS[version]
    ours = parse(text)
    theirs = parse_message(text, find_groups=False)
    path = FieldPath.parse(path_text)
    expected = hl7apy_text(theirs, path)
    segment = ours.segment(path.segment)
    assert segment is not None
    if path.component is None:
        assert segment.field(path.field) == expected
    assert ours.value(path) == plain_text(expected.split("^")[0] if path.component is None else expected)


@pytest.mark.parametrize("version", ORDERS)
def test_repetitions_and_delimiters_agree_with_hl7apy(version: str) -> None:
    ours = parse(ORDERS[version])
    theirs = parse_message(ORDERS[version], find_groups=False)
    pid = ours.segment("PID")
    assert pid is not None
    assert [r.to_er7() for r in theirs.pid.pid_3] == pid.field(3).split("~")
    assert [[plain_text(r.pid_3_1.to_er7()), plain_text(r.pid_3_4.to_er7())] for r in theirs.pid.pid_3] == [
        [rep[0], rep[3]] for rep in pid.repetitions(3)
    ]
    assert (theirs.msh.msh_1.to_er7(), theirs.msh.msh_2.to_er7()) == (ours.msh.field(1), ours.msh.field(2))


def test_escaped_values_read_as_plain_text() -> None:
    message = parse(ORM_ESCAPED)
    assert message.value("OBR-4.2") == "CT Knie & Unterschenkel ^ li|re \\ ~"
    assert message.value("OBR-18") == "ACC&1"
    assert message.value("PID-5") == "ŞAHİN"
    assert message.value("ORC-7.4") == "20240116080000"
    assert parse(ORM_V23).value("PID-5.1") == "Schr\\der"


# --- ACK ----------------------------------------------------------------------------------------

MISSING_ACCESSION = AckError(
    code=ErrorCode.REQUIRED_FIELD_MISSING, segment="OBR", field=18, message="OBR-18 (accession) is empty"
)
BAD_ORDER_CONTROL = AckError(
    code=ErrorCode.TABLE_VALUE_NOT_FOUND, segment="ORC", field=1, severity="W", message="order control 'XX' ^|~&"
)


def order_with_version(version: str) -> str:
    return ORM_V251.replace("|2.5.1|", f"|{version}|", 1)


def test_ack_for_a_v251_order() -> None:
    ack = build_ack(parse(ORM_V251).msh, "AA", control_id="ACK-1", timestamp="20261123083730")
    assert ack == (
        "MSH|^~\\&|RIS|RADIOLOGIE|HIS|KLINIKUM|20261123083730||ACK^O01^ACK|ACK-1|P|2.5.1||||||UNICODE UTF-8\r"
        "MSA|AA|IWTGT300000000\r"
    )


def test_ack_with_errors_in_the_v25_layout() -> None:
    ack = build_ack(
        parse(ORM_V251).msh,
        "AE",
        control_id="ACK-2",
        timestamp="20261123083730",
        text="order rejected: A|B",
        errors=[MISSING_ACCESSION, BAD_ORDER_CONTROL],
    )
    assert ack.split("\r")[1:] == [
        "MSA|AE|IWTGT300000000|order rejected: A\\F\\B",
        "ERR||OBR^1^18|101^Required field missing^HL70357|E||||OBR-18 (accession) is empty",
        "ERR||ORC^1^1|103^Table value not found^HL70357|W||||order control 'XX' \\S\\\\F\\\\R\\\\T\\",
        "",
    ]


def test_ack_with_errors_in_the_v23_layout() -> None:
    ack = build_ack(
        parse(ORM_V23).msh,
        "AE",
        control_id="A3",
        timestamp="200403241533",
        errors=[MISSING_ACCESSION, BAD_ORDER_CONTROL],
    )
    assert ack == (
        "MSH|^~\\&|RIS|RADIOLOGIE|ORBIS|KLINIKUM|200403241533||ACK^O01|A3|P|2.3||||||8859/1\r"
        "MSA|AE|MSG00001\r"
        "ERR|OBR^1^18^101&Required field missing&HL70357~ORC^1^1^103&Table value not found&HL70357\r"
    )


def test_v23_error_about_the_whole_message_has_an_empty_location() -> None:
    internal = AckError(code=ErrorCode.APPLICATION_INTERNAL_ERROR, message="database unavailable")
    ack = build_ack(parse(ORM_V24).msh, "AE", control_id="A4", timestamp="1", errors=[internal])
    assert ack.split("\r")[2] == "ERR|^^^207&Application internal error&HL70357"
    parse_message(ack, find_groups=False)


def test_ack_uses_the_incoming_delimiters() -> None:
    ack = build_ack(
        parse(CUSTOM).msh, "AE", control_id="X#1", timestamp="20240101", text="50% off", errors=[MISSING_ACCESSION]
    )
    assert ack == (
        "MSH#$%@!#RIS#RAD#HIS#KH#20240101##ACK$O01$ACK#X@F@1#P#2.5.1\r"
        "MSA#AE#C-7#50@R@ off\r"
        "ERR##OBR$1$18#101$Required field missing$HL70357#E####OBR-18 (accession) is empty\r"
    )
    old_custom = CUSTOM.replace("#2.5.1", "#2.4", 1)
    err = build_ack(parse(old_custom).msh, "AE", control_id="1", timestamp="1", errors=[MISSING_ACCESSION])
    assert err.split("\r")[2] == "ERR#OBR$1$18$101!Required field missing!HL70357"


@pytest.mark.parametrize(
    ("error", "location"),
    [
        (AckError(code=ErrorCode.APPLICATION_INTERNAL_ERROR), ""),
        (AckError(code=ErrorCode.SEGMENT_SEQUENCE_ERROR, segment="OBR", sequence=2), "OBR^2"),
        (AckError.at(FieldPath.parse("PID-3.1"), ErrorCode.DATA_TYPE_ERROR), "PID^1^3^1^1"),
        (AckError.at(FieldPath.parse("PID-3[2].4"), ErrorCode.DATA_TYPE_ERROR), "PID^1^3^2^4"),
        (AckError.at(FieldPath.parse("OBR-18"), ErrorCode.REQUIRED_FIELD_MISSING, sequence=3), "OBR^3^18"),
    ],
)
def test_error_locations(error: AckError, location: str) -> None:
    ack = build_ack(parse(ORM_V251).msh, "AE", control_id="1", timestamp="1", errors=[error])
    assert parse(ack).segments("ERR")[0].field(2) == location


@pytest.mark.parametrize(
    ("version", "message_type"),
    [
        ("2.3", "ACK^O01"),
        ("2.3.1", "ACK^O01^ACK"),
        ("2.4", "ACK^O01^ACK"),
        ("2.6", "ACK^O01^ACK"),
        ("not a version", "ACK^O01^ACK"),
        ("", "ACK^O01^ACK"),
    ],
)
def test_message_structure_is_written_from_v231_on(version: str, message_type: str) -> None:
    ack = build_ack(parse(order_with_version(version)).msh, "AA", control_id="1", timestamp="1")
    assert parse(ack).msh.field(9) == message_type


def test_invalid_ack_arguments_are_refused() -> None:
    msh = parse(ORM_V251).msh
    with pytest.raises(ValueError, match="AA"):
        build_ack(msh, "CA", control_id="1", timestamp="1")
    pid = parse(ORM_V251).segment("PID")
    assert pid is not None
    with pytest.raises(ValueError, match="MSH segment"):
        build_ack(pid, "AA", control_id="1", timestamp="1")
    with pytest.raises(ValueError, match="severity"):
        AckError(code=ErrorCode.DATA_TYPE_ERROR, severity="X")
    assert ErrorCode.UNSUPPORTED_VERSION_ID.text == "Unsupported version id"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6"])
@pytest.mark.parametrize("ack_code", ["AA", "AE", "AR"])
def test_hl7apy_reads_every_ack_back_as_written(version: str, ack_code: str) -> None:
    incoming = parse(order_with_version(version)).msh
    errors = [] if ack_code == "AA" else [MISSING_ACCESSION, BAD_ORDER_CONTROL]
    text = "Auftrag abgelehnt: Feld | fehlt" if errors else ""
    ack = build_ack(incoming, ack_code, control_id="ACK-9", timestamp="20261123083730", text=text, errors=errors)
    theirs = parse_message(ack, find_groups=False)
    assert theirs.msa.msa_1.to_er7() == ack_code
    assert theirs.msa.msa_2.to_er7() == "IWTGT300000000"
    assert plain_text(theirs.msa.msa_3.to_er7()) == text
    msh = theirs.msh
    assert [msh.msh_3.to_er7(), msh.msh_4.to_er7(), msh.msh_5.to_er7(), msh.msh_6.to_er7()] == [
        "RIS",
        "RADIOLOGIE",
        "HIS",
        "KLINIKUM",
    ]
    assert (msh.msh_7.to_er7(), msh.msh_10.to_er7(), msh.msh_11.to_er7()) == ("20261123083730", "ACK-9", "P")
    assert (msh.msh_12.to_er7(), msh.msh_18.to_er7()) == (version, "UNICODE UTF-8")
    assert msh.msh_9.to_er7() == ("ACK^O01" if version == "2.3" else "ACK^O01^ACK")
    if not errors:
        assert not theirs.children.get("ERR")
    elif version in {"2.3", "2.3.1", "2.4"}:
        assert [entry.to_er7() for entry in theirs.err.err_1] == [
            "OBR^1^18^101&Required field missing&HL70357",
            "ORC^1^1^103&Table value not found&HL70357",
        ]
    else:
        errs = theirs.children.get("ERR")
        assert [(e.err_2.to_er7(), e.err_3.to_er7(), e.err_4.to_er7(), plain_text(e.err_8.to_er7())) for e in errs] == [
            ("OBR^1^18", "101^Required field missing^HL70357", "E", MISSING_ACCESSION.message),
            ("ORC^1^1", "103^Table value not found^HL70357", "W", BAD_ORDER_CONTROL.message),
        ]


# --- Header -------------------------------------------------------------------------------------


def test_header_of_a_good_message() -> None:
    header = read_header(ORM_V251)
    from_parsed = Header.from_msh(parse(ORM_V251).msh)
    assert dataclasses.replace(header, msh=from_parsed.msh) == from_parsed
    assert header.msh.to_er7() == from_parsed.msh.to_er7()
    assert (header.sending_application, header.sending_facility) == ("HIS", "KLINIKUM")
    assert (header.receiving_application, header.receiving_facility) == ("RIS", "RADIOLOGIE")
    assert (header.message_type, header.trigger_event, header.message_structure) == ("ORM", "O01", "ORM_O01")
    assert (header.control_id, header.processing_id, header.version) == ("IWTGT300000000", "P", "2.5.1")
    assert header.charset == "UNICODE UTF-8"


def test_header_keeps_all_components_of_application_and_facility() -> None:
    header = read_header("MSH|^~\\&|HIS^1.2.3^ISO|^2.16.1^ISO|RIS|RAD|1||ORM^O01|9|P^T|2.5^DEU\nPID|")
    assert (header.sending_application, header.sending_facility) == ("HIS^1.2.3^ISO", "^2.16.1^ISO")
    assert (header.processing_id, header.version, header.charset) == ("P", "2.5", "")


def test_header_of_a_message_the_parser_rejects_is_still_read() -> None:
    broken = "MSH|^~|HIS|KH|RIS|RAD|20240101||ORM^O01|BROKEN-1|P|2.4\rPID|1"
    with pytest.raises(Er7Error):
        parse(broken)
    header = read_header(broken)
    assert (header.sending_application, header.control_id, header.version) == ("HIS", "BROKEN-1", "2.4")
    ack = build_ack(header.msh, "AR", control_id="1", timestamp="20240101", text="MSH-2 too short")
    assert ack.startswith("MSH|^~\\&|RIS|RAD|HIS|KH|20240101||ACK^O01^ACK|1|P|2.4\r")
    assert "MSA|AR|BROKEN-1|MSH-2 too short\r" in ack


@pytest.mark.parametrize("text", ["", "garbage", "MSH", "MSHA^~\\&A", "PID|1||42\rMSH|^~\\&|A"])
def test_header_of_something_else_is_empty_but_answerable(text: str) -> None:
    header = read_header(text)
    assert header.control_id == header.sending_application == header.version == ""
    ack = build_ack(header.msh, "AR", control_id="R1", timestamp="20240101")
    assert ack == "MSH|^~\\&|||||20240101||ACK^^ACK|R1\rMSA|AR\r"
    parse_message(ack, find_groups=False)
