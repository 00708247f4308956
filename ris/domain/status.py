"""Scheduled Procedure Step status and its allowed transitions (data, not code)."""

from __future__ import annotations

from enum import StrEnum

from ris.domain.errors import InvalidTransition


class StepStatus(StrEnum):
    """DICOM Scheduled Procedure Step Status (0040,0020), PS3.3 C.4.10 defined terms we use."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return not ALLOWED_TRANSITIONS[self]


# Status -> statuses it may move to. A step not yet started can be cancelled or discontinued;
# once a modality has started it, only the modality's outcome (COMPLETED/DISCONTINUED) ends it.
ALLOWED_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.SCHEDULED: frozenset(
        {StepStatus.ARRIVED, StepStatus.READY, StepStatus.STARTED, StepStatus.CANCELED, StepStatus.DISCONTINUED}
    ),
    StepStatus.ARRIVED: frozenset(
        {StepStatus.SCHEDULED, StepStatus.READY, StepStatus.STARTED, StepStatus.CANCELED, StepStatus.DISCONTINUED}
    ),
    StepStatus.READY: frozenset({StepStatus.ARRIVED, StepStatus.STARTED, StepStatus.CANCELED, StepStatus.DISCONTINUED}),
    StepStatus.STARTED: frozenset({StepStatus.COMPLETED, StepStatus.DISCONTINUED}),
    StepStatus.COMPLETED: frozenset(),
    StepStatus.DISCONTINUED: frozenset(),
    StepStatus.CANCELED: frozenset(),
}

FINAL_STATUSES: frozenset[StepStatus] = frozenset(s for s in StepStatus if s.is_final)
OPEN_STATUSES: frozenset[StepStatus] = frozenset(StepStatus) - FINAL_STATUSES
# Statuses in which the schedule (time, station, procedure) may still be changed.
RESCHEDULABLE_STATUSES: frozenset[StepStatus] = frozenset({StepStatus.SCHEDULED, StepStatus.ARRIVED, StepStatus.READY})


def check_transition(current: StepStatus, target: StepStatus) -> bool:
    """Return True when the step must change, False when it already has ``target`` (a repeated
    status message is harmless); raise :class:`InvalidTransition` when the move is not allowed."""
    if current is target:
        return False
    if target not in ALLOWED_TRANSITIONS[current]:
        if current.is_final:
            raise InvalidTransition(f"the step is already {current} and cannot become {target}")
        raise InvalidTransition(f"a {current} step cannot become {target}")
    return True


def transition_path(current: StepStatus, target: StepStatus) -> list[StepStatus]:
    """The statuses a step passes through to reach ``target`` by allowed moves, shortest first
    (a SCHEDULED step completed by a modality goes through STARTED). Empty when it is already
    there; :class:`InvalidTransition` when ``target`` cannot be reached."""
    paths: dict[StepStatus, list[StepStatus]] = {current: []}
    frontier = [current]
    while frontier and target not in paths:
        following = []
        for status in frontier:
            for reachable in sorted(ALLOWED_TRANSITIONS[status]):
                if reachable not in paths:
                    paths[reachable] = [*paths[status], reachable]
                    following.append(reachable)
        frontier = following
    if target not in paths:
        check_transition(current, target)  # raises with the usual wording
    return paths[target]
