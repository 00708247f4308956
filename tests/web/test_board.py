"""The board through the Flask test client: default day, each filter, paging, counts per status."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient

from ris.domain.board import BoardFilter
from ris.domain.errors import ValidationFailed
from ris.domain.model import SYSTEM
from ris.domain.status import StepStatus
from ris.services import RisService
from tests.support.orders import BERLIN, new_order, step

DAY = "2026-11-23"


def at(day: str, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=BERLIN)


def schedule(service: RisService, start: dt.datetime, **fields: str) -> int:
    """An order with one step at ``start``; ``fields`` go to the patient (name, patient_id), the order
    (accession_number) or the step (modality, station_ae)."""
    patient = {k: v for k, v in fields.items() if k in ("name", "patient_id")}
    order = {k: v for k, v in fields.items() if k == "accession_number"}
    step_fields = {k: v for k, v in fields.items() if k in ("modality", "station_ae")}
    return service.schedule_order(
        new_order(patient=patient, order=order, steps=(step(start=start, **step_fields),)), SYSTEM
    ).id


def accessions(page: bytes) -> list[str]:
    """The accession column of the board's rows, in order."""
    rows = re.findall(r'<tr data-step="\d+">(.*?)</tr>', page.decode(), re.S)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[4] for row in rows]


def board(client: FlaskClient, **args: str) -> bytes:
    response = client.get("/board", query_string={"date_from": DAY, "date_to": DAY, **args})
    assert response.status_code == 200
    return response.data


def test_home_page_is_the_board_of_today_with_open_steps(frontdesk_client: FlaskClient, service: RisService) -> None:
    today = dt.datetime.now(BERLIN).date().isoformat()
    schedule(service, at(today, 0, 1), accession_number="TODAY1")
    canceled = schedule(service, at(today, 23, 58), accession_number="TODAY2")
    service.cancel_order(canceled, SYSTEM)
    schedule(service, at(today) + dt.timedelta(days=1), accession_number="TOMORROW")
    page = frontdesk_client.get("/")
    assert page.status_code == 200
    assert accessions(page.data) == ["TODAY1"]
    assert accessions(frontdesk_client.get("/board?status=all").data) == ["TODAY1", "TODAY2"]


def test_date_range(frontdesk_client: FlaskClient, service: RisService) -> None:
    schedule(service, at("2026-11-22", 23, 59), accession_number="BEFORE")
    schedule(service, at("2026-11-23", 0, 0), accession_number="FIRST")
    schedule(service, at("2026-11-24", 23, 59), accession_number="LAST")
    schedule(service, at("2026-11-25", 0, 0), accession_number="AFTER")
    assert accessions(board(frontdesk_client, date_to="2026-11-24")) == ["FIRST", "LAST"]
    assert accessions(board(frontdesk_client, date_from="", date_to="2026-11-23")) == ["BEFORE", "FIRST"]
    assert accessions(board(frontdesk_client, date_from="", date_to="")) == ["BEFORE", "FIRST", "LAST", "AFTER"]


def test_modality_and_station(frontdesk_client: FlaskClient, service: RisService) -> None:
    schedule(service, at(DAY, 8), accession_number="CT1", modality="CT", station_ae="CT_RAD_01")
    schedule(service, at(DAY, 9), accession_number="MR1", modality="MR", station_ae="MR_RAD_01")
    schedule(service, at(DAY, 10), accession_number="CT2", modality="CT", station_ae="CT_RAD_02")
    assert accessions(board(frontdesk_client, modality="CT")) == ["CT1", "CT2"]
    assert accessions(board(frontdesk_client, station_ae="CT_RAD_02")) == ["CT2"]
    assert accessions(board(frontdesk_client, modality="MR", station_ae="CT_RAD_02")) == []


def test_status_and_counts(frontdesk_client: FlaskClient, service: RisService) -> None:
    schedule(service, at(DAY, 8), accession_number="SCHED")
    service.check_in(schedule(service, at(DAY, 9), accession_number="ARRIVED"), SYSTEM)
    service.cancel_order(schedule(service, at(DAY, 10), accession_number="CANCELED"), SYSTEM)
    schedule(service, at("2026-11-24", 10), accession_number="OTHERDAY")
    assert accessions(board(frontdesk_client)) == ["SCHED", "ARRIVED"]
    assert accessions(board(frontdesk_client, status="CANCELED")) == ["CANCELED"]
    page = board(frontdesk_client, status="ARRIVED").decode()
    assert accessions(page.encode()) == ["ARRIVED"]
    # counts cover the filtered range whatever status is chosen
    counts = dict(re.findall(r'data-status="(\w+)">\w+ (\d+)<', page))
    assert counts == {
        "SCHEDULED": "1",
        "ARRIVED": "1",
        "READY": "0",
        "STARTED": "0",
        "COMPLETED": "0",
        "DISCONTINUED": "0",
        "CANCELED": "1",
    }
    assert ">open 2<" in page
    assert ">all 3<" in page


def test_free_text_is_a_prefix_of_name_patient_id_or_accession(
    frontdesk_client: FlaskClient, service: RisService
) -> None:
    schedule(service, at(DAY, 8), name="MÜLLER^HANS", patient_id="PID123", accession_number="ACC900")
    schedule(service, at(DAY, 9), name="MÜLLERSCHÖN^ANNA", patient_id="X123", accession_number="ACC123")
    schedule(service, at(DAY, 10), name="SCHMIDT^HANS", patient_id="PID999", accession_number="B%_1")
    for text, expected in {
        "müller": ["ACC900", "ACC123"],
        "Müller, Ha": ["ACC900"],
        "MÜLLER^HANS": ["ACC900"],
        "PID": ["ACC900", "B%_1"],
        "ACC1": ["ACC123"],
        "hans": [],  # the given name is not the start of the name
        "B%": ["B%_1"],
        "%": [],
        "_": [],
    }.items():
        assert accessions(board(frontdesk_client, text=text)) == expected, text


def test_paging(frontdesk_client: FlaskClient, service: RisService) -> None:
    commands = [
        new_order(order={"accession_number": f"PG{n:03d}"}, steps=(step(start=at(DAY, 7) + dt.timedelta(minutes=n)),))
        for n in range(120)
    ]
    service.import_orders(commands, SYSTEM)
    first = board(frontdesk_client)
    assert accessions(first) == [f"PG{n:03d}" for n in range(50)]
    assert b'rel="next"' in first
    assert b'rel="prev"' not in first
    second = board(frontdesk_client, page="2")
    assert accessions(second) == [f"PG{n:03d}" for n in range(50, 100)]
    assert b'rel="prev"' in second
    last = board(frontdesk_client, page="3")
    assert accessions(last) == [f"PG{n:03d}" for n in range(100, 120)]
    assert b'rel="next"' not in last
    assert b"steps 101\xe2\x80\x93120" in last
    assert accessions(board(frontdesk_client, page="4")) == []


def test_next_link_keeps_the_filter(frontdesk_client: FlaskClient, service: RisService) -> None:
    service.import_orders(
        [new_order(steps=(step(start=at(DAY, 8), modality="MR", station_ae="MR1"),)) for _ in range(51)], SYSTEM
    )
    page = board(frontdesk_client, modality="MR").decode()
    link = re.search(r'href="([^"]+)" rel="next"', page)
    assert link
    url = link.group(1).replace("&amp;", "&")
    assert "modality=MR" in url
    assert "page=2" in url
    assert len(accessions(frontdesk_client.get(url).data)) == 1


@pytest.mark.parametrize(
    ("args", "field_message"),
    [
        ({"date_from": "2026-11-24", "date_to": "2026-11-23"}, "is before the start of the range"),
        ({"station_ae": "A_STATION_TITLE_TOO_LONG"}, "is longer than 16 characters"),
        ({"modality": "XX"}, "Not a valid choice"),
        ({"date_from": "23.11.2026"}, "Not a valid date value"),
        ({"text": "x" * 65}, "is longer than 64 characters"),
    ],
)
def test_bad_filters_are_shown_next_to_their_field(
    frontdesk_client: FlaskClient, args: dict[str, str], field_message: str
) -> None:
    page = board(frontdesk_client, **args).decode()
    assert f"<li>{field_message}" in page
    assert 'id="board"' not in page


def test_the_service_refuses_a_bad_filter(service: RisService) -> None:
    with pytest.raises(ValidationFailed) as refused:
        service.search_board(BoardFilter(modality="XX", date_from=dt.date(2026, 1, 2), date_to=dt.date(2026, 1, 1)))
    assert {p.field for p in refused.value.problems} == {"modality", "date_to"}


def test_rows_carry_the_step_and_order(service: RisService) -> None:
    order_id = schedule(service, at(DAY, 8, 15), accession_number="ONE")
    page = service.search_board(
        BoardFilter(date_from=dt.date(2026, 11, 23), statuses=frozenset({StepStatus.SCHEDULED}))
    )
    (row,) = page.rows
    assert row.order_id == order_id
    assert row.start == at(DAY, 8, 15)
    assert row.start.tzinfo is not None
    assert page.counts == {StepStatus.SCHEDULED: 1}
