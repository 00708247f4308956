"""A clock the test moves by hand, for services that take ``clock=``."""

from __future__ import annotations

import datetime as dt

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
