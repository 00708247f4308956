"""The outbox worker: delivers the tasks the service layer wrote next to the changes they report
(IAN, MPPS forward, HL7 status), in the listener process.

How a task is delivered is not known here: each kind has a :class:`Delivery` port, implemented by
an adapter (``dimse`` for IAN and forwards, ``hl7`` for status messages) and registered by
``ris.bootstrap``. A delivery returns when the destination confirmed the task, or raises
:class:`DeliveryFailed`.

Guarantees: a task is written in the same transaction as its change, so none is lost and none is
sent for a change that rolled back. It is marked SENT right after the destination's confirmation;
a crash between the two (a window of one small transaction) makes it go out once more after its
lease, which is why each task carries identifiers of its own (an IAN's SOP Instance UID, an HL7
control ID) that a receiver sees again on a re-send. Tasks of one ordering key go one by one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ris.domain.errors import DomainError
from ris.domain.outbox import OutboxTask, TaskKind, TaskState
from ris.metrics import NO_METRICS, Metrics
from ris.services import RisService

log = logging.getLogger(__name__)

# A claimed task is hidden from other workers for this many delivery timeouts: connecting,
# negotiating and waiting for the answer each have the timeout, and a margin on top.
LEASE_TIMEOUTS = 4


class DeliveryFailed(Exception):
    """The destination did not confirm the task. ``retryable=False`` when trying again cannot help
    (the destination is no longer configured)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Delivery(Protocol):
    """Delivers one task of its kind; returns when the destination confirmed it."""

    def __call__(self, task: OutboxTask) -> None: ...


class OutboxWorker:
    """A :class:`ris.bootstrap.Listener`: one thread that claims due tasks, and a pool that
    delivers them, one task at a time per destination and up to ``concurrency`` destinations at
    once. It wakes when the service commits new tasks in this process, else every
    ``poll_interval`` seconds (tasks from other processes, retries that became due)."""

    name = "outbox"

    def __init__(
        self,
        service: RisService,
        deliveries: Mapping[TaskKind, Delivery],
        *,
        poll_interval: float,
        concurrency: int,
        delivery_timeout: float,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.deliveries = dict(deliveries)
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.lease = delivery_timeout * LEASE_TIMEOUTS
        self._wake = service.outbox_ready
        self._stopping = threading.Event()
        self._busy: set[str] = set()  # destinations with a delivery under way
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="outbox-delivery")
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming and wait for deliveries under way (each ends within its timeout)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming: a commit during the claim sets it again and is not missed.
            self._wake.clear()
            try:
                started = self._dispatch()
            except DomainError as exc:  # the database is away; try again at the next poll
                log.error("outbox claim failed: %s", exc)
                started = 0
            if not started:
                self._wake.wait(self.poll_interval)

    def _dispatch(self) -> int:
        with self._lock:
            busy = set(self._busy)
        free = self.concurrency - len(busy)
        if free <= 0:
            return 0
        tasks = self.service.claim_outbox_tasks(destinations=free, lease=self.lease, exclude_destinations=busy)
        with self._lock:
            self._busy.update(task.destination for task in tasks)
        for task in tasks:
            self._pool.submit(self._deliver, task)
        return len(tasks)

    def _deliver(self, task: OutboxTask) -> None:
        started = time.perf_counter()
        try:
            delivery = self.deliveries.get(task.kind)
            if delivery is None:
                raise DeliveryFailed(f"no delivery for {task.kind} tasks is configured in this process")
            delivery(task)
        except DeliveryFailed as exc:
            self._failed(task, str(exc), retryable=exc.retryable)
        except Exception as exc:  # a bug in a delivery must not stop the worker; the task retries
            log.exception(
                "outbox delivery crashed task=%s kind=%s destination=%s", task.id, task.kind, task.destination
            )
            self._failed(task, f"{type(exc).__name__}: {exc}", retryable=True)
        else:
            self._sent(task, time.perf_counter() - started)
        finally:
            with self._lock:
                self._busy.discard(task.destination)
            self._wake.set()  # the destination is free for its next task

    def _sent(self, task: OutboxTask, seconds: float) -> None:
        try:
            self.service.complete_outbox_task(task.id)
        except DomainError as exc:
            # Delivered but not recorded: it goes out again after the lease (see module docstring).
            log.error("outbox delivered but not marked sent task=%s: %s", task.id, exc)
            return
        self.metrics.outbox_delivery(task.kind, "sent")
        log.info(
            "outbox sent task=%s kind=%s destination=%s subject=%s attempt=%d ms=%.1f",
            task.id,
            task.kind,
            task.destination,
            task.subject,
            task.attempts,
            seconds * 1000,
        )

    def _failed(self, task: OutboxTask, error: str, *, retryable: bool) -> None:
        try:
            after = self.service.fail_outbox_task(task.id, error, retryable=retryable)
        except DomainError as exc:
            log.error("outbox failure not recorded task=%s: %s", task.id, exc)
            return
        self.metrics.outbox_delivery(task.kind, "failed" if after.state is TaskState.FAILED else "retry")
        if after.state is TaskState.FAILED:
            log.error(
                "outbox gave up task=%s kind=%s destination=%s subject=%s attempts=%d error=%s",
                task.id,
                task.kind,
                task.destination,
                task.subject,
                after.attempts,
                error,
            )
        else:
            log.warning(
                "outbox attempt failed task=%s kind=%s destination=%s subject=%s attempt=%d retry_at=%s error=%s",
                task.id,
                task.kind,
                task.destination,
                task.subject,
                after.attempts,
                after.next_attempt_at.isoformat(timespec="seconds"),
                error,
            )
