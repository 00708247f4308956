"""The front desk's board: the scheduled steps of a date range, filtered, a page at a time.

:class:`BoardFilter` is the one typed filter of step lists for every adapter (web board, JSON API).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from ris.domain.errors import FieldProblem, ValidationFailed
from ris.domain.status import StepStatus
from ris.domain.values import ae_title_problem, fold_case, modality_problem

PAGE_SIZE = 50
MAX_TEXT_LENGTH = 64


@dataclass(frozen=True)
class BoardFilter:
    """Which steps to list. Dates are the site's local dates, both inclusive; None leaves that end
    open. Empty values do not filter. ``text`` is the start of a patient name (``MÜLLER^HA`` or
    ``Müller, Ha``, case does not matter), a patient ID or an accession number."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    modality: str = ""
    station_ae: str = ""
    statuses: frozenset[StepStatus] = frozenset()  # empty: every status
    text: str = ""

    def problems(self) -> list[FieldProblem]:
        found = []
        if self.date_from and self.date_to and self.date_from > self.date_to:
            found.append(FieldProblem("date_to", "is before the start of the range"))
        if self.modality and (message := modality_problem(self.modality)):
            found.append(FieldProblem("modality", message))
        if self.station_ae and (message := ae_title_problem(self.station_ae)):
            found.append(FieldProblem("station_ae", message))
        if len(self.text) > MAX_TEXT_LENGTH:
            found.append(FieldProblem("text", f"is longer than {MAX_TEXT_LENGTH} characters"))
        return found

    def validated(self) -> BoardFilter:
        """This filter with its text tidied; :class:`ValidationFailed` if it cannot be used."""
        if problems := self.problems():
            raise ValidationFailed(problems)
        return dataclasses.replace(self, text=self.text.strip())

    @property
    def name_prefix(self) -> str:
        """The text as the start of a case-folded DICOM person name ("Müller, Ha" -> "MÜLLER^HA")."""
        return fold_case(self.text.replace(", ", "^").replace(",", "^"))


@dataclass(frozen=True)
class BoardRow:
    step_id: int
    order_id: int
    start: dt.datetime  # in the site's time zone
    status: StepStatus
    patient_name: str
    patient_id: str
    accession_number: str
    modality: str
    station_ae: str
    description: str
    priority: str


@dataclass(frozen=True)
class BoardPage:
    rows: tuple[BoardRow, ...]
    page: int  # 1-based
    page_size: int
    has_next: bool
    # Steps per status in the filter's range, whatever its status choice (for the status tabs).
    counts: dict[StepStatus, int]

    def count(self, statuses: Iterable[StepStatus]) -> int:
        return sum(self.counts.get(status, 0) for status in statuses)

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def first_row_number(self) -> int:
        return (self.page - 1) * self.page_size + 1
