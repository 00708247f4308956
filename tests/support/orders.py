"""Building orders for tests with only the fields a test cares about."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

from ris.domain.model import CodedEntry, NewOrder, OrderData, PatientData, ProcedureData, StepData

BERLIN = ZoneInfo("Europe/Berlin")
_numbers = itertools.count(1)


def local(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def step(**fields: Any) -> StepData:
    values: dict[str, Any] = {
        "modality": "CT",
        "start": local(2026, 11, 23, 9, 30),
        "station_ae": "CT_RAD_01",
        "station_name": "CTRAD1",
        "description": "CT Thorax mit KM",
        "protocol": CodedEntry("CTTHXKM", "99RAD", "CT Thorax mit KM"),
        "performing_physician": "WEBER^KLAUS^^DR.",
        "location": "RAD UG R104",
    }
    return StepData(**(values | fields))


def new_order(
    *,
    patient: dict[str, Any] | None = None,
    order: dict[str, Any] | None = None,
    steps: tuple[StepData, ...] | None = None,
    procedure: dict[str, Any] | None = None,
    character_set: str = "",
) -> NewOrder:
    """A valid CT order with unique identifiers; pass dicts to override fields."""
    n = next(_numbers)
    patient_fields = {
        "patient_id": f"P{n:06d}",
        "issuer": "KLINIKUM",
        "name": "MÜLLER^HANS",
        "birth_date": "19600101",
        "sex": "M",
    } | (patient or {})
    order_fields = {
        "accession_number": f"A{n:08d}",
        "placer_order_number": f"PL{n}",
        "requesting_physician": "BRAUN^ANDREA",
        "referring_physician": "KRÜGER^STEFAN",
    } | (order or {})
    procedure_fields: dict[str, Any] = {
        "requested_procedure_id": f"RP{n:06d}",
        "code": CodedEntry("CTTHXKM", "99RAD", "CT Thorax mit KM"),
        "description": "CT Thorax mit KM",
        "study_uid": f"1.2.826.0.1.3680043.10.1474.9.{n}",
    } | (procedure or {})
    return NewOrder(
        patient=PatientData(**patient_fields),
        order=OrderData(**order_fields),
        procedures=(ProcedureData(steps=steps or (step(sps_id=f"SPS{n:06d}"),), **procedure_fields),),
        character_set=character_set,
    )


def replace_step(command: NewOrder, **fields: Any) -> NewOrder:
    """The same order with the first step changed."""
    procedure = command.procedures[0]
    changed = dataclasses.replace(procedure.steps[0], **fields)
    return dataclasses.replace(command, procedures=(dataclasses.replace(procedure, steps=(changed,)),))
