"""The ``ris`` command, run as a real process."""

from __future__ import annotations

import json
from pathlib import Path

from ris.settings import Settings
from tests.support.items import item_row, write_csv, write_json
from tests.support.processes import run_ris


def test_import_export_round_trip(settings: Settings, tmp_path: Path) -> None:
    source = write_json(tmp_path / "items.json", [item_row(n) for n in range(1, 4)])
    result = run_ris(settings, "import", str(source))
    assert result.returncode == 0, result.stderr
    assert "imported 3 item(s)" in result.stdout
    exported = run_ris(settings, "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert [row["accession_number"] for row in json.loads(exported.stdout)] == [
        "A2600000001",
        "A2600000002",
        "A2600000003",
    ]
    out = tmp_path / "out.csv"
    assert run_ris(settings, "export", "-o", str(out), "--open-only").returncode == 0
    assert out.read_text(encoding="utf-8").count("\n") == 4


def test_import_reports_every_bad_row_and_imports_nothing(settings: Settings, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "items.csv", [item_row(1), item_row(2, modality="XX"), item_row(3, patient_sex="Q")])
    result = run_ris(settings, "import", str(source))
    assert result.returncode == 1
    assert f"{source}: line 3: procedures[0].steps[0].modality: is not a DICOM modality code" in result.stderr
    assert f"{source}: line 4: patient.sex: must be M, F, O or empty" in result.stderr
    assert "nothing was imported" in result.stderr
    assert json.loads(run_ris(settings, "export").stdout) == []


def test_import_clash_with_stored_orders_names_the_line(settings: Settings, tmp_path: Path) -> None:
    assert run_ris(settings, "import", str(write_json(tmp_path / "a.json", [item_row(1)]))).returncode == 0
    second = write_json(tmp_path / "b.json", [item_row(2), item_row(1)])
    second_object_line = [n for n, line in enumerate(second.read_text().splitlines(), 1) if line == "{"][1]
    result = run_ris(settings, "import", str(second))
    assert result.returncode == 1
    assert f"line {second_object_line}: accession number 'A2600000001' is already stored" in result.stderr
    assert "nothing was imported" in result.stderr


def test_remote_ae_management(settings: Settings) -> None:
    added = run_ris(settings, "ae", "add", "PACS", "--host", "10.0.0.5", "--port", "104", "--role", "ian-destination")
    assert added.returncode == 0, added.stderr
    assert run_ris(settings, "ae", "add", "CT_RAD_01", "--role", "station", "--own-items-only").returncode == 0
    duplicate = run_ris(settings, "ae", "add", "PACS", "--host", "h", "--port", "104", "--role", "ian-destination")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    bad = run_ris(settings, "ae", "add", "MPPSFWD", "--role", "mpps-forward")
    assert bad.returncode == 1
    assert "host: a destination needs a host and a port" in bad.stderr
    listing = run_ris(settings, "ae", "list").stdout
    assert "PACS" in listing
    assert "10.0.0.5" in listing
    assert "station, own-items-only" in listing
    assert run_ris(settings, "ae", "remove", "PACS").returncode == 0
    missing = run_ris(settings, "ae", "remove", "PACS")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_bad_setting_stops_with_one_line(settings: Settings) -> None:
    result = run_ris(settings, "ae", "list", RIS_DICOM_PORT="eleven")
    assert result.returncode == 2
    assert result.stderr == "ris: bad setting: dicom_port (from RIS_DICOM_PORT): 'eleven' is not an integer\n"


def test_db_status_and_upgrade(settings: Settings, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    status = run_ris(settings, "db", "status", RIS_DATABASE_URL=fresh)
    assert status.returncode == 1
    assert "schema empty: needs `ris db upgrade`" in status.stdout
    assert run_ris(settings, "db", "upgrade", RIS_DATABASE_URL=fresh).returncode == 0
    status = run_ris(settings, "db", "status", RIS_DATABASE_URL=fresh)
    assert status.returncode == 0
    assert "up to date" in status.stdout
