"""Group commit: work handed in by several threads at the same time is done in one go.

Each caller of `GroupCommit.submit` waits for the result of its own item. While no group is
running, the caller runs one itself with every item waiting at that moment (its own included);
items handed in while a group runs wait for it to end and then form the next group, which the
oldest of them runs (only the callers of a group are woken when it ends). So a lone
caller never waits for anyone, and under load the cost of one transaction (round trips, commit,
fsync) is shared by the items of a group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Entry(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Released once: when the item's group has run, or when the item is to lead the next group.
        # One lock per caller, so that the end of a group wakes only the callers it concerns.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit(Generic[Item, Result]):
    """Runs ``run_group(items)`` for groups of at most ``max_group`` concurrently submitted items;
    it must return one result per item, in order. An exception it raises is raised to every
    caller of that group."""

    def __init__(self, run_group: Callable[[list[Item]], Sequence[Result]], max_group: int = 64) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._run_group = run_group
        self._max_group = max_group
        self._lock = threading.Lock()
        # Items waiting for the next group, oldest first; only ever non-empty while a group runs.
        self._waiting: list[_Entry[Item, Result]] = []
        self._running = False

    @property
    def waiting(self) -> int:
        """Items handed in and not yet taken into a group."""
        with self._lock:
            return len(self._waiting)

    @property
    def running(self) -> bool:
        """Whether a group is running."""
        with self._lock:
            return self._running

    def submit(self, item: Item) -> Result:
        """The result of ``item``, once the group it went into has run."""
        entry: _Entry[Item, Result] = _Entry(item)
        with self._lock:
            leads = not self._running
            if leads:
                self._running = True
            else:
                self._waiting.append(entry)
        if not leads:
            entry.wake.acquire()  # our group has run, or the group that ran hands over to us
        if not entry.done:
            self._lead(entry)
        if entry.error is not None:
            raise entry.error
        return cast(Result, entry.result)  # set by the group's run

    def _lead(self, first: _Entry[Item, Result]) -> None:
        """Run the group of ``first`` and the items waiting behind it; then hand over to the oldest
        item still waiting, if any."""
        with self._lock:
            taken = self._max_group - 1
            group = [first, *self._waiting[:taken]]
            del self._waiting[:taken]
        results: Sequence[Result] = ()
        error: BaseException | None = None
        try:
            results = self._run_group([entry.item for entry in group])
            if len(results) != len(group):
                raise RuntimeError(f"run_group returned {len(results)} results for {len(group)} items")
        except BaseException as exc:  # handed to every caller of the group, which re-raises it
            error = exc
        for index, entry in enumerate(group):
            entry.error = error
            entry.result = results[index] if error is None else None
            entry.done = True
        with self._lock:
            successor = self._waiting.pop(0) if self._waiting else None
            self._running = successor is not None
        for entry in group[1:]:
            entry.wake.release()
        if successor is not None:
            successor.wake.release()
