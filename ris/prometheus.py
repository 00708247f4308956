"""Prometheus metrics across processes.

The counters arise in the listener process while gunicorn's workers answer ``/metrics``, so they
use prometheus_client's multiprocess mode: the listener writes its values to memory-mapped files
in ``<instance>/metrics`` (:func:`ris.metrics.prepare_directory`, emptied at each start: counters restart at
zero with the process, which Prometheus reads as a counter reset) and ``/metrics`` reads them
(:func:`render`) together with gauges taken from the database at scrape time.

prometheus_client chooses multiprocess mode when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``. This module is therefore imported only by the listener process after
:func:`ris.metrics.prepare_directory` has set that variable, and by the web (which only reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ris.metrics import MULTIPROC_ENV, metrics_directory, status_label

CONTENT_TYPE = CONTENT_TYPE_LATEST


class PrometheusMetrics:
    """The listener process's counters (see ris.metrics.Metrics)."""

    def __init__(self) -> None:
        if values.ValueClass is values.MutexValue:
            raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set")
        registry = CollectorRegistry()  # the values live in the files; nothing is served from here
        self._hl7 = Counter("ris_hl7_messages", "HL7 messages answered, by ACK code", ["ack_code"], registry=registry)
        self._worklist = Histogram(
            "ris_worklist_query_seconds",
            "Modality Worklist C-FIND queries by final status, and their duration",
            ["status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self._mpps = Counter(
            "ris_mpps_events",
            "MPPS N-CREATE and N-SET requests by status answered",
            ["operation", "status"],
            registry=registry,
        )
        self._outbox = Counter(
            "ris_outbox_deliveries",
            "Outbox delivery attempts by kind and result (sent, retry, failed)",
            ["kind", "result"],
            registry=registry,
        )

    def hl7_message(self, ack_code: str) -> None:
        self._hl7.labels(ack_code).inc()

    def worklist_query(self, status: int, seconds: float) -> None:
        self._worklist.labels(status_label(status)).observe(seconds)

    def mpps_event(self, operation: str, status: int) -> None:
        self._mpps.labels(operation, status_label(status)).inc()

    def outbox_delivery(self, kind: str, result: str) -> None:
        self._outbox.labels(kind, result).inc()


class _DatabaseGauges(Collector):
    """Values read from the database at scrape time: right whichever process changed them."""

    def __init__(self, outbox_depth: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self.outbox_depth = outbox_depth

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("ris_outbox_tasks", "Outbox tasks by state and kind", labels=["state", "kind"])
        for (state, kind), count in sorted(self.outbox_depth().items()):
            depth.add_metric([state, kind], count)
        yield depth


def render(instance_path: Path, outbox_depth: Callable[[], Mapping[tuple[str, str], int]]) -> bytes:
    """The text exposition of everything: the listener's counters and the database gauges."""
    registry = CollectorRegistry()
    directory = metrics_directory(instance_path)
    if directory.is_dir():
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(_DatabaseGauges(outbox_depth))
    return generate_latest(registry)
