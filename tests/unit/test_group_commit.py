"""Group commit: concurrent submissions share one run, a lone one runs at once, results and
errors reach the right callers."""

from __future__ import annotations

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
    assert committer.running
    others, outcomes = submit_in_threads(committer, [2, 3, 4, 5])
    wait_until(lambda: committer.waiting == 4, "the others wait for the running group")
    recorder.release.set()
    for thread in first + others:
        thread.join(WAIT_SECONDS)
    assert first_outcome == {1: 10}
    assert outcomes == {2: 20, 3: 30, 4: 40, 5: 50}
    assert recorder.groups[0] == [1]
    assert sorted(recorder.groups[1]) == [2, 3, 4, 5]
    assert not committer.running


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
    assert not committer.running
    assert committer.waiting == 0
