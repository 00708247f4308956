"""Group commit: concurrent submissions share one run, a lone one runs at once, results and
errors reach the right callers."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import pytest

from ris.group_commit import GroupCommit

WAIT_SECONDS = 10.0


class Recorder:
    """A run_group that records its groups and can be held while a group runs."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.running = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(list(items))
        self.running.set()
        assert self.release.wait(WAIT_SECONDS)
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {items}")
        return [item * 10 for item in items]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def submit_in_threads(
    committer: GroupCommit[int, int], items: list[int]
) -> tuple[list[threading.Thread], dict[int, object]]:
    outcomes: dict[int, object] = {}

    def submit(item: int) -> None:
        try:
            outcomes[item] = committer.submit(item)
        except ValueError as error:
            outcomes[item] = error

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_a_lone_submission_runs_at_once_in_a_group_of_its_own() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder)
    assert committer.submit(1) == 10
    assert committer.submit(2) == 20
    assert recorder.groups == [[1], [2]]


def test_submissions_during_a_run_form_the_next_group_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder)
    recorder.release.clear()
    first, first_outcome = submit_in_threads(committer, [1])
    assert recorder.running.wait(WAIT_SECONDS)
    assert committer.running_items == 1
    others, outcomes = submit_in_threads(committer, [2, 3, 4, 5])
    wait_until(lambda: committer.waiting == 4, "the others wait for the running group")
    recorder.release.set()
    for thread in first + others:
        thread.join(WAIT_SECONDS)
    assert first_outcome == {1: 10}
    assert outcomes == {2: 20, 3: 30, 4: 40, 5: 50}
    assert recorder.groups[0] == [1]
    assert sorted(recorder.groups[1]) == [2, 3, 4, 5]
    assert committer.running_items == 0


def test_groups_are_at_most_max_group_items() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder, max_group=2)
    recorder.release.clear()
    first, _ = submit_in_threads(committer, [1])
    assert recorder.running.wait(WAIT_SECONDS)
    others, outcomes = submit_in_threads(committer, [2, 3, 4, 5, 6])
    wait_until(lambda: committer.waiting == 5, "the others wait")
    recorder.release.set()
    for thread in first + others:
        thread.join(WAIT_SECONDS)
    assert outcomes == {2: 20, 3: 30, 4: 40, 5: 50, 6: 60}
    assert [len(group) for group in recorder.groups] == [1, 2, 2, 1]


def test_an_error_reaches_every_caller_of_its_group_and_no_other() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder)
    recorder.release.clear()
    first, first_outcome = submit_in_threads(committer, [1])
    assert recorder.running.wait(WAIT_SECONDS)
    others, outcomes = submit_in_threads(committer, [2, -3])
    wait_until(lambda: committer.waiting == 2, "the others wait")
    recorder.release.set()
    for thread in first + others:
        thread.join(WAIT_SECONDS)
    assert first_outcome == {1: 10}
    assert all(isinstance(outcome, ValueError) for outcome in outcomes.values())
    assert committer.submit(4) == 40  # the committer goes on after a failed group


def test_max_group_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_group"):
        GroupCommit(Recorder(), max_group=0)


def test_many_threads_each_get_their_own_results() -> None:
    seen: list[int] = []

    def run_group(items: list[int]) -> list[int]:
        seen.extend(items)
        time.sleep(0.0005)  # a transaction's round trips: others arrive meanwhile
        return [-item for item in items]

    committer: GroupCommit[int, int] = GroupCommit(run_group, max_group=5)
    failures: list[str] = []

    def submitter(start: int) -> None:
        for item in range(start, start + 200):
            if committer.submit(item) != -item:
                failures.append(f"wrong result for {item}")

    threads = [threading.Thread(target=submitter, args=(thread * 1000,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert sorted(seen) == [thread * 1000 + item for thread in range(8) for item in range(200)]
    assert committer.running_items == 0
    assert committer.waiting == 0


def test_a_lone_caller_never_waits_to_gather() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder, gather_seconds=5, active_seconds=60)
    started = time.monotonic()
    assert [committer.submit(item) for item in (1, 2, 3)] == [10, 20, 30]
    assert time.monotonic() - started < 2
    assert recorder.groups == [[1], [2], [3]]


class Caller:
    """A thread of its own (as a connection is) that submits what it is sent, one at a time."""

    def __init__(self, committer: GroupCommit[int, int]) -> None:
        self.committer = committer
        self.inbox: queue.Queue[int | None] = queue.Queue()
        self.results: list[int] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.inbox.get()) is not None:
            self.results.append(self.committer.submit(item))

    def send(self, item: int) -> None:
        self.inbox.put(item)

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(WAIT_SECONDS)


def test_a_group_waits_for_the_next_item_of_callers_active_lately() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder, gather_seconds=5, active_seconds=60)
    first, second = Caller(committer), Caller(committer)
    recorder.release.clear()
    first.send(1)
    assert recorder.running.wait(WAIT_SECONDS)
    second.send(2)
    wait_until(lambda: committer.waiting == 1, "2 waits for the running group")
    started = time.monotonic()
    recorder.release.set()
    # 2 now leads a group; both callers were active, so it waits for the first one's next item.
    wait_until(lambda: first.results == [10], "1 is answered")
    first.send(3)
    wait_until(lambda: second.results == [20] and first.results == [10, 30], "2 and 3 are answered")
    assert time.monotonic() - started < 2  # it ran as soon as the item it waited for came
    assert recorder.groups == [[1], [2, 3]]
    first.stop()
    second.stop()


def test_gathering_gives_up_after_gather_seconds() -> None:
    recorder = Recorder()
    committer = GroupCommit(recorder, gather_seconds=0.05, active_seconds=60)
    first, second = Caller(committer), Caller(committer)
    first.send(1)
    wait_until(lambda: first.results == [10], "1 is answered")
    started = time.monotonic()
    second.send(2)  # the first caller was active, but sends nothing more
    wait_until(lambda: second.results == [20], "2 is answered")
    assert 0.04 <= time.monotonic() - started < 2
    assert recorder.groups == [[1], [2]]
    first.stop()
    second.stop()
