"""The worklist item built from an order: content and local start date/time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ris.domain.status import StepStatus
from ris.domain.worklist import build_item, local_date_time
from tests.support.orders import new_order

BERLIN = ZoneInfo("Europe/Berlin")


def test_item_holds_the_table_k61_attributes() -> None:
    command = new_order()
    procedure = command.procedures[0]
    item = build_item(
        patient=command.patient,
        order=command.order,
        procedure=procedure,
        step=procedure.steps[0],
        status=StepStatus.SCHEDULED,
        character_set="ISO_IR 100",
        zone=BERLIN,
    )
    assert item["PatientName"] == "MÜLLER^HANS"
    assert item["AccessionNumber"] == command.order.accession_number
    assert item["RequestedProcedureCodeSequence"] == [
        {"CodeValue": "CTTHXKM", "CodingSchemeDesignator": "99RAD", "CodeMeaning": "CT Thorax mit KM"}
    ]
    sps = item["ScheduledProcedureStepSequence"][0]
    assert sps["ScheduledStationAETitle"] == "CT_RAD_01"
    assert (sps["ScheduledProcedureStepStartDate"], sps["ScheduledProcedureStepStartTime"]) == ("20261123", "093000")
    assert sps["ScheduledProcedureStepStatus"] == "SCHEDULED"
    assert item["ReferencedStudySequence"] == []
    assert item["ReferencedPatientSequence"] == []


def test_start_is_shown_in_site_local_time_across_daylight_saving() -> None:
    summer = dt.datetime(2026, 7, 1, 7, 30, tzinfo=dt.UTC)
    winter = dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC)
    assert local_date_time(summer, BERLIN) == ("20260701", "093000")
    assert local_date_time(winter, BERLIN) == ("20261201", "083000")
    assert local_date_time(dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC), BERLIN) == ("20270101", "003000")
