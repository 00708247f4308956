"""What the listener process counts, as a port: the adapters (hl7, dimse, the outbox worker) report
through :class:`Metrics` and never see the metrics library. ``ris listen`` hands them the
Prometheus implementation (ris.prometheus); everything else (tests, tools) gets :data:`NO_METRICS`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics(Protocol):
    def hl7_message(self, ack_code: str) -> None:
        """An HL7 message was answered with ``ack_code`` (AA, AE, AR)."""

    def worklist_query(self, status: int, seconds: float) -> None:
        """A C-FIND ended with final ``status`` after ``seconds``."""

    def mpps_event(self, operation: str, status: int) -> None:
        """An MPPS N-CREATE or N-SET was answered with ``status``."""

    def outbox_delivery(self, kind: str, result: str) -> None:
        """A delivery attempt of a ``kind`` task ended: sent, retry (failed, tried again later) or
        failed (given up)."""


class _NoMetrics:
    def hl7_message(self, ack_code: str) -> None:
        pass

    def worklist_query(self, status: int, seconds: float) -> None:
        pass

    def mpps_event(self, operation: str, status: int) -> None:
        pass

    def outbox_delivery(self, kind: str, result: str) -> None:
        pass


NO_METRICS: Metrics = _NoMetrics()


def metrics_directory(instance_path: Path) -> Path:
    return instance_path / "metrics"


def prepare_directory(instance_path: Path) -> Path:
    """An empty metrics directory for a starting listener process, named in the environment where
    prometheus_client looks for it when it is first imported (see ris.prometheus)."""
    directory = metrics_directory(instance_path)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def status_label(status: int) -> str:
    """A DIMSE status as a label value: four hex digits (0000, A700, C311, FE00)."""
    return f"{status:04X}"
