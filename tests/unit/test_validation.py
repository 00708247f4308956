"""Order validation collects every problem with the path of its field."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ris.domain.errors import ValidationFailed
from ris.domain.model import CodedEntry, OrderData, PatientData
from ris.domain.validation import choose_character_set, validate_new_order
from tests.support.orders import new_order, replace_step, step


def problems_of(command: object) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        validate_new_order(command)  # type: ignore[arg-type]
    return {p.field: p.message for p in caught.value.problems}


def test_a_good_order_passes() -> None:
    validate_new_order(new_order())


def test_every_problem_is_reported_at_once() -> None:
    command = new_order(
        patient={"patient_id": "", "name": "A^B^C^D^E^F", "birth_date": "19601301", "sex": "X"},
        order={"accession_number": "A" * 17, "priority": "URGENT"},
    )
    command = replace_step(command, modality="XX", station_ae="A" * 17, start=dt.datetime(2026, 1, 1, 9))
    problems = problems_of(command)
    assert problems.keys() == {
        "patient.patient_id",
        "patient.name",
        "patient.birth_date",
        "patient.sex",
        "order.accession_number",
        "order.priority",
        "procedures[0].steps[0].modality",
        "procedures[0].steps[0].station_ae",
        "procedures[0].steps[0].start",
    }
    assert problems["patient.patient_id"] == "is required"
    assert "time zone" in problems["procedures[0].steps[0].start"]


def test_codes_need_value_and_scheme() -> None:
    command = replace_step(new_order(), protocol=CodedEntry("", "", "meaning only"))
    assert set(problems_of(command)) == {
        "procedures[0].steps[0].protocol.value",
        "procedures[0].steps[0].protocol.scheme",
    }


def test_a_procedure_needs_steps_and_unique_sps_ids() -> None:
    base = new_order()
    no_steps = dataclasses.replace(base, procedures=(dataclasses.replace(base.procedures[0], steps=()),))
    assert "procedures[0].steps" in problems_of(no_steps)
    twins = dataclasses.replace(
        base, procedures=(dataclasses.replace(base.procedures[0], steps=(step(sps_id="S1"), step(sps_id="S1"))),)
    )
    assert problems_of(twins)["procedures[0].steps"] == "two steps have the same SPS ID"


def test_an_order_needs_a_procedure() -> None:
    assert "procedures" in problems_of(dataclasses.replace(new_order(), procedures=()))


def test_character_set_must_represent_the_text() -> None:
    command = new_order(patient={"name": "ŞAHIN^AYŞE"}, character_set="ISO_IR 100")
    assert "cannot represent" in problems_of(command)["character_set"]
    validate_new_order(dataclasses.replace(command, character_set="ISO_IR 192"))
    assert (
        "not a supported" in problems_of(dataclasses.replace(command, character_set="ISO 2022 IR 87"))["character_set"]
    )


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["MÜLLER^HANS"], "ISO_IR 100"),
        (["SMITH"], "ISO_IR 100"),
        (["ŞAHIN^AYŞE"], "ISO_IR 192"),
        (["山田^太郎"], "ISO_IR 192"),
    ],
)
def test_the_narrowest_character_set_is_chosen(texts: list[str], expected: str) -> None:
    assert choose_character_set(texts) == expected


def test_patient_and_order_defaults_are_valid() -> None:
    validate_new_order(dataclasses.replace(new_order(), patient=PatientData("P1", name="DOE^JOHN"), order=OrderData()))
