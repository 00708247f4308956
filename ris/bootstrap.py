"""The wiring of a site: database, service, listeners, web; and the process layout of ``ris serve``.

This is the one module of ``ris`` that may import the protocol adapters (``hl7``, ``dimse``): it
hands them the service and registers their outbox deliveries, so the dependencies still point
inward everywhere else.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

from dimse.ae import AssociationPolicy, DicomListener, DicomService, VerificationService
from dimse.deliveries import IanDelivery, MppsForwardDelivery
from dimse.echo import VerificationProbe
from dimse.mpps import MppsService
from dimse.mwl import ModalityWorklistService
from hl7.intake import Intake
from hl7.mapping import MappingError, OrderMapping, load_mapping
from hl7.server import MllpServer, ServerLimits
from hl7.status import HisStatusDelivery
from ris import heartbeat
from ris.db import Database
from ris.domain.errors import DomainError, ValidationFailed
from ris.domain.model import SYSTEM
from ris.domain.outbox import TaskKind
from ris.domain.users import Role
from ris.metrics import NO_METRICS, Metrics
from ris.metrics import prepare_directory as prepare_metrics_directory
from ris.outbox import Delivery, OutboxWorker
from ris.services import RisService
from ris.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 15


class StartupError(DomainError):
    """The site cannot start as configured; the message says what to do."""


class Listener(Protocol):
    """A long-running part of the listener process (DICOM AE, HL7 server, outbox worker)."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...


ECHO_TIMEOUT_SECONDS = 10.0


def build_service(settings: Settings) -> RisService:
    probe = VerificationProbe(settings.dicom_ae_title, min(ECHO_TIMEOUT_SECONDS, settings.outbox_delivery_timeout))
    return RisService(Database(settings.database_url), settings, echo_probe=probe)


def ensure_secret_key(instance_path: Path) -> str:
    """The site's session key, created once; O_EXCL makes concurrent first starts agree on one."""
    path = instance_path / "secret_key"
    instance_path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key)
    return key


def prepare_database(service: RisService) -> None:
    """Bring the schema to the current version where that is safe to do unasked: the embedded
    SQLite database, or any empty database. A populated external database is only checked."""
    db = service.db
    if db.is_sqlite and db.url.startswith("sqlite:///"):
        Path(db.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    status = db.schema_status()
    if not status.reachable:
        raise StartupError(f"the database cannot be reached: {status.error}")
    if status.up_to_date:
        return
    if db.is_sqlite or status.revision is None:
        log.info("migrating database schema from=%s to=%s", status.revision or "empty", status.head)
        db.upgrade()
        return
    raise StartupError(
        f"the database schema is at {status.revision}, this version needs {status.head}: run `ris db upgrade`"
    )


FIRST_ADMIN = "admin"


def ensure_first_admin(service: RisService, settings: Settings) -> None:
    """On an empty users table create the user ``admin``: with ``admin_password`` if the site set
    one, else with a random password printed once to stderr (it is stored only as a hash)."""
    if service.has_users():
        return
    password = settings.admin_password or secrets.token_urlsafe(12)
    try:
        service.create_user(FIRST_ADMIN, password, Role.ADMIN, SYSTEM)
    except ValidationFailed as error:
        raise StartupError(f"admin_password: {'; '.join(p.message for p in error.problems)}") from None
    if settings.admin_password:
        print(f"ris: created the first user {FIRST_ADMIN!r} with the password from RIS_ADMIN_PASSWORD", file=sys.stderr)
    else:
        print(
            f"ris: created the first user {FIRST_ADMIN!r} with the password {password}"
            " (shown only now; change it with `ris user passwd`)",
            file=sys.stderr,
        )


def dicom_services(service: RisService, settings: Settings, metrics: Metrics = NO_METRICS) -> list[DicomService]:
    """The services of our DICOM AE, all on one port and AE title."""
    return [
        VerificationService(),
        ModalityWorklistService(service, settings, metrics),
        MppsService(service, metrics),
    ]


def listeners(service: RisService, settings: Settings, metrics: Metrics = NO_METRICS) -> list[Listener]:
    """Everything the listener process runs."""
    policy = AssociationPolicy(settings, service.get_remote_ae)
    return [
        DicomListener(settings, dicom_services(service, settings, metrics), policy),
        hl7_listener(service, settings, metrics),
        outbox_worker(service, settings, metrics),
    ]


def outbox_worker(service: RisService, settings: Settings, metrics: Metrics = NO_METRICS) -> OutboxWorker:
    """The outbox worker with the adapters' deliveries registered for each kind of task."""
    timeout = settings.outbox_delivery_timeout
    deliveries: dict[TaskKind, Delivery] = {
        TaskKind.IAN: IanDelivery(service, settings.dicom_ae_title, timeout),
        TaskKind.MPPS_FORWARD: MppsForwardDelivery(service, settings.dicom_ae_title, timeout),
        TaskKind.HL7_STATUS: HisStatusDelivery(settings.dicom_ae_title, timeout),
    }
    return OutboxWorker(
        service,
        deliveries,
        poll_interval=settings.outbox_poll_interval,
        concurrency=settings.outbox_concurrency,
        delivery_timeout=timeout,
        metrics=metrics,
    )


def hl7_listener(service: RisService, settings: Settings, metrics: Metrics = NO_METRICS) -> MllpServer:
    try:
        intake = Intake(service, hl7_mapping(settings), default_charset=settings.hl7_default_charset, metrics=metrics)
    except ValueError as error:
        raise StartupError(str(error)) from None
    limits = ServerLimits(
        max_message_bytes=settings.hl7_max_message_bytes,
        read_deadline=settings.hl7_read_deadline,
        idle_timeout=settings.hl7_idle_timeout,
        max_connections=settings.hl7_max_connections,
    )
    return MllpServer(
        intake, host=settings.hl7_bind, port=settings.hl7_port, limits=limits, ssl_context=_hl7_tls(settings)
    )


def hl7_mapping(settings: Settings) -> OrderMapping:
    """The site's HL7 mapping: the defaults with ``hl7_mapping_file`` applied."""
    if not settings.hl7_mapping_file:
        return load_mapping(None)
    try:
        return load_mapping(settings.instance_path / settings.hl7_mapping_file)
    except MappingError as error:
        raise StartupError(f"hl7_mapping_file: {error}") from None


def _hl7_tls(settings: Settings) -> ssl.SSLContext | None:
    if not settings.hl7_tls_cert:
        if settings.hl7_tls_key:
            raise StartupError("hl7_tls_key is set but hl7_tls_cert is not: set both for MLLP over TLS")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = settings.instance_path / settings.hl7_tls_cert
    key = settings.instance_path / settings.hl7_tls_key if settings.hl7_tls_key else None
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise StartupError(f"hl7_tls_cert/hl7_tls_key: cannot load {cert}: {error}") from None
    return context


def run_listeners(settings: Settings) -> int:
    """The listener process: start every listener, wait for SIGTERM/SIGINT, stop them."""
    service = build_service(settings)
    prepare_database(service)
    prepare_metrics_directory(settings.instance_path)
    # Imported only now that the metrics directory is in the environment (see ris.prometheus).
    from ris.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    started: list[Listener] = []
    try:
        for listener in listeners(service, settings, metrics):
            listener.start()
            started.append(listener)
            log.info("listener started name=%s", listener.name)
        while True:
            heartbeat.write(settings.instance_path, {listener.name: listener.is_alive() for listener in started})
            if stop.wait(heartbeat.INTERVAL_SECONDS):
                break
    finally:
        heartbeat.clear(settings.instance_path)
        for listener in reversed(started):
            listener.stop()
            log.info("listener stopped name=%s", listener.name)
        service.db.dispose()
    return 0


def serve(settings: Settings) -> int:
    """``ris serve``: the listener process and gunicorn, stopped together on Ctrl-C/SIGTERM.

    If either child dies, the other is stopped too and the exit status is non-zero, so a service
    manager restarts the site as a whole instead of leaving half of it running."""
    service = build_service(settings)
    prepare_database(service)
    ensure_first_admin(service, settings)
    service.db.dispose()
    ensure_secret_key(settings.instance_path)
    env = {**os.environ, "RIS_INSTANCE_PATH": str(settings.instance_path)}
    commands = {
        "listeners": [sys.executable, "-m", "ris.cli", "listen"],
        "web": [
            sys.executable,
            "-m",
            "gunicorn",
            "app:app",
            "--bind",
            settings.web_bind,
            "--workers",
            str(settings.web_workers),
            "--graceful-timeout",
            str(STOP_TIMEOUT_SECONDS - 5),
            "--access-logfile",
            "-",
            # Its default path is in the home folder, where two sites on one host would collide;
            # the site is controlled through `ris serve`, not through gunicornc.
            "--no-control-socket",
        ],
    }
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    children = {name: subprocess.Popen(command, env=env) for name, command in commands.items()}
    log.info(
        "serving web=http://%s dicom=%s:%d hl7=%d pids=%s",
        settings.web_bind,
        settings.dicom_ae_title,
        settings.dicom_port,
        settings.hl7_port,
        {n: c.pid for n, c in children.items()},
    )
    failed = None
    while not stop.wait(0.5):
        failed = next((name for name, child in children.items() if child.poll() is not None), None)
        if failed:
            log.error("process %s exited with status %s; stopping the site", failed, children[failed].returncode)
            break
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for name, child in children.items():
        try:
            child.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("process %s did not stop in %ds; killing it", name, STOP_TIMEOUT_SECONDS)
            child.kill()
            child.wait()
    return 1 if failed else 0
