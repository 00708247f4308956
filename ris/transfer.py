"""Worklist import and export files: a JSON array or a CSV table of flat items.

One item = one order with one requested procedure and one scheduled step. The columns are those of
the benchmark generator's ``items.json``/``items.csv`` (see ``ITEM_FIELDS``); SPS start date and
time are the site's local time. Reading collects every bad row with its line number before
anything is stored, so a file is imported whole or not at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ris.domain.errors import DomainError, ValidationFailed
from ris.domain.model import CodedEntry, NewOrder, OrderData, PatientData, ProcedureData, StepData
from ris.domain.status import StepStatus
from ris.domain.validation import validate_new_order
from ris.domain.values import parse_da, parse_tm
from ris.domain.worklist import SPS_SEQUENCE, Item

ITEM_FIELDS = (
    "specific_character_set",
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "accession_number",
    "requested_procedure_id",
    "requested_procedure_description",
    "requested_procedure_code_value",
    "requested_procedure_code_scheme",
    "requested_procedure_code_meaning",
    "requested_procedure_priority",
    "study_instance_uid",
    "referring_physician_name",
    "requesting_physician",
    "admission_id",
    "sps_id",
    "sps_description",
    "sps_status",
    "modality",
    "scheduled_station_ae_title",
    "scheduled_station_name",
    "sps_location",
    "sps_start_date",
    "sps_start_time",
    "scheduled_performing_physician_name",
    "protocol_code_value",
    "protocol_code_scheme",
    "protocol_code_meaning",
)
REQUIRED_FIELDS = frozenset({"patient_id", "patient_name", "modality", "sps_start_date"})
_KNOWN_FIELDS = frozenset(ITEM_FIELDS)

# Column -> (item attribute, inside the SPS sequence?) for export; code sequences are handled apart.
_ITEM_ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "specific_character_set": ("SpecificCharacterSet", False),
    "patient_id": ("PatientID", False),
    "issuer_of_patient_id": ("IssuerOfPatientID", False),
    "patient_name": ("PatientName", False),
    "patient_birth_date": ("PatientBirthDate", False),
    "patient_sex": ("PatientSex", False),
    "accession_number": ("AccessionNumber", False),
    "requested_procedure_id": ("RequestedProcedureID", False),
    "requested_procedure_description": ("RequestedProcedureDescription", False),
    "requested_procedure_priority": ("RequestedProcedurePriority", False),
    "study_instance_uid": ("StudyInstanceUID", False),
    "referring_physician_name": ("ReferringPhysicianName", False),
    "requesting_physician": ("RequestingPhysician", False),
    "admission_id": ("AdmissionID", False),
    "sps_id": ("ScheduledProcedureStepID", True),
    "sps_description": ("ScheduledProcedureStepDescription", True),
    "sps_status": ("ScheduledProcedureStepStatus", True),
    "modality": ("Modality", True),
    "scheduled_station_ae_title": ("ScheduledStationAETitle", True),
    "scheduled_station_name": ("ScheduledStationName", True),
    "sps_location": ("ScheduledProcedureStepLocation", True),
    "sps_start_date": ("ScheduledProcedureStepStartDate", True),
    "sps_start_time": ("ScheduledProcedureStepStartTime", True),
    "scheduled_performing_physician_name": ("ScheduledPerformingPhysicianName", True),
}
_CODE_SEQUENCES = {
    "requested_procedure_code": ("RequestedProcedureCodeSequence", False),
    "protocol_code": ("ScheduledProtocolCodeSequence", True),
}


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(DomainError):
    """The file has bad rows; none of it was stored."""

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} bad row(s); nothing was imported")


def file_format(path: Path, explicit: str | None = None) -> str:
    chosen = explicit or path.suffix.lower().lstrip(".")
    if chosen not in ("json", "csv"):
        raise ValueError(f"{path}: say --format json or --format csv (cannot tell from the name)")
    return chosen


def read_orders(path: Path, zone: ZoneInfo, fmt: str | None = None) -> list[tuple[int, NewOrder]]:
    """Every row of ``path`` as (line number, validated order); :class:`ImportRejected` lists all
    bad rows."""
    text = path.read_text(encoding="utf-8-sig")
    rows = _json_rows(text) if file_format(path, fmt) == "json" else _csv_rows(text)
    orders: list[tuple[int, NewOrder]] = []
    problems: list[RowProblem] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        try:
            order = row_to_order(row, zone)
            validate_new_order(order)
        except ValidationFailed as exc:
            problems += [RowProblem(line, str(p)) for p in exc.problems]
            continue
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        for key in _unique_keys(order):
            if key in seen:
                problems.append(RowProblem(line, f"{key[0]} {key[1]!r} already appears on line {seen[key]}"))
            seen.setdefault(key, line)
        orders.append((line, order))
    if problems:
        raise ImportRejected(problems)
    return orders


def _unique_keys(order: NewOrder) -> Iterator[tuple[str, str]]:
    if order.order.accession_number:
        yield ("accession_number", order.order.accession_number)
    for procedure in order.procedures:
        if procedure.study_uid:
            yield ("study_instance_uid", procedure.study_uid)


def _json_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line where the object starts, object) for each element of a JSON array."""
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if text[position : position + 1] != "[":
        raise ImportRejected([RowProblem(1, "a JSON import file must hold an array of items")])
    position += 1
    line, counted_to = 1, 0
    while True:
        position = _skip_space(text, position)
        if text.startswith("]", position):
            return
        line += text.count("\n", counted_to, position)
        counted_to = position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ImportRejected([RowProblem(exc.lineno, f"not valid JSON: {exc.msg}")]) from None
        if not isinstance(value, dict):
            raise ImportRejected([RowProblem(line, "each item must be a JSON object")])
        yield line, value
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            line_here = text.count("\n", 0, position) + 1
            raise ImportRejected([RowProblem(line_here, "expected ',' or ']' after an item")])


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = REQUIRED_FIELDS - set(reader.fieldnames or ())
    if missing:
        raise ImportRejected([RowProblem(1, f"the header lacks the column(s) {', '.join(sorted(missing))}")])
    for row in reader:
        yield reader.line_num, row


def row_to_order(row: dict[str, Any], zone: ZoneInfo) -> NewOrder:
    """One flat item as an order command. Raises ValueError for what cannot even be read."""
    unknown = row.keys() - _KNOWN_FIELDS
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(sorted(map(str, unknown)))}")
    values = {name: _text(row.get(name), name) for name in ITEM_FIELDS}
    for name in sorted(REQUIRED_FIELDS):
        if not values[name]:
            raise ValueError(f"{name} is required")
    status = values["sps_status"] or StepStatus.SCHEDULED
    if status != StepStatus.SCHEDULED:
        raise ValueError(f"sps_status {status!r}: only SCHEDULED items can be imported")
    return NewOrder(
        patient=PatientData(
            patient_id=values["patient_id"],
            issuer=values["issuer_of_patient_id"],
            name=values["patient_name"],
            birth_date=values["patient_birth_date"],
            sex=values["patient_sex"],
        ),
        order=OrderData(
            accession_number=values["accession_number"],
            requesting_physician=values["requesting_physician"],
            referring_physician=values["referring_physician_name"],
            priority=values["requested_procedure_priority"] or "ROUTINE",
            admission_id=values["admission_id"],
        ),
        procedures=(
            ProcedureData(
                requested_procedure_id=values["requested_procedure_id"],
                code=_code(values, "requested_procedure_code"),
                description=values["requested_procedure_description"],
                study_uid=values["study_instance_uid"],
                steps=(
                    StepData(
                        modality=values["modality"],
                        start=_local_start(values["sps_start_date"], values["sps_start_time"], zone),
                        station_ae=values["scheduled_station_ae_title"],
                        station_name=values["scheduled_station_name"],
                        sps_id=values["sps_id"],
                        description=values["sps_description"],
                        protocol=_code(values, "protocol_code"),
                        performing_physician=values["scheduled_performing_physician_name"],
                        location=values["sps_location"],
                    ),
                ),
            ),
        ),
        character_set=values["specific_character_set"],
    )


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    return value.strip()


def _code(values: dict[str, str], prefix: str) -> CodedEntry | None:
    value, scheme, meaning = (values[f"{prefix}_{part}"] for part in ("value", "scheme", "meaning"))
    return CodedEntry(value, scheme, meaning) if value or scheme or meaning else None


def _local_start(date: str, time: str, zone: ZoneInfo) -> dt.datetime:
    try:
        day = parse_da(date)
    except ValueError:
        raise ValueError(f"sps_start_date {date!r} is not a date YYYYMMDD") from None
    try:
        clock = parse_tm(time) if time else dt.time()
    except ValueError:
        raise ValueError(f"sps_start_time {time!r} is not a time HHMMSS") from None
    return dt.datetime.combine(day, clock, tzinfo=zone)


# --- export -------------------------------------------------------------------------------------


def item_to_row(item: Item) -> dict[str, str]:
    sps = (item.get(SPS_SEQUENCE) or [{}])[0]
    row = {
        column: str((sps if in_sps else item).get(keyword, ""))
        for column, (keyword, in_sps) in _ITEM_ATTRIBUTES.items()
    }
    for prefix, (keyword, in_sps) in _CODE_SEQUENCES.items():
        codes = (sps if in_sps else item).get(keyword) or [{}]
        row[f"{prefix}_value"] = codes[0].get("CodeValue", "")
        row[f"{prefix}_scheme"] = codes[0].get("CodingSchemeDesignator", "")
        row[f"{prefix}_meaning"] = codes[0].get("CodeMeaning", "")
    return {column: row[column] for column in ITEM_FIELDS}


def write_items(items: Iterable[Item], out: io.TextIOBase | Any, fmt: str) -> int:
    rows = [item_to_row(item) for item in items]
    if fmt == "json":
        json.dump(rows, out, ensure_ascii=False, indent=0)
        out.write("\n")
    else:
        writer = csv.DictWriter(out, fieldnames=ITEM_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
