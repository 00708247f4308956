"""A small, fast reader and writer for HL7 v2 ER7 text (the ``MSH|^~\\&|...`` encoding).

hl7apy's ``parse_message`` costs 12-17 ms for a 6-segment ORM, too slow for the intake hot path, so
mapped fields are read and ACKs written here; the tests check the results against hl7apy.

Reading: `parse` splits the text into `Segment` objects and defers all further splitting to the
accessors. Fields use HL7 numbering for every segment, MSH included: MSH-1 is the field separator and
MSH-2 the encoding characters, so MSH-3 is the first field after MSH-2. ``Segment.field(n)`` gives the
raw ER7 text; ``get``, ``components``, ``repetitions`` and `FieldPath` give unescaped values and ""
for anything absent. The HL7 null ``""`` is returned as the two characters ``""``: its meaning
("delete this value") belongs to the caller.

Escapes (HL7 v2 chapter 2, "use of escape sequences in text fields"), always with the message's own
encoding characters:

- ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` become the field, component, subcomponent, repetition and escape
  characters; ``\\P\\`` the v2.7 truncation character when MSH-2 declares one;
- ``\\Xhh...\\`` becomes one character per byte, read as Latin-1: exact for ASCII (control characters
  such as ``\\X0D\\``); bytes above 0x7F are not decoded in the message character set;
- ``\\.br\\``, ``\\.sp\\`` and ``\\.ce\\`` (which all end the output line) become "\\n"; the other
  formatting commands, highlighting (``\\H\\ \\N\\``) and character set switches (``\\Cxxyy\\``,
  ``\\Mxxyy\\``) are dropped;
- anything else, including locally defined ``\\Z...\\`` sequences and a lone escape character, is kept
  literally.

Writing: `escape` is the inverse for the separators and also writes CR and LF as ``\\X0D\\`` and
``\\X0A\\`` so a value can never end a segment. `build_ack` writes an original-mode ACK from the
incoming MSH; `read_header` reads the MSH fields a listener needs even from a message `parse` rejects.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

SEGMENT_TERMINATOR = "\r"
ACK_CODES = frozenset({"AA", "AE", "AR"})
SEVERITIES = frozenset({"E", "W", "I"})


# Escape codes whose meaning does not depend on the encoding characters.
_FIXED_UNESCAPES = {"H": "", "N": "", ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": ""}
_HEX_DATA = re.compile(r"X((?:[0-9A-Fa-f]{2})+)")
# Formatting commands with an argument (".sp 2" ends the line, ".in +4", ".ti -4", ".sk 3" only move
# the cursor) and character set switches (ISO 2022, not supported).
_LINE_BREAK_WITH_ARGUMENT = re.compile(r"\.sp ?\+?\d+")
_DROPPED_SEQUENCE = re.compile(r"\.(?:in|ti|sk) ?[+-]?\d+|C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?")


class Er7Error(ValueError):
    """The text is not an HL7 v2 ER7 message this reader can split."""


@dataclass(frozen=True, slots=True)
class Encoding:
    """The delimiters of one message: the field separator (MSH-1), then the characters of MSH-2 in order."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""
    """v2.7 truncation character; "" when MSH-2 has only four characters."""

    # Derived tables, built once per encoding.
    _escapes: dict[int, str] = dataclasses.field(init=False, repr=False, compare=False)
    _unescapes: dict[str, str] = dataclasses.field(init=False, repr=False, compare=False)
    _msh_delimiter_values: tuple[str, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        delimiters = [self.field, self.component, self.repetition, self.escape, self.subcomponent]
        if self.truncation:
            delimiters.append(self.truncation)
        for delimiter in delimiters:
            # Letters and digits would collide with escape codes (\F\, \X0D\ ...); CR and LF end segments.
            if len(delimiter) != 1 or delimiter.isalnum() or not delimiter.isprintable():
                raise Er7Error(f"invalid HL7 delimiter {delimiter!r}: must be one printable non-alphanumeric character")
        if len(set(delimiters)) != len(delimiters):
            raise Er7Error(f"HL7 delimiters must all differ, got {''.join(delimiters)!r}")
        esc = self.escape
        codes = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition, "E": esc}
        if self.truncation:
            codes["P"] = self.truncation
        escapes = {ord(char): f"{esc}{code}{esc}" for code, char in codes.items()}
        escapes |= {ord("\r"): f"{esc}X0D{esc}", ord("\n"): f"{esc}X0A{esc}"}
        object.__setattr__(self, "_escapes", escapes)
        object.__setattr__(self, "_unescapes", codes | _FIXED_UNESCAPES)
        # MSH-1 and MSH-2 hold the delimiters themselves; stored escaped, they read back as plain values.
        msh_values = (self.field.translate(escapes), self.characters.translate(escapes))
        object.__setattr__(self, "_msh_delimiter_values", msh_values)

    @property
    def characters(self) -> str:
        """The MSH-2 text: component, repetition, escape, subcomponent (and truncation) characters."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_ENCODING = Encoding()


def escape(value: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """``value`` as ER7 text: every delimiter (the escape character included) and CR/LF escaped."""
    # str.translate replaces all characters in one pass, so the escape character cannot be escaped twice.
    return value.translate(encoding._escapes)


def unescape(value: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """The plain text of an ER7 ``value`` (see the module docstring for what each escape becomes)."""
    escape_char = encoding.escape
    if escape_char not in value:
        return value
    parts: list[str] = []
    position = 0
    while (start := value.find(escape_char, position)) >= 0:
        end = value.find(escape_char, start + 1)
        if end < 0:
            break
        replacement = _expand_escape(value[start + 1 : end], encoding)
        # An unknown sequence stays as written, both escape characters included.
        parts.append(value[position : end + 1] if replacement is None else value[position:start] + replacement)
        position = end + 1
    parts.append(value[position:])
    return "".join(parts)


def _expand_escape(code: str, encoding: Encoding) -> str | None:
    known = encoding._unescapes.get(code)
    if known is not None:
        return known
    if hex_data := _HEX_DATA.fullmatch(code):
        return bytes.fromhex(hex_data.group(1)).decode("latin-1")
    if _LINE_BREAK_WITH_ARGUMENT.fullmatch(code):
        return "\n"
    if _DROPPED_SEQUENCE.fullmatch(code):
        return ""
    return None


def _nth(text: str, separator: str, index: int) -> str:
    """The ``index``-th (1-based) part of ``text`` split on ``separator``; "" when there is none."""
    if separator not in text:
        return text if index == 1 else ""
    parts = text.split(separator)
    return parts[index - 1] if index <= len(parts) else ""


class Segment:
    """One segment; fields are numbered as in the HL7 standard (``field(0)`` is the segment name)."""

    __slots__ = ("_fields", "encoding", "name")

    def __init__(self, text: str, encoding: Encoding) -> None:
        fields = text.split(encoding.field)
        self.name = fields[0]
        self.encoding = encoding
        if self.name == "MSH":
            # Handle the MSH numbering quirk here, once: MSH-1 is the separator the split consumed.
            fields[1:2] = encoding._msh_delimiter_values
        self._fields = fields

    def __repr__(self) -> str:
        return f"<Segment {self.to_er7()!r}>"

    def to_er7(self) -> str:
        """The segment as ER7 text, without the segment terminator."""
        separator = self.encoding.field
        if self.name == "MSH":
            return separator.join(["MSH", self.encoding.characters, *self._fields[3:]])
        return separator.join(self._fields)

    @property
    def field_count(self) -> int:
        """Number of the last field present (trailing empty fields included as written)."""
        return len(self._fields) - 1

    def field(self, number: int) -> str:
        """Raw ER7 text of field ``number`` (escapes, components and repetitions untouched); "" if absent."""
        if number < 0:
            raise ValueError(f"HL7 field numbers are not negative, got {number}")
        if self.name == "MSH" and 1 <= number <= 2:
            return self.encoding.field if number == 1 else self.encoding.characters
        return self._fields[number] if number < len(self._fields) else ""

    def get(self, field: int, repetition: int = 1, component: int = 1, subcomponent: int = 1) -> str:
        """Unescaped value at field[repetition].component.subcomponent (all 1-based); "" when absent."""
        # The hot path of order intake: no call unless a position is invalid or there is something to split
        # or unescape.
        if field < 1 or repetition < 1 or component < 1 or subcomponent < 1:
            _check_positions(field, repetition, component, subcomponent)
        if field >= len(self._fields):
            return ""
        encoding = self.encoding
        value = self._fields[field]
        if encoding.repetition in value or repetition != 1:
            value = _nth(value, encoding.repetition, repetition)
        if encoding.component in value or component != 1:
            value = _nth(value, encoding.component, component)
        if encoding.subcomponent in value or subcomponent != 1:
            value = _nth(value, encoding.subcomponent, subcomponent)
        return unescape(value, encoding) if encoding.escape in value else value

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """Unescaped components of one repetition (first subcomponent of each); [] when empty.

        ``components(f, r)[c - 1] == get(f, r, c)`` for every component ``c`` present.
        """
        _check_positions(field, repetition)
        if field >= len(self._fields):
            return []
        return self._split_components(_nth(self._fields[field], self.encoding.repetition, repetition))

    def repetitions(self, field: int) -> list[list[str]]:
        """Every repetition of a field, each as its `components`; [] when the field is empty."""
        _check_positions(field)
        if field >= len(self._fields) or not self._fields[field]:
            return []
        return [self._split_components(text) for text in self._fields[field].split(self.encoding.repetition)]

    def _split_components(self, repetition_text: str) -> list[str]:
        if not repetition_text:
            return []
        encoding = self.encoding
        components = repetition_text.split(encoding.component)
        return [unescape(component.split(encoding.subcomponent, 1)[0], encoding) for component in components]


def _check_positions(*positions: int) -> None:
    # Python's negative indexing would otherwise silently read from the end.
    if min(positions) < 1:
        raise ValueError(f"HL7 positions are 1-based, got {positions}")


class Message:
    """A parsed message: its segments in order, looked up by name."""

    __slots__ = ("_by_name", "encoding", "segment_list")

    def __init__(self, segments: Sequence[Segment], encoding: Encoding) -> None:
        self.segment_list = tuple(segments)
        self.encoding = encoding
        by_name: dict[str, list[Segment]] = {}
        for segment in self.segment_list:
            by_name.setdefault(segment.name, []).append(segment)
        self._by_name = {name: tuple(found) for name, found in by_name.items()}

    def __repr__(self) -> str:
        return f"<Message {' '.join(segment.name for segment in self.segment_list)}>"

    @property
    def msh(self) -> Segment:
        return self.segment_list[0]

    def segments(self, name: str) -> tuple[Segment, ...]:
        """All segments called ``name``, in message order."""
        return self._by_name.get(name, ())

    def segment(self, name: str) -> Segment | None:
        """The first segment called ``name``, or None."""
        found = self._by_name.get(name)
        return found[0] if found else None

    def value(self, path: FieldPath | str) -> str:
        """The unescaped value at ``path`` (e.g. "PID-3.1") in the first segment of that name; "" if absent."""
        if isinstance(path, str):
            path = FieldPath.parse(path)
        found = self._by_name.get(path.segment)
        if not found:
            return ""
        return found[0].get(path.field, path.repetition, path.component or 1, path.subcomponent or 1)


def parse(text: str) -> Message:
    """Split ER7 ``text`` into segments. Segments may end with CR, LF or CRLF; blank lines are skipped.

    Raises `Er7Error` when the text does not start with "MSH" and a field separator, or when MSH-2 does
    not hold 4 or 5 distinct, non-alphanumeric encoding characters.
    """
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    lines = text.split(SEGMENT_TERMINATOR)
    encoding = _read_encoding(lines[0])
    return Message([Segment(line, encoding) for line in lines if line], encoding)


def _read_encoding(msh_line: str) -> Encoding:
    if len(msh_line) < 4 or not msh_line.startswith("MSH"):
        raise Er7Error("an HL7 message must start with 'MSH' followed by the field separator")
    separator = msh_line[3]
    end = msh_line.find(separator, 4)
    characters = msh_line[4:] if end < 0 else msh_line[4:end]
    if not 4 <= len(characters) <= 5:
        raise Er7Error(
            "MSH-2 must hold 4 encoding characters (component, repetition, escape, subcomponent) and an "
            f"optional truncation character, got {characters!r}"
        )
    return _encoding(separator, characters)


@lru_cache(maxsize=64)
def _encoding(field_separator: str, characters: str) -> Encoding:
    # Building an Encoding validates it and derives its escape tables: worth doing once per sender style.
    return Encoding(field_separator, *characters)


_PATH = re.compile(r"([A-Z][A-Z0-9]{2})-([1-9][0-9]*)(?:\[([1-9][0-9]*)\])?(?:\.([1-9][0-9]*)(?:\.([1-9][0-9]*))?)?")


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A location such as "OBR-4.2", "PID-3[2].4" or "OBR-27.4.1": SEG-field[repetition].component.subcomponent.

    Parse once (`FieldPath.parse`), apply many times. A path without a component reads component 1,
    subcomponent 1, like `Segment.get`; ``component`` and ``subcomponent`` stay None so `str` gives back
    the path as written.
    """

    segment: str
    field: int
    repetition: int = 1
    component: int | None = None
    subcomponent: int | None = None

    @staticmethod
    def parse(text: str) -> FieldPath:
        """Parse a path string; raises ValueError for anything but SEG-f[r].c.s with 1-based numbers."""
        return _parse_path(text)

    def value(self, segment: Segment) -> str:
        """The unescaped value at this path in ``segment`` (e.g. one of several OBR segments)."""
        if segment.name != self.segment:
            raise ValueError(f"path {self} does not apply to a {segment.name} segment")
        return segment.get(self.field, self.repetition, self.component or 1, self.subcomponent or 1)

    def __str__(self) -> str:
        text = f"{self.segment}-{self.field}"
        if self.repetition != 1:
            text += f"[{self.repetition}]"
        for position in (self.component, self.subcomponent):
            if position is not None:
                text += f".{position}"
        return text


@lru_cache(maxsize=512)
def _parse_path(text: str) -> FieldPath:
    match = _PATH.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an HL7 field path: {text!r} (expected e.g. PID-3.1, OBR-4.2 or PID-3[2].4)")
    segment, field_number, repetition, component, subcomponent = match.groups()
    return FieldPath(
        segment,
        int(field_number),
        int(repetition) if repetition else 1,
        int(component) if component else None,
        int(subcomponent) if subcomponent else None,
    )


@dataclass(frozen=True, slots=True)
class Header:
    """The MSH fields a listener needs to route, deduplicate and answer a message.

    The four application/facility fields are HD values and stay raw ER7 text with all their components,
    because together they identify a party. The others are unescaped single values.
    """

    sending_application: str  # MSH-3
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_type: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    message_structure: str  # MSH-9.3
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1
    charset: str  # MSH-18, first repetition
    msh: Segment
    """The MSH segment itself, for `build_ack`."""

    @classmethod
    def from_msh(cls, msh: Segment) -> Header:
        return cls(
            sending_application=msh.field(3),
            sending_facility=msh.field(4),
            receiving_application=msh.field(5),
            receiving_facility=msh.field(6),
            message_type=msh.get(9),
            trigger_event=msh.get(9, 1, 2),
            message_structure=msh.get(9, 1, 3),
            control_id=msh.get(10),
            processing_id=msh.get(11),
            version=msh.get(12),
            charset=msh.get(18),
            msh=msh,
        )


def read_header(text: str) -> Header:
    """The MSH fields of ``text``, whatever state the rest is in; missing fields are "".

    When MSH-2 is unusable the default encoding characters are assumed (with the message's field
    separator where it has one), so that an AR can still be addressed to the sender.
    """
    line_end = len(text)
    for terminator in ("\r", "\n"):
        found = text.find(terminator, 0, line_end)
        if found >= 0:
            line_end = found
    msh_line = text[:line_end]
    try:
        encoding = _read_encoding(msh_line)
    except Er7Error:
        encoding = _fallback_encoding(msh_line)
    if not msh_line.startswith("MSH" + encoding.field):
        msh_line = "MSH" + encoding.field + encoding.characters
    return Header.from_msh(Segment(msh_line, encoding))


def _fallback_encoding(msh_line: str) -> Encoding:
    if msh_line.startswith("MSH") and len(msh_line) > 3:
        try:
            return Encoding(field=msh_line[3])
        except Er7Error:
            pass
    return DEFAULT_ENCODING


class ErrorCode(enum.IntEnum):
    """HL7 table 0357, message error condition codes."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        return ERROR_CODE_TEXTS[self]


ERROR_CODE_TEXTS: dict[ErrorCode, str] = {
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}
ERROR_CODE_SYSTEM = "HL70357"


@dataclass(frozen=True, slots=True, kw_only=True)
class AckError:
    """One ERR entry: what went wrong (table 0357) and where, e.g. OBR (1st occurrence), field 18."""

    code: ErrorCode
    segment: str = ""
    """Segment id, e.g. "OBR"; "" for an error about the message as a whole."""
    sequence: int = 1
    """Which occurrence of the segment, 1-based."""
    field: int | None = None
    repetition: int = 1
    """Field repetition; written (v2.5+) only together with a component."""
    component: int | None = None
    severity: str = "E"
    """E error, W warning, I information (HL7 table 0516; written from v2.5 on)."""
    message: str = ""
    """Text for a human (ERR-8 from v2.5 on; MSA-3 carries the ACK's overall text in every version)."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {sorted(SEVERITIES)}, got {self.severity!r}")

    @classmethod
    def at(cls, path: FieldPath, code: ErrorCode, message: str = "", *, sequence: int = 1) -> AckError:
        """An error located at ``path`` in occurrence ``sequence`` of its segment."""
        return cls(
            code=code,
            segment=path.segment,
            sequence=sequence,
            field=path.field,
            repetition=path.repetition,
            component=path.component,
            message=message,
        )


def build_ack(
    msh: Segment,
    ack_code: str,
    *,
    control_id: str,
    timestamp: str,
    text: str = "",
    errors: Sequence[AckError] = (),
) -> str:
    """An original-mode ACK answering the message whose MSH is ``msh``, as ER7 text (no MLLP framing).

    The ACK uses the incoming encoding characters; sender and receiver are swapped; MSH-11, MSH-12 and
    MSH-18 are copied; MSA-2 echoes MSH-10. MSH-9 is ACK^trigger^ACK, or ACK^trigger before v2.3.1
    (which introduced the message structure component). ``errors`` become ERR segments in the v2.5
    layout (ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 message) from v2.5 on or when the version
    is unknown, and one ERR with a repeating ERR-1 (segment^sequence^field^code&text&HL70357) before.
    Every segment ends with CR, the HL7 segment terminator.
    """
    if ack_code not in ACK_CODES:
        raise ValueError(f"original-mode ACK code must be one of {sorted(ACK_CODES)}, got {ack_code!r}")
    if msh.name != "MSH":
        raise ValueError(f"an ACK is built from an MSH segment, got {msh.name}")
    encoding = msh.encoding
    version = _version_number(msh.get(12))
    message_type = ["ACK", escape(msh.get(9, 1, 2), encoding)]
    if version is None or version >= (2, 3, 1):
        message_type.append("ACK")
    header = [
        *(msh.field(number) for number in (5, 6, 3, 4)),
        escape(timestamp, encoding),
        "",
        encoding.component.join(message_type),
        escape(control_id, encoding),
        msh.field(11),
        msh.field(12),
        *([""] * 5),
        msh.field(18),
    ]
    segments = [
        _segment_text(["MSH", encoding.characters, *header], encoding),
        _segment_text(["MSA", ack_code, msh.field(10), escape(text, encoding)], encoding),
    ]
    if errors:
        if version is None or version >= (2, 5):
            segments += [_err_v25(error, encoding) for error in errors]
        else:
            segments.append(_err_v23(errors, encoding))
    return "".join(segment + SEGMENT_TERMINATOR for segment in segments)


def _version_number(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def _segment_text(fields: list[str], encoding: Encoding) -> str:
    while fields[-1] == "":
        fields.pop()
    return encoding.field.join(fields)


def _components(values: list[str], separator: str) -> str:
    """Join component (or subcomponent) values, leaving out trailing empty ones."""
    while values and values[-1] == "":
        values.pop()
    return separator.join(values)


def _err_v25(error: AckError, encoding: Encoding) -> str:
    location = [escape(error.segment, encoding), str(error.sequence)] if error.segment else []
    if location and error.field is not None:
        location.append(str(error.field))
        if error.component is not None:
            location += [str(error.repetition), str(error.component)]
    code = [str(int(error.code)), escape(error.code.text, encoding), ERROR_CODE_SYSTEM]
    fields = ["ERR", "", _components(location, encoding.component), _components(code, encoding.component)]
    fields += [error.severity, "", "", "", escape(error.message, encoding)]
    return _segment_text(fields, encoding)


def _err_v23(errors: Sequence[AckError], encoding: Encoding) -> str:
    entries = []
    for error in errors:
        code = _components(
            [str(int(error.code)), escape(error.code.text, encoding), ERROR_CODE_SYSTEM], encoding.subcomponent
        )
        location = [escape(error.segment, encoding), str(error.sequence) if error.segment else ""]
        location.append("" if error.field is None else str(error.field))
        entries.append(_components([*location, code], encoding.component))
    return _segment_text(["ERR", encoding.repetition.join(entries)], encoding)
