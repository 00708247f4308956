"""Admin pages: remote AEs (with a C-ECHO test), the HL7 journal, reconciliation of unscheduled
MPPS, users and their API tokens. Every view is for admins only; every change goes through the
service with the logged-in user as the actor, so it is audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers.response import Response as BaseResponse
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import InputRequired, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ris.domain.errors import AlreadyExists, DomainError, InvalidTransition, NotFound, ValidationFailed
from ris.domain.model import AeRole, OrderKey, RemoteAE
from ris.domain.users import Role
from ris.web.auth import current_actor, role_required
from ris.web.context import service

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

JOURNAL_PAGE = 50


@blueprint.app_template_filter("localtime")
def localtime(value: dt.datetime) -> str:
    """A stored (UTC) time as the site's local time, to the second."""
    return value.astimezone(service().zone).strftime("%Y-%m-%d %H:%M:%S")


def admin_only(view: Any) -> Any:
    return role_required(Role.ADMIN)(view)


def form_errors(form: FlaskForm, error: DomainError, fallback: str) -> None:
    """The web's error table for forms: problems go next to their field, anything else next to
    ``fallback``."""
    problems = error.problems if isinstance(error, ValidationFailed) else []
    for problem in problems:
        target = getattr(form, problem.field, None) or getattr(form, fallback)
        target.errors.append(problem.message)
    if not problems:
        getattr(form, fallback).errors.append(str(error))


@blueprint.get("/")
@admin_only
def index() -> str:
    return render_template("admin/index.html", unscheduled=len(service().list_unscheduled_mpps()))


# --- remote AEs ------------------------------------------------------------------------------------


class MultiCheckboxField(SelectMultipleField):  # type: ignore[misc]
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RemoteAeForm(FlaskForm):  # type: ignore[misc]
    ae_title = StringField("AE title", validators=[InputRequired()])
    host = StringField("Host", description="Stations: empty = any host. Destinations: where we call them.")
    port = IntegerField("Port", validators=[Optional(), NumberRange(0, 65535)], default=0)
    roles = MultiCheckboxField(
        "Roles",
        choices=[
            SelectChoice(AeRole.STATION.value, "Station (queries the worklist, sends MPPS)"),
            SelectChoice(AeRole.IAN_DESTINATION.value, "IAN destination"),
            SelectChoice(AeRole.MPPS_FORWARD.value, "MPPS forward target"),
        ],
    )
    own_items_only = BooleanField("Station sees only items scheduled for its own AE title")
    description = StringField("Description")

    def remote_ae(self) -> RemoteAE:
        return RemoteAE(
            ae_title=self.ae_title.data.strip(),
            host=(self.host.data or "").strip(),
            port=self.port.data or 0,
            roles=frozenset(AeRole(role) for role in self.roles.data or ()),
            own_items_only=bool(self.own_items_only.data),
            description=(self.description.data or "").strip(),
        )


@blueprint.get("/remote-aes")
@admin_only
def remote_aes() -> str:
    return render_template("admin/remote_aes.html", aes=service().list_remote_aes())


@blueprint.route("/remote-aes/new", methods=["GET", "POST"])
@admin_only
def new_remote_ae() -> str | BaseResponse:
    form = RemoteAeForm()
    if form.validate_on_submit():
        try:
            service().add_remote_ae(form.remote_ae(), current_actor())
        except (ValidationFailed, AlreadyExists) as error:
            form_errors(form, error, "ae_title")
        else:
            flash(f"Remote AE {form.ae_title.data.strip()} added.")
            return redirect(url_for("admin.remote_aes"), code=303)
    return render_template("admin/remote_ae_form.html", form=form, ae_title=None)


@blueprint.route("/remote-aes/<ae_title>/edit", methods=["GET", "POST"])
@admin_only
def edit_remote_ae(ae_title: str) -> str | BaseResponse:
    ae = service().get_remote_ae(ae_title) or abort(404)
    form = RemoteAeForm(
        data=None
        if request.method == "POST"
        else {
            "ae_title": ae.ae_title,
            "host": ae.host,
            "port": ae.port,
            "roles": sorted(ae.roles),
            "own_items_only": ae.own_items_only,
            "description": ae.description,
        }
    )
    if form.validate_on_submit():
        try:
            service().update_remote_ae(ae_title, form.remote_ae(), current_actor())
        except (ValidationFailed, AlreadyExists) as error:
            form_errors(form, error, "ae_title")
        else:
            flash(f"Remote AE {form.ae_title.data.strip()} saved.")
            return redirect(url_for("admin.remote_aes"), code=303)
    return render_template("admin/remote_ae_form.html", form=form, ae_title=ae_title)


@blueprint.post("/remote-aes/<ae_title>/remove")
@admin_only
def remove_remote_ae(ae_title: str) -> BaseResponse:
    try:
        service().remove_remote_ae(ae_title, current_actor())
    except NotFound:
        abort(404)
    flash(f"Remote AE {ae_title} removed.")
    return redirect(url_for("admin.remote_aes"), code=303)


@blueprint.post("/remote-aes/<ae_title>/echo")
@admin_only
def echo_remote_ae(ae_title: str) -> BaseResponse:
    try:
        result = service().echo_remote_ae(ae_title)
    except NotFound:
        abort(404)
    if result.ok:
        flash(f"C-ECHO {ae_title}: success. {result.message}")
    else:
        flash(f"C-ECHO {ae_title} failed: {result.message}", "error")
    return redirect(url_for("admin.remote_aes"), code=303)


# --- HL7 journal -------------------------------------------------------------------------------------


@blueprint.get("/hl7")
@admin_only
def hl7_journal() -> str:
    errors_only = request.args.get("errors") == "1"
    control_id = request.args.get("control_id", "").strip()
    entries = service().message_journal(limit=JOURNAL_PAGE, failures_only=errors_only, control_id=control_id)
    return render_template("admin/hl7_journal.html", entries=entries, errors_only=errors_only, control_id=control_id)


@blueprint.get("/hl7/<int:journal_id>")
@admin_only
def hl7_message(journal_id: int) -> str:
    try:
        entry = service().get_journal_entry(journal_id)
    except NotFound:
        abort(404)
    return render_template(
        "admin/hl7_message.html",
        entry=entry,
        message=_segments(entry.raw),
        ack=_segments(entry.ack),
    )


def _segments(raw: bytes) -> list[str]:
    """A message for reading: one segment per line. The bytes are shown as Latin-1 if they are not
    UTF-8 (any byte is a character there), so nothing is hidden."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [segment for segment in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if segment]


# --- MPPS reconciliation -----------------------------------------------------------------------------


class LinkMppsForm(FlaskForm):  # type: ignore[misc]
    accession_number = StringField("Accession number of the order", validators=[InputRequired()])
    sps_id = StringField("Scheduled Procedure Step ID", description="Needed when the order has several steps.")


@blueprint.get("/mpps")
@admin_only
def unscheduled_mpps() -> str:
    return render_template("admin/mpps.html", performed=service().list_unscheduled_mpps())


@blueprint.route("/mpps/<uid>", methods=["GET", "POST"])
@admin_only
def mpps_detail(uid: str) -> str | BaseResponse:
    try:
        performed = service().get_mpps(uid)
    except NotFound:
        abort(404)
    form = LinkMppsForm()
    if form.validate_on_submit():
        step_id = _chosen_step(form)
        if step_id is not None:
            try:
                service().link_mpps(uid, step_id, current_actor())
            except (InvalidTransition, AlreadyExists) as error:
                form.accession_number.errors.append(str(error))
            else:
                flash(f"Performed step linked to order {form.accession_number.data.strip()}.")
                return redirect(url_for("admin.mpps_detail", uid=uid), code=303)
    return render_template("admin/mpps_detail.html", performed=performed, form=form)


def _chosen_step(form: LinkMppsForm) -> int | None:
    """The scheduled step the form names, or None with the reason next to the field."""
    accession = form.accession_number.data.strip()
    order = service().find_order(OrderKey(accession_number=accession))
    if order is None:
        form.accession_number.errors.append(f"no order has the accession number {accession!r}")
        return None
    sps_id = (form.sps_id.data or "").strip()
    steps = [step for step in order.steps if not sps_id or step.sps_id == sps_id]
    if len(steps) == 1:
        return steps[0].id
    names = ", ".join(step.sps_id for step in order.steps)
    form.sps_id.errors.append(
        f"the order has no step {sps_id!r} (its steps: {names})" if sps_id else f"choose one of its steps: {names}"
    )
    return None


# --- users and API tokens ------------------------------------------------------------------------------


class NewUserForm(FlaskForm):  # type: ignore[misc]
    username = StringField("User name", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])
    role = SelectField("Role", choices=[SelectChoice(role.value) for role in Role], default=Role.FRONTDESK.value)


class PasswordForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField("New password", validators=[InputRequired()])


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField("What the token is for")


@blueprint.get("/users")
@admin_only
def users() -> str:
    return render_template(
        "admin/users.html", users=service().list_users(), tokens=service().list_api_tokens(), token_form=TokenForm()
    )


@blueprint.route("/users/new", methods=["GET", "POST"])
@admin_only
def new_user() -> str | BaseResponse:
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            service().create_user(form.username.data.strip(), form.password.data, form.role.data, current_actor())
        except (ValidationFailed, AlreadyExists) as error:
            form_errors(form, error, "username")
        else:
            flash(f"User {form.username.data.strip()} added.")
            return redirect(url_for("admin.users"), code=303)
    return render_template("admin/user_new.html", form=form)


@blueprint.post("/users/<username>/active")
@admin_only
def set_user_active(username: str) -> BaseResponse:
    active = request.form.get("active") == "1"
    try:
        service().set_user_active(username, active, current_actor())
    except NotFound:
        abort(404)
    flash(f"User {username} {'enabled' if active else 'disabled'}.")
    return redirect(url_for("admin.users"), code=303)


@blueprint.route("/users/<username>/password", methods=["GET", "POST"])
@admin_only
def reset_password(username: str) -> str | BaseResponse:
    service().get_user(username) or abort(404)
    form = PasswordForm()
    if form.validate_on_submit():
        try:
            service().set_password(username, form.password.data, current_actor())
        except ValidationFailed as error:
            form_errors(form, error, "password")
        else:
            flash(f"Password of {username} changed.")
            return redirect(url_for("admin.users"), code=303)
    return render_template("admin/user_password.html", form=form, username=username)


@blueprint.post("/users/<username>/tokens")
@admin_only
def create_token(username: str) -> str | BaseResponse:
    form = TokenForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        token = service().create_api_token(username, (form.name.data or "").strip(), current_actor())
    except NotFound:
        abort(404)
    except InvalidTransition as error:
        flash(str(error), "error")
        return redirect(url_for("admin.users"), code=303)
    # Shown on this page only, never put in the session or a redirect: it is not stored anywhere.
    return render_template("admin/token_created.html", username=username, token=token)


@blueprint.post("/tokens/<int:token_id>/revoke")
@admin_only
def revoke_token(token_id: int) -> BaseResponse:
    try:
        service().revoke_api_token(token_id, current_actor())
    except NotFound:
        abort(404)
    flash(f"API token {token_id} revoked.")
    return redirect(url_for("admin.users"), code=303)
