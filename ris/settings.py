"""Typed site settings: built-in defaults < ``instance/config.toml`` < ``RIS_*`` environment.

Every setting is one field of :class:`Settings`. Its environment variable is ``RIS_`` + the field
name in upper case; in ``config.toml`` it is the field name, either flat (``dicom_port = 11112``)
or split at the first underscore into a table (``[dicom]`` / ``port = 11112``).

A wrong value stops start-up with :class:`SettingsError`, whose message is one line naming the
setting, where it came from and what is expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ris.domain.values import ae_title_problem

ENV_PREFIX = "RIS_"
CONFIG_FILE_NAME = "config.toml"
# Shown by ``ris config`` only as "(set)".
SECRET_SETTINGS = frozenset({"secret_key", "admin_password"})

LogFormat = Literal["text", "json"]
CallingAePolicy = Literal["open", "registered"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, "min": minimum, "max": maximum})


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings of a site. Derived defaults (paths under the instance folder) are filled in by
    :func:`load_settings`; construct with :func:`load_settings`, or directly in tests."""

    instance_path: Path = _setting(
        Path("instance"), "Folder of the site's config.toml, SQLite database and secret key."
    )
    database_url: str = _setting("", "SQLAlchemy URL; default sqlite:///<instance_path>/ris.db.")
    timezone: str = _setting("", "IANA time zone of the site's scheduled times (default: the system's zone).")
    log_level: str = _setting("INFO", "Log level of all processes (DEBUG, INFO, WARNING, ERROR).")
    log_format: LogFormat = _setting("text", "text (key=value lines) or json (one JSON object per line).")
    secret_key: str = _setting("", "Flask session key; default: generated once into <instance_path>/secret_key.")
    admin_password: str = _setting(
        "", "Password of the user admin that the first start creates on an empty users table (default: random)."
    )

    web_bind: str = _setting("127.0.0.1:5000", "host:port of the web application.")
    web_workers: int = _setting(2, "gunicorn worker processes.", minimum=1, maximum=64)

    dicom_ae_title: str = _setting("RISBROKER", "Our DICOM AE title (worklist, MPPS, verification).")
    dicom_bind: str = _setting("0.0.0.0", "Address the DICOM listener binds to.")
    dicom_port: int = _setting(11112, "DICOM listener port.", minimum=0, maximum=65535)
    dicom_max_associations: int = _setting(
        50, "Simultaneous DICOM associations (idle connections count too).", minimum=1, maximum=1000
    )
    dicom_max_pdu_bytes: int = _setting(
        65536,
        "Largest PDU a peer may send us (our Maximum Length Receive); a bigger one aborts the association.",
        minimum=16384,
        maximum=16 * 1024 * 1024,
    )
    dicom_acse_timeout: float = _setting(
        30.0, "Seconds to wait for an association request or release.", minimum=1, maximum=3600
    )
    dicom_dimse_timeout: float = _setting(30.0, "Seconds to wait for a DIMSE message.", minimum=1, maximum=3600)
    dicom_network_timeout: float = _setting(
        60.0, "Seconds an idle or stalled DICOM connection is kept open.", minimum=1, maximum=3600
    )
    dicom_require_called_ae: bool = _setting(
        True, "Reject associations whose called AE title is not ours (dicom_ae_title)."
    )
    dicom_calling_ae_policy: CallingAePolicy = _setting(
        "open", "open: any calling AE; registered: only remote AEs with the station role (and their host, if set)."
    )

    mwl_result_cap: int = _setting(
        1000, "Most worklist items one C-FIND returns; more matches end with status A700.", minimum=1, maximum=100000
    )
    mwl_case_insensitive_patient_name: bool = _setting(
        True, "Match Patient's Name without regard to case (MUELLER* finds Mueller^Hans)."
    )
    mwl_case_insensitive_modality: bool = _setting(False, "Match Modality without regard to case (mr finds MR).")

    hl7_bind: str = _setting("0.0.0.0", "Address the HL7 MLLP listener binds to.")
    hl7_port: int = _setting(2575, "HL7 MLLP listener port.", minimum=0, maximum=65535)
    hl7_max_message_bytes: int = _setting(
        1024 * 1024,
        "Largest HL7 message accepted; a larger one is answered AR and the connection closed.",
        minimum=1024,
        maximum=64 * 1024 * 1024,
    )
    hl7_read_deadline: float = _setting(
        30.0,
        "Seconds a started MLLP frame may take to arrive completely before the connection is closed.",
        minimum=0.1,
        maximum=3600,
    )
    hl7_idle_timeout: float = _setting(
        3600.0,
        "Seconds an HL7 connection may stay silent between messages before it is closed.",
        minimum=1,
        maximum=7 * 24 * 3600,
    )
    hl7_max_connections: int = _setting(
        32, "Concurrent HL7 connections; one more is closed at once.", minimum=1, maximum=1024
    )
    hl7_tls_cert: str = _setting("", "PEM certificate (chain) for MLLP over TLS; empty: plain TCP.")
    hl7_tls_key: str = _setting("", "PEM private key of hl7_tls_cert (empty: the key is in the certificate file).")
    hl7_default_charset: str = _setting(
        "UNICODE UTF-8", "Character set of HL7 messages without MSH-18 (HL7 table 0211, e.g. 8859/1)."
    )
    hl7_mapping_file: str = _setting(
        "",
        "TOML file overriding the HL7 field mapping, order control table and station rules (relative: "
        "to instance_path).",
    )
    hl7_status_destination: str = _setting(
        "", "host:port of the HIS's MLLP listener for step status messages (ORM^O01 SC IP/CM); empty: none."
    )

    mpps_ian_retrieve_ae_title: str = _setting(
        "", "Retrieve AE Title put in IANs for series whose MPPS names none (e.g. the PACS's AE title)."
    )

    outbox_initial_delay: float = _setting(
        5.0, "Seconds before the first retry of a failed delivery (IAN, MPPS forward, HL7 status).", minimum=0.01
    )
    outbox_max_delay: float = _setting(
        600.0, "Longest wait in seconds between two retries (the backoff cap).", minimum=0.01
    )
    outbox_give_up_after: float = _setting(
        259200.0, "Seconds after which a delivery still failing is marked FAILED (default 3 days).", minimum=1
    )
    outbox_poll_interval: float = _setting(
        2.0, "Seconds between looks for due deliveries written by other processes or waiting to retry.", minimum=0.01
    )
    outbox_delivery_timeout: float = _setting(
        30.0, "Network timeout in seconds of one delivery attempt (connect, association, response).", minimum=0.1
    )
    outbox_concurrency: int = _setting(4, "Destinations delivered to at the same time.", minimum=1, maximum=64)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting, for the README and ``ris config``."""
    return [(ENV_PREFIX + f.name.upper(), str(f.default), f.metadata["help"]) for f in dataclasses.fields(Settings)]


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the settings of this site. ``overrides`` (e.g. from tests) win over everything."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {}  # name -> (value, where it came from)

    instance_path = Path(
        (overrides or {}).get("instance_path") or environ.get(ENV_PREFIX + "INSTANCE_PATH") or "instance"
    )
    config_path = instance_path / CONFIG_FILE_NAME
    if config_path.is_file():
        raw.update(_read_config_file(config_path))
    for f in dataclasses.fields(Settings):
        env_name = ENV_PREFIX + f.name.upper()
        if env_name in environ:
            raw[f.name] = (environ[env_name], env_name)
    for name, value in (overrides or {}).items():
        raw[name] = (value, "override")

    values: dict[str, Any] = {}
    field_types = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if f.name in raw:
            value, source = raw[f.name]
            values[f.name] = _coerce(f, field_types[f.name], value, source)

    settings = Settings(**values)
    return _with_derived_defaults(settings)


def _read_config_file(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: cannot be read as TOML: {exc}") from exc
    known = {f.name for f in dataclasses.fields(Settings)}
    found: dict[str, tuple[Any, str]] = {}
    for key, value in document.items():
        entries = (
            {f"{key}_{sub}": sub_value for sub, sub_value in value.items()} if isinstance(value, dict) else {key: value}
        )
        for name, entry in entries.items():
            if name not in known:
                raise SettingsError(f"{path}: unknown setting {name!r}")
            found[name] = (entry, f"{path} [{name}]")
    return found


def _coerce(f: dataclasses.Field[Any], annotation: Any, value: Any, source: str) -> Any:
    where = f"{f.name} (from {source})"
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise SettingsError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value
    if annotation is bool:
        return _coerce_bool(value, where)
    if annotation in (int, float):
        number = _coerce_number(annotation, value, where)
        low, high = f.metadata["min"], f.metadata["max"]
        if (low is not None and number < low) or (high is not None and number > high):
            raise SettingsError(f"{where}: {number} is outside {low}..{high}")
        return number
    if annotation is Path:
        return Path(str(value))
    if _is_optional_str(annotation) or annotation is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected text, got {value!r}")
        return value
    raise TypeError(f"setting {f.name} has an unsupported type {annotation!r}")  # programming error


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{where}: {value!r} is not a boolean (true/false)")


def _coerce_number(kind: type[int] | type[float], value: Any, where: str) -> int | float:
    if isinstance(value, bool):
        raise SettingsError(f"{where}: {value!r} is not a number")
    try:
        return kind(value)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise SettingsError(f"{where}: {value!r} is not {noun}") from None


def _is_optional_str(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) and set(get_args(annotation)) == {str, type(None)}


def _with_derived_defaults(settings: Settings) -> Settings:
    instance_path = settings.instance_path.resolve()
    database_url = settings.database_url or f"sqlite:///{instance_path / 'ris.db'}"
    timezone = settings.timezone or system_timezone_name()
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"timezone: {timezone!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"log_level: {settings.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    _check_host_port("web_bind", settings.web_bind)
    _check_ae_title("dicom_ae_title", settings.dicom_ae_title)
    if settings.hl7_status_destination:
        _check_host_port("hl7_status_destination", settings.hl7_status_destination)
    if settings.mpps_ian_retrieve_ae_title:
        _check_ae_title("mpps_ian_retrieve_ae_title", settings.mpps_ian_retrieve_ae_title)
    return dataclasses.replace(
        settings,
        instance_path=instance_path,
        database_url=database_url,
        timezone=timezone,
        log_level=settings.log_level.upper(),
    )


def _check_host_port(name: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{name}: {value!r} is not host:port (e.g. 127.0.0.1:5000)")


def _check_ae_title(name: str, value: str) -> None:
    problem = ae_title_problem(value)
    if problem:
        raise SettingsError(f"{name}: {value!r} {problem}")


def system_timezone_name() -> str:
    """The machine's IANA zone: $TZ, /etc/timezone, the /etc/localtime link, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="ascii").strip())
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return "UTC"
