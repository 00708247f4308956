"""The mapping tables as data, and a site's TOML file applied over them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hl7.er7 import FieldPath
from hl7.mapping import (
    ANY_STATUS,
    DEFAULT_FIELDS,
    DEFAULT_ORDER_CONTROL,
    DEFAULT_PRIORITIES,
    SEXES,
    MappingError,
    OrderAction,
    OrderMapping,
    StationRule,
    ValueKind,
    load_mapping,
)
from ris.domain.model import NewOrder, OrderData, PatientData, ProcedureData, StepData
from ris.domain.status import StepStatus
from ris.domain.values import PRIORITIES


def test_design_table_rows() -> None:
    """DESIGN §5, row by row: the first candidate of each target."""
    first = {target: str(rule.sources[0]) for target, rule in DEFAULT_FIELDS.items()}
    assert first["patient.patient_id"] == "PID-3.1"
    assert first["patient.issuer"] == "PID-3.4"
    assert (first["patient.name"], first["patient.birth_date"], first["patient.sex"]) == ("PID-5", "PID-7", "PID-8")
    assert first["order.referring_physician"] == "PV1-8.2"
    assert (first["order.admission_id"], first["order.patient_location"]) == ("PV1-19", "PV1-3")
    assert (first["order.placer_order_number"], first["order.filler_order_number"]) == ("ORC-2", "ORC-3")
    assert [str(path) for path in DEFAULT_FIELDS["step.start"].sources] == ["TQ1-7", "ORC-7.4", "OBR-27.4"]
    assert [str(path) for path in DEFAULT_FIELDS["order.priority"].sources] == ["TQ1-9", "ORC-7.6", "OBR-27.6"]
    assert first["procedure.code"] == str(DEFAULT_FIELDS["step.protocol"].sources[-1]) == "OBR-4"
    assert first["order.requesting_physician"] == "OBR-16.2"
    assert [str(path) for path in DEFAULT_FIELDS["order.accession_number"].sources] == ["IPC-1", "OBR-18"]
    assert DEFAULT_FIELDS["procedure.requested_procedure_id"].sources[-1] == FieldPath.parse("OBR-19")
    assert DEFAULT_FIELDS["step.sps_id"].sources[-1] == FieldPath.parse("OBR-20")
    assert DEFAULT_FIELDS["step.station_ae"].sources[-1] == FieldPath.parse("OBR-21")
    assert DEFAULT_FIELDS["step.modality"].sources[-1] == FieldPath.parse("OBR-24")
    assert first["order.reason"] == "OBR-31.2"
    assert first["step.performing_physician"] == "OBR-34.1.2"
    assert first["procedure.description"] == "OBR-44.2"
    assert DEFAULT_FIELDS["procedure.study_uid"].sources[-1] == FieldPath.parse("ZDS-1")
    assert first["order.comments"] == "NTE-3"


def test_every_target_names_a_field_of_the_domain_command() -> None:
    """Target names are the domain's field names, so the service's problems lead back to HL7 fields."""
    owners = {
        "patient": PatientData,
        "order": OrderData,
        "procedure": ProcedureData,
        "step": StepData,
    }
    for target in DEFAULT_FIELDS:
        owner, _, name = target.partition(".")
        if owner in owners:
            assert name in {f.name for f in dataclasses.fields(owners[owner])}, target
        else:
            assert owner in ("merge", "status"), target
    assert {f.name for f in dataclasses.fields(NewOrder)} == {"patient", "order", "procedures", "character_set"}


def test_value_kinds_fit_their_targets() -> None:
    kinds = {target: rule.kind for target, rule in DEFAULT_FIELDS.items()}
    assert kinds["step.start"] is ValueKind.DATETIME
    assert kinds["patient.birth_date"] is ValueKind.DATE
    assert {target for target, kind in kinds.items() if kind is ValueKind.PERSON_NAME} == {
        "patient.name",
        "order.referring_physician",
        "order.requesting_physician",
        "step.performing_physician",
    }
    assert {target for target, kind in kinds.items() if kind is ValueKind.CODE} == {"procedure.code", "step.protocol"}


def test_order_control_table() -> None:
    assert DEFAULT_ORDER_CONTROL == {
        ("NW", ANY_STATUS): OrderAction.SCHEDULE,
        ("XO", ANY_STATUS): OrderAction.UPDATE,
        ("CA", ANY_STATUS): OrderAction.CANCEL,
        ("DC", ANY_STATUS): OrderAction.DISCONTINUE,
        ("SC", "IP"): OrderAction.START,
        ("SC", "CM"): OrderAction.COMPLETE,
    }
    mapping = OrderMapping()
    assert mapping.action("NW", "SC") is OrderAction.SCHEDULE
    assert mapping.action("SC", "CM") is OrderAction.COMPLETE
    assert mapping.action("SC", "A") is None
    assert mapping.action("ZZ", "") is None
    assert OrderAction.CANCEL.target_status is StepStatus.CANCELED
    assert OrderAction.START.target_status is StepStatus.STARTED
    assert OrderAction.SCHEDULE.target_status is None


def test_priority_and_sex_tables_produce_dicom_values() -> None:
    assert set(DEFAULT_PRIORITIES.values()) <= PRIORITIES
    assert DEFAULT_PRIORITIES["S"] == "STAT"
    assert DEFAULT_PRIORITIES["A"] == "HIGH"
    assert DEFAULT_PRIORITIES["R"] == "ROUTINE"
    assert set(SEXES.values()) <= {"M", "F", "O", ""}


def test_station_rules_match_modality_and_optional_location() -> None:
    mapping = OrderMapping(
        station_rules=(
            StationRule("CT", "CT_NOTAUF_01", "CTNA1", location="NOTAUF"),
            StationRule("CT", "CT_RAD_01"),
        )
    )
    assert mapping.station("CT", "NOTAUF 12 1") == StationRule("CT", "CT_NOTAUF_01", "CTNA1", "NOTAUF")
    assert mapping.station("CT", "NOTAUF") == StationRule("CT", "CT_NOTAUF_01", "CTNA1", "NOTAUF")
    assert mapping.station("CT", "NOTAUFNAHME") == StationRule("CT", "CT_RAD_01")
    assert mapping.station("MR", "NOTAUF") is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_site_file_overrides_single_entries(tmp_path: Path) -> None:
    mapping = load_mapping(
        write(
            tmp_path,
            """
default_coding_scheme = "99KLINIKUM"

[fields]
"step.station_ae" = ["ZDS-2", "OBR-21"]
"patient.patient_id" = "PID-2.1"

[order_control]
"SC/A" = "arrive"
"OC" = "cancel"
"SC/CM" = "reject"

[priorities]
"P" = "HIGH"

[[station_rules]]
modality = "CT"
location = "NOTAUF"
station_ae = "CT_NOTAUF_01"
""",
        )
    )
    assert mapping.fields["step.station_ae"].sources == (FieldPath.parse("ZDS-2"), FieldPath.parse("OBR-21"))
    assert mapping.fields["step.station_ae"].kind is ValueKind.TEXT
    assert mapping.fields["patient.patient_id"].sources == (FieldPath.parse("PID-2.1"),)
    assert mapping.fields["patient.name"] == DEFAULT_FIELDS["patient.name"]
    assert mapping.action("SC", "A") is OrderAction.ARRIVE
    assert mapping.action("OC", "") is OrderAction.CANCEL
    assert mapping.action("SC", "CM") is None
    assert mapping.action("NW", "") is OrderAction.SCHEDULE
    assert mapping.priorities["P"] == "HIGH"
    assert mapping.priorities["S"] == "STAT"
    assert mapping.station_rules == (StationRule("CT", "CT_NOTAUF_01", location="NOTAUF"),)
    assert mapping.default_coding_scheme == "99KLINIKUM"
    # The defaults themselves are untouched.
    assert OrderMapping().action("SC", "CM") is OrderAction.COMPLETE


def test_no_file_gives_the_defaults() -> None:
    assert load_mapping(None) == OrderMapping()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[fields]\n"step.colour" = "OBR-21"\n', "fields: unknown target 'step.colour'"),
        ('[fields]\n"step.station_ae" = "OBR21"\n', "fields: 'step.station_ae': not an HL7 field path: 'OBR21'"),
        ('[fields]\n"step.station_ae" = []\n', "must be a field path or a list of them"),
        ('[fields]\n"procedure.code" = "OBR-4.1"\n', "is a coded entry: name the field"),
        ('[order_control]\n"NW" = "explode"\n', "order_control: 'NW' = 'explode' is not one of schedule"),
        ('[order_control]\n"NEW" = "schedule"\n', "order_control: 'NEW' is not ORC-1 or ORC-1/ORC-5"),
        ('[priorities]\n"P" = "URGENT"\n', "priorities: 'P' = 'URGENT' is not one of HIGH, LOW"),
        ('[[station_rules]]\nstation_ae = "CT1"\n', "station_rules #1: needs a modality"),
        ('[[station_rules]]\nmodality = "CT"\n', "station_rules #1: station_ae must not be empty"),
        ('[[station_rules]]\nmodality = "CT"\nstation_ae = "X"\nroom = "1"\n', "unknown key 'room'"),
        ("stations = 1\n", "unknown entry 'stations'"),
        ("fields = 1\n", "[fields] must be a table"),
        ('default_coding_scheme = ""\n', "default_coding_scheme: '' is not a coding scheme designator"),
        ("[fields\n", "cannot be read as TOML"),
    ],
)
def test_a_bad_site_file_is_one_line_naming_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_a_missing_site_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"missing\.toml: cannot be read"):
        load_mapping(tmp_path / "missing.toml")
