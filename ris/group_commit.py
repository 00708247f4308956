"""Group commit: work handed in by several threads at the same time is done in one go.

Each caller of `GroupCommit.submit` waits for the result of its own item. While no group is
running, the caller runs one itself with every item waiting at that moment (its own included);
items handed in while a group runs wait for it to end and then form the next group, which the
oldest of them runs (only the callers of a group are woken when it ends). So a lone
caller never waits for anyone, and under load the cost of one transaction (round trips, commit,
fsync) is shared by the items of a group.

With ``gather_seconds``, a group that is about to run with fewer items than there are callers
active lately (threads that submitted within ``active_seconds``) waits up to that long for the
missing ones. Without it, a steady load from several callers settles into half-groups that take
turns: while one runs, the callers of the last one are still busy with their next item. A single
active caller never waits.
"""

from __future__ import annotations

import threading
import time
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

    def __init__(
        self,
        run_group: Callable[[list[Item]], Sequence[Result]],
        *,
        max_group: int = 64,
        gather_seconds: float = 0.0,
        active_seconds: float = 0.05,
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._run_group = run_group
        self._max_group = max_group
        self._gather_seconds = gather_seconds
        self._active_seconds = active_seconds  # a caller that submitted within this long will again soon
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified when an item waits, while gathering
        self._gathering = False
        self._last_submitted: dict[int, float] = {}  # thread id -> when it last submitted
        # Items waiting for the next group, oldest first; only ever non-empty while a group runs.
        self._waiting: list[_Entry[Item, Result]] = []
        self._running = False
        self._running_items = 0

    @property
    def waiting(self) -> int:
        """Items handed in and not yet taken into a group."""
        with self._lock:
            return len(self._waiting)

    @property
    def running_items(self) -> int:
        """Items of the group being run now (0 when none is, and while a group still gathers)."""
        with self._lock:
            return self._running_items

    def submit(self, item: Item) -> Result:
        """The result of ``item``, once the group it went into has run."""
        entry: _Entry[Item, Result] = _Entry(item)
        with self._lock:
            if self._gather_seconds:
                self._last_submitted[threading.get_ident()] = time.monotonic()
            leads = not self._running
            if leads:
                self._running = True
            else:
                self._waiting.append(entry)
                if self._gathering:
                    self._arrived.notify()
        if not leads:
            entry.wake.acquire()  # our group has run, or the group that ran hands over to us
        if not entry.done:
            self._lead(entry)
        if entry.error is not None:
            raise entry.error
        return cast(Result, entry.result)  # set by the group's run

    def _gather(self) -> None:
        """(Holding the lock.) Wait up to ``gather_seconds`` while fewer items wait (the leader's
        included) than callers have been active lately."""
        now = time.monotonic()
        for caller, submitted in list(self._last_submitted.items()):
            if now - submitted > self._active_seconds:
                del self._last_submitted[caller]
        expected = min(len(self._last_submitted), self._max_group)
        deadline = now + self._gather_seconds
        self._gathering = True
        try:
            while len(self._waiting) + 1 < expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._arrived.wait(remaining)
        finally:
            self._gathering = False

    def _lead(self, first: _Entry[Item, Result]) -> None:
        """Run the group of ``first`` and the items waiting behind it; then hand over to the oldest
        item still waiting, if any."""
        with self._lock:
            if self._gather_seconds:
                self._gather()
            taken = self._max_group - 1
            group = [first, *self._waiting[:taken]]
            del self._waiting[:taken]
            self._running_items = len(group)
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
            self._running_items = 0
        for entry in group[1:]:
            entry.wake.release()
        if successor is not None:
            successor.wake.release()
