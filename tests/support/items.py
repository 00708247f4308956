"""Flat worklist items in the import format (the benchmark generator's items.json/items.csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ris.transfer import ITEM_FIELDS


def item_row(n: int, **overrides: str) -> dict[str, str]:
    row = {
        "specific_character_set": "ISO_IR 100",
        "patient_id": f"{10000000 + n:08d}",
        "issuer_of_patient_id": "KLINIKUM_BENCH",
        "patient_name": "MÜLLER^JÜRGEN" if n % 3 == 0 else "SCHMIDT^ANNA",
        "patient_birth_date": "19600101",
        "patient_sex": "M",
        "accession_number": f"A26{n:08d}",
        "requested_procedure_id": f"RP{n:08d}",
        "requested_procedure_description": "CT Thorax mit KM",
        "requested_procedure_code_value": "CTTHXKM",
        "requested_procedure_code_scheme": "99BENCH",
        "requested_procedure_code_meaning": "CT Thorax mit KM",
        "requested_procedure_priority": "ROUTINE",
        "study_instance_uid": f"2.25.{1000 + n}",
        "referring_physician_name": "WEBER^KLAUS^^DR.",
        "requesting_physician": "BRAUN^ANDREA^^DR.",
        "admission_id": f"F{n:09d}",
        "sps_id": f"SPS{n:08d}",
        "sps_description": "CT Thorax mit KM",
        "sps_status": "SCHEDULED",
        "modality": "CT",
        "scheduled_station_ae_title": "CT_RAD_01",
        "scheduled_station_name": "CTRAD1",
        "sps_location": "RAD UG R104",
        "sps_start_date": "20261123",
        "sps_start_time": f"{7 + n % 12:02d}0000",
        "scheduled_performing_physician_name": "KRÜGER^STEFAN^^DR.",
        "protocol_code_value": "CTTHXKM",
        "protocol_code_scheme": "99BENCH",
        "protocol_code_meaning": "CT Thorax mit KM",
    }
    return row | overrides


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    # indent=0 like the generator: one line per key, so each object spans many lines
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=0), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=ITEM_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path
