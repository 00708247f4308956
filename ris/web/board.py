"""The board: today's steps (or any range) with filters, paging and counts per status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, render_template, request, url_for
from wtforms import DateField, Form, SelectChoice, SelectField, StringField
from wtforms.validators import Optional

from ris.domain.board import BoardFilter, BoardPage
from ris.domain.errors import ValidationFailed
from ris.domain.status import OPEN_STATUSES, StepStatus
from ris.domain.values import MODALITIES
from ris.web.context import service
from ris.web.forms import show_problems

blueprint = Blueprint("board", __name__)

OPEN, ALL = "open", "all"


class BoardForm(Form):  # type: ignore[misc]
    """The filter: a GET form (it changes nothing, so it needs no CSRF token)."""

    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To", validators=[Optional()])
    modality = SelectField(
        "Modality", choices=[SelectChoice("", "any"), *map(SelectChoice, sorted(MODALITIES))], default=""
    )
    station_ae = StringField("Station AE", default="")
    status = SelectField(
        "Status", choices=[SelectChoice(OPEN), SelectChoice(ALL), *map(SelectChoice, StepStatus)], default=OPEN
    )
    text = StringField("Patient name, patient ID or accession", default="")

    def board_filter(self) -> BoardFilter:
        chosen = self.status.data
        statuses = (
            OPEN_STATUSES if chosen == OPEN else frozenset() if chosen == ALL else frozenset({StepStatus(chosen)})
        )
        return BoardFilter(
            date_from=self.date_from.data,
            date_to=self.date_to.data,
            modality=self.modality.data or "",
            station_ae=(self.station_ae.data or "").strip(),
            statuses=statuses,
            text=self.text.data or "",
        )


@blueprint.get("/")
@blueprint.get("/board")
def board() -> str:
    today = dt.datetime.now(service().zone).date()
    form = BoardForm(request.args, date_from=today, date_to=today)
    result: BoardPage | None = None
    if form.validate():
        try:
            result = service().search_board(form.board_filter(), page=request.args.get("page", 1, type=int) or 1)
        except ValidationFailed as error:
            show_problems(form, error)
    return render_template(
        "board/board.html", form=form, result=result, statuses=list(StepStatus), open_statuses=OPEN_STATUSES
    )


@blueprint.app_template_global()
def board_url(**changes: Any) -> str:
    """The board's current URL with some query parameters changed (paging, status tabs)."""
    args = request.args.to_dict() | {name: str(value) for name, value in changes.items()}
    return url_for("board.board", **args)  # type: ignore[arg-type]
