"""The HL7 v2 → order mapping as data (DESIGN §5), overridable per site with a TOML file.

- `DEFAULT_FIELDS`: which HL7 fields feed which value of an order, patient or merge. Each target
  lists candidate fields; the first one with a value wins (e.g. the SPS start from TQ1-7, ORC-7.4 or
  OBR-27.4, whichever the sender fills). The target names are the domain's own field paths, so a
  problem the service reports ("procedures[0].steps[0].modality") leads back to the HL7 field that
  supplied the value.
- `DEFAULT_ORDER_CONTROL`: what ORC-1 (with ORC-5 where it matters) does.
- `DEFAULT_PRIORITIES`: ORC-7.6 / TQ1-9 codes → DICOM Requested Procedure Priority.
- station rules: the Scheduled Station AE title (and name) for a modality, optionally only for one
  patient location, when the message does not name the station.

A site file (setting ``hl7_mapping_file``) replaces single entries; everything it leaves out keeps
its default::

    default_coding_scheme = "99KLINIKUM"

    [fields]
    "step.station_ae" = ["ZDS-2", "OBR-21"]
    "patient.patient_id" = "PID-2.1"

    [order_control]
    "SC/A" = "arrive"      # ORC-1 SC with ORC-5 A
    "OC" = "cancel"        # ORC-1 OC, any ORC-5
    "SC/CM" = "reject"     # remove a default row

    [priorities]
    "P" = "HIGH"

    [[station_rules]]
    modality = "CT"
    location = "NOTAUF"    # optional: the patient location (PV1-3), or its point of care
    station_ae = "CT_NOTAUF_01"
    station_name = "CTNOTAUF1"   # optional
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hl7.er7 import FieldPath
from ris.domain.status import StepStatus
from ris.domain.values import PRIORITIES, ae_title_problem, sh_problem

ANY_STATUS = "*"
"""Order control rows that apply whatever ORC-5 says."""


class ValueKind(enum.StrEnum):
    """How the text at a field becomes a domain value."""

    TEXT = "text"
    """The component (or subcomponent) the path names, unescaped."""
    JOINED = "joined"
    """The non-empty components 1-3 of the field joined by spaces (PV1-3 point of care, room, bed)."""
    LINES = "lines"
    """The path read in every segment of that name (NTE-3 of each NTE), one line each."""
    PERSON_NAME = "person_name"
    """A DICOM PN from an XPN/XCN/CNN: the path names the family name; given name, middle name, suffix
    and prefix follow it (as components, or as subcomponents when the path names a subcomponent)."""
    DATE = "date"
    """DA (YYYYMMDD) from a TS/DTM; a value less precise than a day is left empty."""
    DATETIME = "datetime"
    """An aware datetime from a TS/DTM; without an offset the time is the site's local time."""
    SEX = "sex"
    """DICOM M/F/O from HL7 table 0001."""
    PRIORITY = "priority"
    """DICOM priority through the priority table; empty means ROUTINE."""
    CODE = "code"
    """A coded entry from a CE/CWE: identifier, text, coding system (components 1-3)."""


@dataclass(frozen=True)
class FieldRule:
    """One target: how its value is read, and where from (first non-empty candidate wins)."""

    kind: ValueKind
    sources: tuple[FieldPath, ...]


class OrderAction(enum.StrEnum):
    """What an order control code does."""

    SCHEDULE = "schedule"
    UPDATE = "update"
    ARRIVE = "arrive"
    START = "start"
    COMPLETE = "complete"
    DISCONTINUE = "discontinue"
    CANCEL = "cancel"

    @property
    def target_status(self) -> StepStatus | None:
        """The status every open step moves to; None for actions that carry the whole order."""
        return _ACTION_STATUS.get(self)


_ACTION_STATUS = {
    OrderAction.ARRIVE: StepStatus.ARRIVED,
    OrderAction.START: StepStatus.STARTED,
    OrderAction.COMPLETE: StepStatus.COMPLETED,
    OrderAction.DISCONTINUE: StepStatus.DISCONTINUED,
    OrderAction.CANCEL: StepStatus.CANCELED,
}
_REMOVE_ROW = "reject"


@dataclass(frozen=True)
class StationRule:
    """Orders for ``modality`` (at ``location``, when given) go to this station."""

    modality: str
    station_ae: str
    station_name: str = ""
    location: str = ""

    def matches(self, modality: str, patient_location: str) -> bool:
        if modality != self.modality:
            return False
        if not self.location:
            return True
        return patient_location == self.location or patient_location.startswith(self.location + " ")


def _rule(kind: ValueKind, *sources: str) -> FieldRule:
    return FieldRule(kind, tuple(FieldPath.parse(source) for source in sources))


K = ValueKind
# Target → rule. Order and procedure values come from the ORC/OBR group of the order (and, in an
# OMI^O23, its first IPC); step values from the step's own IPC segment, else from the group. The
# IPC fields are listed first: ORM messages have no IPC segment, so for them the OBR field applies.
DEFAULT_FIELDS: dict[str, FieldRule] = {
    "patient.patient_id": _rule(K.TEXT, "PID-3.1", "PID-2.1"),
    "patient.issuer": _rule(K.TEXT, "PID-3.4"),
    "patient.name": _rule(K.PERSON_NAME, "PID-5"),
    "patient.birth_date": _rule(K.DATE, "PID-7"),
    "patient.sex": _rule(K.SEX, "PID-8"),
    "order.referring_physician": _rule(K.PERSON_NAME, "PV1-8.2"),
    "order.admission_id": _rule(K.TEXT, "PV1-19"),
    "order.patient_location": _rule(K.JOINED, "PV1-3"),
    "order.placer_order_number": _rule(K.TEXT, "ORC-2", "OBR-2"),
    "order.filler_order_number": _rule(K.TEXT, "ORC-3", "OBR-3"),
    "order.priority": _rule(K.PRIORITY, "TQ1-9", "ORC-7.6", "OBR-27.6"),
    "order.requesting_physician": _rule(K.PERSON_NAME, "OBR-16.2", "ORC-12.2"),
    "order.accession_number": _rule(K.TEXT, "IPC-1", "OBR-18"),
    "order.reason": _rule(K.TEXT, "OBR-31.2", "OBR-31.1"),
    "order.comments": _rule(K.LINES, "NTE-3"),
    "procedure.requested_procedure_id": _rule(K.TEXT, "IPC-2", "OBR-19"),
    "procedure.code": _rule(K.CODE, "OBR-4"),
    "procedure.description": _rule(K.TEXT, "OBR-44.2", "OBR-4.2"),
    "procedure.study_uid": _rule(K.TEXT, "IPC-3", "ZDS-1"),
    "step.start": _rule(K.DATETIME, "TQ1-7", "ORC-7.4", "OBR-27.4"),
    "step.modality": _rule(K.TEXT, "IPC-5", "OBR-24"),
    "step.station_ae": _rule(K.TEXT, "IPC-9", "OBR-21"),
    "step.station_name": _rule(K.TEXT, "IPC-7"),
    "step.sps_id": _rule(K.TEXT, "IPC-4", "OBR-20"),
    "step.description": _rule(K.TEXT, "OBR-4.2"),
    "step.protocol": _rule(K.CODE, "IPC-6", "OBR-4"),
    "step.performing_physician": _rule(K.PERSON_NAME, "OBR-34.1.2"),
    "step.location": _rule(K.TEXT, "IPC-8"),
    "status.reason": _rule(K.TEXT, "ORC-16.2", "ORC-16.1"),
    "merge.prior_patient_id": _rule(K.TEXT, "MRG-1.1"),
    "merge.prior_issuer": _rule(K.TEXT, "MRG-1.4"),
}

# (ORC-1, ORC-5 or ANY_STATUS) → action. A row for a specific ORC-5 wins over the ANY_STATUS row.
DEFAULT_ORDER_CONTROL: dict[tuple[str, str], OrderAction] = {
    ("NW", ANY_STATUS): OrderAction.SCHEDULE,
    ("XO", ANY_STATUS): OrderAction.UPDATE,
    ("CA", ANY_STATUS): OrderAction.CANCEL,
    ("DC", ANY_STATUS): OrderAction.DISCONTINUE,
    ("SC", "IP"): OrderAction.START,
    ("SC", "CM"): OrderAction.COMPLETE,
}

# ORC-7.6 / TQ1-9 (HL7 table 0027) → Requested Procedure Priority.
DEFAULT_PRIORITIES: dict[str, str] = {
    "S": "STAT",
    "STAT": "STAT",
    "A": "HIGH",
    "ASAP": "HIGH",
    "R": "ROUTINE",
    "ROUTINE": "ROUTINE",
}

# HL7 table 0001 (administrative sex) → DICOM Patient's Sex; unknown and not applicable stay empty.
SEXES: dict[str, str] = {"M": "M", "F": "F", "O": "O", "A": "O", "U": "", "N": ""}

DEFAULT_CODING_SCHEME = "99LOCAL"
"""Coding Scheme Designator for a code whose coding system component is empty (DICOM needs one)."""


class MappingError(ValueError):
    """The site's mapping file cannot be used; the message is one line naming the entry."""


@dataclass(frozen=True)
class OrderMapping:
    """The complete mapping of a site: the defaults with the site's file applied."""

    fields: MappingType[str, FieldRule] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    order_control: MappingType[tuple[str, str], OrderAction] = field(
        default_factory=lambda: dict(DEFAULT_ORDER_CONTROL)
    )
    priorities: MappingType[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    station_rules: tuple[StationRule, ...] = ()
    default_coding_scheme: str = DEFAULT_CODING_SCHEME

    def action(self, order_control: str, order_status: str) -> OrderAction | None:
        """The row for ORC-1 and ORC-5, or None when the table has none."""
        return self.order_control.get((order_control, order_status)) or self.order_control.get(
            (order_control, ANY_STATUS)
        )

    def station(self, modality: str, patient_location: str) -> StationRule | None:
        return next((rule for rule in self.station_rules if rule.matches(modality, patient_location)), None)


def load_mapping(path: Path | None) -> OrderMapping:
    """The defaults, with ``path`` (a TOML file, see the module docstring) applied when given.

    Raises `MappingError` with a one-line message naming the file and the entry."""
    if path is None:
        return OrderMapping()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise MappingError(f"{path}: cannot be read as TOML: {error}") from error
    try:
        return apply_overrides(OrderMapping(), document)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from error


def apply_overrides(mapping: OrderMapping, document: MappingType[str, Any]) -> OrderMapping:
    """``mapping`` with the entries of a parsed mapping file applied."""
    unknown = set(document) - {"fields", "order_control", "priorities", "station_rules", "default_coding_scheme"}
    if unknown:
        raise MappingError(
            f"unknown entry {sorted(unknown)[0]!r} (known: fields, order_control, priorities, "
            "station_rules, default_coding_scheme)"
        )
    changes: dict[str, Any] = {}
    if "fields" in document:
        changes["fields"] = {**mapping.fields, **_fields(_table(document, "fields"))}
    if "order_control" in document:
        changes["order_control"] = _order_control(mapping.order_control, _table(document, "order_control"))
    if "priorities" in document:
        changes["priorities"] = {**mapping.priorities, **_priorities(_table(document, "priorities"))}
    if "station_rules" in document:
        changes["station_rules"] = _station_rules(document["station_rules"])
    if "default_coding_scheme" in document:
        scheme = document["default_coding_scheme"]
        if not isinstance(scheme, str) or not scheme or sh_problem(scheme):
            raise MappingError(f"default_coding_scheme: {scheme!r} is not a coding scheme designator (1-16 characters)")
        changes["default_coding_scheme"] = scheme
    return replace(mapping, **changes)


def _table(document: MappingType[str, Any], name: str) -> MappingType[str, Any]:
    value = document[name]
    if not isinstance(value, dict):
        raise MappingError(f"[{name}] must be a table")
    return value


def _fields(entries: MappingType[str, Any]) -> dict[str, FieldRule]:
    rules = {}
    for target, value in entries.items():
        default = DEFAULT_FIELDS.get(target)
        if default is None:
            raise MappingError(f"fields: unknown target {target!r} (known: {', '.join(DEFAULT_FIELDS)})")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
            raise MappingError(f'fields: {target!r} must be a field path or a list of them, e.g. "OBR-21"')
        try:
            sources = tuple(FieldPath.parse(text) for text in texts)
        except ValueError as error:
            raise MappingError(f"fields: {target!r}: {error}") from None
        if default.kind is ValueKind.CODE and any(path.component is not None for path in sources):
            raise MappingError(f"fields: {target!r} is a coded entry: name the field, not a component (e.g. OBR-4)")
        rules[target] = FieldRule(default.kind, sources)
    return rules


def _order_control(
    current: MappingType[tuple[str, str], OrderAction], entries: MappingType[str, Any]
) -> dict[tuple[str, str], OrderAction]:
    table = dict(current)
    actions = ", ".join([*OrderAction, _REMOVE_ROW])
    for key, value in entries.items():
        control, _, status = key.partition("/")
        row = (control.strip(), status.strip() or ANY_STATUS)
        if len(row[0]) != 2 or not row[0].isalpha():
            raise MappingError(f'order_control: {key!r} is not ORC-1 or ORC-1/ORC-5 (e.g. "NW" or "SC/CM")')
        if value == _REMOVE_ROW:
            table.pop(row, None)
            continue
        try:
            table[row] = OrderAction(value)
        except ValueError:
            raise MappingError(f"order_control: {key!r} = {value!r} is not one of {actions}") from None
    return table


def _priorities(entries: MappingType[str, Any]) -> dict[str, str]:
    for code, priority in entries.items():
        if priority not in PRIORITIES:
            raise MappingError(f"priorities: {code!r} = {priority!r} is not one of {', '.join(sorted(PRIORITIES))}")
    return dict(entries)


def _station_rules(entries: Any) -> tuple[StationRule, ...]:
    if not isinstance(entries, list):
        raise MappingError("station_rules must be an array of tables ([[station_rules]])")
    rules = []
    for number, entry in enumerate(entries, start=1):
        where = f"station_rules #{number}"
        if not isinstance(entry, dict):
            raise MappingError(f"{where} must be a table")
        unknown = set(entry) - {"modality", "station_ae", "station_name", "location"}
        if unknown:
            raise MappingError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if not all(isinstance(value, str) for value in entry.values()):
            raise MappingError(f"{where}: every value must be text")
        if not entry.get("modality"):
            raise MappingError(f"{where}: needs a modality")
        problem = ae_title_problem(entry.get("station_ae", ""))
        if problem:
            raise MappingError(f"{where}: station_ae {problem}")
        rules.append(StationRule(**entry))
    return tuple(rules)
