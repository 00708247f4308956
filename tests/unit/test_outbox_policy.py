"""The outbox retry policy: exponential backoff with jitter, a cap, and a give-up age."""

from __future__ import annotations

import datetime as dt

import pytest

from ris.domain.outbox import RetryPolicy

POLICY = RetryPolicy(initial_delay=5, max_delay=60, give_up_after=3600)


@pytest.mark.parametrize(("attempts", "base"), [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (30, 60)])
def test_delay_doubles_up_to_the_cap_and_jitters_in_the_upper_half(attempts: int, base: float) -> None:
    assert POLICY.delay(attempts, 0.0) == base / 2
    assert POLICY.delay(attempts, 0.999) == pytest.approx(base, rel=1e-3)
    assert base / 2 <= POLICY.delay(attempts, 0.5) <= base


def test_gives_up_after_the_age() -> None:
    assert not POLICY.gives_up(dt.timedelta(seconds=3599))
    assert POLICY.gives_up(dt.timedelta(hours=1))
