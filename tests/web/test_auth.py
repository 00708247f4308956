"""Logging in and out, the login guard on every route, roles and CSRF, through the real forms."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ris.bootstrap import StartupError, ensure_first_admin
from ris.domain.model import SYSTEM
from ris.domain.users import Role
from ris.services import RisService
from ris.settings import Settings
from ris.web.auth import PUBLIC_ENDPOINTS, current_actor, role_required
from tests.support.web import PASSWORD, add_user, csrf_token, login

API_PREFIX = "/api/"


def test_login_then_logout(make_app: Callable[..., Flask], service: RisService) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    assert client.get("/").status_code == 302

    response = login(client, "anna")
    assert response.status_code == 303
    page = client.get("/")
    assert page.status_code == 200
    assert b"anna" in page.data
    assert b"Log out" in page.data

    response = client.post("/logout", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302


def test_login_returns_to_the_page_asked_for(make_app: Callable[..., Flask], service: RisService) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    redirect = client.get("/?page=2")
    assert redirect.status_code == 302
    login_url = redirect.headers["Location"]
    page = client.get(login_url)
    response = client.post(
        login_url, data={"csrf_token": csrf_token(page.data), "username": "anna", "password": PASSWORD}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/?page=2"


def test_login_never_redirects_off_the_site(make_app: Callable[..., Flask], service: RisService) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    page = client.get("/login")
    data = {"csrf_token": csrf_token(page.data), "username": "anna", "password": PASSWORD}
    response = client.post("/login?next=//evil.example/", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/board"


@pytest.mark.parametrize(
    ("username", "password"), [("anna", "wrong password"), ("nobody", PASSWORD), ("ANNA", PASSWORD)]
)
def test_wrong_credentials_are_refused(
    make_app: Callable[..., Flask], service: RisService, username: str, password: str
) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    response = login(client, username, password)
    assert response.status_code == 200
    assert b"Unknown user name or wrong password" in response.data
    assert client.get("/").status_code == 302


def test_a_disabled_user_cannot_log_in_and_is_logged_out(make_app: Callable[..., Flask], service: RisService) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    assert login(client, "anna").status_code == 303
    service.set_user_active("anna", False, SYSTEM)
    assert client.get("/").status_code == 302  # the open session ends with the next request

    response = login(client, "anna")
    assert response.status_code == 200
    assert b"Unknown user name or wrong password" in response.data
    assert service.authenticate("anna", PASSWORD) is None
    service.set_user_active("anna", True, SYSTEM)
    assert service.authenticate("anna", PASSWORD) is not None


def _guarded_urls(app: Flask) -> list[tuple[str, str]]:
    """(method, URL) of every route that needs a login, with made-up values for its arguments."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.rule.startswith(API_PREFIX):
            continue
        url = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "x", rule.rule)
        urls += [(method, url) for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return urls


def test_anonymous_users_are_sent_to_the_login_page_from_every_route(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    guarded = _guarded_urls(app)
    assert ("GET", "/") in guarded
    assert ("POST", "/logout") in guarded
    for method, url in guarded:
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url, response.status_code)
        assert response.headers["Location"].startswith("/login?next="), (method, url)


def test_public_routes_need_no_login(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    assert client.get("/healthz").status_code == 503  # answered, not redirected: no listener runs here
    assert client.get("/metrics").status_code == 200
    assert client.get("/login").status_code == 200


def test_api_routes_are_left_to_token_authentication(make_app: Callable[..., Flask]) -> None:
    """The session guard and CSRF do not apply under /api/ (no such route: 404, not a redirect)."""
    client = make_app().test_client()
    assert client.get("/api/nothing-here").status_code == 404
    assert client.post("/api/nothing-here").status_code == 404


def test_a_post_without_csrf_token_is_refused(frontdesk_client: FlaskClient) -> None:
    response = frontdesk_client.post("/logout")
    assert response.status_code == 400
    assert b"Form refused" in response.data
    assert frontdesk_client.get("/").status_code == 200  # still logged in


def test_the_login_form_needs_its_csrf_token(make_app: Callable[..., Flask], service: RisService) -> None:
    add_user(service, "anna", Role.FRONTDESK)
    client = make_app().test_client()
    response = client.post("/login", data={"username": "anna", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def _app_with_admin_page(make_app: Callable[..., Flask]) -> Flask:
    app = make_app()

    @app.get("/test-admin-only")
    @role_required("admin")
    def admin_only() -> str:
        return f"hello {current_actor()}"

    return app


def test_role_required_refuses_front_desk_users(make_app: Callable[..., Flask], service: RisService) -> None:
    app = _app_with_admin_page(make_app)
    add_user(service, "anna", Role.FRONTDESK)
    add_user(service, "boss", Role.ADMIN)
    desk, admin = app.test_client(), app.test_client()
    login(desk, "anna")
    login(admin, "boss")
    refused = desk.get("/test-admin-only")
    assert refused.status_code == 403
    assert b"Not allowed" in refused.data
    allowed = admin.get("/test-admin-only")
    assert allowed.status_code == 200
    assert allowed.data == b"hello user:boss"


def test_every_admin_route_refuses_front_desk_users(
    frontdesk_client: FlaskClient, make_app: Callable[..., Flask]
) -> None:
    app = _app_with_admin_page(make_app)
    admin_urls = [
        (method, url)
        for method, url in _guarded_urls(app)
        if getattr(app.view_functions[app.url_map.bind("x").match(url, method=method)[0]], "required_role", "")
        == "admin"
    ]
    assert ("GET", "/test-admin-only") in admin_urls
    assert ("GET", "/admin/") in admin_urls
    token = csrf_token(frontdesk_client.get("/").data)  # so a POST is refused for the role, not the token
    for method, url in admin_urls:
        if url == "/test-admin-only":
            continue  # added above on another app instance
        response = frontdesk_client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 403, (method, url, response.status_code)


def test_the_admin_link_shows_for_admins_only(frontdesk_client: FlaskClient, admin_client: FlaskClient) -> None:
    assert b'href="/admin/"' not in frontdesk_client.get("/").data
    assert b'href="/admin/"' in admin_client.get("/").data


def test_first_start_creates_an_admin_with_a_random_password(
    service: RisService, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not service.has_users()
    ensure_first_admin(service, settings)
    printed = capsys.readouterr().err
    password = re.search(r"with the password (\S+)", printed)
    assert password, printed
    user = service.authenticate("admin", password.group(1))
    assert user is not None
    assert user.is_admin

    ensure_first_admin(service, settings)  # a second start changes nothing and prints nothing
    assert capsys.readouterr().err == ""
    assert [u.username for u in service.list_users()] == ["admin"]


def test_first_start_takes_the_admin_password_setting(
    service: RisService, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ensure_first_admin(service, settings.__class__(**{**vars(settings), "admin_password": "site chosen secret"}))
    assert "site chosen secret" not in capsys.readouterr().err
    assert service.authenticate("admin", "site chosen secret") is not None


def test_a_too_short_admin_password_stops_the_start(service: RisService, settings: Settings) -> None:
    with pytest.raises(StartupError, match="admin_password: must be at least 8 characters"):
        ensure_first_admin(service, settings.__class__(**{**vars(settings), "admin_password": "short"}))
    assert not service.has_users()
