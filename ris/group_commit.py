"""Group commit: work handed in by several threads at the same time is done in one go.

Each caller of `GroupCommit.submit` waits for the result of its own item. While no group is
running, the caller runs one itself with every item waiting at that moment (its own included);
items handed in while a group runs wait for it to end and then form the next group. So a lone
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
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Runs ``run_group(items)`` for groups of at most ``max_group`` concurrently submitted items;
    it must return one result per item, in order. An exception it raises is raised to every
    caller of that group."""

    def __init__(self, run_group: Callable[[list[Item]], Sequence[Result]], max_group: int = 64) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._run_group = run_group
        self._max_group = max_group
        self._changed = threading.Condition()
        self._waiting: list[_Entry[Item, Result]] = []
        self._running = False

    @property
    def waiting(self) -> int:
        """Items handed in and not yet taken into a group."""
        with self._changed:
            return len(self._waiting)

    @property
    def running(self) -> bool:
        """Whether a group is running."""
        with self._changed:
            return self._running

    def submit(self, item: Item) -> Result:
        """The result of ``item``, once the group it went into has run."""
        entry: _Entry[Item, Result] = _Entry(item)
        with self._changed:
            self._waiting.append(entry)
        while True:
            with self._changed:
                while self._running and not entry.done:
                    self._changed.wait()
                if entry.done:
                    break
                # Nothing runs and our item still waits: run a group of the oldest waiting items
                # (ours may be beyond max_group of them: then the next group, after this one).
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                self._running = True
            self._run(group)
        if entry.error is not None:
            raise entry.error
        return cast(Result, entry.result)  # set by the group's run

    def _run(self, group: list[_Entry[Item, Result]]) -> None:
        results: Sequence[Result] = ()
        error: BaseException | None = None
        try:
            results = self._run_group([entry.item for entry in group])
            if len(results) != len(group):
                raise RuntimeError(f"run_group returned {len(results)} results for {len(group)} items")
        except BaseException as exc:  # handed to every caller of the group, which re-raises it
            error = exc
        with self._changed:
            for index, entry in enumerate(group):
                entry.error = error
                entry.result = results[index] if error is None else None
                entry.done = True
            self._running = False
            self._changed.notify_all()
