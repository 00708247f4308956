"""The outbox worker with plain deliveries (the DICOM ones have protocol tests of their own):
prompt wake-up, retries, ordering, one delivery at a time per destination."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator

import pytest

from ris.db import Database
from ris.db import repository as repo
from ris.domain.model import Actor, AeRole, RemoteAE
from ris.domain.outbox import NewTask, OutboxTask, TaskKind, TaskState
from ris.outbox import Delivery, DeliveryFailed, OutboxWorker
from ris.services import RisService
from ris.settings import Settings
from tests.support.mpps import as_json, n_create, n_set, reference_to, series
from tests.support.orders import new_order
from tests.support.processes import wait_until


class Recorder:
    """A delivery that records what it was given and can be told to fail."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.failures_left = 0
        self.lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent_per_destination = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, task: OutboxTask) -> None:
        with self.lock:
            self.concurrent += 1
            self.max_concurrent_per_destination = max(self.max_concurrent_per_destination, self.concurrent)
        try:
            self.gate.wait(10)
            with self.lock:
                if self.failures_left:
                    self.failures_left -= 1
                    raise DeliveryFailed("destination down")
                self.delivered.append(task.subject)
        finally:
            with self.lock:
                self.concurrent -= 1


@pytest.fixture
def fast_service(settings: Settings) -> Iterator[RisService]:
    tuned = dataclasses.replace(settings, outbox_initial_delay=0.05, outbox_max_delay=0.2, outbox_give_up_after=60)
    service = RisService(Database(settings.database_url), tuned)
    yield service
    service.db.dispose()


@pytest.fixture
def run_worker(fast_service: RisService) -> Iterator[Callable[[dict[TaskKind, Delivery]], OutboxWorker]]:
    workers: list[OutboxWorker] = []

    def start(deliveries: dict[TaskKind, Delivery], poll_interval: float = 60.0) -> OutboxWorker:
        worker = OutboxWorker(fast_service, deliveries, poll_interval=poll_interval, concurrency=4, delivery_timeout=5)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def _add(service: RisService, key: str, destination: str = "PACS", ordering_key: str | None = None) -> None:
    with service.db.transaction() as session:
        repo.insert_task(
            session,
            NewTask(TaskKind.IAN, destination, key, {"subject": key}, ordering_key=ordering_key),
            service.clock(),
        )
    service.outbox_ready.set()


def _states(service: RisService) -> dict[str, TaskState]:
    return {t.subject: t.state for t in service.list_outbox_tasks()}


def test_a_committed_ian_is_delivered_at_once_not_at_the_next_poll(
    fast_service: RisService, run_worker: Callable[[dict[TaskKind, Delivery]], OutboxWorker]
) -> None:
    """The poll interval is a minute: only the wake-up after the commit can deliver within seconds."""
    recorder = Recorder()
    run_worker({TaskKind.IAN: recorder})
    fast_service.add_remote_ae(
        RemoteAE("PACS", "127.0.0.1", 11190, frozenset({AeRole.IAN_DESTINATION})), Actor("cli", "t")
    )
    order = fast_service.schedule_order(new_order(), Actor("cli", "t"))
    uid = "1.2.826.0.1.3680043.10.1474.3.1"
    fast_service.record_mpps_create(uid, as_json(n_create(reference_to(order))), "CT_RAD_01")
    fast_service.record_mpps_set(uid, as_json(n_set("COMPLETED", series())), "CT_RAD_01")
    wait_until(lambda: recorder.delivered == [uid], timeout=10, what="the IAN delivery")
    wait_until(lambda: _states(fast_service) == {uid: TaskState.SENT}, timeout=10, what="SENT")


def test_failures_are_retried_until_delivered_once(
    fast_service: RisService, run_worker: Callable[[dict[TaskKind, Delivery]], OutboxWorker]
) -> None:
    recorder = Recorder()
    recorder.failures_left = 3
    run_worker({TaskKind.IAN: recorder}, poll_interval=0.05)
    _add(fast_service, "a")
    wait_until(lambda: _states(fast_service) == {"a": TaskState.SENT}, timeout=20, what="SENT after retries")
    assert recorder.delivered == ["a"]
    (task,) = fast_service.list_outbox_tasks()
    assert (task.attempts, task.last_error) == (4, "")


def _broken(task: OutboxTask) -> None:
    raise RuntimeError("bug")


@pytest.mark.parametrize(
    ("deliveries", "error"),
    [({TaskKind.IAN: _broken}, "RuntimeError: bug"), ({}, "no delivery for ian tasks")],
)
def test_a_crashing_or_missing_delivery_does_not_stop_the_worker(
    fast_service: RisService,
    run_worker: Callable[[dict[TaskKind, Delivery]], OutboxWorker],
    deliveries: dict[TaskKind, Delivery],
    error: str,
) -> None:
    run_worker(deliveries, poll_interval=0.05)
    _add(fast_service, "a")
    wait_until(lambda: fast_service.list_outbox_tasks()[0].attempts >= 2, timeout=10, what="retries")
    assert error in fast_service.list_outbox_tasks()[0].last_error


def test_ordered_tasks_go_in_order_and_one_at_a_time_per_destination(
    fast_service: RisService, run_worker: Callable[[dict[TaskKind, Delivery]], OutboxWorker]
) -> None:
    recorder = Recorder()
    recorder.gate.clear()
    recorder.failures_left = 1  # the first in the chain fails once: nothing may overtake it
    for key in ("create", "set-1", "set-2"):
        _add(fast_service, key, "MIRROR", ordering_key="fwd:MIRROR:1")
    for key in ("x", "y"):
        _add(fast_service, key, "MIRROR")
    run_worker({TaskKind.IAN: recorder}, poll_interval=0.05)
    recorder.gate.set()
    wait_until(lambda: len(recorder.delivered) == 5, timeout=20, what="all deliveries")
    chain = [key for key in recorder.delivered if key.startswith(("create", "set"))]
    assert chain == ["create", "set-1", "set-2"]
    assert recorder.max_concurrent_per_destination == 1
