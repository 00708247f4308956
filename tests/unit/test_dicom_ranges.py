"""DICOM date/time key values as comparable bounds (dimse.ranges)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from dimse.ranges import combined_bounds, date_bounds, datetime_bounds, time_bounds

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("20261123", ("20261123", "20261123")),
        ("20261123-20261129", ("20261123", "20261129")),
        ("-20261130", (None, "20261130")),
        ("20261123-", ("20261123", None)),
    ],
)
def test_dates(text: str, bounds: tuple[str | None, str | None]) -> None:
    assert date_bounds(text) == bounds


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("0930", ("093000", "093059")),
        ("09", ("090000", "095959")),
        ("093015", ("093015", "093015")),
        ("0930-1000", ("093000", "100059")),
        ("-1000", (None, "100059")),
        ("1800-", ("180000", None)),
        ("093000.5-100000.25", ("093001", "100000")),  # fractions round inwards
        ("09:30-10:00", ("093000", "100059")),  # ACR-NEMA style
        ("235959.5-", ("240000", None)),  # after every stored time of the day
    ],
)
def test_times(text: str, bounds: tuple[str | None, str | None]) -> None:
    assert time_bounds(text) == bounds


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("2026", ("20260101000000", "20261231235959")),
        ("202602", ("20260201000000", "20260228235959")),
        ("2026112309", ("20261123090000", "20261123095959")),
        ("20261123-20261124", ("20261123000000", "20261124235959")),
        ("2026-2027", ("20260101000000", "20271231235959")),
        ("20261123093000+0000", ("20261123103000", "20261123103000")),  # UTC -> Berlin (CET)
        ("20260701093000+0000", ("20260701113000", "20260701113000")),  # summer time
        ("20261123-0500", ("20261123060000", "20261124055959")),  # a day in New York
        ("20261123093000-0100-20261124", ("20261123113000", "20261124235959")),
        ("-2026112410", (None, "20261124105959")),
    ],
)
def test_datetimes(text: str, bounds: tuple[str | None, str | None]) -> None:
    assert datetime_bounds(text, BERLIN) == bounds


@pytest.mark.parametrize(
    ("date", "time", "bounds"),
    [
        ("20261123-20261124", "0800-1000", ("20261123080000", "20261124100059")),
        ("20261123", "0930", ("20261123093000", "20261123093059")),
        ("20261123", "1200-", ("20261123120000", "20261123235959")),
        ("-20261123", "0800-", (None, "20261123235959")),
        ("20261123-", "-1000", ("20261123000000", None)),
    ],
)
def test_combined_date_and_time(date: str, time: str, bounds: tuple[str | None, str | None]) -> None:
    assert combined_bounds(date, time) == bounds


@pytest.mark.parametrize("text", ["2026112", "20261323", "2026-11-23", "abc", "20261123-x"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        date_bounds(text)


@pytest.mark.parametrize("text", ["24", "0960", "9", "0930.5", "x-1000"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError, match="time"):
        time_bounds(text)


@pytest.mark.parametrize("text", ["20260230", "202613", "20261123+2500", "26"])
def test_bad_datetimes(text: str) -> None:
    with pytest.raises(ValueError, match=r"date-time|offset"):
        datetime_bounds(text, BERLIN)
