"""Every SPS status transition, allowed and refused."""

from __future__ import annotations

import itertools

import pytest

from ris.domain.errors import InvalidTransition
from ris.domain.status import ALLOWED_TRANSITIONS, FINAL_STATUSES, StepStatus, check_transition, transition_path

S = StepStatus
EXPECTED_ALLOWED = {
    (S.SCHEDULED, S.ARRIVED),
    (S.SCHEDULED, S.READY),
    (S.SCHEDULED, S.STARTED),
    (S.SCHEDULED, S.CANCELED),
    (S.SCHEDULED, S.DISCONTINUED),
    (S.ARRIVED, S.SCHEDULED),
    (S.ARRIVED, S.READY),
    (S.ARRIVED, S.STARTED),
    (S.ARRIVED, S.CANCELED),
    (S.ARRIVED, S.DISCONTINUED),
    (S.READY, S.ARRIVED),
    (S.READY, S.STARTED),
    (S.READY, S.CANCELED),
    (S.READY, S.DISCONTINUED),
    (S.STARTED, S.COMPLETED),
    (S.STARTED, S.DISCONTINUED),
}
PAIRS = [(a, b) for a, b in itertools.product(StepStatus, StepStatus) if a is not b]


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED_ALLOWED))
def test_allowed_transition_changes_the_step(current: StepStatus, target: StepStatus) -> None:
    assert check_transition(current, target) is True


@pytest.mark.parametrize(("current", "target"), [p for p in PAIRS if p not in EXPECTED_ALLOWED])
def test_refused_transition_raises(current: StepStatus, target: StepStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"{current}.*{target}|{target}.*{current}|cannot become {target}"):
        check_transition(current, target)


@pytest.mark.parametrize("status", list(StepStatus))
def test_repeating_the_current_status_is_harmless(status: StepStatus) -> None:
    assert check_transition(status, status) is False


def test_table_is_what_the_tests_expect() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED_ALLOWED


def test_final_statuses() -> None:
    assert {S.COMPLETED, S.DISCONTINUED, S.CANCELED} == FINAL_STATUSES
    assert all(s.is_final for s in FINAL_STATUSES)
    with pytest.raises(InvalidTransition, match="already COMPLETED"):
        check_transition(S.COMPLETED, S.SCHEDULED)


@pytest.mark.parametrize(
    ("current", "target", "path"),
    [
        (StepStatus.SCHEDULED, StepStatus.STARTED, [StepStatus.STARTED]),
        (StepStatus.SCHEDULED, StepStatus.COMPLETED, [StepStatus.STARTED, StepStatus.COMPLETED]),
        (StepStatus.ARRIVED, StepStatus.COMPLETED, [StepStatus.STARTED, StepStatus.COMPLETED]),
        (StepStatus.STARTED, StepStatus.COMPLETED, [StepStatus.COMPLETED]),
        (StepStatus.SCHEDULED, StepStatus.DISCONTINUED, [StepStatus.DISCONTINUED]),
        (StepStatus.COMPLETED, StepStatus.COMPLETED, []),
    ],
)
def test_transition_path_takes_the_shortest_allowed_way(
    current: StepStatus, target: StepStatus, path: list[StepStatus]
) -> None:
    assert transition_path(current, target) == path


@pytest.mark.parametrize(
    ("current", "target"),
    [(StepStatus.CANCELED, StepStatus.STARTED), (StepStatus.COMPLETED, StepStatus.STARTED)],
)
def test_transition_path_refuses_what_cannot_be_reached(current: StepStatus, target: StepStatus) -> None:
    with pytest.raises(InvalidTransition, match="already"):
        transition_path(current, target)
