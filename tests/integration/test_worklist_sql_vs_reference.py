"""The worklist SQL statement and the pure-Python reference matcher agree (DESIGN §6): random
orders are stored, random typed queries run as SQL on the database and as the reference matcher on
the items as stored, and both must return the same items in the same order.

Each example adds its orders to those of the earlier ones, so later queries see a growing and
varied worklist (the database is the test's own; the examples never need a clean one)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ris.domain.model import Actor, OrderKey
from ris.domain.status import StepStatus
from ris.domain.worklist import (
    SPS_SEQUENCE,
    START_DATETIME,
    AnyOf,
    Criterion,
    Item,
    Matcher,
    Range,
    SingleValue,
    Wildcard,
    WorklistQuery,
)
from ris.domain.worklist_match import find_items
from ris.services import RisService
from tests.support.orders import BERLIN, new_order, step

CLERK = Actor("user", "clerk")
SPS = SPS_SEQUENCE + "."

# Small pools, so that random queries often match: names with non-ASCII letters, a letter whose
# upper case is longer (ß), lower case, SQL's own wildcard characters and trailing separators.
NAMES = ("MÜLLER^HANS", "MUELLER^HANS", "müller^anna", "GROß^ERIK", "100%_SURE^X", "A_B^C", "ΠΑΠΑ^ΝΙΚΟΣ", "SMITH")
PATIENT_IDS = ("P1", "P2", "P_1", "P%2")
MODALITIES = ("CT", "MR", "US")
STATIONS = ("CT_RAD_01", "CT_RAD_02", "MR_3T_01", "")
DESCRIPTIONS = ("CT Thorax", "CT Thorax mit KM", "MRT Knie", "a_b%c")
DAYS = ("20261121", "20261122", "20261123", "20261124")
TIMES = ("070000", "081500", "093000", "120000", "184500")
PATTERN_CHARACTERS = "MÜUELRHANS^*?%_ßmü"


@st.composite
def orders(draw: st.DrawFn) -> tuple[Any, str | None]:
    """A new order with random matching values, and the status change it gets (or None)."""
    day, time = draw(st.sampled_from(DAYS)), draw(st.sampled_from(TIMES))
    start = dt.datetime.strptime(day + time, "%Y%m%d%H%M%S").replace(tzinfo=BERLIN)
    command = new_order(
        patient={"name": draw(st.sampled_from(NAMES)), "patient_id": draw(st.sampled_from(PATIENT_IDS))},
        order={"admission_id": draw(st.sampled_from(("", "ADM_1", "ADM%2")))},
        steps=(
            step(
                start=start,
                modality=draw(st.sampled_from(MODALITIES)),
                station_ae=draw(st.sampled_from(STATIONS)),
                description=draw(st.sampled_from(DESCRIPTIONS)),
            ),
        ),
    )
    change = draw(st.sampled_from((None, None, None, "cancel", "start")))
    return command, change


def texts(pool: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A value from ``pool`` or a random wildcard-ish pattern; often a pool value with parts
    replaced by ``*`` or ``?``."""

    def blur(value: str, cut: tuple[int, int], wildcard: str) -> str:
        low, high = sorted(cut)
        return value[:low] + wildcard + value[high:]

    blurred = st.builds(
        blur,
        st.sampled_from(pool),
        st.tuples(st.integers(0, 12), st.integers(0, 12)),
        st.sampled_from(("*", "?", "", "*?")),
    )
    return st.one_of(st.sampled_from(pool), blurred, st.text(PATTERN_CHARACTERS, min_size=1, max_size=6))


def text_matcher(pool: tuple[str, ...]) -> st.SearchStrategy[Matcher]:
    return texts(pool).map(lambda value: Wildcard(value) if "*" in value or "?" in value else SingleValue(value))


def bounds(pool: tuple[str, ...]) -> st.SearchStrategy[Range]:
    return st.builds(Range, st.none() | st.sampled_from(pool), st.none() | st.sampled_from(pool))


DATE_TIMES = tuple(day + time for day in DAYS for time in TIMES[::2])

CRITERIA = st.one_of(
    st.builds(Criterion, st.just("PatientName"), text_matcher(NAMES), st.booleans()),
    st.builds(Criterion, st.just("PatientID"), text_matcher(PATIENT_IDS)),
    st.builds(Criterion, st.just(SPS + "Modality"), text_matcher(MODALITIES), st.booleans()),
    st.builds(Criterion, st.just(SPS + "ScheduledStationAETitle"), text_matcher(STATIONS)),
    st.builds(Criterion, st.just(SPS + "ScheduledProcedureStepDescription"), text_matcher(DESCRIPTIONS)),
    st.builds(Criterion, st.just("AdmissionID"), text_matcher(("ADM_1", "ADM%2", "ADMX1"))),
    st.builds(Criterion, st.just("RequestedProcedureCodeSequence.CodeValue"), text_matcher(("CTTHXKM", "X"))),
    st.builds(
        Criterion,
        st.just(SPS + "ScheduledProcedureStepStartDate"),
        st.one_of(st.builds(SingleValue, st.sampled_from(DAYS)), bounds(DAYS)),
    ),
    st.builds(Criterion, st.just(SPS + "ScheduledProcedureStepStartTime"), bounds(TIMES)),
    st.builds(Criterion, st.just(START_DATETIME), bounds(DATE_TIMES)),
)


# Study UIDs are only known once the orders are stored: a UID criterion is drawn as positions in
# the stored list (a position past its end stands for a UID nobody has).
UID_POSITIONS = st.lists(st.integers(0, 40), min_size=1, max_size=3)

QUERIES = st.builds(
    WorklistQuery,
    criteria=st.lists(
        st.one_of(
            CRITERIA, UID_POSITIONS.map(lambda p: Criterion("StudyInstanceUID", AnyOf(tuple(f"#{i}" for i in p))))
        ),
        max_size=3,
    ).map(tuple),
    include_final=st.booleans(),
    restrict_to_station=st.none() | st.sampled_from(STATIONS[:2]),
    limit=st.none() | st.integers(1, 4),
)


def with_uids(query: WorklistQuery, uids: list[str]) -> WorklistQuery:
    def resolved(criterion: Criterion) -> Criterion:
        if not isinstance(criterion.matcher, AnyOf):
            return criterion
        positions = (int(value[1:]) for value in criterion.matcher.values)
        return Criterion(criterion.attribute, AnyOf(tuple(uids[i] if i < len(uids) else "1.2.999" for i in positions)))

    return dataclasses.replace(query, criteria=tuple(map(resolved, query.criteria)))


def identities(items: list[Item]) -> list[tuple[str, str]]:
    return [(item["StudyInstanceUID"], item[SPS_SEQUENCE][0]["ScheduledProcedureStepID"]) for item in items]


# No shrinking: every shrink step stores orders again (minutes on PostgreSQL), and the failing
# query is in the assertion message anyway.
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_sql_and_reference_matcher_agree(service: RisService, data: st.DataObject) -> None:
    for command, change in data.draw(st.lists(orders(), min_size=1, max_size=4), label="new orders"):
        accession = service.schedule_order(command, CLERK).order.accession_number
        if change == "cancel":
            service.cancel_order(OrderKey(accession_number=accession), CLERK)
        elif change == "start":
            service.change_order_status(OrderKey(accession_number=accession), StepStatus.STARTED, CLERK)
    stored = service.find_worklist_items(WorklistQuery(include_final=True)).items
    uids = [item["StudyInstanceUID"] for item in stored]
    for drawn in data.draw(st.lists(QUERIES, min_size=1, max_size=5), label="queries"):
        query = with_uids(drawn, uids)
        result = service.find_worklist_items(query)
        expected = find_items(stored, query)
        assert identities(result.items) == identities(expected), query
        matching = find_items(stored, dataclasses.replace(query, limit=None))
        assert result.truncated == (query.limit is not None and len(matching) > query.limit), query
