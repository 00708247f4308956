"""DICOM value representation rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from ris.domain import values as vr


@pytest.mark.parametrize(
    ("check", "value", "problem"),
    [
        (vr.lo_problem, "x" * 64, None),
        (vr.lo_problem, "x" * 65, "longer than 64"),
        (vr.lo_problem, "a\\b", "backslash"),
        (vr.lo_problem, "a\nb", "control"),
        (vr.sh_problem, "A" * 16, None),
        (vr.sh_problem, "A" * 17, "longer than 16"),
        (vr.cs_problem, "ROUTINE_1", None),
        (vr.cs_problem, "routine", "upper-case"),
        (vr.ae_title_problem, "CT_RAD_01", None),
        (vr.ae_title_problem, "   ", "empty"),
        (vr.ae_title_problem, "A" * 17, "longer than 16"),
        (vr.ae_title_problem, "CT\\1", "backslash"),
        (vr.person_name_problem, "MÜLLER^HANS^^DR.^", None),
        (vr.person_name_problem, "Yamada^Tarou=山田^太郎=やまだ^たろう", None),
        (vr.person_name_problem, "A^B^C^D^E^F", "five components"),
        (vr.person_name_problem, "A=B=C=D", "three component groups"),
        (vr.person_name_problem, "X" * 65, "longer than 64"),
        (vr.date_problem, "20240229", None),
        (vr.date_problem, "20230229", "not a date"),
        (vr.date_problem, "2024-01-01", "not a date"),
        (vr.time_problem, "0930", None),
        (vr.time_problem, "093000.123456", None),
        (vr.time_problem, "2460", "not a time"),
        (vr.time_problem, "0930.5", "not a time"),
        (vr.uid_problem, "1.2.840.10008.5.1.4.31", None),
        (vr.uid_problem, "1.2.03", "not a UID"),
        (vr.uid_problem, "1." + "2" * 63, "longer than 64"),
        (vr.uid_problem, "1", "not a UID"),
        (vr.modality_problem, "CT", None),
        (vr.modality_problem, "XX", "not a DICOM modality"),
        (vr.sex_problem, "", None),
        (vr.sex_problem, "X", "M, F, O"),
        (vr.priority_problem, "STAT", None),
        (vr.priority_problem, "URGENT", "STAT, HIGH"),
    ],
)
def test_value_checks(check: Callable[[str], str | None], value: str, problem: str | None) -> None:
    result = check(value)
    if problem is None:
        assert result is None
    else:
        assert result is not None
        assert problem in result


def test_times_parse_with_their_optional_parts() -> None:
    assert vr.parse_tm("09") == dt.time(9)
    assert vr.parse_tm("0930") == dt.time(9, 30)
    assert vr.parse_tm("093015.5") == dt.time(9, 30, 15, 500000)
    assert vr.parse_tm("235960") == dt.time(23, 59, 59)  # leap second


def test_fold_case_keeps_the_length() -> None:
    assert vr.fold_case("Müller^Hans") == "MÜLLER^HANS"
    assert vr.fold_case("Groß") == "GROß"
    assert len(vr.fold_case("straße?")) == len("straße?")
