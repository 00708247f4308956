"""Shared pieces of the web forms: the one table from domain errors to form errors."""

from __future__ import annotations

from collections.abc import Mapping

from wtforms import Form

from ris.domain.errors import ValidationFailed


def show_problems(form: Form, error: ValidationFailed, fields: Mapping[str, str] | None = None) -> None:
    """Put each problem next to its form field: ``fields`` maps the domain's field path to the
    form field's name (default: the same name); problems of no field go to the form's own errors."""
    for problem in error.problems:
        name = (fields or {}).get(problem.field, problem.field)
        field = form._fields.get(name)
        if field is not None:
            field.errors = [*field.errors, problem.message]
        else:
            form.form_errors.append(f"{problem.field}: {problem.message}")


def person_name(value: str) -> str:
    """A DICOM PN as people write it: ``MÜLLER^HANS^^DR.`` -> ``MÜLLER, HANS DR.``."""
    family, _, rest = value.partition("^")
    rest = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {rest}" if rest else family
