"""The reference worklist matcher: a :class:`WorklistQuery` applied to :data:`Item` mappings in
plain Python (PS3.4 C.2.2.2).

The database answers scanners with one SQL statement (``ris.db.worklist_sql``); this small,
obviously-correct twin states what that statement must return, and the tests check that both
agree on random items and queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from ris.domain.status import FINAL_STATUSES, StepStatus
from ris.domain.values import fold_case
from ris.domain.worklist import (
    CASE_FOLDABLE_ATTRIBUTES,
    SPS_SEQUENCE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Item,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
    is_universal_pattern,
)


def attribute_value(item: Item, path: str) -> str | None:
    """The text of ``path`` in ``item`` (``Sequence.Keyword`` reads the first item of the
    sequence); ``None`` when the item does not have it."""
    if path == START_DATETIME:
        date = attribute_value(item, f"{SPS_SEQUENCE}.ScheduledProcedureStepStartDate")
        time = attribute_value(item, f"{SPS_SEQUENCE}.ScheduledProcedureStepStartTime")
        return None if date is None or time is None else date + time
    node: Any = item
    for depth, keyword in enumerate(path.split(".")):
        if depth:
            node = node[0] if isinstance(node, list) and node else None
        if not isinstance(node, dict) or keyword not in node:
            return None
        node = node[keyword]
    return node if isinstance(node, str) else None


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def criterion_matches(item: Item, criterion: Criterion) -> bool:
    matcher = criterion.matcher
    if isinstance(matcher, Wildcard) and is_universal_pattern(matcher.pattern):
        return True
    value = attribute_value(item, criterion.attribute)
    if value is None:
        return False
    fold = criterion.case_insensitive
    if fold and criterion.attribute not in CASE_FOLDABLE_ATTRIBUTES:
        raise ValueError(f"{criterion.attribute} cannot be matched without regard to case")

    def norm(text: str) -> str:
        return fold_case(text) if fold else text

    match matcher:
        case SingleValue(wanted):
            return norm(value) == norm(wanted)
        case Wildcard(pattern):
            return _wildcard_regex(norm(pattern)).fullmatch(norm(value)) is not None
        case Range(low, high):
            return value != "" and (not low or value >= low) and (not high or value <= high)
        case AnyOf(values):
            return norm(value) in {norm(v) for v in values}
    raise TypeError(f"unknown matcher {matcher!r}")  # pragma: no cover - exhaustive above


def item_matches(item: Item, query: WorklistQuery) -> bool:
    status = StepStatus(attribute_value(item, f"{SPS_SEQUENCE}.ScheduledProcedureStepStatus") or "")
    if query.statuses:
        if status not in query.statuses:
            return False
    elif not query.include_final and status in FINAL_STATUSES:
        return False
    if query.restrict_to_station is not None and (
        attribute_value(item, f"{SPS_SEQUENCE}.ScheduledStationAETitle") != query.restrict_to_station
    ):
        return False
    return all(criterion_matches(item, criterion) for criterion in query.criteria)


def find_items(items: Iterable[Item], query: WorklistQuery) -> list[Item]:
    """The items of ``items`` (in the order they were stored) that match, by start time, at most
    ``query.limit`` of them."""
    found = sorted((item for item in items if item_matches(item, query)), key=_start)
    return found if query.limit is None else found[: query.limit]


def _start(item: Item) -> str:
    return attribute_value(item, START_DATETIME) or ""
