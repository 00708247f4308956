"""The outbox table through the service: dedupe, claiming with a lease, backoff, give-up, manual
retry, and delivery order within an ordering key."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from ris.db import Database
from ris.db import repository as repo
from ris.domain.errors import InvalidTransition, NotFound
from ris.domain.model import Actor
from ris.domain.outbox import NewTask, TaskKind, TaskState
from ris.services import RisService
from ris.settings import Settings
from tests.support.clock import Clock

ANNA = Actor("user", "anna")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(settings: Settings, clock: Clock) -> Iterator[RisService]:
    tuned = dataclasses.replace(settings, outbox_initial_delay=10, outbox_max_delay=100, outbox_give_up_after=1000)
    service = RisService(Database(settings.database_url), tuned, clock=clock)
    yield service
    service.db.dispose()


def _add(service: RisService, key: str, destination: str = "PACS", ordering_key: str | None = None) -> bool:
    task = NewTask(TaskKind.IAN, destination, key, {"subject": key}, ordering_key=ordering_key)
    with service.db.transaction() as session:
        return repo.insert_task(session, task, service.clock())


def _claim(service: RisService, exclude_destinations: tuple[str, ...] = ()) -> list[str]:
    claimed = service.claim_outbox_tasks(destinations=10, lease=60, exclude_destinations=exclude_destinations)
    return [task.subject for task in claimed]


def test_a_second_enqueue_of_the_same_delivery_is_a_no_op(outbox: RisService) -> None:
    assert _add(outbox, "ian:1:PACS")
    assert not _add(outbox, "ian:1:PACS")
    assert len(outbox.list_outbox_tasks()) == 1


def test_claimed_tasks_are_leased_and_count_an_attempt(outbox: RisService, clock: Clock) -> None:
    _add(outbox, "a")
    _add(outbox, "b", destination="REPORTING")
    _add(outbox, "c")
    assert _claim(outbox, exclude_destinations=("REPORTING",)) == ["a"]
    assert _claim(outbox) == ["b", "c"]
    assert _claim(outbox) == []
    clock.advance(61)  # a worker that died mid-delivery: its tasks come back after the lease
    assert _claim(outbox) == ["a", "b"]
    assert [t.attempts for t in outbox.list_outbox_tasks()] == [1, 2, 2]


def test_one_task_per_destination_and_at_most_as_many_destinations_as_asked(outbox: RisService) -> None:
    for key, destination in [("a", "PACS"), ("b", "PACS"), ("c", "REPORTING"), ("d", "ARCHIVE")]:
        _add(outbox, key, destination)
    claimed = outbox.claim_outbox_tasks(destinations=2, lease=60)
    assert [(t.subject, t.destination) for t in claimed] == [("a", "PACS"), ("c", "REPORTING")]
    assert [t.attempts for t in outbox.list_outbox_tasks()] == [0, 1, 0, 1]


def test_failures_back_off_then_give_up(outbox: RisService, clock: Clock) -> None:
    _add(outbox, "a")
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    failed = outbox.fail_outbox_task(task.id, "association refused")
    assert failed.state is TaskState.PENDING
    assert failed.last_error == "association refused"
    assert 5 <= (failed.next_attempt_at - clock.now).total_seconds() <= 10
    clock.advance(10)
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    second = outbox.fail_outbox_task(task.id, "status 0x0110")
    assert 10 <= (second.next_attempt_at - clock.now).total_seconds() <= 20
    clock.advance(1000)
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    assert outbox.fail_outbox_task(task.id, "still down").state is TaskState.FAILED
    clock.advance(10_000)
    assert _claim(outbox) == []


def test_a_permanent_failure_fails_at_once(outbox: RisService) -> None:
    _add(outbox, "a")
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    assert outbox.fail_outbox_task(task.id, "unknown destination", retryable=False).state is TaskState.FAILED


def test_manual_retry(outbox: RisService, clock: Clock) -> None:
    _add(outbox, "a")
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    outbox.fail_outbox_task(task.id, "down", retryable=False)
    outbox.outbox_ready.clear()
    clock.advance(5000)
    retried = outbox.retry_outbox_task(task.id, ANNA)
    assert (retried.state, retried.attempts, retried.pending_since) == (TaskState.PENDING, 0, clock.now)
    assert outbox.outbox_ready.is_set()
    assert _claim(outbox) == ["a"]
    outbox.fail_outbox_task(task.id, "down again")  # the give-up age counts from the retry
    assert outbox.list_outbox_tasks(state=TaskState.PENDING)[0].id == task.id
    clock.advance(10)
    outbox.claim_outbox_tasks(destinations=10, lease=60)
    outbox.complete_outbox_task(task.id)
    with pytest.raises(InvalidTransition, match="already sent"):
        outbox.retry_outbox_task(task.id, ANNA)
    with pytest.raises(NotFound):
        outbox.retry_outbox_task(999, ANNA)


def test_retry_of_a_pending_task_makes_it_due_now(outbox: RisService, clock: Clock) -> None:
    _add(outbox, "a")
    (task,) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    outbox.fail_outbox_task(task.id, "down")
    assert _claim(outbox) == []
    outbox.retry_outbox_task(task.id, ANNA)
    assert _claim(outbox) == ["a"]


def test_tasks_with_one_ordering_key_go_strictly_in_order(outbox: RisService, clock: Clock) -> None:
    _add(outbox, "create", "MIRROR", ordering_key="fwd:MIRROR:1")
    _add(outbox, "set-1", "MIRROR", ordering_key="fwd:MIRROR:1")
    _add(outbox, "other-step", "MIRROR2", ordering_key="fwd:MIRROR2:2")
    _add(outbox, "set-2", "MIRROR", ordering_key="fwd:MIRROR:1")
    assert _claim(outbox) == ["create", "other-step"]
    first, other = outbox.list_outbox_tasks()[-1], outbox.list_outbox_tasks()[-3]
    outbox.complete_outbox_task(other.id)
    outbox.fail_outbox_task(first.id, "down", retryable=False)
    clock.advance(3600)
    assert _claim(outbox) == []  # a FAILED predecessor holds its successors back
    outbox.retry_outbox_task(first.id, ANNA)
    assert _claim(outbox) == ["create"]
    outbox.complete_outbox_task(first.id)
    assert _claim(outbox) == ["set-1"]
    outbox.complete_outbox_task(outbox.list_outbox_tasks()[-2].id)
    assert _claim(outbox) == ["set-2"]


def test_list_filters(outbox: RisService) -> None:
    _add(outbox, "a")
    _add(outbox, "b", destination="REPORTING")
    (first, _second) = outbox.claim_outbox_tasks(destinations=10, lease=60)
    outbox.complete_outbox_task(first.id)
    assert [t.subject for t in outbox.list_outbox_tasks()] == ["b", "a"]
    assert [t.subject for t in outbox.list_outbox_tasks(state=TaskState.SENT)] == ["a"]
    assert outbox.list_outbox_tasks(kind=TaskKind.HL7_STATUS) == []
    assert outbox.list_outbox_tasks(limit=1)[0].subject == "b"
