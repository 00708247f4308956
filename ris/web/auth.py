"""Logging in and out, the login guard, roles, and CSRF protection of every form.

Every route needs a logged-in user except the login page, ``/healthz``, ``/metrics`` and static files. Routes
under ``/api/`` authenticate with API tokens instead: the session guard and CSRF leave them alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, Response, abort, g, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers.response import Response as BaseResponse
from wtforms import PasswordField, StringField
from wtforms.validators import InputRequired

from ris.domain.model import Actor
from ris.domain.users import Role, UserView
from ris.web.context import service

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()

PUBLIC_ENDPOINTS = frozenset({"auth.login", "health.healthz", "metrics.metrics", "static"})
API_PREFIX = "/api/"

View = TypeVar("View", bound=Callable[..., Any])


class WebUser(UserMixin):  # type: ignore[misc]
    """The logged-in user as Flask-Login and the templates see it."""

    def __init__(self, user: UserView) -> None:
        self.username = user.username
        self.role = user.role
        self.is_admin = user.is_admin

    def get_id(self) -> str:
        return self.username


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    # CSRF is checked by the guard below for everything but the token-authenticated API.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.before_request(_require_login)
    app.register_error_handler(403, _forbidden)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.register_blueprint(blueprint)


@login_manager.user_loader  # type: ignore[untyped-decorator]
def _load_user(username: str) -> WebUser | None:
    """The session's user, looked up on every request: a disabled user is logged out at once."""
    user = service().get_user(username)
    return WebUser(user) if user is not None and user.active else None


def _require_login() -> BaseResponse | None:
    if request.path.startswith(API_PREFIX):
        return None
    if request.endpoint not in PUBLIC_ENDPOINTS:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        g.user = current_user
    csrf.protect()
    return None


def current_actor() -> Actor:
    """The logged-in user as the audit trail names them."""
    return Actor("user", current_user.username)


def role_required(role: Role | str) -> Callable[[View], View]:
    """Only users with ``role`` may call the view (admins may call every view); others get 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated or not (current_user.is_admin or current_user.role == role):
                abort(403)
            return view(*args, **kwargs)

        guarded.required_role = str(role)  # type: ignore[attr-defined]  # lets tests find every guarded route
        return cast(View, guarded)

    return decorate


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField("User name", validators=[InputRequired()])
    password = PasswordField("Password", validators=[InputRequired()])


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    form = LoginForm()
    if form.validate_on_submit():
        user = service().authenticate(form.username.data.strip(), form.password.data)
        if user is not None:
            login_user(WebUser(user))
            return redirect(_safe_next(request.args.get("next", "")), code=303)
        form.password.errors.append("Unknown user name or wrong password, or the user is disabled.")
    return render_template("auth/login.html", form=form)


@blueprint.post("/logout")
def logout() -> BaseResponse:
    logout_user()
    return redirect(url_for("auth.login"), code=303)


def _safe_next(target: str) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("board.board")


def _forbidden(error: Forbidden) -> Response | Forbidden:
    if request.path.startswith(API_PREFIX):
        return error
    return Response(render_template("auth/forbidden.html"), status=403)


def _csrf_refused(error: CSRFError) -> Response:
    return Response(render_template("auth/csrf.html", reason=error.description), status=400)
