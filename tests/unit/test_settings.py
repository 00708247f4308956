"""Settings: defaults < instance/config.toml < RIS_* environment < overrides; one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ris.settings import SettingsError, describe_settings, load_settings


def write_config(instance: Path, text: str) -> None:
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "config.toml").write_text(text, encoding="utf-8")


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"instance_path": tmp_path})
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'ris.db'}"
    assert (settings.dicom_ae_title, settings.dicom_port, settings.hl7_port) == ("RISBROKER", 11112, 2575)
    assert settings.web_bind == "127.0.0.1:5000"
    assert settings.timezone  # the machine's zone, or UTC


def test_config_file_overrides_defaults_and_environment_overrides_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, 'dicom_port = 104\nhl7_port = 2600\n[dicom]\nae_title = "FILEAE"\n')
    settings = load_settings(environ={"RIS_INSTANCE_PATH": str(tmp_path), "RIS_HL7_PORT": "2700"})
    assert (settings.dicom_port, settings.hl7_port, settings.dicom_ae_title) == (104, 2700, "FILEAE")
    settings = load_settings(environ={"RIS_INSTANCE_PATH": str(tmp_path)}, overrides={"dicom_port": 4242})
    assert settings.dicom_port == 4242


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RIS_DICOM_PORT": "abc"}, "dicom_port (from RIS_DICOM_PORT): 'abc' is not an integer"),
        ({"RIS_DICOM_PORT": "70000"}, "dicom_port (from RIS_DICOM_PORT): 70000 is outside 0..65535"),
        ({"RIS_WEB_WORKERS": "0"}, "web_workers (from RIS_WEB_WORKERS): 0 is outside 1..64"),
        ({"RIS_LOG_FORMAT": "xml"}, "log_format (from RIS_LOG_FORMAT): 'xml' is not one of text, json"),
        ({"RIS_TIMEZONE": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not a known IANA time zone"),
        ({"RIS_WEB_BIND": "5000"}, "web_bind: '5000' is not host:port"),
        ({"RIS_DICOM_AE_TITLE": "A_TITLE_FAR_TOO_LONG"}, "dicom_ae_title: 'A_TITLE_FAR_TOO_LONG' is longer than 16"),
        ({"RIS_LOG_LEVEL": "LOUD"}, "log_level: 'LOUD' is not one of"),
    ],
)
def test_bad_environment_values_name_the_setting(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"RIS_INSTANCE_PATH": str(tmp_path), **environ})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dicom_port = true\n", "dicom_port (from"),
        ("dicom_prot = 104\n", "unknown setting 'dicom_prot'"),
        ("dicom_port = \n", "cannot be read as TOML"),
        ("[web]\nbind = 5000\n", "web_bind (from"),
    ],
)
def test_bad_config_file_values_name_the_file_and_setting(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"RIS_INSTANCE_PATH": str(tmp_path)})
    assert message in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_every_setting_is_described() -> None:
    rows = describe_settings()
    assert all(env.startswith("RIS_") and help_text for env, _default, help_text in rows)
    assert "RIS_DATABASE_URL" in {env for env, _, _ in rows}
