"""An HL7 message → the service commands it asks for, through the site's `OrderMapping`.

Orders (ORM^O01, OMI^O23): every ORC starts an order group holding its ORC, TQ1, OBR, NTE, IPC and
Z segments; the segments before the first ORC (PID, PV1, ...) belong to every group. One group is
one order with one requested procedure (its OBR) and one scheduled step per IPC segment, or one step
when there is none. ORC-1 (with ORC-5) picks the action from the order control table.

Patients: ADT^A08/A31 become a patient update from PID; ADT^A40 a merge of the MRG patient into
the PID patient, one per PID/MRG pair.

Every value read is remembered with the field it came from (`Location`), keyed by the domain's
field path (``procedures[0].steps[0].modality``), so that a problem found later — here or in the
service — is reported on the HL7 field the sender has to fix. Problems found while reading (a bad
timestamp, an unknown order control code, a missing start time) are collected and raised together
as `Rejected`.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hl7.er7 import ErrorCode, FieldPath, Message, Segment
from hl7.mapping import SEXES, FieldRule, OrderAction, OrderMapping, ValueKind
from ris.domain.inbound import ChangeOrderStatus, MergePatients, OrderCommand, ScheduleOrder, UpdateOrder, UpdatePatient
from ris.domain.model import CodedEntry, NewOrder, OrderData, OrderKey, PatientData, ProcedureData, StepData

KEY = "key"
"""Location entry of the identifier that names an existing order or patient (for NotFound)."""
PRIOR_PATIENT = "prior_patient"
"""The service's name for the merged-away patient of ADT^A40."""
CHARACTER_SET = "character_set"
_MSH_18 = FieldPath.parse("MSH-18")
_ORC_1 = FieldPath.parse("ORC-1")
_ORC_5 = FieldPath.parse("ORC-5")
_OBR = "OBR"


class MessageKind(enum.Enum):
    ORDER = "order"
    PATIENT_UPDATE = "patient update"
    PATIENT_MERGE = "patient merge"


@dataclass(frozen=True)
class Location:
    """Where a value came from: a field path in occurrence ``sequence`` (1-based) of its segment."""

    path: FieldPath
    sequence: int = 1


@dataclass(frozen=True)
class Translation:
    """The commands of one message, each with the locations of the values it holds."""

    commands: tuple[OrderCommand, ...]
    locations: tuple[dict[str, Location], ...]


@dataclass(frozen=True)
class Problem:
    """Something the sender has to fix, and where (None: the message as a whole)."""

    location: Location | None
    code: ErrorCode
    message: str


class Rejected(Exception):
    """The message cannot become commands; ``problems`` say where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = tuple(problems)


class _Scope:
    """The segments visible to one order, procedure or step: its own first, then its group's, then
    the message's (e.g. the step's IPC, the group's OBR, the message's PID)."""

    __slots__ = ("layers",)

    def __init__(self, *layers: dict[str, list[Segment]]) -> None:
        self.layers = layers

    def all(self, name: str) -> list[Segment]:
        for layer in self.layers:
            found = layer.get(name)
            if found:
                return found
        return []

    def first(self, name: str) -> Segment | None:
        found = self.all(name)
        return found[0] if found else None

    def narrowed(self, layer: dict[str, list[Segment]]) -> _Scope:
        return _Scope(layer, *self.layers)


class _ValueProblem(ValueError):
    """A field holds text that cannot become the value its target needs."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.DATA_TYPE_ERROR) -> None:
        super().__init__(message)
        self.code = code


_TIMESTAMP = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?)?)?)?(?:([+-])(\d{2})(\d{2}))?"
)


def parse_timestamp(text: str, zone: ZoneInfo) -> dt.datetime:
    """An aware datetime from an HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]); a value without
    an offset is local time in ``zone``. Raises ValueError for anything else."""
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise _ValueProblem(f"{text!r} is not an HL7 timestamp (YYYYMMDD[HHMM[SS]][+/-ZZZZ])")
    year, month, day, hour, minute, second, sign, offset_hours, offset_minutes = match.groups()
    tzinfo: dt.tzinfo = zone
    if sign:
        offset = dt.timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        if offset > dt.timedelta(hours=14) or int(offset_minutes) >= 60:
            raise _ValueProblem(f"{text!r} has an impossible UTC offset")
        tzinfo = dt.timezone(-offset if sign == "-" else offset)
    try:
        return dt.datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tzinfo,
        )
    except ValueError as error:
        raise _ValueProblem(f"{text!r} is not a valid date and time ({error})") from None


@dataclass
class _Reader:
    """Reads targets through the mapping, remembering locations and collecting problems."""

    mapping: OrderMapping
    zone: ZoneInfo
    sequences: dict[int, int]
    """id(segment) → its occurrence number among the segments of its name."""
    problems: list[Problem] = field(default_factory=list)
    locations: dict[str, Location] = field(default_factory=dict)
    _problem_paths: set[str] = field(default_factory=set)

    def read(self, target: str, scope: _Scope, domain_path: str) -> Any:
        """The value of ``target`` (a key of the field table); "" or None when no candidate has one."""
        rule = self.mapping.fields[target]
        for path in rule.sources:
            segments = scope.all(path.segment)
            if not segments:
                continue
            try:
                value = _convert(rule, path, segments, self.mapping, self.zone)
            except _ValueProblem as problem:
                self.problem(domain_path, Location(path, self.sequences[id(segments[0])]), str(problem), problem.code)
                return _EMPTY[rule.kind]
            if value:
                self.locations[domain_path] = Location(path, self.sequences[id(segments[0])])
                return value
        self.locations[domain_path] = self._expected_location(rule, scope)
        return _EMPTY[rule.kind]

    def _expected_location(self, rule: FieldRule, scope: _Scope) -> Location:
        """Where a missing value should have been: the first candidate whose segment is present."""
        for path in rule.sources:
            segment = scope.first(path.segment)
            if segment is not None:
                return Location(path, self.sequences[id(segment)])
        return Location(rule.sources[0])

    def problem(
        self, domain_path: str, location: Location, message: str, code: ErrorCode = ErrorCode.DATA_TYPE_ERROR
    ) -> None:
        self.locations[domain_path] = location
        self._problem_paths.add(domain_path)
        self.problems.append(Problem(location, code, message))

    def require(self, domain_path: str, present: bool) -> None:
        """Report ``domain_path`` as missing unless it is present or already reported as bad."""
        if not present and domain_path not in self._problem_paths:
            self.problem(domain_path, self.locations[domain_path], "is required", ErrorCode.REQUIRED_FIELD_MISSING)

    def location_of(self, segment: Segment, path: FieldPath) -> Location:
        return Location(path, self.sequences[id(segment)])


# The value of a target no candidate field fills.
_EMPTY: dict[ValueKind, Any] = dict.fromkeys(ValueKind, "") | {
    ValueKind.DATETIME: None,
    ValueKind.CODE: None,
    ValueKind.PRIORITY: "ROUTINE",
}


def _convert(rule: FieldRule, path: FieldPath, segments: list[Segment], mapping: OrderMapping, zone: ZoneInfo) -> Any:
    segment = segments[0]
    match rule.kind:
        case ValueKind.TEXT:
            return path.value(segment)
        case ValueKind.JOINED:
            if path.component is not None:
                return path.value(segment)
            return " ".join(part for part in segment.components(path.field, path.repetition)[:3] if part)
        case ValueKind.LINES:
            return "\n".join(line for line in (path.value(each) for each in segments) if line)
        case ValueKind.PERSON_NAME:
            return _person_name(segment, path)
        case ValueKind.DATE:
            return _date(path.value(segment))
        case ValueKind.DATETIME:
            text = path.value(segment)
            return parse_timestamp(text, zone) if text else None
        case ValueKind.SEX:
            return _sex(path.value(segment))
        case ValueKind.PRIORITY:
            return _priority(path.value(segment), mapping)
        case ValueKind.CODE:
            return _code(segment.components(path.field, path.repetition), mapping.default_coding_scheme)


# Characters with a meaning of their own in a DICOM PN: component, group and value separators.
_PN_SEPARATORS = str.maketrans({"^": " ", "=": " ", "\\": " "})


def _person_name(segment: Segment, path: FieldPath) -> str:
    """DICOM PN family^given^middle^prefix^suffix from the five HL7 positions family, given, middle,
    suffix, prefix starting at ``path``."""
    repetition, component = path.repetition, path.component or 1
    if path.subcomponent is None:
        parts = [segment.get(path.field, repetition, component + offset) for offset in range(5)]
    else:
        parts = [segment.get(path.field, repetition, component, path.subcomponent + offset) for offset in range(5)]
    family, given, middle, suffix, prefix = (part.translate(_PN_SEPARATORS).strip() for part in parts)
    components = [family, given, middle, prefix, suffix]
    while components and not components[-1]:
        components.pop()
    return "^".join(components)


def _date(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    if not _TIMESTAMP.fullmatch(text):
        raise _ValueProblem(f"{text!r} is not an HL7 date (YYYYMMDD)")
    return text[:8] if len(text) >= 8 else ""  # DICOM DA cannot hold a year or month alone


def _sex(text: str) -> str:
    code = text.strip().upper()
    if code not in SEXES and code:
        raise _ValueProblem(f"{text!r} is not in HL7 table 0001 ({', '.join(SEXES)})", ErrorCode.TABLE_VALUE_NOT_FOUND)
    return SEXES.get(code, "")


def _priority(text: str, mapping: OrderMapping) -> str:
    code = text.strip().upper()
    if not code:
        return ""  # the next candidate field may have one; none at all means ROUTINE
    priority = mapping.priorities.get(code)
    if priority is None:
        raise _ValueProblem(
            f"priority {text!r} is not in the priority table ({', '.join(mapping.priorities)}); "
            "a site adds codes in its mapping file",
            ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    return priority


def _code(components: list[str], default_scheme: str) -> CodedEntry | None:
    value, meaning, scheme = ([*components, "", "", ""])[:3]
    if not value:
        return None
    return CodedEntry(value=value, scheme=scheme or default_scheme, meaning=meaning)


# --- messages -> commands ------------------------------------------------------------------------


def translate(
    message: Message, kind: MessageKind, character_set: str, mapping: OrderMapping, zone: ZoneInfo
) -> Translation:
    """The commands ``message`` asks for. ``character_set`` is the DICOM Specific Character Set its
    data came in ("" to let the service choose). Raises `Rejected`."""
    group_start = {MessageKind.ORDER: "ORC", MessageKind.PATIENT_UPDATE: "PID", MessageKind.PATIENT_MERGE: "PID"}[kind]
    base, groups = _split(message, group_start)
    if not groups:
        raise Rejected(
            [
                Problem(
                    Location(FieldPath(group_start, 1)), ErrorCode.SEGMENT_SEQUENCE_ERROR, f"no {group_start} segment"
                )
            ]
        )
    sequences = _sequences(message)
    commands: list[OrderCommand] = []
    locations: list[dict[str, Location]] = []
    problems: list[Problem] = []
    for group in groups:
        reader = _Reader(mapping, zone, sequences)
        reader.locations[CHARACTER_SET] = Location(_MSH_18)
        scope = _Scope(group, base)
        if kind is MessageKind.ORDER:
            command = _order_command(reader, scope, character_set)
        elif kind is MessageKind.PATIENT_UPDATE:
            command = UpdatePatient(_patient(reader, scope))
        else:
            command = _merge_command(reader, scope)
        problems += reader.problems
        if command is not None:
            commands.append(command)
            locations.append(reader.locations)
    if problems:
        raise Rejected(problems)
    return Translation(tuple(commands), tuple(locations))


def _split(message: Message, group_start: str) -> tuple[dict[str, list[Segment]], list[dict[str, list[Segment]]]]:
    base: dict[str, list[Segment]] = {}
    groups: list[dict[str, list[Segment]]] = []
    for segment in message.segment_list:
        if segment.name == group_start:
            groups.append({})
        (groups[-1] if groups else base).setdefault(segment.name, []).append(segment)
    return base, groups


def _sequences(message: Message) -> dict[int, int]:
    counts: dict[str, int] = {}
    sequences = {}
    for segment in message.segment_list:
        counts[segment.name] = counts.get(segment.name, 0) + 1
        sequences[id(segment)] = counts[segment.name]
    return sequences


def _order_command(reader: _Reader, scope: _Scope, character_set: str) -> OrderCommand | None:
    orc = scope.first("ORC")
    assert orc is not None  # the group starts with it
    control, status = _ORC_1.value(orc).strip(), _ORC_5.value(orc).strip()
    action = reader.mapping.action(control, status)
    if action is None:
        known = ", ".join(sorted(f"{c}/{s}" if s != "*" else c for c, s in reader.mapping.order_control))
        path = _ORC_5 if any(c == control for c, _ in reader.mapping.order_control) else _ORC_1
        reader.problems.append(
            Problem(
                reader.location_of(orc, path),
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"order control {control!r} with order status {status!r} is not in the order control table ({known})",
            )
        )
        return None
    target = action.target_status
    if target is not None:
        key = _order_key(reader, scope)
        return ChangeOrderStatus(key, target, reader.read("status.reason", scope, "reason"))
    obrs = scope.all(_OBR)
    if len(obrs) != 1:
        message = "an order needs its OBR segment" if not obrs else "one OBR segment per ORC"
        reader.problems.append(Problem(reader.location_of(orc, _ORC_1), ErrorCode.SEGMENT_SEQUENCE_ERROR, message))
        return None
    order = _new_order(reader, scope, character_set)
    if action is OrderAction.SCHEDULE:
        return ScheduleOrder(order)
    return UpdateOrder(_order_key(reader, scope), order)


def _order_key(reader: _Reader, scope: _Scope) -> OrderKey:
    """The identifiers naming an existing order; the location of the one used is kept under KEY."""
    values = {name: reader.read(f"order.{name}", scope, f"order.{name}") for name in _KEY_FIELDS}
    used = next((name for name in _KEY_FIELDS if values[name]), _KEY_FIELDS[0])
    reader.locations[KEY] = reader.locations[f"order.{used}"]
    reader.require(KEY, bool(values[used]))
    return OrderKey(**values)


def _patient(reader: _Reader, scope: _Scope) -> PatientData:
    return PatientData(**{name: reader.read(f"patient.{name}", scope, f"patient.{name}") for name in _PATIENT_FIELDS})


def _new_order(reader: _Reader, scope: _Scope, character_set: str) -> NewOrder:
    order = OrderData(**{name: reader.read(f"order.{name}", scope, f"order.{name}") for name in _ORDER_FIELDS})
    # One step per IPC segment (OMI^O23), else one step from the order group itself.
    step_scopes = [scope.narrowed({"IPC": [ipc]}) for ipc in scope.all("IPC")] or [scope]
    steps = tuple(
        _step(reader, step_scope, f"procedures[0].steps[{index}].", order.patient_location)
        for index, step_scope in enumerate(step_scopes)
    )
    procedure = ProcedureData(
        steps=steps,
        **{
            name: reader.read(f"procedure.{name}", step_scopes[0], f"procedures[0].{name}")
            for name in _PROCEDURE_FIELDS
        },
    )
    return NewOrder(patient=_patient(reader, scope), order=order, procedures=(procedure,), character_set=character_set)


def _step(reader: _Reader, scope: _Scope, prefix: str, patient_location: str) -> StepData:
    values = {name: reader.read(f"step.{name}", scope, prefix + name) for name in _STEP_FIELDS}
    start = reader.read("step.start", scope, prefix + "start")
    reader.require(prefix + "start", start is not None)
    if not values["station_ae"]:
        rule = reader.mapping.station(values["modality"], patient_location)
        if rule is not None:
            values["station_ae"] = rule.station_ae
            values["station_name"] = values["station_name"] or rule.station_name
            del reader.locations[prefix + "station_ae"]  # a site rule, not a field, chose it
    return StepData(start=start or _NO_START, **values)


def _merge_command(reader: _Reader, scope: _Scope) -> MergePatients:
    surviving = _patient(reader, scope)
    prior_id = reader.read("merge.prior_patient_id", scope, PRIOR_PATIENT)
    prior_issuer = reader.read("merge.prior_issuer", scope, "prior_issuer")
    reader.locations[KEY] = reader.locations[PRIOR_PATIENT]
    reader.require(PRIOR_PATIENT, bool(prior_id))
    return MergePatients(surviving, prior_id, prior_issuer)


_NO_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # stands in while a missing start is being reported
_KEY_FIELDS = ("accession_number", "filler_order_number", "placer_order_number")  # OrderKey's precedence
_PATIENT_FIELDS = ("patient_id", "issuer", "name", "birth_date", "sex")
_ORDER_FIELDS = (
    "accession_number",
    "placer_order_number",
    "filler_order_number",
    "requesting_physician",
    "referring_physician",
    "priority",
    "reason",
    "admission_id",
    "patient_location",
    "comments",
)
_PROCEDURE_FIELDS = ("requested_procedure_id", "code", "description", "study_uid")
_STEP_FIELDS = (
    "modality",
    "station_ae",
    "station_name",
    "sps_id",
    "description",
    "protocol",
    "performing_physician",
    "location",
)
