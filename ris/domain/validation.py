"""Checks of incoming orders against the DICOM value rules, collecting every problem at once."""

from __future__ import annotations

from collections.abc import Callable

from ris.domain import values as vr
from ris.domain.errors import FieldProblem, ValidationFailed
from ris.domain.model import CodedEntry, NewOrder, OrderData, PatientData, ProcedureData, StepData

Check = Callable[[str], "str | None"]

# Specific Character Sets an item may carry (single-byte sets without code extensions, and UTF-8).
CHARACTER_SETS: dict[str, str] = {
    "": "ascii",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 192": "utf_8",
}


def _required(check: Check) -> Check:
    def required(value: str) -> str | None:
        return "is required" if not value.strip() else check(value)

    return required


_PATIENT_CHECKS: dict[str, Check] = {
    "patient_id": _required(vr.lo_problem),
    "issuer": vr.lo_problem,
    "name": _required(vr.person_name_problem),
    "birth_date": lambda v: vr.date_problem(v) if v else None,
    "sex": vr.sex_problem,
}
_ORDER_CHECKS: dict[str, Check] = {
    "accession_number": vr.sh_problem,
    "placer_order_number": vr.lo_problem,
    "filler_order_number": vr.lo_problem,
    "requesting_physician": vr.person_name_problem,
    "referring_physician": vr.person_name_problem,
    "priority": vr.priority_problem,
    "reason": vr.lo_problem,
    "admission_id": vr.lo_problem,
    "patient_location": vr.lo_problem,
    "comments": lambda v: vr.text_problem(v.replace("\r", "").replace("\n", ""), 10240),
}
_PROCEDURE_CHECKS: dict[str, Check] = {
    "requested_procedure_id": vr.sh_problem,
    "description": vr.lo_problem,
    "study_uid": lambda v: vr.uid_problem(v) if v else None,
}
_CODE_CHECKS: dict[str, Check] = {
    "value": _required(vr.sh_problem),
    "scheme": _required(vr.sh_problem),
    "meaning": vr.lo_problem,
}
_STEP_CHECKS: dict[str, Check] = {
    "modality": _required(vr.modality_problem),
    "station_ae": lambda v: vr.ae_title_problem(v) if v else None,
    "station_name": vr.sh_problem,
    "sps_id": vr.sh_problem,
    "description": vr.lo_problem,
    "performing_physician": vr.person_name_problem,
    "location": vr.lo_problem,
}


def _check_fields(prefix: str, obj: object, checks: dict[str, Check]) -> list[FieldProblem]:
    problems = []
    for name, check in checks.items():
        message = check(getattr(obj, name))
        if message:
            problems.append(FieldProblem(f"{prefix}{name}", message))
    return problems


def _check_code(path: str, code: CodedEntry | None) -> list[FieldProblem]:
    return [] if code is None else _check_fields(f"{path}.", code, _CODE_CHECKS)


def patient_problems(patient: PatientData, prefix: str = "patient.") -> list[FieldProblem]:
    return _check_fields(prefix, patient, _PATIENT_CHECKS)


def order_problems(order: OrderData, prefix: str = "order.") -> list[FieldProblem]:
    return _check_fields(prefix, order, _ORDER_CHECKS)


def step_problems(step: StepData, prefix: str) -> list[FieldProblem]:
    problems = _check_fields(prefix, step, _STEP_CHECKS)
    problems += _check_code(f"{prefix}protocol", step.protocol)
    if step.start.tzinfo is None:
        problems.append(FieldProblem(f"{prefix}start", "has no time zone"))
    return problems


def procedure_problems(procedure: ProcedureData, prefix: str) -> list[FieldProblem]:
    problems = _check_fields(prefix, procedure, _PROCEDURE_CHECKS)
    problems += _check_code(f"{prefix}code", procedure.code)
    if not procedure.steps:
        problems.append(FieldProblem(f"{prefix}steps", "needs at least one scheduled step"))
    for index, step in enumerate(procedure.steps):
        problems += step_problems(step, f"{prefix}steps[{index}].")
    sps_ids = [step.sps_id for step in procedure.steps if step.sps_id]
    if len(sps_ids) != len(set(sps_ids)):
        problems.append(FieldProblem(f"{prefix}steps", "two steps have the same SPS ID"))
    return problems


def character_set_problem(character_set: str, texts: list[str]) -> str | None:
    codec = CHARACTER_SETS.get(character_set)
    if codec is None:
        return f"{character_set!r} is not a supported Specific Character Set ({', '.join(CHARACTER_SETS)})"
    for text in texts:
        try:
            text.encode(codec)
        except UnicodeEncodeError:
            return f"{character_set or 'the default repertoire'} cannot represent {text!r}"
    return None


def order_texts(command: NewOrder) -> list[str]:
    """Every text of an order that ends up in a worklist item, for character set checks."""
    texts = [*vars(command.patient).values(), *vars(command.order).values()]
    for procedure in command.procedures:
        texts += [procedure.description, *(vars(procedure.code).values() if procedure.code else ())]
        for step in procedure.steps:
            texts += [step.station_name, step.description, step.performing_physician, step.location]
            texts += list(vars(step.protocol).values()) if step.protocol else []
    return [text for text in texts if isinstance(text, str)]


def choose_character_set(texts: list[str]) -> str:
    """The narrowest set old modalities understand: Latin-1 where it fits, else UTF-8."""
    try:
        for text in texts:
            text.encode("latin_1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"


def validate_new_order(command: NewOrder) -> None:
    """Raise :class:`ValidationFailed` listing every problem of ``command``."""
    problems = new_order_problems(command)
    if problems:
        raise ValidationFailed(problems)


def new_order_problems(command: NewOrder) -> list[FieldProblem]:
    """Every problem of ``command``; [] when it can be stored."""
    problems = patient_problems(command.patient) + order_problems(command.order)
    if not command.procedures:
        problems.append(FieldProblem("procedures", "needs at least one requested procedure"))
    for index, procedure in enumerate(command.procedures):
        problems += procedure_problems(procedure, f"procedures[{index}].")
    if command.character_set:
        message = character_set_problem(command.character_set, order_texts(command))
        if message:
            problems.append(FieldProblem("character_set", message))
    return problems
