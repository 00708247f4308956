"""``ris hl7 send | log | mapping`` and the listener's start-up checks, as the interface team uses them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hl7.intake import Intake
from hl7.mapping import OrderMapping
from hl7.server import MllpServer
from ris.services import RisService
from ris.settings import Settings
from tests.support.hl7_messages import orm
from tests.support.processes import free_port, run_ris


@pytest.fixture
def server(service: RisService) -> Iterator[MllpServer]:
    mllp = MllpServer(Intake(service, OrderMapping(), default_charset="UNICODE UTF-8"), host="127.0.0.1", port=0)
    mllp.start()
    yield mllp
    mllp.stop()


def target(server: MllpServer) -> str:
    host, port = server.address
    return f"{host}:{port}"


def test_send_a_file_prints_each_ack(settings: Settings, server: MllpServer, tmp_path: Path) -> None:
    good = orm(control_id="FILE1").replace("\r", "\n")  # files usually have LF line ends
    bad = orm(control_id="FILE2", modality="??").replace("\r", "\r\n")
    path = tmp_path / "messages.hl7"
    path.write_text(good + "\n" + bad, encoding="utf-8")
    result = run_ris(settings, "hl7", "send", str(path), "--to", target(server))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "FILE1: AA"
    assert lines[1].startswith("FILE2: AE OBR-24 (Diagnostic Serv Sect ID): modality is not")
    assert lines[2].startswith("    OBR^1^24: 102 Data type error: OBR-24")


def test_send_sample_then_log(settings: Settings, server: MllpServer) -> None:
    result = run_ris(settings, "hl7", "send", "--sample", "--to", target(server))
    assert result.returncode == 0, result.stderr
    control_id = result.stdout.split(":")[0]
    assert result.stdout.strip() == f"{control_id}: AA"
    run_ris(settings, "hl7", "send", "--sample", "--to", target(server))

    log = run_ris(settings, "hl7", "log")
    assert log.returncode == 0, log.stderr
    rows = log.stdout.splitlines()
    assert len(rows) == 2
    assert rows[1].split()[2:5] == ["AA", "RISTEST/SITE", control_id]
    assert rows[1].split()[5:] == ["ORM^O01", "order=1"]

    shown = run_ris(settings, "hl7", "log", "--control-id", control_id, "--show").stdout
    assert "    message:\n      MSH|^~\\&|RISTEST|SITE|" in shown
    assert f"      MSA|AA|{control_id}" in shown
    assert run_ris(settings, "hl7", "log", "--errors").stdout == ""


def test_send_reports_a_listener_that_is_not_there(settings: Settings) -> None:
    result = run_ris(settings, "hl7", "send", "--sample", "--to", f"127.0.0.1:{free_port()}", "--timeout", "5")
    assert result.returncode == 1
    assert ": no ACK: cannot connect to 127.0.0.1:" in result.stdout


def test_mapping_view_shows_the_site_file(settings: Settings) -> None:
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    (settings.instance_path / "hl7.toml").write_text('[fields]\n"step.station_ae" = "ZDS-2"\n', encoding="utf-8")
    shown = run_ris(settings, "hl7", "mapping", RIS_HL7_MAPPING_FILE="hl7.toml").stdout
    assert "step.modality                      text         IPC-5 (Modality), OBR-24 (Diagnostic Serv Sect ID)" in shown
    assert "step.station_ae                    text         ZDS-2\n" in shown
    assert "  SC/CM   complete" in shown


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RIS_HL7_MAPPING_FILE": "absent.toml"}, "ris: hl7_mapping_file: "),
        ({"RIS_HL7_DEFAULT_CHARSET": "EBCDIC"}, "ris: hl7_default_charset: unsupported character set 'EBCDIC'"),
        ({"RIS_HL7_TLS_CERT": "absent.pem"}, "ris: hl7_tls_cert/hl7_tls_key: cannot load"),
        ({"RIS_HL7_TLS_KEY": "key.pem"}, "ris: hl7_tls_key is set but hl7_tls_cert is not"),
    ],
)
def test_listener_refuses_to_start_with_one_line(settings: Settings, env: dict[str, str], message: str) -> None:
    result = run_ris(settings, "listen", RIS_HL7_PORT=str(free_port()), RIS_DICOM_PORT=str(free_port()), **env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(message), result.stderr
