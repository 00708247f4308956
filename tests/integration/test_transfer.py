"""Import and export of worklist files: good files, bad rows with line numbers, all or nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ris import services
from ris.domain.errors import ValidationFailed
from ris.domain.model import Actor
from ris.domain.worklist import WorklistQuery
from ris.services import RisService
from ris.transfer import ImportRejected, read_orders, write_items
from tests.support.items import item_row, write_csv, write_json

IMPORTER = Actor("cli", "test")


@pytest.mark.parametrize("writer", [write_json, write_csv])
def test_a_good_file_is_imported_whole(service: RisService, tmp_path: Path, writer: object) -> None:
    rows = [item_row(n) for n in range(1, 21)] + [item_row(21, patient_id="10000001")]  # a patient's 2nd order
    path = writer(tmp_path / ("items." + ("json" if writer is write_json else "csv")), rows)  # type: ignore[operator]
    numbered = read_orders(path, service.zone)
    assert service.import_orders([order for _line, order in numbered], IMPORTER) == 21
    items = service.find_worklist_items(WorklistQuery()).items
    assert len(items) == 21
    first = next(item for item in items if item["AccessionNumber"] == "A2600000003")
    assert first["PatientName"] == "MÜLLER^JÜRGEN"
    assert first["SpecificCharacterSet"] == "ISO_IR 100"
    sps = first["ScheduledProcedureStepSequence"][0]
    assert (sps["ScheduledProcedureStepStartDate"], sps["ScheduledProcedureStepStartTime"]) == ("20261123", "100000")
    assert sps["ScheduledProtocolCodeSequence"][0]["CodeValue"] == "CTTHXKM"


def test_a_file_larger_than_one_insert_batch_keeps_each_row_with_its_patient(
    service: RisService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "IMPORT_BATCH", 3)
    rows = [item_row(n) for n in range(1, 8)] + [item_row(8, patient_id="10000001")]  # a patient's 2nd order
    numbered = read_orders(write_json(tmp_path / "items.json", rows), service.zone)
    assert service.import_orders([order for _line, order in numbered], IMPORTER) == 8
    items = service.find_worklist_items(WorklistQuery()).items
    by_accession = {item["AccessionNumber"]: item for item in items}
    assert sorted(by_accession) == sorted(row["accession_number"] for row in rows)
    for row in rows:
        item = by_accession[row["accession_number"]]
        assert item["PatientID"] == row["patient_id"]
        assert item["StudyInstanceUID"] == row["study_instance_uid"]


def test_export_round_trips_the_import_format(service: RisService, tmp_path: Path) -> None:
    rows = [item_row(n) for n in range(1, 6)]
    service.import_orders([o for _l, o in read_orders(write_json(tmp_path / "in.json", rows), service.zone)], IMPORTER)
    for fmt in ("json", "csv"):
        out = io.StringIO()
        assert write_items(service.export_items(), out, fmt) == 5
        exported = tmp_path / f"out.{fmt}"
        exported.write_text(out.getvalue(), encoding="utf-8")
        if fmt == "json":
            assert json.loads(out.getvalue()) == rows
        again = [order for _line, order in read_orders(exported, service.zone)]
        assert [o.order.accession_number for o in again] == [r["accession_number"] for r in rows]


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(service: RisService, tmp_path: Path) -> None:
    rows = [
        item_row(1),
        item_row(2, modality="XX"),
        item_row(3, sps_start_date="2026-11-23"),
        item_row(4, patient_name=""),
        item_row(5, accession_number="A2600000001"),
        item_row(6, sps_status="COMPLETED"),
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(ImportRejected) as caught:
        read_orders(path, service.zone)
    by_line = {p.line: p.message for p in caught.value.problems}
    assert set(by_line) == {3, 4, 5, 6, 7}  # the header is line 1
    assert "modality" in by_line[3]
    assert "sps_start_date '2026-11-23'" in by_line[4]
    assert "patient_name is required" in by_line[5]
    assert "already appears on line 2" in by_line[6]
    assert "only SCHEDULED" in by_line[7]
    assert service.find_worklist_items(WorklistQuery()).items == []


def test_json_line_numbers_point_at_the_object(service: RisService, tmp_path: Path) -> None:
    rows = [item_row(1), item_row(2, patient_sex="X")]
    path = write_json(tmp_path / "bad.json", rows)
    with pytest.raises(ImportRejected) as caught:
        read_orders(path, service.zone)
    (problem,) = caught.value.problems
    text_lines = path.read_text(encoding="utf-8").splitlines()
    assert text_lines[problem.line - 1].startswith("{")
    assert '"patient_sex": "X"' in "\n".join(text_lines[problem.line - 1 : problem.line + 32])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "array of items"),
        ("[1, 2]", "JSON object"),
        ('[{"patient_id": "1"} {}]', "expected ','"),
        ('[{"patient_id": }]', "not valid JSON"),
        ('[{"colour": "red"}]', "unknown column"),
    ],
)
def test_malformed_json_is_rejected(service: RisService, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ImportRejected) as caught:
        read_orders(path, service.zone)
    assert message in str(caught.value.problems[0])


def test_csv_without_required_columns_is_rejected(service: RisService, tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("patient_id,patient_name\n1,DOE^JOHN\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match="bad row"):
        read_orders(path, service.zone)


def test_rows_clashing_with_stored_orders_abort_the_import(service: RisService, tmp_path: Path) -> None:
    service.import_orders(
        [o for _l, o in read_orders(write_json(tmp_path / "a.json", [item_row(1)]), service.zone)], IMPORTER
    )
    second = read_orders(
        write_json(tmp_path / "b.json", [item_row(2), item_row(1, study_instance_uid="2.25.9")]), service.zone
    )
    with pytest.raises(ValidationFailed) as caught:
        service.import_orders([o for _l, o in second], IMPORTER)
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("[1]", "accession number 'A2600000001' is already stored")
    ]
    assert len(service.find_worklist_items(WorklistQuery()).items) == 1
