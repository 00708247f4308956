"""DICOM date, time and date-time key values (PS3.4 C.2.2.2.5) as comparable text bounds.

The worklist compares DA as ``YYYYMMDD``, TM as ``HHMMSS`` and date-times as ``YYYYMMDDHHMMSS`` in
the site's local time, each as plain text. A key value with less precision stands for the whole
period it names: time ``0930`` as a low bound is ``093000``, as a high bound ``093059``; a
single value is the range from its first to its last moment. Fractions of a second round inwards
(stored times are whole seconds). A date-time with a UTC offset is converted to the site's time
zone; one without is already local (we do not negotiate timezone query adjustment).

Each function returns ``(low, high)``, ``None`` for an open end, or raises :class:`ValueError`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from zoneinfo import ZoneInfo

from ris.domain.values import parse_da

Bounds = tuple[str | None, str | None]

DAY_START, DAY_END = "000000", "235959"
_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")
_DATETIME_TEXT = r"\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DATETIME = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?")
_DATETIME_RANGE = re.compile(f"({_DATETIME_TEXT})?-({_DATETIME_TEXT})?")


def split_range(text: str) -> tuple[str, str] | None:
    """``(low, high)`` text of ``low-high``, ``-high`` or ``low-``; ``None`` for a single value."""
    low, dash, high = text.partition("-")
    return (low.strip(), high.strip()) if dash else None


def date_bounds(text: str) -> Bounds:
    """DA single value or range."""
    parts = split_range(text)
    low, high = parts if parts is not None else (text, text)
    for value in (low, high):
        if value:
            try:
                parse_da(value)
            except ValueError:
                raise ValueError(f"not a DICOM date: {value!r}") from None
    return low or None, high or None


def time_bounds(text: str) -> Bounds:
    """TM single value or range; ``HH:MM:SS`` (ACR-NEMA style) is accepted too."""
    parts = split_range(text.replace(":", ""))
    low, high = parts if parts is not None else (text.replace(":", ""),) * 2
    return (_time_bound(low, upper=False) if low else None, _time_bound(high, upper=True) if high else None)


def _time_bound(text: str, *, upper: bool) -> str:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a DICOM time: {text!r}")
    hour, minute, second, fraction = match.groups()
    if fraction and second is None:
        raise ValueError(f"not a DICOM time: {text!r}")
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 60:
        raise ValueError(f"not a DICOM time: {text!r}")
    fill = "59" if upper else "00"
    seconds = min(int(second), 59) if second is not None else int(fill)
    whole = int(hour) * 3600 + int(minute if minute is not None else fill) * 60 + seconds
    if fraction and int(fraction) and not upper:
        whole += 1  # 09:30:00.5 as a low bound excludes 09:30:00
    return f"{whole // 3600:02d}{whole // 60 % 60:02d}{whole % 60:02d}" if whole < 86400 else "240000"


def datetime_bounds(text: str, zone: ZoneInfo) -> Bounds:
    """DT single value or range, as local ``YYYYMMDDHHMMSS`` of ``zone``."""
    if _DATETIME.fullmatch(text):
        try:
            return _datetime_bound(text, zone, upper=False), _datetime_bound(text, zone, upper=True)
        except ValueError:
            pass  # e.g. "2026-2027" parses as 2026 with offset -2027 (no such offset): a range
    parts = _DATETIME_RANGE.fullmatch(text)  # not split_range: an offset has a "-" of its own
    if parts is None:
        raise ValueError(f"not a DICOM date-time: {text!r}")
    low, high = parts.groups()
    return (
        _datetime_bound(low, zone, upper=False) if low else None,
        _datetime_bound(high, zone, upper=True) if high else None,
    )


def _datetime_bound(text: str, zone: ZoneInfo, *, upper: bool) -> str:
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a DICOM date-time: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    year_n = int(year)
    month_n = int(month) if month else (12 if upper else 1)
    if not 1 <= month_n <= 12:
        raise ValueError(f"not a DICOM date-time: {text!r}")
    last_day = calendar.monthrange(year_n, month_n)[1]
    day_n = int(day) if day else (last_day if upper else 1)
    fill = 59 if upper else 0
    moment = dt.datetime(
        year_n,
        month_n,
        day_n,
        int(hour) if hour else (23 if upper else 0),
        int(minute) if minute else fill,
        min(int(second), 59) if second else fill,
    )
    if fraction and int(fraction) and not upper:
        moment += dt.timedelta(seconds=1)
    if offset:
        hours, minutes = int(offset[1:3]), int(offset[3:])
        if hours > 14 or minutes > 59:
            raise ValueError(f"not a UTC offset: {offset!r}")
        sign = -1 if offset[0] == "-" else 1
        tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        try:
            moment = moment.replace(tzinfo=tz).astimezone(zone).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"date-time out of range: {text!r}") from None
    return moment.strftime("%Y%m%d%H%M%S").zfill(14)


def combined_bounds(date_text: str, time_text: str) -> Bounds:
    """Date and time keys matched as one date-time (PS3.4 C.2.2.2.5 combined matching):
    ``D1-D2`` with ``T1-T2`` is the range from D1 T1 to D2 T2."""
    date_low, date_high = date_bounds(date_text)
    time_low, time_high = time_bounds(time_text)
    return (
        date_low + (time_low or DAY_START) if date_low else None,
        date_high + (time_high or DAY_END) if date_high else None,
    )
