"""Orders at the front desk: the form (new and edit), the order page, reschedule, check in, cancel.

Every change goes through the service with the logged-in user as the actor, so the audit trail
names them. Domain problems come back next to the form field they concern."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers.response import Response
from wtforms import DateField, DateTimeLocalField, HiddenField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Optional

from ris.domain.errors import AlreadyExists, ConcurrentUpdate, InvalidTransition, ValidationFailed
from ris.domain.model import NewOrder, OrderData, OrderView, PatientData, ProcedureData, StepData
from ris.domain.status import StepStatus
from ris.domain.values import MODALITIES, PRIORITIES, SEXES
from ris.web.auth import current_actor
from ris.web.context import service
from ris.web.forms import show_problems

blueprint = Blueprint("orders", __name__, url_prefix="/orders")

# The domain's field paths of an order command -> the form's fields.
FORM_FIELD_OF = {
    "patient.patient_id": "patient_id",
    "patient.name": "patient_name",
    "patient.birth_date": "birth_date",
    "patient.sex": "sex",
    "order.accession_number": "accession",
    "order.priority": "priority",
    "order.referring_physician": "referring_physician",
    "order.comments": "comments",
    "procedures[0].description": "procedure",
    "procedures[0].steps[0].description": "procedure",
    "procedures[0].steps[0].modality": "modality",
    "procedures[0].steps[0].station_ae": "station_ae",
    "procedures[0].steps[0].start": "scheduled",
}
CONFLICT_MESSAGE = (
    "Someone else changed this order since you opened it. Your changes were not saved: "
    "open the order again to see the current version, then make your change once more."
)
SCHEDULED_FORMAT = "%Y-%m-%dT%H:%M"


def _choices(values: list[str], empty: str | None = None) -> list[SelectChoice]:
    return ([SelectChoice("", empty)] if empty is not None else []) + [SelectChoice(v) for v in values]


class OrderForm(FlaskForm):  # type: ignore[misc]
    patient_id = StringField("Patient ID")
    patient_name = StringField("Patient name", description="FAMILY^GIVEN, or Family, Given")
    birth_date = DateField("Birth date", validators=[Optional()])
    sex = SelectField("Sex", choices=_choices(sorted(SEXES), empty="unknown"), default="")
    accession = StringField("Accession")
    modality = SelectField("Modality", choices=_choices(sorted(MODALITIES), empty="choose"), default="")
    station_ae = StringField("Station AE")
    scheduled = DateTimeLocalField(
        "Scheduled", format=SCHEDULED_FORMAT, validators=[InputRequired("is required")], description="site time"
    )
    procedure = StringField("Procedure")
    priority = SelectField(
        "Priority", choices=_choices(["ROUTINE", *sorted(PRIORITIES - {"ROUTINE"})]), default="ROUTINE"
    )
    referring_physician = StringField("Referring physician")
    comments = TextAreaField("Comments")
    version = HiddenField()


def _dicom_name(text: str) -> str:
    """A person name as typed: DICOM PN as is, ``Family, Given Middle`` as ``Family^Given Middle``."""
    text = text.strip()
    return text if "^" in text else text.replace(", ", "^").replace(",", "^")


def _command(form: OrderForm, current: OrderView | None) -> NewOrder:
    """The order the form describes; values the form does not show are kept from ``current``."""
    zone = service().zone
    patient = PatientData(
        patient_id=form.patient_id.data.strip(),
        issuer=current.patient.issuer if current else "",
        name=_dicom_name(form.patient_name.data),
        birth_date=f"{form.birth_date.data:%Y%m%d}" if form.birth_date.data else "",
        sex=form.sex.data,
    )
    order_values = {
        "accession_number": form.accession.data.strip(),
        "priority": form.priority.data,
        "referring_physician": _dicom_name(form.referring_physician.data),
        "comments": form.comments.data.strip(),
    }
    order = dataclasses.replace(current.order, **order_values) if current else OrderData(**order_values)
    step_values = {
        "modality": form.modality.data,
        "station_ae": form.station_ae.data.strip(),
        "start": form.scheduled.data.replace(tzinfo=zone),
        "description": form.procedure.data.strip(),
    }
    if current:
        procedure = current.procedures[0]
        step = dataclasses.replace(procedure.steps[0].data(), **step_values)
        procedures = (
            ProcedureData(
                steps=(step,),
                requested_procedure_id=procedure.requested_procedure_id,
                code=procedure.code,
                description=step.description,
                study_uid=procedure.study_uid,
            ),
        )
    else:
        procedures = (ProcedureData(steps=(StepData(**step_values),), description=step_values["description"]),)
    return NewOrder(patient=patient, order=order, procedures=procedures)


def _form_data(order: OrderView) -> dict[str, Any]:
    step = order.procedures[0].steps[0]
    birth = order.patient.birth_date
    return {
        "patient_id": order.patient.patient_id,
        "patient_name": order.patient.name,
        "birth_date": dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:])) if birth else None,
        "sex": order.patient.sex,
        "accession": order.order.accession_number,
        "modality": step.modality,
        "station_ae": step.station_ae,
        "scheduled": step.start.astimezone(service().zone).replace(tzinfo=None),
        "procedure": order.procedures[0].description or step.description,
        "priority": order.order.priority,
        "referring_physician": order.order.referring_physician,
        "comments": order.order.comments,
        "version": str(order.version),
    }


def _save(form: OrderForm, current: OrderView | None) -> Response | None:
    """Store the form's order; the redirect to its page, or None with the problems on the form."""
    try:
        command = _command(form, current)
        if current is None:
            saved = service().schedule_order(command, current_actor())
            flash(f"Order {saved.order.accession_number or saved.id} scheduled.")
        else:
            version = int(form.version.data) if form.version.data.isdigit() else None
            saved = service().update_order(current.id, command, current_actor(), expected_version=version)
            flash("Order saved.")
    except ValidationFailed as error:
        show_problems(form, error, FORM_FIELD_OF)
        return None
    except AlreadyExists:
        form.accession.errors = [*form.accession.errors, "is already used by another order"]
        return None
    except ConcurrentUpdate:
        form.form_errors.append(CONFLICT_MESSAGE)
        return None
    except InvalidTransition as error:
        form.scheduled.errors = [*form.scheduled.errors, str(error)]
        return None
    return redirect(url_for("orders.view", order_id=saved.id), code=303)


@blueprint.route("/new", methods=["GET", "POST"])
def new() -> str | Response:
    form = OrderForm()
    if form.validate_on_submit() and (done := _save(form, None)):
        return done
    return render_template("orders/form.html", form=form, order=None)


@blueprint.route("/<int:order_id>/edit", methods=["GET", "POST"])
def edit(order_id: int) -> str | Response:
    current = service().get_order(order_id)
    form = OrderForm(data=_form_data(current))
    if form.validate_on_submit() and (done := _save(form, current)):
        return done
    return render_template("orders/form.html", form=form, order=current)


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes the order (check in): only its CSRF token and the order's version."""

    version = HiddenField()


@blueprint.get("/<int:order_id>")
def view(order_id: int) -> str:
    order = service().get_order(order_id)
    timeline = service().order_timeline(order_id)
    return render_template(
        "orders/order.html", order=order, timeline=timeline, zone=service().zone, action=ActionForm()
    )


@blueprint.post("/<int:order_id>/deliveries/<int:task_id>/retry")
def retry_delivery(order_id: int, task_id: int) -> Response:
    """Send a FAILED delivery of this order again (the listener process picks it up at once)."""
    ActionForm().validate()
    if not any(entry.task_id == task_id for entry in service().order_timeline(order_id)):
        abort(404)
    try:
        task = service().retry_outbox_task(task_id, current_actor())
        flash(f"The {task.kind} to {task.destination} will be sent again now.")
    except InvalidTransition as error:
        flash(str(error), "error")
    return redirect(url_for("orders.view", order_id=order_id), code=303)


class CancelForm(FlaskForm):  # type: ignore[misc]
    reason = StringField("Reason", description="optional, kept in the order's history")
    version = HiddenField()


class RescheduleForm(FlaskForm):  # type: ignore[misc]
    scheduled = DateTimeLocalField(
        "Scheduled", format=SCHEDULED_FORMAT, validators=[InputRequired("is required")], description="site time"
    )
    station_ae = StringField("Station AE")
    version = HiddenField()


def _version(field: HiddenField) -> int | None:
    return int(field.data) if field.data and field.data.isdigit() else None


@blueprint.post("/<int:order_id>/check-in")
def check_in(order_id: int) -> Response:
    form = ActionForm()
    try:
        service().change_order_status(
            order_id, StepStatus.ARRIVED, current_actor(), expected_version=_version(form.version)
        )
        flash("Checked in: the patient has arrived.")
    except ConcurrentUpdate:
        flash(CONFLICT_MESSAGE, "error")
    except InvalidTransition as error:
        flash(f"Cannot check in: {error}", "error")
    return redirect(url_for("orders.view", order_id=order_id), code=303)


@blueprint.route("/<int:order_id>/cancel", methods=["GET", "POST"])
def cancel(order_id: int) -> str | Response:
    """A confirmation page first: cancelling takes the order off every worklist for good."""
    order = service().get_order(order_id)
    form = CancelForm(data={"version": str(order.version)})
    if form.validate_on_submit():
        try:
            service().cancel_order(
                order_id, current_actor(), form.reason.data.strip(), expected_version=_version(form.version)
            )
            flash("Order canceled: its steps are off the worklist.")
            return redirect(url_for("orders.view", order_id=order_id), code=303)
        except ConcurrentUpdate:
            form.form_errors.append(CONFLICT_MESSAGE)
        except InvalidTransition as error:
            form.form_errors.append(f"Cannot cancel: {error}")
    return render_template("orders/cancel.html", form=form, order=order)


@blueprint.route("/<int:order_id>/steps/<int:step_id>/reschedule", methods=["GET", "POST"])
def reschedule(order_id: int, step_id: int) -> str | Response:
    order = service().get_order(order_id)
    step = next((s for s in order.steps if s.id == step_id), None)
    if step is None:
        abort(404)
    zone = service().zone
    form = RescheduleForm(
        data={
            "scheduled": step.start.astimezone(zone).replace(tzinfo=None),
            "station_ae": step.station_ae,
            "version": str(step.version),
        }
    )
    if form.validate_on_submit():
        try:
            service().reschedule_step(
                step_id,
                form.scheduled.data.replace(tzinfo=zone),
                current_actor(),
                station_ae=form.station_ae.data.strip(),
                expected_version=_version(form.version),
            )
            flash(f"Step {step.sps_id} rescheduled.")
            return redirect(url_for("orders.view", order_id=order_id), code=303)
        except ValidationFailed as error:
            show_problems(form, error, {"start": "scheduled", "station_ae": "station_ae"})
        except ConcurrentUpdate:
            form.form_errors.append(CONFLICT_MESSAGE)
        except InvalidTransition as error:
            form.form_errors.append(f"Cannot reschedule: {error}")
    return render_template("orders/reschedule.html", form=form, order=order, step=step)
