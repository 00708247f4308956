"""The board's two statements: a page of steps, and the steps per status of the same filter.

Both read only ``scheduled_steps`` through its indexes: the start (alone or after modality,
station AE or status) orders and bounds the range, and the free text is a prefix (LIKE 'x%', which
SQLite with case_sensitive_like and PostgreSQL with the "C" collation serve from a B-tree) of the
folded patient name, the patient ID or the accession number.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select

from ris.db.models import ScheduledStep
from ris.domain.board import BoardFilter

BOARD_COLUMNS = (
    ScheduledStep.id,
    ScheduledStep.order_fk,
    ScheduledStep.start_utc,
    ScheduledStep.status,
    ScheduledStep.patient_name,
    ScheduledStep.patient_id,
    ScheduledStep.accession_number,
    ScheduledStep.modality,
    ScheduledStep.station_ae,
    ScheduledStep.description,
    ScheduledStep.priority,
)


def _prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conditions(board: BoardFilter, *, with_status: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if board.date_from is not None:
        conditions.append(ScheduledStep.start_local >= f"{board.date_from:%Y%m%d}")
    if board.date_to is not None:
        conditions.append(ScheduledStep.start_local < f"{board.date_to + dt.timedelta(days=1):%Y%m%d}")
    if board.modality:
        conditions.append(ScheduledStep.modality == board.modality)
    if board.station_ae:
        conditions.append(ScheduledStep.station_ae == board.station_ae)
    if with_status and board.statuses:
        conditions.append(ScheduledStep.status.in_(sorted(board.statuses)))
    if board.text:
        conditions.append(
            or_(
                ScheduledStep.patient_name_folded.like(_prefix(board.name_prefix), escape="\\"),
                ScheduledStep.patient_id.like(_prefix(board.text), escape="\\"),
                ScheduledStep.accession_number.like(_prefix(board.text), escape="\\"),
            )
        )
    return conditions


def board_rows_select(board: BoardFilter, *, offset: int, limit: int) -> Select[*tuple[Any, ...]]:
    return (
        select(*BOARD_COLUMNS)
        .where(*_conditions(board, with_status=True))
        .order_by(ScheduledStep.start_local, ScheduledStep.id)
        .offset(offset)
        .limit(limit)
    )


def board_counts_select(board: BoardFilter) -> Select[*tuple[Any, ...]]:
    return (
        select(ScheduledStep.status, func.count())
        .where(*_conditions(board, with_status=False))
        .group_by(ScheduledStep.status)
    )
